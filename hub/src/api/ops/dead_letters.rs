//! Dead letters on the operator API: the list (open ones, or all), one with its message, and
//! the operators' settlements — replay after the cause is fixed, discard — each audited.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemas::ErrorCode;
use serde::{Deserialize, Serialize};

use super::auth::Staff;
use super::{ApiError, error, internal};
use crate::context::Context;
use crate::handlers::case::Actor;
use crate::replay::{self, Settled};
use crate::service::Handled;
use crate::store::{cases, dead_letters};

/// At most this many dead letters in one replay of a selection.
pub const SELECTION_MAX: usize = 100;

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    /// `open`, `replayed` or `discarded`; all when absent.
    pub state: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Dead letters, newest first (without their bodies).
pub async fn list(State(ctx): State<Context>, _: Staff, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    if let Some(s) = q.state.as_deref()
        && !matches!(s, "open" | "replayed" | "discarded")
    {
        let detail = format!("unknown state `{s}`; one of open, replayed, discarded");
        return Err(error(StatusCode::BAD_REQUEST, ErrorCode::Schema, &detail));
    }
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let page = cases::Page { limit: q.limit, offset: q.offset };
    Ok(Json(dead_letters::list(&mut conn, q.state.as_deref(), page).await.map_err(internal)?).into_response())
}

/// One dead letter as an operator inspects it: what is known of it, and the message as kept
/// (as text when it is UTF-8; the first bytes only when it was truncated).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inspected {
    #[serde(flatten)]
    pub listed: dead_letters::Listed,
    /// The body as kept, when it is text.
    pub body: Option<String>,
    /// Bytes kept of the body.
    pub kept: usize,
}

pub async fn detail(State(ctx): State<Context>, _: Staff, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let Some(k) = dead_letters::get(&mut conn, id).await.map_err(internal)? else {
        return Err(not_found(id));
    };
    let kept = k.body.len();
    let body = String::from_utf8(k.body).ok();
    Ok(Json(Inspected { listed: k.listed, body, kept }).into_response())
}

fn not_found(id: i64) -> ApiError {
    error(StatusCode::NOT_FOUND, ErrorCode::NotFound, &format!("no dead letter {id}"))
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct Note {
    #[serde(default)]
    pub note: String,
}

/// The operator's note from a body that may be empty (no note) or `{"note": "…"}`.
fn note_of(body: &[u8]) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    serde_json::from_slice::<Note>(body).map(|n| n.note).map_err(|e| {
        error(StatusCode::BAD_REQUEST, ErrorCode::Schema, &format!("the body is not {{\"note\": \"…\"}}: {e}"))
    })
}

/// What a settlement answers.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub dead_letter_id: i64,
    /// The audit entry of the action (or of the refused attempt); none for an unknown id.
    pub audit_id: Option<i64>,
    /// `replayed`, `discarded` or `refused`.
    pub outcome: &'static str,
    /// For a replay: what became of the message (`processed`, or `refused` with the business
    /// refusal's code).
    pub handled: Option<String>,
    pub code: Option<&'static str>,
    pub detail: Option<String>,
}

fn outcome(id: i64, settled: Settled, done: &'static str) -> Result<Outcome, ApiError> {
    match settled {
        Settled::Done { audit_id, handled } => {
            let (handled, code) = match handled {
                Some(Handled::Refused(_, c)) => (Some("refused".to_owned()), Some(c.code())),
                Some(_) => (Some("processed".to_owned()), None),
                None => (None, None),
            };
            Ok(Outcome { dead_letter_id: id, audit_id: Some(audit_id), outcome: done, handled, code, detail: None })
        }
        Settled::NotFound => Err(not_found(id)),
        Settled::Refused { audit_id, code, detail } => Ok(Outcome {
            dead_letter_id: id,
            audit_id: Some(audit_id),
            outcome: "refused",
            handled: None,
            code: Some(code.code()),
            detail: Some(detail),
        }),
    }
}

/// A refused settlement of one dead letter answers 409 with the typed error.
fn one(o: Outcome) -> Result<Response, ApiError> {
    match o.code {
        Some(code) if o.outcome == "refused" => {
            let code = ErrorCode::from_code(code).unwrap_or(ErrorCode::Unexpected);
            let detail = format!("{} (audit entry {})", o.detail.as_deref().unwrap_or(""), o.audit_id.unwrap_or(0));
            Err(error(StatusCode::CONFLICT, code, &detail))
        }
        _ => Ok(Json(o).into_response()),
    }
}

pub async fn replay_one(
    State(ctx): State<Context>,
    Staff(who): Staff,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let note = note_of(&body)?;
    let name = who.role.common_name();
    let by = Actor { name: &name, role: who.role.unit(), note: &note };
    one(outcome(id, replay::replay(&ctx, id, &by).await.map_err(internal)?, "replayed")?)
}

pub async fn discard_one(
    State(ctx): State<Context>,
    Staff(who): Staff,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let note = note_of(&body)?;
    let name = who.role.common_name();
    let by = Actor { name: &name, role: who.role.unit(), note: &note };
    one(outcome(id, replay::discard(&ctx, id, &by).await.map_err(internal)?, "discarded")?)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Selection {
    pub ids: Vec<i64>,
    #[serde(default)]
    pub note: String,
}

/// Replays a selection, each dead letter in a transaction of its own, in the order given;
/// answers what became of each (a refusal of one does not stop the others).
pub async fn replay_selection(
    State(ctx): State<Context>,
    Staff(who): Staff,
    Json(sel): Json<Selection>,
) -> Result<Response, ApiError> {
    if sel.ids.is_empty() || sel.ids.len() > SELECTION_MAX {
        let detail = format!("select 1 to {SELECTION_MAX} dead letters; {} given", sel.ids.len());
        return Err(error(StatusCode::BAD_REQUEST, ErrorCode::Schema, &detail));
    }
    let name = who.role.common_name();
    let by = Actor { name: &name, role: who.role.unit(), note: &sel.note };
    let mut out = Vec::with_capacity(sel.ids.len());
    for id in sel.ids {
        let settled = replay::replay(&ctx, id, &by).await.map_err(internal)?;
        match outcome(id, settled, "replayed") {
            Ok(o) => out.push(o),
            Err(_) => out.push(Outcome {
                dead_letter_id: id,
                audit_id: None,
                outcome: "refused",
                handled: None,
                code: Some(ErrorCode::NotFound.code()),
                detail: Some(format!("no dead letter {id}")),
            }),
        }
    }
    Ok(Json(out).into_response())
}
