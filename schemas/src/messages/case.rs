//! `case.*`: acceptance, status, reminders, cancellation, release and closing of a case.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::common::{Business, CaseState, ReviewStep, Waiting};
use super::review::StepRecord;
use crate::error::ErrorCode;
use crate::ids::{Grade, PersonName, ProvinceCode, SchoolCode, StudentId, Text};

/// `case.accepted`: hub → initiator, the application became a case (its id is in the
/// envelope's `caseId`, the application's message id in `correlationId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseAccepted {
    pub business: Business,
    pub state: CaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// `case.status`: hub → both provinces, on every state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseStatus {
    pub business: Business,
    pub state: CaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    pub changed_at: DateTime<Utc>,
}

/// When a reminder is sent relative to the step's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReminderKind {
    /// Before the deadline.
    Upcoming,
    /// On the last working day.
    Due,
    /// After it.
    Overdue,
}

/// `case.reminder`: hub → the province that must act (and, once the step is overdue, the
/// other party too: its case is late).

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseReminder {
    pub step: ReviewStep,
    pub deadline: NaiveDate,
    pub kind: ReminderKind,
}

/// `case.cancel`: initiator → hub (撤销).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseCancel {
    pub reason: Text,
}

/// Why a hold is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReleaseReason {
    Rejected,
    Cancelled,
}

/// `case.release`: hub → holding province, close your side of the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseRelease {
    pub reason: ReleaseReason,
}

/// `case.released`: holding province → hub, its side is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseReleased {}

/// Final outcome of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
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

/// What the receiving side must still do once a case is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NextStep {
    /// 分班: assign the arrived student to a class; the provincial auxiliary ID, the exam
    /// platform and the evaluation sync depend on it (domain.md R21, [003 Q51]).
    ClassAssignment,
}

/// `case.closed`: hub → both provinces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseClosed {
    pub outcome: Outcome,
    /// Why, when the case was refused (a verification failure such as `E_STUDENT_NOT_FOUND`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<Text>,
    /// To the receiving province of a completed case: what its school must do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextStep>,
}

/// `case.query`: a party → hub, the case (envelope `caseId`) in full (查看明细).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseQuery {}

/// One change of a case's stage, and what caused it (a message type, a timer, an operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageChange {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Text>,
    pub to: Text,
    pub cause: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Text>,
}

/// `case.detail`: hub → the party that asked: what the case is, where it stands, who decided
/// what and when, every change of stage — what the national platform's 查看明细 shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseDetail {
    pub business: Business,
    pub state: CaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Last working day of the pending review step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<NaiveDate>,
    pub student_name: PersonName,
    pub student_id: StudentId,
    pub in_province: ProvinceCode,
    pub in_school: SchoolCode,
    pub out_province: ProvinceCode,
    pub out_school: SchoolCode,
    pub target_grade: Grade,
    pub reason: Text,
    pub opened_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    /// Requests sent for the current stage (a resend counts).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decision: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub change: Vec<StageChange>,
}
