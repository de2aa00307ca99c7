//! Cross-province problem records end to end: a real broker and database, the hub, the
//! adapters and the simulated provincial systems as real processes. The rules one by one are
//! in `problems.rs` (in process); here is what only processes show: the messages really
//! travel, a province offline meanwhile, the hub killed at the worst moment.

use std::time::Duration;

use certs::Role;
use chrono::Utc;
use e2e::world::{World, WorldOptions, args};
use e2e::{eventually, index_upsert};
use schemas::messages::{
    Attachment, Body, HandlingMode, IndexUpsert, Level, LookupKey, LookupRequest, ProblemResult, ProblemTask,
    StudentStatus, StudentSummary, UpTo,
};
use schemas::{Envelope, codec};

const WAIT: Duration = Duration::from_secs(60);

fn ordinary(s: &StudentSummary) -> bool {
    s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business && s.student_id.is_formal()
}

/// A world of 37 and 51 where 51 reports a record of one of 37's students (the same resident
/// ID and name under a new national student ID): an ID-duplicate group. 51's record is
/// registered now (its turn first), or, `older`, a day before 37's (37's turn first).
async fn duplicate_in(w: &World, older: bool) -> StudentSummary {
    let original = w.student("37", ordinary);
    let mut copy = e2e::student("51", 9001);
    copy.name = original.name.clone();
    copy.id_document = original.id_document.clone();
    copy.registered_at = Some(if older { original.identity_since() - chrono::Duration::days(1) } else { Utc::now() });
    let Body::IndexUpsert(IndexUpsert { student }) = index_upsert("51", vec![copy]).body else { unreachable!() };
    w.submit("51", Body::IndexUpsert(IndexUpsert { student }), None).await;
    original
}

/// [`duplicate_in`] a new world, 51's turn first; returns 37's record and 51's task.
async fn duplicated(opts: WorldOptions) -> (World, StudentSummary, ProblemTask) {
    let w = World::new(opts).await;
    let original = duplicate_in(&w, false).await;
    let task = task_for(&w, "51", 1).await;
    (w, original, task)
}

/// The `n`-th problem.task a province's adapter received.
async fn task_for(w: &World, province: &str, n: usize) -> ProblemTask {
    let store = w.province(province).adapter.store().await;
    let bodies = eventually(&format!("{n} problem.task at {province}"), WAIT, || {
        let store = store.clone();
        async move {
            let rows: Vec<Vec<u8>> =
                sqlx::query_scalar("SELECT body FROM inbox WHERE message_type = 'problem.task' ORDER BY rowid")
                    .fetch_all(&store)
                    .await
                    .ok()?;
            (rows.len() >= n).then_some(rows)
        }
    })
    .await;
    let env: Envelope = codec::from_xml(&bodies[n - 1], schemas::DEFAULT_MAX_BYTES).unwrap();
    let Body::ProblemTask(t) = env.body else { unreachable!() };
    t
}

async fn count(w: &World, province: &str, message_type: &str) -> i64 {
    let store = w.province(province).adapter.store().await;
    sqlx::query_scalar("SELECT count(*) FROM inbox WHERE message_type = ?")
        .bind(message_type)
        .fetch_one(&store)
        .await
        .unwrap()
}

async fn group_state(w: &World, group: &str) -> (String, Option<String>) {
    let pool = w.bed.db().await;
    sqlx::query_as("SELECT state, waiting_on FROM problem_group WHERE group_id = $1::uuid")
        .bind(group)
        .fetch_one(&pool)
        .await
        .unwrap()
}

async fn until_group(w: &World, group: &str, state: &str) {
    let pool = w.bed.db().await;
    eventually(&format!("group {group} {state}"), WAIT, || {
        let pool = pool.clone();
        async move {
            let s: String = sqlx::query_scalar("SELECT state FROM problem_group WHERE group_id = $1::uuid")
                .bind(group)
                .fetch_one(&pool)
                .await
                .ok()?;
            (s == state).then_some(())
        }
    })
    .await;
}

fn result(task: &ProblemTask, mode: HandlingMode) -> Body {
    let photo = Attachment::new("户口本.jpg".parse().unwrap(), "image/jpeg".parse().unwrap(), vec![0xFF, 0xD8, 0xFF]);
    Body::ProblemResult(ProblemResult {
        group_id: task.group_id,
        student_id: task.student_id.clone(),
        mode,
        changed: None,
        approval: e2e::approvals(&[Level::School, Level::Bureau]),
        evidence: UpTo::new(vec![photo]).unwrap(),
    })
}

async fn lookup_flag(w: &World, s: &StudentSummary) -> bool {
    let req =
        LookupRequest { name: s.name.clone(), key: LookupKey::StudentId(s.student_id.clone()), requested_by: None };
    let id = w.submit("51", Body::LookupRequest(req), None).await;
    match w.answer("51", id, "lookup.result").await {
        Body::LookupResult(r) => r.student.expect("found").problem_record,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_by_the_later_side_closes_the_group_and_attests_the_other_automatically() {
    // 51's system deletes what it is tasked with; 37's would attest, but gets no task.
    let opts = WorldOptions {
        province_args: vec![("51", args(&["--problem-mode", "delete"])), ("37", args(&["--problem-mode", "attest"]))],
        ..Default::default()
    };
    let (w, original, task) = duplicated(opts).await;
    let group = task.group_id.to_string();
    until_group(&w, &group, "closed").await;
    eventually("37 told of the relay and the close", WAIT, || async {
        (count(&w, "37", "problem.relay").await == 1 && count(&w, "37", "problem.status").await >= 1).then_some(())
    })
    .await;
    assert_eq!(count(&w, "37", "problem.task").await, 0, "no task to the side attested automatically");
    // 51's status goes out in the same relay batches as 37's but may reach its adapter later.
    eventually("51 told", WAIT, || async { (count(&w, "51", "problem.status").await >= 1).then_some(()) }).await;
    let pool = w.bed.db().await;
    let body: serde_json::Value = sqlx::query_scalar("SELECT body FROM problem_group WHERE group_id = $1::uuid")
        .bind(&group)
        .fetch_one(&pool)
        .await
        .unwrap();
    let states: Vec<&str> = body["members"].as_array().unwrap().iter().map(|m| m["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["DELETED", "AUTO_ATTESTED"]);
    assert!(!lookup_flag(&w, &original).await, "the index flag cleared with the group");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_attestations_go_to_the_national_office_whose_decision_binds() {
    // 51's results are the test's own; 37's system attests.
    let opts = WorldOptions { province_args: vec![("37", args(&["--problem-mode", "attest"]))], ..Default::default() };
    let (w, original, task) = duplicated(opts).await;
    let group = task.group_id.to_string();
    assert!(lookup_flag(&w, &original).await, "flagged while the group is open");
    w.submit("51", result(&task, HandlingMode::Attest), None).await;
    until_group(&w, &group, "arbitration").await;

    let moe = w.bed.operator(Role::National("moe".into())).await;
    let (status, queue) = moe.get("/arbitrations").await;
    assert_eq!(status, 200);
    assert_eq!(queue[0]["group"]["groupId"], group.as_str());
    let (_, detail) = moe.get(&format!("/problems/{group}")).await;
    let results: Vec<&serde_json::Value> =
        detail["events"].as_array().unwrap().iter().filter(|e| e["what"] == "result").collect();
    assert_eq!(results.len(), 2, "both sides' results, with their approvals and evidence: {detail}");
    for r in results {
        assert!(!r["detail"]["approval"].as_array().unwrap().is_empty());
        let sha = r["detail"]["evidence"][0]["sha256"].as_str().unwrap();
        assert_eq!(moe.get(&format!("/problems/{group}/evidence/{sha}")).await.0, 200);
    }

    let decision = serde_json::json!({ "upheld": original.student_id, "comments": [] });
    let path = format!("/problems/{group}/decision");
    let op = w.bed.operator(Role::Operator("zhao".into())).await;
    assert_eq!(op.post(&path, &decision).await.0, 403, "an operator cannot decide");
    let (status, body) = moe.post(&path, &decision).await;
    assert_eq!(status, 200, "{body}");

    let rejected = task_for(&w, "51", 2).await;
    assert!(!rejected.attest_allowed);
    let attest = w.submit("51", result(&rejected, HandlingMode::Attest), None).await;
    assert_eq!(w.refusal("51", attest).await, "E_MODE_NOT_ALLOWED");
    w.submit("51", result(&rejected, HandlingMode::Delete), None).await;
    until_group(&w, &group, "closed").await;
    assert!(!lookup_flag(&w, &original).await);

    // The evidence of the whole dispute, exported by the hub's command: both provinces' results
    // with their adapters' signatures, the hub's tasks and statuses, and the refused attest.
    let out = tempfile::tempdir().unwrap();
    let export = std::process::Command::new(e2e::binary("hub"))
        .arg("--config")
        .arg(&w.bed.settings_path)
        .args(["log", "export", "--group", &group, "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let (ok, said) = e2e::evidence::verify(out.path());
    assert!(ok, "{said}");
    let sent: Vec<(String, String)> = e2e::evidence::entries(out.path())
        .iter()
        .filter(|e| e.with_body)
        .map(|e| (e.field("party").unwrap().to_owned(), e.field("message-type").unwrap().to_owned()))
        .collect();
    let results = |p: &str| sent.iter().filter(|(party, t)| party == p && t == "problem.result").count();
    assert_eq!((results("prov-51"), results("prov-37")), (3, 1), "{sent:?}");
    assert!(sent.iter().any(|(_, t)| t == "problem.status"), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_province_gets_its_task_on_return_and_a_hub_killed_after_a_deletion_relays_it_once() {
    let w = World::new(WorldOptions::default()).await;
    // 37's record is the later one, and 37 is offline when the group opens: the group shows it
    // waits on 37.
    w.go_dark("37");
    duplicate_in(&w, true).await;
    let pool = w.bed.db().await;
    let group: String = eventually("the group waits on 37", WAIT, || {
        let pool = pool.clone();
        async move {
            let row: (String, Option<String>) =
                sqlx::query_as("SELECT group_id::text, waiting_on FROM problem_group").fetch_one(&pool).await.ok()?;
            (row.1.as_deref() == Some("37")).then_some(row.0)
        }
    })
    .await;
    assert_eq!(group_state(&w, &group).await, ("open".to_owned(), Some("37".to_owned())));
    assert_eq!(count(&w, "51", "problem.task").await, 0);

    // The hub is restarted armed to die right after it commits 37's deletion (its next
    // problem.result), once 37 is back and its system answers the task it finds waiting;
    // whatever else 37 sends on its return (index syncs) passes.
    w.bed.kill("hub");
    w.bed
        .spawn_hub_with(
            "hub-crash",
            &w.bed.settings_path,
            &[("XJ_CRASH_AT", hub::failpoint::CONSUMER_AFTER_COMMIT), ("XJ_CRASH_ON", "problem.result")],
        )
        .await;
    w.come_back("37", &args(&["--problem-mode", "delete"])).await;
    let status = w.bed.wait_exit("hub-crash", WAIT).await;
    assert!(!status.success(), "the hub died at the crash point");
    assert_eq!(count(&w, "37", "problem.task").await, 1, "the task reached 37 on its return");
    // What the crashed hub committed last was the deletion (nothing else could close it).
    assert_eq!(group_state(&w, &group).await.0, "closed", "the deletion committed before the crash");
    w.bed.spawn_hub("hub-again").await;
    until_group(&w, &group, "closed").await;
    eventually("51 has the relay", WAIT, || async { (count(&w, "51", "problem.relay").await >= 1).then_some(()) })
        .await;
    assert_eq!(count(&w, "51", "problem.relay").await, 1, "exactly one relay of the deletion");
    assert_eq!(count(&w, "51", "problem.task").await, 0, "no task to the side attested automatically");
    let autos: i64 =
        sqlx::query_scalar("SELECT count(*) FROM problem_event WHERE group_id = $1::uuid AND what = 'auto-attested'")
            .bind(&group)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(autos, 1, "exactly one automatic attestation");
    let relays: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_type = 'problem.relay'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(relays, 1, "written once");
}
