//! Problem groups on the operator API: the lists and one group's whole history for operators
//! and the national office; the evidence, arbitration decisions and loading of legacy groups
//! for the national office only.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use certs::signature::Signer;
use chrono::Utc;
use schemas::ErrorCode;
use schemas::ids::{StudentId, Text};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{NationalOffice, Staff};
use super::{ApiError, error, internal};
use crate::context::Context;
use crate::evidence;
use crate::handlers::problem::{self, Acted, LoadGroup};
use crate::message_log::{self, Selection};
use crate::outgoing::Cause;
use crate::store::{cases, problems};
use crate::unit::UnitOfWork;

/// Groups by province, kind, state and whom they wait on, longest waiting first.
pub async fn list(
    State(ctx): State<Context>,
    _: Staff,
    Query(f): Query<problems::Filter>,
) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    Ok(Json(problems::list(&mut conn, &f).await.map_err(internal)?).into_response())
}

/// The national office's queue: groups waiting for arbitration, oldest first, with their age.
pub async fn arbitrations(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let filter = problems::Filter { state: Some("arbitration".into()), limit: Some(1000), ..Default::default() };
    let now = Utc::now();
    let rows: Vec<_> = problems::list(&mut conn, &filter)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|r| {
            let age = (now - r.waiting_since).num_seconds();
            serde_json::json!({ "group": r, "waitingSeconds": age })
        })
        .collect();
    Ok(Json(rows).into_response())
}

/// One group: its members and their states, whom it waits on since when, and its whole
/// history (every turn, result with its approvals and evidence references, decision).
pub async fn detail(State(ctx): State<Context>, _: Staff, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let Some(g) = problems::get(&mut conn, id).await.map_err(internal)? else {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::GroupNotFound, &format!("no problem group {id}")));
    };
    let waiting_on = match g.waiting_on() {
        None => serde_json::Value::Null,
        Some(crate::workflow::problem::WaitingOn::NationalOffice) => "national-office".into(),
        Some(crate::workflow::problem::WaitingOn::Provinces(p)) => {
            p.iter().map(|p| p.code().to_owned()).collect::<Vec<_>>().into()
        }
    };
    Ok(Json(serde_json::json!({
        "group": g,
        "waitingOn": waiting_on,
        "waitingSince": g.waiting_since,
        "events": problems::events(&mut conn, id).await.map_err(internal)?,
    }))
    .into_response())
}

/// One evidence file of a group, as the province sent it (national office only: the files
/// show minors' identity documents).
pub async fn evidence(
    State(ctx): State<Context>,
    _: NationalOffice,
    Path((id, sha256)): Path<(Uuid, String)>,
) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let Some((media_type, _name, content)) = problems::evidence(&mut conn, id, &sha256).await.map_err(internal)? else {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::NotFound, &format!("no evidence {sha256} in group {id}")));
    };
    Ok(([(header::CONTENT_TYPE, media_type)], Body::from(content)).into_response())
}

/// The group's evidence bundle from the message log, as one tar (national office only: it holds
/// the messages' bytes, minors' identity data among them). The download is audited.
pub async fn bundle(
    State(ctx): State<Context>,
    NationalOffice(who): NationalOffice,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    if problems::get(&mut conn, id).await.map_err(internal)?.is_none() {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::GroupNotFound, &format!("no problem group {id}")));
    }
    // Not held while the bundle is made: that may wait for the sealer.
    drop(conn);
    let signer = Signer::load(&ctx.settings.broker.cert, &ctx.settings.broker.key).map_err(internal)?;
    let (bundle, written) = match message_log::bundle(&ctx, &signer, Selection::Group(id)).await {
        Ok(b) => b,
        Err(e) if e.is::<message_log::NothingLogged>() => {
            return Err(error(StatusCode::NOT_FOUND, ErrorCode::NotFound, &e.to_string()));
        }
        Err(e) => return Err(internal(e)),
    };
    let name = format!("problem-{id}");
    let archive = evidence::tar(&name, &bundle, Utc::now()).map_err(internal)?;
    let detail =
        format!("problem group {id}: {} messages, positions {} to {}", written.selected, written.from, written.to);
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    cases::audit(&mut conn, &who.role.common_name(), who.role.unit(), "export-evidence", Some(id), &detail)
        .await
        .map_err(internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.tar\"")),
        ],
        Body::from(archive),
    )
        .into_response())
}

/// A comment on one record.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Comment {
    pub student_id: StudentId,
    pub comment: Text,
}

/// 仲裁: which record is upheld (仲裁通过); every other is not (仲裁不通过).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Decision {
    pub upheld: StudentId,
    #[serde(default)]
    pub comments: Vec<Comment>,
}

fn refused((code, detail): (ErrorCode, String)) -> ApiError {
    let status = if code == ErrorCode::GroupNotFound { StatusCode::NOT_FOUND } else { StatusCode::CONFLICT };
    error(status, code, &detail)
}

/// The national office's decision, audited, in a unit of work caused by the audit entry.
pub async fn decide(
    State(ctx): State<Context>,
    NationalOffice(who): NationalOffice,
    Path(id): Path<Uuid>,
    Json(d): Json<Decision>,
) -> Result<Response, ApiError> {
    let mut unit = UnitOfWork::begin(&ctx.pool, Utc::now()).await.map_err(internal)?;
    let name = who.role.common_name();
    let comments: Vec<(StudentId, Text)> = d.comments.into_iter().map(|c| (c.student_id, c.comment)).collect();
    let now = unit.now;
    match problem::decide(unit.conn(), id, &d.upheld, &comments, &name, now).await.map_err(internal)? {
        Acted::Refused(r) => Err(refused(r)),
        Acted::Done { group_id, replies } => {
            let detail = format!("upheld {}", d.upheld);
            let audit_id = cases::audit(unit.conn(), &name, who.role.unit(), "arbitrate", Some(id), &detail)
                .await
                .map_err(internal)?;
            unit.finish(&Cause::Operator { audit_id }, replies, None).await.map_err(internal)?;
            Ok(Json(serde_json::json!({ "groupId": group_id, "auditId": audit_id })).into_response())
        }
    }
}

/// Loads a legacy group (national office only); the same records loaded again answer with the
/// group they opened.
pub async fn load(
    State(ctx): State<Context>,
    NationalOffice(who): NationalOffice,
    Json(l): Json<LoadGroup>,
) -> Result<Response, ApiError> {
    let mut unit = UnitOfWork::begin(&ctx.pool, Utc::now()).await.map_err(internal)?;
    let name = who.role.common_name();
    let now = unit.now;
    match problem::load(unit.conn(), &l, &name, now).await.map_err(internal)? {
        Acted::Refused(r) => Err(refused(r)),
        Acted::Done { group_id, replies } => {
            let audit_id = cases::audit(unit.conn(), &name, who.role.unit(), "load-group", Some(group_id.uuid()), "")
                .await
                .map_err(internal)?;
            unit.finish(&Cause::Operator { audit_id }, replies, None).await.map_err(internal)?;
            Ok((StatusCode::CREATED, Json(serde_json::json!({ "groupId": group_id, "auditId": audit_id })))
                .into_response())
        }
    }
}
