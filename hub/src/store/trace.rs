//! The message trace: every message in and out, slim, by case and by id.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One traced message.
#[derive(Debug, Clone)]
pub struct NewTrace<'a> {
    pub message_id: Uuid,
    pub direction: Direction,
    /// The sender (in) or the recipient (out), e.g. `prov-37`.
    pub party: &'a str,
    pub message_type: &'a str,
    pub case_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    /// `processed`, `refused`, `dead-lettered` (in) or `queued` (out).
    pub outcome: &'static str,
    pub code: Option<&'a str>,
}

/// A message as the trace shows it; `sentAt` when an outgoing one was confirmed by the broker
/// (while the outbox still holds its row).
#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Traced {
    pub message_id: Uuid,
    pub direction: String,
    pub party: String,
    pub message_type: String,
    pub case_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    pub outcome: String,
    pub code: Option<String>,
    pub at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Why it was dead-lettered (the hub's reason), while the dead letter is kept.
    pub reason: Option<String>,
}

/// # Errors
/// Database errors.
pub async fn record(conn: &mut PgConnection, t: &NewTrace<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO message_trace (message_id, direction, party, message_type, case_id, correlation_id, outcome, code)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(t.message_id)
    .bind(t.direction.as_str())
    .bind(t.party)
    .bind(t.message_type)
    .bind(t.case_id)
    .bind(t.correlation_id)
    .bind(t.outcome)
    .bind(t.code)
    .execute(conn)
    .await?;
    Ok(())
}

/// `SELECT` of [`Traced`] columns, then `rest` (a `WHERE` on `t`).
macro_rules! select_traced {
    ($rest:literal) => {
        concat!(
            "SELECT t.message_id, t.direction, t.party, t.message_type, t.case_id, t.correlation_id, t.outcome, t.code, ",
            "t.at, o.sent_at, d.reason ",
            "FROM message_trace t ",
            "LEFT JOIN outbox o ON t.direction = 'out' AND o.message_id = t.message_id ",
            "LEFT JOIN dead_letter d ON t.direction = 'in' AND t.outcome = 'dead-lettered' ",
            "AND d.sender = t.party AND d.message_id = t.message_id ",
            $rest
        )
    };
}

/// Every message of a case, in the order the hub took or wrote them.
///
/// # Errors
/// Database errors.
pub async fn of_case(conn: &mut PgConnection, case_id: Uuid, limit: i64) -> sqlx::Result<Vec<Traced>> {
    sqlx::query_as(select_traced!("WHERE t.case_id = $1 ORDER BY t.trace_id LIMIT $2"))
        .bind(case_id)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// A message by its id (in either direction; a reused id may show several).
///
/// # Errors
/// Database errors.
pub async fn by_id(conn: &mut PgConnection, message_id: Uuid) -> sqlx::Result<Vec<Traced>> {
    sqlx::query_as(select_traced!("WHERE t.message_id = $1 ORDER BY t.trace_id")).bind(message_id).fetch_all(conn).await
}
