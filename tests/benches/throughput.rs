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
//! Prints the three rates and the hub's ratio to each. Run (release binaries first):
//!   cargo build --release --workspace --bins && cargo bench -p e2e --bench throughput
//! Set BENCH_MESSAGES to change the number of messages (default 5000).

use std::time::{Duration, Instant};

use e2e::{TestBed, index_upsert, student};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};
use schemas::codec;

/// Messages in flight before waiting for confirms.
const WINDOW: usize = 256;

async fn publish_all(ch: &Channel, exchange: &str, key: &str, bodies: &[Vec<u8>], user: &str) {
    let mut pending = std::collections::VecDeque::new();
    for (i, body) in bodies.iter().enumerate() {
        let props = BasicProperties::default()
            .with_user_id(user.into())
            .with_message_id(format!("bench-{i}").into())
            .with_delivery_mode(2);
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
    for _ in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(120), consumer.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("delivery");
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
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
        let d = tokio::time::timeout(Duration::from_secs(120), consumer.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("delivery");
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
    (0..n as u32).map(|i| codec::to_xml(&index_upsert("37", vec![student("37", i)])).into_bytes()).collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let bed = TestBed::new().await;
    let prov = bed.add_province("37").await;
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
    let started = Instant::now();
    let consumer = consume_n(&hub_conn, "bench.raw", n);
    let producer = publish_all(&publisher, "", "bench.raw", &raw_bodies, "hub");
    tokio::join!(consumer, producer);
    let raw = started.elapsed();

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
    let started = Instant::now();
    let consumer = consume_n(&hub_conn, "bench.relay.out", n);
    let relay = null_relay(&hub_conn, "bench.relay.in", "bench.relay.out", n);
    let producer = publish_all(&publisher, "", "bench.relay.in", &relay_bodies, "hub");
    tokio::join!(consumer, relay, producer);
    let relayed = started.elapsed();

    // The hub's path.
    bed.spawn_hub("hub").await;
    let conn = bed.connect(&prov).await;
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let hub_bodies = bodies(n);
    let started = Instant::now();
    let queue = hub::amqp::names::province_queue("37".parse().expect("code"));
    let replies = consume_n(&conn, &queue, n);
    let requests = publish_all(&ch, hub::amqp::names::INBOUND_EXCHANGE, "index.upsert", &hub_bodies, "prov-37");
    tokio::join!(replies, requests);
    let through_hub = started.elapsed();

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("messages: {n}, average size {size} bytes, quorum queues, mutual TLS, one broker node");
    println!("raw broker (publish+confirm → consume → ack): {:>8.0} msg/s  ({:.2} s)", rate(raw), raw.as_secs_f64());
    println!(
        "null relay (publish → consume, publish+confirm, ack → consume): {:>8.0} msg/s  ({:.2} s)",
        rate(relayed),
        relayed.as_secs_f64()
    );
    println!(
        "hub path (publish → process in PostgreSQL → reply → consume): {:>8.0} msg/s  ({:.2} s)",
        rate(through_hub),
        through_hub.as_secs_f64()
    );
    println!("ratio hub / raw: {:.3}", rate(through_hub) / rate(raw));
    println!("ratio hub / null relay: {:.3}", rate(through_hub) / rate(relayed));
}
