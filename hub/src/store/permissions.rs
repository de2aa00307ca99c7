//! Enrollment permissions (毕业后跨省就学权限).

use sqlx::PgConnection;

/// Runs `sql` on (school, province); true when it changed a row.
async fn one_row(conn: &mut PgConnection, sql: &'static str, school: &str, province: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query(sql).bind(school).bind(province).execute(conn).await?.rows_affected() == 1)
}

/// Grants a school; true when it was not granted before.
///
/// # Errors
/// Database errors.
pub async fn grant(conn: &mut PgConnection, school: &str, province: &str) -> sqlx::Result<bool> {
    let insert = "INSERT INTO enrollment_permission (school, province) VALUES ($1, $2) ON CONFLICT (school) DO NOTHING";
    one_row(conn, insert, school, province).await
}

/// Revokes a school of `province`; true when it was granted.
///
/// # Errors
/// Database errors.
pub async fn revoke(conn: &mut PgConnection, school: &str, province: &str) -> sqlx::Result<bool> {
    one_row(conn, "DELETE FROM enrollment_permission WHERE school = $1 AND province = $2", school, province).await
}

/// # Errors
/// Database errors.
pub async fn is_permitted(conn: &mut PgConnection, school: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM enrollment_permission WHERE school = $1)")
        .bind(school)
        .fetch_one(conn)
        .await
}
