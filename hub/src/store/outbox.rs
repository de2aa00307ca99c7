//! The outbox: messages to publish, written with the effects that cause them.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::trace::{Direction, NewTrace};

/// A message to publish.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: Uuid,
    pub exchange: String,
    pub routing_key: String,
    pub message_type: String,
    pub recipient: String,
    pub case_id: Option<Uuid>,
    /// The problem group it is about, for the message log (the envelope names none).
    pub group_id: Option<Uuid>,
    pub correlation_id: Option<String>,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

/// A row waiting to be published.
#[derive(Debug, Clone, FromRow)]
pub struct Pending {
    pub outbox_id: i64,
    pub message_id: Uuid,
    pub exchange: String,
    pub routing_key: String,
    pub message_type: String,
    pub correlation_id: Option<String>,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    pub attempts: i32,
    /// When the transaction that queued it began.
    pub created_at: DateTime<Utc>,
}

/// Adds a message and its line in the message trace, in one statement; a message id already
/// present is left alone (replays are harmless). The relay is woken at commit (the outbox's
/// statement trigger).
///
/// # Errors
/// Database errors.
pub async fn enqueue(conn: &mut PgConnection, m: &NewMessage, trace_correlation: Option<Uuid>) -> sqlx::Result<()> {
    enqueue_all(conn, std::slice::from_ref(m), &[queued_line(m, trace_correlation)]).await
}

/// The trace line of a message written to the outbox.
pub fn queued_line(m: &NewMessage, correlation: Option<Uuid>) -> NewTrace<'_> {
    NewTrace {
        message_id: m.message_id,
        direction: Direction::Out,
        party: &m.recipient,
        message_type: &m.message_type,
        case_id: m.case_id,
        correlation_id: correlation,
        outcome: "queued",
        code: None,
    }
}

/// Adds messages and trace lines (theirs, and those of the inbound messages that caused them,
/// in the order they happened) in one statement whatever their number: a group of messages
/// writes everything it sends at once. A message id already present is left alone.
///
/// # Errors
/// Database errors.
pub async fn enqueue_all(
    conn: &mut PgConnection,
    messages: &[NewMessage],
    traces: &[NewTrace<'_>],
) -> sqlx::Result<()> {
    if messages.is_empty() && traces.is_empty() {
        return Ok(());
    }
    // The bytes go to the message log only, for the rows really queued; each row names its
    // entry, whose id is taken first, and the relay reads them there (`outbox_message`). A
    // message id given twice is queued once, with its first bytes.
    sqlx::query(
        "WITH entry AS MATERIALIZED (
             SELECT n, nextval('message_log_entry_id_seq') AS entry_id FROM generate_series(1, cardinality($1::uuid[])) n),
         queued AS (
             INSERT INTO outbox (message_id, exchange, routing_key, message_type, recipient, case_id, correlation_id, headers,
                                 group_id, log_entry)
             SELECT m, x, k, y, r, c, co, h, g, entry_id
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::jsonb[],
                         $18::uuid[]) WITH ORDINALITY AS u(m, x, k, y, r, c, co, h, g, n)
             JOIN entry USING (n)
             ORDER BY n
             ON CONFLICT (message_id) DO NOTHING
             RETURNING message_id, recipient, message_type, case_id, group_id, log_entry, created_at)
         , logged AS (
             -- The entries' order is their ids', taken in the messages' order: the bytes are
             -- not sorted.
             INSERT INTO message_log (entry_id, at, direction, party, message_id, message_type, case_id, group_id, body,
                                      body_sha256)
             SELECT q.log_entry, q.created_at, 'out', q.recipient, q.message_id, q.message_type, q.case_id, q.group_id,
                    b.body, sha256(b.body)
             FROM queued q JOIN entry e ON e.entry_id = q.log_entry
             JOIN UNNEST($9::bytea[]) WITH ORDINALITY AS b(body, n) ON b.n = e.n)
         INSERT INTO message_trace (message_id, direction, party, message_type, case_id, correlation_id, outcome, code)
         SELECT m, d, p, y, c, r, o, e
         FROM UNNEST($10::uuid[], $11::text[], $12::text[], $13::text[], $14::uuid[], $15::uuid[], $16::text[],
                     $17::text[]) WITH ORDINALITY AS t(m, d, p, y, c, r, o, e, n)
         ORDER BY n",
    )
    .bind(messages.iter().map(|m| m.message_id).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.exchange.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.routing_key.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.message_type.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.recipient.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.case_id).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.correlation_id.as_deref()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| &m.headers).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.body.as_slice()).collect::<Vec<_>>())
    .bind(traces.iter().map(|t| t.message_id).collect::<Vec<_>>())
    .bind(traces.iter().map(|t| t.direction.as_str()).collect::<Vec<_>>())
    .bind(traces.iter().map(|t| t.party).collect::<Vec<_>>())
    .bind(traces.iter().map(|t| t.message_type).collect::<Vec<_>>())
    .bind(traces.iter().map(|t| t.case_id).collect::<Vec<_>>())
    .bind(traces.iter().map(|t| t.correlation_id).collect::<Vec<_>>())
    .bind(traces.iter().map(|t| t.outcome).collect::<Vec<_>>())
    .bind(traces.iter().map(|t| t.code).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.group_id).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks what was published to `recipient` since `since` (at most `limit` rows, oldest first)
/// for publishing again; returns how many, and the oldest row still kept for it. A row whose
/// bytes the message log no longer keeps (sent long after it was queued, its entry pruned
/// since) is left as sent: it could not go out.
///
/// # Errors
/// Database errors.
pub async fn replay(
    conn: &mut PgConnection,
    recipient: &str,
    since: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<(u64, Option<DateTime<Utc>>)> {
    let n = sqlx::query(
        "UPDATE outbox SET sent_at = NULL, next_attempt_at = now(), attempts = 0
         WHERE outbox_id IN (SELECT outbox_id FROM outbox_message WHERE recipient = $1 AND sent_at >= $2
                             AND body IS NOT NULL ORDER BY outbox_id LIMIT $3)",
    )
    .bind(recipient)
    .bind(since)
    .bind(limit)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let kept: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT min(created_at) FROM outbox WHERE recipient = $1")
        .bind(recipient)
        .fetch_one(&mut *conn)
        .await?;
    if n > 0 {
        sqlx::query("SELECT pg_notify('outbox', '')").execute(conn).await?;
    }
    Ok((n, kept))
}

/// Reads the oldest due, unsent rows above `floor` but those of `in_flight` (outbox ids; a
/// floor of 0 for all): up to `limit`
/// of them and, beyond the first, no more than `max_bytes` of bodies together (a backlog of
/// large archives must not be read into memory at once). Nothing is locked: one relay publishes
/// at a time (its advisory lock), and a row that two relays publish around a change of leader
/// is only sent twice, which receivers recognize.
///
/// # Errors
/// Database errors.
pub async fn claim_due(
    conn: &mut PgConnection,
    floor: i64,
    in_flight: &[i64],
    limit: i64,
    max_bytes: i64,
) -> sqlx::Result<Vec<Pending>> {
    sqlx::query_as(CLAIM_DUE).bind(in_flight).bind(limit).bind(max_bytes).bind(floor).fetch_all(conn).await
}

/// The relay's read: `$1` the ids in flight, `$2` the most rows, `$3` the most bytes (the first
/// row is taken whatever its size), `$4` the floor. Public so that a test can measure its plan.
///
/// The bytes are read where they are kept (`outbox_message`: the message log's entry, or the
/// row's own body for a row queued with one). One statement: the sizes (read from the values'
/// headers, not their content) and a running total choose the rows. Each part is materialized
/// once: a database crash leaves statistics that count no unsent row, and with them a join of
/// the chosen rows back to the outbox was planned as a loop that read the whole backlog once
/// per row (11 s for 6,000 rows).
pub const CLAIM_DUE: &str = "\
    WITH held AS MATERIALIZED (
           -- A province's messages go in outbox order: none while an earlier one to it waits
           -- to be tried again. The earliest waiting row per province is found once, among
           -- the rows that have failed (their own small index, `outbox_retrying`).
           SELECT recipient, min(outbox_id) AS since FROM outbox
           WHERE sent_at IS NULL AND attempts > 0 AND next_attempt_at > now() GROUP BY recipient),
         due AS MATERIALIZED (
           SELECT outbox_id, message_id, exchange, routing_key, message_type, correlation_id, headers, body,
                  attempts, created_at
           FROM outbox_message o
           WHERE sent_at IS NULL AND next_attempt_at <= now() AND outbox_id > $4 AND NOT (outbox_id = ANY($1))
             AND NOT EXISTS (SELECT 1 FROM held WHERE held.recipient = o.recipient AND held.since < o.outbox_id)
           ORDER BY outbox_id LIMIT $2)
    SELECT outbox_id, message_id, exchange, routing_key, message_type, correlation_id, headers, body, attempts, created_at
    FROM (SELECT due.*, row_number() OVER w AS n, sum(greatest(octet_length(body), 1)) OVER w AS total
          FROM due WINDOW w AS (ORDER BY outbox_id)) chosen
    -- A row whose bytes are gone (only a hand-edited database has one) cannot go out; read, it
    -- would stop the relay for every province. It waits, and shows in the outbox's lag.
    WHERE (n = 1 OR total <= $3) AND body IS NOT NULL
    ORDER BY outbox_id";

/// The settings of the relay's own connections: its stamps commit asynchronously (a stamp lost
/// in a database crash only sends its rows again, which receivers recognize), and its reads use
/// plain index scans. Each stamp leaves its row's entry in the indexes of unsent rows until a
/// vacuum, which on a large outbox comes seldom; a plain index scan marks an entry it finds
/// dead, and later reads skip it, while a bitmap scan (the planner's choice for the few rows
/// it expects) visits every such row's heap page at every read: 4,464 blocks and 6–10 ms for
/// 40,000 stamped rows, against 120 blocks and 0.75 ms.
pub const RELAY_SESSION: &str = "SET synchronous_commit = off; SET enable_bitmapscan = off";

/// Applies [`RELAY_SESSION`] to a connection of the relay's.
///
/// # Errors
/// Database errors.
pub async fn relay_session(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::raw_sql(RELAY_SESSION).execute(conn).await?;
    Ok(())
}

/// # Errors
/// Database errors.
pub async fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE outbox_id = ANY($1)",
    )
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt; the row is tried again at `retry_at`.
///
/// # Errors
/// Database errors.
pub async fn mark_failed(conn: &mut PgConnection, id: i64, error: &str, retry_at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 WHERE outbox_id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(retry_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Unsent rows and the age in seconds of the oldest (the relay's lag).
///
/// # Errors
/// Database errors.
pub async fn lag(pool: &PgPool) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(pool)
    .await
}
