//! What the database knows of each province's link (链路): its certificate's expiry, the last
//! message it sent, and the hub's backlog to it (unsent rows only: the scan is as long as the backlog) (the broker's side is asked of the broker).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection};

/// One province as the database sees its link.
#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    /// The broker user, `prov-NN`.
    pub principal: String,
    /// The latest expiry among its registered, unrevoked certificates; none when it holds none.
    pub certificate_not_after: Option<DateTime<Utc>>,
    /// When the hub took its last message from it.
    pub last_message_at: Option<DateTime<Utc>>,
    /// Messages for it in the outbox not yet handed to the broker, and since when the oldest.
    pub outbox_backlog: i64,
    pub oldest_unsent_at: Option<DateTime<Utc>>,
}

/// Every province that holds or held a certificate, by code.
///
/// # Errors
/// Database errors.
pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<Link>> {
    sqlx::query_as(
        "WITH p AS (
             SELECT principal, max(not_after) FILTER (WHERE revoked_at IS NULL) AS certificate_not_after
             FROM certificate WHERE role = 'province' GROUP BY principal),
         unsent AS (
             SELECT recipient, count(*) AS n, min(created_at) AS oldest FROM outbox WHERE sent_at IS NULL GROUP BY recipient)
         SELECT p.principal, p.certificate_not_after,
                (SELECT max(received_at) FROM inbox i WHERE i.sender = p.principal) AS last_message_at,
                COALESCE(u.n, 0) AS outbox_backlog, u.oldest AS oldest_unsent_at
         FROM p LEFT JOIN unsent u ON u.recipient = p.principal
         ORDER BY p.principal",
    )
    .fetch_all(conn)
    .await
}
