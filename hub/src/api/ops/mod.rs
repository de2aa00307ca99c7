//! The operators' and national office's API (运维与国家平台接口), JSON over HTTPS with client
//! certificates: case search and full history, stuck archive transfers, overdue reviews, dead
//! letters, index disputes, and the actions operators take on cases — each audited with who
//! took it. Who may call which route is the extractor it takes ([`auth`]). The paths are
//! [`paths`], shared with the [`client`].

pub mod auth;
pub mod client;
pub mod dead_letters;
pub mod links;
pub(crate) mod lookups;
pub mod openapi;
pub mod orgcodes;
mod problems;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use schemas::ErrorCode;
use schemas::messages::ErrorReport;
use serde::Deserialize;
use uuid::Uuid;

use self::auth::Staff;
use crate::context::Context;
use crate::handlers::case::{Actor, Operated, operate};
use crate::outgoing::Cause;
use crate::store::{self, cases};
use crate::unit::UnitOfWork;
use crate::workflow::calendar::business_date;
use crate::workflow::case::OperatorAction;

/// The routes, as the router serves them and the client calls them.
pub mod paths {
    use crate::workflow::case::OperatorAction;

    pub const CASES: &str = "/cases";
    pub const CASE: &str = "/cases/{id}";
    pub const STUCK: &str = "/ops/stuck";
    pub const OVERDUE: &str = "/ops/overdue";
    pub const AUDIT: &str = "/ops/audit";
    pub const DEAD_LETTERS: &str = "/ops/dead-letters";
    pub const DEAD_LETTER: &str = "/ops/dead-letters/{id}";
    pub const DEAD_LETTER_REPLAY: &str = "/ops/dead-letters/{id}/replay";
    pub const DEAD_LETTER_DISCARD: &str = "/ops/dead-letters/{id}/discard";
    pub const DEAD_LETTERS_REPLAY: &str = "/ops/dead-letters/replay";
    pub const INDEX_DISPUTES: &str = "/ops/index-disputes";
    pub const LINKS: &str = "/ops/links";
    pub const LOOKUPS: &str = "/ops/lookups";
    pub const OPENAPI: &str = "/openapi.json";
    pub const ACTION: &str = "/ops/cases/{id}/{action}";
    pub const MESSAGE: &str = "/messages/{id}";
    pub const PROBLEMS: &str = "/problems";
    pub const PROBLEM: &str = "/problems/{id}";
    pub const PROBLEM_EVIDENCE: &str = "/problems/{id}/evidence/{sha256}";
    pub const PROBLEM_DECISION: &str = "/problems/{id}/decision";
    pub const PROBLEM_BUNDLE: &str = "/problems/{id}/bundle";
    pub const ARBITRATIONS: &str = "/arbitrations";
    pub const ORGCODE_BATCHES: &str = "/orgcodes/batches";
    pub const ORGCODE_BATCH: &str = "/orgcodes/batches/{id}";
    pub const ORGCODE_REVOCATIONS: &str = "/orgcodes/revocations";
    pub const ORGCODE_CHANGE: &str = "/orgcodes/changes/{id}";

    pub fn dead_letter(id: i64) -> String {
        DEAD_LETTER.replace("{id}", &id.to_string())
    }

    pub fn dead_letter_replay(id: i64) -> String {
        DEAD_LETTER_REPLAY.replace("{id}", &id.to_string())
    }

    pub fn dead_letter_discard(id: i64) -> String {
        DEAD_LETTER_DISCARD.replace("{id}", &id.to_string())
    }

    pub fn orgcode_batch(id: &str) -> String {
        ORGCODE_BATCH.replace("{id}", id)
    }

    pub fn orgcode_change(id: &str) -> String {
        ORGCODE_CHANGE.replace("{id}", id)
    }

    pub fn problem(id: &str) -> String {
        PROBLEM.replace("{id}", id)
    }

    pub fn bundle(id: &str) -> String {
        PROBLEM_BUNDLE.replace("{id}", id)
    }

    pub fn decision(id: &str) -> String {
        PROBLEM_DECISION.replace("{id}", id)
    }

    pub fn case(id: &str) -> String {
        CASE.replace("{id}", id)
    }

    pub fn message(id: &str) -> String {
        MESSAGE.replace("{id}", id)
    }

    pub fn action(id: &str, action: OperatorAction) -> String {
        ACTION.replace("{id}", id).replace("{action}", action.as_str())
    }
}

pub fn router(ctx: Context) -> Router {
    Router::new()
        .route(paths::CASES, get(list))
        .route(paths::CASE, get(detail))
        .route(paths::STUCK, get(stuck))
        .route(paths::OVERDUE, get(overdue))
        .route(paths::AUDIT, get(audit))
        .route(paths::DEAD_LETTERS, get(dead_letters::list))
        .route(paths::DEAD_LETTERS_REPLAY, post(dead_letters::replay_selection))
        .route(paths::DEAD_LETTER, get(dead_letters::detail))
        .route(paths::DEAD_LETTER_REPLAY, post(dead_letters::replay_one))
        .route(paths::DEAD_LETTER_DISCARD, post(dead_letters::discard_one))
        .route(paths::INDEX_DISPUTES, get(index_disputes))
        .route(paths::LINKS, get(links::list))
        .route(paths::LOOKUPS, get(lookups::list))
        .route(paths::ACTION, post(act))
        .route(paths::MESSAGE, get(message))
        .route(paths::PROBLEMS, get(problems::list).post(problems::load))
        .route(paths::PROBLEM, get(problems::detail))
        .route(paths::PROBLEM_EVIDENCE, get(problems::evidence))
        .route(paths::PROBLEM_DECISION, post(problems::decide))
        .route(paths::PROBLEM_BUNDLE, get(problems::bundle))
        .route(paths::ARBITRATIONS, get(problems::arbitrations))
        .route(
            paths::ORGCODE_BATCHES,
            get(orgcodes::batches)
                .post(orgcodes::load)
                .layer(axum::extract::DefaultBodyLimit::max(orgcodes::BATCH_MAX_BYTES)),
        )
        .route(paths::ORGCODE_BATCH, get(orgcodes::batch))
        .route(paths::ORGCODE_REVOCATIONS, get(orgcodes::revocations))
        .route(paths::ORGCODE_CHANGE, get(orgcodes::change))
        .route(paths::OPENAPI, get(openapi_document))
        .layer(axum::middleware::map_response(certs::serve::typed_errors))
        .with_state(ctx.clone())
        // The console's refusals are pages, not JSON: beside the typed-error layer, not under it.
        .merge(crate::api::console::router(ctx))
        // An unknown path is refused typed, like every refusal of the API.
        .fallback(|| async { error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route") })
        .layer(axum::middleware::from_fn(same_origin_only))
        .layer(axum::middleware::from_fn(no_nul))
        .layer(axum::middleware::from_fn(body_first))
        .layer(axum::middleware::from_fn(certs::serve::access_log))
}

/// The most a request body may hold on any route but the code batches' (axum's default limit).
const BODY_MAX_BYTES: usize = 2 << 20;

/// Reads a request's body before anything answers it. A refusal that comes before the body is
/// read (a 403, a 404, a cross-site POST) would otherwise close the connection under a client
/// still sending, which then sees a dropped connection instead of the typed answer. Bounded by
/// the route's limit: what the handlers would buffer anyway.
async fn body_first(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let limit = if request.uri().path() == paths::ORGCODE_BATCHES { orgcodes::BATCH_MAX_BYTES } else { BODY_MAX_BYTES };
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Err(_) => error(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, "the body is larger than this route takes")
            .into_response(),
    }
}

/// Refuses a path or query holding a NUL character (`%00`), which no identifier or filter holds
/// and PostgreSQL cannot store in text: a typed 400, not a failed query.
async fn no_nul(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = request.uri();
    let raw = uri.path_and_query().map_or("", |p| p.as_str());
    if raw.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0') {
        return error(StatusCode::BAD_REQUEST, ErrorCode::Schema, "a NUL character in the path or query")
            .into_response();
    }
    next.run(request).await
}

/// Refuses a state-changing request that a browser sends on behalf of another site (CSRF):
/// the browser presents the operator's certificate to this origin whoever asks it to, so a
/// page elsewhere could otherwise post an action (a discard, an arbitration) in their name.
/// Browsers mark such requests (`Sec-Fetch-Site`, and `Origin` on every POST); the command
/// line and other programs send neither and are not affected.
async fn same_origin_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{Method, header};
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    let cross_site = matches!(text("sec-fetch-site"), Some("cross-site" | "same-site"));
    // HTTP/2 carries the host in the request's authority, HTTP/1.1 in its Host header.
    let host = request.uri().authority().map(|a| a.as_str()).or(text(header::HOST.as_str()));
    let foreign_origin = match (text(header::ORIGIN.as_str()), host) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if cross_site || foreign_origin {
        let detail =
            "a request another site's page sent with your certificate: refused (use the console itself, or the CLI)";
        return error(StatusCode::FORBIDDEN, ErrorCode::Forbidden, detail).into_response();
    }
    next.run(request).await
}

/// The API's OpenAPI document, for any registered operator or national-office client.
async fn openapi_document(_: Staff) -> Json<serde_json::Value> {
    Json(openapi::document())
}

/// A refusal of the API: a status and the typed error body.
pub struct ApiError(pub StatusCode, pub Box<ErrorReport>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

pub(crate) fn error(status: StatusCode, code: ErrorCode, detail: &str) -> ApiError {
    ApiError(status, Box::new(ErrorReport::new(code, None, Some(detail))))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "Operator API failure.");
    error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "the hub could not complete the request; retry")
}

async fn list(State(ctx): State<Context>, _: Staff, Query(f): Query<cases::Filter>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(cases::list(&mut conn, &f).await.map_err(internal)?).into_response())
}

/// A case with its full history: facts, every decision (who, when, opinion), every change of
/// stage and its cause, operators' actions, and who it waits on since when.
async fn detail(State(ctx): State<Context>, _: Staff, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    match case_view(&mut conn, id).await.map_err(internal)? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(error(StatusCode::NOT_FOUND, ErrorCode::CaseNotFound, &format!("no case {id}"))),
    }
}

/// What [`detail`] answers, for the console too.
///
/// # Errors
/// Database errors.
pub async fn case_view(conn: &mut sqlx::PgConnection, id: Uuid) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(case) = cases::get(&mut *conn, id).await? else { return Ok(None) };
    let summary = cases::summary(&mut *conn, id).await?;
    let messages = store::trace::of_case(&mut *conn, id, MESSAGES_SHOWN).await?;
    // What stalls a case is often a message the hub could not take (dead-lettered, refused).
    let last_refusal = messages
        .iter()
        .rev()
        .find(|m| m.direction == "in" && matches!(m.outcome.as_str(), "refused" | "dead-lettered"));
    Ok(Some(serde_json::json!({
        "summary": summary,
        "state": case.state(),
        "waiting": case.waiting(),
        "facts": case.facts,
        "phase": case.phase,
        "attempts": case.attempts,
        "resends": case.resends,
        "lastError": case.last_error,
        "chain": case.chain,
        "decisions": case.decisions,
        "events": cases::events(&mut *conn, id).await?,
        "audit": cases::audit_trail(&mut *conn, Some(id), cases::Page { limit: Some(1000), offset: None }).await?,
        "lastRefusal": last_refusal,
        "messages": messages,
    })))
}

/// Messages of a case shown in its detail (the first ones; a case has a few dozen).
const MESSAGES_SHOWN: i64 = 1000;

/// A message by its id: which way, between whom, its type, case, outcome and code.
async fn message(State(ctx): State<Context>, _: Staff, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let found = store::trace::by_id(&mut conn, id).await.map_err(internal)?;
    if found.is_empty() {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::MessageNotFound, &format!("no message {id} in the trace")));
    }
    Ok(Json(found).into_response())
}

/// Machine-driven stages (verification, release, the archive hand-over) that have not moved for
/// longer than `cases.stuck_after_secs`: who waits on whom, since when, attempts, last error.
async fn stuck(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
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
async fn overdue(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let rows = cases::overdue(&mut conn, business_date(Utc::now())).await.map_err(internal)?;
    Ok(Json(rows).into_response())
}

/// Index entries their province contradicted (verification found no such student), waiting
/// for the province to report the student again.
async fn index_disputes(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(store::index::disputes(&mut conn).await.map_err(internal)?).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    case: Option<Uuid>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn audit(State(ctx): State<Context>, _: Staff, Query(q): Query<AuditQuery>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(
        cases::audit_trail(&mut conn, q.case, cases::Page { limit: q.limit, offset: q.offset })
            .await
            .map_err(internal)?,
    )
    .into_response())
}

#[derive(Deserialize, Default)]
struct ActionBody {
    #[serde(default)]
    note: String,
}

/// `resend`, `rerequest` or `resolve`, audited, in a unit of work caused by the audit entry.
async fn act(
    State(ctx): State<Context>,
    Staff(who): Staff,
    Path((id, action)): Path<(Uuid, String)>,
    body: Option<Json<ActionBody>>,
) -> Result<Response, ApiError> {
    let Some(action) = OperatorAction::parse(&action) else {
        let known: Vec<&str> = OperatorAction::ALL.iter().map(|a| a.as_str()).collect();
        let detail = format!("unknown action `{action}`; one of {}", known.join(", "));
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::Unexpected, &detail));
    };
    let note = body.map(|Json(b)| b.note).unwrap_or_default();
    let mut unit = UnitOfWork::begin(&ctx.pool, Utc::now()).await.map_err(internal)?;
    let name = who.role.common_name();
    let by = Actor { name: &name, role: who.role.unit(), note: &note };
    let now = unit.now;
    let outcome = operate(unit.conn(), &ctx, id, action, &by, now).await.map_err(internal)?;
    match outcome {
        Operated::Done { audit_id, replies } => {
            unit.finish(&Cause::Operator { audit_id }, replies, None).await.map_err(internal)?;
            Ok(Json(serde_json::json!({ "auditId": audit_id })).into_response())
        }
        Operated::Refused(code, detail) => Err(error(StatusCode::CONFLICT, code, &detail)),
        Operated::NotFound => Err(error(StatusCode::NOT_FOUND, ErrorCode::CaseNotFound, &format!("no case {id}"))),
    }
}
