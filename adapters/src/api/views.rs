//! What the local API answers, as types: the handlers build them, and the OpenAPI document
//! ([`super::openapi`]) is generated from them, so the two cannot drift apart.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::store::InboxEntry;

/// `POST /messages` accepted it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Submission {
    pub message_id: String,
    pub state: SubmissionState,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub enum SubmissionState {
    /// Durably queued now (202).
    #[serde(rename = "queued")]
    Queued,
    /// The same message was queued before (200): nothing changed.
    #[serde(rename = "already queued")]
    AlreadyQueued,
}

/// Where a submitted message stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// In the outbox, not yet tried.
    Queued,
    /// Tried, not yet confirmed by the broker.
    Published,
    /// The broker has it.
    Confirmed,
    /// The hub replied (`reply`).
    Answered,
}

/// `GET /messages/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatus {
    pub message_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub case_id: Option<String>,
    pub state: DeliveryState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub submitted_at: String,
    pub confirmed_at: Option<String>,
    pub reply: Option<Reply>,
}

/// The hub's reply to a submission.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub message_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub received_at: String,
    /// The reply as JSON; absent when it could not be read.
    #[schemars(with = "Option<schemas::codec::WireEnvelope>")]
    pub envelope: Option<serde_json::Value>,
}

/// An inbox entry in a listing, with its message when `body=true`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    #[serde(flatten)]
    pub entry: InboxEntry,
    /// The message as received (XML), with `body=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// `GET /inbox/{id}?format=json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxMessage {
    pub entry: InboxEntry,
    #[schemars(with = "schemas::codec::WireEnvelope")]
    pub envelope: serde_json::Value,
}

/// `POST /inbox/ack`: the ids to acknowledge.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AckRequest {
    pub ids: Vec<String>,
}

/// How many of them were found and acknowledged.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Acknowledged {
    pub acknowledged: u64,
}

/// `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Readiness {
    pub ready: bool,
    /// The broker link is up.
    pub link: bool,
    /// The store answered within a second.
    pub store: bool,
}

/// `GET /status`: the link and the queues, as they are now.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub province: Option<String>,
    pub connected: bool,
    pub connected_since: Option<chrono::DateTime<chrono::Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    pub outbox: OutboxDepth,
    pub inbox: InboxDepth,
    /// Messages found in the queue that did not come from the hub: kept aside.
    pub refused: i64,
    pub certificate: CertificateView,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxDepth {
    pub queued: i64,
    pub awaiting_reply: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InboxDepth {
    pub pending: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateView {
    pub serial: String,
    pub not_after: chrono::DateTime<chrono::Utc>,
    pub days_to_expiry: i64,
}
