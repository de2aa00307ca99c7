//! Pruning by age: what the hub keeps grows only within its retention periods. Deletes go in
//! batches, so a long backlog never holds locks for long.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

const BATCH: i64 = 5000;

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub outbox: u64,
    pub dead_letters: u64,
    pub inbox: u64,
    pub trace: u64,
    pub problem_evidence: u64,
    pub lookup_audit: u64,
    pub message_log: u64,
}

async fn in_batches(conn: &mut PgConnection, sql: &'static str, before: DateTime<Utc>) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let n = sqlx::query(sql).bind(before).bind(BATCH).execute(&mut *conn).await?.rows_affected();
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Published outbox rows sent before `before`.
///
/// # Errors
/// Database errors.
pub async fn outbox(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<u64> {
    in_batches(
        conn,
        "DELETE FROM outbox WHERE outbox_id IN
           (SELECT outbox_id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1 LIMIT $2)",
        before,
    )
    .await
}

/// Dead letters first seen before `before`, and the counts of suppressed ones.
///
/// # Errors
/// Database errors.
pub async fn dead_letters(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<u64> {
    let kept = in_batches(
        conn,
        "DELETE FROM dead_letter WHERE dead_letter_id IN
           (SELECT dead_letter_id FROM dead_letter WHERE first_seen < $1 LIMIT $2)",
        before,
    )
    .await?;
    let counted = in_batches(
        conn,
        "DELETE FROM dead_letter_suppressed WHERE (sender, minute, code) IN
           (SELECT sender, minute, code FROM dead_letter_suppressed WHERE minute < $1 LIMIT $2)",
        before,
    )
    .await?;
    Ok(kept + counted)
}

/// Inbox entries received before `before` (long after any redelivery could come).
///
/// # Errors
/// Database errors.
pub async fn inbox(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<u64> {
    in_batches(
        conn,
        "DELETE FROM inbox WHERE (sender, message_id) IN
           (SELECT sender, message_id FROM inbox WHERE received_at < $1 LIMIT $2)",
        before,
    )
    .await
}

/// The evidence files of problem groups that closed before `before` (the groups, their records
/// and history stay: they settle what the national de-duplication finds again, and the
/// history keeps each file's name, size and SHA-256).
///
/// # Errors
/// Database errors.
pub async fn problem_evidence(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<u64> {
    in_batches(
        conn,
        "DELETE FROM problem_evidence WHERE (group_id, sha256) IN
           (SELECT e.group_id, e.sha256 FROM problem_evidence e JOIN problem_group g USING (group_id)
            WHERE g.state = 'closed' AND g.closed_at < $1 LIMIT $2)",
        before,
    )
    .await
}

/// Message-trace rows written before `before`.
///
/// # Errors
/// Database errors.
pub async fn trace(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<u64> {
    in_batches(
        conn,
        "DELETE FROM message_trace WHERE trace_id IN (SELECT trace_id FROM message_trace WHERE at < $1 LIMIT $2)",
        before,
    )
    .await
}

/// Lookup-audit entries written before `before`.
///
/// # Errors
/// Database errors.
pub async fn lookup_audit(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<u64> {
    in_batches(
        conn,
        "DELETE FROM lookup_audit WHERE audit_id IN (SELECT audit_id FROM lookup_audit WHERE at < $1 LIMIT $2)",
        before,
    )
    .await
}

/// Message-log entries logged before `before`, from the chain's start: the oldest chained
/// entries up to the first one still within its retention (the chain's order and the log's
/// time agree but for moments, and the chain must never have a hole), with their links but
/// the last, which the chain goes on from and the next export starts after; and the hub's
/// checkpoints below that link but the last, which seals what was pruned. A message still
/// waiting in the outbox (one the broker keeps refusing) takes its bytes into its row as its
/// entry goes: the outbox keeps none of its own, and the log must not stop being pruned.
///
/// # Errors
/// Database errors.
pub async fn message_log(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<u64> {
    in_batches(
        conn,
        "WITH oldest AS (
             SELECT c.position, c.entry_id, l.at FROM message_log_chain c JOIN message_log l USING (entry_id)
             ORDER BY c.position LIMIT $2),
         prefix AS (
             SELECT position, entry_id FROM oldest
             WHERE position < coalesce((SELECT min(position) FROM oldest WHERE at >= $1), 9223372036854775807)),
         anchor AS (SELECT max(position) AS p FROM prefix),
         waiting AS (
             UPDATE outbox o SET body = l.body FROM message_log l
             WHERE l.entry_id IN (SELECT entry_id FROM prefix) AND l.direction = 'out'
               AND o.message_id = l.message_id AND o.log_entry = l.entry_id AND o.sent_at IS NULL AND o.body IS NULL),
         links AS (DELETE FROM message_log_chain WHERE position < (SELECT p FROM anchor)),
         sealed AS (
             DELETE FROM message_log_checkpoint WHERE position <
                 (SELECT max(position) FROM message_log_checkpoint WHERE position <= (SELECT p FROM anchor)))
         DELETE FROM message_log WHERE entry_id IN (SELECT entry_id FROM prefix)",
        before,
    )
    .await
}
