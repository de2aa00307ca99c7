//! The outbox relay against a real broker and database: what it claims, how it is woken, and
//! that a backlog larger than one batch (so batches pipelined) goes out once each, in order.

use std::time::Duration;

use e2e::TestBed;

const WAIT: Duration = Duration::from_secs(30);

async fn count(bed: &TestBed, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&bed.db().await).await.unwrap()
}

fn outbox_row(size: usize) -> hub::store::outbox::NewMessage {
    hub::store::outbox::NewMessage {
        message_id: uuid::Uuid::new_v4(),
        exchange: "x".into(),
        routing_key: "prov-37".into(),
        message_type: "index.result".into(),
        recipient: "prov-37".into(),
        case_id: None,
        group_id: None,
        correlation_id: None,
        headers: serde_json::json!({}),
        body: vec![b'a'; size],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_claims_by_count_and_bytes_and_is_woken_once_the_outbox_commits() {
    use hub::store::outbox;
    let bed = TestBed::new().await;
    let pool = bed.db().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen("outbox").await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    for size in [3000, 400, 400, 400, 400] {
        outbox::enqueue(&mut tx, &outbox_row(size), None).await.unwrap();
    }
    // Nothing before the commit; at the commit, the trigger's notification.
    let early = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(early.is_err(), "woken before the commit: {early:?}");
    tx.commit().await.unwrap();
    let woken = tokio::time::timeout(WAIT, listener.recv()).await.expect("woken at commit").unwrap();
    assert_eq!(woken.channel(), "outbox");
    assert_eq!(count(&bed, "SELECT count(*) FROM message_trace WHERE direction = 'out'").await, 5, "each traced");

    let mut conn = pool.acquire().await.unwrap();
    // The first row is taken even when it alone is over the byte bound.
    let sizes = |rows: &[outbox::Pending]| rows.iter().map(|r| r.body.len()).collect::<Vec<_>>();
    assert_eq!(sizes(&outbox::claim_due(&mut conn, 0, &[], 10, 1000).await.unwrap()), [3000]);
    assert_eq!(sizes(&outbox::claim_due(&mut conn, 0, &[], 10, 4200).await.unwrap()), [3000, 400, 400, 400]);
    assert_eq!(sizes(&outbox::claim_due(&mut conn, 0, &[], 2, 1 << 20).await.unwrap()), [3000, 400]);
    // The pipelined relay reads every due row but those of the batches in flight (nothing is
    // locked: one relay reads at a time).
    let batch = outbox::claim_due(&mut conn, 0, &[], 2, 1 << 20).await.unwrap();
    assert_eq!(sizes(&batch), [3000, 400]);
    let in_flight: Vec<i64> = batch.iter().map(|r| r.outbox_id).collect();
    let next = outbox::claim_due(&mut conn, 0, &in_flight, 10, 1 << 20).await.unwrap();
    assert_eq!(sizes(&next), [400, 400, 400]);
    assert!(next.iter().all(|r| !in_flight.contains(&r.outbox_id)), "none of the batch in flight");
    // A row stamped sent is not read again; one of a lower id committed later is, first.
    outbox::mark_sent(&mut conn, &in_flight).await.unwrap();
    let mut late = pool.begin().await.unwrap();
    let lower = outbox_row(100);
    outbox::enqueue(&mut late, &lower, None).await.unwrap();
    let mut later = pool.begin().await.unwrap();
    outbox::enqueue(&mut later, &outbox_row(50), None).await.unwrap();
    later.commit().await.unwrap();
    assert_eq!(sizes(&outbox::claim_due(&mut conn, 0, &[], 10, 1 << 20).await.unwrap()), [400, 400, 400, 50]);
    late.commit().await.unwrap();
    let all = outbox::claim_due(&mut conn, 0, &[], 10, 1 << 20).await.unwrap();
    assert_eq!(sizes(&all), [400, 400, 400, 100, 50]);
    // Above a floor, only the rows above it.
    let floor = all[3].outbox_id;
    assert_eq!(sizes(&outbox::claim_due(&mut conn, floor, &[], 10, 1 << 20).await.unwrap()), [50]);
}

/// A queued message's bytes are stored once, in its message-log entry, and the relay reads
/// them there; an id queued again is neither queued nor logged twice; a row written with a
/// body of its own (as before the outbox kept none) is logged and sent with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_queued_message_s_bytes_are_kept_once_in_the_message_log_and_sent_from_there() {
    use hub::store::outbox;
    let bed = TestBed::new().await;
    let pool = bed.db().await;
    let mut conn = pool.acquire().await.unwrap();
    let a = outbox_row(700);
    let mut b = outbox_row(300);
    b.body = b"<b/>".repeat(75);
    let mut again = a.clone();
    again.body = b"other bytes".to_vec();
    outbox::enqueue_all(&mut conn, &[a.clone(), b.clone(), again.clone()], &[]).await.unwrap();
    outbox::enqueue(&mut conn, &again, None).await.unwrap();
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox").await, 2, "an id is queued once");
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox WHERE body IS NOT NULL").await, 0, "no bytes in the outbox");
    let logged: Vec<(uuid::Uuid, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT message_id, body, body_sha256 FROM message_log WHERE direction = 'out' ORDER BY entry_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let digest = |b: &[u8]| <sha2::Sha256 as sha2::Digest>::digest(b).to_vec();
    assert_eq!(
        logged,
        [(a.message_id, a.body.clone(), digest(&a.body)), (b.message_id, b.body.clone(), digest(&b.body))],
        "each logged once, with its first bytes"
    );
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, message_type, recipient, body)
         VALUES (gen_random_uuid(), 'x', 'prov-37', 'index.result', 'prov-37', '\\x6f6c64')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        count(&bed, "SELECT count(*) FROM message_log WHERE direction = 'out'").await,
        3,
        "the old way logged too"
    );
    let due = outbox::claim_due(&mut conn, 0, &[], 10, 1 << 20).await.unwrap();
    let bodies: Vec<&[u8]> = due.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, [a.body.as_slice(), b.body.as_slice(), b"old"], "sent with the bytes logged");
    // A row whose entry is gone (a hand-edited database) is not read: the others still go.
    sqlx::query("DELETE FROM message_log WHERE message_id = $1").bind(a.message_id).execute(&pool).await.unwrap();
    let due = outbox::claim_due(&mut conn, 0, &[], 10, 1 << 20).await.unwrap();
    let bodies: Vec<&[u8]> = due.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, [b.body.as_slice(), b"old"], "the others are read");
    assert_eq!(outbox::lag(&pool).await.unwrap().0, 3, "it waits in the outbox's lag");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipelined_relay_sends_a_backlog_to_a_province_once_each_in_outbox_order() {
    use futures_util::StreamExt;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions};
    // More rows than one relay batch (1,000): the next batch is claimed and published while
    // the broker still confirms the one before it.
    const ROWS: usize = 2500;
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let pool = bed.db().await;
    let mut tx = pool.begin().await.unwrap();
    let rows: Vec<_> = (0..ROWS)
        .map(|_| hub::store::outbox::NewMessage {
            exchange: schemas::topology::OUTBOUND_EXCHANGE.into(),
            ..outbox_row(200)
        })
        .collect();
    let lines: Vec<_> = rows.iter().map(|r| hub::store::outbox::queued_line(r, None)).collect();
    hub::store::outbox::enqueue_all(&mut tx, &rows, &lines).await.unwrap();
    tx.commit().await.unwrap();
    let order: Vec<String> = rows.iter().map(|r| r.message_id.to_string()).collect();

    bed.spawn_hub("hub").await;
    let conn = bed.connect(&a).await;
    let ch = conn.create_channel().await.unwrap();
    let queue = schemas::topology::province_queue("37".parse().unwrap());
    let mut consumer = ch
        .basic_consume(queue.as_str().into(), "order".into(), BasicConsumeOptions::default(), Default::default())
        .await
        .unwrap();
    let mut got = Vec::with_capacity(ROWS);
    while got.len() < ROWS {
        let d = tokio::time::timeout(WAIT, consumer.next()).await.expect("in time").unwrap().unwrap();
        got.push(d.properties.message_id().as_ref().map(|m| m.to_string()).unwrap_or_default());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!(got == order, "published in outbox order, each once");
    e2e::eventually("every row stamped sent", WAIT, || async {
        (count(&bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await == 0).then_some(())
    })
    .await;
    // Nothing more follows.
    let more = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await;
    assert!(more.is_err(), "a message published twice: {more:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_broker_refused_holds_its_province_s_later_rows_until_it_goes() {
    use hub::store::outbox;
    let bed = TestBed::new().await;
    let pool = bed.db().await;
    let mut tx = pool.begin().await.unwrap();
    for to in ["prov-37", "prov-51", "prov-37", "prov-51"] {
        let row = outbox::NewMessage { recipient: to.into(), routing_key: to.into(), ..outbox_row(10) };
        outbox::enqueue(&mut tx, &row, None).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let ids = |rows: &[outbox::Pending]| rows.iter().map(|r| r.outbox_id).collect::<Vec<_>>();
    let all = ids(&outbox::claim_due(&mut conn, 0, &[], 10, 1 << 20).await.unwrap());
    assert_eq!(all.len(), 4);
    // The broker refuses 37's first message: it waits to be tried again, and 37's second must
    // not overtake it; 51's messages are not held.
    outbox::mark_failed(&mut conn, all[0], "nacked by the broker", chrono::Utc::now() + chrono::Duration::seconds(60))
        .await
        .unwrap();
    let next = ids(&outbox::claim_due(&mut conn, 0, &[], 10, 1 << 20).await.unwrap());
    assert_eq!(next, [all[1], all[3]], "only 51's rows while 37's first waits");
    // Once it is due again, 37's rows go, in their order.
    sqlx::query("UPDATE outbox SET next_attempt_at = now() WHERE outbox_id = $1")
        .bind(all[0])
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(ids(&outbox::claim_due(&mut conn, 0, &[], 10, 1 << 20).await.unwrap()), all);
}

/// A database crash loses PostgreSQL's activity statistics, so nothing tells autovacuum the
/// outbox changed, and the planner goes on believing what it last analyzed — often that no row
/// is unsent. The relay's read must stay a single pass under that belief: planned as a loop
/// per row, it read the whole backlog once per row (11 s for 6,000 rows in a long chaos run,
/// longer than a relay leader lived there). Measured in buffers touched, not in time.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_s_read_stays_one_pass_with_the_statistics_a_database_crash_leaves() {
    use hub::store::outbox;
    let bed = TestBed::new().await;
    let pool = bed.db().await;
    let run = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.unwrap() }
    };
    run("ALTER TABLE outbox SET (autovacuum_enabled = off)").await;
    // A sent history, analyzed: the statistics say no row is unsent.
    run("INSERT INTO outbox (message_id, exchange, routing_key, message_type, recipient, body, sent_at)
         SELECT gen_random_uuid(), 'x', 'prov-' || (37 + i % 3), 'index.result', 'prov-' || (37 + i % 3),
                '\\x61', now()
         FROM generate_series(1, 20000) i")
    .await;
    run("ANALYZE outbox").await;
    // Then a backlog the statistics know nothing of, as after a crash.
    const BACKLOG: i64 = 3000;
    run("INSERT INTO outbox (message_id, exchange, routing_key, message_type, recipient, body)
         SELECT gen_random_uuid(), 'x', 'prov-' || (37 + i % 3), 'index.result', 'prov-' || (37 + i % 3),
                '\\x61'
         FROM generate_series(1, 3000) i")
    .await;

    let mut relay = relay_connection(&bed).await;
    let (rows, blocks) = measured_read(&mut relay, 1000).await;
    println!("the relay's read touched {blocks} blocks for a backlog of {BACKLOG}");
    assert_eq!(rows, 1000, "a full batch read");
    // One pass over the backlog touches a block per few dozen rows (85 here, on a connection
    // set up as the relay's); a pass per row touched 63,119 on the same connection.
    assert!(blocks < BACKLOG, "the read touched {blocks} blocks for a backlog of {BACKLOG}");
    let none: &[i64] = &[];
    let mut conn = pool.acquire().await.unwrap();
    let batch = outbox::claim_due(&mut conn, 0, none, 1000, 1 << 21).await.unwrap();
    assert_eq!(batch.len(), 1000);
    assert!(batch.windows(2).all(|w| w[0].outbox_id < w[1].outbox_id), "in outbox order");
}

/// A connection set up as the relay sets up its own.
async fn relay_connection(bed: &TestBed) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&bed.settings.database.connect_options().unwrap()).await.unwrap();
    hub::store::outbox::relay_session(&mut conn).await.unwrap();
    conn
}

/// The relay's read of every due row (floor 0, as its sweep reads), run under `EXPLAIN
/// (ANALYZE, BUFFERS)`: the rows it chose and the blocks it touched.
async fn measured_read(conn: &mut sqlx::PgConnection, limit: i64) -> (i64, i64) {
    let none: &[i64] = &[];
    let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}",
        hub::store::outbox::CLAIM_DUE
    )))
    .bind(none)
    .bind(limit)
    .bind(1_i64 << 21)
    .bind(0_i64)
    .fetch_one(conn)
    .await
    .unwrap();
    let top = &plan[0]["Plan"];
    let blocks = top["Shared Hit Blocks"].as_i64().unwrap() + top["Shared Read Blocks"].as_i64().unwrap();
    (top["Actual Rows"].as_i64().unwrap(), blocks)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_s_reads_skip_the_entries_its_stamps_left_behind() {
    use hub::store::outbox;
    let bed = TestBed::new().await;
    let pool = bed.db().await;
    // No vacuum, as on a large outbox between two of them.
    sqlx::query("ALTER TABLE outbox SET (autovacuum_enabled = off)").execute(&pool).await.unwrap();
    const SENT: i64 = 20_000;
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, message_type, recipient, body)
         SELECT gen_random_uuid(), 'x', 'prov-' || (37 + i % 3), 'index.result', 'prov-' || (37 + i % 3),
                convert_to(repeat('a', 700), 'UTF8')
         FROM generate_series(1, $1) i",
    )
    .bind(SENT)
    .execute(&pool)
    .await
    .unwrap();
    // The relay publishes and stamps them, a batch at a time. The table has no statistics yet
    // (a new deployment's; the planner then expects a few unsent rows, as it mostly does).
    let mut relay = relay_connection(&bed).await;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT outbox_id FROM outbox ORDER BY outbox_id").fetch_all(&pool).await.unwrap();
    for batch in ids.chunks(500) {
        outbox::mark_sent(&mut relay, batch).await.unwrap();
    }
    // A transaction id taken after the stamps: one still running below it began before them.
    let after_stamps: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text").fetch_one(&pool).await.unwrap();
    // A few new rows.
    let mut conn = pool.acquire().await.unwrap();
    for _ in 0..10 {
        outbox::enqueue(&mut conn, &outbox_row(700), None).await.unwrap();
    }
    let (rows, first) = measured_read(&mut relay, 1000).await;
    assert_eq!(rows, 10, "the new rows read");
    // Every read after the first skips the stamped rows' entries (the first marks them; the
    // marks may wait for the stamps' asynchronous commit to reach the disk).
    let started = std::time::Instant::now();
    let mut deadline = started + WAIT;
    let mut later = vec![];
    loop {
        let (rows, blocks) = measured_read(&mut relay, 1000).await;
        assert_eq!(rows, 10, "the new rows read");
        later.push(blocks);
        // 89 blocks here (59 when the rows held their bytes, before the message log did). A
        // bitmap scan reads every stamped row's heap page at every read (2,282 blocks); the
        // hold read through the index of every unsent row walks its stamped entries (140).
        if blocks < SENT / 200 {
            break;
        }
        // PostgreSQL marks an entry dead only once no transaction that began before the stamps
        // is running, in any database of the cluster: another test's (or autovacuum's) defers
        // the marks until it ends. The deadline counts from when none is left.
        let older: bool = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) < $1::xid8")
            .bind(&after_stamps)
            .fetch_one(&pool)
            .await
            .unwrap();
        if older {
            deadline = std::time::Instant::now() + WAIT;
        }
        assert!(
            std::time::Instant::now() < deadline && started.elapsed() < 10 * WAIT,
            "reads after {SENT} stamps touched {first} blocks, then {later:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("the relay's reads after {SENT} stamps touched {first} blocks, then {later:?}");
}

/// Stored bodies are compressed with lz4, not PostgreSQL's default pglz, which works through a
/// whole archive file only to keep it uncompressed (migration 0020).
#[tokio::test(flavor = "multi_thread")]
async fn stored_bodies_are_compressed_with_lz4() {
    let bed = TestBed::new().await;
    let pool = bed.db().await;
    let mut conn = pool.acquire().await.unwrap();
    let mut m = outbox_row(0);
    m.body = b"<student><name>x</name></student>".repeat(400);
    hub::store::outbox::enqueue_all(&mut conn, std::slice::from_ref(&m), &[]).await.unwrap();
    let method: Option<String> =
        sqlx::query_scalar("SELECT pg_column_compression(body) FROM message_log WHERE message_id = $1")
            .bind(m.message_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(method.as_deref(), Some("lz4"), "the logged body's compression");
    for (table, column) in
        [("outbox", "body"), ("dead_letter", "body"), ("case_evidence", "content"), ("archive_attachment", "content")]
    {
        let set: String = sqlx::query_scalar(
            "SELECT attcompression::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(set, "l", "{table}.{column} is compressed with lz4");
    }
}
