//! The outbox relay: publishes committed outbox rows with publisher confirms and stamps them
//! sent. One hub process relays at a time (a PostgreSQL advisory lock), which keeps the order
//! of messages to each province; the others stand by and take over when its session ends. A
//! row the broker refuses (a quorum queue between leaders) is tried again within seconds, and
//! the province's later rows are not read until it has gone: they would overtake it. Rows of
//! that province already published in the pipeline's later batches can still arrive first.
//! After a crash, rows not yet stamped go out again; receivers deduplicate by message id.
//!
//! Batches are pipelined: while the broker confirms one batch, the next is claimed (the rows
//! after it) and published on the same channel, so the order of publication is the order of
//! the outbox and neither the broker's nor PostgreSQL's fsync stalls the flow. A batch costs
//! two statements, each its own transaction: the read of its rows and, once confirmed, their
//! stamp — no transaction is held open across the broker's confirm, on connections of the
//! relay's own (never waiting behind the consumer's workers for the pool), set up by
//! [`outbox::RELAY_SESSION`]: the stamps commit asynchronously (a stamp lost in a database
//! crash only sends its rows again, which receivers recognize), and the reads skip the entries
//! the stamps left behind instead of visiting their rows again at every read.

use std::collections::VecDeque;
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
use crate::store::outbox::{self, Pending};

/// Key of the relay's advisory lock.
const RELAY_LOCK: i64 = 0x7875_656a_6972_6c79; // "xuejirly"
/// Rows per relay transaction, and bytes of bodies (a full batch means a backlog: the next one
/// follows at once).
const BATCH: i64 = 1000;
const BATCH_BYTES: i64 = 8 * 1024 * 1024 / PIPELINE as i64;
/// Batches published and not yet confirmed and stamped, at most (each holds one connection).
const PIPELINE: usize = 4;
/// A read looks at the rows above the highest id read this long ago: ids are taken in order
/// when rows are written, so a row below it belongs to a transaction older than this, which a
/// sweep finds. (Reading from the lowest unsent id each time would walk every row stamped
/// since the last vacuum: the stamps leave dead entries in the unsent-rows index.)
const GRACE: Duration = Duration::from_secs(10);
/// Every this often a read looks at every unsent row: rows of transactions longer than
/// [`GRACE`], rows due again after a failed attempt, rows an operator replays.
const SWEEP: Duration = Duration::from_secs(5);

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

/// A batch published and waiting for its confirms.
struct InFlight {
    conn: PgConnection,
    rows: Vec<Pending>,
    /// The broker's answers, in row order, gathered by a task of their own (so the time the
    /// broker took is measured when it answers, not when the relay looks).
    confirms: tokio::task::JoinHandle<Result<Vec<Published>>>,
    outcomes: Option<Result<Vec<Published>>>,
    published: Instant,
    /// The read stopped at a limit (rows or bytes): more rows may be due at once.
    full: bool,
}

impl InFlight {
    /// Waits until the broker has answered every row. Cancel-safe: what has been waited for
    /// stays waited for.
    async fn confirmed(&mut self) {
        if self.outcomes.is_none() {
            self.outcomes = Some(match (&mut self.confirms).await {
                Ok(outcomes) => outcomes,
                Err(e) => Err(anyhow!("the confirms' task ended: {e}")),
            });
        }
    }
}

async fn session(
    ctx: &Context,
    mut shutdown: watch::Receiver<bool>,
    consumer_done: watch::Receiver<bool>,
    health: &Health,
) -> Result<()> {
    let options = ctx.settings.database.connect_options()?;
    // Leadership: a session-level advisory lock on a connection of our own.
    let mut lock_conn = PgConnection::connect_with(&options).await.context("Failed to connect for the relay lock")?;
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
    // Everything the hub sends is signed with its certificate's key (checked at start too).
    let signer = certs::signature::Signer::load(&ctx.settings.broker.cert, &ctx.settings.broker.key)
        .context("Failed to load the hub's signing key")?;
    let publisher = Publisher::open(&conn, signer).await?;
    let mut listener = PgListener::connect_with(&ctx.pool).await?;
    listener.listen("outbox").await?;
    let mut idle = Vec::with_capacity(PIPELINE);
    for _ in 0..PIPELINE {
        let mut c = PgConnection::connect_with(&options).await.context("Failed to connect for the relay")?;
        outbox::relay_session(&mut c).await?;
        idle.push(c);
    }
    health.relaying.store(true, Ordering::SeqCst);

    let mut flight: VecDeque<InFlight> = VecDeque::with_capacity(PIPELINE);
    // Whether rows may be due that no read has seen: a wake-up came after the last read began,
    // the last read filled a batch, or the wait timed out (a failed row may be due again).
    let mut dirty = true;
    let mut lock_checked = Instant::now();
    // The highest outbox id read, and when: (time, highest id read by then), oldest first.
    let mut marks: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut swept: Option<Instant> = None;
    loop {
        dirty |= woken(&mut listener)?;
        if lock_checked.elapsed() >= Duration::from_secs(1) {
            // Keep the leadership connection honest: if it broke, the lock is gone too.
            sqlx::query("SELECT 1").execute(&mut lock_conn).await.context("Relay lock connection lost")?;
            lock_checked = Instant::now();
        }
        // Read and publish the next batch while fewer than PIPELINE are in flight: the due,
        // unsent rows but those in flight, in outbox order, above the floor — so a row whose
        // transaction took a lower id but committed later goes out with the next batch, not
        // after a pause.
        if dirty && !idle.is_empty() {
            let c = idle.pop().expect("an idle connection");
            // Wake-ups are taken before the read: one that comes after it may be for rows it
            // did not see, and makes the loop read again.
            while listener.next_buffered().is_some() {}
            let in_flight: Vec<i64> = flight.iter().flat_map(|b| b.rows.iter().map(|r| r.outbox_id)).collect();
            while marks.len() > 1 && marks[1].0.elapsed() >= GRACE {
                marks.pop_front();
            }
            let mut floor = marks.front().filter(|m| m.0.elapsed() >= GRACE).map_or(0, |m| m.1);
            if swept.is_none_or(|t| t.elapsed() >= SWEEP) {
                floor = 0;
                swept = Some(Instant::now());
            }
            match claim(c, &publisher, floor, &in_flight).await? {
                Claimed::Published(batch) => {
                    let highest = batch.rows.iter().map(|r| r.outbox_id).max().unwrap_or(0);
                    if marks.back().is_none_or(|m| m.1 < highest) {
                        marks.push_back((Instant::now(), highest));
                    }
                    dirty = batch.full;
                    flight.push_back(batch);
                    continue;
                }
                Claimed::Nothing(c) => {
                    dirty = false;
                    idle.push(c);
                }
            }
        }
        if let Some(front) = flight.front_mut() {
            // While another batch may be read, a wake-up interrupts the wait for the oldest
            // batch's confirms: rows committed meanwhile go out without waiting for them.
            if !dirty && !idle.is_empty() {
                tokio::select! {
                    () = front.confirmed() => {}
                    n = listener.try_recv() => {
                        n?;
                        dirty = true;
                        continue;
                    }
                }
            }
            let batch = flight.pop_front().expect("the front batch");
            idle.push(settle(batch).await?);
            continue;
        }
        if dirty {
            continue;
        }
        // Nothing in flight, nothing due.
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
        dirty = true;
        if !conn.status().connected() {
            return Err(anyhow!("broker connection lost"));
        }
    }
}

/// Whether a wake-up has arrived, without waiting for one.
fn woken(listener: &mut PgListener) -> Result<bool> {
    use futures_util::FutureExt;
    let mut any = false;
    while let Some(n) = listener.try_recv().now_or_never() {
        match n? {
            Some(_) => any = true,
            // The listening connection was lost and is being made again: a wake-up may have
            // been lost with it.
            None => return Ok(true),
        }
    }
    Ok(any)
}

fn stage(name: &'static str, since: Instant) -> Instant {
    metrics::histogram!("hub_relay_stage_seconds", "stage" => name).record(since.elapsed().as_secs_f64());
    Instant::now()
}

enum Claimed {
    Published(InFlight),
    /// Nothing due: the connection back.
    Nothing(PgConnection),
}

/// Reads the due rows above `floor` but those in flight on `conn`, and publishes them.
async fn claim(mut conn: PgConnection, publisher: &Publisher, floor: i64, in_flight: &[i64]) -> Result<Claimed> {
    let t = Instant::now();
    let rows = outbox::claim_due(&mut conn, floor, in_flight, BATCH, BATCH_BYTES).await?;
    if rows.is_empty() {
        return Ok(Claimed::Nothing(conn));
    }
    let t = stage("claim", t);
    metrics::histogram!("hub_relay_batch_rows").record(rows.len() as f64);
    // A read that took half the byte budget may have stopped at it.
    let bytes: usize = rows.iter().map(|r| r.body.len()).sum();
    let full = rows.len() as i64 >= BATCH || bytes as i64 >= BATCH_BYTES / 2;
    crate::failpoint::pass(crate::failpoint::RELAY_BEFORE_PUBLISH);
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        confirms.push(publisher.send(row).await?);
    }
    let published = stage("publish", t);
    let confirms = tokio::spawn(async move {
        let mut outcomes = Vec::with_capacity(confirms.len());
        for confirm in confirms {
            outcomes.push(publisher::outcome(confirm).await?);
        }
        stage("confirm", published);
        Ok(outcomes)
    });
    Ok(Claimed::Published(InFlight { conn, rows, confirms, outcomes: None, published, full }))
}

/// Waits for a batch's confirms, stamps what the broker took (and schedules again what it did
/// not); returns the connection.
async fn settle(mut batch: InFlight) -> Result<PgConnection> {
    batch.confirmed().await;
    let InFlight { mut conn, rows, outcomes, published, .. } = batch;
    let outcomes = outcomes.expect("waited for above")?;
    let mut sent = Vec::with_capacity(rows.len());
    for (row, outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Published::Confirmed => {
                sent.push(row.outbox_id);
                let queued = (Utc::now() - row.created_at).to_std().unwrap_or_default();
                metrics::histogram!("hub_outbox_delay_seconds").record(queued.as_secs_f64());
            }
            failure => {
                let why = match failure {
                    Published::Unroutable(text) => format!("unroutable ({text}): no queue for {}", row.routing_key),
                    _ => "nacked by the broker".to_owned(),
                };
                // The province's later messages wait for this one (the read holds them), so it
                // is tried again soon: 1, 2, 4 … 30 s.
                let retry_at = Utc::now() + chrono::Duration::seconds((1i64 << row.attempts.clamp(0, 5)).min(30));
                error!(message_id = %row.message_id, routing_key = %row.routing_key, attempts = row.attempts + 1, %why, "Outbox message not delivered; will retry.");
                outbox::mark_failed(&mut conn, row.outbox_id, &why, retry_at).await?;
            }
        }
    }
    let t = stage("settle", published);
    crate::failpoint::pass(crate::failpoint::RELAY_AFTER_CONFIRM);
    outbox::mark_sent(&mut conn, &sent).await?;
    stage("stamp", t);
    metrics::counter!("hub_outbox_published_total").increment(sent.len() as u64);
    Ok(conn)
}
