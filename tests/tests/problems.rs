//! Every rule of cross-province problem records (domain.md §B.3, §C), in process: the hub's
//! message handling against a real PostgreSQL database, no broker, no spawned processes.

use certs::Role;
use chrono::{Duration, Utc};
use e2e::inprocess::{Hub, Sent};
use e2e::student;
use schemas::Envelope;
use schemas::ids::IdDocument;
use schemas::messages::{
    Application, Attachment, Body, ChangedIdentity, GroupState, HandlingMode, Level, LookupKey, LookupRequest,
    MemberState, ProblemReprocess, ProblemResult, ProblemTask, StudentSummary, UpTo,
};

async fn hub() -> Hub {
    let hub = Hub::new(
        &["37", "44", "51", "33"],
        "[provinces.\"37\"]\nproblem_delete = [\"SCHOOL\", \"BUREAU\", \"CITY\", \"PROVINCE\"]\n",
    )
    .await;
    let rows: Vec<(String, String)> = ["51", "44", "37", "33"]
        .iter()
        .flat_map(|p| (0..7).map(move |n| (format!("31{p}{n:06}"), (*p).to_owned())))
        .collect();
    let refs: Vec<(&str, &str, bool, Option<chrono::DateTime<Utc>>)> =
        rows.iter().map(|(c, p)| (c.as_str(), p.as_str(), true, None)).collect();
    hub.schools(&refs).await;
    hub
}

/// The same student (same resident ID and name) registered in `province` as record `n`,
/// registered `days_later` days after the first.
fn copy(of: &StudentSummary, province: &str, n: u32, days_later: i64) -> StudentSummary {
    let mut s = student(province, n);
    s.id_document = of.id_document.clone();
    s.name = of.name.clone();
    s.sex = of.sex;
    s.birth_date = of.birth_date;
    s.registered_at = of.registered_at.map(|t| t + Duration::days(days_later));
    s
}

fn tasks(sent: &Sent) -> Vec<(String, ProblemTask)> {
    sent.replies
        .iter()
        .filter_map(|e| match &e.body {
            Body::ProblemTask(t) => Some((e.recipient.to_string(), t.clone())),
            _ => None,
        })
        .collect()
}

fn types_to(sent: &Sent, province: &str) -> Vec<&'static str> {
    sent.to(province).iter().map(|e| e.message_type().as_str()).collect()
}

fn photo(name: &str, bytes: usize) -> Attachment {
    let mut content = vec![0xFF, 0xD8, 0xFF, 0xE0];
    content.resize(bytes.max(4), 0);
    Attachment::new(name.parse().unwrap(), "image/jpeg".parse().unwrap(), content)
}

use e2e::approvals;

fn result(task: &ProblemTask, mode: HandlingMode) -> ProblemResult {
    ProblemResult {
        group_id: task.group_id,
        student_id: task.student_id.clone(),
        mode,
        changed: None,
        approval: approvals(&[Level::School, Level::Bureau]),
        evidence: UpTo::new(vec![photo("证明.jpg", 64)]).unwrap(),
    }
}

/// 37's application for a transfer of `s`.
fn transfer_of(s: &StudentSummary) -> Application {
    Application {
        school: "3137000001".parse().unwrap(),
        student_name: s.name.clone(),
        student_id: s.student_id.clone(),
        target_grade: s.grade,
        reason: "随父母迁居。".parse().unwrap(),
        evidence: UpTo::new(vec![]).unwrap(),
    }
}

async fn lookup(hub: &Hub, s: &StudentSummary) -> schemas::messages::LookupMatch {
    let req =
        LookupRequest { name: s.name.clone(), key: LookupKey::StudentId(s.student_id.clone()), requested_by: None };
    let sent = hub.send("37", Body::LookupRequest(req), None).await;
    match &sent.replies[0].body {
        Body::LookupResult(r) => r.student.clone().expect("found"),
        other => panic!("{other:?}"),
    }
}

/// Another two-province ID duplicate, of record `n`; returns the task 44 got.
async fn duplicate_of(hub: &Hub, n: u32) -> ProblemTask {
    let first = student("51", n);
    hub.index("51", vec![first.clone()]).await;
    let sent = hub.send_envelope(&e2e::index_upsert("44", vec![copy(&first, "44", n, 7)])).await;
    tasks(&sent).remove(0).1
}

/// A two-province ID duplicate: 51 registered first, 44 a week later. Returns the task 44 got.
async fn duplicate(hub: &Hub) -> (StudentSummary, StudentSummary, ProblemTask) {
    let first = student("51", 1);
    hub.index("51", vec![first.clone()]).await;
    let second = copy(&first, "44", 1, 7);
    let sent = hub.send_envelope(&e2e::index_upsert("44", vec![second.clone()])).await;
    let t = tasks(&sent);
    assert_eq!(t.len(), 1, "one task, to the later record: {sent:?}");
    assert_eq!(t[0].0, "prov-44");
    assert!(t[0].1.attest_allowed);
    (first, second, t[0].1.clone())
}

#[tokio::test]
async fn the_later_side_deletes_and_the_other_is_attested_automatically_without_a_task() {
    let hub = hub().await;
    let (first, _, task) = duplicate(&hub).await;
    let before = lookup(&hub, &first).await;
    assert!(before.problem_record && !before.transfer_eligible, "the index flag follows the group: {before:?}");
    assert_eq!(before.reason, vec![schemas::ErrorCode::ProblemRecord]);

    let sent = hub.send("44", Body::ProblemResult(result(&task, HandlingMode::Delete)), None).await;
    assert_eq!(sent.refusal(), None, "{sent:?}");
    assert!(tasks(&sent).is_empty(), "no task to the other side");
    assert!(types_to(&sent, "51").contains(&"problem.relay"));
    for p in ["44", "51"] {
        let status = sent.to(p).into_iter().find_map(|e| match &e.body {
            Body::ProblemStatus(s) => Some(s.clone()),
            _ => None,
        });
        let status = status.unwrap_or_else(|| panic!("{p} is told: {sent:?}"));
        assert_eq!(status.state, GroupState::Closed);
        let states: Vec<_> = status.member.items().iter().map(|m| (m.province.code().to_owned(), m.state)).collect();
        assert!(
            states.contains(&("51".into(), MemberState::AutoAttested))
                && states.contains(&("44".into(), MemberState::Deleted))
        );
    }
    let after = lookup(&hub, &first).await;
    assert!(!after.problem_record && after.transfer_eligible, "the flag clears with the group: {after:?}");
    // The same report again opens nothing: the group settled it.
    let again = hub
        .send_envelope(&e2e::index_upsert(
            "51",
            vec![StudentSummary { changed_at: first.changed_at + Duration::seconds(5), ..first.clone() }],
        ))
        .await;
    assert!(tasks(&again).is_empty(), "{again:?}");
}

#[tokio::test]
async fn both_attest_the_national_office_decides_and_the_decision_binds() {
    let hub = hub().await;
    let (first, second, task) = duplicate(&hub).await;
    let sent = hub.send("44", Body::ProblemResult(result(&task, HandlingMode::Attest)), None).await;
    let next = tasks(&sent);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, "prov-51", "the turn passes to the other side");
    assert!(types_to(&sent, "51").contains(&"problem.relay"));
    let sent = hub.send("51", Body::ProblemResult(result(&next[0].1, HandlingMode::Attest)), None).await;
    assert_eq!(sent.refusal(), None);
    let group = task.group_id.to_string();

    // The national office's queue shows it, with both sides' approvals and evidence.
    let (status, queue) = hub.ops(Role::National("moe".into()), "GET", "/arbitrations", None).await;
    assert_eq!(status, 200);
    assert_eq!(queue[0]["group"]["groupId"], group.as_str());
    let (_, detail) = hub.ops(Role::National("moe".into()), "GET", &format!("/problems/{group}"), None).await;
    let results: Vec<_> = detail["events"].as_array().unwrap().iter().filter(|e| e["what"] == "result").collect();
    assert_eq!(results.len(), 2, "{detail}");
    for r in &results {
        assert_eq!(r["detail"]["approval"].as_array().unwrap().len(), 2);
        let sha = r["detail"]["evidence"][0]["sha256"].as_str().unwrap();
        let (status, _) =
            hub.ops(Role::National("moe".into()), "GET", &format!("/problems/{group}/evidence/{sha}"), None).await;
        assert_eq!(status, 200, "the national office opens the evidence");
    }

    // Only a national-office certificate decides.
    let decision = serde_json::json!({ "upheld": first.student_id, "comments": [{ "studentId": second.student_id, "comment": "户籍在四川" }] });
    let path = format!("/problems/{group}/decision");
    let (status, body) = hub.ops(Role::Operator("zhao".into()), "POST", &path, Some(decision.clone())).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("E_FORBIDDEN")));
    let (status, _) = hub.ops(Role::Province("51".parse().unwrap()), "POST", &path, Some(decision.clone())).await;
    assert_eq!(status, 403);
    let (status, body) = hub.ops(Role::National("moe".into()), "POST", &path, Some(decision)).await;
    assert_eq!(status, 200, "{body}");

    // The rejected side (44) got a task allowing only change or delete; attesting is refused.
    let pending: Vec<(String, ProblemTask)> = outbox_tasks(&hub).await;
    let rejected = pending.iter().rev().find(|(to, _)| to == "prov-44").expect("a task to 44").1.clone();
    assert!(!rejected.attest_allowed);
    let sent = hub.send("44", Body::ProblemResult(result(&rejected, HandlingMode::Attest)), None).await;
    assert_eq!(sent.refusal(), Some("E_MODE_NOT_ALLOWED"));
    let sent = hub.send("44", Body::ProblemResult(result(&rejected, HandlingMode::Delete)), None).await;
    assert_eq!(sent.refusal(), None);
    let (_, detail) = hub.ops(Role::Operator("zhao".into()), "GET", &format!("/problems/{group}"), None).await;
    assert_eq!(detail["group"]["state"], "CLOSED", "{detail}");
    let states: Vec<&str> =
        detail["group"]["members"].as_array().unwrap().iter().map(|m| m["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["DELETED", "UPHELD"]);
}

/// Every `problem.task` in the outbox, in order, with its recipient.
async fn outbox_tasks(hub: &Hub) -> Vec<(String, ProblemTask)> {
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT body FROM outbox_message WHERE message_type = 'problem.task' ORDER BY outbox_id")
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    rows.iter()
        .map(|b| {
            let env: Envelope = schemas::codec::from_xml(b, schemas::DEFAULT_MAX_BYTES).unwrap();
            let Body::ProblemTask(t) = env.body else { unreachable!() };
            (env.recipient.to_string(), t)
        })
        .collect()
}

fn load_member(s: &StudentSummary, p: &str) -> serde_json::Value {
    serde_json::json!({
        "province": p, "school": s.school, "studentId": s.student_id, "name": s.name,
        "idDocument": s.id_document, "registeredAt": s.registered_at,
    })
}

#[tokio::test]
async fn three_provinces_auto_attest_only_after_the_second_change_or_delete() {
    let hub = hub().await;
    let first = student("51", 1);
    let (second, third) = (copy(&first, "33", 1, 3), copy(&first, "44", 1, 9));
    let file = serde_json::json!({
        "kind": "ID_DUPLICATE",
        "member": [load_member(&first, "51"), load_member(&second, "33"), load_member(&third, "44")],
    });
    let (status, body) = hub.ops(Role::National("moe".into()), "POST", "/problems", Some(file)).await;
    assert_eq!(status, 201, "{body}");
    let t = outbox_tasks(&hub).await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, "prov-44", "registered last, handles first");
    let sent = hub.send("44", Body::ProblemResult(result(&t[0].1, HandlingMode::Delete)), None).await;
    assert!(!sent.replies.iter().any(|e| matches!(&e.body, Body::ProblemStatus(s) if s.state == GroupState::Closed)));
    assert!(!sent.replies.iter().any(
        |e| matches!(&e.body, Body::ProblemStatus(s) if s.member.items().iter().any(|m| m.state == MemberState::AutoAttested))
    ));
    let next = tasks(&sent);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, "prov-33", "no automatic attestation yet; the next record's turn");
    let sent = hub.send("33", Body::ProblemResult(result(&next[0].1, HandlingMode::Delete)), None).await;
    let closed = sent.to("51").into_iter().find_map(|e| match &e.body {
        Body::ProblemStatus(s) => Some(s.clone()),
        _ => None,
    });
    let closed = closed.expect("51 is told");
    assert_eq!(closed.state, GroupState::Closed);
    assert!(closed.member.items().iter().any(|m| m.province.code() == "51" && m.state == MemberState::AutoAttested));
    assert!(tasks(&sent).is_empty(), "no task to the record attested automatically");
}

#[tokio::test]
async fn evidence_approvals_and_changes_are_checked_with_their_codes() {
    let hub = hub().await;
    let (_, _, task) = duplicate(&hub).await;
    let refusal = |r: ProblemResult| {
        let hub = &hub;
        async move { hub.send("44", Body::ProblemResult(r), None).await.refusal() }
    };
    // Another province of the group answering for 44's record: not its record.
    let other = hub.send("51", Body::ProblemResult(result(&task, HandlingMode::Delete)), None).await;
    assert_eq!(other.refusal(), Some("E_GROUP_NOT_FOUND"));
    let mut r = result(&task, HandlingMode::Delete);
    r.evidence = UpTo::new(vec![]).unwrap();
    assert_eq!(refusal(r.clone()).await, Some("E_EVIDENCE_MISSING"));
    r.evidence = UpTo::new(vec![photo("大.jpg", 2 * 1024 * 1024 + 1)]).unwrap();
    assert_eq!(refusal(r.clone()).await, Some("E_ATTACHMENT_TOO_LARGE"));
    r.evidence = UpTo::new(vec![Attachment::new(
        "说明.pdf".parse().unwrap(),
        "application/pdf".parse().unwrap(),
        b"%PDF".to_vec(),
    )])
    .unwrap();
    assert_eq!(refusal(r.clone()).await, Some("E_ATTACHMENT_TYPE"));
    r.evidence = UpTo::new(vec![photo("一.jpg", 1024 * 1024), photo("二.jpg", 2 * 1024 * 1024)]).unwrap();
    r.approval = approvals(&[Level::Bureau]);
    assert_eq!(refusal(r.clone()).await, Some("E_APPROVALS"), "a level of the chain skipped");

    let mut change = result(&task, HandlingMode::Change);
    change.changed = Some(ChangedIdentity {
        name: Some("李敏".parse().unwrap()),
        id_document: Some(IdDocument::Resident("510104201605120374".parse().unwrap())),
    });
    assert_eq!(refusal(change.clone()).await, Some("E_CHANGE_FORBIDDEN"), "name and ID together");
    change.changed = Some(ChangedIdentity { name: None, id_document: Some(IdDocument::NoDocument { number: None }) });
    assert_eq!(refusal(change.clone()).await, Some("E_CHANGE_FORBIDDEN"), "a formal ID to no ID");

    // Several files, each within its limit, and the full chain: accepted.
    assert_eq!(refusal(ProblemResult { approval: approvals(&[Level::School, Level::Bureau]), ..r }).await, None);
}

#[tokio::test]
async fn a_province_s_own_chain_applies_to_its_deletions() {
    let hub = hub().await;
    let first = student("51", 2);
    hub.index("51", vec![first.clone()]).await;
    let sent = hub.send_envelope(&e2e::index_upsert("37", vec![copy(&first, "37", 2, 7)])).await;
    let task = tasks(&sent)[0].1.clone();
    let sent = hub.send("37", Body::ProblemResult(result(&task, HandlingMode::Delete)), None).await;
    assert_eq!(sent.refusal(), Some("E_APPROVALS"), "Shandong escalates a deletion to the province");
    let mut r = result(&task, HandlingMode::Delete);
    r.approval = approvals(&[Level::School, Level::Bureau, Level::City, Level::Province]);
    assert_eq!(hub.send("37", Body::ProblemResult(r), None).await.refusal(), None);
}

#[tokio::test]
async fn re_processing_waits_for_the_group_to_finish_and_sends_nothing_to_the_other_side() {
    let hub = hub().await;
    let (first, _, task) = duplicate(&hub).await;
    let sent = hub.send("44", Body::ProblemResult(result(&task, HandlingMode::Attest)), None).await;
    let other = tasks(&sent)[0].1.clone();
    hub.send("51", Body::ProblemResult(result(&other, HandlingMode::Attest)), None).await;
    let reprocess = ProblemReprocess {
        group_id: task.group_id,
        student_id: first.student_id.clone(),
        reason: "佐证有误".parse().unwrap(),
    };
    let sent = hub.send("51", Body::ProblemReprocess(reprocess.clone()), None).await;
    assert_eq!(sent.refusal(), Some("E_GROUP_OPEN"), "waiting for arbitration is unfinished");

    let decision = serde_json::json!({ "upheld": first.student_id });
    let path = format!("/problems/{}/decision", task.group_id);
    assert_eq!(hub.ops(Role::National("moe".into()), "POST", &path, Some(decision)).await.0, 200);
    let rejected = outbox_tasks(&hub).await.into_iter().rev().find(|(to, _)| to == "prov-44").unwrap().1;
    hub.send("44", Body::ProblemResult(result(&rejected, HandlingMode::Delete)), None).await;

    let sent = hub.send("51", Body::ProblemReprocess(reprocess), None).await;
    assert_eq!(sent.refusal(), None, "{sent:?}");
    assert!(sent.to("44").is_empty(), "nothing to the other province: {sent:?}");
    let t = tasks(&sent);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, "prov-51");
    assert_eq!(t[0].1.member.items().len(), 1, "a group of this record alone");
    let sent = hub.send("51", Body::ProblemResult(result(&t[0].1, HandlingMode::Delete)), None).await;
    assert!(sent.to("44").is_empty());
}

#[tokio::test]
async fn a_transfer_of_a_student_in_an_open_group_is_refused_with_its_code() {
    let hub = hub().await;
    let (first, _, _) = duplicate(&hub).await;
    let app = transfer_of(&first);
    let sent = hub.send("37", Body::TransferApply(app), None).await;
    assert_eq!(sent.refusal(), Some("E_PROBLEM_RECORD"), "{sent:?}");
}

#[tokio::test]
async fn one_student_id_claimed_by_two_provinces_is_a_group_not_a_dropped_update() {
    let hub = hub().await;
    let first = student("51", 3);
    hub.index("51", vec![first.clone()]).await;
    let claim = StudentSummary { school: "3144000001".parse().unwrap(), ..first.clone() };
    let sent = hub.send_envelope(&e2e::index_upsert("44", vec![claim])).await;
    assert!(matches!(&sent.replies[0].body, Body::IndexResult(r) if r.conflicting == 1));
    let t = tasks(&sent);
    assert_eq!(t.len(), 1, "{sent:?}");
    let provinces: Vec<&str> = t[0].1.member.items().iter().map(|m| m.province.code()).collect();
    assert!(provinces.contains(&"51") && provinces.contains(&"44"));
}

#[tokio::test]
async fn the_national_office_loads_legacy_groups_once() {
    let hub = hub().await;
    let a = student("51", 4);
    let b = copy(&a, "44", 4, 2);
    let member = load_member;
    let file = serde_json::json!({ "kind": "ID_DUPLICATE", "member": [member(&a, "51"), member(&b, "44")] });
    let (status, _) = hub.ops(Role::Operator("zhao".into()), "POST", "/problems", Some(file.clone())).await;
    assert_eq!(status, 403, "only the national office loads groups");
    let (status, first) = hub.ops(Role::National("moe".into()), "POST", "/problems", Some(file.clone())).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = hub.ops(Role::National("moe".into()), "POST", "/problems", Some(file)).await;
    assert_eq!((status, &again["groupId"]), (201, &first["groupId"]), "the same group");
    let (_, list) = hub.ops(Role::Operator("zhao".into()), "GET", "/problems?waiting_on=44", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["origin"], "loaded");
    let one_province = serde_json::json!({ "kind": "ID_DUPLICATE", "member": [member(&a, "51")] });
    let (status, body) = hub.ops(Role::National("moe".into()), "POST", "/problems", Some(one_province)).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn a_third_province_s_record_joins_the_running_group() {
    let hub = hub().await;
    let first = student("51", 5);
    hub.index("51", vec![first.clone()]).await;
    let sent = hub.send_envelope(&e2e::index_upsert("33", vec![copy(&first, "33", 5, 3)])).await;
    let task = tasks(&sent)[0].1.clone();
    let sent = hub.send_envelope(&e2e::index_upsert("44", vec![copy(&first, "44", 5, 9)])).await;
    assert!(tasks(&sent).is_empty(), "it waits its turn: {sent:?}");
    let joined = sent.to("44").into_iter().find_map(|e| match &e.body {
        Body::ProblemStatus(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(joined.expect("44 is told it joined").member.items().len(), 3);
    let sent = hub.send("33", Body::ProblemResult(result(&task, HandlingMode::Delete)), None).await;
    let next = tasks(&sent);
    assert_eq!(next.len(), 1, "two records remain: no automatic attestation yet");
    let to = next[0].0.trim_start_matches("prov-").to_owned();
    let sent = hub.send(&to, Body::ProblemResult(result(&next[0].1, HandlingMode::Delete)), None).await;
    assert!(sent.replies.iter().any(|e| matches!(&e.body, Body::ProblemStatus(s) if s.state == GroupState::Closed
        && s.member.items().iter().filter(|m| m.state == MemberState::AutoAttested).count() == 1)));
}

/// Who holds `student_id` in the register of open business.
async fn holder(hub: &Hub, student_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT business FROM open_business WHERE student_id = $1")
        .bind(student_id)
        .fetch_optional(&hub.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_student_busy_in_a_case_is_held_by_his_group_once_the_case_lets_go() {
    use schemas::messages::{CaseCancel, CaseReleased, HeldStudent, VerifyResult};
    let hub = hub().await;
    let first = student("51", 6);
    hub.index("51", vec![first.clone()]).await;
    let app = transfer_of(&first);
    let accepted = hub.send("37", Body::TransferApply(app), None).await;
    let case = accepted.replies[0].case_id.expect("a case");
    let second = copy(&first, "44", 6, 7);
    hub.send_envelope(&e2e::index_upsert("44", vec![second.clone()])).await;
    assert_eq!(holder(&hub, first.student_id.as_ref()).await.as_deref(), Some("transfer"), "the case runs on");
    assert_eq!(holder(&hub, second.student_id.as_ref()).await.as_deref(), Some("problem"));

    // The retry finds him still busy and waits again; once the case has let go, it holds him.
    let fire = || async {
        sqlx::query("UPDATE timer SET due_at = now() WHERE kind = 'problem.hold'").execute(&hub.pool).await.unwrap();
        hub::scheduler::fire_due(&hub.ctx).await.unwrap()
    };
    assert_eq!(fire().await, 1);
    assert_eq!(holder(&hub, first.student_id.as_ref()).await.as_deref(), Some("transfer"));
    let Body::VerifyResult(VerifyResult::Held(h)) = schemas::samples::body(schemas::MessageType::VerifyResult) else {
        unreachable!()
    };
    let held =
        VerifyResult::Held(HeldStudent { status: first.status, school: first.school.clone(), grade: first.grade, ..h });
    hub.send("51", Body::VerifyResult(held), Some(case)).await;
    hub.send("37", Body::CaseCancel(CaseCancel { reason: "家长决定不转学。".parse().unwrap() }), Some(case)).await;
    hub.send("51", Body::CaseReleased(CaseReleased {}), Some(case)).await;
    assert_eq!(holder(&hub, first.student_id.as_ref()).await, None, "the case let go");
    assert_eq!(fire().await, 1);
    assert_eq!(holder(&hub, first.student_id.as_ref()).await.as_deref(), Some("problem"), "the group holds him now");
    assert_eq!(fire().await, 0, "and stops retrying");
}

#[tokio::test]
async fn the_evidence_of_a_closed_group_is_pruned_after_its_retention_and_its_history_stays() {
    let hub = hub().await;
    let (_, _, task) = duplicate(&hub).await;
    hub.send("44", Body::ProblemResult(result(&task, HandlingMode::Delete)), None).await;
    let open = duplicate_of(&hub, 7).await;
    hub.send("44", Body::ProblemResult(result(&open, HandlingMode::Attest)), None).await;
    let files = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM problem_evidence").fetch_one(&hub.pool).await.unwrap()
    };
    assert_eq!(files().await, 2);
    let retention = hub::config::Retention { problem_evidence_secs: 86_400, ..Default::default() };
    hub::housekeeping::prune(&hub.pool, &retention).await.unwrap();
    assert_eq!(files().await, 2, "closed today: kept");
    sqlx::query("UPDATE problem_group SET closed_at = now() - interval '2 days' WHERE state = 'closed'")
        .execute(&hub.pool)
        .await
        .unwrap();
    let pruned = hub::housekeeping::prune(&hub.pool, &retention).await.unwrap();
    assert_eq!(pruned.problem_evidence, 1);
    assert_eq!(files().await, 1, "the open group's evidence stays");
    let (_, detail) = hub.ops(Role::National("moe".into()), "GET", &format!("/problems/{}", task.group_id), None).await;
    let result = detail["events"].as_array().unwrap().iter().find(|e| e["what"] == "result").expect("its history");
    assert!(result["detail"]["evidence"][0]["sha256"].is_string(), "the digest stays: {detail}");
}

#[tokio::test]
async fn a_group_s_evidence_bundle_holds_every_message_about_it_and_the_update_that_opened_it() {
    let hub = hub().await;
    let (_, _, task) = duplicate(&hub).await;
    // Another group's messages fall between this group's in the log.
    let other = duplicate_of(&hub, 2).await;
    let sent = hub.send("44", Body::ProblemResult(result(&task, HandlingMode::Attest)), None).await;
    assert_eq!(sent.refusal(), None);
    hub.send("44", Body::ProblemResult(result(&other, HandlingMode::Attest)), None).await;
    let (group, other) = (task.group_id.to_string(), other.group_id.to_string());
    let path = format!("/problems/{group}/bundle");

    // The national office's only: the bundle holds the messages' bytes.
    for role in [Role::Operator("zhao".into()), Role::Province("44".parse().unwrap())] {
        let (status, _) = hub.download(role, &path).await;
        assert_eq!(status, 403);
    }
    let (status, tar) = hub.download(Role::National("moe".into()), &path).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar));
    let bundle = e2e::evidence::Unpacked::tar(&tar);
    let (ok, said) = bundle.verify();
    assert!(ok && said.starts_with("OK: "), "{said}");

    let entries = bundle.entries();
    let selected: Vec<&e2e::evidence::Listed> = entries.iter().filter(|e| e.with_body).collect();
    let types: Vec<&str> = selected.iter().map(|e| e.field("message-type").unwrap()).collect();
    // 44's update that opened it, 44's task, 44's result, then 51's turn: its task and the
    // relay of 44's result.
    assert_eq!(types.iter().filter(|t| **t == "index.upsert").count(), 1, "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "problem.task").count(), 2, "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "problem.result").count(), 1, "{types:?}");
    assert!(types.contains(&"problem.relay"), "{types:?}");
    for e in &selected {
        if e.field("message-type").unwrap().starts_with("problem.") {
            assert_eq!(e.field("group-id"), Some(group.as_str()), "{}", e.meta);
        }
    }
    // The other group's entries are there by their text alone: the chain holds, its content
    // does not travel.
    let between: Vec<&e2e::evidence::Listed> =
        entries.iter().filter(|e| e.field("group-id") == Some(other.as_str())).collect();
    assert!(!between.is_empty() && between.iter().all(|e| !e.with_body), "{between:?}");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM message_log WHERE group_id = $1::uuid")
        .bind(&group)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(selected.len() as i64, logged + 1, "those naming the group, and the update: {types:?}");

    // Each download is audited; an unknown group is told apart from one with no messages.
    let audited: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM audit WHERE action = 'export-evidence' AND case_id = $1::uuid")
            .bind(&group)
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    assert_eq!(audited.len(), 1, "{audited:?}");
    let (status, body) =
        hub.ops(Role::National("moe".into()), "GET", &format!("/problems/{}/bundle", uuid::Uuid::new_v4()), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("E_GROUP_NOT_FOUND")));
}
