//! `error`: a typed error reply to the sender of a message.

use serde::{Deserialize, Serialize};

use crate::envelope::MessageId;
use crate::error::ErrorCode;

/// Longest detail kept; the rest is cut (details can quote hostile input).
const DETAIL_MAX: usize = 1000;

/// `error`: code, Chinese and English text, the offending message id and a detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorReport {
    pub code: ErrorCode,
    pub message_zh: String,
    pub message_en: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offending_message_id: Option<MessageId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ErrorReport {
    /// A report for `code`; the detail is stripped of control characters and cut to 1000
    /// characters so that it always serializes cleanly.
    pub fn new(code: ErrorCode, offending: Option<MessageId>, detail: Option<&str>) -> Self {
        let detail = detail
            .map(|d| {
                d.chars()
                    .map(|c| if c.is_control() || !crate::ids::is_xml_char(c) { ' ' } else { c })
                    .take(DETAIL_MAX)
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .filter(|d| !d.is_empty());
        ErrorReport {
            code,
            message_zh: code.zh().to_owned(),
            message_en: code.en().to_owned(),
            offending_message_id: offending,
            detail,
        }
    }
}
