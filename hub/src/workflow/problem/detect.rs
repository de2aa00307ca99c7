//! National de-duplication (全国查重) of index records: which records of one identity in two or
//! more provinces make a group. Records of one province only are that province's own business
//! (its own de-duplication runs first: [003 Q12]); the hub takes only groups that span provinces.

use schemas::ids::{IdDocument, ProvinceCode};
use schemas::messages::{MemberState, ProblemKind, StudentSummary};

use super::Member;

/// An index record of some province that shares an identity with others.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub province: ProvinceCode,
    pub summary: StudentSummary,
}

/// A group to open.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub kind: ProblemKind,
    pub identity: String,
    pub members: Vec<Member>,
}

/// The last finished group of an identity, as it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub members: Vec<Member>,
}

/// The de-duplication key of a record: its resident ID (an ID duplicate), or, without one, its
/// name, sex and birth date (domain.md C.2).
pub fn identity_of(s: &StudentSummary) -> (ProblemKind, String) {
    match &s.id_document {
        IdDocument::Resident(r) => (ProblemKind::IdDuplicate, format!("id:{r}")),
        _ => (
            ProblemKind::NameSexBirthDuplicate,
            format!("nsb:{}|{}|{}", s.name, serde_json::to_value(s.sex).unwrap_or_default(), s.birth_date),
        ),
    }
}

/// A candidate as a record of a group, waiting.
pub fn member_of(c: &Candidate) -> Member {
    Member {
        province: c.province,
        school: c.summary.school.clone(),
        student_id: c.summary.student_id.clone(),
        name: c.summary.name.clone(),
        id_document: c.summary.id_document.clone(),
        registered_at: c.summary.registered_at.unwrap_or(c.summary.changed_at),
        key_data_changed_at: c.summary.key_data_changed_at,
        state: MemberState::Waiting,
        comment: None,
    }
}

/// The group the candidates of one identity make, if any: two or more provinces, and not what
/// the last finished group of this identity settled. A record deleted in that group is left
/// out (its province removes it from the index); a changed one joins again only if it now
/// carries its new identity and that still duplicates (a relapse: C.1); records that stayed
/// (attested, upheld) with the same identity do not re-open the group by themselves.
pub fn find(kind: ProblemKind, identity: &str, candidates: &[Candidate], settled: Option<&Settled>) -> Option<Found> {
    let mut members = Vec::new();
    let mut new = false;
    for c in candidates {
        let before = settled
            .and_then(|s| s.members.iter().find(|m| m.province == c.province && m.student_id == c.summary.student_id));
        let same_identity = |m: &Member| m.name == c.summary.name && m.id_document == c.summary.id_document;
        match before {
            Some(m) if m.state == MemberState::Deleted => continue,
            Some(m) if m.state == MemberState::Changed && !same_identity(m) => continue,
            Some(m) if m.state == MemberState::Changed => new = true,
            Some(m) if same_identity(m) => {}
            _ => new = true,
        }
        members.push(member_of(c));
    }
    let mut provinces: Vec<ProvinceCode> = members.iter().map(|m| m.province).collect();
    provinces.sort();
    provinces.dedup();
    if provinces.len() < 2 || !new || members.len() > schemas::messages::MEMBERS_MAX {
        return None;
    }
    Some(Found { kind, identity: identity.to_owned(), members })
}
