//! The link to the broker: one connection at a time, as this province (certificate, EXTERNAL),
//! reconnecting forever with capped exponential backoff and jitter, logging every change of
//! state. While up, it publishes the outbox in submission order with confirms, and takes the
//! province's queue into the inbox, acknowledging a delivery only after its row is committed.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use backon::BackoffBuilder;
use certs::preflight::Problem;
use chrono::{DateTime, Utc};
use futures_util::{FutureExt as _, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation};
use schemas::{Party, codec};
use sha2::Digest;
use sqlx::SqlitePool;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::failpoint;
use crate::store;

/// The most deliveries stored in one commit, and the bytes after which no more join it (the
/// first always does).
const RECEIVE_BATCH: usize = 64;
const RECEIVE_BATCH_BYTES: usize = 8 << 20;

/// A delivery read and checked, waiting to be stored with the others taken at the same time.
struct Inbound {
    id: String,
    kind: String,
    case: Option<String>,
    corr: Option<String>,
    error: Option<String>,
    delivery: lapin::message::Delivery,
}

/// Capped exponential backoff with full jitter.
pub fn backoff(max: Duration) -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// What the link is doing, for the status endpoint.
#[derive(Debug, Default)]
pub struct LinkState {
    connected_since: Mutex<Option<DateTime<Utc>>>,
    last_error: Mutex<Option<(DateTime<Utc>, String)>>,
    /// Woken when the outbox has something new.
    pub wake: Notify,
}

impl LinkState {
    pub fn connected_since(&self) -> Option<DateTime<Utc>> {
        *self.connected_since.lock().expect("not poisoned")
    }

    pub fn last_error(&self) -> Option<(DateTime<Utc>, String)> {
        self.last_error.lock().expect("not poisoned").clone()
    }

    fn up(&self) {
        *self.connected_since.lock().expect("not poisoned") = Some(Utc::now());
    }

    fn down(&self, error: String) {
        *self.connected_since.lock().expect("not poisoned") = None;
        *self.last_error.lock().expect("not poisoned") = Some((Utc::now(), error));
    }
}

/// Everything a session needs.
#[derive(Clone)]
pub struct Link {
    pub settings: Arc<Settings>,
    pub me: Party,
    pub pool: SqlitePool,
    pub state: Arc<LinkState>,
    /// Signs what this province publishes.
    pub signer: Arc<certs::signature::Signer>,
    /// Checks the hub's signatures.
    pub hub_keys: Arc<crate::signing::HubKeys>,
}

impl Link {
    /// Runs sessions until `shutdown` turns true. A failure that waiting cannot heal (a refused
    /// certificate or login, a missing vhost) before the first session ends the link with it,
    /// so that the adapter stops and says why; later, every failure is retried (the local API
    /// keeps serving what arrived) and logged at WARN, or ERROR with its fix when permanent.
    ///
    /// # Errors
    /// The permanent problem that kept the first session from starting.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> std::result::Result<(), Problem> {
        let mut delays = backoff(Duration::from_secs(30));
        let mut ever_up = false;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let started = Instant::now();
            let result = self.session(shutdown.clone()).await;
            ever_up |= self.state.connected_since().is_some();
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let problem = self.classify(&e);
                    self.state.down(problem.to_string());
                    if problem.permanent && !ever_up {
                        return Err(problem);
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        delays = backoff(Duration::from_secs(30));
                    }
                    let delay = delays.next().unwrap_or(Duration::from_secs(30));
                    if problem.permanent {
                        error!(error = %problem.why, fix = %problem.fix, retry_in = ?delay, "Link refused; retrying.");
                    } else {
                        warn!(error = %problem.why, retry_in = ?delay, "Link down; retrying.");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// What a session's failure means.
    fn classify(&self, e: &anyhow::Error) -> Problem {
        let user = self.me.to_string();
        match e.chain().find_map(|c| c.downcast_ref::<certs::amqp::ConnectError>()) {
            Some(c) => certs::preflight::classify(c, &user, &self.settings.broker.vhost),
            // The connection was made; what failed after it (a consumer, a channel) is retried.
            None => Problem { permanent: false, why: format!("{e:#}"), fix: "retried".into() },
        }
    }

    async fn session(&self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let b = &self.settings.broker;
        let name = format!("adapter-{}", self.me);
        let conn = certs::amqp::connect(&certs::amqp::Identity {
            url: &b.url,
            vhost: &b.vhost,
            ca: &b.ca,
            cert: &b.cert,
            key: &b.key,
            connection_name: &name,
        })
        .await
        .context("Failed to connect to the broker")?;
        self.state.up();
        info!(vhost = %b.vhost, user = %self.me, "Link up.");

        let inbound = conn.create_channel().await?;
        inbound.basic_qos(b.prefetch, BasicQosOptions::default()).await?;
        let queue = schemas::topology::province_queue(self.me.province().expect("a province"));
        let mut consumer = inbound
            .basic_consume(
                queue.as_str().into(),
                name.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("Failed to consume {queue}"))?;
        let outbound = conn.create_channel().await?;
        outbound.confirm_select(ConfirmSelectOptions::default()).await?;

        let receive = async {
            let delivered = |next: Option<lapin::Result<lapin::message::Delivery>>| match next {
                Some(Ok(d)) => Ok(d),
                Some(Err(e)) => Err(anyhow!(e).context("Consumer failed")),
                None => Err(anyhow!("the broker cancelled the consumer")),
            };
            let mut pending = Vec::new();
            loop {
                // What is already delivered joins the first in one commit (bounded), which
                // saves a commit and a flush to disk per message when the hub sends quickly.
                let mut bytes = 0;
                let mut d = delivered(consumer.next().await)?;
                loop {
                    bytes += d.data.len();
                    self.receive(d, &mut pending).await?;
                    if pending.len() >= RECEIVE_BATCH || bytes >= RECEIVE_BATCH_BYTES {
                        break;
                    }
                    match consumer.next().now_or_never() {
                        Some(next) => d = delivered(next)?,
                        None => break,
                    }
                }
                self.store_received(&mut pending).await?;
            }
        };
        let publish = async {
            loop {
                let wait = self.publish_queued(&outbound).await?;
                tokio::select! {
                    _ = self.state.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        };
        let result: Result<()> = tokio::select! {
            r = receive => r,
            r = publish => r,
            _ = shutdown.changed() => Ok(()),
        };
        let _ = conn.close(200, "adapter stopping".into()).await;
        if result.is_ok() {
            self.state.down("stopped".into());
            info!("Link closed.");
        }
        result
    }

    /// The hub asks for what this province sent it since `since` (its database was restored):
    /// queued again, answered, then acknowledged.
    async fn replay(&self, d: lapin::message::Delivery, env: &schemas::Envelope, since: DateTime<Utc>) -> Result<()> {
        let id = env.message_id.to_string();
        let received = store::Received {
            message_id: &id,
            message_type: env.message_type().as_str(),
            case_id: None,
            correlation_id: None,
            body: &d.data,
            parse_error: None,
        };
        let me = self.me;
        let request = env.message_id;
        let resent = store::receive_replay(&self.pool, &received, since, |n| {
            let body = schemas::Body::ReplayResult(schemas::messages::ReplayResult {
                since,
                resent: u32::try_from(n).unwrap_or(u32::MAX),
                kept_since: None,
            });
            let mut reply = schemas::Envelope::new(me, Party::Hub, body);
            reply.correlation_id = Some(request);
            (reply.message_id.to_string(), reply.message_type().as_str().to_owned(), codec::to_xml(&reply).into_bytes())
        })
        .await?;
        d.ack(BasicAckOptions::default()).await.context("Failed to acknowledge a replay request")?;
        if let Some(n) = resent {
            info!(message_id = %id, %since, resent = n, "The hub asked for what was sent since a time: queued again.");
            self.state.wake.notify_one();
        }
        Ok(())
    }

    /// An organization-code record: passed on in the province's sequence only; after a gap the
    /// missing records are asked for again (the hub sends everything after the last one passed
    /// on) and this one waits for that resend.
    async fn receive_orgcode(&self, d: lapin::message::Delivery, id: &str, kind: &str, sequence: u64) -> Result<()> {
        let received = store::Received {
            message_id: id,
            message_type: kind,
            case_id: None,
            correlation_id: None,
            body: &d.data,
            parse_error: None,
        };
        let me = self.me;
        let outcome = crate::sequence::receive_sequenced(&self.pool, &received, sequence, |after| {
            let body = schemas::Body::OrgcodeResend(schemas::messages::OrgcodeResend { after });
            let reply = schemas::Envelope::new(me, Party::Hub, body);
            (reply.message_id.to_string(), reply.message_type().as_str().to_owned(), codec::to_xml(&reply).into_bytes())
        })
        .await?;
        failpoint::pass(failpoint::INBOUND_AFTER_COMMIT);
        d.ack(BasicAckOptions::default()).await.context("Failed to acknowledge an organization-code record")?;
        match outcome {
            crate::sequence::Sequenced::Next => {
                metrics::counter!("adapter_messages_received_total").increment(1);
                info!(message_id = %id, message_type = %kind, sequence, "Received from the hub.");
            }
            crate::sequence::Sequenced::Again => {}
            crate::sequence::Sequenced::Gap { after, asked } => {
                warn!(message_id = %id, sequence, after, asked, "Organization-code record after a gap: the missing ones are asked for again.");
                metrics::counter!("adapter_orgcode_gaps_total").increment(1);
                if asked {
                    self.state.wake.notify_one();
                }
            }
        }
        Ok(())
    }

    /// Stores what `receive` set aside, in one statement, then acknowledges each delivery.
    async fn store_received(&self, pending: &mut Vec<Inbound>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let received: Vec<store::Received<'_>> = pending
            .iter()
            .map(|m| store::Received {
                message_id: &m.id,
                message_type: &m.kind,
                case_id: m.case.as_deref(),
                correlation_id: m.corr.as_deref(),
                body: &m.delivery.data,
                parse_error: m.error.as_deref(),
            })
            .collect();
        let mut new = store::receive_all(&self.pool, &received).await?;
        drop(received);
        failpoint::pass(failpoint::INBOUND_AFTER_COMMIT);
        for m in pending.drain(..) {
            m.delivery.ack(BasicAckOptions::default()).await.context("Failed to acknowledge a stored message")?;
            // An id delivered twice in the batch was stored once: counted and logged once.
            if let Some(i) = new.iter().position(|n| *n == m.id) {
                new.swap_remove(i);
                metrics::counter!("adapter_messages_received_total").increment(1);
                info!(
                    message_id = %m.id,
                    message_type = %m.kind,
                    case_id = m.case.as_deref().unwrap_or(""),
                    correlation_id = m.corr.as_deref().unwrap_or(""),
                    "Received from the hub."
                );
            }
        }
        Ok(())
    }

    /// Takes one delivery: sets it aside in `pending` to be stored with the others (see
    /// [`Link::store_received`]), or, for what is stored its own way (a message refused, a
    /// replay request, an organization-code record), stores what is pending first, to keep the
    /// order, then it, and acknowledges it.
    async fn receive(&self, d: lapin::message::Delivery, pending: &mut Vec<Inbound>) -> Result<()> {
        let user_id = d.properties.user_id().as_ref().map(|u| u.as_str().to_owned());
        let sha256: String = {
            let digest: [u8; 32] = sha2::Sha256::digest(&d.data).into();
            digest.iter().map(|b| format!("{b:02x}")).collect()
        };
        let fallback_id =
            || d.properties.message_id().as_ref().map(|m| m.to_string()).unwrap_or_else(|| sha256.clone());
        if user_id.as_deref() != Some(Party::Hub.to_string().as_str()) {
            // The broker checked user_id against the sender's login: this is not the hub's
            // message, whatever it says. Kept aside unparsed; nothing of it reaches the
            // provincial system, and the log names no content.
            self.store_received(pending).await?;
            let id = fallback_id();
            let reason = format!("not from the hub: user_id {}", user_id.as_deref().unwrap_or("(none)"));
            warn!(message_id = %id, user_id = user_id.as_deref().unwrap_or("(none)"), size = d.data.len(), "Message not from the hub refused.");
            store::refuse(&self.pool, &id, user_id.as_deref(), &reason, &d.data, &sha256).await?;
            metrics::counter!("adapter_messages_refused_total").increment(1);
            d.ack(BasicAckOptions::default()).await.context("Failed to acknowledge a refused message")?;
            return Ok(());
        }
        if let Err(why) = self.hub_keys.check(&d.data, d.properties.headers().as_ref()) {
            // From the hub's broker account but not signed by the hub: kept aside like a
            // message not from the hub, never handed over.
            self.store_received(pending).await?;
            let id = fallback_id();
            warn!(message_id = %id, error = %why, size = d.data.len(), "Message without a valid hub signature refused.");
            store::refuse(&self.pool, &id, user_id.as_deref(), &format!("signature: {why}"), &d.data, &sha256).await?;
            metrics::counter!("adapter_messages_refused_total").increment(1);
            d.ack(BasicAckOptions::default()).await.context("Failed to acknowledge a refused message")?;
            return Ok(());
        }
        let parsed = codec::from_xml(&d.data, self.settings.limits.max_message_bytes);
        // Nothing is dropped: what cannot be read is kept, with the reason, for the provincial
        // system and the operators to see.
        let (id, kind, case, corr, error) = match &parsed {
            Ok(env) if env.sender == Party::Hub && env.recipient == self.me => (
                env.message_id.to_string(),
                env.message_type().as_str().to_owned(),
                env.case_id.map(|c| c.to_string()),
                env.correlation_id.map(|c| c.to_string()),
                None,
            ),
            Ok(env) => (
                env.message_id.to_string(),
                "unreadable".to_owned(),
                None,
                None,
                Some(format!("the hub sent an envelope from {} to {}; this is {}", env.sender, env.recipient, self.me)),
            ),
            Err(e) => {
                (fallback_id(), "unreadable".to_owned(), None, None, Some(format!("{} {}", e.code.code(), e.detail)))
            }
        };
        if let Some(e) = &error {
            warn!(message_id = %id, error = %e, "Unreadable message kept in the inbox.");
        }
        if let Ok(env) = &parsed
            && let schemas::Body::ReplayRequest(req) = &env.body
            && error.is_none()
        {
            self.store_received(pending).await?;
            return self.replay(d, env, req.since).await;
        }
        if let Ok(env) = &parsed
            && let schemas::Body::OrgcodeChange(change) = &env.body
            && error.is_none()
        {
            self.store_received(pending).await?;
            return self.receive_orgcode(d, &id, &kind, change.sequence).await;
        }
        drop(parsed);
        pending.push(Inbound { id, kind, case, corr, error, delivery: d });
        Ok(())
    }

    /// Publishes due queued rows in submission order; returns how long to wait before looking
    /// again.
    async fn publish_queued(&self, ch: &Channel) -> Result<Duration> {
        loop {
            let rows = store::queued(&self.pool, 128).await?;
            let Some(head) = rows.first() else { return Ok(Duration::from_secs(5)) };
            let due =
                DateTime::parse_from_rfc3339(&head.next_attempt_at).map(|t| t.with_timezone(&Utc)).unwrap_or_default();
            if due > Utc::now() {
                // The head waits: later rows wait behind it, which keeps the order.
                return Ok((due - Utc::now()).to_std().unwrap_or(Duration::from_millis(100)));
            }
            let mut in_flight = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut headers = FieldTable::default();
                let signature = self.signer.sign(&row.body);
                headers.insert(
                    schemas::topology::SIGNATURE_HEADER.into(),
                    AMQPValue::LongString(LongString::from(signature.value_base64())),
                );
                headers.insert(
                    schemas::topology::SIGNER_HEADER.into(),
                    AMQPValue::LongString(LongString::from(signature.signer)),
                );
                if let Some(case) = &row.case_id {
                    headers.insert(
                        schemas::topology::CASE_ID_HEADER.into(),
                        AMQPValue::LongString(LongString::from(case.as_str())),
                    );
                }
                let props = BasicProperties::default()
                    .with_user_id(self.me.to_string().into())
                    .with_message_id(row.message_id.as_str().into())
                    .with_type(row.message_type.as_str().into())
                    .with_content_type("application/xml".into())
                    .with_delivery_mode(2)
                    .with_timestamp(Utc::now().timestamp().max(0) as u64)
                    .with_headers(headers);
                let confirm = ch
                    .basic_publish(
                        schemas::topology::INBOUND_EXCHANGE.into(),
                        row.message_type.as_str().into(),
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        &row.body,
                        props,
                    )
                    .await
                    .context("Failed to publish")?;
                in_flight.push((row, confirm));
            }
            // Only the rows before the first refusal count as sent: the refused row stays the
            // head, and the rows behind it go again after it (the hub drops a repeated message
            // id), so the order holds.
            let mut confirmed = Vec::with_capacity(in_flight.len());
            let mut failed = None;
            for (row, confirm) in in_flight {
                let refusal = match confirm.await.context("Lost a publisher confirm")? {
                    Confirmation::Ack(None) => None,
                    Confirmation::Ack(Some(r)) => Some(format!("unroutable: {}", r.reply_text)),
                    Confirmation::Nack(_) => Some("nacked by the broker".to_owned()),
                    Confirmation::NotRequested => unreachable!("confirm mode"),
                };
                match refusal {
                    None if failed.is_none() => confirmed.push(row.seq),
                    None => {}
                    Some(why) => {
                        failed.get_or_insert((row, why));
                    }
                }
            }
            store::confirm(&self.pool, &confirmed).await?;
            metrics::counter!("adapter_messages_published_total").increment(confirmed.len() as u64);
            if let Some((row, why)) = failed {
                let step = backoff(Duration::from_secs(300))
                    .nth(row.attempts.clamp(0, 20) as usize)
                    .unwrap_or(Duration::from_secs(300));
                warn!(message_id = %row.message_id, attempts = row.attempts + 1, error = %why, "Not accepted by the broker; will retry.");
                store::attempt_failed(&self.pool, row.seq, &why, Utc::now() + step).await?;
            }
        }
    }
}
