//! The inbox: which messages the hub has taken responsibility for.

use sqlx::PgConnection;
use uuid::Uuid;

/// What claiming a message id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time: process it.
    New,
    /// Seen before with the same bytes: a redelivery; skip it.
    Redelivery,
    /// Seen before with other bytes: an id reused for different content.
    Reused,
}

/// Outcome recorded for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    Refused,
    Poison,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Processed => "processed",
            Outcome::Refused => "refused",
            Outcome::Poison => "poison",
        }
    }
}

/// A message to claim: who sent it, under which id, and what it is.
#[derive(Debug, Clone, Copy)]
pub struct NewClaim<'a> {
    pub sender: &'a str,
    pub message_id: Uuid,
    pub message_type: &'a str,
    pub case_id: Option<Uuid>,
    /// SHA-256 of the bytes received: tells a redelivery from a reused id.
    pub digest: &'a [u8],
    pub outcome: Outcome,
}

/// Records `(sender, message_id)`. A concurrent claim of the same id waits for the first
/// transaction and then sees its row, so only one of them gets [`Claim::New`].
///
/// # Errors
/// Database errors.
pub async fn claim(conn: &mut PgConnection, c: &NewClaim<'_>) -> sqlx::Result<Claim> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (sender, message_id, message_type, case_id, digest, outcome) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (sender, message_id) DO NOTHING",
    )
    .bind(c.sender)
    .bind(c.message_id)
    .bind(c.message_type)
    .bind(c.case_id)
    .bind(c.digest)
    .bind(c.outcome.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    taken_before(conn, c.sender, c.message_id, c.digest).await
}

/// What a claim that inserted nothing found: the same message again, or another one under its
/// id. Read in a statement of its own, which sees a concurrent claim's row once that
/// transaction committed.
async fn taken_before(conn: &mut PgConnection, sender: &str, message_id: Uuid, digest: &[u8]) -> sqlx::Result<Claim> {
    let existing: Vec<u8> = sqlx::query_scalar("SELECT digest FROM inbox WHERE sender = $1 AND message_id = $2")
        .bind(sender)
        .bind(message_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(if existing == digest { Claim::Redelivery } else { Claim::Reused })
}

/// [`claim`], if `sender` holds a registered, unrevoked certificate valid now (as
/// [`super::certs::is_admitted`]), in one statement; `None` (nothing claimed) if it does not.
///
/// # Errors
/// Database errors.
pub async fn claim_if_admitted(conn: &mut PgConnection, c: &NewClaim<'_>) -> sqlx::Result<Option<Claim>> {
    let (admitted, inserted): (bool, bool) = sqlx::query_as(
        "WITH admitted AS (
             SELECT EXISTS (SELECT 1 FROM certificate WHERE principal = $1 AND revoked_at IS NULL
                              AND not_before <= now() AND not_after > now()) AS ok),
         claimed AS (
             INSERT INTO inbox (sender, message_id, message_type, case_id, digest, outcome)
             SELECT $1, $2, $3, $4, $5, $6 WHERE (SELECT ok FROM admitted)
             ON CONFLICT (sender, message_id) DO NOTHING RETURNING 1)
         SELECT (SELECT ok FROM admitted), EXISTS (SELECT 1 FROM claimed)",
    )
    .bind(c.sender)
    .bind(c.message_id)
    .bind(c.message_type)
    .bind(c.case_id)
    .bind(c.digest)
    .bind(c.outcome.as_str())
    .fetch_one(&mut *conn)
    .await?;
    if !admitted {
        return Ok(None);
    }
    if inserted {
        return Ok(Some(Claim::New));
    }
    Ok(Some(taken_before(conn, c.sender, c.message_id, c.digest).await?))
}

/// Gives up the claim of a dead-lettered message, so that it can be processed once more (an
/// operator's replay, in the same transaction as its processing). Only a poison claim is given
/// up: a message processed once stays processed.
///
/// # Errors
/// Database errors.
pub async fn release_poison(conn: &mut PgConnection, sender: &str, message_id: Uuid) -> sqlx::Result<bool> {
    let released = sqlx::query("DELETE FROM inbox WHERE sender = $1 AND message_id = $2 AND outcome = 'poison'")
        .bind(sender)
        .bind(message_id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(released == 1)
}

/// Changes the recorded outcome (a claim starts as processed; a refusal is known later).
///
/// # Errors
/// Database errors.
pub async fn set_outcome(
    conn: &mut PgConnection,
    sender: &str,
    message_id: Uuid,
    outcome: Outcome,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE inbox SET outcome = $3 WHERE sender = $1 AND message_id = $2")
        .bind(sender)
        .bind(message_id)
        .bind(outcome.as_str())
        .execute(conn)
        .await?;
    Ok(())
}
