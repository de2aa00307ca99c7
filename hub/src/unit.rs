//! The unit of work (工作单元) every cause runs in — an inbound message, a fired timer, an
//! operator's action: ONE database transaction in which the cause is claimed (inbox, timer row,
//! audit entry), the business locks, decides and writes, and every message it sends goes to the
//! outbox with an id derived from the cause; then one commit. Nothing is sent that was not
//! committed, and a replay of the same cause writes the same rows. Inbound messages are the
//! one cause that shares a transaction: the consumer's group commit runs several in one
//! ([`crate::service::handle_group`]), each with the outcome it would have had alone.

use anyhow::Result;
use chrono::{DateTime, Utc};
use schemas::MessageId;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::outgoing::{self, Cause, Reply};

/// An open unit of work.
pub struct UnitOfWork {
    tx: Transaction<'static, Postgres>,
    pub now: DateTime<Utc>,
}

impl UnitOfWork {
    /// Begins the transaction.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn begin(pool: &PgPool, now: DateTime<Utc>) -> Result<UnitOfWork> {
        Ok(UnitOfWork { tx: pool.begin().await?, now })
    }

    /// The transaction, for the claim and for the business's handler.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Writes what the cause sends, and commits.
    ///
    /// # Errors
    /// Database errors: nothing of the unit is committed.
    pub async fn finish(
        mut self,
        cause: &Cause<'_>,
        replies: Vec<Reply>,
        correlation: Option<MessageId>,
    ) -> Result<()> {
        outgoing::emit(&mut self.tx, cause, replies, correlation, self.now).await?;
        self.tx.commit().await?;
        Ok(())
    }
}
