//! The register of open business (在办业务登记): which business holds which student, naming
//! which schools and divisions. Written by every business in the transaction of its own state.

use std::collections::HashSet;

use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// A business holding a student.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub student_id: &'a str,
    pub business: &'a str,
    pub business_id: Uuid,
    pub schools: Vec<String>,
    pub divisions: Vec<String>,
}

/// Records that a business holds a student; `false` when another business holds him already
/// (a concurrent holder waits for the first to commit, then sees its row).
///
/// # Errors
/// Database errors.
pub async fn open(conn: &mut PgConnection, e: &Entry<'_>) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "INSERT INTO open_business (student_id, business, business_id, schools, divisions) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (student_id) DO NOTHING",
    )
    .bind(e.student_id)
    .bind(e.business)
    .bind(e.business_id)
    .bind(&e.schools)
    .bind(&e.divisions)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A business lets go of every student it holds.
///
/// # Errors
/// Database errors.
pub async fn close(conn: &mut PgConnection, business: &str, business_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM open_business WHERE business = $1 AND business_id = $2")
        .bind(business)
        .bind(business_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Who holds a student.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Holder {
    pub business: String,
    pub business_id: Uuid,
}

/// The business holding `student_id`, if any.
///
/// # Errors
/// Database errors.
pub async fn holder(conn: &mut PgConnection, student_id: &str) -> sqlx::Result<Option<Holder>> {
    sqlx::query_as("SELECT business, business_id FROM open_business WHERE student_id = $1")
        .bind(student_id)
        .fetch_optional(conn)
        .await
}

/// Which of `student_ids` some business holds, in one query.
///
/// # Errors
/// Database errors.
pub async fn held_among(conn: &mut PgConnection, student_ids: &[String]) -> sqlx::Result<HashSet<String>> {
    let held: Vec<String> = sqlx::query_scalar("SELECT student_id FROM open_business WHERE student_id = ANY($1)")
        .bind(student_ids)
        .fetch_all(conn)
        .await?;
    Ok(held.into_iter().collect())
}
