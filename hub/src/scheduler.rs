//! The scheduler: fires due timers. Each timer is claimed with `FOR UPDATE SKIP LOCKED`, run
//! and deleted in one transaction, so it fires once however many hub processes run.

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use tokio::sync::watch;
use tracing::{error, warn};

use crate::service::Context;
use crate::store::{self, timers};

/// How often to look for due timers.
const TICK: Duration = Duration::from_millis(500);
const BATCH: i64 = 50;

/// Runs until `shutdown` turns true.
pub async fn run(ctx: Context, mut shutdown: watch::Receiver<bool>) {
    loop {
        match fire_due(&ctx).await {
            Ok(n) if n == BATCH as usize => continue,
            Ok(_) => {}
            Err(e) if store::is_transient_any(&e) => {
                warn!(error = format!("{e:#}"), "Scheduler waiting for the database.")
            }
            Err(e) => error!(error = format!("{e:#}"), "Scheduler tick failed."),
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Fires the timers due now, each in a transaction of its own; returns how many fired.
///
/// # Errors
/// Database errors.
pub async fn fire_due(ctx: &Context) -> Result<usize> {
    let now = Utc::now();
    let ids = {
        let mut conn = ctx.pool.acquire().await?;
        timers::due_ids(&mut conn, now, BATCH).await?
    };
    let mut fired = 0;
    for id in ids {
        let mut tx = ctx.pool.begin().await?;
        let Some(timer) = timers::claim(&mut tx, id, now).await? else { continue };
        // Deleted first: the handler may arm the same kind again for the case.
        timers::delete(&mut tx, timer.timer_id).await?;
        match crate::handlers::timer(&mut tx, ctx, &timer, now).await {
            Ok(Some(replies)) => {
                let cause = format!("timer:{}:{}", timer.timer_id, timer.due_at.timestamp_micros());
                crate::service::emit(&mut tx, cause.as_bytes(), replies, None, now).await?;
                tx.commit().await?;
                fired += 1;
            }
            Ok(None) => drop(tx), // busy: stays due for the next tick
            Err(e) if store::is_transient_any(&e) => return Err(e),
            Err(e) => {
                drop(tx);
                error!(timer_id = timer.timer_id, kind = %timer.kind, error = format!("{e:#}"), "Timer failed; postponed.");
                let backoff = chrono::Duration::seconds(60 * i64::from(timer.attempts.clamp(0, 59) + 1));
                let mut conn = ctx.pool.acquire().await?;
                timers::postpone(&mut conn, timer.timer_id, Utc::now() + backoff, &format!("{e:#}")).await?;
            }
        }
    }
    Ok(fired)
}
