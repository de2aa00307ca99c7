//! Given a case in a stage, when an event happens, then this stage and these effects.

use chrono::{DateTime, Duration, Utc};
use schemas::ErrorCode;
use schemas::MessageType;
use schemas::ids::ProvinceCode;
use schemas::messages::{
    Application, ArchiveImported, Body, Business, Decision, HeldStudent, ImportFailed, Imported, Level, Outcome,
    Refusal, ReminderKind, ReviewDecision, ReviewStep, StudentStatus, VerifyResult,
};
use schemas::{CaseId, Party, samples};

use super::*;
use crate::workflow::calendar::Calendar;
use crate::workflow::index::IndexEntry;

struct TestRules {
    calendar: Calendar,
}

impl Rules for TestRules {
    fn chain(&self, _: Business, _: ProvinceCode, _: ProvinceCode) -> Chain {
        chain_from_levels(&[Level::School, Level::Bureau], &[Level::School, Level::Bureau]).unwrap()
    }
    fn eligible(&self, _: Business, _: ProvinceCode, held: &HeldStudent) -> Result<(), ErrorCode> {
        if held.status == StudentStatus::Suspended { Err(ErrorCode::StatusIneligible) } else { Ok(()) }
    }
    fn file_problem(&self, _: FileUse, file: &AttachmentRef) -> Option<(ErrorCode, String)> {
        (file.size > 1000).then(|| (ErrorCode::AttachmentTooLarge, format!("{}: too large", file.name)))
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

fn province(p: &str) -> ProvinceCode {
    p.parse().unwrap()
}

fn application() -> Application {
    let Body::TransferApply(app) = samples::body(MessageType::TransferApply) else { unreachable!() };
    app
}

fn facts() -> Facts {
    let app = application();
    Facts {
        business: Business::Transfer,
        student_id: app.student_id,
        student_name: app.student_name,
        in_province: province(SD),
        in_school: app.school,
        out_province: province(SC),
        out_school: "3151000123".parse().unwrap(),
        target_grade: app.target_grade,
        reason: app.reason,
        evidence: vec![],
    }
}

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

/// The message types sent to `to`, in order (review requests and deliveries included).
fn sends(effects: &[Effect], to: &str) -> Vec<MessageType> {
    let p = province(to);
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to: t, body } if *t == p => Some(body.message_type()),
            Effect::RequestReview { to: t, .. } if *t == p => Some(MessageType::ReviewRequest),
            Effect::DeliverArchive { to: t, .. } if *t == p => Some(MessageType::ArchiveDeliver),
            _ => None,
        })
        .filter(|t| *t != MessageType::CaseStatus)
        .collect()
}

fn chain_of(c: &Case) -> Chain {
    match &c.phase {
        Phase::Held { stage: HeldStage::Reviewing { chain, .. }, .. } => chain.clone(),
        other => panic!("not reviewing: {other:?}"),
    }
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
    for s in chain_of(&c).steps().to_vec() {
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

fn stage_name(c: &Case) -> &'static str {
    c.phase.name()
}

#[test]
fn opening_asks_the_out_province_to_verify() {
    let (c, effects) = open(CaseId::new_v7(), facts(), now(), &rules());
    assert_eq!(c.phase, Phase::Verifying);
    assert_eq!(sends(&effects, SC), vec![MessageType::VerifyRequest]);
    assert!(effects.iter().any(|e| matches!(e, Effect::Arm { timer: CaseTimer::Resend, .. })));
    assert_eq!(c.waiting().unwrap().party, party(SC));
}

#[test]
fn a_refused_verification_closes_the_case_with_its_code() {
    let (c, _) = open(CaseId::new_v7(), facts(), now(), &rules());
    let r = VerifyResult::Refused(Refusal { code: ErrorCode::ProblemRecord, remark: None });
    let (c, effects) = changed(transition(&c, Event::Verified { from: party(SC), result: &r }, now(), &rules()));
    assert_eq!(c.phase, Phase::Closed { outcome: Outcome::Refused, code: Some(ErrorCode::ProblemRecord) });
    assert_eq!(sends(&effects, SD), vec![MessageType::CaseClosed]);
    assert!(effects.contains(&Effect::Disarm) && effects.contains(&Effect::EndOpenBusiness));
    let statuses = effects.iter().filter(|e| matches!(e, Effect::Send { body: Body::CaseStatus(_), .. })).count();
    assert_eq!(statuses, 2, "the final state goes to both provinces");
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
    let stranger = party("44");
    for event in [
        Event::Released { from: stranger },
        Event::CancelRequested { from: stranger },
        Event::Committed { from: stranger },
    ] {
        assert_eq!(refused(transition(&c, event, now(), &rules())), ErrorCode::NotYourStep);
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
    let Phase::Held {
        stage:
            HeldStage::Releasing {
                outcome: Outcome::Refused,
                code: Some(ErrorCode::StatusIneligible),
                remark: Some(remark),
            },
        ..
    } = &c.phase
    else {
        panic!("{:?}", c.phase)
    };
    // The refusal says what the school must do first: process 复学 (domain.md §A.4).
    assert!(remark.contains("复学"), "{remark}");
    assert_eq!(sends(&effects, SC), vec![MessageType::CaseRelease]);
    let (c, effects) = changed(transition(&c, Event::Released { from: party(SC) }, now(), &rules()));
    assert_eq!(c.phase, Phase::Closed { outcome: Outcome::Refused, code: Some(ErrorCode::StatusIneligible) });
    assert_eq!(sends(&effects, SD), vec![MessageType::CaseClosed]);
}

#[test]
fn reviews_go_in_order_and_only_from_the_right_province_and_step() {
    let c = reviewing();
    let chain = chain_of(&c);
    let first = chain.steps()[0];
    assert_eq!(c.waiting().unwrap().party, party(SD), "the receiving school reviews first");
    // The wrong step, or the right step from the wrong province: refused.
    let later = decision(chain.steps()[2], Decision::Approve);
    assert_eq!(
        refused(transition(&c, Event::Decided { from: party(SD), decision: &later }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    let right = decision(first, Decision::Approve);
    assert_eq!(
        refused(transition(&c, Event::Decided { from: party(SC), decision: &right }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    let (next, effects) =
        changed(transition(&c, Event::Decided { from: party(SD), decision: &right }, now(), &rules()));
    assert_eq!(next.decisions.len(), 1, "the decision is part of the case");
    assert!(effects.iter().any(|e| matches!(e, Effect::Record { province: p, .. } if *p == province(SD))));
    // The next reviewer sees the earlier decisions.
    let request = effects.iter().find_map(|e| match e {
        Effect::RequestReview { request, .. } => Some(request.clone()),
        _ => None,
    });
    assert_eq!(request.map(|r| (r.step, r.case.history.len())), Some((chain.steps()[1], 1)));
}

#[test]
fn the_last_approval_requests_the_archive_and_a_rejection_releases() {
    let c = approved();
    assert_eq!(stage_name(&c), "archive_requested");
    let c = reviewing();
    let d = decision(chain_of(&c).steps()[0], Decision::Reject);
    let (c, effects) = changed(transition(&c, Event::Decided { from: party(SD), decision: &d }, now(), &rules()));
    assert!(matches!(
        c.phase,
        Phase::Held { stage: HeldStage::Releasing { outcome: Outcome::Rejected, code: None, .. }, .. }
    ));
    assert_eq!(sends(&effects, SC), vec![MessageType::CaseRelease]);
    // Once released, the applicant is told who rejected and why in the closing message itself.
    let (c, effects) = changed(transition(&c, Event::Released { from: party(SC) }, now(), &rules()));
    assert_eq!(c.phase, Phase::Closed { outcome: Outcome::Rejected, code: None });
    let closing = effects.iter().find_map(|e| match e {
        Effect::Send { to, body: Body::CaseClosed(closed) } if *to == province(SD) => Some(closed.clone()),
        _ => None,
    });
    let remark = closing.and_then(|c| c.remark).map(|r| r.to_string()).unwrap_or_default();
    assert!(remark.contains("IN_SCHOOL") && remark.contains("意见") && remark.contains("某校"), "{remark}");
}

fn package_for(c: &Case, files: &[schemas::messages::Attachment]) -> schemas::messages::ArchivePackage {
    let Body::ArchivePackage(mut p) = samples::body(MessageType::ArchivePackage) else { unreachable!() };
    p.record.student_id = c.facts.student_id.clone();
    p.attachment = files.iter().map(schemas::messages::Attachment::reference).collect();
    p
}

fn file(name: &str, bytes: &[u8]) -> schemas::messages::Attachment {
    schemas::messages::Attachment::new(name.parse().unwrap(), "application/pdf".parse().unwrap(), bytes.to_vec())
}

#[test]
fn the_package_is_delivered_once_every_announced_file_has_arrived_and_checked() {
    let c = approved();
    let (a, b) = (file("a.pdf", b"%PDF a"), file("b.pdf", b"%PDF b"));
    // A file first, then the package announcing two: not complete yet.
    let (c, effects) =
        changed(transition(&c, Event::AttachmentReceived { from: party(SC), attachment: &a }, now(), &rules()));
    assert_eq!(effects, vec![Effect::KeepArchiveFile(a.clone())]);
    let p = package_for(&c, &[a.clone(), b.clone()]);
    let (c, effects) =
        changed(transition(&c, Event::PackageReceived { from: party(SC), package: &p }, now(), &rules()));
    assert_eq!(stage_name(&c), "archive_requested");
    assert!(effects.is_empty());
    // A file whose content does not match its digest: refused, noted, still waiting.
    let mut forged = b.clone();
    forged.size += 1;
    let (c2, effects) =
        changed(transition(&c, Event::AttachmentReceived { from: party(SC), attachment: &forged }, now(), &rules()));
    assert!(matches!(effects[..], [Effect::Refuse { code: ErrorCode::AttachmentDigest, .. }]));
    assert!(c2.last_error.is_some() && stage_name(&c2) == "archive_requested");
    // Too large for an archive file (the rules' limit): refused.
    let big = file("big.pdf", &[b'x'; 2000]);
    let t = transition(&c, Event::AttachmentReceived { from: party(SC), attachment: &big }, now(), &rules());
    assert!(matches!(changed(t).1[..], [Effect::Refuse { code: ErrorCode::AttachmentTooLarge, .. }]));
    // Only the out-province sends it.
    assert_eq!(
        refused(transition(&c, Event::AttachmentReceived { from: party(SD), attachment: &b }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    // The last file: delivered, with the record and the manifest.
    let (c, effects) =
        changed(transition(&c, Event::AttachmentReceived { from: party(SC), attachment: &b }, now(), &rules()));
    assert_eq!(stage_name(&c), "delivering");
    assert!(effects.iter().any(|e| matches!(e, Effect::DeliverArchive { package, .. } if package.manifest.len() == 2)));
}

#[test]
fn the_two_phase_hand_over_commits_only_after_the_import() {
    let c = approved();
    let a = file("a.pdf", b"%PDF a");
    let p = package_for(&c, std::slice::from_ref(&a));
    let (c, _) = changed(transition(&c, Event::PackageReceived { from: party(SC), package: &p }, now(), &rules()));
    let (c, effects) =
        changed(transition(&c, Event::AttachmentReceived { from: party(SC), attachment: &a }, now(), &rules()));
    assert_eq!(stage_name(&c), "delivering");
    assert_eq!(sends(&effects, SD), vec![MessageType::ArchiveDeliver]);
    let failed = ArchiveImported::Failed(ImportFailed { reason: "班级未设置".parse().unwrap() });
    let (c, effects) = changed(transition(&c, Event::Imported { from: party(SD), result: &failed }, now(), &rules()));
    assert_eq!(stage_name(&c), "delivering", "a failed import leaves the student where he is");
    assert!(sends(&effects, SC).is_empty(), "no commit after a failed import");
    assert!(c.last_error.as_deref().is_some_and(|e| e.contains("班级未设置")));
    let ok = ArchiveImported::Imported(Imported { local_id: None });
    assert_eq!(
        refused(transition(&c, Event::Imported { from: party(SC), result: &ok }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    let (c, effects) = changed(transition(&c, Event::Imported { from: party(SD), result: &ok }, now(), &rules()));
    assert_eq!(stage_name(&c), "committing");
    assert_eq!(sends(&effects, SC), vec![MessageType::ArchiveCommit]);
    let (c, effects) = changed(transition(&c, Event::Committed { from: party(SC) }, now(), &rules()));
    assert_eq!(c.phase, Phase::Closed { outcome: Outcome::Completed, code: None });
    assert!(
        effects.iter().any(|e| matches!(e, Effect::MoveIndex { province: p, status: None, .. } if *p == province(SD))),
        "a transfer keeps the status: {effects:?}"
    );
    // The receiving school is told to assign a class; the sending side is not.
    let next = |to: &str| {
        effects.iter().find_map(|e| match e {
            Effect::Send { to: t, body: Body::CaseClosed(c) } if *t == province(to) => Some(c.next),
            _ => None,
        })
    };
    assert_eq!((next(SD), next(SC)), (Some(Some(NextStep::ClassAssignment)), Some(None)));
}

#[test]
fn arrival_changes_the_status_only_where_the_rules_say() {
    use schemas::messages::StudentStatus::*;
    assert_eq!(status_on_arrival(Business::Transfer, Enrolled), None, "在校 stays 在校");
    assert_eq!(status_on_arrival(Business::Transfer, Withdrawn), None, "kept as it is ([003 Q49])");
    assert_eq!(status_on_arrival(Business::Transfer, PrimaryGraduate), Some(Enrolled), "G-9");
    assert_eq!(status_on_arrival(Business::Enrollment, JuniorGraduate), Some(Enrolled));
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
    let d = decision(chain_of(&c).steps()[0], Decision::Approve);
    assert_eq!(
        refused(transition(&cancelling, Event::Decided { from: party(SD), decision: &d }, now(), &rules())),
        ErrorCode::NotYourStep
    );
    let (done, _) = changed(transition(&cancelling, Event::Released { from: party(SC) }, now(), &rules()));
    assert_eq!(done.phase, Phase::Closed { outcome: Outcome::Cancelled, code: None });
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
    assert_eq!((c2.attempts, c2.resends), (c.attempts + 1, c.resends + 1));
    assert_eq!(sends(&effects, SC), vec![MessageType::ArchiveRequest]);
    assert!(
        effects.contains(&Effect::Arm { timer: CaseTimer::Resend, at: now() + Duration::minutes(60) }),
        "backs off: {effects:?}"
    );
    let mut slow = c2.clone();
    slow.attempts = 30;
    let (_, effects) = changed(transition(&slow, Event::ResendDue, now(), &rules()));
    assert!(
        effects.contains(&Effect::Arm { timer: CaseTimer::Resend, at: now() + Duration::minutes(30 * 16) }),
        "capped at sixteen times the interval"
    );
    // A review step is not resent by timer: it is reminded.
    let r = reviewing();
    assert!(matches!(transition(&r, Event::ResendDue, now(), &rules()), Transition::Ignored(_)));
    let (_, effects) = changed(transition(&r, Event::ReminderDue(ReminderKind::Upcoming), now(), &rules()));
    assert_eq!(sends(&effects, SD), vec![MessageType::CaseReminder]);
    assert!(sends(&effects, SC).is_empty(), "only the acting province before the deadline");
    assert!(effects.iter().any(|e| matches!(e, Effect::Arm { timer: CaseTimer::Reminder(ReminderKind::Due), .. })));
    // Overdue: both parties hear of it.
    let (_, effects) = changed(transition(&r, Event::ReminderDue(ReminderKind::Overdue), now(), &rules()));
    assert_eq!(
        (sends(&effects, SD), sends(&effects, SC)),
        (vec![MessageType::CaseReminder], vec![MessageType::CaseReminder])
    );
}

#[test]
fn operators_resend_rerequest_and_resolve_only_where_it_makes_sense() {
    let c = approved();
    let (again, effects) = changed(transition(&c, Event::Operator(OperatorAction::Rerequest), now(), &rules()));
    assert!(effects.contains(&Effect::ForgetArchiveFiles));
    assert_eq!(sends(&effects, SC), vec![MessageType::ArchiveRequest]);
    assert_eq!(stage_name(&again), "archive_requested");
    let (resolved, _) = changed(transition(&c, Event::Operator(OperatorAction::Resolve), now(), &rules()));
    assert_eq!(resolved.since, now());
    let r = reviewing();
    assert_eq!(
        refused(transition(&r, Event::Operator(OperatorAction::Resolve), now(), &rules())),
        ErrorCode::Unexpected
    );
    assert_eq!(
        refused(transition(&r, Event::Operator(OperatorAction::Rerequest), now(), &rules())),
        ErrorCode::Unexpected
    );
    let (_, effects) = changed(transition(&r, Event::Operator(OperatorAction::Resend), now(), &rules()));
    assert_eq!(sends(&effects, SD), vec![MessageType::ReviewRequest]);
    assert_eq!(OperatorAction::parse("resend"), Some(OperatorAction::Resend));
    assert_eq!(OperatorAction::parse("delete"), None);
}

fn entry(province_code: &str) -> IndexEntry {
    let Body::IndexUpsert(u) = samples::body(MessageType::IndexUpsert) else { unreachable!() };
    let mut summary = u.student.items()[0].clone();
    summary.student_id = application().student_id;
    summary.name = application().student_name;
    summary.school = "3151000123".parse().unwrap();
    IndexEntry { province: province(province_code), summary, disputed_at: None }
}

fn school(province_code: &str) -> Option<SchoolFact> {
    Some(SchoolFact::new("某校".into(), province_code.into(), true, None))
}

/// Admission with every fact in order; each test spoils one.
fn admission<'a>(app: &'a Application, entry: Option<&'a IndexEntry>) -> Admission<'a> {
    Admission {
        business: Business::Transfer,
        sender: province(SD),
        application: app,
        in_school: school(SD),
        enrollment_permitted: false,
        entry,
        out_school: school(SC),
        open: None,
        problem: None,
        now: now(),
    }
}

fn refusal_code(a: &Admission<'_>) -> ErrorCode {
    admit(a, &rules()).expect_err("refused").0
}

#[test]
fn admission_refuses_each_broken_rule_with_its_code() {
    let app = application();
    let e = entry(SC);
    let good = admission(&app, Some(&e));
    let facts = admit(&good, &rules()).unwrap();
    assert_eq!((facts.out_province, facts.in_province), (province(SC), province(SD)));

    let mut a = good.clone();
    a.in_school = None;
    assert_eq!(refusal_code(&a), ErrorCode::SchoolUnknown, "unknown school");
    a.in_school = school("44");
    assert_eq!(refusal_code(&a), ErrorCode::SchoolUnknown, "a school of another province");
    a.in_school = Some(SchoolFact { active: false, ..school(SD).unwrap() });
    assert_eq!(refusal_code(&a), ErrorCode::SchoolUnknown, "a revoked school");
    a.in_school = Some(SchoolFact { code_usable_from: Some(now() + Duration::days(1)), ..school(SD).unwrap() });
    assert_eq!(refusal_code(&a), ErrorCode::SchoolNoCode, "a code not yet synced");

    let mut a = good.clone();
    a.entry = None;
    assert_eq!(refusal_code(&a), ErrorCode::StudentNotFound);
    let mut disputed = e.clone();
    disputed.disputed_at = Some(now());
    a.entry = Some(&disputed);
    assert_eq!(refusal_code(&a), ErrorCode::StudentNotFound, "a disputed entry is not offered");
    let same = entry(SD);
    a.entry = Some(&same);
    assert_eq!(refusal_code(&a), ErrorCode::SameProvince);

    let mut a = good.clone();
    a.out_school = None;
    assert_eq!(refusal_code(&a), ErrorCode::SchoolUnknown, "the student's current school");
    let mut a = good.clone();
    a.open = Some(OpenBusiness { business: "transfer".into(), id: uuid::Uuid::nil(), cancelling: true });
    let (code, detail) = admit(&a, &rules()).unwrap_err();
    assert!(code == ErrorCode::InFlight && detail.contains("cancelled"), "{detail}");

    // An unfinished problem group blocks a transfer whatever its kind, before any open business.
    for kind in [schemas::messages::ProblemKind::IdNameMismatch, schemas::messages::ProblemKind::IdDuplicate] {
        a.problem = Some(kind);
        assert_eq!(refusal_code(&a), ErrorCode::ProblemRecord);
    }
}

#[test]
fn admission_checks_the_evidence_and_the_enrollment_rules() {
    let e = entry(SC);
    let mut app = application();
    let f = file("证明.pdf", b"%PDF");
    app.evidence = UpTo::new(vec![f.clone(), f.clone()]).unwrap();
    assert_eq!(refusal_code(&admission(&app, Some(&e))), ErrorCode::Schema, "two files of one name");
    let mut forged = f.clone();
    forged.size += 1;
    app.evidence = UpTo::new(vec![forged]).unwrap();
    assert_eq!(refusal_code(&admission(&app, Some(&e))), ErrorCode::AttachmentDigest);
    app.evidence = UpTo::new(vec![file("大.pdf", &[b'x'; 2000])]).unwrap();
    assert_eq!(refusal_code(&admission(&app, Some(&e))), ErrorCode::AttachmentTooLarge);

    app.evidence = UpTo::default();
    let mut a = admission(&app, Some(&e));
    a.business = Business::Enrollment;
    assert_eq!(refusal_code(&a), ErrorCode::EvidenceMissing);
    let mut with = application();
    with.evidence = UpTo::new(vec![f]).unwrap();
    let mut a = admission(&with, Some(&e));
    a.business = Business::Enrollment;
    assert_eq!(refusal_code(&a), ErrorCode::NotPermitted);
    a.enrollment_permitted = true;
    assert!(admit(&a, &rules()).is_ok());

    // R35: a post-graduation enrollment is refused for a duplicate problem record, not for a
    // failed authentication.
    use schemas::messages::ProblemKind;
    a.problem = Some(ProblemKind::IdNameMismatch);
    assert!(admit(&a, &rules()).is_ok(), "an authentication problem does not block an enrollment");
    for duplicate in [ProblemKind::IdDuplicate, ProblemKind::NameSexBirthDuplicate] {
        a.problem = Some(duplicate);
        assert_eq!(refusal_code(&a), ErrorCode::ProblemRecord);
    }
}
