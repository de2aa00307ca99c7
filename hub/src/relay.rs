//! The outbox relay: publishes committed outbox rows with publisher confirms and stamps them
//! sent. One hub process relays at a time (a PostgreSQL advisory lock), which keeps the order
//! of messages to each province; the others stand by and take over when its session ends.
//! After a crash, rows not yet stamped go out again; receivers deduplicate by message id.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use chrono::Utc;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::amqp::publisher::{self, Published, Publisher};
use crate::amqp::{self, declare_core};
use crate::context::Context;
use crate::health::Health;
use crate::retry::backoff;
use crate::store::outbox;

/// Key of the relay's advisory lock.
const RELAY_LOCK: i64 = 0x7875_656a_6972_6c79; // "xuejirly"
/// Rows per relay transaction, and bytes of bodies (a full batch means a backlog: the next one
/// follows at once).
const BATCH: i64 = 1000;
const BATCH_BYTES: i64 = 64 * 1024 * 1024;

/// Relays until `shutdown` turns true and the consumer has stopped (`drained` is then awaited:
/// what was committed before the stop still goes out).
pub async fn run(
    ctx: Context,
    mut shutdown: watch::Receiver<bool>,
    consumer_done: watch::Receiver<bool>,
    health: Arc<Health>,
) {
    let mut delays = backoff();
    loop {
        let started = Instant::now();
        match session(&ctx, shutdown.clone(), consumer_done.clone(), &health).await {
            Ok(()) => return,
            Err(e) => {
                health.relaying.store(false, Ordering::SeqCst);
                if started.elapsed() > Duration::from_secs(30) {
                    delays = backoff();
                }
                let delay = delays.next().unwrap_or(Duration::from_secs(15));
                warn!(error = format!("{e:#}"), retry_in = ?delay, "Relay session ended; restarting.");
                if *shutdown.borrow() && *consumer_done.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

async fn session(
    ctx: &Context,
    mut shutdown: watch::Receiver<bool>,
    consumer_done: watch::Receiver<bool>,
    health: &Health,
) -> Result<()> {
    // Leadership: a session-level advisory lock on a connection of our own.
    let mut lock_conn = PgConnection::connect_with(&ctx.settings.database.connect_options()?)
        .await
        .context("Failed to connect for the relay lock")?;
    loop {
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(RELAY_LOCK).fetch_one(&mut lock_conn).await?;
        if got {
            break;
        }
        health.relaying.store(true, Ordering::SeqCst); // standing by is healthy
        if *shutdown.borrow() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
    info!("Relay: this process publishes the outbox.");

    let conn = amqp::connect(&ctx.settings.broker, &format!("hub-relay-{}", std::process::id())).await?;
    let setup = conn.create_channel().await?;
    declare_core(&setup, ctx.settings.broker.delivery_limit).await?;
    let publisher = Publisher::open(&conn).await?;
    let mut listener = PgListener::connect_with(&ctx.pool).await?;
    listener.listen("outbox").await?;
    health.relaying.store(true, Ordering::SeqCst);

    loop {
        let sent = relay_batch(ctx, &publisher).await?;
        // Keep the leadership connection honest: if it broke, the lock is gone too.
        sqlx::query("SELECT 1").execute(&mut lock_conn).await.context("Relay lock connection lost")?;
        if sent > 0 {
            // More may be waiting (a batch is cut by count or bytes): ask again before sleeping.
            continue;
        }
        if *shutdown.borrow() && *consumer_done.borrow() {
            // The consumer has stopped and everything committed and due has gone out.
            let _ = conn.close(200, "hub relay stopping".into()).await;
            return Ok(());
        }
        let mut done = consumer_done.clone();
        tokio::select! {
            n = listener.try_recv() => { n?; }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = done.changed() => {}
            _ = shutdown.changed() => {}
        }
        if !conn.status().connected() {
            return Err(anyhow!("broker connection lost"));
        }
    }
}

/// Publishes one batch; returns how many rows it took.
async fn relay_batch(ctx: &Context, publisher: &Publisher) -> Result<usize> {
    let mut tx = ctx.pool.begin().await?;
    let rows = outbox::claim_due(&mut tx, BATCH, BATCH_BYTES).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    crate::failpoint::pass(crate::failpoint::RELAY_BEFORE_PUBLISH);
    // Publish all, then collect the confirms: the broker confirms in pipelined fashion.
    let mut pending = Vec::with_capacity(rows.len());
    for row in &rows {
        pending.push(publisher.send(row).await?);
    }
    let mut sent = Vec::with_capacity(rows.len());
    for (row, confirm) in rows.iter().zip(pending) {
        match publisher::outcome(confirm).await? {
            Published::Confirmed => sent.push(row.outbox_id),
            failure => {
                let why = match failure {
                    Published::Unroutable(text) => format!("unroutable ({text}): no queue for {}", row.routing_key),
                    _ => "nacked by the broker".to_owned(),
                };
                let retry_at = Utc::now() + chrono::Duration::seconds(i64::from(row.attempts.clamp(0, 9) + 1) * 30);
                error!(message_id = %row.message_id, routing_key = %row.routing_key, attempts = row.attempts + 1, %why, "Outbox message not delivered; will retry.");
                outbox::mark_failed(&mut tx, row.outbox_id, &why, retry_at).await?;
            }
        }
    }
    crate::failpoint::pass(crate::failpoint::RELAY_AFTER_CONFIRM);
    outbox::mark_sent(&mut tx, &sent).await?;
    tx.commit().await?;
    metrics::counter!("hub_outbox_published_total").increment(sent.len() as u64);
    Ok(rows.len())
}
