//! The only place that speaks AMQP (lapin): connecting as the hub, the broker topology, the
//! consumer of the hub's inbox and the publisher the outbox relay uses.

pub mod consumer;
mod intake;
pub mod publisher;

use anyhow::{Context, Result};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};
use schemas::ids::ProvinceCode;

use crate::config::BrokerSettings;

/// Names of the broker topology, shared with the adapters.
pub use schemas::topology as names;

/// Connects as the hub: its certificate, EXTERNAL.
///
/// # Errors
/// When the broker refuses or cannot be reached.
pub async fn connect(b: &BrokerSettings, name: &str) -> Result<Connection> {
    certs::amqp::connect(&certs::amqp::Identity {
        url: &b.url,
        vhost: &b.vhost,
        ca: &b.ca,
        cert: &b.cert,
        key: &b.key,
        connection_name: name,
    })
    .await
    .with_context(|| format!("Failed to connect to the broker at {} (vhost {})", b.url, b.vhost))
}

/// Connects once and closes: whether the broker takes the hub (start-up's first look).
///
/// # Errors
/// As [`connect`].
pub async fn probe(b: &BrokerSettings) -> Result<()> {
    let conn = connect(b, "hub-start").await?;
    let _ = conn.close(200, "start-up check".into()).await;
    Ok(())
}

fn quorum_args(delivery_limit: u32) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    // Explicit: RabbitMQ 3.x has no default limit and 4.x defaults to 20; rely on neither.
    t.insert("x-delivery-limit".into(), AMQPValue::LongInt(i32::try_from(delivery_limit).unwrap_or(i32::MAX)));
    t.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from(names::DEAD_LETTER_EXCHANGE)));
    // At-least-once dead-lettering: a dead letter is kept until the dead-letter queue confirms
    // it (requires reject-publish overflow).
    t.insert("x-dead-letter-strategy".into(), AMQPValue::LongString(LongString::from("at-least-once")));
    t.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
    t
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

/// Declares the hub's part of the topology (idempotent).
///
/// # Errors
/// When the broker refuses a declaration (e.g. a queue exists with other arguments).
pub async fn declare_core(ch: &Channel, delivery_limit: u32) -> Result<()> {
    let ex = |kind| (kind, ExchangeDeclareOptions { durable: true, ..Default::default() });
    for (name, (kind, opts)) in [
        (names::INBOUND_EXCHANGE, ex(ExchangeKind::Topic)),
        (names::OUTBOUND_EXCHANGE, ex(ExchangeKind::Direct)),
        (names::DEAD_LETTER_EXCHANGE, ex(ExchangeKind::Fanout)),
    ] {
        ch.exchange_declare(name.into(), kind, opts, FieldTable::default())
            .await
            .with_context(|| format!("Failed to declare exchange {name}"))?;
    }
    let mut dead_args = FieldTable::default();
    dead_args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    ch.queue_declare(names::DEAD_LETTER_QUEUE.into(), durable(), dead_args)
        .await
        .context("Failed to declare hub.dead")?;
    ch.queue_bind(
        names::DEAD_LETTER_QUEUE.into(),
        names::DEAD_LETTER_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(names::INBOX_QUEUE.into(), durable(), quorum_args(delivery_limit))
        .await
        .context("Failed to declare hub.inbox")?;
    ch.queue_bind(
        names::INBOX_QUEUE.into(),
        names::INBOUND_EXCHANGE.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Declares a province's queue and binds it to the hub's outbound exchange (idempotent).
///
/// # Errors
/// When the broker refuses a declaration.
pub async fn declare_province(ch: &Channel, p: ProvinceCode, delivery_limit: u32) -> Result<()> {
    let queue = names::province_queue(p);
    ch.queue_declare(queue.as_str().into(), durable(), quorum_args(delivery_limit))
        .await
        .with_context(|| format!("Failed to declare {queue}"))?;
    ch.queue_bind(
        queue.as_str().into(),
        names::OUTBOUND_EXCHANGE.into(),
        names::province_user(p).as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}
