//! The only place with SQL. Functions take a connection or transaction, so the caller decides
//! what commits together.

pub mod cases;
pub mod certs;
pub mod dead_letters;
pub mod inbox;
pub mod index;
pub mod links;
pub mod lookups;
pub mod message_log;
pub mod orgcodes;
pub mod outbox;
pub mod overview;
pub mod permissions;
pub mod problems;
pub mod register;
pub mod retention;
pub mod schools;
pub mod timers;
pub mod trace;

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::DatabaseSettings;

/// Opens a pool; connections are made lazily, so a database that is down at start is retried by
/// the callers' backoff rather than failing here.
///
/// # Errors
/// A malformed URL.
pub fn pool(settings: &DatabaseSettings) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(settings.connect_options()?))
}

/// One round trip.
///
/// # Errors
/// The database's error.
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Connects once and counts the migrations applied and pending.
///
/// # Errors
/// What keeps the hub from its database, and whether waiting can heal it.
pub async fn check(settings: &DatabaseSettings) -> std::result::Result<(usize, usize), ::certs::preflight::Problem> {
    use sqlx::Connection as _;
    let options = settings.connect_options().map_err(|e| ::certs::preflight::Problem {
        permanent: true,
        why: format!("{e:#}"),
        fix: "database.url must be postgres://user@host:port/database".into(),
    })?;
    let mut conn = sqlx::PgConnection::connect_with(&options).await.map_err(|e| problem(&e))?;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    let known = sqlx::migrate!("./migrations").migrations.len();
    let applied = usize::try_from(applied).unwrap_or(0);
    Ok((applied, known.saturating_sub(applied)))
}

/// What a database error means for a process that needs the database.
pub fn problem(e: &sqlx::Error) -> ::certs::preflight::Problem {
    let permanent = |why: String, fix: &str| ::certs::preflight::Problem { permanent: true, why, fix: fix.to_owned() };
    match e.as_database_error().and_then(|d| d.code()).as_deref() {
        Some("3D000") => permanent(
            format!("the database does not exist: {e}"),
            "create it (CREATE DATABASE …, owned by the hub's user) or correct database.url",
        ),
        Some("28P01" | "28000") => permanent(
            format!("the database refused the login: {e}"),
            "correct the user or password (HUB_DATABASE__PASSWORD_FILE) or pg_hba.conf",
        ),
        Some("42501") => permanent(format!("no privilege: {e}"), "grant the hub's user ownership of its database"),
        _ => ::certs::preflight::Problem {
            permanent: false,
            why: format!("database unreachable: {e}"),
            fix: "is PostgreSQL running and reachable from here? (retried)".into(),
        },
    }
}

/// Applies the embedded migrations (idempotent; concurrent hubs serialize on sqlx's lock).
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::migrate!("./migrations").run(pool).await.context("Failed to apply database migrations")
}

/// What the metrics report of the database's content.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Gauges {
    pub outbox_unsent: i64,
    pub outbox_lag_seconds: f64,
    pub cases_open: i64,
    pub cases_stuck: i64,
    pub cases_overdue: i64,
    pub dead_letters: i64,
    pub dead_letters_suppressed: i64,
    pub index_disputed: i64,
    /// Age of the oldest message-log entry not chained yet (0 when none waits).
    pub message_log_lag_seconds: f64,
}

/// Reads every gauge in one statement.
///
/// # Errors
/// Database errors.
pub async fn gauges(
    pool: &PgPool,
    stuck_before: chrono::DateTime<chrono::Utc>,
    today: chrono::NaiveDate,
) -> sqlx::Result<Gauges> {
    sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS outbox_unsent,
           (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) FROM outbox WHERE sent_at IS NULL)
             AS outbox_lag_seconds,
           (SELECT count(*) FROM business_case WHERE closed_at IS NULL) AS cases_open,
           (SELECT count(*) FROM business_case WHERE closed_at IS NULL
              AND stage IN ('verifying', 'releasing', 'archive_requested', 'delivering', 'committing') AND since < $1)
             AS cases_stuck,
           (SELECT count(*) FROM business_case WHERE closed_at IS NULL AND stage = 'reviewing' AND deadline < $2)
             AS cases_overdue,
           (SELECT count(*) FROM dead_letter) AS dead_letters,
           (SELECT COALESCE(sum(count), 0)::bigint FROM dead_letter_suppressed) AS dead_letters_suppressed,
           (SELECT count(*) FROM student_index WHERE disputed_at IS NOT NULL) AS index_disputed,
           (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(at))::float8, 0) FROM message_log
              WHERE entry_id = (SELECT min(entry_id) FROM message_log_unsealed)) AS message_log_lag_seconds",
    )
    .bind(stuck_before)
    .bind(today)
    .fetch_one(pool)
    .await
}

/// Whether an error is worth retrying the whole transaction for: the database is unreachable or
/// restarting, or the transaction lost a serialization or deadlock race.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 40001 serialization failure, 40P01 deadlock, 08… connection, 57P0… shutdown,
            // 53… insufficient resources.
            code == "40001"
                || code == "40P01"
                || code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
        }
        _ => false,
    }
}

/// `is_transient` through anyhow's chain.
pub fn is_transient_any(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<sqlx::Error>().is_some_and(is_transient))
}
