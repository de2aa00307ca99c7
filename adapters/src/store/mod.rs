//! The adapter's SQLite store: the outbox and the inbox. A submission is acknowledged to the
//! provincial system only after its row is committed; an inbound message is acknowledged to the
//! broker only after its row is committed. WAL with synchronous=FULL makes a commit durable.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::Digest as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

/// Opens (creating if needed) and migrates the store.
///
/// # Errors
/// When the file cannot be opened or migrated.
pub async fn open(path: &Path) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    // No test of a connection as it is taken from the pool: a local file's connection does not
    // break, and the test costs a round trip to SQLite's worker thread per statement.
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("Failed to open the store {}", path.display()))?;
    sqlx::migrate!("./migrations").run(&pool).await.context("Failed to migrate the store")?;
    Ok(pool)
}

mod backup;
pub use backup::{backup, check_backup};

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What happened to a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Newly queued.
    Queued,
    /// Already submitted with the same content: nothing changed.
    AlreadyQueued,
    /// The message id was used before for a different message.
    Conflict,
}

/// Queues a submission, once.
///
/// # Errors
/// Database errors.
pub async fn submit(
    pool: &SqlitePool,
    message_id: &str,
    message_type: &str,
    case_id: Option<&str>,
    digest: &[u8],
    body: &[u8],
) -> Result<Submitted> {
    let t = now();
    let inserted = sqlx::query(
        "INSERT INTO outbox (message_id, message_type, case_id, digest, body, submitted_at, state, next_attempt_at)
         VALUES (?, ?, ?, ?, ?, ?, 'queued', ?) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(message_id)
    .bind(message_type)
    .bind(case_id)
    .bind(digest)
    .bind(body)
    .bind(&t)
    .bind(&t)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Submitted::Queued);
    }
    let existing: Vec<u8> =
        sqlx::query_scalar("SELECT digest FROM outbox WHERE message_id = ?").bind(message_id).fetch_one(pool).await?;
    Ok(if existing == digest { Submitted::AlreadyQueued } else { Submitted::Conflict })
}

/// A queued row to publish.
#[derive(Debug, Clone, FromRow)]
pub struct Queued {
    pub seq: i64,
    pub message_id: String,
    pub message_type: String,
    pub case_id: Option<String>,
    pub body: Vec<u8>,
    pub attempts: i64,
    pub next_attempt_at: String,
}

/// The most bytes of messages the publisher reads at once; a batch stops before the message
/// that would pass it (its first message is always in): a queue of archive files is published
/// a few at a time, not 128 of up to 16 MiB held together.
pub const PUBLISH_MAX_BYTES: i64 = 8 << 20;

/// The oldest queued rows, in submission order: at most `limit`, and at most
/// [`PUBLISH_MAX_BYTES`] of bodies (always the first row).
///
/// # Errors
/// Database errors.
pub async fn queued(pool: &SqlitePool, limit: i64) -> Result<Vec<Queued>> {
    // The sizes come from the records' headers; only the chosen rows' bodies are read.
    Ok(sqlx::query_as(
        "WITH page AS (
           SELECT seq, length(body) AS size FROM outbox WHERE state = 'queued' ORDER BY seq LIMIT ?),
         chosen AS (
           SELECT seq, row_number() OVER w AS n, sum(size) OVER w AS total FROM page WINDOW w AS (ORDER BY seq))
         SELECT o.seq, o.message_id, o.message_type, o.case_id, o.body, o.attempts, o.next_attempt_at
         FROM chosen c JOIN outbox o ON o.seq = c.seq WHERE c.n = 1 OR c.total <= ? ORDER BY o.seq",
    )
    .bind(limit)
    .bind(PUBLISH_MAX_BYTES)
    .fetch_all(pool)
    .await?)
}

/// Marks rows confirmed by the broker.
///
/// # Errors
/// Database errors.
pub async fn confirm(pool: &SqlitePool, seqs: &[i64]) -> Result<()> {
    // One statement for the batch: each statement is a round trip to SQLite's worker thread.
    sqlx::query(
        "UPDATE outbox SET state = 'confirmed', confirmed_at = ?, attempts = attempts + 1, last_error = NULL
         WHERE seq IN (SELECT value FROM json_each(?))",
    )
    .bind(now())
    .bind(serde_json::to_string(seqs)?)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt; the row waits until `retry_at`.
///
/// # Errors
/// Database errors.
pub async fn attempt_failed(pool: &SqlitePool, seq: i64, error: &str, retry_at: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE seq = ?")
        .bind(error)
        .bind(retry_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .bind(seq)
        .execute(pool)
        .await?;
    Ok(())
}

/// A message received from the hub.
#[derive(Debug, Clone)]
pub struct Received<'a> {
    pub message_id: &'a str,
    pub message_type: &'a str,
    pub case_id: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub body: &'a [u8],
    pub parse_error: Option<&'a str>,
}

/// Adds an inbound message to the inbox, due for the provincial system now; `false` when its id
/// is there already. A message that answers a submission marks it answered (the trigger
/// `inbox_answers`).
///
/// # Errors
/// Database errors.
pub(crate) async fn insert_inbox(tx: &mut sqlx::SqliteConnection, m: &Received<'_>, t: &str) -> Result<bool> {
    Ok(!insert_all(tx, std::slice::from_ref(m), t).await?.is_empty())
}

/// Stores inbound messages from the hub in one statement (one commit), each once (a
/// redelivery changes nothing), each marking the submission it answers; returns the ids of
/// those that were new.
///
/// # Errors
/// Database errors.
pub async fn receive_all(pool: &SqlitePool, ms: &[Received<'_>]) -> Result<Vec<String>> {
    let mut conn = pool.acquire().await?;
    insert_all(&mut conn, ms, &now()).await
}

/// The inbox's one insert, for one message or many: due for the provincial system now; the
/// ids inserted (an id already there, or given twice, is inserted once).
async fn insert_all(conn: &mut sqlx::SqliteConnection, ms: &[Received<'_>], t: &str) -> Result<Vec<String>> {
    if ms.is_empty() {
        return Ok(vec![]);
    }
    let mut q = sqlx::QueryBuilder::new(
        "INSERT INTO inbox (message_id, message_type, case_id, correlation_id, body, parse_error, received_at, next_push_at) ",
    );
    q.push_values(ms, |mut row, m| {
        row.push_bind(m.message_id).push_bind(m.message_type).push_bind(m.case_id).push_bind(m.correlation_id);
        row.push_bind(m.body).push_bind(m.parse_error).push_bind(t).push_bind(t);
    });
    q.push(" ON CONFLICT (message_id) DO NOTHING RETURNING message_id");
    Ok(q.build_query_scalar().fetch_all(conn).await?)
}

/// A `replay.request` from the hub (its database was restored): in one transaction, the
/// request is kept (acknowledged: it is the pipe's, not the provincial system's), every
/// message submitted since `since` is queued to go out again under its own id (the hub keeps
/// one copy of each), and `reply(n)` — the answer, given how many — is queued. Returns how
/// many, or `None` when the request was had before.
///
/// # Errors
/// Database errors.
pub async fn receive_replay(
    pool: &SqlitePool,
    m: &Received<'_>,
    since: DateTime<Utc>,
    reply: impl FnOnce(u64) -> (String, String, Vec<u8>),
) -> Result<Option<u64>> {
    let t = now();
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO inbox (message_id, message_type, case_id, correlation_id, body, parse_error, received_at, acknowledged_at)
         VALUES (?, ?, NULL, ?, ?, NULL, ?, ?) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(m.message_id)
    .bind(m.message_type)
    .bind(m.correlation_id)
    .bind(m.body)
    .bind(&t)
    .bind(&t)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let n = sqlx::query(
        "UPDATE outbox SET state = 'queued', attempts = 0, next_attempt_at = ? WHERE state = 'confirmed' AND submitted_at >= ?",
    )
    .bind(&t)
    .bind(&since)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    queue_own(&mut tx, reply(n), &t).await?;
    tx.commit().await?;
    Ok(Some(n))
}

/// Keeps a message that did not come from the hub aside (bounded), once.
///
/// # Errors
/// Database errors.
pub async fn refuse(
    pool: &SqlitePool,
    message_id: &str,
    user_id: Option<&str>,
    reason: &str,
    body: &[u8],
    sha256: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refused (message_id, user_id, reason, size, sha256, head, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(message_id)
    .bind(user_id)
    .bind(reason)
    .bind(i64::try_from(body.len()).unwrap_or(i64::MAX))
    .bind(sha256)
    .bind(&body[..body.len().min(64 * 1024)])
    .bind(now())
    .execute(pool)
    .await?;
    Ok(())
}

/// An inbox entry as the pull API lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, FromRow, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxEntry {
    pub seq: i64,
    pub message_id: String,
    pub message_type: String,
    pub case_id: Option<String>,
    pub correlation_id: Option<String>,
    pub received_at: String,
    pub acknowledged_at: Option<String>,
    pub parse_error: Option<String>,
}

/// Inbox entries after `after` (a seq), oldest first.
///
/// # Errors
/// Database errors.
pub async fn inbox_list(pool: &SqlitePool, after: i64, limit: i64, pending_only: bool) -> Result<Vec<InboxEntry>> {
    Ok(sqlx::query_as(
        "SELECT seq, message_id, message_type, case_id, correlation_id, received_at, acknowledged_at, parse_error
         FROM inbox WHERE seq > ? AND (? = 0 OR acknowledged_at IS NULL) ORDER BY seq LIMIT ?",
    )
    .bind(after)
    .bind(i64::from(pending_only))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The most bytes of messages one listing with bodies holds; a page stops before the message
/// that would pass it (its first message is always in), and the next page takes up there.
pub const LISTING_MAX_BYTES: i64 = 32 << 20;

#[derive(FromRow)]
struct ListedRow {
    #[sqlx(flatten)]
    entry: InboxEntry,
    body: Vec<u8>,
}

/// Inbox entries after `after` (a seq), oldest first, each with its message, in one statement;
/// at most [`LISTING_MAX_BYTES`] of messages (always the first entry).
///
/// # Errors
/// Database errors.
pub async fn inbox_list_with_bodies(
    pool: &SqlitePool,
    after: i64,
    limit: i64,
    pending_only: bool,
) -> Result<Vec<(InboxEntry, Vec<u8>)>> {
    // The sizes come from the records' headers; only the chosen rows' bodies are read.
    let rows: Vec<ListedRow> = sqlx::query_as(
        "WITH page AS (
           SELECT seq, length(body) AS size FROM inbox
           WHERE seq > ? AND (? = 0 OR acknowledged_at IS NULL) ORDER BY seq LIMIT ?),
         chosen AS (
           SELECT seq, row_number() OVER w AS n, sum(size) OVER w AS total FROM page WINDOW w AS (ORDER BY seq))
         SELECT i.seq, i.message_id, i.message_type, i.case_id, i.correlation_id, i.received_at, i.acknowledged_at,
                i.parse_error, i.body
         FROM chosen c JOIN inbox i ON i.seq = c.seq WHERE c.n = 1 OR c.total <= ? ORDER BY i.seq",
    )
    .bind(after)
    .bind(i64::from(pending_only))
    .bind(limit)
    .bind(LISTING_MAX_BYTES)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.entry, r.body)).collect())
}

/// One inbox message with its body.
///
/// # Errors
/// Database errors.
pub async fn inbox_get(pool: &SqlitePool, message_id: &str) -> Result<Option<(InboxEntry, Vec<u8>)>> {
    let row: Option<ListedRow> = sqlx::query_as(
        "SELECT seq, message_id, message_type, case_id, correlation_id, received_at, acknowledged_at, parse_error, body
         FROM inbox WHERE message_id = ?",
    )
    .bind(message_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.entry, r.body)))
}

/// Marks an inbox message taken by the provincial system; returns false if there is none.
///
/// # Errors
/// Database errors.
pub async fn inbox_ack(pool: &SqlitePool, message_id: &str) -> Result<bool> {
    let n = sqlx::query("UPDATE inbox SET acknowledged_at = COALESCE(acknowledged_at, ?) WHERE message_id = ?")
        .bind(now())
        .bind(message_id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Marks many inbox messages taken, in one transaction; returns how many were found.
///
/// # Errors
/// Database errors.
pub async fn inbox_ack_many(pool: &SqlitePool, ids: &[String]) -> Result<u64> {
    // One statement for them all; an id given twice is found once.
    Ok(sqlx::query(
        "UPDATE inbox SET acknowledged_at = COALESCE(acknowledged_at, ?) WHERE message_id IN (SELECT value FROM json_each(?))",
    )
    .bind(now())
    .bind(serde_json::to_string(ids)?)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Unacknowledged messages due for a webhook push.
///
/// # Errors
/// Database errors.
pub async fn due_pushes(pool: &SqlitePool, limit: i64) -> Result<Vec<(String, String, Vec<u8>, i64)>> {
    Ok(sqlx::query_as(
        "SELECT message_id, message_type, body, push_attempts FROM inbox WHERE acknowledged_at IS NULL AND next_push_at <= ?
         ORDER BY seq LIMIT ?",
    )
    .bind(now())
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Records a failed push; the next one is at `retry_at`.
///
/// # Errors
/// Database errors.
pub async fn push_failed(pool: &SqlitePool, message_id: &str, error: &str, retry_at: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE inbox SET push_attempts = push_attempts + 1, last_push_error = ?, next_push_at = ? WHERE message_id = ?")
        .bind(error)
        .bind(retry_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .bind(message_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The state of a submitted message.
#[derive(Debug, Clone, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OutboxStatus {
    pub message_id: String,
    pub message_type: String,
    pub case_id: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub submitted_at: String,
    pub confirmed_at: Option<String>,
    pub answered_by: Option<String>,
}

/// # Errors
/// Database errors.
pub async fn outbox_status(pool: &SqlitePool, message_id: &str) -> Result<Option<OutboxStatus>> {
    Ok(sqlx::query_as(
        "SELECT message_id, message_type, case_id, state, attempts, last_error, submitted_at, confirmed_at, answered_by
         FROM outbox WHERE message_id = ?",
    )
    .bind(message_id)
    .fetch_optional(pool)
    .await?)
}

/// Seconds since the oldest submission still waiting for the broker was made (0: none).
///
/// # Errors
/// Database errors.
pub async fn oldest_unsent_seconds(pool: &SqlitePool) -> Result<f64> {
    let oldest: Option<String> =
        sqlx::query_scalar("SELECT min(submitted_at) FROM outbox WHERE state = 'queued'").fetch_one(pool).await?;
    Ok(oldest
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map_or(0.0, |t| (Utc::now() - t.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0))
}

/// Depths of both directions.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Depths {
    /// Submitted, not yet confirmed by the broker.
    pub outbox_queued: i64,
    /// Confirmed, no reply from the hub yet.
    pub outbox_awaiting_reply: i64,
    /// Received, not yet taken by the provincial system.
    pub inbox_pending: i64,
    pub inbox_total: i64,
    /// Found in the queue but not from the hub: kept aside, never handed over.
    pub refused: i64,
}

/// # Errors
/// Database errors.
pub async fn depths(pool: &SqlitePool) -> Result<Depths> {
    let (outbox_queued, outbox_awaiting_reply, inbox_pending, inbox_total, refused): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox WHERE state = 'queued'),
                    (SELECT count(*) FROM outbox WHERE state = 'confirmed' AND answered_by IS NULL),
                    (SELECT count(*) FROM inbox WHERE acknowledged_at IS NULL),
                    (SELECT count(*) FROM inbox),
                    (SELECT count(*) FROM refused)",
        )
        .fetch_one(pool)
        .await?;
    Ok(Depths { outbox_queued, outbox_awaiting_reply, inbox_pending, inbox_total, refused })
}

/// Deletes confirmed-and-answered submissions and acknowledged inbox messages older than
/// `days`; returns how many rows went.
///
/// # Errors
/// Database errors.
pub async fn prune(pool: &SqlitePool, days: u32) -> Result<u64> {
    let cutoff =
        (Utc::now() - chrono::Duration::days(i64::from(days))).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let a =
        sqlx::query("DELETE FROM outbox WHERE state = 'confirmed' AND answered_by IS NOT NULL AND confirmed_at < ?")
            .bind(&cutoff)
            .execute(pool)
            .await?
            .rows_affected();
    let b = sqlx::query("DELETE FROM inbox WHERE acknowledged_at IS NOT NULL AND acknowledged_at < ?")
        .bind(&cutoff)
        .execute(pool)
        .await?
        .rows_affected();
    let c = sqlx::query("DELETE FROM refused WHERE received_at < ?").bind(&cutoff).execute(pool).await?.rows_affected();
    Ok(a + b + c)
}

/// Queues a message the adapter itself sends (a replay request or its answer): (id, type, XML).
pub(crate) async fn queue_own(
    tx: &mut sqlx::SqliteConnection,
    (message_id, message_type, body): (String, String, Vec<u8>),
    t: &str,
) -> Result<()> {
    let digest: [u8; 32] = sha2::Sha256::digest(&body).into();
    sqlx::query(
        "INSERT INTO outbox (message_id, message_type, case_id, digest, body, submitted_at, state, next_attempt_at)
         VALUES (?, ?, NULL, ?, ?, ?, 'queued', ?)",
    )
    .bind(&message_id)
    .bind(&message_type)
    .bind(&digest[..])
    .bind(&body)
    .bind(t)
    .bind(t)
    .execute(tx)
    .await?;
    Ok(())
}

/// Records that the hub must be asked to send again what it sent since `since`.
///
/// # Errors
/// Database errors.
pub async fn mark_replay(pool: &SqlitePool, since: DateTime<Utc>) -> Result<()> {
    sqlx::query("INSERT INTO pending_replay (since, created_at) VALUES (?, ?)")
        .bind(since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .bind(now())
        .execute(pool)
        .await?;
    Ok(())
}

/// Queues the pending replay request, if there is one, and clears the marker, at once.
///
/// # Errors
/// Database errors.
pub async fn queue_pending_replay(
    pool: &SqlitePool,
    envelope: impl FnOnce(DateTime<Utc>) -> (String, String, Vec<u8>),
) -> Result<Option<DateTime<Utc>>> {
    let mut tx = pool.begin().await?;
    let since: Option<String> = sqlx::query_scalar("SELECT min(since) FROM pending_replay").fetch_one(&mut *tx).await?;
    let Some(since) = since else { return Ok(None) };
    let since = DateTime::parse_from_rfc3339(&since).context("pending_replay.since")?.with_timezone(&Utc);
    queue_own(&mut tx, envelope(since), &now()).await?;
    sqlx::query("DELETE FROM pending_replay").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(since))
}

#[cfg(test)]
mod tests;
