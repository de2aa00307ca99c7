//! The local API for the provincial system (localhost by default): submit messages (XML per the
//! XSD, or the same model as JSON), pull and acknowledge the inbox, ask where a message stands,
//! and see the state of the link.
//!
//! Errors are the exchange's typed errors: `{"code", "messageZh", "messageEn",
//! "offendingMessageId", "detail"}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use schemas::messages::ErrorReport;
use schemas::{Envelope, ErrorCode, MessageId, MessageType, Party, codec};
use serde::Deserialize;
use sha2::Digest;
use sqlx::SqlitePool;

pub mod openapi;
pub mod views;

use self::views::*;
use crate::identity::Identity;
use crate::link::LinkState;
use crate::store::{self, Submitted};

#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    pub me: Party,
    pub identity: Arc<Identity>,
    pub link: Arc<LinkState>,
    pub max_bytes: usize,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    // Submissions may be as large as a message may be (an archive attachment in base64); the
    // framework's own 2 MB default would refuse a valid application with several evidence files.
    let body_limit = axum::extract::DefaultBodyLimit::max(state.max_bytes);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/messages", post(submit))
        .route("/messages/{id}", get(message_status))
        .route("/inbox", get(inbox_list))
        .route("/inbox/ack", post(inbox_ack_many))
        .route("/inbox/{id}", get(inbox_get))
        .route("/inbox/{id}/ack", post(inbox_ack))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .layer(body_limit)
        .layer(axum::middleware::map_response(certs::serve::typed_errors))
        .layer(axum::middleware::from_fn(certs::serve::access_log))
        .with_state(state)
}

/// The probes and the metrics alone (no student data), for a plain listener beside a TLS API.
pub fn probe_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// A typed error as an HTTP response.
struct ApiError(StatusCode, ErrorReport);

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, offending: Option<MessageId>, detail: &str) -> Self {
        ApiError(status, ErrorReport::new(code, offending, Some(detail)))
    }

    fn internal(e: anyhow::Error) -> Self {
        tracing::error!(error = format!("{e:#}"), "Local API failure.");
        // Never the internal text to the caller; it is in the log.
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorReport::new(ErrorCode::Unavailable, None, Some("the adapter could not complete the request; retry")),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// The message types a province sends to the hub.
fn province_may_send(t: MessageType) -> bool {
    use MessageType::*;
    matches!(
        t,
        IndexUpsert
            | IndexRemove
            | LookupRequest
            | TransferApply
            | EnrollmentApply
            | EnrollmentPermit
            | VerifyResult
            | ReviewDecision
            | CaseCancel
            | CaseQuery
            | CaseReleased
            | ArchivePackage
            | ArchiveAttachment
            | ArchiveImported
            | ArchiveCommitted
            | ReplayRequest
            | ProblemResult
            | ProblemReprocess
            | OrgcodeConfirm
    )
}

/// Validates a submission and commits it to the outbox; only then answers.
async fn submit(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/xml");
    let parsed = if content_type.starts_with("application/json") {
        codec::from_json(&body, s.max_bytes)
    } else if content_type.starts_with("application/xml") || content_type.starts_with("text/xml") {
        codec::from_xml(&body, s.max_bytes)
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Malformed,
            None,
            &format!("Content-Type {content_type}: send application/xml or application/json"),
        ));
    };
    let env: Envelope = parsed.map_err(|e| {
        let status =
            if e.code == ErrorCode::TooLarge { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
        ApiError(status, e.report())
    })?;
    if env.sender != s.me {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Sender,
            Some(env.message_id),
            &format!("this adapter speaks for {}, the message says {}", s.me, env.sender),
        ));
    }
    if env.recipient != Party::Hub || !province_may_send(env.message_type()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unexpected,
            Some(env.message_id),
            &format!("a province sends {} to the hub? no: only province-to-hub types are accepted", env.message_type()),
        ));
    }
    // Queued in canonical form: what was validated is exactly what goes out.
    let xml = codec::to_xml(&env).into_bytes();
    let digest: [u8; 32] = sha2::Sha256::digest(&xml).into();
    let case = env.case_id.map(|c| c.to_string());
    let outcome =
        store::submit(&s.pool, env.message_id.as_ref(), env.message_type().as_str(), case.as_deref(), &digest, &xml)
            .await
            .map_err(ApiError::internal)?;
    let (status, state) = match outcome {
        Submitted::Queued => (StatusCode::ACCEPTED, SubmissionState::Queued),
        Submitted::AlreadyQueued => (StatusCode::OK, SubmissionState::AlreadyQueued),
        Submitted::Conflict => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Duplicate,
                Some(env.message_id),
                "this message id was already used for a different message",
            ));
        }
    };
    s.link.wake.notify_one();
    if outcome == Submitted::Queued {
        metrics::counter!("adapter_messages_submitted_total").increment(1);
    }
    Ok((status, Json(Submission { message_id: env.message_id.to_string(), state })).into_response())
}

/// Where a submitted message stands: queued, published (tried, not yet confirmed), confirmed
/// (the broker has it), answered (the hub replied; the reply is included).
async fn message_status(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Some(st) = store::outbox_status(&s.pool, &id).await.map_err(ApiError::internal)? else {
        let offending = MessageId::parse(&id).ok();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::MessageNotFound,
            offending,
            "no message with this id was submitted here",
        ));
    };
    let state = match (st.state.as_str(), &st.answered_by, st.attempts) {
        (_, Some(_), _) => DeliveryState::Answered,
        ("confirmed", None, _) => DeliveryState::Confirmed,
        (_, None, 0) => DeliveryState::Queued,
        _ => DeliveryState::Published,
    };
    let reply = match &st.answered_by {
        Some(reply_id) => {
            store::inbox_get(&s.pool, reply_id).await.map_err(ApiError::internal)?.map(|(entry, body)| {
                let envelope = codec::from_xml(&body, s.max_bytes)
                    .ok()
                    .and_then(|e| serde_json::from_str::<serde_json::Value>(&codec::to_json(&e)).ok());
                Reply {
                    message_id: entry.message_id,
                    message_type: entry.message_type,
                    received_at: entry.received_at,
                    envelope,
                }
            })
        }
        None => None,
    };
    Ok(Json(MessageStatus {
        message_id: st.message_id,
        message_type: st.message_type,
        case_id: st.case_id,
        state,
        attempts: st.attempts,
        last_error: st.last_error,
        submitted_at: st.submitted_at,
        confirmed_at: st.confirmed_at,
        reply,
    })
    .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    /// Only entries after this cursor (an entry's `seq`).
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
    /// Only entries not yet acknowledged (default true).
    #[serde(default = "default_true")]
    pending: bool,
    /// Include each message (XML) in the listing, saving a request per message; the page then
    /// holds at most [`store::LISTING_MAX_BYTES`] of messages (always its first entry).
    #[serde(default)]
    body: bool,
}

fn default_limit() -> i64 {
    100
}

fn default_true() -> bool {
    true
}

/// A message as JSON text: kept as is when it is UTF-8 (every readable one), without a copy.
fn xml_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

async fn inbox_list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let limit = q.limit.clamp(1, 1000);
    let out: Vec<Listed> = if q.body {
        let listed =
            store::inbox_list_with_bodies(&s.pool, q.after, limit, q.pending).await.map_err(ApiError::internal)?;
        listed.into_iter().map(|(entry, b)| Listed { entry, body: Some(xml_text(b)) }).collect()
    } else {
        let entries = store::inbox_list(&s.pool, q.after, limit, q.pending).await.map_err(ApiError::internal)?;
        entries.into_iter().map(|entry| Listed { entry, body: None }).collect()
    };
    Ok(Json(out).into_response())
}

/// Acknowledges many inbox messages at once; answers how many were found.
async fn inbox_ack_many(State(s): State<AppState>, Json(req): Json<AckRequest>) -> Result<Response, ApiError> {
    crate::failpoint::pass(crate::failpoint::INBOX_BEFORE_ACK);
    let acknowledged = store::inbox_ack_many(&s.pool, &req.ids).await.map_err(ApiError::internal)?;
    Ok(Json(Acknowledged { acknowledged }).into_response())
}

#[derive(Deserialize)]
struct GetQuery {
    /// `xml` (default, the message as received) or `json`.
    format: Option<String>,
}

async fn inbox_get(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    let Some((entry, body)) = store::inbox_get(&s.pool, &id).await.map_err(ApiError::internal)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::MessageNotFound,
            MessageId::parse(&id).ok(),
            "no such inbox message",
        ));
    };
    if q.format.as_deref() == Some("json") {
        let env =
            codec::from_xml(&body, s.max_bytes).map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.report()))?;
        let json: serde_json::Value =
            serde_json::from_str(&codec::to_json(&env)).map_err(|e| ApiError::internal(e.into()))?;
        return Ok(Json(InboxMessage { entry, envelope: json }).into_response());
    }
    Ok(([(header::CONTENT_TYPE, "application/xml")], body).into_response())
}

async fn inbox_ack(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if store::inbox_ack(&s.pool, &id).await.map_err(ApiError::internal)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::MessageNotFound,
            MessageId::parse(&id).ok(),
            "no such inbox message",
        ))
    }
}

/// How long readiness and metrics wait for the store.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Ready when the broker link is up and the store answers: 200, else 503, at once.
async fn readyz(State(s): State<AppState>) -> Response {
    let store = matches!(tokio::time::timeout(STORE_WAIT, store::depths(&s.pool)).await, Ok(Ok(_)));
    let link = s.link.connected_since().is_some();
    let ready = store && link;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(Readiness { ready, link, store })).into_response()
}

/// Prometheus metrics: the link, both directions' depths, the oldest unsent submission, the
/// certificate's time to expiry, and counters of what moved.
async fn metrics(State(s): State<AppState>) -> String {
    metrics::gauge!("adapter_link_up").set(if s.link.connected_since().is_some() { 1.0 } else { 0.0 });
    let left = (s.identity.cert.not_after - Utc::now()).num_seconds() as f64;
    metrics::gauge!("adapter_certificate_expiry_seconds").set(left);
    if let Ok(Ok(d)) = tokio::time::timeout(STORE_WAIT, store::depths(&s.pool)).await {
        metrics::gauge!("adapter_outbox_queued").set(d.outbox_queued as f64);
        metrics::gauge!("adapter_outbox_awaiting_reply").set(d.outbox_awaiting_reply as f64);
        metrics::gauge!("adapter_inbox_pending").set(d.inbox_pending as f64);
        metrics::gauge!("adapter_refused").set(d.refused as f64);
    }
    if let Ok(Ok(age)) = tokio::time::timeout(STORE_WAIT, store::oldest_unsent_seconds(&s.pool)).await {
        metrics::gauge!("adapter_outbox_oldest_unsent_seconds").set(age);
    }
    s.metrics.render()
}

/// Installs the Prometheus recorder and describes every metric (counters start at zero).
///
/// # Errors
/// When a recorder is installed already.
pub fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics::{describe_counter, describe_gauge};
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    for (name, help) in [
        ("adapter_messages_submitted_total", "Submissions from the provincial system committed to the outbox."),
        ("adapter_messages_published_total", "Outbox messages confirmed by the broker."),
        ("adapter_messages_received_total", "Messages from the hub committed to the inbox."),
        ("adapter_messages_refused_total", "Messages found in the queue that did not come from the hub."),
        (
            "adapter_orgcode_gaps_total",
            "Organization-code records that arrived after a gap in the sequence (held back).",
        ),
    ] {
        describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    for (name, help) in [
        ("adapter_link_up", "1 while the broker link is up."),
        ("adapter_outbox_queued", "Submissions not yet confirmed by the broker."),
        ("adapter_outbox_awaiting_reply", "Submissions confirmed, no reply from the hub yet."),
        ("adapter_outbox_oldest_unsent_seconds", "Age of the oldest submission not yet confirmed by the broker."),
        ("adapter_inbox_pending", "Messages from the hub not yet taken by the provincial system."),
        ("adapter_refused", "Messages kept aside because they did not come from the hub."),
        ("adapter_certificate_expiry_seconds", "Seconds until this province's certificate expires."),
        ("adapter_build_info", "Always 1; the labels say which build runs."),
    ] {
        describe_gauge!(name, help);
    }
    metrics::gauge!("adapter_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// The link and the queues, as they are now.
async fn status(State(s): State<AppState>) -> Result<Response, ApiError> {
    let depths = store::depths(&s.pool).await.map_err(ApiError::internal)?;
    let cert = &s.identity.cert;
    let (error_at, error) = s.link.last_error().map_or((None, None), |(t, e)| (Some(t), Some(e)));
    Ok(Json(Status {
        province: s.me.province().map(|p| p.code().to_owned()),
        connected: s.link.connected_since().is_some(),
        connected_since: s.link.connected_since(),
        last_error: error,
        last_error_at: error_at,
        outbox: OutboxDepth { queued: depths.outbox_queued, awaiting_reply: depths.outbox_awaiting_reply },
        inbox: InboxDepth { pending: depths.inbox_pending, total: depths.inbox_total },
        refused: depths.refused,
        certificate: CertificateView {
            serial: cert.serial.clone(),
            not_after: cert.not_after,
            days_to_expiry: (cert.not_after - Utc::now()).num_days(),
        },
    })
    .into_response())
}
