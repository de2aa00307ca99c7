//! Housekeeping: a pruning pass every `[retention] prune_interval_secs` keeps the outbox, the
//! dead letters and the inbox within their retention periods. Several hub processes may prune
//! at once; deleting what is already gone is harmless.

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Retention;
use crate::store::{self, retention};

/// Runs until `shutdown` turns true.
pub async fn run(pool: sqlx::PgPool, config: Retention, mut shutdown: watch::Receiver<bool>) {
    loop {
        match prune(&pool, &config).await {
            Ok(p) if p != retention::Pruned::default() => {
                info!(
                    outbox = p.outbox,
                    dead_letters = p.dead_letters,
                    inbox = p.inbox,
                    trace = p.trace,
                    problem_evidence = p.problem_evidence,
                    lookup_audit = p.lookup_audit,
                    message_log = p.message_log,
                    "Old rows pruned."
                );
            }
            Ok(_) => {}
            Err(e) if store::is_transient_any(&e) => warn!(error = format!("{e:#}"), "Pruning waits for the database."),
            Err(e) => warn!(error = format!("{e:#}"), "Pruning failed; trying again next time."),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(config.prune_interval_secs)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pruning pass.
///
/// # Errors
/// Database errors.
pub async fn prune(pool: &sqlx::PgPool, config: &Retention) -> Result<retention::Pruned> {
    let now = Utc::now();
    let ago = |secs: u64| now - chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 4));
    let mut conn = pool.acquire().await?;
    let pruned = retention::Pruned {
        outbox: retention::outbox(&mut conn, ago(config.outbox_published_secs)).await?,
        dead_letters: retention::dead_letters(&mut conn, ago(config.dead_letter_secs)).await?,
        inbox: retention::inbox(&mut conn, ago(config.inbox_secs)).await?,
        trace: retention::trace(&mut conn, ago(config.trace_secs)).await?,
        problem_evidence: retention::problem_evidence(&mut conn, ago(config.problem_evidence_secs)).await?,
        lookup_audit: retention::lookup_audit(&mut conn, ago(config.lookup_audit_secs)).await?,
        message_log: retention::message_log(&mut conn, ago(config.message_log_secs)).await?,
    };
    let tables = [
        ("outbox", pruned.outbox),
        ("dead_letter", pruned.dead_letters),
        ("inbox", pruned.inbox),
        ("message_trace", pruned.trace),
        ("problem_evidence", pruned.problem_evidence),
        ("lookup_audit", pruned.lookup_audit),
        ("message_log", pruned.message_log),
    ];
    for (table, n) in tables {
        metrics::counter!("hub_pruned_rows_total", "table" => table).increment(n);
    }
    Ok(pruned)
}
