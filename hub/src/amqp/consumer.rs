//! The consumer of the hub's inbox: manual acks, bounded prefetch, and a fixed set of workers
//! that commit in groups (one transaction, one fsync, for what has arrived; each message under
//! its own savepoint). A delivery is acknowledged only after its transaction committed; a transient database
//! failure holds the delivery and retries it (never a requeue loop); an unexpected failure
//! rejects it to the dead-letter exchange. Messages of one case go to the same worker, so they
//! are processed in the order they arrived.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{error, info, warn};

use super::intake::{Held, Intake};
use super::{connect, declare_core, names};
use crate::context::Context;
use crate::health::Health;
use crate::retry::{backoff, panic_text};
use crate::service::{self, Handled, Inbound};
use crate::store;

/// Consumes until `shutdown` turns true, reconnecting after any broker failure.
pub async fn run(ctx: Context, mut shutdown: watch::Receiver<bool>, health: Arc<Health>) {
    let mut delays = backoff();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = Instant::now();
        match session(&ctx, shutdown.clone(), &health).await {
            Ok(()) => return,
            Err(e) => {
                health.consuming.store(false, Ordering::SeqCst);
                if started.elapsed() > Duration::from_secs(30) {
                    delays = backoff();
                }
                let delay = delays.next().unwrap_or(Duration::from_secs(15));
                warn!(error = format!("{e:#}"), retry_in = ?delay, "Broker session ended; reconnecting.");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// One connection's life. `Ok` only when stopped by `shutdown`.
async fn session(ctx: &Context, mut shutdown: watch::Receiver<bool>, health: &Health) -> Result<()> {
    let settings = &ctx.settings;
    let conn = connect(&settings.broker, &format!("hub-consumer-{}", std::process::id())).await?;
    let ch = conn.create_channel().await?;
    declare_core(&ch, settings.broker.delivery_limit).await?;
    let tag = format!("hub-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let limits = (settings.limits.held_bytes, settings.broker.prefetch, settings.limits.max_message_bytes);
    let mut intake = Intake::start(&ch, &tag, limits).await?;
    // What the broker dead-letters (delivery limit reached) is taken into the hub's dead
    // letters, so that operators find every dead letter in one place, bounded.
    let dead_ch = conn.create_channel().await?;
    dead_ch.basic_qos(16, BasicQosOptions::default()).await?;
    let dead = dead_ch
        .basic_consume(
            names::DEAD_LETTER_QUEUE.into(),
            format!("{tag}-dead").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let dead_task = tokio::spawn(take_dead_letters(ctx.clone(), dead, shutdown.clone()));
    health.consuming.store(true, Ordering::SeqCst);
    info!(queue = names::INBOX_QUEUE, prefetch = settings.broker.prefetch, "Consuming.");

    let (alive_tx, alive_rx) = watch::channel(true);
    let budget = Arc::new(Semaphore::new(PROCESSING_KIB as usize));
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..settings.limits.workers {
        let (tx, rx) = mpsc::channel::<(Held, Instant)>(usize::from(settings.broker.prefetch));
        senders.push(tx);
        let gates = Gates { shutdown: shutdown.clone(), alive: alive_rx.clone(), budget: budget.clone() };
        workers.push(tokio::spawn(worker(ctx.clone(), rx, gates)));
    }

    let ended = loop {
        tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            next = intake.next() => match next {
                Ok(Some(delivery)) => {
                    metrics::counter!("hub_messages_received_total").increment(1);
                    let slot = (partition_key(&delivery.0) % senders.len() as u64) as usize;
                    if senders[slot].send((delivery, Instant::now())).await.is_err() {
                        break Err(anyhow!("a worker stopped"));
                    }
                }
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        }
    };
    health.consuming.store(false, Ordering::SeqCst);
    if ended.is_ok() {
        // Graceful: take no more deliveries, let the workers finish what they hold.
        intake.stop().await;
    } else {
        let _ = alive_tx.send(false);
    }
    drop(senders);
    for w in workers {
        let _ = w.await;
    }
    dead_task.abort();
    let _ = conn.close(200, "hub consumer stopping".into()).await;
    ended
}

/// Records each message the broker dead-lettered, then acknowledges it; a database outage
/// holds the delivery and retries it.
async fn take_dead_letters(ctx: Context, mut consumer: lapin::Consumer, shutdown: watch::Receiver<bool>) {
    while let Some(Ok(d)) = consumer.next().await {
        let text = |k: &str| match d.properties.headers().as_ref().and_then(|t| t.inner().get(k).cloned()) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            Some(AMQPValue::ShortString(s)) => s.to_string(),
            _ => "unknown".to_owned(),
        };
        let reason = format!(
            "dead-lettered by the broker ({} in {}): the hub did not finish processing it",
            text("x-first-death-reason"),
            text("x-first-death-queue")
        );
        let inbound = inbound(&d);
        let mut delays = backoff();
        loop {
            match service::record_broker_dead_letter(&ctx, inbound, &reason).await {
                Ok(()) => {
                    metrics::counter!("hub_messages_dead_lettered_total", "code" => "E_INTERNAL").increment(1);
                    let _ = d.ack(BasicAckOptions::default()).await;
                    break;
                }
                Err(e) if *shutdown.borrow() => {
                    warn!(error = format!("{e:#}"), "Dead letter left to the broker while stopping.");
                    return;
                }
                Err(e) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(15));
                    warn!(error = format!("{e:#}"), retry_in = ?delay, "Dead letter not recorded yet.");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Deliveries with the same key are processed in order by one worker: the case id (header
/// `x-case-id`, set by adapters) when there is one; for a lookup, its sender — a province's
/// lookups are counted under a lock held until the group commits, so on two workers each
/// would wait for the other's whole group —; else the message id.
fn partition_key(d: &Delivery) -> u64 {
    let p = &d.properties;
    let case = p.headers().as_ref().and_then(|t| match t.inner().get(schemas::topology::CASE_ID_HEADER) {
        Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes()).ok(),
        _ => None,
    });
    partition_of(case, text(p.kind()), text(p.user_id()), text(p.message_id()))
}

fn text(s: &Option<lapin::types::ShortString>) -> &str {
    s.as_ref().map(|s| s.as_str()).unwrap_or_default()
}

/// The partition of a delivery, from what [`partition_key`] reads of it.
fn partition_of(case: Option<&str>, kind: &str, sender: &str, message_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    match case {
        Some(c) => ("case", c).hash(&mut h),
        None if kind == schemas::messages::MessageType::LookupRequest.as_str() => ("sender", sender).hash(&mut h),
        None => ("message", message_id).hash(&mut h),
    }
    h.finish()
}

/// How many times a message whose handling fails (other than by an unavailable database) is
/// tried before it goes to the dead letters.
const HANDLER_ATTEMPTS: u32 = 3;

fn inbound(d: &Delivery) -> Inbound<'_> {
    Inbound {
        body: &d.data,
        user_id: d.properties.user_id().as_ref().map(|u| u.as_str()),
        amqp_message_id: d.properties.message_id().as_ref().map(|m| m.as_str()),
        replay: None,
        signature: text_header(d, schemas::topology::SIGNATURE_HEADER),
        signer: text_header(d, schemas::topology::SIGNER_HEADER),
    }
}

/// A header's value when it is text.
fn text_header<'a>(d: &'a Delivery, name: &str) -> Option<&'a str> {
    match d.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// What a worker answers to besides its deliveries.
struct Gates {
    shutdown: watch::Receiver<bool>,
    alive: watch::Receiver<bool>,
    budget: Arc<Semaphore>,
}

/// Bodies a group takes before it is closed (it ends with the message that reaches this): a
/// group of large archive files is processed, and held in memory, a few at a time.
const GROUP_BYTES: usize = 8 * 1024 * 1024;

/// Bodies being processed at once by all workers together, in KiB: parsing, checking and
/// writing a message copies it a few times, so large archive files are processed a few at a
/// time whatever the prefetch, and the hub's memory stays bounded (deliveries waiting their
/// turn hold only their bodies, at most `[limits] held_bytes` of them). Archive files are
/// processed at the database's pace, far below this, so a smaller bound costs nothing.
const PROCESSING_KIB: u32 = 16 * 1024;

/// Takes the deliveries of its partition in groups: what has arrived (up to `[limits]
/// group_max`, waiting at most `group_linger_ms` for more) is processed in one transaction. A
/// message that fails in the group is retried alone before the rest, so one case's messages
/// keep their order.
async fn worker(ctx: Context, mut rx: mpsc::Receiver<(Held, Instant)>, gates: Gates) {
    let Gates { shutdown, alive, budget } = gates;
    let max = ctx.settings.limits.group_max.max(1);
    let linger = Duration::from_millis(ctx.settings.limits.group_linger_ms);
    while let Some(first) = rx.recv().await {
        let mut bytes = first.0.0.data.len();
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + linger;
        while batch.len() < max && bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(d) => {
                    bytes += d.0.0.data.len();
                    batch.push(d);
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) if linger.is_zero() => break,
                Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(d)) => {
                        bytes += d.0.0.data.len();
                        batch.push(d);
                    }
                    _ => break,
                },
            }
        }
        for (_, arrived) in &batch {
            metrics::histogram!("hub_consumer_wait_seconds").record(arrived.elapsed().as_secs_f64());
        }
        // Counted in the bytes the intake holds until dropped here, after the acknowledgement.
        let held: Vec<Held> = batch.into_iter().map(|(d, _)| d).collect();
        let batch: Vec<&Delivery> = held.iter().map(|h| &h.0).collect();
        // Its share of the processing budget, held until it is acknowledged.
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, PROCESSING_KIB);
        let Ok(_share) = budget.acquire_many(kib).await else { return };
        let mut rest = batch.as_slice();
        while !rest.is_empty() {
            let committed = group(&ctx, rest).await;
            rest = &rest[committed..];
            if let Some((failed, tail)) = rest.split_first() {
                alone(&ctx, failed, &shutdown, &alive).await;
                rest = tail;
            }
        }
    }
}

/// Processes `batch` as one group ([`service::handle_group`]), then acknowledges what
/// committed; returns how many did.
async fn group(ctx: &Context, batch: &[&Delivery]) -> usize {
    let started = Instant::now();
    let inbounds: Vec<Inbound<'_>> = batch.iter().map(|d| inbound(d)).collect();
    let handled = service::handle_group(ctx, &inbounds).await;
    if !handled.is_empty() {
        metrics::histogram!("hub_consumer_group_size").record(handled.len() as f64);
    }
    let took = started.elapsed();
    for (d, h) in batch.iter().zip(&handled) {
        after_commit(d, h, took).await;
    }
    handled.len()
}

/// The crash point, the metrics and the acknowledgement of a committed message.
async fn after_commit(d: &Delivery, handled: &Handled, took: Duration) {
    let committed = match handled {
        service::Handled::Processed(t) | service::Handled::Refused(t, _) => Some(t.as_str()),
        _ => None,
    };
    crate::failpoint::pass_tagged(crate::failpoint::CONSUMER_AFTER_COMMIT, committed);
    record(handled, took);
    if let Err(e) = d.ack(BasicAckOptions::default()).await {
        // The broker redelivers it; the inbox recognizes it then.
        warn!(error = %e, "Ack failed after commit.");
    }
}

/// One delivery in a transaction of its own: a transient failure (the database unavailable)
/// holds it and retries with backoff; any other failure is retried a few times, then the
/// message goes to the dead letters.
async fn alone(ctx: &Context, d: &Delivery, shutdown: &watch::Receiver<bool>, alive: &watch::Receiver<bool>) {
    let started = Instant::now();
    let mut delays = backoff();
    let mut failures = 0;
    loop {
        // A panic while handling one message must not take the worker down with it: it
        // counts as a failure of that message, which is rejected to the dead letters.
        let result = match std::panic::AssertUnwindSafe(service::handle(ctx, inbound(d))).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => Err(anyhow!("the handler panicked: {}", panic_text(&panic))),
        };
        match result {
            Ok(handled) => {
                after_commit(d, &handled, started.elapsed()).await;
                return;
            }
            Err(e) if store::is_transient_any(&e) => {
                if *shutdown.borrow() || !*alive.borrow() {
                    // Left unacknowledged: the broker gives it to the next consumer.
                    warn!(error = format!("{e:#}"), "Transient failure while stopping; delivery left to the broker.");
                    return;
                }
                let delay = delays.next().unwrap_or(Duration::from_secs(15));
                warn!(error = format!("{e:#}"), retry_in = ?delay, "Database unavailable; holding the delivery.");
                tokio::time::sleep(delay).await;
            }
            Err(e) if failures + 1 < HANDLER_ATTEMPTS && !*shutdown.borrow() => {
                // Each attempt is a fresh transaction: what a concurrent message changed in
                // between (a race on the same student) is seen the next time.
                failures += 1;
                warn!(error = format!("{e:#}"), attempt = failures, "Processing failed; trying again.");
                tokio::time::sleep(Duration::from_millis(200) * failures).await;
            }
            Err(e) => {
                let why = format!("{e:#}");
                error!(error = %why, attempts = failures + 1, "Processing failed for good; dead-lettered.");
                // Recorded and answered by the hub (E_INTERNAL), then acknowledged; only if
                // even that fails does the broker's dead-lettering take it.
                match service::give_up(ctx, inbound(d), &why).await {
                    Ok(handled) => {
                        record(&handled, started.elapsed());
                        let _ = d.ack(BasicAckOptions::default()).await;
                    }
                    Err(e) => {
                        error!(
                            error = format!("{e:#}"),
                            "Dead letter not recorded; rejected to the broker's dead letters."
                        );
                        let _ = d.reject(BasicRejectOptions { requeue: false }).await;
                    }
                }
                return;
            }
        }
    }
}

fn record(handled: &Handled, took: Duration) {
    match handled {
        Handled::Processed(t) => {
            metrics::counter!("hub_messages_processed_total", "type" => t.as_str()).increment(1);
            metrics::histogram!("hub_handler_seconds", "type" => t.as_str()).record(took.as_secs_f64());
        }
        Handled::Refused(t, code) => {
            metrics::counter!("hub_messages_refused_total", "type" => t.as_str(), "code" => code.code()).increment(1);
            metrics::histogram!("hub_handler_seconds", "type" => t.as_str()).record(took.as_secs_f64());
        }
        Handled::Duplicate => metrics::counter!("hub_messages_duplicate_total").increment(1),
        Handled::Poison(code) => {
            metrics::counter!("hub_messages_dead_lettered_total", "code" => code.code()).increment(1);
        }
        Handled::Suppressed(code) => {
            metrics::counter!("hub_messages_suppressed_total", "code" => code.code()).increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::partition_of;

    #[test]
    fn a_province_s_lookups_share_a_partition_and_other_messages_spread() {
        let lookup = |id: &str| partition_of(None, "lookup.request", "37", id);
        let ids: Vec<String> = (0..32).map(|i| format!("0190a3b2-0000-7000-8000-{i:012}")).collect();
        assert!(ids.iter().all(|id| lookup(id) == lookup(&ids[0])), "one province's lookups, one worker");
        assert_ne!(lookup(&ids[0]), partition_of(None, "lookup.request", "44", &ids[0]));
        // Other messages without a case spread by their id; a case's messages stay together.
        let applies: std::collections::HashSet<u64> =
            ids.iter().map(|id| partition_of(None, "transfer.apply", "37", id) % 2).collect();
        assert_eq!(applies.len(), 2, "applications spread over two workers");
        let case = |kind, sender, id| partition_of(Some("c-1"), kind, sender, id);
        assert_eq!(case("review.decision", "37", &ids[0]), case("archive.package", "44", &ids[1]));
    }
}
