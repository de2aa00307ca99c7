//! A cross-province case (跨省业务): the workflow that cross-province transfer (跨省转学) and
//! post-graduation enrollment (毕业后跨省就学) share. Pure: facts and events in, the new case and
//! its effects out, as complete data; the handler gathers the facts, locks, writes and sends.
//!
//! ```text
//! Verifying ──held──▶ Held: Reviewing(0) ─approve─▶ … Reviewing(n) ─approve─▶ ArchiveRequested
//!    │refused               │reject/cancel, ineligible                        │package complete
//!    ▼                      ▼                                                 ▼
//! Closed(Refused)        Releasing ─released─▶ Closed(Rejected/Cancelled/     Delivering ─imported─▶
//!                                                     Refused)                Committing ─committed─▶ Closed(Completed)
//! ```
//!
//! The types carry the invariants: only a case the out-province holds ([`Phase::Held`]) has a
//! held student, and only a review stage has a chain of steps ([`Chain`], never empty). The
//! archive hand-over is two-phase (DESIGN §7): the out-province commits the transfer-out only
//! after the in-province confirmed the import, so no student is ever missing from both.
//! Cancelling is possible only while a review step is pending (domain.md G-3); it finishes only
//! when the out-province has released its hold.
//!
//! [`admit`] decides an application; [`transition`] an event, by family, each family in a file
//! of its own that writes out every (stage, event) pair: a new stage or event is a compile
//! error until each family decides it.

mod admit;
mod archive;
mod cancel;
mod operator;
mod review;
mod state;
mod timers;
mod verify;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use schemas::ErrorCode;
use schemas::ids::{Grade, ProvinceCode, SchoolCode, StudentId, Text};
use schemas::messages::{
    ArchiveCommit, ArchiveImported, ArchivePackage, ArchiveRequest, Attachment, AttachmentRef, Body, Business,
    CaseClosed, CaseRelease, CaseStatus, CaseSummary, HeldStudent, NextStep, Outcome, ReleaseReason, ReminderKind,
    ReviewDecision, ReviewStep, StepRecord, StudentStatus, UpTo, VerifyRequest, VerifyResult, Waiting,
};
use schemas::{CaseId, Party};
use serde::{Deserialize, Serialize};

pub use self::admit::{Admission, OpenBusiness, SchoolFact, admit};
pub use self::state::{Arriving, Case, Chain, Facts, HeldStage, Package, Phase, chain_from_levels};
pub use self::verify::refusal_text;
use super::calendar::{Calendar, business_date, start_of};

/// The rules a case runs by, from configuration.
pub trait Rules {
    /// The review chain of a case between these provinces.
    fn chain(&self, business: Business, in_province: ProvinceCode, out_province: ProvinceCode) -> Chain;
    /// Whether the verified student may do this business (e.g. the status list, domain.md G-1).
    ///
    /// # Errors
    /// The refusal code.
    fn eligible(&self, business: Business, out_province: ProvinceCode, held: &HeldStudent) -> Result<(), ErrorCode>;
    /// What is wrong with a file of the applicant's evidence, or of the archive (size and type
    /// limits of domain.md G-2); `None` when it may pass.
    fn file_problem(&self, used: FileUse, file: &AttachmentRef) -> Option<(ErrorCode, String)>;
    fn calendar(&self) -> &Calendar;
    /// Working days per review step (10, [003 Q33]).
    fn review_days(&self) -> u32;
    /// Working days before the deadline for the first reminder.
    fn remind_before(&self) -> u32;
    /// How long an automated stage waits before its request is sent again.
    fn resend_after(&self) -> Duration;
}

/// What a file is for: the applicants' uploads (domain.md G-2) and the archive's scans have
/// different limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileUse {
    /// Evidence of an application (申请材料).
    Evidence(Business),
    /// A file of the archive hand-over (调档).
    Archive,
}

/// An operator's action on a case (运维操作), audited by the caller. One enum for the route,
/// the handler and the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OperatorAction {
    /// Send the current stage's request again now.
    Resend,
    /// Drop the received package and ask the out-province for it again.
    Rerequest,
    /// Acknowledge a stuck alert of an automated stage after handling it outside the system;
    /// the stage clock restarts, the case goes on waiting. (An overdue review is not resolved
    /// by an operator: its reviewer decides, reminded.)
    Resolve,
}

impl OperatorAction {
    pub const ALL: [OperatorAction; 3] = [OperatorAction::Resend, OperatorAction::Rerequest, OperatorAction::Resolve];

    /// Its name in routes and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Resend => "resend",
            OperatorAction::Rerequest => "rerequest",
            OperatorAction::Resolve => "resolve",
        }
    }

    pub fn parse(s: &str) -> Option<OperatorAction> {
        OperatorAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What happened to the case.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Verified {
        from: Party,
        result: &'a VerifyResult,
    },
    Decided {
        from: Party,
        decision: &'a ReviewDecision,
    },
    CancelRequested {
        from: Party,
    },
    Released {
        from: Party,
    },
    /// `archive.package`: the record and the manifest of its attachments.
    PackageReceived {
        from: Party,
        package: &'a ArchivePackage,
    },
    /// `archive.attachment`: one file of the package.
    AttachmentReceived {
        from: Party,
        attachment: &'a Attachment,
    },
    Imported {
        from: Party,
        result: &'a ArchiveImported,
    },
    Committed {
        from: Party,
    },
    ResendDue,
    ReminderDue(ReminderKind),
    Operator(OperatorAction),
}

impl Event<'_> {
    /// The province that sent the event, for those a province sends.
    fn sender(&self) -> Option<Party> {
        match self {
            Event::Verified { from, .. }
            | Event::Decided { from, .. }
            | Event::CancelRequested { from }
            | Event::Released { from }
            | Event::PackageReceived { from, .. }
            | Event::AttachmentReceived { from, .. }
            | Event::Imported { from, .. }
            | Event::Committed { from } => Some(*from),
            Event::ResendDue | Event::ReminderDue(_) | Event::Operator(_) => None,
        }
    }
}

/// A timer of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseTimer {
    /// Send the automated stage's request again.
    Resend,
    /// Remind the reviewer of the pending step.
    Reminder(ReminderKind),
}

/// A review request, complete but for the evidence's content, which is kept beside the case
/// and copied in by reference (name and SHA-256) when the message is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRequestDraft {
    pub step: ReviewStep,
    pub deadline: NaiveDate,
    /// The case as the reviewer sees it, its `evidence` left empty.
    pub case: CaseSummary,
    pub evidence: Vec<AttachmentRef>,
}

/// What the caller must do: complete data. Only binary content kept beside the case travels by
/// reference (evidence and archive files: name and SHA-256), copied when the message is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send {
        to: ProvinceCode,
        body: Body,
    },
    /// `review.request` to the province that must act.
    RequestReview {
        to: ProvinceCode,
        request: ReviewRequestDraft,
    },
    /// `archive.deliver` and each of the package's files to the in-province.
    DeliverArchive {
        to: ProvinceCode,
        package: Package,
        target_grade: Grade,
        in_school: SchoolCode,
    },
    /// Keep a checked archive file beside the case.
    KeepArchiveFile(Attachment),
    /// Forget the archive files received (before asking for the package again).
    ForgetArchiveFiles,
    /// The national index now places the student in the in-province (school, target grade),
    /// with this status when the case changed it.
    MoveIndex {
        province: ProvinceCode,
        school: SchoolCode,
        grade: Grade,
        status: Option<StudentStatus>,
    },
    /// Keep a reviewer's decision in the case's queryable history.
    Record {
        province: ProvinceCode,
        record: StepRecord,
    },
    /// Refuse what the event's sender sent, with this code (the case itself may have changed,
    /// e.g. to note the error for operators).
    Refuse {
        code: ErrorCode,
        detail: String,
    },
    Arm {
        timer: CaseTimer,
        at: DateTime<Utc>,
    },
    /// Drop the case's timers.
    Disarm,
    /// The case no longer holds the student: take it off the register of open business.
    EndOpenBusiness,
    /// The out-province says it holds no such student while the index says it does: mark the
    /// index entry disputed and ask the province to report the student again.
    IndexDisputed {
        province: ProvinceCode,
        student: StudentId,
    },
}

/// The result of an event.
#[derive(Debug, Clone)]
pub enum Transition {
    Changed(Box<Case>, Vec<Effect>),
    /// Nothing to do (a late or repeated message, a stale timer).
    Ignored(&'static str),
    /// A refusal to answer with; nothing changes.
    Refused(ErrorCode, String),
}

/// Opens a case from admitted facts: asks the out-province to verify.
pub fn open(id: CaseId, facts: Facts, now: DateTime<Utc>, rules: &dyn Rules) -> (Case, Vec<Effect>) {
    let case = Case {
        id,
        facts,
        phase: Phase::Verifying,
        since: now,
        attempts: 1,
        last_error: None,
        resends: 0,
        decisions: vec![],
        chain: None,
    };
    let mut effects = vec![verify::request(&case)];
    effects.extend(status(&case, now));
    effects.push(Effect::Arm { timer: CaseTimer::Resend, at: now + rules.resend_after() });
    (case, effects)
}

/// Applies an event: a province that is no party is refused whatever it sends; otherwise the
/// event's family decides.
pub fn transition(case: &Case, event: Event<'_>, now: DateTime<Utc>, rules: &dyn Rules) -> Transition {
    if let Some(from) = event.sender()
        && !case.facts.is_party(from)
    {
        return Transition::Refused(ErrorCode::NotYourStep, format!("{from} is no party to this case"));
    }
    match event {
        Event::Verified { from, result } => verify::on_verified(case, from, result, now, rules),
        Event::Decided { from, decision } => review::on_decided(case, from, decision, now, rules),
        Event::CancelRequested { from } => cancel::on_cancel(case, from, now, rules),
        Event::Released { from } => cancel::on_released(case, from, now),
        Event::PackageReceived { from, package } => {
            archive::on_part(case, from, archive::Part::Package(package), now, rules)
        }
        Event::AttachmentReceived { from, attachment } => {
            archive::on_part(case, from, archive::Part::Attachment(attachment), now, rules)
        }
        Event::Imported { from, result } => archive::on_imported(case, from, result, now, rules),
        Event::Committed { from } => archive::on_committed(case, from, now),
        Event::ResendDue => timers::on_resend_due(case, now, rules),
        Event::ReminderDue(kind) => timers::on_reminder_due(case, kind, now, rules),
        Event::Operator(action) => operator::on_action(case, action, now, rules),
    }
}

/// `case.status` to both provinces: the state after the change.
fn status(case: &Case, now: DateTime<Utc>) -> [Effect; 2] {
    let body = Body::CaseStatus(CaseStatus {
        business: case.facts.business,
        state: case.state(),
        waiting: case.waiting(),
        changed_at: now,
    });
    [
        Effect::Send { to: case.facts.in_province, body: body.clone() },
        Effect::Send { to: case.facts.out_province, body },
    ]
}

fn release(case: &Case, reason: ReleaseReason) -> Effect {
    Effect::Send { to: case.facts.out_province, body: Body::CaseRelease(CaseRelease { reason }) }
}

fn archive_request(case: &Case) -> Effect {
    Effect::Send { to: case.facts.out_province, body: Body::ArchiveRequest(ArchiveRequest {}) }
}

fn archive_commit(case: &Case) -> Effect {
    Effect::Send { to: case.facts.out_province, body: Body::ArchiveCommit(ArchiveCommit {}) }
}

fn deliver(case: &Case, package: &Package) -> Effect {
    Effect::DeliverArchive {
        to: case.facts.in_province,
        package: package.clone(),
        target_grade: case.facts.target_grade,
        in_school: case.facts.in_school.clone(),
    }
}

fn not_your_step(case: &Case, from: Party) -> Transition {
    let detail = match case.waiting() {
        Some(Waiting { party, step: Some(s), .. }) => format!("the case waits for {s} at {party}, not for {from}"),
        Some(Waiting { party, .. }) => format!("no review step is pending; the case waits for {party}"),
        None => "the case is closed".to_owned(),
    };
    Transition::Refused(ErrorCode::NotYourStep, detail)
}

fn closed_case() -> Transition {
    Transition::Refused(ErrorCode::CaseClosed, "the case is closed".into())
}

/// Enters an automated phase: its request (in `effects`), the new state, a resend timer.
fn enter_automated(
    mut case: Case,
    phase: Phase,
    now: DateTime<Utc>,
    rules: &dyn Rules,
    mut effects: Vec<Effect>,
) -> Transition {
    case.enter(phase, now);
    effects.push(Effect::Disarm);
    effects.extend(status(&case, now));
    effects.push(Effect::Arm { timer: CaseTimer::Resend, at: now + rules.resend_after() });
    Transition::Changed(Box::new(case), effects)
}

/// Closes the case: both provinces told (the receiving school, after a completion, that it must
/// assign the student to a class: domain.md R21), the register and the timers cleared.
fn close(
    mut case: Case,
    outcome: Outcome,
    code: Option<ErrorCode>,
    remark: Option<&str>,
    now: DateTime<Utc>,
    mut effects: Vec<Effect>,
) -> Transition {
    let remark = remark.and_then(|r| Text::parse(&r.chars().take(500).collect::<String>()).ok());
    let to_out = CaseClosed { outcome, code, remark, next: None };
    let next = (outcome == Outcome::Completed).then_some(NextStep::ClassAssignment);
    let to_in = CaseClosed { next, ..to_out.clone() };
    case.enter(Phase::Closed { outcome, code }, now);
    effects.push(Effect::Send { to: case.facts.in_province, body: Body::CaseClosed(to_in) });
    effects.push(Effect::Send { to: case.facts.out_province, body: Body::CaseClosed(to_out) });
    effects.extend(status(&case, now));
    effects.push(Effect::Disarm);
    effects.push(Effect::EndOpenBusiness);
    Transition::Changed(Box::new(case), effects)
}

/// When to send an automated stage's request again: the configured interval, doubling with
/// each attempt up to sixteen times it, so a slow province is not flooded with copies.
fn resend_at(case: &Case, now: DateTime<Utc>, rules: &dyn Rules) -> DateTime<Utc> {
    let factor = 1i32 << case.attempts.saturating_sub(1).min(4);
    now + rules.resend_after() * factor
}

/// The review request of step `step` (complete but for the evidence's content).
fn review_request(case: &Case, held: &HeldStudent, chain: &Chain, step: usize, deadline: NaiveDate) -> Effect {
    let f = &case.facts;
    let s = chain.at(step);
    let summary = CaseSummary {
        business: f.business,
        student_name: f.student_name.clone(),
        student_id: f.student_id.clone(),
        status: held.status,
        in_province: f.in_province,
        in_school: f.in_school.clone(),
        out_province: f.out_province,
        out_school: f.out_school.clone(),
        current_grade: held.grade,
        target_grade: f.target_grade,
        reason: f.reason.clone(),
        evidence: UpTo::default(),
        history: case.decisions.clone(),
    };
    Effect::RequestReview {
        to: f.province(s.side),
        request: ReviewRequestDraft { step: s, deadline, case: summary, evidence: f.evidence.clone() },
    }
}

/// What the current automated stage sends (again).
fn stage_request(case: &Case) -> Vec<Effect> {
    match &case.phase {
        Phase::Verifying => vec![verify::request(case)],
        Phase::Held { stage, .. } => match stage {
            HeldStage::Releasing { outcome, .. } => {
                let reason =
                    if *outcome == Outcome::Cancelled { ReleaseReason::Cancelled } else { ReleaseReason::Rejected };
                vec![release(case, reason)]
            }
            HeldStage::ArchiveRequested { .. } => vec![archive_request(case)],
            HeldStage::Delivering { package } => vec![deliver(case, package)],
            HeldStage::Committing => vec![archive_commit(case)],
            HeldStage::Reviewing { .. } => vec![],
        },
        Phase::Closed { .. } => vec![],
    }
}

/// Enters review step `step`: deadline, request, reminder.
fn start_step(
    mut case: Case,
    student: HeldStudent,
    chain: Chain,
    step: usize,
    now: DateTime<Utc>,
    rules: &dyn Rules,
    mut effects: Vec<Effect>,
) -> Transition {
    let deadline = rules.calendar().add_working_days(business_date(now), rules.review_days());
    effects.push(Effect::Disarm);
    effects.push(review_request(&case, &student, &chain, step, deadline));
    case.enter(Phase::Held { student, stage: HeldStage::Reviewing { chain, step, deadline } }, now);
    effects.extend(status(&case, now));
    if let Some((at, kind)) = timers::next_reminder(deadline, None, now, rules) {
        effects.push(Effect::Arm { timer: CaseTimer::Reminder(kind), at });
    }
    Transition::Changed(Box::new(case), effects)
}

/// The status a completed case gives the student in the in-province, when it changes it: a
/// transfer carries the status as it is (R20, [003 Q49]) except that a primary graduate becomes
/// a student of the receiving junior school (domain.md G-9); an enrolled junior-high graduate is
/// a senior-high student.
pub fn status_on_arrival(business: Business, held: StudentStatus) -> Option<StudentStatus> {
    match (business, held) {
        (Business::Enrollment, _) | (Business::Transfer, StudentStatus::PrimaryGraduate) => {
            Some(StudentStatus::Enrolled)
        }
        (Business::Transfer, _) => None,
    }
}

#[cfg(test)]
mod tests;
