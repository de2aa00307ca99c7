//! The outbox: messages to publish, written with the effects that cause them.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

/// A message to publish.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: Uuid,
    pub exchange: String,
    pub routing_key: String,
    pub message_type: String,
    pub recipient: String,
    pub case_id: Option<Uuid>,
    pub correlation_id: Option<String>,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

/// A row waiting to be published.
#[derive(Debug, Clone, FromRow)]
pub struct Pending {
    pub outbox_id: i64,
    pub message_id: Uuid,
    pub exchange: String,
    pub routing_key: String,
    pub message_type: String,
    pub correlation_id: Option<String>,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    pub attempts: i32,
}

/// Adds a message and its line in the message trace, in one statement; a message id already
/// present is left alone (replays are harmless). The relay is woken at commit (the outbox's
/// statement trigger).
///
/// # Errors
/// Database errors.
pub async fn enqueue(conn: &mut PgConnection, m: &NewMessage, trace_correlation: Option<Uuid>) -> sqlx::Result<()> {
    sqlx::query(
        "WITH queued AS (
             INSERT INTO outbox (message_id, exchange, routing_key, message_type, recipient, case_id, correlation_id, headers, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (message_id) DO NOTHING)
         INSERT INTO message_trace (message_id, direction, party, message_type, case_id, correlation_id, outcome)
         VALUES ($1, 'out', $5, $4, $6, $10, 'queued')",
    )
    .bind(m.message_id)
    .bind(&m.exchange)
    .bind(&m.routing_key)
    .bind(&m.message_type)
    .bind(&m.recipient)
    .bind(m.case_id)
    .bind(&m.correlation_id)
    .bind(&m.headers)
    .bind(&m.body)
    .bind(trace_correlation)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks what was published to `recipient` since `since` (at most `limit` rows, oldest first)
/// for publishing again; returns how many, and the oldest row still kept for it.
///
/// # Errors
/// Database errors.
pub async fn replay(
    conn: &mut PgConnection,
    recipient: &str,
    since: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<(u64, Option<DateTime<Utc>>)> {
    let n = sqlx::query(
        "UPDATE outbox SET sent_at = NULL, next_attempt_at = now(), attempts = 0
         WHERE outbox_id IN (SELECT outbox_id FROM outbox WHERE recipient = $1 AND sent_at >= $2
                             ORDER BY outbox_id LIMIT $3)",
    )
    .bind(recipient)
    .bind(since)
    .bind(limit)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let kept: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT min(created_at) FROM outbox WHERE recipient = $1")
        .bind(recipient)
        .fetch_one(&mut *conn)
        .await?;
    if n > 0 {
        sqlx::query("SELECT pg_notify('outbox', '')").execute(conn).await?;
    }
    Ok((n, kept))
}

/// Locks the oldest due, unsent rows: up to `limit` of them and, beyond the first, no more
/// than `max_bytes` of bodies together (a backlog of large archives must not be read into
/// memory at once). Rows locked by another relay are skipped.
///
/// # Errors
/// Database errors.
pub async fn claim_due(conn: &mut PgConnection, limit: i64, max_bytes: i64) -> sqlx::Result<Vec<Pending>> {
    let sizes: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT outbox_id, octet_length(body) FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= now()
         ORDER BY outbox_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut total = 0i64;
    let ids: Vec<i64> = sizes
        .into_iter()
        .take_while(|(_, size)| {
            let first = total == 0;
            total += i64::from(*size).max(1);
            first || total <= max_bytes
        })
        .map(|(id, _)| id)
        .collect();
    if ids.is_empty() {
        return Ok(vec![]);
    }
    sqlx::query_as(
        "SELECT outbox_id, message_id, exchange, routing_key, message_type, correlation_id, headers, body, attempts
         FROM outbox WHERE outbox_id = ANY($1) AND sent_at IS NULL
         ORDER BY outbox_id FOR UPDATE SKIP LOCKED",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await
}

/// # Errors
/// Database errors.
pub async fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE outbox_id = ANY($1)",
    )
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt; the row is tried again at `retry_at`.
///
/// # Errors
/// Database errors.
pub async fn mark_failed(conn: &mut PgConnection, id: i64, error: &str, retry_at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 WHERE outbox_id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(retry_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Unsent rows and the age in seconds of the oldest (the relay's lag).
///
/// # Errors
/// Database errors.
pub async fn lag(pool: &PgPool) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(pool)
    .await
}
