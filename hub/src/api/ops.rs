//! The operators' and national office's API (运维与国家平台接口), JSON over HTTPS with client
//! certificates: case search and full history, stuck archive transfers, overdue reviews, and
//! the actions operators take on them — each audited with who took it.
//!
//! Access: a certificate with role `operator` or `national-office`, issued by the exchange CA,
//! registered with the hub (`hub certs admit`) and not revoked.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use certs::Role;
use chrono::Utc;
use schemas::ErrorCode;
use schemas::messages::ErrorReport;
use serde::Deserialize;
use uuid::Uuid;

use crate::handlers::case::{Actor, Operated, operate};
use crate::service::{self, Context};
use crate::store::{self, cases};
use crate::workflow::calendar::business_date;
use crate::workflow::case::OperatorAction;
use certs::serve::Peer;

pub fn router(ctx: Context) -> Router {
    Router::new()
        .route("/cases", get(list))
        .route("/cases/{id}", get(detail))
        .route("/ops/stuck", get(stuck))
        .route("/ops/overdue", get(overdue))
        .route("/ops/audit", get(audit))
        .route("/ops/dead-letters", get(dead_letters))
        .route("/ops/index-disputes", get(index_disputes))
        .route("/ops/cases/{id}/{action}", post(act))
        .layer(axum::middleware::map_response(certs::serve::typed_errors))
        .with_state(ctx)
}

struct ApiError(StatusCode, ErrorReport);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn error(status: StatusCode, code: ErrorCode, detail: &str) -> ApiError {
    ApiError(status, ErrorReport::new(code, None, Some(detail)))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "Operator API failure.");
    error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "the hub could not complete the request; retry")
}

/// Who is asking, if allowed: role operator or national office, this certificate registered
/// and unrevoked.
async fn authorize(ctx: &Context, peer: Option<Extension<Peer>>) -> Result<certs::CertInfo, ApiError> {
    let Some(Extension(Peer(cert))) = peer else {
        return Err(error(StatusCode::UNAUTHORIZED, ErrorCode::Forbidden, "a client certificate is required"));
    };
    if !matches!(cert.role, Role::Operator(_) | Role::National(_)) {
        return Err(error(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            &format!("role {} may not use this API", cert.role.unit()),
        ));
    }
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    if !store::certs::serial_admitted(&mut conn, &cert.serial).await.map_err(internal)? {
        return Err(error(
            StatusCode::FORBIDDEN,
            ErrorCode::Revoked,
            "this certificate is not registered, revoked or expired",
        ));
    }
    Ok(cert)
}

async fn list(
    State(ctx): State<Context>,
    peer: Option<Extension<Peer>>,
    Query(f): Query<cases::Filter>,
) -> Result<Response, ApiError> {
    authorize(&ctx, peer).await?;
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(cases::list(&mut conn, &f).await.map_err(internal)?).into_response())
}

/// A case with its full history: facts, every decision (who, when, opinion), every change of
/// stage and its cause, operators' actions, and who it waits on since when.
async fn detail(
    State(ctx): State<Context>,
    peer: Option<Extension<Peer>>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    authorize(&ctx, peer).await?;
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let Some(case) = cases::get(&mut conn, id).await.map_err(internal)? else {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::CaseNotFound, &format!("no case {id}")));
    };
    let summary = cases::summary(&mut conn, id).await.map_err(internal)?;
    Ok(Json(serde_json::json!({
        "summary": summary,
        "state": case.state(),
        "waiting": case.waiting(),
        "facts": case.facts,
        "stage": case.stage,
        "attempts": case.attempts,
        "resends": case.resends,
        "lastError": case.last_error,
        "decisions": cases::history(&mut conn, id).await.map_err(internal)?,
        "events": cases::events(&mut conn, id).await.map_err(internal)?,
        "audit": cases::audit_trail(&mut conn, Some(id)).await.map_err(internal)?,
    }))
    .into_response())
}

/// Machine-driven stages (verification, release, the archive hand-over) that have not moved for
/// longer than `cases.stuck_after_secs`: who waits on whom, since when, attempts, last error.
async fn stuck(State(ctx): State<Context>, peer: Option<Extension<Peer>>) -> Result<Response, ApiError> {
    authorize(&ctx, peer).await?;
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let now = Utc::now();
    let rows = cases::stuck(&mut conn, now - ctx.rules.stuck_after()).await.map_err(internal)?;
    let out: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let waiting = (now - r.since).num_seconds();
            serde_json::json!({ "case": r, "waitingSeconds": waiting })
        })
        .collect();
    Ok(Json(out).into_response())
}

/// Review steps past their deadline (working days), for escalation.
async fn overdue(State(ctx): State<Context>, peer: Option<Extension<Peer>>) -> Result<Response, ApiError> {
    authorize(&ctx, peer).await?;
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let rows = cases::overdue(&mut conn, business_date(Utc::now())).await.map_err(internal)?;
    Ok(Json(rows).into_response())
}

/// Dead letters, newest first (without their bodies).
async fn dead_letters(State(ctx): State<Context>, peer: Option<Extension<Peer>>) -> Result<Response, ApiError> {
    authorize(&ctx, peer).await?;
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(store::dead_letters::list(&mut conn, 1000).await.map_err(internal)?).into_response())
}

/// Index entries their province contradicted (verification found no such student), waiting
/// for the province to report the student again.
async fn index_disputes(State(ctx): State<Context>, peer: Option<Extension<Peer>>) -> Result<Response, ApiError> {
    authorize(&ctx, peer).await?;
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(store::index::disputes(&mut conn).await.map_err(internal)?).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    case: Option<Uuid>,
}

async fn audit(
    State(ctx): State<Context>,
    peer: Option<Extension<Peer>>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    authorize(&ctx, peer).await?;
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(cases::audit_trail(&mut conn, q.case).await.map_err(internal)?).into_response())
}

#[derive(Deserialize, Default)]
struct ActionBody {
    #[serde(default)]
    note: String,
}

/// `resend`, `rerequest` or `resolve`, audited.
async fn act(
    State(ctx): State<Context>,
    peer: Option<Extension<Peer>>,
    Path((id, action)): Path<(Uuid, String)>,
    body: Option<Json<ActionBody>>,
) -> Result<Response, ApiError> {
    let who = authorize(&ctx, peer).await?;
    let action = match action.as_str() {
        "resend" => OperatorAction::Resend,
        "rerequest" => OperatorAction::Rerequest,
        "resolve" => OperatorAction::Resolve,
        other => return Err(error(StatusCode::NOT_FOUND, ErrorCode::Unexpected, &format!("unknown action `{other}`"))),
    };
    let note = body.map(|Json(b)| b.note).unwrap_or_default();
    let now = Utc::now();
    let mut tx = ctx.pool.begin().await.map_err(internal)?;
    let name = who.role.common_name();
    let by = Actor { name: &name, role: who.role.unit(), note: &note };
    let outcome = operate(&mut tx, &ctx, id, action, &by, now).await.map_err(internal)?;
    match outcome {
        Operated::Done { audit_id, replies } => {
            service::emit(&mut tx, format!("audit:{audit_id}").as_bytes(), replies, None, now)
                .await
                .map_err(internal)?;
            tx.commit().await.map_err(internal)?;
            Ok(Json(serde_json::json!({ "auditId": audit_id })).into_response())
        }
        Operated::Refused(code, detail) => Err(error(StatusCode::CONFLICT, code, &detail)),
        Operated::NotFound => Err(error(StatusCode::NOT_FOUND, ErrorCode::CaseNotFound, &format!("no case {id}"))),
    }
}
