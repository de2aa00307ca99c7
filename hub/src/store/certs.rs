//! The certificate registry and revocation list.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

/// A registered certificate.
#[derive(Debug, Clone, FromRow)]
pub struct Registered {
    pub serial: String,
    pub principal: String,
    pub role: String,
    pub subject: String,
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub pem: String,
    pub registered_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
}

/// Registers a certificate; registering the same serial again changes nothing.
///
/// # Errors
/// Database errors.
pub async fn register(conn: &mut PgConnection, info: &certs::CertInfo) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO certificate (serial, principal, role, subject, fingerprint, not_before, not_after, pem)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (serial) DO NOTHING",
    )
    .bind(&info.serial)
    .bind(info.role.common_name())
    .bind(info.role.unit())
    .bind(&info.subject)
    .bind(&info.fingerprint)
    .bind(info.not_before)
    .bind(info.not_after)
    .bind(info.pem())
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes by serial; returns the certificate, or `None` when the serial is unknown.
///
/// # Errors
/// Database errors.
pub async fn revoke(conn: &mut PgConnection, serial: &str, reason: &str) -> sqlx::Result<Option<Registered>> {
    sqlx::query_as(
        "UPDATE certificate SET revoked_at = COALESCE(revoked_at, now()), revoke_reason = COALESCE(revoke_reason, $2)
         WHERE serial = $1 RETURNING *",
    )
    .bind(serial)
    .bind(reason)
    .fetch_optional(conn)
    .await
}

/// Whether a certificate with `column = $1` is registered, unrevoked and valid now.
macro_rules! valid_now {
    ($column:literal) => {
        concat!(
            "SELECT EXISTS (SELECT 1 FROM certificate WHERE ",
            $column,
            " = $1 AND revoked_at IS NULL AND not_before <= now() AND not_after > now())"
        )
    };
}

/// Whether `principal` holds at least one registered, unrevoked certificate valid now.
///
/// # Errors
/// Database errors.
pub async fn is_admitted(conn: &mut PgConnection, principal: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(valid_now!("principal")).bind(principal).fetch_one(conn).await
}

/// All registered certificates, newest first.
///
/// # Errors
/// Database errors.
pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<Registered>> {
    sqlx::query_as("SELECT * FROM certificate ORDER BY registered_at DESC, serial").fetch_all(conn).await
}

/// The provinces (`prov-NN`) holding a registered, unrevoked certificate valid now.
///
/// # Errors
/// Database errors.
pub async fn admitted_provinces(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT principal FROM certificate WHERE role = 'province' AND revoked_at IS NULL
           AND not_before <= now() AND not_after > now() ORDER BY principal",
    )
    .fetch_all(conn)
    .await
}

/// Whether this very certificate is registered, unrevoked and valid now.
///
/// # Errors
/// Database errors.
pub async fn serial_admitted(conn: &mut PgConnection, serial: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(valid_now!("serial")).bind(serial).fetch_one(conn).await
}

/// One registered certificate by serial.
///
/// # Errors
/// Database errors.
pub async fn get(conn: &mut PgConnection, serial: &str) -> sqlx::Result<Option<Registered>> {
    sqlx::query_as("SELECT * FROM certificate WHERE serial = $1").bind(serial).fetch_optional(conn).await
}

/// Every revoked serial with the time of its revocation (for the CRL).
///
/// # Errors
/// Database errors.
pub async fn revoked(conn: &mut PgConnection) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
    sqlx::query_as("SELECT serial, revoked_at FROM certificate WHERE revoked_at IS NOT NULL ORDER BY serial")
        .fetch_all(conn)
        .await
}

/// The principal and PEM of the registered certificate with this SHA-256 fingerprint (revoked
/// or not: whether it is admitted now is asked with the claim).
///
/// # Errors
/// Database errors.
pub async fn by_fingerprint(conn: &mut PgConnection, fingerprint: &str) -> sqlx::Result<Option<(String, String)>> {
    sqlx::query_as("SELECT principal, pem FROM certificate WHERE fingerprint = $1 LIMIT 1")
        .bind(fingerprint)
        .fetch_optional(conn)
        .await
}
