//! The lookup audit on the operator API, for the national office only: who looked up whom,
//! when, and what was answered. The audit holds keyed digests, never identifiers; the office
//! names a student by an identifier, which is digested here the same way.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use schemas::ErrorCode;
use schemas::ids::{ProvinceCode, StudentId};
use schemas::messages::LookupKey;
use serde::Deserialize;

use super::auth::NationalOffice;
use super::{ApiError, error, internal};
use crate::context::Context;
use crate::handlers::lookup_audit_key as audit_key;
use crate::store::{self, lookups};
use crate::workflow::index::{AuditKeyKind, audit_digest, audit_identity};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    /// The province that looked up.
    province: Option<String>,
    /// A student, by national student ID or ID-document number: the lookups made with it, and
    /// those that found him.
    student: Option<String>,
    since: Option<DateTime<Utc>>,
    /// At most 1,000 (default 100).
    limit: Option<i64>,
}

/// The audit, newest first.
pub async fn list(
    State(ctx): State<Context>,
    _: NationalOffice,
    Query(q): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let filter = filter(&ctx, &mut conn, q.province.as_deref(), q.student.as_deref(), q.since, q.limit).await?;
    Ok(Json(lookups::search(&mut conn, &filter).await.map_err(internal)?).into_response())
}

/// The audit's filter for a province and a student as the national office names them: the
/// student by any identifier, digested under the audit's key (with, for a document number,
/// the student IDs the index holds for it, so that the lookups that found him count too).
///
/// # Errors
/// A province or student that does not parse (400), or the database (503).
pub(crate) async fn filter(
    ctx: &Context,
    conn: &mut sqlx::PgConnection,
    province: Option<&str>,
    student: Option<&str>,
    since: Option<DateTime<Utc>>,
    limit: Option<i64>,
) -> Result<lookups::Filter, ApiError> {
    let province = match province.map(ProvinceCode::parse).transpose() {
        Ok(p) => p.map(|p| p.code().to_owned()),
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, ErrorCode::Schema, &format!("province: {e}"))),
    };
    let digests = match student {
        None => None,
        Some(s) => {
            let key = audit_key(ctx, conn).await.map_err(internal)?;
            // The identifier as a lookup would have given it: a student ID, a document number.
            let keys = [StudentId::parse(s).ok().map(LookupKey::StudentId), LookupKey::document(s).ok()];
            let mut digests = Vec::new();
            for k in keys.into_iter().flatten() {
                let (kind, identifier) = audit_identity(&k);
                digests.push(audit_digest(key, kind, &identifier));
                if kind == AuditKeyKind::Document {
                    // The lookups that found him by his student ID, through the index.
                    for e in store::index::by_document(conn, &identifier).await.map_err(internal)? {
                        digests.push(audit_digest(key, AuditKeyKind::StudentId, e.summary.student_id.as_ref()));
                    }
                }
            }
            if digests.is_empty() {
                let detail = "student: neither a national student ID nor an ID-document number";
                return Err(error(StatusCode::BAD_REQUEST, ErrorCode::Schema, detail));
            }
            Some(digests)
        }
    };
    Ok(lookups::Filter { province, digests, since, limit: limit.unwrap_or(100).clamp(1, 1000) })
}
