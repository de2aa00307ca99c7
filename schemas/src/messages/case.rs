//! `case.*`: acceptance, status, reminders, cancellation, release and closing of a case.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::common::{Business, CaseState, ReviewStep, Waiting};
use crate::error::ErrorCode;
use crate::ids::Text;

/// `case.accepted`: hub → initiator, the application became a case (its id is in the
/// envelope's `caseId`, the application's message id in `correlationId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseAccepted {
    pub business: Business,
    pub state: CaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// `case.status`: hub → both provinces, on every state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseStatus {
    pub business: Business,
    pub state: CaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    pub changed_at: DateTime<Utc>,
}

/// When a reminder is sent relative to the step's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReminderKind {
    /// Before the deadline.
    Upcoming,
    /// On the last working day.
    Due,
    /// After it.
    Overdue,
}

/// `case.reminder`: hub → the province that must act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseReminder {
    pub step: ReviewStep,
    pub deadline: NaiveDate,
    pub kind: ReminderKind,
}

/// `case.cancel`: initiator → hub (撤销).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseCancel {
    pub reason: Text,
}

/// Why a hold is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReleaseReason {
    Rejected,
    Cancelled,
}

/// `case.release`: hub → holding province, close your side of the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseRelease {
    pub reason: ReleaseReason,
}

/// `case.released`: holding province → hub, its side is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseReleased {}

/// Final outcome of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// 调档完毕
    Completed,
    /// 核办不通过
    Rejected,
    /// 撤销完毕
    Cancelled,
    /// 校验错误: refused before any review.
    Refused,
}

/// `case.closed`: hub → both provinces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseClosed {
    pub outcome: Outcome,
    /// Why, when the case was refused (a verification failure such as `E_STUDENT_NOT_FOUND`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<Text>,
}
