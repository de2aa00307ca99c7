//! The school registry.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

/// A school as the registry knows it.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct School {
    pub code: String,
    pub province: String,
    pub name: String,
    pub active: bool,
    pub code_usable_from: Option<DateTime<Utc>>,
}

/// Adds or replaces schools.
///
/// # Errors
/// Database errors.
pub async fn upsert(conn: &mut PgConnection, schools: &[School]) -> sqlx::Result<()> {
    for s in schools {
        sqlx::query(
            "INSERT INTO school (code, province, name, active, code_usable_from) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (code) DO UPDATE SET province = EXCLUDED.province, name = EXCLUDED.name,
               active = EXCLUDED.active, code_usable_from = EXCLUDED.code_usable_from, updated_at = now()",
        )
        .bind(&s.code)
        .bind(&s.province)
        .bind(&s.name)
        .bind(s.active)
        .bind(s.code_usable_from)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// # Errors
/// Database errors.
pub async fn get(conn: &mut PgConnection, code: &str) -> sqlx::Result<Option<School>> {
    sqlx::query_as("SELECT code, province, name, active, code_usable_from FROM school WHERE code = $1")
        .bind(code)
        .fetch_optional(conn)
        .await
}
