//! Everything a client can hold or make the hub keep is bounded: idle connections to both HTTP
//! servers are closed within their deadlines while real clients are served; poison from one
//! province costs bounded space; large messages are taken a few at a time, so what the hub
//! holds of them stays within `[limits] held_bytes`; what the hub keeps is pruned after its
//! retention.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use certs::Role;
use e2e::{Options, TestBed, eventually, index_upsert, publish, publish_raw, student};
use hub::amqp::names;
use schemas::codec;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);
const IDLE: usize = 2000;

/// Opens `n` connections that send nothing.
async fn open_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.expect("the server accepts the connection"));
    }
    out
}

/// Waits for the server to close every connection; returns the longest wait.
async fn all_closed(conns: Vec<TcpStream>, within: Duration) -> Duration {
    let started = Instant::now();
    let waits: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                match tokio::time::timeout(within, c.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
                    _ => None,
                }
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for w in waits {
        let took = w.await.unwrap().expect("a connection was still open past its deadline");
        longest = longest.max(took);
    }
    longest
}

/// Deadlines short enough for a test, a cap above the flood.
const LIMITS: &str =
    "max_connections = 4096\nhandshake_timeout_secs = 2\nheader_timeout_secs = 2\nidle_timeout_secs = 4\n";

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_idle_connections_to_the_operator_api_are_closed_while_operators_are_served() {
    let bed = TestBed::with(Options { extra_toml: format!("[ops.limits]\n{LIMITS}"), ..Default::default() }).await;
    bed.spawn_hub("hub").await;
    let op = bed.operator(Role::Operator("zhao".into())).await;
    let addr = bed.settings.ops.as_ref().unwrap().listen;
    let idle = open_idle(addr, IDLE).await;
    // Served throughout: several requests while the idle connections are held.
    for _ in 0..5 {
        let (status, body) = op.get("/ops/stuck").await;
        assert_eq!(status, 200, "{body}");
    }
    // No TLS handshake ever started: closed by the handshake deadline (2 s), with slack.
    let longest = all_closed(idle, Duration::from_secs(10)).await;
    eprintln!("operator API: {IDLE} idle connections closed within {longest:?}");
    assert!(longest < Duration::from_secs(8), "{longest:?}");
    let (status, _) = op.get("/ops/stuck").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_idle_connections_to_the_adapter_api_are_closed_while_the_province_is_served() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let adapter = bed.spawn_adapter_with("adapter", &a, &format!("\n[api.limits]\n{LIMITS}")).await;
    let idle = open_idle(adapter.api, IDLE).await;
    for _ in 0..5 {
        let status = adapter.get("/status").await;
        assert_eq!(status["province"], "37");
    }
    // No request ever began: closed by the head deadline (2 s), with slack.
    let longest = all_closed(idle, Duration::from_secs(10)).await;
    eprintln!("adapter API: {IDLE} idle connections closed within {longest:?}");
    assert!(longest < Duration::from_secs(8), "{longest:?}");
    assert_eq!(adapter.get("/status").await["province"], "37");
}

async fn stored_bytes(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (pg_total_relation_size('dead_letter') + pg_total_relation_size('dead_letter_suppressed')
                + pg_total_relation_size('outbox') + pg_total_relation_size('inbox'))::bigint",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A hub with `options` running, province 37 admitted and connected, and the hub's database.
async fn serving_37(options: Options) -> (TestBed, lapin::Connection, sqlx::PgPool, e2e::Creds) {
    let bed = TestBed::with(options).await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let conn = bed.connect(&a).await;
    let pool = bed.db().await;
    (bed, conn, pool, a)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_oversize_poison_messages_leave_the_hub_s_storage_bounded() {
    let (_bed, conn, pool, a) = serving_37(Options {
        max_message_bytes: Some(64 * 1024),
        extra_limits: "dead_letter_body_bytes = 4096\npoison_per_minute = 60".into(),
        ..Default::default()
    })
    .await;
    let before = stored_bytes(&pool).await;
    let junk = vec![b'x'; 1024 * 1024];
    for _ in 0..100 {
        publish_raw(&conn, &junk, Some("prov-37"), &uuid::Uuid::new_v4().to_string(), &a).await.unwrap();
    }
    let seen = || async {
        let (kept, counted): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM dead_letter), (SELECT COALESCE(sum(count), 0)::bigint FROM dead_letter_suppressed)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (kept, counted)
    };
    let (kept, counted) = eventually("every poison message accounted for", WAIT, || async {
        let (k, c) = seen().await;
        (k + c == 100).then_some((k, c))
    })
    .await;
    assert_eq!((kept, counted), (60, 40), "60 a minute kept, the rest counted");
    let truncated: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter WHERE truncated AND length(body) = 4096")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(truncated, 60, "each kept as its first 4 KiB with the size and digest of the whole");
    let grown = stored_bytes(&pool).await - before;
    eprintln!("100 poison messages of 1 MiB (100 MiB) grew the hub's tables by {grown} bytes");
    assert!(grown < 2 * 1024 * 1024, "{grown} bytes for 100 MiB of poison");
    // The hub goes on serving the province.
    let ok = index_upsert("37", vec![student("37", 1)]);
    publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&ok).as_bytes(), "prov-37", &a).await.unwrap();
    eventually("the valid message applied", WAIT, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM student_index").fetch_one(&pool).await.ok()?;
        (n == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn published_outbox_rows_and_dead_letters_are_pruned_after_their_retention() {
    let bed = TestBed::with(Options {
        extra_toml: "[retention]\noutbox_published_secs = 3\ndead_letter_secs = 3\nprune_interval_secs = 1\n".into(),
        ..Default::default()
    })
    .await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let conn = bed.connect(&a).await;
    let pool = bed.db().await;
    for n in 0..5 {
        let env = index_upsert("37", vec![student("37", n)]);
        publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&env).as_bytes(), "prov-37", &a).await.unwrap();
    }
    publish_raw(&conn, b"not xml", Some("prov-37"), &uuid::Uuid::new_v4().to_string(), &a).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    eventually("six replies published", WAIT, || async {
        (count("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL").await == 6).then_some(())
    })
    .await;
    assert_eq!(count("SELECT count(*) FROM dead_letter").await, 1);
    eventually("published rows and dead letters pruned", WAIT, || async {
        let left = count("SELECT count(*) FROM outbox").await + count("SELECT count(*) FROM dead_letter").await;
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(count("SELECT count(*) FROM student_index").await, 5, "pruning touches only what it keeps");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_messages_after_small_ones_narrow_the_hub_s_window_to_what_held_bytes_allows() {
    const LIMIT: usize = 4 * 1024 * 1024;
    const LARGE: usize = 1024 * 1024;
    let (bed, conn, pool, a) = serving_37(Options {
        extra_limits: format!("held_bytes = {LIMIT}\npoison_per_minute = 1000"),
        ..Default::default()
    })
    .await;
    let listen = bed.settings.http.listen;
    // Small messages first: the window opens to the prefetch.
    for i in 0..100 {
        let env = index_upsert("37", vec![student("37", i)]);
        publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&env).as_bytes(), "prov-37", &a).await.unwrap();
    }
    let opened = eventually("the small messages applied and the window opened", WAIT, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM student_index").fetch_one(&pool).await.ok()?;
        let window = e2e::metric(listen, "hub_consumer_window").await;
        (n == 100 && window > 64.0).then_some(window)
    })
    .await;

    // Then files of 1 MiB (unreadable: each a dead letter), while the hub's holdings are watched.
    let junk = vec![b'x'; LARGE];
    let publisher = async {
        for _ in 0..40 {
            publish_raw(&conn, &junk, Some("prov-37"), &uuid::Uuid::new_v4().to_string(), &a).await.unwrap();
        }
    };
    let watcher = async {
        let (mut most_held, mut narrowest) = (0.0_f64, f64::MAX);
        let deadline = Instant::now() + WAIT;
        loop {
            most_held = most_held.max(e2e::metric(listen, "hub_consumer_held_bytes").await);
            narrowest = narrowest.min(e2e::metric(listen, "hub_consumer_window").await);
            let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter").fetch_one(&pool).await.unwrap();
            if kept == 40 {
                return (most_held, narrowest);
            }
            assert!(Instant::now() < deadline, "only {kept} of 40 large messages dead-lettered in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let ((), (most_held, narrowest)) = tokio::join!(publisher, watcher);
    eprintln!("window {opened} → {narrowest}; at most {most_held} bytes held (limit {LIMIT})");
    assert!(narrowest <= (LIMIT / LARGE) as f64, "the window narrowed to fit 1 MiB messages: {narrowest}");
    assert!(most_held <= (LIMIT + 2 * LARGE) as f64, "{most_held} bytes held, limit {LIMIT}");
    assert!(e2e::metric(listen, "hub_consumer_paused_total").await >= 1.0);
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox").fetch_one(&pool).await.unwrap();
    assert_eq!(inbox, 140, "every message taken once");
}
