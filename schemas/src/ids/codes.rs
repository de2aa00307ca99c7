//! Codes for schools, administrative divisions and grades.

use serde::{Deserialize, Serialize};

use super::{IdError, IdKind, IdProblem, ProvinceCode, require_digits, string_id};

/// School identification code (学校标识码): 10 digits (domain.md §A.3.5). Its inner structure is
/// not specified by the sources (G-12), so only the shape is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct SchoolCode(String);

impl SchoolCode {
    /// # Errors
    /// Anything but exactly 10 ASCII digits.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        require_digits(s, 10, IdKind::SchoolCode, "10")?;
        Ok(SchoolCode(s.to_owned()))
    }
}

impl AsRef<str> for SchoolCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(SchoolCode);

/// Id of an organization-code batch (机构代码变动批次) as the national institution-code system
/// names it: 1–40 characters of `A-Z a-z 0-9 . _ -`, e.g. `SCHOOL-2026Q4`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct BatchId(String);

impl BatchId {
    /// # Errors
    /// Empty, longer than 40 characters, or another character.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let len = s.chars().count();
        if !(1..=40).contains(&len) {
            return Err(IdError::new(IdKind::BatchId, IdProblem::Length { expected: "1-40", found: len }));
        }
        if let Some(pos) = s.bytes().position(|b| !(b.is_ascii_alphanumeric() || b"._-".contains(&b))) {
            return Err(IdError::new(IdKind::BatchId, IdProblem::Character { position: pos + 1 }));
        }
        Ok(BatchId(s.to_owned()))
    }
}

impl AsRef<str> for BatchId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(BatchId);

/// Administrative division code (行政区划代码), 12 digits: the first six identify the
/// province, city and county, the last six are zeros ([001 Q19]). Education departments are
/// identified by codes of the same shape ([002 §20]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct DivisionCode(String);

impl DivisionCode {
    /// # Errors
    /// Not 12 digits, an unknown province prefix, or a non-zero tail.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        require_digits(s, 12, IdKind::DivisionCode, "12")?;
        if !ProvinceCode::is_known(&s[..2]) {
            return Err(IdError::new(IdKind::DivisionCode, IdProblem::Region));
        }
        if let Some(pos) = s[6..].bytes().position(|b| b != b'0') {
            return Err(IdError::new(IdKind::DivisionCode, IdProblem::Character { position: pos + 7 }));
        }
        Ok(DivisionCode(s.to_owned()))
    }

    pub fn province(&self) -> ProvinceCode {
        ProvinceCode::parse(&self.0[..2]).expect("validated at construction")
    }

    /// The province's own department (省级教育行政部门): `PP0000000000`.
    pub fn of_province(p: ProvinceCode) -> DivisionCode {
        DivisionCode(format!("{}0000000000", p.code()))
    }
}

impl AsRef<str> for DivisionCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(DivisionCode);

/// Education stage (学段). On the wire `PRIMARY`, `JUNIOR`, `SENIOR`, as plain text: quick-xml
/// would read a list of unit variants as elements named by the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Stage {
    /// 小学
    Primary,
    /// 初中
    Junior,
    /// 高中
    Senior,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Primary, Stage::Junior, Stage::Senior];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Primary => "PRIMARY",
            Stage::Junior => "JUNIOR",
            Stage::Senior => "SENIOR",
        }
    }

    /// The first digit of its grades' codes.
    pub fn digit(self) -> char {
        match self {
            Stage::Primary => '1',
            Stage::Junior => '2',
            Stage::Senior => '3',
        }
    }
}

impl From<Stage> for &'static str {
    fn from(s: Stage) -> &'static str {
        s.as_str()
    }
}

impl TryFrom<String> for Stage {
    type Error = String;
    fn try_from(s: String) -> Result<Stage, String> {
        Stage::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            format!("教育阶段应为 PRIMARY、JUNIOR 或 SENIOR / stage must be PRIMARY, JUNIOR or SENIOR, not `{s}`")
        })
    }
}

impl schemars::JsonSchema for Stage {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Stage".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "教育阶段 / education stage", "enum": ["PRIMARY", "JUNIOR", "SENIOR"] })
    }
}

/// Grade (年级) as a two-digit code: stage digit (1 primary, 2 junior, 3 senior) and year.
/// Primary has up to 6 years, junior up to 4 (五四制), senior 3. Which grade a student enters
/// is the receiving side's decision (domain.md B.1 grade mapping); this type only makes
/// sure the grade exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Grade {
    stage: Stage,
    year: u8,
    code: [u8; 2],
}

impl Grade {
    /// # Errors
    /// Not a two-digit code of an existing grade.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        require_digits(s, 2, IdKind::Grade, "2")?;
        let b = s.as_bytes();
        let year = b[1] - b'0';
        let (stage, max) = match b[0] {
            b'1' => (Stage::Primary, 6),
            b'2' => (Stage::Junior, 4),
            b'3' => (Stage::Senior, 3),
            _ => return Err(IdError::new(IdKind::Grade, IdProblem::Unknown)),
        };
        if !(1..=max).contains(&year) {
            return Err(IdError::new(IdKind::Grade, IdProblem::Unknown));
        }
        Ok(Grade { stage, year, code: [b[0], b[1]] })
    }

    pub fn stage(self) -> Stage {
        self.stage
    }

    pub fn year(self) -> u8 {
        self.year
    }

    /// Chinese label, e.g. 初中二年级.
    pub fn label_zh(self) -> String {
        let stage = match self.stage {
            Stage::Primary => "小学",
            Stage::Junior => "初中",
            Stage::Senior => "高中",
        };
        let year = ["一", "二", "三", "四", "五", "六"][usize::from(self.year) - 1];
        format!("{stage}{year}年级")
    }
}

impl AsRef<str> for Grade {
    fn as_ref(&self) -> &str {
        std::str::from_utf8(&self.code).expect("ASCII digits")
    }
}

string_id!(Grade);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn grades_exist_only_within_their_stage() {
        assert_eq!(Grade::parse("24").unwrap().label_zh(), "初中四年级");
        assert_eq!(Grade::parse("16").unwrap().stage(), Stage::Primary);
        for bad in ["10", "17", "25", "34", "41", "1", "111", "a1"] {
            assert!(Grade::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn division_codes_follow_the_seed_shape() {
        assert_eq!(DivisionCode::parse("440404000000").unwrap().province().code(), "44");
        assert_eq!(DivisionCode::parse("990404000000").unwrap_err().problem, IdProblem::Region);
        assert_eq!(DivisionCode::parse("440404000100").unwrap_err().problem, IdProblem::Character { position: 10 });
        assert!(DivisionCode::parse("44040400000").is_err());
    }

    proptest! {
        #[test]
        fn every_ten_digit_school_code_parses(s in "[0-9]{10}") {
            prop_assert!(SchoolCode::parse(&s).is_ok());
        }

        #[test]
        fn school_codes_of_other_shapes_are_refused(s in "[0-9]{0,9}|[0-9]{11,12}|[0-9]{4}[A-Za-z ][0-9]{5}") {
            prop_assert!(SchoolCode::parse(&s).is_err());
        }

        #[test]
        fn every_valid_division_code_parses(p in prop::sample::select(ProvinceCode::all().collect::<Vec<_>>()), rest in "[0-9]{4}") {
            let code = format!("{}{rest}000000", p.code());
            prop_assert_eq!(DivisionCode::parse(&code).unwrap().province(), p);
        }
    }
}
