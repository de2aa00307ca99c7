//! Talking to the broker as a province's peer would: publish with a `user_id`, read what the
//! hub sent a province, collect many messages with their duplicates counted.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use lapin::Connection;
use schemas::ids::ProvinceCode;

use crate::*;

/// Publishes `body` with confirms, with `user_id` set as given and signed with `creds`' key;
/// returns the broker's verdict or the channel error (a forged `user_id` closes the channel).
pub async fn publish(
    conn: &Connection,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    user_id: &str,
    creds: &Creds,
) -> Result<()> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let confirm = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            lapin::BasicProperties::default()
                .with_user_id(user_id.into())
                .with_message_id(uuid::Uuid::new_v4().to_string().into())
                .with_delivery_mode(2)
                .with_headers(signed(&creds.signer(), body)),
        )
        .await?
        .await?;
    match confirm {
        lapin::Confirmation::Ack(None) => Ok(()),
        other => bail!("not confirmed: {other:?}"),
    }
}

/// Takes the next message from `queue` (basic.get, acked), waiting up to `timeout`.
pub async fn next_message(
    conn: &Connection,
    queue: &str,
    timeout: Duration,
) -> Option<lapin::message::BasicGetMessage> {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let ch = conn.create_channel().await.ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(m)) = ch.basic_get(queue.into(), BasicGetOptions::default()).await {
            let _ = m.delivery.ack(BasicAckOptions::default()).await;
            return Some(m);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the next envelope the hub sent to `province`'s queue.
pub async fn next_envelope(conn: &Connection, province: &str, timeout: Duration) -> Option<schemas::Envelope> {
    let p = ProvinceCode::parse(province).expect("province code");
    let m = next_message(conn, &hub::amqp::names::province_queue(p), timeout).await?;
    Some(schemas::codec::from_xml(&m.delivery.data, schemas::DEFAULT_MAX_BYTES).expect("the hub sends valid messages"))
}

/// Collects the envelopes the hub sent to `province` until `n` distinct message ids arrived or
/// `timeout` passed; duplicates (same id) are counted separately.
pub async fn collect(conn: &Connection, province: &str, n: usize, timeout: Duration) -> Collected {
    let deadline = Instant::now() + timeout;
    let mut seen = std::collections::HashSet::new();
    let mut out = Collected::default();
    while seen.len() < n && Instant::now() < deadline {
        match next_envelope(conn, province, Duration::from_millis(500)).await {
            Some(env) => {
                if seen.insert(env.message_id) {
                    out.envelopes.push(env);
                } else {
                    out.duplicates += 1;
                }
            }
            None => continue,
        }
    }
    out
}

/// What [`collect`] found.
#[derive(Debug, Default)]
pub struct Collected {
    pub envelopes: Vec<schemas::Envelope>,
    /// Copies of a message id already received (at-least-once redelivery).
    pub duplicates: usize,
}

/// A publisher that keeps trying — reconnecting across broker outages — until the broker
/// confirms each message, as an adapter does. Retrying the same message id is safe: the hub
/// deduplicates.
pub struct Persistent<'a> {
    bed: &'a TestBed,
    creds: Creds,
    user: String,
    conn: Option<(Connection, lapin::Channel)>,
}

impl<'a> Persistent<'a> {
    pub fn new(bed: &'a TestBed, creds: &Creds, province: &str) -> Self {
        Persistent { bed, creds: creds.clone(), user: format!("prov-{province}"), conn: None }
    }

    /// Publishes `env` to the hub until confirmed (deadline two minutes).
    pub async fn send(&mut self, env: &schemas::Envelope) {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        let body = schemas::codec::to_xml(env);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "could not publish {} within two minutes", env.message_id);
            if self.conn.is_none() {
                let Ok(Ok(conn)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.bed.env.connect(&self.bed.id, &self.creds.cert, &self.creds.key),
                )
                .await
                else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                let Ok(ch) = conn.create_channel().await else { continue };
                if ch.confirm_select(ConfirmSelectOptions::default()).await.is_err() {
                    continue;
                }
                self.conn = Some((conn, ch));
            }
            let (_, ch) = self.conn.as_ref().expect("connected above");
            let props = lapin::BasicProperties::default()
                .with_user_id(self.user.as_str().into())
                .with_message_id(env.message_id.to_string().into())
                .with_delivery_mode(2)
                .with_headers(signed(&self.creds.signer(), body.as_bytes()));
            let sent = async {
                ch.basic_publish(
                    hub::amqp::names::INBOUND_EXCHANGE.into(),
                    env.message_type().as_str().into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    body.as_bytes(),
                    props,
                )
                .await?
                .await
            };
            match tokio::time::timeout(Duration::from_secs(10), sent).await {
                Ok(Ok(lapin::Confirmation::Ack(None))) => return,
                _ => {
                    self.conn = None;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
}

/// Publishes raw bytes with optional `user_id` (a message without one cannot be attributed),
/// signed with `creds`' key.
pub async fn publish_raw(
    conn: &Connection,
    body: &[u8],
    user_id: Option<&str>,
    message_id: &str,
    creds: &Creds,
) -> Result<()> {
    publish_with(conn, body, user_id, message_id, signed(&creds.signer(), body)).await
}

/// Publishes raw bytes to the hub with optional `user_id` and the given headers (a signature or
/// none, as a test forges it).
pub async fn publish_with(
    conn: &Connection,
    body: &[u8],
    user_id: Option<&str>,
    message_id: &str,
    headers: lapin::types::FieldTable,
) -> Result<()> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut props = lapin::BasicProperties::default()
        .with_message_id(message_id.into())
        .with_delivery_mode(2)
        .with_headers(headers);
    if let Some(u) = user_id {
        props = props.with_user_id(u.into());
    }
    let confirm = ch
        .basic_publish(
            hub::amqp::names::INBOUND_EXCHANGE.into(),
            "raw".into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            props,
        )
        .await?
        .await?;
    match confirm {
        lapin::Confirmation::Ack(None) => Ok(()),
        other => bail!("not confirmed: {other:?}"),
    }
}
