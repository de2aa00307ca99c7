//! A cross-province case (跨省业务): the spine that cross-province transfer (跨省转学) and
//! post-graduation enrollment (毕业后跨省就学) share. Pure: a case and an event in, the new case
//! and the effects out; the caller loads, locks, writes and sends.
//!
//! The stages:
//!
//! ```text
//! Verifying ──held──▶ Reviewing(0) ─approve─▶ … Reviewing(n) ─approve─▶ ArchiveRequested
//!    │refused            │reject/cancel                                  │package complete
//!    ▼                   ▼                                               ▼
//! Closed(Refused)    Releasing ─released─▶ Closed(Rejected/Cancelled)  Delivering ─imported─▶
//!                                                                       Committing ─committed─▶ Closed(Completed)
//! ```
//!
//! The archive hand-over is two-phase (DESIGN §7): the out-province commits the transfer-out
//! only after the in-province confirmed the import, so no student is ever missing from both.
//! Cancelling is possible only while a review step is pending (domain.md G-3); it finishes only
//! when the out-province has released its hold.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use schemas::ErrorCode;
use schemas::ids::{Grade, PersonName, ProvinceCode, SchoolCode, StudentId, Text};
use schemas::messages::{
    ArchiveImported, ArchiveRequest, AttachmentRef, Body, Business, CaseClosed, CaseRelease, CaseReminder, CaseState,
    Decision, HeldStudent, Level, NextStep, Outcome, ReleaseReason, ReminderKind, ReviewDecision, ReviewStep, Side,
    StepRecord, StudentStatus, VerifyRequest, VerifyResult, Waiting,
};
use schemas::{CaseId, Party};
use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, business_date, start_of};

/// What is fixed about a case once it is opened (and, for `held` and `chain`, once verified).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub business: Business,
    pub student_id: StudentId,
    pub student_name: PersonName,
    /// The initiating (receiving / enrolling) side.
    pub in_province: ProvinceCode,
    pub in_school: SchoolCode,
    /// The other (sending / graduation) side, from the national index.
    pub out_province: ProvinceCode,
    pub out_school: SchoolCode,
    pub target_grade: Grade,
    pub reason: Text,
    pub evidence: Vec<AttachmentRef>,
    /// The student as the out-province holds him, once verified.
    pub held: Option<HeldStudent>,
    /// The review steps, in order, decided when verification succeeds.
    pub chain: Vec<ReviewStep>,
}

impl Facts {
    /// The province acting on `side`.
    pub fn province(&self, side: Side) -> ProvinceCode {
        match side {
            Side::In => self.in_province,
            Side::Out => self.out_province,
        }
    }
}

/// Where a case stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// 等待校验: waiting for the out-province to verify and hold the student.
    Verifying,
    /// 正在核办: step `step` of the chain is pending until `deadline` (last working day).
    Reviewing {
        step: usize,
        deadline: NaiveDate,
    },
    /// Closing: the out-province must release its hold before the case ends as `outcome`.
    Releasing {
        outcome: Outcome,
        code: Option<ErrorCode>,
        /// What the initiator is told when the case closes: who rejected it and their opinion.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remark: Option<String>,
    },
    /// 等待调档: the package was requested from the out-province.
    ArchiveRequested,
    /// 电子档案已生成: the checked package was delivered; waiting for the import.
    Delivering,
    /// Imported: the out-province is told to commit the transfer-out.
    Committing,
    Closed {
        outcome: Outcome,
        code: Option<ErrorCode>,
    },
}

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Verifying => "verifying",
            Stage::Reviewing { .. } => "reviewing",
            Stage::Releasing { .. } => "releasing",
            Stage::ArchiveRequested => "archive_requested",
            Stage::Delivering => "delivering",
            Stage::Committing => "committing",
            Stage::Closed { .. } => "closed",
        }
    }

    /// Stages machines must advance (resent by timer, "stuck" when they do not move).
    pub fn is_automated(&self) -> bool {
        matches!(
            self,
            Stage::Verifying
                | Stage::Releasing { .. }
                | Stage::ArchiveRequested
                | Stage::Delivering
                | Stage::Committing
        )
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, Stage::Closed { .. })
    }
}

/// A case: its facts, stage, since when, and how many times its current request was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    pub id: CaseId,
    pub facts: Facts,
    pub stage: Stage,
    pub since: DateTime<Utc>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Requests sent again over the case's whole life (by timer or operator): how often a
    /// province failed to answer.
    #[serde(default)]
    pub resends: u32,
}

impl Case {
    /// Who must act now, on which step, since when.
    pub fn waiting(&self) -> Option<Waiting> {
        let f = &self.facts;
        let (party, step) = match &self.stage {
            Stage::Verifying | Stage::Releasing { .. } | Stage::ArchiveRequested | Stage::Committing => {
                (Party::Province(f.out_province), None)
            }
            Stage::Reviewing { step, .. } => {
                let s = f.chain[*step];
                (Party::Province(f.province(s.side)), Some(s))
            }
            Stage::Delivering => (Party::Province(f.in_province), None),
            Stage::Closed { .. } => return None,
        };
        Some(Waiting { party, step, since: self.since })
    }

    /// The state as the provinces see it.
    pub fn state(&self) -> CaseState {
        match &self.stage {
            Stage::Verifying => CaseState::WaitingVerification,
            Stage::Reviewing { .. } => CaseState::UnderReview,
            Stage::Releasing { outcome: Outcome::Cancelled, .. } => CaseState::Cancelling,
            Stage::Releasing { .. } => CaseState::Rejecting,
            Stage::ArchiveRequested => CaseState::ArchiveRequested,
            Stage::Delivering => CaseState::ArchiveDelivering,
            Stage::Committing => CaseState::Committing,
            Stage::Closed { outcome, .. } => match outcome {
                Outcome::Completed => CaseState::Completed,
                Outcome::Rejected => CaseState::Rejected,
                Outcome::Cancelled => CaseState::Cancelled,
                Outcome::Refused => CaseState::Refused,
            },
        }
    }

    fn enter(&mut self, stage: Stage, now: DateTime<Utc>) {
        self.stage = stage;
        self.since = now;
        self.attempts = 1;
        self.last_error = None;
    }
}

/// The rules a case runs by, from configuration.
pub trait Rules {
    /// The review chain of a case between these provinces.
    fn chain(&self, business: Business, in_province: ProvinceCode, out_province: ProvinceCode) -> Vec<ReviewStep>;
    /// Whether the verified student may do this business (e.g. the status list, domain.md G-1).
    ///
    /// # Errors
    /// The refusal code.
    fn eligible(&self, business: Business, out_province: ProvinceCode, held: &HeldStudent) -> Result<(), ErrorCode>;
    fn calendar(&self) -> &Calendar;
    /// Working days per review step (10, [003 Q33]).
    fn review_days(&self) -> u32;
    /// Working days before the deadline for the first reminder.
    fn remind_before(&self) -> u32;
    /// How long an automated stage waits before its request is sent again.
    fn resend_after(&self) -> Duration;
}

/// An operator's action on a case (运维操作), audited by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The hub holds the complete, checked archive package.
    PackageComplete,
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
            | Event::Imported { from, .. }
            | Event::Committed { from } => Some(*from),
            Event::PackageComplete | Event::ResendDue | Event::ReminderDue(_) | Event::Operator(_) => None,
        }
    }
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send {
        to: Party,
        body: Body,
    },
    /// Send the current step's `review.request` (with evidence and history) to its province.
    RequestReview,
    /// Send `archive.deliver` and the attachments to the in-province.
    DeliverArchive,
    /// Forget the received package (before asking for it again).
    DropPackage,
    /// The national index now places the student in the in-province (school, target grade),
    /// with this status when the case changed it.
    MoveIndex {
        status: Option<StudentStatus>,
    },
    /// Keep a reviewer's decision in the case history.
    Record(StepRecord),
    /// Tell both provinces the new state (`case.status`).
    Status,
    ArmResend(DateTime<Utc>),
    ArmReminder(DateTime<Utc>, ReminderKind),
    /// Drop the case's timers.
    Disarm,
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
    /// A refusal to answer with.
    Refused(ErrorCode, String),
}

/// Opens a verified-nothing-yet case: asks the out-province to verify.
pub fn open(id: CaseId, facts: Facts, now: DateTime<Utc>, rules: &dyn Rules) -> (Case, Vec<Effect>) {
    let case = Case { id, facts, stage: Stage::Verifying, since: now, attempts: 1, last_error: None, resends: 0 };
    let effects = vec![verify_request(&case), Effect::Status, Effect::ArmResend(now + rules.resend_after())];
    (case, effects)
}

fn verify_request(case: &Case) -> Effect {
    let f = &case.facts;
    Effect::Send {
        to: Party::Province(f.out_province),
        body: Body::VerifyRequest(VerifyRequest {
            business: f.business,
            student_name: f.student_name.clone(),
            student_id: f.student_id.clone(),
            requesting_province: f.in_province,
            requesting_school: f.in_school.clone(),
            target_grade: f.target_grade,
        }),
    }
}

fn release(case: &Case, reason: ReleaseReason) -> Effect {
    Effect::Send { to: Party::Province(case.facts.out_province), body: Body::CaseRelease(CaseRelease { reason }) }
}

fn archive_request(case: &Case) -> Effect {
    Effect::Send { to: Party::Province(case.facts.out_province), body: Body::ArchiveRequest(ArchiveRequest {}) }
}

fn archive_commit(case: &Case) -> Effect {
    Effect::Send {
        to: Party::Province(case.facts.out_province),
        body: Body::ArchiveCommit(schemas::messages::ArchiveCommit {}),
    }
}

fn closed(case: &Case, outcome: Outcome, code: Option<ErrorCode>, remark: Option<&str>) -> Vec<Effect> {
    let remark = remark.and_then(|r| Text::parse(&r.chars().take(500).collect::<String>()).ok());
    let to_out = CaseClosed { outcome, code, remark, next: None };
    // The receiving school must still assign the arrived student to a class (domain.md R21).
    let next = (outcome == Outcome::Completed).then_some(NextStep::ClassAssignment);
    let to_in = CaseClosed { next, ..to_out.clone() };
    vec![
        Effect::Send { to: Party::Province(case.facts.in_province), body: Body::CaseClosed(to_in) },
        Effect::Send { to: Party::Province(case.facts.out_province), body: Body::CaseClosed(to_out) },
        // The final state, like every change, to both provinces.
        Effect::Status,
        Effect::Disarm,
    ]
}

/// The first reminder due for a step with this deadline, from `now` on.
fn next_reminder(
    deadline: NaiveDate,
    after: Option<ReminderKind>,
    now: DateTime<Utc>,
    rules: &dyn Rules,
) -> Option<(DateTime<Utc>, ReminderKind)> {
    let nine = Duration::hours(9);
    let candidates = [
        (start_of(rules.calendar().sub_working_days(deadline, rules.remind_before())) + nine, ReminderKind::Upcoming),
        (start_of(deadline) + nine, ReminderKind::Due),
        (start_of(deadline + Duration::days(1)) + nine, ReminderKind::Overdue),
    ];
    let order = |k: ReminderKind| match k {
        ReminderKind::Upcoming => 0,
        ReminderKind::Due => 1,
        ReminderKind::Overdue => 2,
    };
    candidates
        .into_iter()
        .filter(|(_, k)| after.is_none_or(|a| order(*k) > order(a)))
        .find(|(at, k)| *at > now || *k == ReminderKind::Overdue)
        .map(|(at, k)| (at.max(now), k))
}

/// Enters review step `step`: deadline, request, reminder.
fn start_step(
    mut case: Case,
    step: usize,
    now: DateTime<Utc>,
    rules: &dyn Rules,
    mut effects: Vec<Effect>,
) -> Transition {
    let deadline = rules.calendar().add_working_days(business_date(now), rules.review_days());
    case.enter(Stage::Reviewing { step, deadline }, now);
    effects.push(Effect::Disarm);
    effects.push(Effect::RequestReview);
    effects.push(Effect::Status);
    if let Some((at, kind)) = next_reminder(deadline, None, now, rules) {
        effects.push(Effect::ArmReminder(at, kind));
    }
    Transition::Changed(Box::new(case), effects)
}

fn enter_automated(
    mut case: Case,
    stage: Stage,
    now: DateTime<Utc>,
    rules: &dyn Rules,
    mut effects: Vec<Effect>,
) -> Transition {
    case.enter(stage, now);
    effects.push(Effect::Disarm);
    effects.push(Effect::Status);
    effects.push(Effect::ArmResend(now + rules.resend_after()));
    Transition::Changed(Box::new(case), effects)
}

fn close(
    mut case: Case,
    outcome: Outcome,
    code: Option<ErrorCode>,
    remark: Option<&str>,
    now: DateTime<Utc>,
    mut effects: Vec<Effect>,
) -> Transition {
    effects.extend(closed(&case, outcome, code, remark));
    case.enter(Stage::Closed { outcome, code }, now);
    Transition::Changed(Box::new(case), effects)
}

/// When to send an automated stage's request again: the configured interval, doubling with
/// each attempt up to sixteen times it, so a slow province is not flooded with copies.
fn resend_at(case: &Case, now: DateTime<Utc>, rules: &dyn Rules) -> DateTime<Utc> {
    let factor = 1i32 << case.attempts.saturating_sub(1).min(4);
    now + rules.resend_after() * factor
}

/// What the current automated stage sends (again).
fn stage_request(case: &Case) -> Vec<Effect> {
    match &case.stage {
        Stage::Verifying => vec![verify_request(case)],
        Stage::Releasing { outcome, .. } => {
            let reason =
                if *outcome == Outcome::Cancelled { ReleaseReason::Cancelled } else { ReleaseReason::Rejected };
            vec![release(case, reason)]
        }
        Stage::ArchiveRequested => vec![archive_request(case)],
        Stage::Delivering => vec![Effect::DeliverArchive],
        Stage::Committing => vec![archive_commit(case)],
        Stage::Reviewing { .. } | Stage::Closed { .. } => vec![],
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

/// Applies an event. Every (stage, event) pair is written out: a new stage or event is a
/// compile error until it is decided here.
pub fn transition(case: &Case, event: Event<'_>, now: DateTime<Utc>, rules: &dyn Rules) -> Transition {
    let f = &case.facts;
    let out = Party::Province(f.out_province);
    let inp = Party::Province(f.in_province);
    if let Some(from) = event.sender()
        && from != out
        && from != inp
    {
        // Whatever the stage: a province that is no party learns so, and nothing changes.
        return Transition::Refused(ErrorCode::NotYourStep, format!("{from} is no party to this case"));
    }
    let c = case.clone();
    match (&case.stage, event) {
        // --- Verification (转出省份校验) ---
        (Stage::Verifying, Event::Verified { from, .. }) if from != out => Transition::Refused(
            ErrorCode::NotYourStep,
            format!("verification is the out-province's ({out}), not {from}'s"),
        ),
        (Stage::Verifying, Event::Verified { result: VerifyResult::Refused(r), .. }) => {
            let remark = r.remark.as_ref().map(|t| t.to_string()).unwrap_or_else(|| r.code.zh().to_owned());
            // The index said the out-province holds the student, the out-province says it does
            // not: the index must not go on offering him (operators see the disagreement, and
            // the province is asked to report him again).
            let effects = if r.code == ErrorCode::StudentNotFound {
                vec![Effect::IndexDisputed { province: f.out_province, student: f.student_id.clone() }]
            } else {
                vec![]
            };
            close(c, Outcome::Refused, Some(r.code), Some(&remark), now, effects)
        }
        (Stage::Verifying, Event::Verified { result: VerifyResult::Held(held), .. }) => {
            let mut c = c;
            c.facts.held = Some(held.clone());
            c.facts.out_school = held.school.clone();
            match rules.eligible(f.business, f.out_province, held) {
                Err(code) => {
                    // The out-province holds him already: it must let go before the case ends.
                    let effects = vec![release(&c, ReleaseReason::Rejected)];
                    let remark = Some(refusal_text(code, held.status));
                    enter_automated(
                        c,
                        Stage::Releasing { outcome: Outcome::Refused, code: Some(code), remark },
                        now,
                        rules,
                        effects,
                    )
                }
                Ok(()) => {
                    c.facts.chain = rules.chain(f.business, f.in_province, f.out_province);
                    start_step(c, 0, now, rules, vec![])
                }
            }
        }
        (
            Stage::Reviewing { .. }
            | Stage::Releasing { .. }
            | Stage::ArchiveRequested
            | Stage::Delivering
            | Stage::Committing
            | Stage::Closed { .. },
            Event::Verified { .. },
        ) => Transition::Ignored("verification result after verification"),

        // --- Reviews (核办) ---
        (Stage::Reviewing { step, .. }, Event::Decided { from, decision }) => {
            let expected = f.chain[*step];
            if decision.step != expected || from != Party::Province(f.province(expected.side)) {
                return not_your_step(case, from);
            }
            let record = StepRecord {
                step: expected,
                decision: decision.decision,
                unit: decision.unit.clone(),
                reviewer: decision.reviewer.clone(),
                opinion: decision.opinion.clone(),
                decided_at: now,
            };
            match decision.decision {
                Decision::Reject => {
                    // The applicant learns why from the closing message itself, not only from the
                    // case history.
                    let remark = format!(
                        "{} 不同意 / rejected by {} ({}): {}",
                        expected, decision.unit, decision.reviewer, decision.opinion
                    );
                    let effects = vec![Effect::Record(record), release(&c, ReleaseReason::Rejected)];
                    let stage = Stage::Releasing { outcome: Outcome::Rejected, code: None, remark: Some(remark) };
                    enter_automated(c, stage, now, rules, effects)
                }
                Decision::Approve if step + 1 < f.chain.len() => {
                    start_step(c, step + 1, now, rules, vec![Effect::Record(record)])
                }
                Decision::Approve => {
                    let effects = vec![Effect::Record(record), archive_request(&c)];
                    enter_automated(c, Stage::ArchiveRequested, now, rules, effects)
                }
            }
        }
        (Stage::Closed { .. }, Event::Decided { .. }) => {
            Transition::Refused(ErrorCode::CaseClosed, "the case is closed".into())
        }
        (
            Stage::Verifying
            | Stage::Releasing { .. }
            | Stage::ArchiveRequested
            | Stage::Delivering
            | Stage::Committing,
            Event::Decided { from, .. },
        ) => not_your_step(case, from),

        // --- Cancellation (撤销): the initiator, only while a review step is pending ---
        (_, Event::CancelRequested { from }) if from != inp => {
            Transition::Refused(ErrorCode::CancelRefused, format!("only the initiating province ({inp}) may cancel"))
        }
        (Stage::Reviewing { .. }, Event::CancelRequested { .. }) => {
            let effects = vec![release(&c, ReleaseReason::Cancelled)];
            let stage = Stage::Releasing { outcome: Outcome::Cancelled, code: None, remark: None };
            enter_automated(c, stage, now, rules, effects)
        }
        (Stage::Verifying, Event::CancelRequested { .. }) => Transition::Refused(
            ErrorCode::CancelRefused,
            "the case is waiting for verification; it can be cancelled once a review step is pending".into(),
        ),
        (Stage::Releasing { .. }, Event::CancelRequested { .. }) => {
            Transition::Refused(ErrorCode::CancelRefused, "the case is already being closed".into())
        }
        (Stage::ArchiveRequested | Stage::Delivering | Stage::Committing, Event::CancelRequested { .. }) => {
            Transition::Refused(
                ErrorCode::CancelRefused,
                "the final approval is given; the archive hand-over runs to its end (domain.md G-3)".into(),
            )
        }
        (Stage::Closed { outcome: Outcome::Completed, .. }, Event::CancelRequested { .. }) => {
            Transition::Refused(ErrorCode::CancelRefused, "调档完毕: a completed case cannot be cancelled".into())
        }
        (Stage::Closed { .. }, Event::CancelRequested { .. }) => {
            Transition::Refused(ErrorCode::CaseClosed, "the case is closed".into())
        }

        // --- Release of the out-province's hold ---
        (Stage::Releasing { outcome, code, remark }, Event::Released { from }) if from == out => {
            let (outcome, code) = (*outcome, *code);
            let remark = remark.clone().or_else(|| code.map(|k| k.zh().to_owned()));
            close(c, outcome, code, remark.as_deref(), now, vec![])
        }
        (Stage::Releasing { .. }, Event::Released { from }) => not_your_step(case, from),
        (
            Stage::Verifying
            | Stage::Reviewing { .. }
            | Stage::ArchiveRequested
            | Stage::Delivering
            | Stage::Committing
            | Stage::Closed { .. },
            Event::Released { .. },
        ) => Transition::Ignored("release without a pending release"),

        // --- The archive hand-over (调档), two-phase ---
        (Stage::ArchiveRequested, Event::PackageComplete) => {
            enter_automated(c, Stage::Delivering, now, rules, vec![Effect::DeliverArchive])
        }
        (
            Stage::Verifying
            | Stage::Reviewing { .. }
            | Stage::Releasing { .. }
            | Stage::Delivering
            | Stage::Committing
            | Stage::Closed { .. },
            Event::PackageComplete,
        ) => Transition::Ignored("package outside the archive request"),

        (Stage::Delivering, Event::Imported { from, .. }) if from != inp => not_your_step(case, from),
        (Stage::Delivering, Event::Imported { result: ArchiveImported::Imported(_), .. }) => {
            // Only now may the out-province let the student go.
            enter_automated(c, Stage::Committing, now, rules, vec![archive_commit(case)])
        }
        (Stage::Delivering, Event::Imported { result: ArchiveImported::Failed(failure), .. }) => {
            let mut c = c;
            c.last_error = Some(format!("import failed: {}", failure.reason));
            // Delivered again when the resend timer fires, or by an operator.
            let at = resend_at(&c, now, rules);
            Transition::Changed(Box::new(c), vec![Effect::ArmResend(at)])
        }
        (
            Stage::Verifying
            | Stage::Reviewing { .. }
            | Stage::Releasing { .. }
            | Stage::ArchiveRequested
            | Stage::Committing
            | Stage::Closed { .. },
            Event::Imported { .. },
        ) => Transition::Ignored("import result outside the delivery"),

        (Stage::Committing, Event::Committed { from }) if from == out => {
            let status = status_on_arrival(f.business, f.held.as_ref().map(|h| h.status));
            close(c, Outcome::Completed, None, None, now, vec![Effect::MoveIndex { status }])
        }
        (Stage::Committing, Event::Committed { from }) => not_your_step(case, from),
        (
            Stage::Verifying
            | Stage::Reviewing { .. }
            | Stage::Releasing { .. }
            | Stage::ArchiveRequested
            | Stage::Delivering
            | Stage::Closed { .. },
            Event::Committed { .. },
        ) => Transition::Ignored("commit confirmation outside the commit"),

        // --- Timers ---
        (
            Stage::Verifying
            | Stage::Releasing { .. }
            | Stage::ArchiveRequested
            | Stage::Delivering
            | Stage::Committing,
            Event::ResendDue,
        ) => {
            let mut c = c;
            c.attempts += 1;
            c.resends += 1;
            let mut effects = stage_request(&c);
            effects.push(Effect::ArmResend(resend_at(&c, now, rules)));
            Transition::Changed(Box::new(c), effects)
        }
        (Stage::Reviewing { .. } | Stage::Closed { .. }, Event::ResendDue) => {
            Transition::Ignored("no request to resend")
        }

        (Stage::Reviewing { step, deadline }, Event::ReminderDue(kind)) => {
            let s = f.chain[*step];
            let reminder = Body::CaseReminder(CaseReminder { step: s, deadline: *deadline, kind });
            let acting = f.province(s.side);
            let mut effects = vec![Effect::Send { to: Party::Province(acting), body: reminder.clone() }];
            if kind == ReminderKind::Overdue {
                // Overdue: the other party learns that its case is late, too.
                let other = if acting == f.in_province { f.out_province } else { f.in_province };
                effects.push(Effect::Send { to: Party::Province(other), body: reminder });
            }
            if let Some((at, next)) = next_reminder(*deadline, Some(kind), now, rules) {
                effects.push(Effect::ArmReminder(at, next));
            }
            Transition::Changed(Box::new(c), effects)
        }
        (
            Stage::Verifying
            | Stage::Releasing { .. }
            | Stage::ArchiveRequested
            | Stage::Delivering
            | Stage::Committing
            | Stage::Closed { .. },
            Event::ReminderDue(_),
        ) => Transition::Ignored("no review step pending"),

        // --- Operators ---
        (Stage::Closed { .. }, Event::Operator(_)) => {
            Transition::Refused(ErrorCode::CaseClosed, "the case is closed".into())
        }
        (stage, Event::Operator(OperatorAction::Resend)) if stage.is_automated() => {
            let mut c = c;
            c.attempts += 1;
            c.resends += 1;
            let mut effects = stage_request(&c);
            effects.push(Effect::ArmResend(resend_at(&c, now, rules)));
            Transition::Changed(Box::new(c), effects)
        }
        (Stage::Reviewing { .. }, Event::Operator(OperatorAction::Resend)) => {
            // A reviewer's request is in the province's inbox; sending it again is harmless.
            Transition::Changed(Box::new(c), vec![Effect::RequestReview])
        }
        (Stage::ArchiveRequested | Stage::Delivering, Event::Operator(OperatorAction::Rerequest)) => {
            enter_automated(c, Stage::ArchiveRequested, now, rules, vec![Effect::DropPackage, archive_request(case)])
        }
        (_, Event::Operator(OperatorAction::Rerequest)) => Transition::Refused(
            ErrorCode::Unexpected,
            "a package can be requested again only while it is requested or being delivered".into(),
        ),
        (stage, Event::Operator(OperatorAction::Resolve)) if stage.is_automated() => {
            let mut c = c;
            c.since = now;
            c.last_error = None;
            Transition::Changed(Box::new(c), vec![])
        }
        (_, Event::Operator(OperatorAction::Resolve)) => Transition::Refused(
            ErrorCode::Unexpected,
            "only a stuck automated stage can be resolved; an overdue review waits for its reviewer (domain.md G-6)"
                .into(),
        ),
        (_, Event::Operator(OperatorAction::Resend)) => {
            Transition::Refused(ErrorCode::Unexpected, "nothing to resend at this stage".into())
        }
    }
}

/// What the initiator is told when the student's record status refuses the business: the code's
/// text and what the school must do first (domain.md §A.4).
pub fn refusal_text(code: ErrorCode, status: StudentStatus) -> String {
    use StudentStatus::*;
    let advice = match status {
        Suspended => {
            "该生处于休学状态,须先由转出学校办理复学 / the student is suspended: the sending school must process 复学 (resumption) first"
        }
        Resumed => {
            "复学后学籍状态应为在校,请转出省核对学籍状态 / a resumed student should be 在校: the out-province must correct the status first"
        }
        JuniorGraduate => {
            "初中毕业生请办理毕业后跨省就学 / a junior-high graduate goes through post-graduation enrollment (毕业后跨省就学), not a transfer"
        }
        PrimaryGraduate | Enrolled => "该省不允许此学籍状态转出 / the out-province does not let this status transfer",
        SeniorGraduate | Completed | Attended => {
            "已毕业、结业或肄业,不能办理跨省转学 / graduated, completed or left: no cross-province transfer"
        }
        Deceased | ToVocational | StudyingElsewhere => {
            "须先由转出学校办理恢复在校生申请 / the sending school must first restore the student to 在校 (恢复在校生申请)"
        }
        Missing => {
            "学籍状态为失踪,须先由转出学校核实并恢复 / the student is recorded as missing: the sending school must verify and restore the record first"
        }
        DroppedOut => {
            "辍学学生须先经主管教育局审核返校 / a dropout must first return to school, reviewed by the supervising bureau"
        }
        SuspectedDropout => "疑似辍学学生须先返校 / a suspected dropout must first return to school",
        Abroad | OtherDeparture | Withdrawn | Expelled => {
            "该省不允许此学籍状态转出 / the out-province does not let this status transfer"
        }
    };
    format!("{}:{} ({}). {advice}", code.zh(), status.label_zh(), code.en())
}

/// The review chain from the levels each side's province configures: the in-side's levels
/// first, then the out-side's (transfer: 转入学校 → 转入教育局 → 转出学校 → 转出教育局, [002 §18]).
/// The status a completed case gives the student in the in-province, when it changes it: a
/// transfer carries the status as it is (R20, [003 Q49]) except that a primary graduate becomes
/// a student of the receiving junior school (domain.md G-9); an enrolled junior-high graduate is
/// a senior-high student.
pub fn status_on_arrival(business: Business, held: Option<StudentStatus>) -> Option<StudentStatus> {
    match (business, held) {
        (Business::Enrollment, _) | (Business::Transfer, Some(StudentStatus::PrimaryGraduate)) => {
            Some(StudentStatus::Enrolled)
        }
        (Business::Transfer, _) => None,
    }
}

pub fn chain_from_levels(in_levels: &[Level], out_levels: &[Level]) -> Vec<ReviewStep> {
    in_levels
        .iter()
        .map(|l| ReviewStep::new(Side::In, *l))
        .chain(out_levels.iter().map(|l| ReviewStep::new(Side::Out, *l)))
        .collect()
}

#[cfg(test)]
mod tests;
