//! The national student index (全国学籍索引) and lookup (全国学籍查询).
//!
//! Provinces report their students; the index remembers, per student, which province holds the
//! record and the summary it last reported. A newer report wins; an older one is stale. A
//! province reporting a student that another province holds is a conflict: two provinces
//! claiming one student is a problem record, not an index update — except while the student's
//! archive is handed over (调档): the receiving province, once the archive is delivered to it,
//! holds the record it reports.

use chrono::{DateTime, Utc};
use schemas::ErrorCode;
use schemas::ids::{PersonName, ProvinceCode};
use schemas::messages::{LookupKey, LookupMatch, ProblemKind, StudentStatus, StudentSummary};

/// One student in the index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The province holding the record.
    pub province: ProvinceCode,
    pub summary: StudentSummary,
    /// Since when the province contradicts this entry (its verification found no such
    /// student), until it reports him again.
    pub disputed_at: Option<DateTime<Utc>>,
}

/// What to do with one reported change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Apply,
    /// The index already holds this change or a newer one.
    Stale,
    /// Another province holds the student.
    Conflict,
}

/// A student whose open case has delivered his archive (电子档案生成 → 调档完毕): his record is
/// moving `from` the sending province `to` the receiving one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moving {
    pub from: ProvinceCode,
    pub to: ProvinceCode,
}

/// Decides an upsert from `sender` changed at `changed_at`, given the current entry and the
/// hand-over the student is in, if any.
pub fn decide_upsert(
    current: Option<&IndexEntry>,
    sender: ProvinceCode,
    changed_at: DateTime<Utc>,
    moving: Option<Moving>,
) -> Decision {
    match current {
        None => Decision::Apply,
        Some(e) if e.province != sender => match moving {
            // The receiving province imported the archive and reports the record it now holds:
            // the hand-over, not a second record; the index moves with the archive.
            Some(m) if m.to == sender && m.from == e.province => Decision::Apply,
            // The sending province reports a record the index already moved on.
            Some(m) if m.from == sender && m.to == e.province => Decision::Stale,
            _ => Decision::Conflict,
        },
        // The province's own report settles a dispute, changed or not.
        Some(e) if e.disputed_at.is_some() => Decision::Apply,
        Some(e) if e.summary.changed_at >= changed_at => Decision::Stale,
        Some(_) => Decision::Apply,
    }
}

/// Decides a removal; removing a student the index does not hold is stale (already done).
pub fn decide_removal(current: Option<&IndexEntry>, sender: ProvinceCode, changed_at: DateTime<Utc>) -> Decision {
    match current {
        None => Decision::Stale,
        Some(e) if e.province != sender => Decision::Conflict,
        Some(e) if e.summary.changed_at > changed_at => Decision::Stale,
        Some(_) => Decision::Apply,
    }
}

/// Whether a student of this status may transfer, given the out-province's list (domain.md
/// G-1): a junior-high graduate goes on through post-graduation enrollment instead.
///
/// # Errors
/// `E_WRONG_STAGE` for a junior-high graduate, `E_STATUS_INELIGIBLE` for a status off the list.
pub fn transfer_status(eligible_statuses: &[StudentStatus], status: StudentStatus) -> Result<(), ErrorCode> {
    if status == StudentStatus::JuniorGraduate {
        Err(ErrorCode::WrongStage)
    } else if eligible_statuses.contains(&status) {
        Ok(())
    } else {
        Err(ErrorCode::StatusIneligible)
    }
}

/// Why the student cannot apply for a cross-province transfer now; empty when he can.
/// `eligible_statuses` is the configured list (domain.md G-1).
pub fn transfer_obstacles(entry: &IndexEntry, eligible_statuses: &[StudentStatus]) -> Vec<ErrorCode> {
    let mut why = Vec::new();
    if let Err(code) = transfer_status(eligible_statuses, entry.summary.status) {
        why.push(code);
    }
    // An L ID is judged by its problem-record flag, never by its prefix (domain.md G-11).
    if entry.summary.problem_record {
        why.push(ErrorCode::ProblemRecord);
    }
    if entry.summary.open_business {
        why.push(ErrorCode::InFlight);
    }
    if entry.disputed_at.is_some() {
        // Its province said it holds no such student: not offered until it reports him again.
        why.push(ErrorCode::StudentNotFound);
    }
    why
}

/// Answers a lookup: the candidate must match the name exactly as well (domain.md R17); only
/// what a receiving school needs is returned. `has_open_case` says whether the student already
/// has an open cross-province case at the hub; `open_problem` the kind of an unfinished problem
/// group at the hub holding the record (the index's problem flag follows the group).
pub fn answer_lookup<'a>(
    candidates: &[IndexEntry],
    name: &PersonName,
    eligible_statuses: impl Fn(ProvinceCode) -> &'a [StudentStatus],
    has_open_case: impl Fn(&IndexEntry) -> bool,
    open_problem: impl Fn(&IndexEntry) -> Option<ProblemKind>,
) -> Option<LookupMatch> {
    let entry = candidates.iter().find(|e| &e.summary.name == name)?;
    let group = open_problem(entry);
    let mut reason = transfer_obstacles(entry, eligible_statuses(entry.province));
    if group.is_some() && !reason.contains(&ErrorCode::ProblemRecord) {
        reason.retain(|c| *c != ErrorCode::InFlight);
        reason.push(ErrorCode::ProblemRecord);
    }
    if has_open_case(entry) && group.is_none() && !reason.contains(&ErrorCode::InFlight) {
        reason.push(ErrorCode::InFlight);
    }
    Some(LookupMatch {
        student_id: entry.summary.student_id.clone(),
        name: entry.summary.name.clone(),
        province: entry.province,
        school: entry.summary.school.clone(),
        grade: entry.summary.grade,
        status: entry.summary.status,
        problem_record: entry.summary.problem_record || group.is_some(),
        transfer_eligible: reason.is_empty(),
        reason,
        changed_at: entry.summary.changed_at,
        problem_kind: group.or(entry.summary.problem_kind),
    })
}

/// Who a lookup was about, as the audit keeps it: a keyed digest (HMAC-SHA256 under the hub's
/// audit key) of the identifier's kind and canonical form. Without the key the audit reveals
/// nothing, and an 18-digit resident ID cannot be found again by trying them all.
pub fn audit_digest(key: &[u8], kind: AuditKeyKind, identifier: &str) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(kind.as_str().as_bytes());
    mac.update(b":");
    mac.update(identifier.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// What the audit digests of a lookup's key: its kind and canonical form.
pub fn audit_identity(key: &LookupKey) -> (AuditKeyKind, String) {
    match key {
        LookupKey::StudentId(id) => (AuditKeyKind::StudentId, id.to_string()),
        LookupKey::ResidentId(n) => (AuditKeyKind::Document, n.to_string()),
        LookupKey::DocumentNumber(n) => (AuditKeyKind::Document, n.to_string()),
    }
}

/// The kind of identifier a lookup gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKeyKind {
    /// 全国学籍号.
    StudentId,
    /// A resident ID or another ID document's number (`documentNumber`).
    Document,
}

impl AuditKeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKeyKind::StudentId => "student_id",
            AuditKeyKind::Document => "document",
        }
    }
}

/// Why a lookup is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The province's lookups in the last minute reached `[lookups] per_minute`.
    Province,
    /// The province's lookups of this student in the last hour reached
    /// `[lookups] same_student_per_hour`.
    Student,
}

impl Limited {
    pub fn outcome(self) -> &'static str {
        match self {
            Limited::Province => "limited_province",
            Limited::Student => "limited_student",
        }
    }
}

/// Whether one more lookup may be answered, given the province's answered lookups in the last
/// minute and its lookups of this student in the last hour.
pub fn lookup_allowed(
    answered_last_minute: i64,
    of_student_last_hour: i64,
    limits: &crate::config::Lookups,
) -> Result<(), Limited> {
    if of_student_last_hour >= i64::from(limits.same_student_per_hour) {
        return Err(Limited::Student);
    }
    if answered_last_minute >= i64::from(limits.per_minute) {
        return Err(Limited::Province);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use schemas::messages::{Body, IndexUpsert};
    use schemas::{MessageType, samples};

    use super::*;
    use crate::config::default_transfer_statuses;

    fn entry(province: &str) -> IndexEntry {
        let Body::IndexUpsert(IndexUpsert { student }) = samples::body(MessageType::IndexUpsert) else {
            unreachable!()
        };
        IndexEntry {
            province: ProvinceCode::parse(province).unwrap(),
            summary: student.items()[0].clone(),
            disputed_at: None,
        }
    }

    #[test]
    fn newer_reports_win_older_ones_are_stale_and_other_provinces_conflict() {
        let e = entry("51");
        let sc = e.province;
        let sd = ProvinceCode::parse("37").unwrap();
        let t = e.summary.changed_at;
        assert_eq!(decide_upsert(None, sd, t, None), Decision::Apply);
        assert_eq!(decide_upsert(Some(&e), sc, t + Duration::seconds(1), None), Decision::Apply);
        assert_eq!(decide_upsert(Some(&e), sc, t, None), Decision::Stale);
        assert_eq!(decide_upsert(Some(&e), sc, t - Duration::days(1), None), Decision::Stale);
        assert_eq!(decide_upsert(Some(&e), sd, t + Duration::days(1), None), Decision::Conflict);
        assert_eq!(decide_removal(Some(&e), sc, t), Decision::Apply);
        assert_eq!(decide_removal(Some(&e), sc, t - Duration::seconds(1)), Decision::Stale);
        assert_eq!(decide_removal(None, sc, t), Decision::Stale);
        assert_eq!(decide_removal(Some(&e), sd, t), Decision::Conflict);
    }

    #[test]
    fn during_the_hand_over_the_receiving_province_s_report_moves_the_entry_and_the_sender_s_is_stale() {
        let e = entry("51");
        let (sc, sd, other) = (e.province, ProvinceCode::parse("37").unwrap(), ProvinceCode::parse("44").unwrap());
        let t = e.summary.changed_at;
        let moving = Some(Moving { from: sc, to: sd });
        assert_eq!(decide_upsert(Some(&e), sd, t - Duration::days(1), moving), Decision::Apply, "whatever its clock");
        assert_eq!(decide_upsert(Some(&e), other, t, moving), Decision::Conflict, "a third province");
        let elsewhere = Some(Moving { from: other, to: sd });
        assert_eq!(decide_upsert(Some(&e), sd, t, elsewhere), Decision::Conflict, "not from where the index has him");
        let moved = IndexEntry { province: sd, ..e.clone() };
        assert_eq!(decide_upsert(Some(&moved), sc, t + Duration::days(1), moving), Decision::Stale, "left already");
        assert_eq!(decide_upsert(Some(&moved), other, t, moving), Decision::Conflict);
        assert_eq!(decide_upsert(Some(&moved), sd, t + Duration::days(1), moving), Decision::Apply, "its own");
    }

    /// A lookup of `e` by `name` under the national status list, with or without an open case
    /// and an open problem group.
    fn ask(e: &IndexEntry, name: &PersonName, open: bool, group: Option<ProblemKind>) -> Option<LookupMatch> {
        let statuses = default_transfer_statuses();
        answer_lookup(std::slice::from_ref(e), name, |_| statuses.as_slice(), |_| open, |_| group)
    }

    #[test]
    fn lookup_needs_the_name_and_says_why_a_student_cannot_transfer() {
        let mut e = entry("51");
        let name = e.summary.name.clone();
        let found = ask(&e, &name, false, None).unwrap();
        assert!(found.transfer_eligible && found.reason.is_empty());
        assert!(ask(&e, &PersonName::parse("王五").unwrap(), false, None).is_none());
        let busy = ask(&e, &name, true, None).unwrap();
        assert_eq!((busy.transfer_eligible, busy.reason.clone()), (false, vec![ErrorCode::InFlight]), "an open case");

        e.summary.status = StudentStatus::Suspended;
        e.summary.problem_record = true;
        e.summary.open_business = true;
        let found = ask(&e, &name, true, None).unwrap();
        assert!(!found.transfer_eligible);
        assert_eq!(found.reason, vec![ErrorCode::StatusIneligible, ErrorCode::ProblemRecord, ErrorCode::InFlight]);
        // The same rule as the case: a junior-high graduate enrolls, he does not transfer.
        e.summary.status = StudentStatus::JuniorGraduate;
        assert_eq!(ask(&e, &name, false, None).unwrap().reason[0], ErrorCode::WrongStage);
        // The province's own list applies.
        e.summary.status = StudentStatus::Abroad;
        let only_enrolled = |_| [StudentStatus::Enrolled].as_slice();
        let found = answer_lookup(std::slice::from_ref(&e), &name, only_enrolled, |_| false, |_| None);
        assert_eq!(found.unwrap().reason[0], ErrorCode::StatusIneligible);
    }

    #[test]
    fn an_open_problem_group_flags_the_record_whatever_its_province_reported() {
        let e = entry("51");
        let found = ask(&e, &e.summary.name.clone(), true, Some(ProblemKind::IdDuplicate)).unwrap();
        assert!(found.problem_record && !found.transfer_eligible);
        assert_eq!(found.reason, vec![ErrorCode::ProblemRecord], "the group is the open business");
        assert_eq!(found.problem_kind, Some(ProblemKind::IdDuplicate));
    }

    #[test]
    fn a_temporary_id_is_judged_by_its_problem_flag_not_its_prefix() {
        let mut e = entry("51");
        e.summary.student_id = "L44162320030616008X".parse().unwrap();
        assert!(transfer_obstacles(&e, &default_transfer_statuses()).is_empty());
        e.summary.problem_record = true;
        assert_eq!(transfer_obstacles(&e, &default_transfer_statuses()), vec![ErrorCode::ProblemRecord]);
    }

    #[test]
    fn a_lookup_is_answered_below_both_limits_and_refused_at_either() {
        let limits = crate::config::Lookups { per_minute: 3, same_student_per_hour: 2 };
        assert_eq!(lookup_allowed(0, 0, &limits), Ok(()));
        assert_eq!(lookup_allowed(2, 1, &limits), Ok(()));
        assert_eq!(lookup_allowed(3, 0, &limits), Err(Limited::Province));
        assert_eq!(lookup_allowed(0, 2, &limits), Err(Limited::Student));
        // Guessing names of one student is refused as such even when the province is also busy.
        assert_eq!(lookup_allowed(9, 9, &limits), Err(Limited::Student));
    }

    #[test]
    fn audit_digests_depend_on_the_key_the_kind_and_the_identifier() {
        let id = "G510104201605120358";
        let d = audit_digest(b"key one", AuditKeyKind::StudentId, id);
        assert_eq!(d.len(), 32);
        assert_eq!(d, audit_digest(b"key one", AuditKeyKind::StudentId, id));
        assert_ne!(d, audit_digest(b"key two", AuditKeyKind::StudentId, id));
        assert_ne!(d, audit_digest(b"key one", AuditKeyKind::Document, id));
        assert_ne!(d, audit_digest(b"key one", AuditKeyKind::StudentId, "G510104201605120359"));
        assert!(!d.windows(4).any(|w| id.as_bytes().windows(4).any(|x| x == w)));
    }
}
