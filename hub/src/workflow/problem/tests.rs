use chrono::{Duration, TimeZone};
use schemas::messages::{Attachment, GroupState as G, MemberState as M, StudentSummary};

use super::*;

struct TestRules;

impl ProblemRules for TestRules {
    fn chain(&self, province: ProvinceCode, mode: HandlingMode) -> Vec<Level> {
        if province.code() == "37" && mode == HandlingMode::Delete {
            vec![Level::School, Level::Bureau, Level::City, Level::Province]
        } else {
            vec![Level::School, Level::Bureau]
        }
    }
    fn evidence_problem(&self, file: &AttachmentRef) -> Option<Refusal> {
        (file.size > 2 * 1024 * 1024).then(|| (ErrorCode::AttachmentTooLarge, "big".into()))
    }
}

fn t(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::hours(h)
}

fn p(code: &str) -> ProvinceCode {
    code.parse().unwrap()
}

fn sid(n: u32) -> StudentId {
    let body = format!("51010420160512{n:03}");
    let r = schemas::ids::ResidentId::from_body(&body).unwrap();
    format!("G{r}").parse().unwrap()
}

fn member(province: &str, n: u32, registered: i64) -> Member {
    Member {
        province: p(province),
        school: format!("31{province}000001").parse().unwrap(),
        student_id: sid(n),
        name: "李明".parse().unwrap(),
        id_document: IdDocument::Resident("510104201605120358".parse().unwrap()),
        registered_at: t(registered),
        key_data_changed_at: None,
        state: M::Waiting,
        comment: None,
    }
}

fn approvals(levels: &[Level]) -> Vec<Approval> {
    levels
        .iter()
        .map(|l| Approval {
            level: *l,
            unit: "某单位".parse().unwrap(),
            reviewer: "赵老师".parse().unwrap(),
            approved_at: t(1),
            opinion: None,
        })
        .collect()
}

fn photo() -> AttachmentRef {
    Attachment::new("a.jpg".parse().unwrap(), "image/jpeg".parse().unwrap(), vec![1, 2, 3]).reference()
}

fn result<'a>(g: &Group, i: usize, mode: HandlingMode, approvals: &'a [Approval]) -> Handled<'a> {
    let m = &g.members[i];
    Handled {
        province: m.province,
        // Leaked to give the borrowed id the test's lifetime.
        student_id: Box::leak(Box::new(m.student_id.clone())),
        mode,
        changed: None,
        approvals,
        evidence: vec![photo()],
    }
}

fn two() -> Group {
    let (g, _) = open(
        CaseId::new_v7(),
        ProblemKind::IdDuplicate,
        Origin::Dedup,
        "id:x".into(),
        vec![member("51", 1, 0), member("44", 2, 10)],
        t(20),
    );
    g
}

fn sends(effects: &[Effect]) -> Vec<(String, &'static str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, body } => Some((to.code().to_owned(), body.message_type().as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_later_record_acts_first_and_its_deletion_attests_the_other_automatically() {
    let g = two();
    assert_eq!(g.members[0].province.code(), "44", "registered later, handles first");
    assert_eq!((g.members[0].state, g.members[1].state), (M::Handling, M::Waiting));
    let a = approvals(&[Level::School, Level::Bureau]);
    let (g, effects) = on_result(&g, &result(&g, 0, HandlingMode::Delete, &a), &TestRules, t(30)).unwrap();
    assert_eq!(g.state, G::Closed);
    assert_eq!((g.members[0].state, g.members[1].state), (M::Deleted, M::AutoAttested));
    let sent = sends(&effects);
    assert!(sent.contains(&("51".into(), "problem.relay")));
    assert!(!sent.iter().any(|(_, t)| *t == "problem.task"), "no task to the other side: {sent:?}");
    assert!(sent.contains(&("51".into(), "problem.status")) && sent.contains(&("44".into(), "problem.status")));
    assert!(effects.contains(&Effect::Release));
}

#[test]
fn two_attestations_of_an_id_duplicate_go_to_arbitration_and_the_decision_binds() {
    let g = two();
    let a = approvals(&[Level::School, Level::Bureau]);
    let (g, effects) = on_result(&g, &result(&g, 0, HandlingMode::Attest, &a), &TestRules, t(30)).unwrap();
    assert_eq!(sends(&effects).iter().filter(|(p, t)| p == "51" && *t == "problem.task").count(), 1);
    let (g, _) = on_result(&g, &result(&g, 1, HandlingMode::Attest, &a), &TestRules, t(31)).unwrap();
    assert_eq!(g.state, G::Arbitration);
    assert_eq!(g.waiting_on(), Some(WaitingOn::NationalOffice));
    // Nothing moves while the national office decides.
    let err = on_result(&g, &result(&g, 1, HandlingMode::Delete, &a), &TestRules, t(32)).unwrap_err();
    assert_eq!(err.0, ErrorCode::NotYourStep);
    let winner = g.members[1].student_id.clone();
    let (g, effects) = decide(&g, &winner, &[(winner.clone(), "证据充分".parse().unwrap())], "moe", t(40)).unwrap();
    assert_eq!((g.members[0].state, g.members[1].state), (M::Rejected, M::Upheld));
    assert!(sends(&effects).contains(&("44".into(), "problem.task")));
    let err = on_result(&g, &result(&g, 0, HandlingMode::Attest, &a), &TestRules, t(41)).unwrap_err();
    assert_eq!(err.0, ErrorCode::ModeNotAllowed);
    let (g, _) = on_result(&g, &result(&g, 0, HandlingMode::Delete, &a), &TestRules, t(42)).unwrap();
    assert_eq!(g.state, G::Closed);
    assert_eq!(g.members[1].state, M::Upheld);
}

#[test]
fn a_name_sex_birth_duplicate_may_keep_both_attestations() {
    let (g, _) = open(
        CaseId::new_v7(),
        ProblemKind::NameSexBirthDuplicate,
        Origin::Dedup,
        "nsb:x".into(),
        vec![member("51", 1, 0), member("44", 2, 10)],
        t(20),
    );
    let a = approvals(&[Level::School, Level::Bureau]);
    let (g, _) = on_result(&g, &result(&g, 0, HandlingMode::Attest, &a), &TestRules, t(30)).unwrap();
    let (g, _) = on_result(&g, &result(&g, 1, HandlingMode::Attest, &a), &TestRules, t(31)).unwrap();
    assert_eq!(g.state, G::Closed);
}

#[test]
fn three_records_auto_attest_only_after_the_second_change_or_delete() {
    let (g, _) = open(
        CaseId::new_v7(),
        ProblemKind::IdDuplicate,
        Origin::Dedup,
        "id:x".into(),
        vec![member("51", 1, 0), member("44", 2, 10), member("33", 3, 5)],
        t(20),
    );
    let a = approvals(&[Level::School, Level::Bureau]);
    let (g, effects) = on_result(&g, &result(&g, 0, HandlingMode::Delete, &a), &TestRules, t(30)).unwrap();
    assert_eq!(g.state, G::Open);
    assert!(!g.members.iter().any(|m| m.state == M::AutoAttested));
    assert_eq!(sends(&effects).iter().filter(|(_, t)| *t == "problem.task").count(), 1, "the next record's turn");
    let (g, _) = on_result(&g, &result(&g, 1, HandlingMode::Delete, &a), &TestRules, t(31)).unwrap();
    assert_eq!(g.state, G::Closed);
    assert_eq!(g.members[2].state, M::AutoAttested);
}

#[test]
fn results_are_checked_for_turn_evidence_approvals_and_change_rules() {
    let g = two();
    let a = approvals(&[Level::School, Level::Bureau]);
    let code = |r: &Handled<'_>| on_result(&g, r, &TestRules, t(30)).unwrap_err().0;
    assert_eq!(code(&result(&g, 1, HandlingMode::Delete, &a)), ErrorCode::NotYourStep, "not its turn");
    let mut r = result(&g, 0, HandlingMode::Delete, &a);
    r.evidence.clear();
    assert_eq!(code(&r), ErrorCode::EvidenceMissing);
    r.evidence = vec![photo(), AttachmentRef { size: 3 * 1024 * 1024, ..photo() }];
    assert_eq!(code(&r), ErrorCode::AttachmentTooLarge);
    let skipped = approvals(&[Level::Bureau]);
    assert_eq!(code(&result(&g, 0, HandlingMode::Delete, &skipped)), ErrorCode::Approvals);
    let mut backwards = approvals(&[Level::School, Level::Bureau]);
    backwards[0].approved_at = t(2);
    assert_eq!(code(&result(&g, 0, HandlingMode::Delete, &backwards)), ErrorCode::Approvals, "bureau before school");
    let mut future = approvals(&[Level::School, Level::Bureau]);
    future[1].approved_at = t(40);
    assert_eq!(code(&result(&g, 0, HandlingMode::Delete, &future)), ErrorCode::Approvals, "approved tomorrow");

    let m = &g.members[0];
    let both = ChangedIdentity {
        name: Some("李敏".parse().unwrap()),
        id_document: Some(IdDocument::Resident("510104201605120374".parse().unwrap())),
    };
    assert_eq!(check_change(m, &both).unwrap_err().0, ErrorCode::ChangeForbidden);
    let none = ChangedIdentity { name: None, id_document: Some(IdDocument::NoDocument { number: None }) };
    assert_eq!(check_change(m, &none).unwrap_err().0, ErrorCode::ChangeForbidden);
    let name = ChangedIdentity { name: Some("李敏".parse().unwrap()), id_document: None };
    assert!(check_change(m, &name).is_ok());
    let mut r = result(&g, 0, HandlingMode::Change, &a);
    r.changed = Some(&name);
    let (g2, _) = on_result(&g, &r, &TestRules, t(30)).unwrap();
    assert_eq!(g2.members[0].name.as_ref(), "李敏");
}

#[test]
fn re_processing_waits_for_the_group_to_finish_and_stays_in_its_province() {
    let g = two();
    let first = g.members[0].student_id.clone();
    let err = reprocess(&g, p("44"), &first, CaseId::new_v7(), t(30)).unwrap_err();
    assert_eq!(err.0, ErrorCode::GroupOpen);
    let a = approvals(&[Level::School, Level::Bureau]);
    let (g, _) = on_result(&g, &result(&g, 0, HandlingMode::Attest, &a), &TestRules, t(30)).unwrap();
    let (g, _) = on_result(&g, &result(&g, 1, HandlingMode::Delete, &a), &TestRules, t(31)).unwrap();
    assert_eq!(g.state, G::Closed);
    let (n, effects) = reprocess(&g, p("44"), &first, CaseId::new_v7(), t(40)).unwrap();
    assert_eq!(n.members.len(), 1);
    assert!(sends(&effects).iter().all(|(p, _)| p == "44"), "nothing to the other side");
    let (n, _) = on_result(&n, &result(&n, 0, HandlingMode::Delete, &a), &TestRules, t(41)).unwrap();
    assert_eq!(n.state, G::Closed);
    let deleted = g.members[1].student_id.clone();
    assert_eq!(reprocess(&g, p("51"), &deleted, CaseId::new_v7(), t(40)).unwrap_err().0, ErrorCode::NotYourStep);
}

#[test]
fn detection_needs_two_provinces_and_does_not_reopen_what_was_settled() {
    let summary = |province: &str, n: u32| {
        let m = member(province, n, 0);
        Candidate {
            province: m.province,
            summary: StudentSummary {
                student_id: m.student_id,
                name: m.name,
                sex: schemas::ids::Sex::Male,
                birth_date: chrono::NaiveDate::from_ymd_opt(2016, 5, 12).unwrap(),
                id_document: m.id_document,
                school: m.school,
                grade: "14".parse().unwrap(),
                status: schemas::messages::StudentStatus::Enrolled,
                problem_record: false,
                open_business: false,
                changed_at: t(0),
                problem_kind: None,
                registered_at: None,
                key_data_changed_at: None,
            },
        }
    };
    let (kind, id) = identity_of(&summary("51", 1).summary);
    assert_eq!(kind, ProblemKind::IdDuplicate);
    let one_province = [summary("51", 1), summary("51", 2)];
    assert!(find(kind, &id, &one_province, None).is_none(), "an in-province duplicate is the province's own");
    let two = [summary("51", 1), summary("44", 2)];
    let found = find(kind, &id, &two, None).unwrap();
    assert_eq!(found.members.len(), 2);
    let mut settled = found.members.clone();
    settled[0].state = M::Attested;
    settled[1].state = M::Upheld;
    assert!(find(kind, &id, &two, Some(&Settled { members: settled.clone() })).is_none(), "settled");
    settled[0].state = M::Deleted;
    assert!(find(kind, &id, &two, Some(&Settled { members: settled.clone() })).is_none(), "deleted left out");
    let three = [summary("51", 1), summary("44", 2), summary("33", 3)];
    settled[0].state = M::Attested;
    assert_eq!(find(kind, &id, &three, Some(&Settled { members: settled })).unwrap().members.len(), 3, "a new one");
}

#[test]
fn a_record_found_later_joins_the_running_group_and_waits_its_turn() {
    let g = two();
    let (g2, effects) = join(&g, vec![member("33", 3, 30), g.members[0].clone()], t(25)).unwrap();
    assert_eq!(g2.members.len(), 3, "the one already in it is not added twice");
    assert_eq!(g2.members[2].state, M::Waiting);
    assert!(!sends(&effects).iter().any(|(_, t)| *t == "problem.task"), "the running turn goes on");
    // Joining a group that waited for arbitration hands the new record its turn.
    let a = approvals(&[Level::School, Level::Bureau]);
    let (g, _) = on_result(&g, &result(&g, 0, HandlingMode::Attest, &a), &TestRules, t(30)).unwrap();
    let (g, _) = on_result(&g, &result(&g, 1, HandlingMode::Attest, &a), &TestRules, t(31)).unwrap();
    assert_eq!(g.state, G::Arbitration);
    let (g, effects) = join(&g, vec![member("33", 3, 30)], t(32)).unwrap();
    assert_eq!((g.state, g.members[2].state), (G::Open, M::Handling));
    assert!(sends(&effects).contains(&("33".into(), "problem.task")));
    assert!(join(&g, vec![member("33", 3, 30)], t(33)).is_none(), "nothing new");
}
