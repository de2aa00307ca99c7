//! Throughput of the hub against the raw broker, measured in one run on the same broker node,
//! queue type (quorum) and message size:
//!
//! - raw: publish with confirms → consume → ack, through one quorum queue;
//! - null relay: publish with confirms to one quorum queue → a relay consumes it, publishes each
//!   message with confirms to a second quorum queue and acks after the confirm (no database) →
//!   consume → ack: the two hops any relay must pay, the limit of the hub's path;
//! - hub: a province publishes `index.upsert` (confirmed) → the hub processes it in one
//!   PostgreSQL transaction (inbox, index, outbox) → the relay publishes the reply (confirmed)
//!   → the province consumes and acks it.
//!
//! Prints the three rates and the hub's ratio to each, with where the CPU went and the hub's
//! stage figures; then one hop's latency (p50, p99) with the offered rate held at half the
//! hub's measured rate, through the raw broker, the null relay and the hub; then a backlog: the hub stopped while
//! the province sends BENCH_BACKLOG messages (default 100,000; 0 skips it), started on the full
//! queue, its drain rate against the steady rate and its RSS sampled each second; then a
//! province offline: its adapter down while the hub answers as many of its requests, started on
//! the full queue, its drain rate and RSS. Run (release binaries first):
//!   cargo build --release --workspace --bins && cargo bench -p e2e --bench throughput
//! Set BENCH_MESSAGES to change the number of messages of the rate runs (default 5000).

use std::time::{Duration, Instant};

use certs::signature::Signer;
use e2e::measure::{RssSampler, cpu_by_part, cpu_per_message, print_stages, stage_totals};
use e2e::{TestBed, index_upsert, student};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};
use schemas::codec;

/// Messages in flight before waiting for confirms.
const WINDOW: usize = 256;

async fn publish_all(ch: &Channel, exchange: &str, key: &str, bodies: &[Vec<u8>], user: &str, signer: Option<&Signer>) {
    publish_paced(ch, exchange, key, bodies, (user, signer), None, |_| {}).await;
}

/// Publishes `bodies` with confirms (at most [`WINDOW`] unconfirmed), at `rate` per second when
/// given, calling `before(i)` just before the `i`th is sent. With a signer, each body is signed
/// as an adapter signs it (the hub refuses what is not), and the signing is timed with the rest.
async fn publish_paced(
    ch: &Channel,
    exchange: &str,
    key: &str,
    bodies: &[Vec<u8>],
    (user, signer): (&str, Option<&Signer>),
    rate: Option<f64>,
    mut before: impl FnMut(usize),
) {
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for (i, body) in bodies.iter().enumerate() {
        if let Some(rate) = rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        }
        before(i);
        let mut props = BasicProperties::default()
            .with_user_id(user.into())
            .with_message_id(format!("bench-{i}").into())
            .with_delivery_mode(2);
        if let Some(signer) = signer {
            props = props.with_headers(e2e::signed(signer, body));
        }
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                body,
                props,
            )
            .await
            .expect("publish");
        pending.push_back(confirm);
        if pending.len() >= WINDOW {
            assert!(pending.pop_front().expect("non-empty").await.expect("confirm").is_ack());
        }
    }
    for c in pending {
        assert!(c.await.expect("confirm").is_ack());
    }
}

async fn consume_n(conn: &Connection, queue: &str, n: usize) {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(512, Default::default()).await.expect("qos");
    let mut consumer = ch
        .basic_consume(queue.into(), "bench".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consume");
    e2e::ack_n(&mut consumer, n).await;
}

/// The null relay: consumes `n` deliveries from `from`, publishes each to `to` with confirms
/// (pipelined, as the hub's relay does) and acks each delivery once its copy is confirmed.
async fn null_relay(conn: &Connection, from: &str, to: &str, n: usize) {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(512, Default::default()).await.expect("qos");
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let mut consumer = ch
        .basic_consume(from.into(), "relay".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consume");
    let (tx, mut rx) = tokio::sync::mpsc::channel(WINDOW);
    let acker = tokio::spawn(async move {
        while let Some((delivery, confirm)) = rx.recv().await {
            let (delivery, confirm): (lapin::message::Delivery, lapin::PublisherConfirm) = (delivery, confirm);
            assert!(confirm.await.expect("confirm").is_ack());
            delivery.ack(BasicAckOptions::default()).await.expect("ack");
        }
    });
    for _ in 0..n {
        let d = e2e::next_delivery(&mut consumer).await;
        let props = BasicProperties::default().with_user_id("hub".into()).with_delivery_mode(2);
        let confirm = ch
            .basic_publish(
                "".into(),
                to.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &d.data,
                props,
            )
            .await
            .expect("publish");
        tx.send((d, confirm)).await.expect("acker");
    }
    drop(tx);
    acker.await.expect("acker");
}

fn bodies(n: usize) -> Vec<Vec<u8>> {
    envelopes(0, n).iter().map(|e| codec::to_xml(e).into_bytes()).collect()
}

/// `index.upsert`s of students `base..base + n` (distinct students, so each is applied).
fn envelopes(base: u32, n: usize) -> Vec<schemas::Envelope> {
    (base..base + n as u32).map(|i| index_upsert("37", vec![student("37", i)])).collect()
}

/// Where a latency run publishes and where it takes what arrives.
struct Hop<'a> {
    publisher: &'a Connection,
    user: &'a str,
    /// Signs what the hop's publisher sends (the province's key, for the hub).
    signer: Option<&'a Signer>,
    exchange: &'a str,
    routing_key: &'a str,
    receiver: &'a Connection,
    queue: &'a str,
}

/// One hop's latency at a fixed offered rate: `index.upsert`s published paced at `rate` per
/// second; each arrival is matched to what was sent — by the message id it carries, or for
/// the hub's replies by their correlation id. Returns the latencies, sorted.
async fn paced_latencies(hop: &Hop<'_>, base: u32, n: usize, rate: f64) -> Vec<Duration> {
    let ch = hop.publisher.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let envs = envelopes(base, n);
    let sent = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let rx = hop.receiver.create_channel().await.expect("channel");
    rx.basic_qos(512, Default::default()).await.expect("qos");
    let mut consumer = rx
        .basic_consume(hop.queue.into(), "latency".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consume");
    let seen = sent.clone();
    let receiver = tokio::spawn(async move {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let d = e2e::next_delivery(&mut consumer).await;
            let at = Instant::now();
            let env = codec::from_xml(&d.data, schemas::DEFAULT_MAX_BYTES).expect("an envelope");
            let key = env.correlation_id.unwrap_or(env.message_id);
            if let Some(t0) = seen.lock().expect("lock").remove(&key) {
                out.push(at.duration_since(t0));
            }
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
        out
    });
    let bodies: Vec<Vec<u8>> = envs.iter().map(|e| codec::to_xml(e).into_bytes()).collect();
    publish_paced(&ch, hop.exchange, hop.routing_key, &bodies, (hop.user, hop.signer), Some(rate), |i| {
        sent.lock().expect("lock").insert(envs[i].message_id, Instant::now());
    })
    .await;
    let mut out = receiver.await.expect("receiver");
    out.sort();
    out
}

fn print_latencies(what: &str, rate: f64, lat: &[Duration]) {
    println!(
        "one hop, {what}, at {rate:.0} msg/s, {} messages: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        percentile(lat, 0.50).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    // The hub logs as in production: its DEBUG lines are not what is measured.
    let bed = TestBed::with(e2e::Options { hub_log: Some(hub::telemetry::DEFAULT_FILTER), ..Default::default() }).await;
    let prov = bed.add_province("37").await;
    let signer = prov.signer();
    let hub_conn = bed.env.connect(&bed.id, &bed.env.hub_cert, &bed.env.hub_key).await.expect("hub connection");

    // Raw broker: same node, quorum queue, same bodies.
    let raw_bodies = bodies(n);
    let size = raw_bodies.iter().map(Vec::len).sum::<usize>() / n;
    let setup = hub_conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    setup
        .queue_declare("bench.raw".into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
        .await
        .expect("declare");
    let publisher = hub_conn.create_channel().await.expect("channel");
    publisher.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let cpu = cpu_by_part();
    let started = Instant::now();
    let consumer = consume_n(&hub_conn, "bench.raw", n);
    let producer = publish_all(&publisher, "", "bench.raw", &raw_bodies, "hub", None);
    tokio::join!(consumer, producer);
    let raw = started.elapsed();
    let raw_cpu = cpu_per_message(&cpu, &cpu_by_part(), n, raw);

    // Null relay: two quorum queues and a relay between them, no database.
    for q in ["bench.relay.in", "bench.relay.out"] {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        setup
            .queue_declare(q.into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
            .await
            .expect("declare");
    }
    let relay_bodies = bodies(n);
    let cpu = cpu_by_part();
    let started = Instant::now();
    let consumer = consume_n(&hub_conn, "bench.relay.out", n);
    let relay = null_relay(&hub_conn, "bench.relay.in", "bench.relay.out", n);
    let producer = publish_all(&publisher, "", "bench.relay.in", &relay_bodies, "hub", None);
    tokio::join!(consumer, relay, producer);
    let relayed = started.elapsed();
    let relay_cpu = cpu_per_message(&cpu, &cpu_by_part(), n, relayed);

    // The hub's path.
    bed.spawn_hub("hub").await;
    let conn = bed.connect(&prov).await;
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let hub_bodies = bodies(n);
    let listen = bed.settings.http.listen;
    let stages_before = stage_totals(listen).await;
    let cpu = cpu_by_part();
    let started = Instant::now();
    let queue = hub::amqp::names::province_queue("37".parse().expect("code"));
    let replies = consume_n(&conn, &queue, n);
    let requests =
        publish_all(&ch, hub::amqp::names::INBOUND_EXCHANGE, "index.upsert", &hub_bodies, "prov-37", Some(&signer));
    tokio::join!(replies, requests);
    let through_hub = started.elapsed();
    let hub_cpu = cpu_per_message(&cpu, &cpu_by_part(), n, through_hub);
    let stages_after = stage_totals(listen).await;

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let hub_rate = rate(through_hub);
    println!("messages: {n}, average size {size} bytes, quorum queues, mutual TLS, one broker node");
    println!("raw broker (publish+confirm → consume → ack): {:>8.0} msg/s  ({:.2} s)", rate(raw), raw.as_secs_f64());
    println!(
        "null relay (publish → consume, publish+confirm, ack → consume): {:>8.0} msg/s  ({:.2} s)",
        rate(relayed),
        relayed.as_secs_f64()
    );
    println!(
        "hub path (publish → process in PostgreSQL → reply → consume): {:>8.0} msg/s  ({:.2} s)",
        hub_rate,
        through_hub.as_secs_f64()
    );
    // What each part spent: on a machine whose cores are all busy, the rates stand in the
    // inverse ratio of the CPU each path costs per message.
    println!("  raw broker {raw_cpu}");
    println!("  null relay {relay_cpu}");
    println!("  hub path   {hub_cpu}");
    println!("ratio hub / raw: {:.3}", hub_rate / rate(raw));
    println!("ratio hub / null relay: {:.3}", hub_rate / rate(relayed));
    print_stages(&stages_before, &stages_after);

    // One hop's latency at half the hub's peak rate, for about ten seconds: through the raw
    // broker and the null relay at the same offered rate (what any path pays), then through
    // the hub.
    let paced = hub_rate / 2.0;
    let m = ((paced * 10.0) as usize).clamp(100, 50_000);
    let raw_hop = Hop {
        publisher: &hub_conn,
        user: "hub",
        signer: None,
        exchange: "",
        routing_key: "bench.raw",
        receiver: &hub_conn,
        queue: "bench.raw",
    };
    print_latencies("raw broker", paced, &paced_latencies(&raw_hop, 4_000_000, m, paced).await);
    let relay_hop = Hop { routing_key: "bench.relay.in", queue: "bench.relay.out", ..raw_hop };
    let (lat, ()) = tokio::join!(
        paced_latencies(&relay_hop, 5_000_000, m, paced),
        null_relay(&hub_conn, "bench.relay.in", "bench.relay.out", m)
    );
    print_latencies("null relay", paced, &lat);
    let before = stage_totals(listen).await;
    let prov_queue = hub::amqp::names::province_queue("37".parse().expect("code"));
    let hub_hop = Hop {
        publisher: &conn,
        user: "prov-37",
        signer: Some(&signer),
        exchange: hub::amqp::names::INBOUND_EXCHANGE,
        routing_key: "index.upsert",
        receiver: &conn,
        queue: &prov_queue,
    };
    let lat = paced_latencies(&hub_hop, 1_000_000, m, paced).await;
    let after = stage_totals(listen).await;
    print_latencies("province → hub → province", paced, &lat);
    print_stages(&before, &after);

    // A backlog: the hub down while a province sends BENCH_BACKLOG messages, then drained.
    let backlog: usize = std::env::var("BENCH_BACKLOG").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    if backlog > 0 {
        bed.stop("hub");
        let envs = envelopes(2_000_000, backlog);
        let queued: Vec<Vec<u8>> = envs.iter().map(|e| codec::to_xml(e).into_bytes()).collect();
        publish_all(&ch, hub::amqp::names::INBOUND_EXCHANGE, "index.upsert", &queued, "prov-37", Some(&signer)).await;
        drop(queued);
        let pid = bed.spawn_hub("hub-backlog").await;
        let cpu = cpu_by_part();
        let started = Instant::now();
        let sampler = RssSampler::start(&[("hub".to_owned(), pid)], Duration::from_secs(1));
        consume_n(&conn, &queue, backlog).await;
        let drained = started.elapsed();
        let rss = sampler.stop();
        let drain_cpu = cpu_per_message(&cpu, &cpu_by_part(), backlog, drained);
        let after = stage_totals(listen).await;
        let drain_rate = backlog as f64 / drained.as_secs_f64();
        println!(
            "backlog of {backlog} drained (hub started on a full queue): {drain_rate:>8.0} msg/s ({:.1} s), {:.2} × the steady rate",
            drained.as_secs_f64(),
            drain_rate / hub_rate
        );
        println!("hub RSS while draining: {}", rss["hub"]);
        println!("  drain {drain_cpu}");
        // A new process: its counters started at zero, so they hold the drain alone.
        print_stages(&Default::default(), &after);

        // A province offline: its adapter down while the hub answers BENCH_BACKLOG of its
        // requests, then started on the full queue; drained into its store.
        let _ = conn.close(200, "the province goes offline".into()).await;
        let conn = bed.connect(&prov).await;
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        let envs = envelopes(3_000_000, backlog);
        let queued: Vec<Vec<u8>> = envs.iter().map(|e| codec::to_xml(e).into_bytes()).collect();
        drop(envs);
        publish_all(&ch, hub::amqp::names::INBOUND_EXCHANGE, "index.upsert", &queued, "prov-37", Some(&signer)).await;
        drop(queued);
        e2e::eventually("every answer queued for the offline province", Duration::from_secs(900), || async {
            (bed.queue_depth(&queue).await >= backlog as u64).then_some(())
        })
        .await;
        let started = Instant::now();
        let adapter = bed.spawn_adapter("adapter-37", &prov, &[]).await;
        let pid = bed.pid("adapter-37").expect("the adapter runs");
        let sampler = RssSampler::start(&[("adapter".to_owned(), pid)], Duration::from_secs(1));
        let store = sqlx::sqlite::SqliteConnectOptions::new().filename(&adapter.db).read_only(true);
        let store = sqlx::SqlitePool::connect_with(store).await.expect("the adapter's store");
        e2e::eventually("the backlog in the adapter's store", Duration::from_secs(900), || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE message_type = 'index.result'")
                .fetch_one(&store)
                .await
                .ok()?;
            (n as usize >= backlog).then_some(())
        })
        .await;
        let drained = started.elapsed();
        let rss = sampler.stop();
        println!(
            "backlog of {backlog} for an offline province, drained by its adapter on its return: {:>8.0} msg/s ({:.1} s)",
            backlog as f64 / drained.as_secs_f64(),
            drained.as_secs_f64()
        );
        println!("adapter RSS while draining: {}", rss["adapter"]);
    }
}
