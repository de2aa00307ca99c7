//! Timers: rows with a due time, each fired once by whichever hub claims it.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// A timer due now.
#[derive(Debug, Clone, FromRow)]
pub struct Due {
    pub timer_id: i64,
    pub kind: String,
    pub case_id: Option<Uuid>,
    pub due_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub attempts: i32,
}

/// Arms a timer. With a case, it replaces the case's timer of the same kind.
///
/// # Errors
/// Database errors.
pub async fn schedule(
    conn: &mut PgConnection,
    kind: &str,
    case_id: Option<Uuid>,
    due_at: DateTime<Utc>,
    payload: &serde_json::Value,
) -> sqlx::Result<()> {
    match case_id {
        Some(_) => {
            sqlx::query(
                "INSERT INTO timer (kind, case_id, due_at, payload) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kind, case_id) WHERE case_id IS NOT NULL
                 DO UPDATE SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload, attempts = 0, last_error = NULL",
            )
            .bind(kind)
            .bind(case_id)
            .bind(due_at)
            .bind(payload)
            .execute(conn)
            .await?
        }
        None => {
            sqlx::query("INSERT INTO timer (kind, due_at, payload) VALUES ($1, $2, $3)")
                .bind(kind)
                .bind(due_at)
                .bind(payload)
                .execute(conn)
                .await?
        }
    };
    Ok(())
}

/// Disarms a case's timer of `kind`, if any.
///
/// # Errors
/// Database errors.
pub async fn cancel(conn: &mut PgConnection, kind: &str, case_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM timer WHERE kind = $1 AND case_id = $2").bind(kind).bind(case_id).execute(conn).await?;
    Ok(())
}

/// Ids of up to `limit` timers due at `now` (not locked; [`claim`] each).
///
/// # Errors
/// Database errors.
pub async fn due_ids(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT timer_id FROM timer WHERE due_at <= $1 ORDER BY due_at LIMIT $2")
        .bind(now)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Locks one timer if it is still due and nobody else holds it.
///
/// # Errors
/// Database errors.
pub async fn claim(conn: &mut PgConnection, timer_id: i64, now: DateTime<Utc>) -> sqlx::Result<Option<Due>> {
    sqlx::query_as(
        "SELECT timer_id, kind, case_id, due_at, payload, attempts FROM timer
         WHERE timer_id = $1 AND due_at <= $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(timer_id)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// Removes a fired timer.
///
/// # Errors
/// Database errors.
pub async fn delete(conn: &mut PgConnection, timer_id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM timer WHERE timer_id = $1").bind(timer_id).execute(conn).await?;
    Ok(())
}

/// Postpones a timer whose handler failed.
///
/// # Errors
/// Database errors.
pub async fn postpone(conn: &mut PgConnection, timer_id: i64, until: DateTime<Utc>, error: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE timer SET due_at = $2, attempts = attempts + 1, last_error = $3 WHERE timer_id = $1")
        .bind(timer_id)
        .bind(until)
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}
