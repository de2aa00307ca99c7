//! The lookup audit (查询审计) and the counts the lookup limits are decided on.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// The key of the audit's digests, made by the migration that created the audit.
///
/// # Errors
/// Database errors.
pub async fn audit_key(conn: &mut PgConnection) -> sqlx::Result<Vec<u8>> {
    sqlx::query_scalar("SELECT value FROM hub_secret WHERE name = 'lookup_audit'").fetch_one(conn).await
}

/// What the limits are decided on: the province's answered lookups in the last minute, and its
/// lookups (answered or not) of this student in the last hour — counted after the province's
/// lookups are serialized (a transaction-scoped lock), so that concurrent workers and hub
/// processes cannot both take the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    pub answered_last_minute: i64,
    pub of_student_last_hour: i64,
}

/// # Errors
/// Database errors.
pub async fn recent(conn: &mut PgConnection, province: &str, key_digest: &[u8]) -> sqlx::Result<Recent> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('lookup:' || $1, 0))")
        .bind(province)
        .execute(&mut *conn)
        .await?;
    // statement_timestamp, not now(): in a group committed together, now() is the group's start;
    // and not clock_timestamp(), which is volatile and cannot bound an index scan.
    // Two counts, each on its own index: a busy province's hour is tens of thousands of rows,
    // its minute at most the limit, one student's hour a handful.
    let (answered_last_minute, of_student_last_hour): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM lookup_audit
                 WHERE province = $1 AND at > statement_timestamp() - interval '1 minute'
                   AND outcome IN ('found', 'not_found')),
                (SELECT count(*) FROM lookup_audit
                 WHERE key_digest = $2 AND at > statement_timestamp() - interval '1 hour' AND province = $1)",
    )
    .bind(province)
    .bind(key_digest)
    .fetch_one(conn)
    .await?;
    Ok(Recent { answered_last_minute, of_student_last_hour })
}

/// One audited lookup.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub province: &'a str,
    pub requested_by: Option<&'a str>,
    pub message_id: Uuid,
    pub key_kind: &'static str,
    pub key_digest: &'a [u8],
    pub outcome: &'static str,
    pub found_province: Option<&'a str>,
    pub found_digest: Option<&'a [u8]>,
}

/// # Errors
/// Database errors.
pub async fn record(conn: &mut PgConnection, e: &NewEntry<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO lookup_audit (at, province, requested_by, message_id, key_kind, key_digest, outcome,
                                   found_province, found_digest)
         VALUES (statement_timestamp(), $1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.province)
    .bind(e.requested_by)
    .bind(e.message_id)
    .bind(e.key_kind)
    .bind(e.key_digest)
    .bind(e.outcome)
    .bind(e.found_province)
    .bind(e.found_digest)
    .execute(conn)
    .await?;
    Ok(())
}

/// An audit entry as the national office reads it: the digests stay in the database.
#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub audit_id: i64,
    pub at: DateTime<Utc>,
    pub province: String,
    pub requested_by: Option<String>,
    pub message_id: Uuid,
    /// `student_id` or `document`.
    pub key_kind: String,
    /// `found`, `not_found`, `limited_province` or `limited_student`.
    pub outcome: String,
    /// For a found student: the province that holds him.
    pub found_province: Option<String>,
}

/// Which entries: of a province, about a student (any of the digests his identifiers have:
/// the lookups by his student ID or document number, and those that found him), since a time.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub province: Option<String>,
    pub digests: Option<Vec<Vec<u8>>>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// Newest first.
///
/// # Errors
/// Database errors.
pub async fn search(conn: &mut PgConnection, f: &Filter) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as(
        "SELECT audit_id, at, province, requested_by, message_id, key_kind, outcome, found_province
         FROM lookup_audit
         WHERE ($1::text IS NULL OR province = $1)
           AND ($2::bytea[] IS NULL OR key_digest = ANY($2) OR found_digest = ANY($2))
           AND ($3::timestamptz IS NULL OR at >= $3)
         ORDER BY at DESC, audit_id DESC LIMIT $4",
    )
    .bind(f.province.as_deref())
    .bind(f.digests.as_ref())
    .bind(f.since)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}
