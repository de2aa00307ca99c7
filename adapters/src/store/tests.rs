//! The store against a real SQLite file.

use super::*;

async fn store() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = open(&dir.path().join("store.db")).await.unwrap();
    (dir, pool)
}

fn from_hub<'a>(id: &'a str, correlation_id: Option<&'a str>, body: &'a [u8]) -> Received<'a> {
    Received { message_id: id, message_type: "index.result", case_id: None, correlation_id, body, parse_error: None }
}

/// Stores one message as the link does; whether it was new.
async fn receive(pool: &SqlitePool, m: &Received<'_>) -> Result<bool> {
    Ok(!receive_all(pool, std::slice::from_ref(m)).await?.is_empty())
}

async fn answered_by(pool: &SqlitePool, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT answered_by FROM outbox WHERE message_id = ?").bind(id).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn an_answer_marks_its_submission_answered_once_as_it_is_stored() {
    let (_dir, pool) = store().await;
    submit(&pool, "s1", "index.upsert", None, &[1; 32], b"<s1/>").await.unwrap();
    submit(&pool, "s2", "index.upsert", None, &[2; 32], b"<s2/>").await.unwrap();
    assert!(receive(&pool, &from_hub("r1", Some("s1"), b"<r1/>")).await.unwrap(), "new");
    assert_eq!(answered_by(&pool, "s1").await.as_deref(), Some("r1"));
    assert_eq!(answered_by(&pool, "s2").await, None, "only the submission it answers");
    assert!(!receive(&pool, &from_hub("r1", Some("s2"), b"<r1/>")).await.unwrap(), "a redelivery is not new");
    assert_eq!(answered_by(&pool, "s2").await, None, "a redelivery changes nothing");
    assert!(receive(&pool, &from_hub("r2", Some("s1"), b"<r2/>")).await.unwrap());
    assert_eq!(answered_by(&pool, "s1").await.as_deref(), Some("r1"), "the first answer stays the one named");
    assert!(receive(&pool, &from_hub("r3", None, b"<r3/>")).await.unwrap(), "a message answering nothing");
    assert_eq!(depths(&pool).await.unwrap().inbox_pending, 3);
}

#[tokio::test]
async fn a_batch_is_confirmed_and_acknowledged_together() {
    let (_dir, pool) = store().await;
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        submit(&pool, id, "index.upsert", None, &[u8::try_from(i).unwrap(); 32], b"<x/>").await.unwrap();
    }
    let seqs: Vec<i64> = queued(&pool, 10).await.unwrap().iter().map(|q| q.seq).collect();
    confirm(&pool, &seqs[..2]).await.unwrap();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT message_id, state, attempts FROM outbox ORDER BY seq").fetch_all(&pool).await.unwrap();
    assert_eq!(
        rows,
        [("a".into(), "confirmed".into(), 1), ("b".into(), "confirmed".into(), 1), ("c".into(), "queued".into(), 0)]
    );
    for id in ["r1", "r2", "r3"] {
        receive(&pool, &from_hub(id, None, b"<r/>")).await.unwrap();
    }
    let ids = ["r1", "r2", "r2", "unknown"].map(String::from);
    assert_eq!(inbox_ack_many(&pool, &ids).await.unwrap(), 2, "each id found once; an unknown one is not");
    assert_eq!(depths(&pool).await.unwrap().inbox_pending, 1);
}

#[tokio::test]
async fn the_publisher_reads_at_most_its_bytes_but_always_the_oldest_row() {
    let (_dir, pool) = store().await;
    let size = usize::try_from(PUBLISH_MAX_BYTES).unwrap() * 2 / 5;
    for (i, id) in ["p1", "p2", "p3"].iter().enumerate() {
        let body = vec![b'a' + u8::try_from(i).unwrap(); size];
        submit(&pool, id, "archive.attachment", None, &[u8::try_from(i).unwrap(); 32], &body).await.unwrap();
    }
    let ids = |rows: Vec<Queued>| rows.into_iter().map(|q| q.message_id).collect::<Vec<_>>();
    assert_eq!(ids(queued(&pool, 128).await.unwrap()), ["p1", "p2"], "the third would pass the bytes");
    assert_eq!(ids(queued(&pool, 1).await.unwrap()), ["p1"], "and the row limit still holds");
    let seqs: Vec<i64> = queued(&pool, 128).await.unwrap().iter().map(|q| q.seq).collect();
    confirm(&pool, &seqs).await.unwrap();
    assert_eq!(ids(queued(&pool, 128).await.unwrap()), ["p3"], "the next read takes up there");
    let huge = vec![b'z'; usize::try_from(PUBLISH_MAX_BYTES).unwrap() + 1];
    submit(&pool, "p4", "archive.attachment", None, &[4; 32], &huge).await.unwrap();
    confirm(&pool, &[queued(&pool, 128).await.unwrap()[0].seq]).await.unwrap();
    let rows = queued(&pool, 128).await.unwrap();
    assert_eq!(
        (rows[0].message_id.as_str(), rows.len(), rows[0].body.len()),
        ("p4", 1, huge.len()),
        "a row above the bytes alone"
    );
}

#[tokio::test]
async fn a_listing_with_bodies_stops_before_the_message_that_would_pass_its_bytes() {
    let (_dir, pool) = store().await;
    let size = usize::try_from(LISTING_MAX_BYTES).unwrap() * 2 / 5;
    let bodies: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; size]).collect();
    let ids = ["m1", "m2", "m3"];
    for (id, body) in ids.iter().zip(&bodies) {
        receive(&pool, &from_hub(id, None, body)).await.unwrap();
    }
    let page = inbox_list_with_bodies(&pool, 0, 100, true).await.unwrap();
    let got: Vec<(&str, &[u8])> = page.iter().map(|(e, b)| (e.message_id.as_str(), b.as_slice())).collect();
    assert_eq!(got, [("m1", bodies[0].as_slice()), ("m2", bodies[1].as_slice())], "two of 0.4 × the bound fit");
    let next = inbox_list_with_bodies(&pool, page[1].0.seq, 100, true).await.unwrap();
    assert_eq!(next.iter().map(|(e, _)| e.message_id.as_str()).collect::<Vec<_>>(), ["m3"], "the next page goes on");
    assert_eq!(inbox_list(&pool, 0, 100, true).await.unwrap().len(), 3, "without bodies, only the count bounds");
    assert_eq!(inbox_list_with_bodies(&pool, 0, 1, true).await.unwrap().len(), 1, "the count bounds too");
    // A message larger than the bound alone still comes, alone: the listing never stalls.
    inbox_ack_many(&pool, &ids.map(String::from)).await.unwrap();
    let big = vec![b'z'; usize::try_from(LISTING_MAX_BYTES).unwrap() + 1];
    receive(&pool, &from_hub("big", None, &big)).await.unwrap();
    receive(&pool, &from_hub("small", None, b"<s/>")).await.unwrap();
    let page = inbox_list_with_bodies(&pool, 0, 100, true).await.unwrap();
    assert_eq!(page.iter().map(|(e, b)| (e.message_id.as_str(), b.len())).collect::<Vec<_>>(), [("big", big.len())]);
}

#[tokio::test]
async fn messages_taken_together_are_stored_each_once_in_the_order_taken() {
    let (_dir, pool) = store().await;
    submit(&pool, "s1", "index.upsert", None, &[1; 32], b"<s1/>").await.unwrap();
    receive(&pool, &from_hub("r0", None, b"<r0/>")).await.unwrap();
    let batch = [
        from_hub("r0", None, b"<r0/>"),
        from_hub("r1", Some("s1"), b"<r1/>"),
        from_hub("r2", None, b"<r2/>"),
        from_hub("r1", Some("s1"), b"<r1 again/>"),
    ];
    let new = receive_all(&pool, &batch).await.unwrap();
    assert_eq!(new, ["r1", "r2"], "only the new ones, each once");
    assert_eq!(answered_by(&pool, "s1").await.as_deref(), Some("r1"));
    let listed = inbox_list_with_bodies(&pool, 0, 10, true).await.unwrap();
    let got: Vec<(&str, &[u8])> = listed.iter().map(|(e, b)| (e.message_id.as_str(), b.as_slice())).collect();
    assert_eq!(
        got,
        [("r0", &b"<r0/>"[..]), ("r1", b"<r1/>"), ("r2", b"<r2/>")],
        "in the order taken, first bytes kept"
    );
    assert!(receive_all(&pool, &[]).await.unwrap().is_empty());
}
