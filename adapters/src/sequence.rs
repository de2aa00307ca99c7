//! The organization-code sequence (机构代码变动): `orgcode.change` records reach the provincial
//! system in the province's sequence, each once; a gap is asked for again, never skipped.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::store::{Received, insert_inbox, now, queue_own};

/// What became of an `orgcode.change`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequenced {
    /// The next in the sequence: stored for the provincial system.
    Next,
    /// Passed on before (a redelivery, or a resend of what arrived already).
    Again,
    /// After a gap: not passed on; the records from `after + 1` were asked for again, unless
    /// they were asked for within the last minute (`asked` false).
    Gap { after: u64, asked: bool },
}

/// How long a resend asked for is awaited before it is asked for again.
const RESEND_WAIT: chrono::Duration = chrono::Duration::seconds(60);

/// Stores an `orgcode.change` only in its sequence: the next one is stored (like
/// [`crate::store::receive_all`]) and becomes the last; one seen before changes nothing; one after a gap is not
/// stored, and `resend(last)` — the `orgcode.resend` asking for what follows the last — is
/// queued, in the same transaction.
///
/// # Errors
/// Database errors.
pub async fn receive_sequenced(
    pool: &SqlitePool,
    m: &Received<'_>,
    sequence: u64,
    resend: impl FnOnce(u64) -> (String, String, Vec<u8>),
) -> Result<Sequenced> {
    let t = now();
    let mut tx = pool.begin().await?;
    let cursor: Option<(i64, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT last, asked_after, asked_at FROM orgcode_cursor WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
    let (last, asked_after, asked_at) = cursor.unwrap_or((0, None, None));
    let last = u64::try_from(last).unwrap_or(0);
    if sequence <= last {
        return Ok(Sequenced::Again);
    }
    if sequence > last + 1 {
        let recent = asked_at
            .and_then(|a| DateTime::parse_from_rfc3339(&a).ok())
            .is_some_and(|a| Utc::now() - a.with_timezone(&Utc) < RESEND_WAIT);
        let asked = !(recent && asked_after == i64::try_from(last).ok());
        if asked {
            queue_own(&mut tx, resend(last), &t).await?;
            sqlx::query(
                "INSERT INTO orgcode_cursor (id, last, asked_after, asked_at) VALUES (1, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET asked_after = excluded.asked_after, asked_at = excluded.asked_at",
            )
            .bind(i64::try_from(last)?)
            .bind(i64::try_from(last)?)
            .bind(&t)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        return Ok(Sequenced::Gap { after: last, asked });
    }
    insert_inbox(&mut tx, m, &t).await?;
    sqlx::query(
        "INSERT INTO orgcode_cursor (id, last) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET last = excluded.last",
    )
    .bind(i64::try_from(sequence)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Sequenced::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received<'a>(id: &'a str, body: &'a [u8]) -> Received<'a> {
        Received {
            message_id: id,
            message_type: "orgcode.change",
            case_id: None,
            correlation_id: None,
            body,
            parse_error: None,
        }
    }

    async fn count(pool: &SqlitePool, table_where: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table_where}")))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn records_pass_in_order_once_and_a_gap_is_asked_for_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("store.db")).await.unwrap();
        let resend = |after: u64| (format!("resend-{after}"), "orgcode.resend".to_owned(), b"<x/>".to_vec());
        let ask = resend;
        assert_eq!(receive_sequenced(&pool, &received("a", b"1"), 1, ask).await.unwrap(), Sequenced::Next);
        assert_eq!(receive_sequenced(&pool, &received("a2", b"1"), 1, ask).await.unwrap(), Sequenced::Again);
        // 3 arrives before 2: not passed on; what follows 1 is asked for, once.
        let gap = receive_sequenced(&pool, &received("c", b"3"), 3, ask).await.unwrap();
        assert_eq!(gap, Sequenced::Gap { after: 1, asked: true });
        let again = receive_sequenced(&pool, &received("d", b"4"), 4, ask).await.unwrap();
        assert_eq!(again, Sequenced::Gap { after: 1, asked: false }, "asked already, within the minute");
        assert_eq!(count(&pool, "outbox WHERE message_type = 'orgcode.resend'").await, 1);
        // The resend brings 2, 3, 4 in order.
        for (n, id) in [(2, "b'"), (3, "c'"), (4, "d'")] {
            assert_eq!(receive_sequenced(&pool, &received(id, b"x"), n, ask).await.unwrap(), Sequenced::Next);
        }
        let passed: Vec<String> =
            sqlx::query_scalar("SELECT message_id FROM inbox ORDER BY rowid").fetch_all(&pool).await.unwrap();
        assert_eq!(passed, vec!["a", "b'", "c'", "d'"], "each sequence number once, in order");
    }
}
