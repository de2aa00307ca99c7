//! The pipe's own messages (投递): a province whose adapter lost part of its store (restored from
//! a backup) asks the hub to send again what it sent it since a time; the receiving adapter
//! recognizes what it already has by message id, so nothing arrives twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `replay.request`: province → hub, send me again everything you sent me since `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayRequest {
    pub since: DateTime<Utc>,
}

/// `replay.result`: hub → province, how many messages go out again, and from when the hub still
/// keeps what it sent (its outbox retention): what was sent before is not available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayResult {
    pub since: DateTime<Utc>,
    pub resent: u32,
    /// The oldest message the hub still keeps for this province, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_since: Option<DateTime<Utc>>,
}
