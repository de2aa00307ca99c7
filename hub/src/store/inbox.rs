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
    /// The fingerprint of the certificate that signed it: what admits it
    /// ([`claim_if_admitted`]).
    pub signer: Option<&'a str>,
    /// The bytes and the signature that made it the sender's, for the message log: a message
    /// claimed by [`claim_if_admitted`] or [`claim_all_if_admitted`] is logged in the same
    /// statement (`None`: not logged).
    pub logged: Option<(&'a [u8], &'a [u8])>,
    pub message_id: Uuid,
    pub message_type: &'a str,
    pub case_id: Option<Uuid>,
    /// The problem group it is about (for the message log).
    pub group_id: Option<Uuid>,
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
             SELECT EXISTS (SELECT 1 FROM certificate WHERE principal = $1 AND fingerprint = $7 AND revoked_at IS NULL
                              AND not_before <= now() AND not_after > now()) AS ok),
         claimed AS (
             INSERT INTO inbox (sender, message_id, message_type, case_id, digest, outcome)
             SELECT $1, $2, $3, $4, $5, $6 WHERE (SELECT ok FROM admitted)
             ON CONFLICT (sender, message_id) DO NOTHING RETURNING 1),
         logged AS (
             INSERT INTO message_log (direction, party, message_id, message_type, case_id, group_id, body, body_sha256,
                                      signature, signer)
             SELECT 'in', $1, $2, $3, $4, $10, $8, $5, $9, $7 WHERE $8::bytea IS NOT NULL AND EXISTS (SELECT 1 FROM claimed))
         SELECT (SELECT ok FROM admitted), EXISTS (SELECT 1 FROM claimed)",
    )
    .bind(c.sender)
    .bind(c.message_id)
    .bind(c.message_type)
    .bind(c.case_id)
    .bind(c.digest)
    .bind(c.outcome.as_str())
    .bind(c.signer)
    .bind(c.logged.map(|l| l.0))
    .bind(c.logged.map(|l| l.1))
    .bind(c.group_id)
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

/// [`claim_if_admitted`] for the messages of a group, in one statement (and one more, only when
/// some were taken before): for each, in order, `None` when its sender holds no admitted
/// certificate, else what its claim found. The `(sender, message_id)` pairs must be distinct.
///
/// # Errors
/// Database errors.
pub async fn claim_all_if_admitted(
    conn: &mut PgConnection,
    claims: &[NewClaim<'_>],
) -> sqlx::Result<Vec<Option<Claim>>> {
    if claims.is_empty() {
        return Ok(vec![]);
    }
    let rows: Vec<(bool, bool)> = sqlx::query_as(
        "WITH c AS (
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::uuid[], $5::bytea[], $6::text[], $7::text[],
                                  $8::bytea[], $9::bytea[], $10::uuid[])
                 WITH ORDINALITY AS c(sender, message_id, message_type, case_id, digest, outcome, signer, body, signature,
                                      group_id, n)),
         admitted AS (
             SELECT DISTINCT principal, fingerprint FROM certificate
             WHERE fingerprint = ANY($7) AND revoked_at IS NULL AND not_before <= now() AND not_after > now()),
         claimed AS (
             INSERT INTO inbox (sender, message_id, message_type, case_id, digest, outcome)
             SELECT sender, message_id, message_type, case_id, digest, outcome FROM c
             WHERE (sender, signer) IN (SELECT principal, fingerprint FROM admitted) ORDER BY n
             ON CONFLICT (sender, message_id) DO NOTHING RETURNING sender, message_id),
         logged AS (
             INSERT INTO message_log (direction, party, message_id, message_type, case_id, group_id, body, body_sha256,
                                      signature, signer)
             SELECT 'in', c.sender, c.message_id, c.message_type, c.case_id, c.group_id, c.body, c.digest, c.signature,
                    c.signer
             FROM c JOIN claimed USING (sender, message_id) WHERE c.body IS NOT NULL ORDER BY c.n)
         SELECT (c.sender, c.signer) IN (SELECT principal, fingerprint FROM admitted),
                (c.sender, c.message_id) IN (SELECT sender, message_id FROM claimed)
         FROM c ORDER BY c.n",
    )
    .bind(claims.iter().map(|c| c.sender).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.message_id).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.message_type).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.case_id).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.digest).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.outcome.as_str()).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.signer).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.logged.map(|l| l.0)).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.logged.map(|l| l.1)).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.group_id).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let mut found: Vec<Option<Claim>> = rows
        .iter()
        .map(|(admitted, inserted)| match (admitted, inserted) {
            (false, _) => None,
            (true, true) => Some(Claim::New),
            // Told apart below.
            (true, false) => Some(Claim::Redelivery),
        })
        .collect();
    let before: Vec<usize> = (0..claims.len()).filter(|&i| rows[i] == (true, false)).collect();
    if before.is_empty() {
        return Ok(found);
    }
    // Read in a statement of its own, which sees a concurrent claim's rows once that
    // transaction committed.
    let digests: Vec<(String, Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT sender, message_id, digest FROM inbox
         WHERE (sender, message_id) IN (SELECT * FROM UNNEST($1::text[], $2::uuid[]))",
    )
    .bind(before.iter().map(|&i| claims[i].sender).collect::<Vec<_>>())
    .bind(before.iter().map(|&i| claims[i].message_id).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    for i in before {
        let c = &claims[i];
        let (_, _, digest) =
            digests.iter().find(|(s, m, _)| s == c.sender && *m == c.message_id).ok_or(sqlx::Error::RowNotFound)?;
        found[i] = Some(if digest.as_slice() == c.digest { Claim::Redelivery } else { Claim::Reused });
    }
    Ok(found)
}

/// Records the outcome `refused` for these messages of `(sender, message_id)`, in one statement.
///
/// # Errors
/// Database errors.
pub async fn set_refused(conn: &mut PgConnection, refused: &[(&str, Uuid)]) -> sqlx::Result<()> {
    if refused.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE inbox SET outcome = 'refused'
         FROM UNNEST($1::text[], $2::uuid[]) AS r(sender, message_id)
         WHERE inbox.sender = r.sender AND inbox.message_id = r.message_id",
    )
    .bind(refused.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(refused.iter().map(|r| r.1).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
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
