//! Backups of the store while the adapter runs, and their check.

use std::path::Path;
use std::str::FromStr as _;

use anyhow::{Context as _, Result};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// A consistent copy of the store while the adapter runs (SQLite's `VACUUM INTO`: one read
/// transaction, so writers go on and the copy is one moment's state), written to `out`, which
/// must not exist.
///
/// # Errors
/// An existing `out`, or a database error.
pub async fn backup(pool: &SqlitePool, out: &Path) -> Result<()> {
    if out.exists() {
        anyhow::bail!("{} exists; a backup never replaces a file", out.display());
    }
    let target = out.to_str().context("the backup path is not UTF-8")?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(pool).await.context("VACUUM INTO")?;
    Ok(())
}

/// What a backup holds, checked: SQLite's integrity check, and the store's tables.
///
/// # Errors
/// A file that is not a sound store.
pub async fn check_backup(path: &Path) -> Result<(i64, i64, Option<String>)> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?.read_only(true);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&pool).await?;
    if integrity != "ok" {
        anyhow::bail!("{}: integrity check: {integrity}", path.display());
    }
    let counts: (i64, i64, Option<String>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM inbox), (SELECT max(received_at) FROM inbox)",
    )
    .fetch_one(&pool)
    .await
    .with_context(|| format!("{} is not an adapter store", path.display()))?;
    pool.close().await;
    Ok(counts)
}
