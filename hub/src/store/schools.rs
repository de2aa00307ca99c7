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
    /// 主管教育部门 (division code), if known.
    pub department: Option<String>,
    /// 教育阶段 it runs (PRIMARY, JUNIOR, SENIOR); empty when unknown.
    pub stages: Vec<String>,
}

/// Adds or replaces schools (the registry's seed: `hub schools load`). A school without a
/// department keeps the one it has.
///
/// # Errors
/// Database errors.
pub async fn upsert(conn: &mut PgConnection, schools: &[School]) -> sqlx::Result<()> {
    for s in schools {
        sqlx::query(
            "INSERT INTO school (code, province, name, active, code_usable_from, department, stages)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (code) DO UPDATE SET province = EXCLUDED.province, name = EXCLUDED.name,
               active = EXCLUDED.active, code_usable_from = EXCLUDED.code_usable_from,
               department = COALESCE(EXCLUDED.department, school.department),
               stages = CASE WHEN cardinality(EXCLUDED.stages) > 0 THEN EXCLUDED.stages ELSE school.stages END,
               updated_at = now()",
        )
        .bind(&s.code)
        .bind(&s.province)
        .bind(&s.name)
        .bind(s.active)
        .bind(s.code_usable_from)
        .bind(&s.department)
        .bind(&s.stages)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// # Errors
/// Database errors.
pub async fn get(conn: &mut PgConnection, code: &str) -> sqlx::Result<Option<School>> {
    sqlx::query_as(
        "SELECT code, province, name, active, code_usable_from, department, stages FROM school WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(conn)
    .await
}
