//! The message log's tables (报文日志): entries (written with the inbox claim and by the outbox's
//! trigger), the chain the sealer writes, the hub's checkpoints. Only ever inserted into.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// One entry as the chain needs it (no body).
#[derive(Debug, Clone, FromRow)]
pub struct Logged {
    pub entry_id: i64,
    pub at: DateTime<Utc>,
    pub direction: String,
    pub party: String,
    pub message_id: Uuid,
    pub message_type: String,
    pub case_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub body_sha256: Vec<u8>,
    pub signer: Option<String>,
}

/// One process seals at a time: a transaction-level lock, released at commit.
const SEALER_LOCK: i64 = 0x5845_414c_4c4f_4701;

/// Takes the sealer's lock for this transaction; `false` when another process holds it.
///
/// # Errors
/// Database errors.
pub async fn lock_sealer(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(SEALER_LOCK).fetch_one(conn).await
}

/// Takes up to `limit` entries not chained yet, oldest first (they leave the queue with this
/// transaction's commit). The ids taken are one array, each removed by its key: asked as
/// `IN (subquery)`, the planner joined them to a sequential scan of the whole queue, so a
/// sealer that fell behind took longer for every batch the further behind it was.
///
/// # Errors
/// Database errors.
pub async fn take_unsealed(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as(
        "WITH taken AS (
             DELETE FROM message_log_unsealed WHERE entry_id = ANY(ARRAY(
                 SELECT entry_id FROM message_log_unsealed ORDER BY entry_id LIMIT $1))
             RETURNING entry_id)
         SELECT l.entry_id, l.at, l.direction, l.party, l.message_id, l.message_type, l.case_id, l.group_id, l.body_sha256,
                l.signer
         FROM message_log l JOIN taken USING (entry_id) ORDER BY l.entry_id",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The chain's last link: its position and hash.
///
/// # Errors
/// Database errors.
pub async fn last_link(conn: &mut PgConnection) -> sqlx::Result<Option<(i64, Vec<u8>)>> {
    sqlx::query_as("SELECT position, hash FROM message_log_chain ORDER BY position DESC LIMIT 1")
        .fetch_optional(conn)
        .await
}

/// Appends links: (position, entry id, hash).
///
/// # Errors
/// Database errors.
pub async fn link(conn: &mut PgConnection, links: &[(i64, i64, [u8; 32])]) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO message_log_chain (position, entry_id, hash) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bytea[])")
        .bind(links.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind(links.iter().map(|l| l.1).collect::<Vec<_>>())
        .bind(links.iter().map(|l| l.2.to_vec()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}

/// A checkpoint as kept.
#[derive(Debug, Clone, FromRow)]
pub struct Checkpoint {
    pub position: i64,
    pub hash: Vec<u8>,
    pub at: DateTime<Utc>,
    pub signature: Vec<u8>,
    pub signer: String,
    pub certificate: String,
}

/// The newest checkpoint.
///
/// # Errors
/// Database errors.
pub async fn last_checkpoint(conn: &mut PgConnection) -> sqlx::Result<Option<Checkpoint>> {
    sqlx::query_as("SELECT * FROM message_log_checkpoint ORDER BY position DESC LIMIT 1").fetch_optional(conn).await
}

/// The first checkpoint at or after `position`.
///
/// # Errors
/// Database errors.
pub async fn checkpoint_from(conn: &mut PgConnection, position: i64) -> sqlx::Result<Option<Checkpoint>> {
    sqlx::query_as("SELECT * FROM message_log_checkpoint WHERE position >= $1 ORDER BY position LIMIT 1")
        .bind(position)
        .fetch_optional(conn)
        .await
}

/// Records a checkpoint.
///
/// # Errors
/// Database errors.
pub async fn checkpoint(conn: &mut PgConnection, c: &Checkpoint) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO message_log_checkpoint (position, hash, at, signature, signer, certificate)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (position) DO NOTHING",
    )
    .bind(c.position)
    .bind(&c.hash)
    .bind(c.at)
    .bind(&c.signature)
    .bind(&c.signer)
    .bind(&c.certificate)
    .execute(conn)
    .await?;
    Ok(())
}

/// Which entries an export is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// A case's: those naming it, and the messages its trace counts as the case's (an
    /// application opens its case: it names none).
    Case(Uuid),
    /// A problem group's (问题学籍组): those naming it, and the messages that caused the hub's
    /// messages about it (the index update that opened it).
    Group(Uuid),
    /// Those logged from the first instant until before the second.
    Logged(DateTime<Utc>, DateTime<Utc>),
}

impl Selection {
    fn binds(self) -> (Option<Uuid>, Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match self {
            Selection::Case(c) | Selection::Group(c) => (Some(c), None, None),
            Selection::Logged(from, until) => (None, Some(from), Some(until)),
        }
    }

    /// The selected entries, for the statements below: by $1, a case, or $2 and $3, a time
    /// range (one statement for each, so that each uses its index).
    fn selected(self) -> &'static str {
        match self {
            Selection::Case(_) => {
                "selected AS (
                     SELECT entry_id FROM message_log WHERE case_id = $1
                     UNION SELECT l.entry_id FROM message_log l JOIN message_trace t USING (message_id)
                     WHERE t.case_id = $1 AND $2::timestamptz IS NULL AND $3::timestamptz IS NULL)"
            }
            Selection::Group(_) => {
                "about AS (SELECT entry_id, message_id, direction FROM message_log WHERE group_id = $1),
                 selected AS (
                     SELECT entry_id FROM about
                     UNION SELECT l.entry_id FROM message_log l
                     WHERE l.direction = 'in' AND $2::timestamptz IS NULL AND $3::timestamptz IS NULL AND l.message_id IN
                         (SELECT t.correlation_id FROM message_trace t JOIN about a USING (message_id)
                          WHERE a.direction = 'out' AND t.direction = 'out' AND t.correlation_id IS NOT NULL))"
            }
            Selection::Logged(..) => {
                "selected AS (SELECT entry_id FROM message_log WHERE at >= $2 AND at < $3 AND $1::uuid IS NULL)"
            }
        }
    }
}

/// The positions of the selected entries, first and last, and how many of them are not
/// chained yet.
///
/// # Errors
/// Database errors.
pub async fn span(conn: &mut PgConnection, selection: Selection) -> sqlx::Result<(Option<i64>, Option<i64>, i64)> {
    let (case, from, until) = selection.binds();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH {}
         SELECT min(c.position), max(c.position),
                (SELECT count(*) FROM message_log_unsealed u WHERE u.entry_id IN (SELECT entry_id FROM selected))
         FROM selected LEFT JOIN message_log_chain c USING (entry_id)",
        selection.selected()
    )))
    .bind(case)
    .bind(from)
    .bind(until)
    .fetch_one(conn)
    .await
}

/// One link of the chain with its entry; the body and signature only when the entry is
/// selected.
#[derive(Debug, Clone, FromRow)]
pub struct Linked {
    pub position: i64,
    #[sqlx(flatten)]
    pub entry: Logged,
    pub body: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
}

/// The links from `from` to `to`, with the bodies of the selected entries.
///
/// # Errors
/// Database errors.
pub async fn links(conn: &mut PgConnection, from: i64, to: i64, selection: Selection) -> sqlx::Result<Vec<Linked>> {
    let (case, since, until) = selection.binds();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH {}
         SELECT c.position, l.entry_id, l.at, l.direction, l.party, l.message_id, l.message_type, l.case_id,
                l.group_id, l.body_sha256, l.signer,
                CASE WHEN l.entry_id IN (SELECT entry_id FROM selected) THEN l.body END AS body,
                CASE WHEN l.entry_id IN (SELECT entry_id FROM selected) THEN l.signature END AS signature
         FROM message_log_chain c JOIN message_log l USING (entry_id)
         WHERE c.position BETWEEN $4 AND $5 ORDER BY c.position",
        selection.selected()
    )))
    .bind(case)
    .bind(since)
    .bind(until)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await
}

/// The hash at `position`.
///
/// # Errors
/// Database errors.
pub async fn hash_at(conn: &mut PgConnection, position: i64) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar("SELECT hash FROM message_log_chain WHERE position = $1")
        .bind(position)
        .fetch_optional(conn)
        .await
}

/// The registered certificates (fingerprint, PEM) with these fingerprints.
///
/// # Errors
/// Database errors.
pub async fn certificates(conn: &mut PgConnection, fingerprints: &[String]) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT DISTINCT ON (fingerprint) fingerprint, pem FROM certificate WHERE fingerprint = ANY($1)")
        .bind(fingerprints)
        .fetch_all(conn)
        .await
}
