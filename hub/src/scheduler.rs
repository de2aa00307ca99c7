//! The scheduler: fires due timers. Each timer is claimed with `FOR UPDATE SKIP LOCKED`, run
//! and deleted in one transaction, so it fires once however many hub processes run.

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use tokio::sync::watch;
use tracing::{error, warn};

use crate::context::Context;
use crate::handlers::{self, Timer};
use crate::outgoing::Cause;
use crate::store::{self, timers};
use crate::unit::UnitOfWork;

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

/// Fires the timers due now, each in a unit of work of its own; returns how many fired.
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
        let mut unit = UnitOfWork::begin(&ctx.pool, now).await?;
        let Some(due) = timers::claim(unit.conn(), id, now).await? else { continue };
        // Deleted first: the handler may arm the same slot again.
        timers::delete(unit.conn(), due.timer_id).await?;
        let Some(timer) = Timer::of(&due) else {
            // A kind this build does not know (written by a newer hub?): kept aside, loudly.
            drop(unit);
            error!(timer_id = due.timer_id, owner = %due.owner_business, kind = %due.kind, "Unknown timer; postponed.");
            let mut conn = ctx.pool.acquire().await?;
            timers::postpone(&mut conn, due.timer_id, Utc::now() + chrono::Duration::hours(1), "unknown kind").await?;
            continue;
        };
        match handlers::timer(unit.conn(), ctx, timer, now).await {
            Ok(Some(replies)) => {
                let cause = Cause::Timer { timer_id: due.timer_id, due_at: due.due_at };
                unit.finish(&cause, replies, None).await?;
                fired += 1;
            }
            Ok(None) => drop(unit), // busy: stays due for the next tick
            Err(e) if store::is_transient_any(&e) => return Err(e),
            Err(e) => {
                drop(unit);
                error!(timer_id = due.timer_id, kind = %due.kind, error = format!("{e:#}"), "Timer failed; postponed.");
                let backoff = chrono::Duration::seconds(60 * i64::from(due.attempts.clamp(0, 59) + 1));
                let mut conn = ctx.pool.acquire().await?;
                timers::postpone(&mut conn, due.timer_id, Utc::now() + backoff, &format!("{e:#}")).await?;
            }
        }
    }
    Ok(fired)
}
