//! Organization-code updates end to end: a real broker and database, the hub, the adapters and
//! the simulated provincial systems as real processes. The rules one by one are in
//! `orgcodes.rs` (in process); here is what only processes show: records really travel in each
//! province's sequence, a province offline (and its undelivered records lost) catches up in
//! order, the simulated registrars confirm, and the hub killed at the worst moment executes a
//! revocation exactly once.

use std::time::Duration;

use certs::Role;
use chrono::Utc;
use e2e::eventually;
use e2e::world::{World, WorldOptions, args};
use schemas::messages::{
    Batch, Body, Decision, IndexUpsert, OrgcodeConfirm, ReviewDecision, StudentStatus, StudentSummary,
};
use schemas::{CaseId, codec};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn ordinary(s: &StudentSummary) -> bool {
    s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business && s.student_id.is_formal()
}

fn school(code: &str, department: &str) -> Value {
    json!({ "code": code, "name": format!("学校{code}"), "department": department, "stage": ["PRIMARY", "JUNIOR", "SENIOR"] })
}

fn batch(id: &str, kind: &str, records: Vec<Value>) -> Value {
    json!({ "batchId": id, "version": 1, "kind": kind, "publishedOn": "2026-10-08", "record": records })
}

async fn load(moe: &e2e::Operator, b: &Value) -> Value {
    let (status, body) = moe.post("/orgcodes/batches", b).await;
    assert_eq!(status, 201, "{body}");
    body
}

/// The bodies of `message_type` a province's adapter passed on, in the order it did.
async fn inbox(w: &World, province: &str, message_type: &str) -> Vec<Body> {
    let store = w.province(province).adapter.store().await;
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM inbox WHERE message_type = ? ORDER BY rowid")
        .bind(message_type)
        .fetch_all(&store)
        .await
        .unwrap();
    rows.iter().map(|b| codec::from_xml(b, schemas::DEFAULT_MAX_BYTES).unwrap().body).collect()
}

async fn until_inbox(w: &World, province: &str, message_type: &str, n: usize) -> Vec<Body> {
    eventually(&format!("{n} {message_type} at {province}"), WAIT, || async {
        let rows = inbox(w, province, message_type).await;
        (rows.len() >= n).then_some(rows)
    })
    .await
}

/// The state of the change record of `unit`, waiting until it is `state`.
async fn until_change(w: &World, unit: &str, state: &str) -> String {
    let pool = w.bed.db().await;
    eventually(&format!("the change of {unit} {state}"), WAIT, || {
        let pool = pool.clone();
        async move {
            let (id, s): (String, String) = sqlx::query_as(
                "SELECT change_id::text, state FROM orgcode_change WHERE unit = $1 ORDER BY sequence DESC LIMIT 1",
            )
            .bind(unit)
            .fetch_one(&pool)
            .await
            .ok()?;
            (s == state).then_some(id)
        }
    })
    .await
}

fn revoked_units(bodies: &[Body]) -> Vec<String> {
    bodies
        .iter()
        .filter_map(|b| match b {
            Body::OrgcodeRevoked(r) => Some(r.record.unit_code().to_owned()),
            _ => None,
        })
        .collect()
}

/// The province reports `students` moved to `to` (学生学籍转移, the province's own business).
async fn move_students(w: &World, province: &str, students: &[StudentSummary], to: &schemas::ids::SchoolCode) {
    let moved: Vec<StudentSummary> =
        students.iter().map(|s| StudentSummary { school: to.clone(), changed_at: Utc::now(), ..s.clone() }).collect();
    w.submit(province, Body::IndexUpsert(IndexUpsert { student: Batch::new(moved).unwrap() }), None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_deferred_by_an_open_transfer_executes_once_when_it_completes_even_with_the_hub_killed() {
    let confirm = ["--orgcode-confirm-min-ms", "100"];
    let opts = WorldOptions {
        students: 12,
        sim_args: args(&["--review-delay-min-ms", "1500", "--review-delay-max-ms", "1500"]),
        province_args: vec![
            ("51", args(&[confirm[0], confirm[1], "--archive-delay-ms", "3000"])),
            ("37", args(&confirm)),
        ],
        ..Default::default()
    };
    let w = World::new(opts).await;
    let moe = w.bed.operator(Role::National("moe".into())).await;
    let s = w.student("51", ordinary);
    let from = s.school.clone();
    let to = w.province("37").schools[0].clone();
    // Everyone else at the student's school moves away: the transfer is its last blocker.
    let others: Vec<StudentSummary> = w
        .province("51")
        .students
        .iter()
        .filter(|o| o.school == from && o.student_id != s.student_id)
        .cloned()
        .collect();
    let elsewhere = w.province("51").schools.iter().find(|c| **c != from).unwrap().clone();
    move_students(&w, "51", &others, &elsewhere).await;
    let case = w.case_of(w.apply("37", &s).await).await;

    // Both the student's school and the receiving school are revoked; the simulated
    // registrars confirm; the open transfer defers both.
    let department = |p: &str, code: &schemas::ids::SchoolCode| {
        let i = w.province(p).schools.iter().position(|c| c == code).unwrap();
        format!("{p}010{}000000", 1 + i % 2)
    };
    load(
        &moe,
        &batch(
            "SCHOOL-2026Q4",
            "SCHOOL",
            vec![
                json!({"action": "REVOKE", "school": school(from.as_ref(), &department("51", &from))}),
                json!({"action": "REVOKE", "school": school(to.as_ref(), &department("37", &to))}),
            ],
        ),
    )
    .await;
    let change = until_change(&w, from.as_ref(), "CONFIRMED").await;
    until_change(&w, to.as_ref(), "CONFIRMED").await;
    let op = w.bed.operator(Role::Operator("zhao".into())).await;
    let listed = eventually("the blocker list names the case", WAIT, || async {
        let (_, list) = op.get("/orgcodes/revocations").await;
        list.as_array()?
            .iter()
            .find(|r| r["change"]["changeId"] == change.as_str())
            .filter(|r| r["business"][0]["businessId"] == case.to_string())
            .cloned()
    })
    .await;
    assert_eq!(listed["blockers"]["students"], 1, "the student himself, still on its roll: {listed}");

    // G-7: no new business names the receiving school while its revocation waits.
    let other = w.student("51", |o| ordinary(o) && o.school != from && o.student_id != s.student_id);
    let refused = w.apply("37", &other).await;
    assert_eq!(w.refusal("37", refused).await, "E_SCHOOL_REVOKING");

    // The reviewers of both sides go on; at the last stage the hub is killed and restarted
    // armed to die right after it commits 51's transfer-out (archive.committed), which ends the
    // case and removes the revocation's last blocker.
    w.until_state(case, &["COMMITTING"], WAIT).await;
    w.stop_province("37");
    w.go_dark("51");
    assert_eq!(until_change(&w, from.as_ref(), "CONFIRMED").await, change, "still deferred");
    w.bed.kill("hub");
    w.bed
        .spawn_hub_with(
            "hub-crash",
            &w.bed.settings_path,
            &[("XJ_CRASH_AT", hub::failpoint::CONSUMER_AFTER_COMMIT), ("XJ_CRASH_ON", "archive.committed")],
        )
        .await;
    w.come_back("51", &args(&[confirm[0], confirm[1], "--archive-delay-ms", "3000"])).await;
    let status = w.bed.wait_exit("hub-crash", WAIT).await;
    assert!(!status.success(), "the hub died at the crash point");
    let pool = w.bed.db().await;
    let (case_state, change_state): (String, String) = sqlx::query_as(
        "SELECT (SELECT state FROM business_case WHERE case_id = $1), (SELECT state FROM orgcode_change WHERE change_id = $2::uuid)",
    )
    .bind(case.uuid())
    .bind(&change)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (case_state.as_str(), change_state.as_str()),
        ("COMPLETED", "DONE"),
        "one commit: the case and the revocation"
    );

    w.bed.spawn_hub("hub-again").await;
    let revoked = eventually("51 told of the revocation", WAIT, || async {
        let r = revoked_units(&inbox(&w, "51", "orgcode.revoked").await);
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(revoked, vec![from.to_string()], "told once");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orgcode_event WHERE change_id = $1::uuid AND what = 'executed'")
            .bind(&change)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(events, 1, "executed exactly once");
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_type = 'orgcode.revoked'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(written, 1, "written once");
    // The student is not lost: he is 37's now, in exactly one province.
    assert_eq!(w.present_in(s.student_id.as_ref()).await, vec!["37".to_owned()]);
    // The receiving school's revocation still waits (the student is on its roll now).
    until_change(&w, to.as_ref(), "CONFIRMED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_province_whose_records_were_lost_catches_up_in_order_then_students_and_schools_unblock() {
    let opts = WorldOptions {
        students: 12,
        province_args: vec![("51", args(&["--orgcode-confirm-min-ms", "100"]))],
        ..Default::default()
    };
    let w = World::new(opts).await;
    let moe = w.bed.operator(Role::National("moe".into())).await;
    // 51 is offline while three additions are distributed, and they are lost from its queue
    // (an operator's purge); a division revocation follows.
    w.go_dark("51");
    let added: Vec<String> = (0..3).map(|n| format!("31519990{n:02}")).collect();
    load(
        &moe,
        &batch(
            "S-1",
            "SCHOOL",
            added.iter().map(|c| json!({"action": "ADD", "school": school(c, "510101000000")})).collect(),
        ),
    )
    .await;
    let queued = eventually("the three records queued for 51", WAIT, || async {
        let n = w.bed.queue_depth("prov.51.in").await;
        (n >= 3).then_some(n)
    })
    .await;
    assert_eq!(queued, 3);
    w.bed.purge_queue("prov.51.in").await;
    let division = json!({"code": "510102000000", "name": "某区教育局", "level": "COUNTY", "parent": "510100000000"});
    load(&moe, &batch("D-1", "DIVISION", vec![json!({"action": "REVOKE", "department": division})])).await;

    // Back: the record after the gap asks for the rest; all four are passed on in order, once.
    w.come_back("51", &args(&["--orgcode-confirm-min-ms", "100"])).await;
    let changes = until_inbox(&w, "51", "orgcode.change", 4).await;
    let seqs: Vec<u64> = changes
        .iter()
        .map(|b| match b {
            Body::OrgcodeChange(c) => c.sequence,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "in order, nothing skipped, nothing twice");
    for code in &added {
        until_change(&w, code, "DONE").await;
    }

    // The division waits for its school(s) to move; the move executes it.
    let id = until_change(&w, "510102000000", "CONFIRMED").await;
    let op = w.bed.operator(Role::Operator("zhao".into())).await;
    let (_, detail) = op.get(&format!("/orgcodes/changes/{id}")).await;
    let under: Vec<(usize, schemas::ids::SchoolCode)> =
        w.province("51").schools.iter().cloned().enumerate().filter(|(i, _)| i % 2 == 1).collect();
    assert_eq!(detail["blockers"]["schools"], under.len(), "{detail}");
    let moves =
        under.iter().map(|(_, c)| json!({"action": "CHANGE", "school": school(c.as_ref(), "510101000000")})).collect();
    load(&moe, &batch("S-2", "SCHOOL", moves)).await;
    until_change(&w, "510102000000", "DONE").await;

    // A school revocation waits for the students on its roll; they move to a new school.
    let target = w.province("51").schools[0].clone();
    let on_roll: Vec<StudentSummary> = w
        .province("51")
        .students
        .iter()
        .filter(|s| s.school == target && StudentStatus::ON_ROLL.contains(&s.status))
        .cloned()
        .collect();
    assert!(!on_roll.is_empty());
    load(
        &moe,
        &batch("S-3", "SCHOOL", vec![json!({"action": "REVOKE", "school": school(target.as_ref(), "510101000000")})]),
    )
    .await;
    let id = until_change(&w, target.as_ref(), "CONFIRMED").await;
    let (_, detail) = op.get(&format!("/orgcodes/changes/{id}")).await;
    assert!(detail["blockers"]["students"].as_u64().unwrap() >= 1, "{detail}");
    let everyone: Vec<StudentSummary> =
        w.province("51").students.iter().filter(|s| s.school == target).cloned().collect();
    move_students(&w, "51", &everyone, &added[0].parse().unwrap()).await;
    until_change(&w, target.as_ref(), "DONE").await;
    let revoked = until_inbox(&w, "51", "orgcode.revoked", 2).await;
    assert_eq!(revoked_units(&revoked), vec!["510102000000".to_owned(), target.to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_added_school_serves_once_confirmed_and_a_moved_school_s_later_steps_go_to_its_new_department() {
    // 37's registrars are the test's own.
    let w = World::new(WorldOptions { students: 12, silent: vec!["37"], ..Default::default() }).await;
    let moe = w.bed.operator(Role::National("moe".into())).await;
    let new_school = "3137999001";
    load(&moe, &batch("S-1", "SCHOOL", vec![json!({"action": "ADD", "school": school(new_school, "370101000000")})]))
        .await;
    let Body::OrgcodeChange(added) = until_inbox(&w, "37", "orgcode.change", 1).await.remove(0) else { unreachable!() };
    let s = w.student("51", ordinary);
    let app = |school: &str| {
        let mut a = w.application("37", &s);
        a.school = school.parse().unwrap();
        Body::TransferApply(a)
    };
    let early = w.submit("37", app(new_school), None).await;
    assert_eq!(w.refusal("37", early).await, "E_SCHOOL_UNKNOWN", "not before confirmation");
    let confirm = |c: &schemas::messages::OrgcodeChange, unit: &str| {
        Body::OrgcodeConfirm(OrgcodeConfirm {
            change_id: c.change_id,
            unit: unit.parse().unwrap(),
            reviewer: "孙科长".parse().unwrap(),
        })
    };
    w.submit("37", confirm(&added, "370101000000"), None).await;
    until_change(&w, new_school, "DONE").await;
    let case: CaseId = w.case_of(w.submit("37", app(new_school), None).await).await;

    let review = |b: &Body| match b {
        Body::ReviewRequest(r) => (r.step.to_string(), r.department.as_ref().map(ToString::to_string)),
        _ => unreachable!(),
    };
    let first = until_inbox(&w, "37", "review.request", 1).await;
    assert_eq!(review(&first[0]), ("IN_SCHOOL".into(), Some("370101000000".into())));
    // The school moves to another department; the next step starts after and goes there.
    load(
        &moe,
        &batch("S-2", "SCHOOL", vec![json!({"action": "CHANGE", "school": school(new_school, "370102000000")})]),
    )
    .await;
    let Body::OrgcodeChange(moved) = until_inbox(&w, "37", "orgcode.change", 2).await.remove(1) else { unreachable!() };
    assert_eq!(moved.confirm_by.as_ref(), "370101000000", "confirmed by the department it leaves");
    w.submit("37", confirm(&moved, "370101000000"), None).await;
    until_change(&w, new_school, "DONE").await;
    let approve = Body::ReviewDecision(ReviewDecision {
        step: "IN_SCHOOL".parse().unwrap(),
        decision: Decision::Approve,
        unit: "新学校".parse().unwrap(),
        reviewer: "赵老师".parse().unwrap(),
        opinion: "同意。".parse().unwrap(),
    });
    w.submit("37", approve, Some(case)).await;
    let second = until_inbox(&w, "37", "review.request", 2).await;
    assert_eq!(review(&second[1]), ("IN_BUREAU".into(), Some("370102000000".into())));
}
