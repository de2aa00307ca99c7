//! Dead letters (死信): kept once, bounded, rate-limited per sender, pruned by age.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// Where a dead letter comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Refused by the hub (unreadable, forged sender, oversize, revoked, failed for good).
    Hub,
    /// Given up by the broker (delivered more often than the delivery limit).
    Broker,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Hub => "hub",
            Source::Broker => "broker",
        }
    }
}

/// A dead letter to record; `body` is the whole body, of which at most `keep` bytes are kept.
#[derive(Debug)]
pub struct NewDeadLetter<'a> {
    pub sender: &'a str,
    pub message_id: Uuid,
    pub message_type: Option<&'a str>,
    pub case_id: Option<Uuid>,
    pub code: &'a str,
    pub reason: &'a str,
    pub body: &'a [u8],
    pub sha256: &'a [u8; 32],
    pub keep: usize,
    pub source: Source,
    /// The signature headers it arrived with (`x-signature`, `x-signer`), as received.
    pub signature: Option<&'a str>,
    pub signer: Option<&'a str>,
}

/// Records a dead letter; the same message again only counts another sighting.
///
/// # Errors
/// Database errors.
pub async fn record(conn: &mut PgConnection, d: &NewDeadLetter<'_>) -> sqlx::Result<()> {
    let kept = &d.body[..d.body.len().min(d.keep)];
    sqlx::query(
        "INSERT INTO dead_letter (sender, message_id, message_type, case_id, code, reason, size, sha256, body, truncated, source,
                                  signature, signer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (sender, message_id) DO UPDATE
         SET seen = dead_letter.seen + 1, last_seen = now(), state = 'open', code = EXCLUDED.code, reason = EXCLUDED.reason,
             settled_at = NULL, settled_by = NULL, audit_id = NULL, signature = EXCLUDED.signature, signer = EXCLUDED.signer",
    )
    .bind(d.sender)
    .bind(d.message_id)
    .bind(d.message_type)
    .bind(d.case_id)
    .bind(d.code)
    .bind(d.reason.chars().take(2000).collect::<String>())
    .bind(i64::try_from(d.body.len()).unwrap_or(i64::MAX))
    .bind(d.sha256.as_slice())
    .bind(kept)
    .bind(kept.len() < d.body.len())
    .bind(d.source.as_str())
    // Bounded like everything a sender controls; a longer header is no signature anyway.
    .bind(d.signature.map(|s| s.chars().take(2048).collect::<String>()))
    .bind(d.signer.map(|s| s.chars().take(128).collect::<String>()))
    .execute(conn)
    .await?;
    Ok(())
}

/// How many dead letters `sender` caused in the last minute. Concurrent dead letters of one
/// sender are serialized here (a lock until the transaction ends), so the rate holds exactly.
///
/// # Errors
/// Database errors.
pub async fn recent(conn: &mut PgConnection, sender: &str) -> sqlx::Result<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('dead_letter:' || $1))")
        .bind(sender)
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar(
        "SELECT count(*) FROM dead_letter WHERE sender = $1 AND first_seen > now() - interval '1 minute'",
    )
    .bind(sender)
    .fetch_one(conn)
    .await
}

/// Counts a dead letter over the rate instead of keeping it; returns how many this sender has
/// had suppressed in the current minute (1: the first, worth a log line).
///
/// # Errors
/// Database errors.
pub async fn suppress(conn: &mut PgConnection, sender: &str, code: &str, bytes: usize) -> sqlx::Result<i32> {
    sqlx::query_scalar(
        "INSERT INTO dead_letter_suppressed (sender, minute, code, count, bytes) VALUES ($1, date_trunc('minute', now()), $2, 1, $3)
         ON CONFLICT (sender, minute, code) DO UPDATE
         SET count = dead_letter_suppressed.count + 1, bytes = dead_letter_suppressed.bytes + EXCLUDED.bytes
         RETURNING count",
    )
    .bind(sender)
    .bind(code)
    .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
    .fetch_one(conn)
    .await
}

/// A dead letter as operators list it (without its body).
#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub dead_letter_id: i64,
    pub sender: String,
    pub message_id: Uuid,
    pub message_type: Option<String>,
    pub case_id: Option<Uuid>,
    pub code: String,
    pub reason: String,
    pub size: i64,
    pub truncated: bool,
    pub source: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub seen: i32,
    /// `open`, `replayed` or `discarded`.
    pub state: String,
    pub settled_at: Option<DateTime<Utc>>,
    pub settled_by: Option<String>,
}

const LISTED: &str = "dead_letter_id, sender, message_id, message_type, case_id, code, reason, size, truncated, source,
     first_seen, last_seen, seen, state, settled_at, settled_by";

/// The newest dead letters first; only those in `state` when given.
///
/// # Errors
/// Database errors.
pub async fn list(conn: &mut PgConnection, state: Option<&str>, page: super::cases::Page) -> sqlx::Result<Vec<Listed>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LISTED} FROM dead_letter WHERE ($1::text IS NULL OR state = $1)
         ORDER BY dead_letter_id DESC LIMIT $2 OFFSET $3"
    )))
    .bind(state)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await
}

/// A dead letter with the bytes kept of it.
#[derive(Debug, Clone, FromRow)]
pub struct Kept {
    #[sqlx(flatten)]
    pub listed: Listed,
    pub body: Vec<u8>,
    /// The signature headers it arrived with.
    pub signature: Option<String>,
    pub signer: Option<String>,
}

/// One dead letter, with its body.
///
/// # Errors
/// Database errors.
pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Kept>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LISTED}, body, signature, signer FROM dead_letter WHERE dead_letter_id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// One dead letter, with its body, locked until the transaction ends: two operators settling
/// the same dead letter at once are served one after the other, and the second sees the first's
/// outcome.
///
/// # Errors
/// Database errors.
pub async fn lock(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Kept>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LISTED}, body, signature, signer FROM dead_letter WHERE dead_letter_id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// What an operator did with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Replayed,
    Discarded,
}

impl Settlement {
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Replayed => "replayed",
            Settlement::Discarded => "discarded",
        }
    }
}

/// Records the settlement of an open dead letter (the caller holds its [`lock`]).
///
/// # Errors
/// Database errors.
pub async fn settle(conn: &mut PgConnection, id: i64, how: Settlement, by: &str, audit_id: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE dead_letter SET state = $2, settled_at = now(), settled_by = $3, audit_id = $4
         WHERE dead_letter_id = $1 AND state = 'open'",
    )
    .bind(id)
    .bind(how.as_str())
    .bind(by)
    .bind(audit_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Dead letters still open (neither replayed nor discarded).
///
/// # Errors
/// Database errors.
pub async fn count_open(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM dead_letter WHERE state = 'open'").fetch_one(conn).await
}

/// Dead letters kept, and poison counted over the rate, for metrics.
///
/// # Errors
/// Database errors.
pub async fn counts(conn: &mut PgConnection) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM dead_letter), (SELECT COALESCE(sum(count), 0)::bigint FROM dead_letter_suppressed)",
    )
    .fetch_one(conn)
    .await
}
