//! Deterministic invented data: a province's schools and students from a seed. The same seed
//! gives the same students everywhere, so one simulated province can look up another's.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::ids::{IdDocument, ProvinceCode, ResidentId, SchoolCode};
use schemas::messages::{StudentStatus, StudentSummary};

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "林", "罗",
    "高",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀", "霞",
    "平", "刚", "桂", "英", "华", "玉", "兰", "萍", "鹏", "辉", "浩", "宇", "轩", "欣", "怡", "博", "文", "思", "雨",
    "晨", "阳",
];

/// A school of the simulated province.
#[derive(Debug, Clone)]
pub struct School {
    pub code: SchoolCode,
    pub name: String,
    /// 主管教育部门: one of the province's two county departments (`PP0101…`, `PP0102…`).
    pub department: schemas::ids::DivisionCode,
}

/// The generated province.
#[derive(Debug, Clone)]
pub struct Province {
    pub code: ProvinceCode,
    pub schools: Vec<School>,
    pub students: Vec<StudentSummary>,
}

fn rng_for(seed: u64, province: ProvinceCode) -> StdRng {
    StdRng::seed_from_u64(seed ^ (u64::from(province.code().parse::<u8>().unwrap_or(0)) << 40) ^ 0x05ee_d0f5_c100)
}

/// Generates `count` students in `province` from `seed`.
pub fn generate(province: ProvinceCode, count: usize, seed: u64) -> Province {
    let mut rng = rng_for(seed, province);
    let school_count = (count / 80).clamp(3, 200);
    let schools: Vec<School> = (0..school_count)
        .map(|i| School {
            code: SchoolCode::parse(&format!("{}{:08}", province.code(), 10_000 + i)).expect("10 digits"),
            name: format!("{}第{}学校", province.name_zh(), i + 1),
            department: schemas::ids::DivisionCode::parse(&format!("{}010{}000000", province.code(), 1 + i % 2))
                .expect("12 digits"),
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut students = Vec::with_capacity(count);
    let base: DateTime<Utc> = DateTime::from_timestamp(1_785_000_000, 0).expect("time");
    while students.len() < count {
        let grade = ["11", "12", "13", "14", "15", "16", "21", "22", "23", "31", "32", "33"][rng.random_range(0..12)];
        let years_old = match grade.as_bytes()[0] {
            b'1' => 6 + u32::from(grade.as_bytes()[1] - b'1'),
            b'2' => 12 + u32::from(grade.as_bytes()[1] - b'1'),
            _ => 15 + u32::from(grade.as_bytes()[1] - b'1'),
        };
        let birth = NaiveDate::from_ymd_opt(2026 - years_old as i32, 1, 1).expect("date")
            + Duration::days(rng.random_range(0..365));
        let body = format!(
            "{}{:02}{:02}{}{:03}",
            province.code(),
            rng.random_range(1..10),
            rng.random_range(1..13),
            birth.format("%Y%m%d"),
            rng.random_range(0..1000)
        );
        let Ok(resident) = ResidentId::from_body(&body) else { continue };
        if !seen.insert(resident.clone()) {
            continue;
        }
        let name = format!(
            "{}{}{}",
            SURNAMES[rng.random_range(0..SURNAMES.len())],
            GIVEN[rng.random_range(0..GIVEN.len())],
            if rng.random_bool(0.6) { GIVEN[rng.random_range(0..GIVEN.len())] } else { "" }
        );
        let status = match (grade, rng.random_range(0..100)) {
            // Some in the last grade of a stage have graduated (小学毕业 / 初中毕业).
            ("16", 0..20) => StudentStatus::PrimaryGraduate,
            ("23", 0..25) => StudentStatus::JuniorGraduate,
            (_, roll) => match roll {
                0..88 => StudentStatus::Enrolled,
                88..90 => StudentStatus::Suspended,
                90..92 => StudentStatus::Withdrawn,
                92..94 => StudentStatus::Abroad,
                94..96 => StudentStatus::OtherDeparture,
                96..98 => StudentStatus::DroppedOut,
                _ => StudentStatus::Expelled,
            },
        };
        let n = students.len();
        // A few students carry a temporary L ID (authentication failed); most of those still
        // have their problem record open, some had it resolved (domain.md G-11).
        let temporary = rng.random_bool(0.03);
        let student_id = if temporary {
            format!("L{}{}{:04}", &body[..6], birth.format("%Y%m%d"), rng.random_range(0..10_000))
                .parse()
                .expect("valid L ID")
        } else {
            format!("G{resident}").parse().expect("valid national student ID")
        };
        let problem_record = if temporary { rng.random_bool(0.67) } else { rng.random_bool(0.03) };
        students.push(StudentSummary {
            student_id,
            name: name.parse().expect("valid name"),
            sex: resident.sex(),
            birth_date: birth,
            id_document: IdDocument::Resident(resident),
            school: schools[rng.random_range(0..schools.len())].code.clone(),
            grade: grade.parse().expect("grade"),
            status,
            problem_record,
            open_business: rng.random_bool(0.02),
            changed_at: base + Duration::seconds(n as i64),
            problem_kind: None,
            registered_at: Some(base - Duration::days(400) + Duration::seconds(n as i64)),
            key_data_changed_at: None,
        });
    }
    Province { code: province, schools, students }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_valid_students() {
        let p = ProvinceCode::parse("44").unwrap();
        let a = generate(p, 300, 7);
        let b = generate(p, 300, 7);
        assert_eq!(a.students, b.students);
        assert_eq!(a.students.len(), 300);
        assert!(
            a.students
                .iter()
                .all(|s| s.student_id.as_ref().starts_with("G44") || s.student_id.as_ref().starts_with("L44"))
        );
        assert!(a.students.iter().any(|s| !s.student_id.is_formal()), "some temporary IDs");
        assert_ne!(generate(p, 300, 8).students, a.students);
        assert_ne!(generate(ProvinceCode::parse("37").unwrap(), 300, 7).students[0], a.students[0]);
    }
}
