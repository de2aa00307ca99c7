//! The national lookup attacked through real adapters, a real broker and the hub's processes:
//! a province trying names of one student, and a province scanning many students, are stopped
//! at the documented limits with `E_RATE_LIMITED`, and the national office sees who did it,
//! whom they looked up and when. (The rules themselves are tested in process: `lookups.rs`.)

use std::time::Duration;

use certs::Role;
use e2e::world::{World, WorldOptions};
use e2e::{Options, eventually};
use schemas::messages::{Body, LookupKey, LookupRequest};
use schemas::{MessageId, codec};

/// Every answer the hub gave to these lookups, from the province's adapter: (type, body).
async fn answers(w: &World, from: &str, ids: &[MessageId]) -> Vec<(String, Body)> {
    let store = w.province(from).adapter.store().await;
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    eventually(&format!("{} answers at {from}", ids.len()), Duration::from_secs(60), || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            let mut out = Vec::new();
            for id in &ids {
                let row: Option<(String, Vec<u8>)> =
                    sqlx::query_as("SELECT message_type, body FROM inbox WHERE correlation_id = ?")
                        .bind(id)
                        .fetch_optional(&store)
                        .await
                        .ok()?;
                let (t, body) = row?;
                out.push((t, codec::from_xml(&body, schemas::DEFAULT_MAX_BYTES).ok()?.body));
            }
            Some(out)
        }
    })
    .await
}

fn count(answers: &[(String, Body)], what: impl Fn(&Body) -> bool) -> usize {
    answers.iter().filter(|(_, b)| what(b)).count()
}

fn rate_limited(b: &Body) -> bool {
    matches!(b, Body::Error(e) if e.code.code() == "E_RATE_LIMITED")
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_names_and_scanning_are_stopped_at_the_limits_and_the_national_office_sees_who() {
    // 37 and 44 are attackers with no provincial system of their own running; 51's students
    // are in the index.
    let w = World::new(WorldOptions {
        provinces: vec!["37", "44", "51"],
        silent: vec!["37", "44"],
        students: 40,
        bed: Options {
            extra_toml: "[lookups]\nper_minute = 15\nsame_student_per_hour = 10\n".into(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let target = w.province("51").students[0].clone();

    // 37 tries 30 names for one student in a burst, the right one last.
    let mut guesses: Vec<String> = (1..30).map(|n| format!("猜{n}")).collect();
    guesses.push(target.name.to_string());
    let mut ids = Vec::new();
    for name in &guesses {
        let body = Body::LookupRequest(LookupRequest {
            name: name.parse().unwrap(),
            key: LookupKey::StudentId(target.student_id.clone()),
            requested_by: Some("张某".parse().unwrap()),
        });
        ids.push(w.submit("37", body, None).await);
    }
    let got = answers(&w, "37", &ids).await;
    let answered = count(&got, |b| matches!(b, Body::LookupResult(_)));
    assert_eq!((answered, count(&got, rate_limited)), (10, 20), "{got:?}");
    assert_eq!(count(&got, |b| matches!(b, Body::LookupResult(r) if r.student.is_some())), 0, "no guess pays off");

    // 44 scans 25 different students with their right names: 15 a minute are answered.
    let mut ids = Vec::new();
    for s in &w.province("51").students[1..26] {
        let body = Body::LookupRequest(LookupRequest {
            name: s.name.clone(),
            key: LookupKey::StudentId(s.student_id.clone()),
            requested_by: None,
        });
        ids.push(w.submit("44", body, None).await);
    }
    let got = answers(&w, "44", &ids).await;
    let found = count(&got, |b| matches!(b, Body::LookupResult(r) if r.student.is_some()));
    assert_eq!((found, count(&got, rate_limited)), (15, 10), "{got:?}");

    // The national office sees both: 37's user, every lookup of the student, when.
    let moe = w.bed.operator(Role::National("moe".into())).await;
    let (status, audit) = moe.get(&format!("/ops/lookups?student={}&limit=1000", target.student_id)).await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 30, "{audit}");
    assert!(entries.iter().all(|e| e["province"] == "37" && e["requestedBy"] == "张某" && e["at"].is_string()));
    let limited = entries.iter().filter(|e| e["outcome"] == "limited_student").count();
    assert_eq!(limited, 20);
    let (_, of_44) = moe.get("/ops/lookups?province=44&limit=1000").await;
    let outcomes: Vec<&str> = of_44.as_array().unwrap().iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "found").count(), 15);
    assert_eq!(outcomes.iter().filter(|o| **o == "limited_province").count(), 10);
    // An operator is not shown the audit.
    let op = w.bed.operator(Role::Operator("qian".into())).await;
    assert_eq!(op.get("/ops/lookups").await.0, 403);
}
