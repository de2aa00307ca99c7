//! Given a case in a stage, when an event happens, then this stage and these effects.

use chrono::{DateTime, Duration, Utc};
use schemas::ErrorCode;
use schemas::ids::ProvinceCode;
use schemas::messages::{
    ArchiveImported, Body, Business, Decision, HeldStudent, ImportFailed, Imported, Level, Outcome, Refusal,
    ReminderKind, ReviewDecision, ReviewStep, Side, StudentStatus, VerifyResult,
};
use schemas::{CaseId, Party, samples};

use super::*;
use crate::workflow::calendar::Calendar;

struct TestRules {
    calendar: Calendar,
}

impl Rules for TestRules {
    fn chain(&self, _: Business, _: ProvinceCode, _: ProvinceCode) -> Vec<ReviewStep> {
        chain_from_levels(&[Level::School, Level::Bureau], &[Level::School, Level::Bureau])
    }
    fn eligible(&self, _: Business, _: ProvinceCode, held: &HeldStudent) -> Result<(), ErrorCode> {
        if held.status == StudentStatus::Suspended { Err(ErrorCode::StatusIneligible) } else { Ok(()) }
    }
    fn calendar(&self) -> &Calendar {
        &self.calendar
    }
    fn review_days(&self) -> u32 {
        10
    }
    fn remind_before(&self) -> u32 {
        2
    }
    fn resend_after(&self) -> Duration {
        Duration::minutes(30)
    }
}

fn rules() -> TestRules {
    TestRules { calendar: Calendar::default() }
}

fn now() -> DateTime<Utc> {
    "2026-11-23T02:00:00Z".parse().unwrap() // Monday 10:00 CST
}

const SD: &str = "37";
const SC: &str = "51";

fn party(p: &str) -> Party {
    Party::Province(p.parse().unwrap())
}

fn facts() -> Facts {
    let Body::TransferApply(app) = samples::body(MessageType::TransferApply) else { unreachable!() };
    Facts {
        business: Business::Transfer,
        student_id: app.student_id,
        student_name: app.student_name,
        in_province: SD.parse().unwrap(),
        in_school: app.school,
        out_province: SC.parse().unwrap(),
        out_school: "3151000123".parse().unwrap(),
        target_grade: app.target_grade,
        reason: app.reason,
        evidence: vec![],
        held: None,
        chain: vec![],
    }
}

use schemas::MessageType;

fn held(status: StudentStatus) -> VerifyResult {
    let Body::VerifyResult(VerifyResult::Held(mut h)) = samples::body(MessageType::VerifyResult) else {
        unreachable!()
    };
    h.status = status;
    VerifyResult::Held(h)
}

fn changed(t: Transition) -> (Case, Vec<Effect>) {
    match t {
        Transition::Changed(c, e) => (*c, e),
        other => panic!("expected a change, got {other:?}"),
    }
}

fn refused(t: Transition) -> ErrorCode {
    match t {
        Transition::Refused(code, _) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn decision(step: ReviewStep, d: Decision) -> ReviewDecision {
    ReviewDecision {
        step,
        decision: d,
        unit: "某校".parse().unwrap(),
        reviewer: "审核人".parse().unwrap(),
        opinion: "意见".parse().unwrap(),
    }
}

fn sends(effects: &[Effect], to: &str) -> Vec<MessageType> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to: t, body } if *t == party(to) => Some(body.message_type()),
            _ => None,
        })
        .collect()
}

/// A case verified and in its first review step.
fn reviewing() -> Case {
    let (c, _) = open(CaseId::new_v7(), facts(), now(), &rules());
    changed(transition(
        &c,
        Event::Verified { from: party(SC), result: &held(StudentStatus::Enrolled) },
        now(),
        &rules(),
    ))
    .0
}

/// Approves every step.
fn approved() -> Case {
    let mut c = reviewing();
    for s in c.facts.chain.clone() {
        let who = c.facts.province(s.side).code();
        c = changed(transition(
            &c,
            Event::Decided { from: party(who), decision: &decision(s, Decision::Approve) },
            now(),
            &rules(),
        ))
        .0;
    }
    c
}

#[test]
fn opening_asks_the_out_province_to_verify() {
    let (c, effects) = open(CaseId::new_v7(), facts(), now(), &rules());
    assert_eq!(c.stage, Stage::Verifying);
    assert_eq!(sends(&effects, SC), vec![MessageType::VerifyRequest]);
    assert!(effects.iter().any(|e| matches!(e, Effect::ArmResend(_))));
    assert_eq!(c.waiting().unwrap().party, party(SC));
}

#[test]
fn a_refused_verification_closes_the_case_with_its_code() {
    let (c, _) = open(CaseId::new_v7(), facts(), now(), &rules());
    let r = VerifyResult::Refused(Refusal { code: ErrorCode::ProblemRecord, remark: None });
    let (c, effects) = changed(transition(&c, Event::Verified { from: party(SC), result: &r }, now(), &rules()));
    assert_eq!(c.stage, Stage::Closed { outcome: Outcome::Refused, code: Some(ErrorCode::ProblemRecord) });
    assert_eq!(sends(&effects, SD), vec![MessageType::CaseClosed]);
    assert!(effects.contains(&Effect::Disarm));
    assert!(effects.contains(&Effect::Status), "the final state goes to both provinces");
    assert!(!effects.iter().any(|e| matches!(e, Effect::IndexDisputed { .. })), "a problem record disputes nothing");
}

#[test]
fn a_student_the_out_province_does_not_find_disputes_the_index_entry() {
    let (c, _) = open(CaseId::new_v7(), facts(), now(), &rules());
    let r = VerifyResult::Refused(Refusal { code: ErrorCode::StudentNotFound, remark: None });
    let (_, effects) = changed(transition(&c, Event::Verified { from: party(SC), result: &r }, now(), &rules()));
    assert!(
        effects
            .contains(&Effect::IndexDisputed { province: c.facts.out_province, student: c.facts.student_id.clone() }),
        "{effects:?}"
    );
}

#[test]
fn a_province_that_is_no_party_is_refused_whatever_it_sends() {
    let (c, _) = open(CaseId::new_v7(), facts(), now(), &rules());
    let stranger = Party::Province("44".parse().unwrap());
    for event in [
        Event::Released { from: stranger },
        Event::CancelRequested { from: stranger },
        Event::Committed { from: stranger },
    ] {
        match transition(&c, event, now(), &rules()) {
            Transition::Refused(code, _) => assert_eq!(code, ErrorCode::NotYourStep),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_ineligible_status_releases_the_hold_before_closing() {
    let (c, _) = open(CaseId::new_v7(), facts(), now(), &rules());
    let (c, effects) = changed(transition(
        &c,
        Event::Verified { from: party(SC), result: &held(StudentStatus::Suspended) },
        now(),
        &rules(),
    ));
    let Stage::Releasing { outcome: Outcome::Refused, code: Some(ErrorCode::StatusIneligible), remark: Some(remark) } =
        &c.stage
    else {
        panic!("{:?}", c.stage)
    };
    // The refusal says what the school must do first: process 复学 (domain.md §A.4).
    assert!(remark.contains("复学"), "{remark}");
    assert_eq!(sends(&effects, SC), vec![MessageType::CaseRelease]);
    let (c, effects) = changed(transition(&c, Event::Released { from: party(SC) }, now(), &rules()));
    assert_eq!(c.stage, Stage::Closed { outcome: Outcome::Refused, code: Some(ErrorCode::StatusIneligible) });
    assert_eq!(sends(&effects, SD), vec![MessageType::CaseClosed]);
}

#[test]
fn reviews_go_in_order_and_only_from_the_right_province_and_step() {
    let c = reviewing();
    assert_eq!(c.facts.chain.len(), 4);
    let first = c.facts.chain[0];
    assert_eq!(first, ReviewStep::new(Side::In, Level::School));
    let Stage::Reviewing { deadline, .. } = c.stage else { panic!() };
    assert_eq!(deadline.to_string(), "2026-12-07", "10 working days after Monday 23 November");
    // Wrong province, wrong step.
    let d = decision(first, Decision::Approve);
    assert_eq!(
        refused(transition(&c, Event::Decided { from: party(SC), decision: &d }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    let later = decision(c.facts.chain[2], Decision::Approve);
    assert_eq!(
        refused(transition(&c, Event::Decided { from: party(SD), decision: &later }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    // Right one.
    let (c2, effects) = changed(transition(&c, Event::Decided { from: party(SD), decision: &d }, now(), &rules()));
    assert!(matches!(c2.stage, Stage::Reviewing { step: 1, .. }));
    assert!(effects.contains(&Effect::RequestReview));
    assert!(effects.iter().any(|e| matches!(e, Effect::Record(r) if r.step == first)));
}

#[test]
fn the_last_approval_requests_the_archive_and_a_rejection_releases() {
    let c = approved();
    assert_eq!(c.stage, Stage::ArchiveRequested);
    let c = reviewing();
    let d = decision(c.facts.chain[0], Decision::Reject);
    let (c, effects) = changed(transition(&c, Event::Decided { from: party(SD), decision: &d }, now(), &rules()));
    assert!(matches!(c.stage, Stage::Releasing { outcome: Outcome::Rejected, code: None, .. }));
    assert_eq!(sends(&effects, SC), vec![MessageType::CaseRelease]);
    // Once released, the applicant is told who rejected and why in the closing message itself.
    let (c, effects) = changed(transition(&c, Event::Released { from: party(SC) }, now(), &rules()));
    assert_eq!(c.stage, Stage::Closed { outcome: Outcome::Rejected, code: None });
    let closing = effects.iter().find_map(|e| match e {
        Effect::Send { to, body: Body::CaseClosed(closed) } if *to == party(SD) => Some(closed.clone()),
        _ => None,
    });
    let remark = closing.and_then(|c| c.remark).map(|r| r.to_string()).unwrap_or_default();
    assert!(remark.contains("IN_SCHOOL") && remark.contains("意见") && remark.contains("某校"), "{remark}");
}

#[test]
fn the_two_phase_hand_over_commits_only_after_the_import() {
    let c = approved();
    let (c, effects) = changed(transition(&c, Event::PackageComplete, now(), &rules()));
    assert_eq!(c.stage, Stage::Delivering);
    assert!(effects.contains(&Effect::DeliverArchive));
    let failed = ArchiveImported::Failed(ImportFailed { reason: "班级未设置".parse().unwrap() });
    let (c, effects) = changed(transition(&c, Event::Imported { from: party(SD), result: &failed }, now(), &rules()));
    assert_eq!(c.stage, Stage::Delivering, "a failed import leaves the student where he is");
    assert!(sends(&effects, SC).is_empty(), "no commit after a failed import");
    assert!(c.last_error.as_deref().is_some_and(|e| e.contains("班级未设置")));
    let ok = ArchiveImported::Imported(Imported { local_id: None });
    assert_eq!(
        refused(transition(&c, Event::Imported { from: party(SC), result: &ok }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    let (c, effects) = changed(transition(&c, Event::Imported { from: party(SD), result: &ok }, now(), &rules()));
    assert_eq!(c.stage, Stage::Committing);
    assert_eq!(sends(&effects, SC), vec![MessageType::ArchiveCommit]);
    let (c, effects) = changed(transition(&c, Event::Committed { from: party(SC) }, now(), &rules()));
    assert_eq!(c.stage, Stage::Closed { outcome: Outcome::Completed, code: None });
    assert!(effects.contains(&Effect::MoveIndex { status: None }), "a transfer keeps the status");
}

#[test]
fn arrival_changes_the_status_only_where_the_rules_say() {
    use schemas::messages::StudentStatus::*;
    assert_eq!(status_on_arrival(Business::Transfer, Some(Enrolled)), None, "在校 stays 在校");
    assert_eq!(status_on_arrival(Business::Transfer, Some(Withdrawn)), None, "kept as it is ([003 Q49])");
    assert_eq!(status_on_arrival(Business::Transfer, Some(PrimaryGraduate)), Some(Enrolled), "G-9");
    assert_eq!(status_on_arrival(Business::Enrollment, Some(JuniorGraduate)), Some(Enrolled));
}

#[test]
fn cancellation_follows_domain_g3() {
    // Only while a review step is pending, only by the initiator.
    let (verifying, _) = open(CaseId::new_v7(), facts(), now(), &rules());
    assert_eq!(
        refused(transition(&verifying, Event::CancelRequested { from: party(SD) }, now(), &rules())),
        ErrorCode::CancelRefused
    );
    let c = reviewing();
    assert_eq!(
        refused(transition(&c, Event::CancelRequested { from: party(SC) }, now(), &rules())),
        ErrorCode::CancelRefused
    );
    let (cancelling, effects) = changed(transition(&c, Event::CancelRequested { from: party(SD) }, now(), &rules()));
    assert_eq!(cancelling.state(), schemas::messages::CaseState::Cancelling);
    assert_eq!(sends(&effects, SC), vec![MessageType::CaseRelease]);
    // A decision racing the cancel, processed after it, is refused.
    let d = decision(c.facts.chain[0], Decision::Approve);
    assert_eq!(
        refused(transition(&cancelling, Event::Decided { from: party(SD), decision: &d }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    let (done, _) = changed(transition(&cancelling, Event::Released { from: party(SC) }, now(), &rules()));
    assert_eq!(done.stage, Stage::Closed { outcome: Outcome::Cancelled, code: None });
    // After the final approval, and after completion: refused.
    let after = approved();
    assert_eq!(
        refused(transition(&after, Event::CancelRequested { from: party(SD) }, now(), &rules())),
        ErrorCode::CancelRefused
    );
    assert_eq!(
        refused(transition(&done, Event::CancelRequested { from: party(SD) }, now(), &rules())),
        ErrorCode::CaseClosed
    );
}

#[test]
fn timers_resend_automated_stages_and_remind_reviewers() {
    let c = approved();
    let (c2, effects) = changed(transition(&c, Event::ResendDue, now(), &rules()));
    assert_eq!(c2.attempts, c.attempts + 1);
    assert_eq!(sends(&effects, SC), vec![MessageType::ArchiveRequest]);
    assert!(effects.contains(&Effect::ArmResend(now() + Duration::minutes(60))), "backs off: {effects:?}");
    let mut slow = c2.clone();
    slow.attempts = 30;
    let (_, effects) = changed(transition(&slow, Event::ResendDue, now(), &rules()));
    assert!(effects.contains(&Effect::ArmResend(now() + Duration::minutes(30 * 16))), "capped at sixteen times");
    let r = reviewing();
    assert!(matches!(transition(&r, Event::ResendDue, now(), &rules()), Transition::Ignored(_)));
    let (_, effects) = changed(transition(&r, Event::ReminderDue(ReminderKind::Upcoming), now(), &rules()));
    assert_eq!(sends(&effects, SD), vec![MessageType::CaseReminder]);
    assert!(effects.iter().any(|e| matches!(e, Effect::ArmReminder(_, ReminderKind::Due))));
    let (_, effects) = changed(transition(&r, Event::ReminderDue(ReminderKind::Overdue), now(), &rules()));
    assert!(!effects.iter().any(|e| matches!(e, Effect::ArmReminder(..))), "one overdue reminder");
}

#[test]
fn operators_resend_rerequest_and_resolve() {
    let c = approved();
    let (c, _) = changed(transition(&c, Event::PackageComplete, now(), &rules()));
    let later = now() + Duration::hours(50);
    let (again, effects) = changed(transition(&c, Event::Operator(OperatorAction::Rerequest), later, &rules()));
    assert_eq!(again.stage, Stage::ArchiveRequested);
    assert!(effects.contains(&Effect::DropPackage));
    assert_eq!(again.since, later);
    let (resolved, _) = changed(transition(&c, Event::Operator(OperatorAction::Resolve), later, &rules()));
    assert_eq!((resolved.stage.clone(), resolved.since), (Stage::Delivering, later));
    let r = reviewing();
    assert_eq!(
        refused(transition(&r, Event::Operator(OperatorAction::Rerequest), later, &rules())),
        ErrorCode::Unexpected
    );
    // An overdue review is its reviewer's to settle: resolving it would hide it from the list.
    assert_eq!(
        refused(transition(&r, Event::Operator(OperatorAction::Resolve), later, &rules())),
        ErrorCode::Unexpected
    );
}
