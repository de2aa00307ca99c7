//! Admission of an application (转学申请 / 就学申请): every rule that can refuse it before a case
//! opens, decided from facts the handler gathered (domain.md §B.1, §B.2). The first rule that
//! fails answers, with its code.

use chrono::{DateTime, Utc};
use schemas::messages::{Application, Attachment};
use uuid::Uuid;

use super::*;
use crate::workflow::index::IndexEntry;

/// A school as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchoolFact {
    pub name: String,
    /// GB/T 2260 code of its province.
    pub province: String,
    pub active: bool,
    /// A newly linked code syncs to the national side within 1–2 days ([003 Q39]).
    pub code_usable_from: Option<DateTime<Utc>>,
    /// A confirmed revocation of the whole school waits for its blockers (domain.md G-7).
    pub revoking: bool,
    /// Stages with a confirmed revocation waiting.
    pub revoking_stages: Vec<schemas::ids::Stage>,
    /// Stages revoked already (撤销教育阶段).
    pub revoked_stages: Vec<schemas::ids::Stage>,
}

impl SchoolFact {
    /// A school the registry knows, with no revocation about it.
    pub fn new(name: String, province: String, active: bool, code_usable_from: Option<DateTime<Utc>>) -> Self {
        SchoolFact {
            name,
            province,
            active,
            code_usable_from,
            revoking: false,
            revoking_stages: vec![],
            revoked_stages: vec![],
        }
    }
}

/// Whether the applying (receiving) school may take a student into `stage`: not once its
/// revocation, or that stage's, is confirmed — new business would keep the revocation from
/// ever finishing (domain.md G-7, position taken) — and not into a stage it no longer runs.
fn receiving_problem(code: &SchoolCode, s: &SchoolFact, stage: schemas::ids::Stage) -> Option<Refusal> {
    if s.revoking {
        return Some((
            ErrorCode::SchoolRevoking,
            format!("school {code} ({}) has a confirmed revocation waiting", s.name),
        ));
    }
    if s.revoking_stages.contains(&stage) {
        return Some((
            ErrorCode::SchoolRevoking,
            format!("the {} stage of school {code} ({}) has a confirmed revocation waiting", stage.as_str(), s.name),
        ));
    }
    s.revoked_stages.contains(&stage).then(|| {
        (ErrorCode::SchoolUnknown, format!("school {code} ({}) no longer runs the {} stage", s.name, stage.as_str()))
    })
}

/// What the register of open business holds for the student.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBusiness {
    /// The business (`transfer`, `enrollment`, `problem-group`, …) and its id.
    pub business: String,
    pub id: Uuid,
    /// A cancelled case whose out-province has not released the student yet.
    pub cancelling: bool,
}

/// The facts an application is judged on.
#[derive(Debug, Clone)]
pub struct Admission<'a> {
    pub business: Business,
    /// The applying province.
    pub sender: ProvinceCode,
    pub application: &'a Application,
    /// The applying school in the registry.
    pub in_school: Option<SchoolFact>,
    /// Whether the applying school may enroll graduates of other provinces ([003 Q37]).
    pub enrollment_permitted: bool,
    /// The student in the national index.
    pub entry: Option<&'a IndexEntry>,
    /// The student's current school (the index's) in the registry.
    pub out_school: Option<SchoolFact>,
    /// The student's open business, if any (one at a time).
    pub open: Option<OpenBusiness>,
    /// The kind of an unfinished problem group at the hub holding the student's record.
    pub problem: Option<schemas::messages::ProblemKind>,
    pub now: DateTime<Utc>,
}

type Refusal = (ErrorCode, String);

/// Whether `school` may take part in a case for `province` now.
fn school_problem(
    code: &SchoolCode,
    school: Option<&SchoolFact>,
    province: ProvinceCode,
    now: DateTime<Utc>,
) -> Option<Refusal> {
    match school {
        None => Some((ErrorCode::SchoolUnknown, format!("school {code} is not in the school registry"))),
        Some(s) if !s.active => Some((ErrorCode::SchoolUnknown, format!("school {code} ({}) is revoked", s.name))),
        Some(s) if s.province != province.code() => Some((
            ErrorCode::SchoolUnknown,
            format!("school {code} belongs to province {}, not {}", s.province, province.code()),
        )),
        Some(s) => s.code_usable_from.filter(|t| *t > now).map(|t| {
            (
                ErrorCode::SchoolNoCode,
                format!("the identification code of school {code} is usable from {t} (sync takes 1–2 days)"),
            )
        }),
    }
}

fn evidence_problem(business: Business, items: &[Attachment], rules: &dyn Rules) -> Option<Refusal> {
    // Reviewers receive the files by name: two of one name would lose one.
    if let Some((_, twice)) = items.iter().enumerate().find(|(i, a)| items[..*i].iter().any(|b| b.name == a.name)) {
        return Some((ErrorCode::Schema, format!("two evidence files are named {}", twice.name)));
    }
    items.iter().find_map(|a| {
        if a.check().is_err() {
            return Some((
                ErrorCode::AttachmentDigest,
                format!("evidence {}: content does not match its size or SHA-256", a.name),
            ));
        }
        rules
            .file_problem(FileUse::Evidence(business), &a.reference())
            .map(|(code, detail)| (code, format!("evidence {detail}")))
    })
}

/// Decides an application: the case's facts, or the refusal.
///
/// # Errors
/// The first rule the application breaks, with its code and why.
pub fn admit(a: &Admission<'_>, rules: &dyn Rules) -> Result<Facts, Refusal> {
    let app = a.application;
    if let Some(r) = evidence_problem(a.business, app.evidence.items(), rules) {
        return Err(r);
    }
    if let Some(r) = school_problem(&app.school, a.in_school.as_ref(), a.sender, a.now) {
        return Err(r);
    }
    if let Some(r) = a.in_school.as_ref().and_then(|s| receiving_problem(&app.school, s, app.target_grade.stage())) {
        return Err(r);
    }
    if a.business == Business::Enrollment {
        // The enrolling school shows it followed the local admission policy ([003 Q29]), and
        // only schools its province permitted may enroll graduates of other provinces ([003 Q37]).
        if app.evidence.is_empty() {
            return Err((
                ErrorCode::EvidenceMissing,
                "an enrollment needs evidence: admission letter, exam results (录取通知书、中考成绩)".into(),
            ));
        }
        if !a.enrollment_permitted {
            return Err((
                ErrorCode::NotPermitted,
                format!("school {} has no permission for post-graduation enrollment", app.school),
            ));
        }
    }
    let Some(entry) = a.entry else {
        return Err((ErrorCode::StudentNotFound, format!("{} is not in the national student index", app.student_id)));
    };
    if let Some(at) = entry.disputed_at {
        return Err((
            ErrorCode::StudentNotFound,
            format!(
                "province {} reported on {at} that it holds no such student; it was asked to report him again",
                entry.province.code()
            ),
        ));
    }
    if entry.province == a.sender {
        return Err((
            ErrorCode::SameProvince,
            format!("{} is a student of province {} already", app.student_id, a.sender.code()),
        ));
    }
    if let Some((code, detail)) = school_problem(&entry.summary.school, a.out_school.as_ref(), entry.province, a.now) {
        return Err((code, format!("the student's current school: {detail}")));
    }
    if let Some(kind) = a.problem {
        // Any open problem record blocks a transfer ([003 Q13]); a post-graduation enrollment
        // is blocked by a duplicate, not by a failed authentication (domain.md R35).
        if a.business == Business::Transfer || kind.is_duplicate() {
            return Err((
                ErrorCode::ProblemRecord,
                format!(
                    "{} is a record of an unfinished problem group ({kind:?}); it must be handled first",
                    app.student_id
                ),
            ));
        }
    }
    if let Some(open) = &a.open {
        let detail = if open.cancelling {
            format!(
                "case {} was cancelled, but the out-province has not closed its side yet; apply again once it has",
                open.id
            )
        } else {
            format!("the student has open cross-province business: {} {}", open.business, open.id)
        };
        return Err((ErrorCode::InFlight, detail));
    }
    Ok(Facts {
        business: a.business,
        student_id: app.student_id.clone(),
        student_name: app.student_name.clone(),
        in_province: a.sender,
        in_school: app.school.clone(),
        out_province: entry.province,
        out_school: entry.summary.school.clone(),
        target_grade: app.target_grade,
        reason: app.reason.clone(),
        evidence: app.evidence.items().iter().map(Attachment::reference).collect(),
    })
}
