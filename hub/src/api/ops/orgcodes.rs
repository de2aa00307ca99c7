//! Organization codes on the operator API: loading a batch (national office only), the batches
//! and each province's confirmation progress, one batch's records, the revocations waiting with
//! their blockers and age, one record's history.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use schemas::ErrorCode;
use schemas::messages::{OrgBatch, OrgRecord};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{NationalOffice, Staff};
use super::{ApiError, error, internal};
use crate::context::Context;
use crate::handlers::orgcode::{self, Loaded};
use crate::outgoing::Cause;
use crate::store::{cases, orgcodes};
use crate::unit::UnitOfWork;

/// The largest batch file accepted (a quarter's school changes of the whole country fit).
pub const BATCH_MAX_BYTES: usize = 16 << 20;

/// Blocking business listed per revocation.
const BLOCKERS_LISTED: i64 = 100;

/// Loads a batch (national office only), audited; its records go to their provinces in the
/// same unit of work. 201 with the record count; 200 `unchanged` for the same batch again.
pub async fn load(
    State(ctx): State<Context>,
    NationalOffice(who): NationalOffice,
    Json(batch): Json<OrgBatch>,
) -> Result<Response, ApiError> {
    let mut unit = UnitOfWork::begin(&ctx.pool, Utc::now()).await.map_err(internal)?;
    let name = who.role.common_name();
    let now = unit.now;
    match orgcode::load(unit.conn(), &batch, &name, now).await.map_err(internal)? {
        Loaded::Refused(code, detail) => {
            let status = if code == ErrorCode::BatchConflict { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
            Err(error(status, code, &detail))
        }
        Loaded::Unchanged => Ok(Json(serde_json::json!({
            "batchId": batch.batch_id, "version": batch.version, "unchanged": true,
        }))
        .into_response()),
        Loaded::Done { records, replies } => {
            let detail = format!("{} version {}: {records} records", batch.batch_id, batch.version);
            let audit_id = cases::audit(unit.conn(), &name, who.role.unit(), "load-batch", None, &detail)
                .await
                .map_err(internal)?;
            unit.finish(&Cause::Operator { audit_id }, replies, None).await.map_err(internal)?;
            Ok((
                StatusCode::CREATED,
                Json(serde_json::json!({
                    "batchId": batch.batch_id, "version": batch.version, "records": records, "auditId": audit_id,
                })),
            )
                .into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Paging {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Batches, newest first, each with every province's records by state.
pub async fn batches(State(ctx): State<Context>, _: Staff, Query(p): Query<Paging>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let (limit, offset) = (p.limit.unwrap_or(100).clamp(1, 1000), p.offset.unwrap_or(0).max(0));
    Ok(Json(orgcodes::batches(&mut conn, limit, offset).await.map_err(internal)?).into_response())
}

/// One batch's records (every version), by province and sequence.
pub async fn batch(State(ctx): State<Context>, _: Staff, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let rows = orgcodes::changes_of(&mut conn, &id, None).await.map_err(internal)?;
    if rows.is_empty() {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::NotFound, &format!("no batch {id}")));
    }
    Ok(Json(rows).into_response())
}

async fn with_blockers(
    conn: &mut sqlx::PgConnection,
    c: orgcodes::ChangeView,
    now: chrono::DateTime<Utc>,
) -> Result<serde_json::Value, ApiError> {
    let record: OrgRecord = serde_json::from_value(c.record.clone()).map_err(internal)?;
    let blockers = orgcodes::blockers(conn, &record).await.map_err(internal)?;
    let business = orgcodes::blocking_business(conn, &record, BLOCKERS_LISTED).await.map_err(internal)?;
    let age = c.confirmed_at.map(|t| (now - t).num_seconds());
    Ok(serde_json::json!({ "change": c, "blockers": blockers, "business": business, "waitingSeconds": age }))
}

/// Confirmed revocations still waiting, oldest first: what blocks each (counts, and the open
/// business by id), and how long it has waited.
pub async fn revocations(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(revocations_view(&mut conn).await?).into_response())
}

/// What [`revocations`] answers, for the console too.
pub async fn revocations_view(conn: &mut sqlx::PgConnection) -> Result<Vec<serde_json::Value>, ApiError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for c in orgcodes::waiting(&mut *conn).await.map_err(internal)? {
        out.push(with_blockers(&mut *conn, c, now).await?);
    }
    Ok(out)
}

/// One record: where it stands, its history, and what blocks it if it waits.
pub async fn change(State(ctx): State<Context>, _: Staff, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let Some(c) = orgcodes::change(&mut conn, id).await.map_err(internal)? else {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::ChangeNotFound, &format!("no change {id}")));
    };
    let events = orgcodes::events(&mut conn, id).await.map_err(internal)?;
    let mut body = with_blockers(&mut conn, c, Utc::now()).await?;
    body["events"] = serde_json::to_value(events).map_err(internal)?;
    Ok(Json(body).into_response())
}
