//! Every rule of organization-code updates (机构代码, domain.md §B.4, §D), in process: the hub's
//! message handling against a real PostgreSQL database, no broker, no spawned processes.

use certs::Role;
use e2e::inprocess::{Hub, Sent};
use e2e::student;
use schemas::messages::{
    Application, Body, CaseCancel, CaseReleased, ChangeState, Decision, OrgcodeChange, OrgcodeConfirm, OrgcodeResend,
    ReviewDecision, StudentStatus, StudentSummary, UpTo, VerifyResult,
};
use schemas::{CaseId, Envelope, MessageType, codec, samples};
use serde_json::{Value, json};

/// The receiving school in 37 and the schools of 51 (`e2e::student` places 51's students in
/// `3151000000` + n % 7); every in-process school's department is `PP0101000000`.
const IN_SCHOOL: &str = "3137000001";
const OUT_DEPARTMENT: &str = "510101000000";

async fn hub() -> Hub {
    let hub = Hub::new(&["37", "51"], "").await;
    let schools: Vec<String> = (0..7).map(|n| format!("3151{n:06}")).chain([IN_SCHOOL.to_owned()]).collect();
    let rows: Vec<(&str, &str, bool, Option<chrono::DateTime<chrono::Utc>>)> =
        schools.iter().map(|c| (c.as_str(), &c[2..4], true, None)).collect();
    hub.schools(&rows).await;
    hub
}

fn moe() -> Role {
    Role::National("moe".into())
}

fn school(code: &str, department: &str) -> Value {
    json!({ "code": code, "name": format!("学校{code}"), "department": department, "stage": ["PRIMARY", "JUNIOR"] })
}

fn batch(id: &str, version: u32, kind: &str, records: Vec<Value>) -> Value {
    json!({ "batchId": id, "version": version, "kind": kind, "publishedOn": "2026-10-08", "record": records })
}

/// Loads a batch as the national office; returns the status, the answer and the records sent.
async fn load(hub: &Hub, b: &Value) -> (u16, Value, Vec<OrgcodeChange>) {
    let before = outbox_max(hub).await;
    let (status, body) = hub.ops(moe(), "POST", "/orgcodes/batches", Some(b.clone())).await;
    let sent = outbox_since(hub, before)
        .await
        .into_iter()
        .filter_map(|e| match e.body {
            Body::OrgcodeChange(c) => Some(c),
            _ => None,
        })
        .collect();
    (status, body, sent)
}

async fn outbox_max(hub: &Hub) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(outbox_id), 0) FROM outbox").fetch_one(&hub.pool).await.unwrap()
}

async fn outbox_since(hub: &Hub, after: i64) -> Vec<Envelope> {
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT body FROM outbox_message WHERE outbox_id > $1 ORDER BY outbox_id")
            .bind(after)
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    rows.iter().map(|b| codec::from_xml(b, schemas::DEFAULT_MAX_BYTES).unwrap()).collect()
}

async fn confirm(hub: &Hub, c: &OrgcodeChange) -> Sent {
    confirm_as(hub, "51", c, c.confirm_by.as_ref()).await
}

async fn confirm_as(hub: &Hub, province: &str, c: &OrgcodeChange, unit: &str) -> Sent {
    let body =
        OrgcodeConfirm { change_id: c.change_id, unit: unit.parse().unwrap(), reviewer: "孙科长".parse().unwrap() };
    hub.send(province, Body::OrgcodeConfirm(body), None).await
}

fn revoked(sent: &Sent) -> Vec<(String, bool)> {
    sent.replies
        .iter()
        .filter_map(|e| match &e.body {
            Body::OrgcodeRevoked(r) => Some((r.record.unit_code().to_owned(), r.disable_accounts)),
            _ => None,
        })
        .collect()
}

fn status_of(sent: &Sent) -> Option<(ChangeState, Option<schemas::messages::Blockers>)> {
    sent.replies.iter().find_map(|e| match &e.body {
        Body::OrgcodeStatus(s) => Some((s.state, s.blockers)),
        _ => None,
    })
}

async fn state(hub: &Hub, c: &OrgcodeChange) -> String {
    sqlx::query_scalar("SELECT state FROM orgcode_change WHERE change_id = $1")
        .bind(c.change_id.uuid())
        .fetch_one(&hub.pool)
        .await
        .unwrap()
}

async fn school_row(hub: &Hub, code: &str) -> (bool, Option<String>, Vec<String>) {
    sqlx::query_as("SELECT active, department, revoked_stages FROM school WHERE code = $1")
        .bind(code)
        .fetch_one(&hub.pool)
        .await
        .unwrap()
}

fn application(s: &StudentSummary, school: &str) -> Application {
    Application {
        school: school.parse().unwrap(),
        student_name: s.name.clone(),
        student_id: s.student_id.clone(),
        target_grade: s.grade,
        reason: "随父母迁居。".parse().unwrap(),
        evidence: UpTo::new(vec![]).unwrap(),
    }
}

async fn apply(hub: &Hub, s: &StudentSummary, school: &str) -> Sent {
    hub.send("37", Body::TransferApply(application(s, school)), None).await
}

fn case_of(sent: &Sent) -> CaseId {
    assert_eq!(sent.replies[0].message_type(), MessageType::CaseAccepted, "{sent:?}");
    sent.replies[0].case_id.unwrap()
}

fn held(s: &StudentSummary) -> Body {
    let Body::VerifyResult(VerifyResult::Held(h)) = samples::body(MessageType::VerifyResult) else { unreachable!() };
    Body::VerifyResult(VerifyResult::Held(schemas::messages::HeldStudent {
        status: StudentStatus::Enrolled,
        school: s.school.clone(),
        grade: s.grade,
        ..h
    }))
}

fn decide(step: &str, decision: Decision) -> Body {
    Body::ReviewDecision(ReviewDecision {
        step: step.parse().unwrap(),
        decision,
        unit: "某单位".parse().unwrap(),
        reviewer: "审核人".parse().unwrap(),
        opinion: "意见。".parse().unwrap(),
    })
}

fn review_departments(sent: &Sent) -> Vec<(String, Option<String>)> {
    sent.replies
        .iter()
        .filter_map(|e| match &e.body {
            Body::ReviewRequest(r) => Some((r.step.to_string(), r.department.as_ref().map(ToString::to_string))),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_added_school_is_usable_only_once_its_department_confirms_it() {
    let hub = hub().await;
    let s = student("51", 1);
    hub.index("51", vec![s.clone()]).await;
    let (status, body, sent) = load(
        &hub,
        &batch(
            "SCHOOL-2026Q4",
            1,
            "SCHOOL",
            vec![json!({"action": "ADD", "school": school("3137000777", "370102000000")})],
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].sequence, sent[0].confirm_by.as_ref()), (1, "370102000000"), "confirmed by its department");
    assert_eq!(apply(&hub, &s, "3137000777").await.refusal(), Some("E_SCHOOL_UNKNOWN"), "not before confirmation");

    assert_eq!(confirm_as(&hub, "37", &sent[0], "370101000000").await.refusal(), Some("E_NOT_YOUR_STEP"));
    assert_eq!(
        confirm_as(&hub, "51", &sent[0], "370102000000").await.refusal(),
        Some("E_CHANGE_NOT_FOUND"),
        "another province's"
    );
    let done = confirm_as(&hub, "37", &sent[0], "370102000000").await;
    assert_eq!(status_of(&done), Some((ChangeState::Done, None)), "{done:?}");
    assert_eq!(school_row(&hub, "3137000777").await, (true, Some("370102000000".into()), vec![]));
    case_of(&apply(&hub, &s, "3137000777").await);
    // Confirmed again: the same answer, nothing applied twice.
    let again = confirm_as(&hub, "37", &sent[0], "370102000000").await;
    assert_eq!(status_of(&again), Some((ChangeState::Done, None)));
}

#[tokio::test]
async fn the_same_batch_again_is_a_no_op_other_content_is_refused_a_new_version_continues_the_sequence() {
    let hub = hub().await;
    let records = vec![
        json!({"action": "CHANGE", "school": school("3151000001", OUT_DEPARTMENT)}),
        json!({"action": "ADD", "school": school("3151000777", OUT_DEPARTMENT)}),
    ];
    let b = batch("SCHOOL-2026Q4", 1, "SCHOOL", records.clone());
    let (status, _, sent) = load(&hub, &b).await;
    assert_eq!(status, 201);
    assert_eq!(sent.iter().map(|c| c.sequence).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(status_of(&confirm(&hub, &sent[0]).await).unwrap().0, ChangeState::Done);

    let (status, body, again) = load(&hub, &b).await;
    assert_eq!((status, body["unchanged"].as_bool()), (200, Some(true)), "{body}");
    assert!(again.is_empty(), "nothing sent again");
    assert_eq!(state(&hub, &sent[0]).await, "DONE", "its confirmation kept");
    assert_eq!(state(&hub, &sent[1]).await, "UNCONFIRMED");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orgcode_change").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(n, 2, "no duplicate change");

    let mut other = records.clone();
    other[1]["school"]["name"] = json!("另一个名字");
    let (status, body, _) = load(&hub, &batch("SCHOOL-2026Q4", 1, "SCHOOL", other.clone())).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("E_BATCH_CONFLICT")), "{body}");
    let (status, _, v2) = load(&hub, &batch("SCHOOL-2026Q4", 2, "SCHOOL", other)).await;
    assert_eq!(status, 201, "a correction is a new version");
    assert_eq!(v2.iter().map(|c| c.sequence).collect::<Vec<_>>(), vec![3, 4]);

    // Records of one unit are confirmed in order.
    assert_eq!(confirm(&hub, &v2[1]).await.refusal(), Some("E_CHANGE_ORDER"), "record 2 of 3151000777 waits");
    assert!(confirm(&hub, &sent[1]).await.refusal().is_none());
    assert!(confirm(&hub, &v2[1]).await.refusal().is_none());

    // Malformed batches and the wrong role.
    let bad = batch("B", 1, "DIVISION", vec![json!({"action": "ADD", "school": school("3151000778", OUT_DEPARTMENT)})]);
    let (status, body, _) = load(&hub, &bad).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("E_SCHEMA")), "a school in a division batch: {body}");
    let (status, _) = hub.ops(Role::Operator("zhao".into()), "POST", "/orgcodes/batches", Some(b)).await;
    assert_eq!(status, 403, "only the national office loads batches");
    let (_, list) = hub.ops(Role::Operator("zhao".into()), "GET", "/orgcodes/batches", None).await;
    let v1 = list.as_array().unwrap().iter().find(|b| b["version"] == 1).unwrap();
    assert_eq!(v1["progress"]["51"]["DONE"], 2, "{list}");
}

#[tokio::test]
async fn a_revocation_waits_for_students_on_roll_and_executes_when_the_index_shows_none() {
    let hub = hub().await;
    // Students 3 and 10 are at 3151000003 (n % 7), both enrolled.
    let (a, b) = (student("51", 3), student("51", 10));
    hub.index("51", vec![a.clone(), b.clone()]).await;
    let (_, _, sent) = load(
        &hub,
        &batch("S-1", 1, "SCHOOL", vec![json!({"action": "REVOKE", "school": school("3151000003", OUT_DEPARTMENT)})]),
    )
    .await;
    let confirmed = confirm(&hub, &sent[0]).await;
    let (state_now, blockers) = status_of(&confirmed).unwrap();
    assert_eq!(state_now, ChangeState::Confirmed, "waits");
    assert_eq!(blockers.unwrap().students, 2);
    assert!(revoked(&confirmed).is_empty());

    // 学生学籍转移: the province moves one student to another school, the other leaves.
    let mut moved = a.clone();
    moved.school = "3151000004".parse().unwrap();
    moved.changed_at += chrono::Duration::seconds(1);
    let one = hub.send_envelope(&e2e::index_upsert("51", vec![moved])).await;
    assert!(revoked(&one).is_empty(), "one student left on roll");
    let mut left = b.clone();
    left.status = StudentStatus::Withdrawn;
    left.changed_at += chrono::Duration::seconds(1);
    let last = hub.send_envelope(&e2e::index_upsert("51", vec![left])).await;
    assert_eq!(revoked(&last), vec![("3151000003".to_owned(), true)], "executed with the last student: {last:?}");
    assert!(!school_row(&hub, "3151000003").await.0);
    assert_eq!(state(&hub, &sent[0]).await, "DONE");
    // Nothing executes twice.
    let mut again = b.clone();
    again.status = StudentStatus::Withdrawn;
    again.changed_at += chrono::Duration::seconds(2);
    assert!(revoked(&hub.send_envelope(&e2e::index_upsert("51", vec![again])).await).is_empty());
}

#[tokio::test]
async fn an_open_case_blocks_the_revocation_its_reviewers_go_on_and_its_end_executes_it_g7_refuses_new_business() {
    let hub = hub().await;
    // A 51 student applied for by 37; his school 3151000002 is then revoked.
    let s = student("51", 2);
    hub.index("51", vec![s.clone()]).await;
    let case = case_of(&apply(&hub, &s, IN_SCHOOL).await);
    hub.send("51", held(&s), Some(case)).await;
    let mut gone = s.clone();
    gone.status = StudentStatus::OtherDeparture;
    gone.changed_at += chrono::Duration::seconds(1);
    // The index no longer shows him on roll; the case still names the school.
    hub.send_envelope(&e2e::index_upsert("51", vec![gone])).await;
    let (_, _, sent) = load(
        &hub,
        &batch(
            "S-1",
            1,
            "SCHOOL",
            vec![
                json!({"action": "REVOKE", "school": school("3151000002", OUT_DEPARTMENT)}),
                json!({"action": "REVOKE", "school": school(IN_SCHOOL, "370101000000")}),
            ],
        ),
    )
    .await;
    let blocked = confirm(&hub, &sent[0]).await;
    assert_eq!(status_of(&blocked).unwrap().1.unwrap().business, 1, "{blocked:?}");
    let (_, list) = hub.ops(Role::Operator("zhao".into()), "GET", "/orgcodes/revocations", None).await;
    assert_eq!(list[0]["business"][0]["businessId"], case.to_string(), "the blocker list names the case: {list}");
    assert_eq!(list[0]["blockers"]["business"], 1);

    // G-7: the receiving school's confirmed revocation refuses new business naming it.
    let receiving = confirm_as(&hub, "37", &sent[1], "370101000000").await;
    assert_eq!(status_of(&receiving).unwrap().0, ChangeState::Confirmed, "the open case blocks it too");
    let other = student("51", 8); // at 3151000001
    hub.index("51", vec![other.clone()]).await;
    assert_eq!(apply(&hub, &other, IN_SCHOOL).await.refusal(), Some("E_SCHOOL_REVOKING"));

    // The reviewers of both schools keep working until the revocation executes.
    let step = hub.send("37", decide("IN_SCHOOL", Decision::Approve), Some(case)).await;
    assert!(step.refusal().is_none(), "{step:?}");
    // The case ends (rejected at the next step, the out-province lets the student go): both
    // revocations execute in that transaction.
    let rejected = hub.send("37", decide("IN_BUREAU", Decision::Reject), Some(case)).await;
    assert!(revoked(&rejected).is_empty(), "still open until 51 releases the student");
    let end = hub.send("51", Body::CaseReleased(CaseReleased {}), Some(case)).await;
    let mut units = revoked(&end);
    units.sort();
    assert_eq!(units, vec![("3137000001".to_owned(), true), ("3151000002".to_owned(), true)], "{end:?}");
    assert!(!school_row(&hub, "3151000002").await.0);
    assert_eq!(apply(&hub, &other, IN_SCHOOL).await.refusal(), Some("E_SCHOOL_UNKNOWN"), "revoked now");
}

#[tokio::test]
async fn a_division_revocation_waits_for_its_schools_to_move() {
    let hub = hub().await;
    let department = json!({"code": "510102000000", "name": "某区教育局", "level": "COUNTY", "parent": "510100000000"});
    let (_, _, add) =
        load(&hub, &batch("D-1", 1, "DIVISION", vec![json!({"action": "ADD", "department": department})])).await;
    assert_eq!(add[0].confirm_by.as_ref(), "510000000000", "the province confirms a division");
    assert_eq!(status_of(&confirm(&hub, &add[0]).await).unwrap().0, ChangeState::Done);
    // Two schools move under it …
    let (_, _, moves) = load(
        &hub,
        &batch(
            "S-1",
            1,
            "SCHOOL",
            vec![
                json!({"action": "CHANGE", "school": school("3151000005", "510102000000")}),
                json!({"action": "CHANGE", "school": school("3151000006", "510102000000")}),
            ],
        ),
    )
    .await;
    assert_eq!(moves[0].confirm_by.as_ref(), OUT_DEPARTMENT, "a move is confirmed by the department it leaves");
    for m in &moves {
        confirm(&hub, m).await;
    }
    // … and the division is revoked: it waits for them.
    let mut revoke = department_record("REVOKE");
    revoke["department"]["name"] = json!("某区教育局");
    let (_, _, r) = load(&hub, &batch("D-2", 1, "DIVISION", vec![revoke])).await;
    let waiting = confirm(&hub, &r[0]).await;
    assert_eq!(status_of(&waiting).unwrap().1.unwrap().schools, 2);
    // The schools move away; the last move executes the division's revocation.
    let (_, _, back) = load(
        &hub,
        &batch(
            "S-2",
            1,
            "SCHOOL",
            vec![
                json!({"action": "CHANGE", "school": school("3151000005", OUT_DEPARTMENT)}),
                json!({"action": "REVOKE", "school": school("3151000006", "510102000000")}),
            ],
        ),
    )
    .await;
    assert!(revoked(&confirm(&hub, &back[0]).await).is_empty());
    let last = confirm_as(&hub, "51", &back[1], "510102000000").await;
    let mut units = revoked(&last);
    units.sort();
    assert_eq!(units, vec![("3151000006".to_owned(), true), ("510102000000".to_owned(), true)], "{last:?}");
}

fn department_record(action: &str) -> Value {
    json!({"action": action, "department": {"code": "510102000000", "name": "某区教育局", "level": "COUNTY", "parent": "510100000000"}})
}

#[tokio::test]
async fn a_stage_revocation_counts_that_stage_only_and_leaves_the_accounts_to_the_province() {
    let hub = hub().await;
    // Student 4 is at 3151000004 in a primary grade (e2e::student), student 11 too.
    let s = student("51", 4);
    hub.index("51", vec![s.clone()]).await;
    let stage = s.grade.stage();
    let other = [schemas::ids::Stage::Primary, schemas::ids::Stage::Junior, schemas::ids::Stage::Senior]
        .into_iter()
        .find(|x| *x != stage)
        .unwrap();
    let record = |st: schemas::ids::Stage| json!({"action": "REVOKE_STAGE", "school": school("3151000004", OUT_DEPARTMENT), "stage": st.as_str()});
    let (_, _, a) = load(&hub, &batch("S-1", 1, "SCHOOL", vec![record(other)])).await;
    let free = confirm(&hub, &a[0]).await;
    assert_eq!(revoked(&free), vec![("3151000004".to_owned(), false)], "no student of that stage: at once, {free:?}");
    let (_, _, b) = load(&hub, &batch("S-2", 1, "SCHOOL", vec![record(stage)])).await;
    let blocked = confirm(&hub, &b[0]).await;
    assert_eq!(status_of(&blocked).unwrap().1.unwrap().students, 1);
    assert_eq!(
        school_row(&hub, "3151000004").await,
        (true, Some(OUT_DEPARTMENT.into()), vec![other.as_str().to_owned()])
    );
}

#[tokio::test]
async fn a_problem_group_blocks_a_revocation_until_it_closes() {
    let hub = hub().await;
    // An ID duplicate between 51 and 37: the group holds both records' schools.
    let first = student("51", 1);
    hub.index("51", vec![first.clone()]).await;
    let mut copy = student("37", 1);
    copy.id_document = first.id_document.clone();
    copy.name = first.name.clone();
    copy.registered_at = first.registered_at.map(|t| t + chrono::Duration::days(7));
    copy.school = IN_SCHOOL.parse().unwrap();
    let opened = hub.send_envelope(&e2e::index_upsert("37", vec![copy.clone()])).await;
    let task = opened
        .replies
        .iter()
        .find_map(|e| match &e.body {
            Body::ProblemTask(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a task");
    let (_, _, r) = load(
        &hub,
        &batch(
            "S-1",
            1,
            "SCHOOL",
            vec![json!({"action": "REVOKE", "school": school(first.school.as_ref(), OUT_DEPARTMENT)})],
        ),
    )
    .await;
    let blocked = confirm(&hub, &r[0]).await;
    assert_eq!(status_of(&blocked).unwrap().1.unwrap().business, 1, "the group blocks it: {blocked:?}");
    // 37 deletes its record; the group closes (51's is attested automatically) and lets go.
    let photo = schemas::messages::Attachment::new(
        "证明.jpg".parse().unwrap(),
        "image/jpeg".parse().unwrap(),
        vec![0xFF, 0xD8, 0xFF, 0xE0],
    );
    let result = schemas::messages::ProblemResult {
        group_id: task.group_id,
        student_id: task.student_id.clone(),
        mode: schemas::messages::HandlingMode::Delete,
        changed: None,
        approval: e2e::approvals(&[schemas::messages::Level::School, schemas::messages::Level::Bureau]),
        evidence: UpTo::new(vec![photo]).unwrap(),
    };
    let closed = hub.send("37", Body::ProblemResult(result), None).await;
    assert!(closed.refusal().is_none(), "{closed:?}");
    // 51's student is still on its roll: the group was one blocker, he is the other.
    assert!(revoked(&closed).is_empty());
    let (_, detail) =
        hub.ops(Role::Operator("zhao".into()), "GET", &format!("/orgcodes/changes/{}", r[0].change_id), None).await;
    assert_eq!(detail["blockers"], json!({"business": 0, "students": 1, "schools": 0, "departments": 0}), "{detail}");
    let mut moved = first.clone();
    moved.school = "3151000000".parse().unwrap();
    moved.changed_at += chrono::Duration::seconds(1);
    let last = hub.send_envelope(&e2e::index_upsert("51", vec![moved])).await;
    assert_eq!(revoked(&last).len(), 1, "{last:?}");
}

#[tokio::test]
async fn later_review_steps_go_to_the_school_s_department_of_the_moment() {
    let hub = hub().await;
    let s = student("51", 2);
    hub.index("51", vec![s.clone()]).await;
    let case = case_of(&apply(&hub, &s, IN_SCHOOL).await);
    let first = hub.send("51", held(&s), Some(case)).await;
    assert_eq!(review_departments(&first), vec![("IN_SCHOOL".to_owned(), Some("370101000000".to_owned()))]);
    let bureau = hub.send("37", decide("IN_SCHOOL", Decision::Approve), Some(case)).await;
    assert_eq!(review_departments(&bureau), vec![("IN_BUREAU".to_owned(), Some("370101000000".to_owned()))]);
    // The receiving school moves to another department while its bureau reviews: the hub
    // routes the steps that start later by the new one; the out-side by its own.
    let (_, _, moved) = load(
        &hub,
        &batch("S-1", 1, "SCHOOL", vec![json!({"action": "CHANGE", "school": school(IN_SCHOOL, "370102000000")})]),
    )
    .await;
    assert!(confirm_as(&hub, "37", &moved[0], "370101000000").await.refusal().is_none());
    let out = hub.send("37", decide("IN_BUREAU", Decision::Approve), Some(case)).await;
    assert_eq!(review_departments(&out), vec![("OUT_SCHOOL".to_owned(), Some(OUT_DEPARTMENT.to_owned()))]);
    // A cancel ends nothing here; the case goes on under the new department for any later
    // in-side step (none in this chain). The case still finishes normally when cancelled.
    let cancel = Body::CaseCancel(CaseCancel { reason: "家长决定不转学。".parse().unwrap() });
    hub.send("37", cancel, Some(case)).await;
    hub.send("51", Body::CaseReleased(CaseReleased {}), Some(case)).await;
}

#[tokio::test]
async fn a_gap_is_filled_in_order_and_unknown_changes_are_refused() {
    let hub = hub().await;
    let records: Vec<Value> =
        (0..4).map(|n| json!({"action": "ADD", "school": school(&format!("315100070{n}"), OUT_DEPARTMENT)})).collect();
    let (_, _, sent) = load(&hub, &batch("S-1", 1, "SCHOOL", records)).await;
    assert_eq!(sent.len(), 4);
    let resent = hub.send("51", Body::OrgcodeResend(OrgcodeResend { after: 1 }), None).await;
    let seqs: Vec<u64> = resent
        .replies
        .iter()
        .filter_map(|e| match &e.body {
            Body::OrgcodeChange(c) => Some(c.sequence),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![2, 3, 4], "everything after the last one passed on, in order");
    assert!(
        hub.send("37", Body::OrgcodeResend(OrgcodeResend { after: 0 }), None).await.replies.is_empty(),
        "37 has none"
    );
    let unknown = OrgcodeChange { change_id: CaseId::from_uuid(uuid::Uuid::new_v4()), ..sent[0].clone() };
    assert_eq!(confirm(&hub, &unknown).await.refusal(), Some("E_CHANGE_NOT_FOUND"));
    let forged = Body::OrgcodeChange(sent[0].clone());
    assert_eq!(hub.send("51", forged, None).await.refusal(), Some("E_UNEXPECTED"), "only the hub sends changes");
}
