//! Timers: rows with a due time, each fired once by whichever hub claims it. A timer belongs to
//! an owner (a business and one of its ids) and fills one of its slots; its kind is the owner's
//! business to read back as a typed value.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// Whose timer it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// `case`, `problem-group`, …
    pub business: &'a str,
    pub id: Uuid,
}

/// A timer due now.
#[derive(Debug, Clone, FromRow)]
pub struct Due {
    pub timer_id: i64,
    pub owner_business: String,
    pub owner_id: Uuid,
    pub kind: String,
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Arms a timer: it replaces the owner's timer in the same slot.
///
/// # Errors
/// Database errors.
pub async fn schedule(
    conn: &mut PgConnection,
    owner: Owner<'_>,
    slot: &str,
    kind: &str,
    due_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO timer (owner_business, owner_id, slot, kind, due_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (owner_business, owner_id, slot)
         DO UPDATE SET kind = EXCLUDED.kind, due_at = EXCLUDED.due_at, attempts = 0, last_error = NULL",
    )
    .bind(owner.business)
    .bind(owner.id)
    .bind(slot)
    .bind(kind)
    .bind(due_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets an owner's timers in one statement, as a run of disarming and arming would leave
/// them: with `disarm`, every timer of the owner in a slot not in `arms` is removed; each of
/// `arms` (slot, kind, due time; one per slot) is armed, replacing the owner's timer in that
/// slot, from zero attempts.
///
/// # Errors
/// Database errors (a slot given twice among them).
pub async fn set(
    conn: &mut PgConnection,
    owner: Owner<'_>,
    disarm: bool,
    arms: &[(&str, &str, DateTime<Utc>)],
) -> sqlx::Result<()> {
    let slots: Vec<&str> = arms.iter().map(|a| a.0).collect();
    let kinds: Vec<&str> = arms.iter().map(|a| a.1).collect();
    let due: Vec<DateTime<Utc>> = arms.iter().map(|a| a.2).collect();
    // The removal and the arming touch different rows (the slots armed are kept, and updated
    // in place), as the rows one statement modifies must be.
    sqlx::query(
        "WITH gone AS (
             DELETE FROM timer WHERE $3 AND owner_business = $1 AND owner_id = $2 AND slot <> ALL($4::text[])
         )
         INSERT INTO timer (owner_business, owner_id, slot, kind, due_at)
         SELECT $1, $2, s, k, d FROM unnest($4::text[], $5::text[], $6::timestamptz[]) AS a(s, k, d)
         ON CONFLICT (owner_business, owner_id, slot)
         DO UPDATE SET kind = EXCLUDED.kind, due_at = EXCLUDED.due_at, attempts = 0, last_error = NULL",
    )
    .bind(owner.business)
    .bind(owner.id)
    .bind(disarm)
    .bind(&slots)
    .bind(&kinds)
    .bind(&due)
    .execute(conn)
    .await?;
    Ok(())
}

/// Disarms every timer of an owner.
///
/// # Errors
/// Database errors.
pub async fn cancel_all(conn: &mut PgConnection, owner: Owner<'_>) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM timer WHERE owner_business = $1 AND owner_id = $2")
        .bind(owner.business)
        .bind(owner.id)
        .execute(conn)
        .await?;
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
        "SELECT timer_id, owner_business, owner_id, kind, due_at, attempts FROM timer
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
