//! Operators settling dead letters, in process (a real PostgreSQL database, no broker): a
//! message dead-lettered for a cause that is then fixed is replayed and processed exactly once
//! — not twice for two replays at once, not again when the broker redelivers it; a message
//! that is poison still is left open and the attempt audited; a discard is audited and final.

use certs::Role;
use e2e::inprocess::Hub;
use e2e::{index_upsert, student};
use hub::service::Handled;
use schemas::messages::Body;
use schemas::{ErrorCode, codec};

fn operator() -> Role {
    Role::Operator("wang".into())
}

/// A hub that knows 37 but not 44, and an `index.upsert` of 44's dead-lettered for it.
async fn dead_lettered() -> (Hub, schemas::Envelope, i64) {
    let hub = Hub::new(&["37"], "").await;
    let env = index_upsert("44", vec![student("44", 1)]);
    let sent = hub.send_envelope(&env).await;
    assert!(matches!(sent.handled, Handled::Poison(ErrorCode::Revoked)), "{sent:?}");
    let (status, list) = hub.ops(operator(), "GET", "/ops/dead-letters?state=open", None).await;
    assert_eq!(status, 200, "{list}");
    let rows = list.as_array().expect("a list");
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!((rows[0]["code"].as_str(), rows[0]["state"].as_str()), (Some("E_REVOKED"), Some("open")));
    (hub, env, rows[0]["deadLetterId"].as_i64().expect("an id"))
}

/// 44 is admitted: its certificate registered.
async fn admit_44(hub: &Hub) {
    hub.admit("44").await;
}

async fn indexed(hub: &Hub) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM student_index WHERE province = '44'").fetch_one(&hub.pool).await.unwrap()
}

/// The `index.result`s queued for 44.
async fn results_for_44(hub: &Hub) -> usize {
    let bodies: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM outbox_message WHERE recipient = 'prov-44'")
        .fetch_all(&hub.pool)
        .await
        .unwrap();
    bodies
        .iter()
        .filter(|b| matches!(codec::from_xml(b, schemas::DEFAULT_MAX_BYTES).map(|e| e.body), Ok(Body::IndexResult(_))))
        .count()
}

async fn audit_actions(hub: &Hub) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit ORDER BY audit_id").fetch_all(&hub.pool).await.unwrap()
}

#[tokio::test]
async fn a_dead_letter_replayed_after_its_cause_is_fixed_is_processed_exactly_once() {
    let (hub, env, id) = dead_lettered().await;
    // Inspected: the message as it came.
    let (status, one) = hub.ops(operator(), "GET", &format!("/ops/dead-letters/{id}"), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["body"].as_str().map(str::as_bytes), Some(codec::to_xml(&env).as_bytes()));
    assert!(one["reason"].as_str().is_some_and(|r| r.contains("prov-44")), "{one}");

    // Replayed before the fix: poison still, left open, the attempt audited, nothing sent.
    let (status, refused) =
        hub.ops(operator(), "POST", &format!("/ops/dead-letters/{id}/replay"), Some(serde_json::json!({}))).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("E_REVOKED")), "{refused}");
    assert_eq!(audit_actions(&hub).await, ["replay-dead-letter-refused"]);
    assert_eq!((indexed(&hub).await, results_for_44(&hub).await), (0, 0));

    admit_44(&hub).await;
    // Two operators replay it at once: one processes it, the other is told it is settled.
    let body = Some(serde_json::json!({ "note": "44's certificate registered" }));
    let path = format!("/ops/dead-letters/{id}/replay");
    let (a, b) =
        tokio::join!(hub.ops(operator(), "POST", &path, body.clone()), hub.ops(operator(), "POST", &path, body));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let (ok, other) = if a.0 == 200 { (a.1, b.1) } else { (b.1, a.1) };
    assert_eq!((ok["outcome"].as_str(), ok["handled"].as_str()), (Some("replayed"), Some("processed")), "{ok}");
    assert_eq!(other["code"], "E_DEAD_LETTER_SETTLED", "{other}");
    assert_eq!((indexed(&hub).await, results_for_44(&hub).await), (1, 1));

    // The broker redelivers the original: recognized, nothing done again.
    let again = hub.send_envelope(&env).await;
    assert_eq!(again.handled, Handled::Duplicate, "{again:?}");
    assert_eq!((indexed(&hub).await, results_for_44(&hub).await), (1, 1));

    let (_, listed) = hub.ops(operator(), "GET", "/ops/dead-letters", None).await;
    assert_eq!(listed[0]["state"], "replayed", "{listed}");
    assert_eq!(listed[0]["settledBy"], "op-wang", "{listed}");
    let (_, open) = hub.ops(operator(), "GET", "/ops/dead-letters?state=open", None).await;
    assert_eq!(open.as_array().map(Vec::len), Some(0), "{open}");
    let actions = audit_actions(&hub).await;
    assert_eq!(actions.iter().filter(|a| *a == "replay-dead-letter").count(), 1, "{actions:?}");
}

#[tokio::test]
async fn a_discarded_dead_letter_is_audited_and_never_replayed() {
    let (hub, _, id) = dead_lettered().await;
    let note = Some(serde_json::json!({ "note": "sent again under a new id" }));
    let (status, done) = hub.ops(operator(), "POST", &format!("/ops/dead-letters/{id}/discard"), note).await;
    assert_eq!((status, done["outcome"].as_str()), (200, Some("discarded")), "{done}");
    admit_44(&hub).await;
    let (status, refused) = hub.ops(operator(), "POST", &format!("/ops/dead-letters/{id}/replay"), None).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("E_DEAD_LETTER_SETTLED")), "{refused}");
    assert_eq!(indexed(&hub).await, 0);
    let (_, audit) = hub.ops(operator(), "GET", "/ops/audit", None).await;
    let entries: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(entries, [("replay-dead-letter-refused", "op-wang"), ("discard-dead-letter", "op-wang")], "{audit}");
    assert!(audit[1]["detail"].as_str().is_some_and(|d| d.contains("sent again under a new id")), "{audit}");
}

#[tokio::test]
async fn a_selection_is_replayed_one_by_one_and_what_cannot_be_replayed_says_why() {
    // Bodies over 300 bytes are kept truncated: such a dead letter cannot be replayed.
    let hub = Hub::new(&["37"], "[limits]\ndead_letter_body_bytes = 300\n").await;
    let env = index_upsert("44", vec![student("44", 1)]);
    assert!(matches!(hub.send_envelope(&env).await.handled, Handled::Poison(ErrorCode::Revoked)));
    let (_, list) = hub.ops(operator(), "GET", "/ops/dead-letters", None).await;
    let truncated = list[0]["deadLetterId"].as_i64().unwrap();
    assert_eq!(list[0]["truncated"], true, "{list}");
    admit_44(&hub).await;
    let body = serde_json::json!({ "ids": [truncated, 999_999], "note": "" });
    let (status, out) = hub.ops(operator(), "POST", "/ops/dead-letters/replay", Some(body)).await;
    assert_eq!(status, 200, "{out}");
    let codes: Vec<&str> = out.as_array().unwrap().iter().map(|o| o["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["E_NOT_REPLAYABLE", "E_NOT_FOUND"], "{out}");
    assert_eq!(indexed(&hub).await, 0);
    // An empty selection, or one too large, is refused whole.
    let (status, _) =
        hub.ops(operator(), "POST", "/ops/dead-letters/replay", Some(serde_json::json!({ "ids": [] }))).await;
    assert_eq!(status, 400);
    // A province may not settle dead letters.
    let (status, _) = hub
        .ops(Role::Province("37".parse().unwrap()), "POST", &format!("/ops/dead-letters/{truncated}/discard"), None)
        .await;
    assert_eq!(status, 403);
}
