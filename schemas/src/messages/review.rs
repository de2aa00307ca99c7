//! `review.*`: one party's decision on one step of a case (核办).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::apply::EVIDENCE_MAX;
use super::common::{Attachment, Business, Decision, ReviewStep, StudentStatus, UpTo};
use crate::ids::{DivisionCode, Grade, PersonName, ProvinceCode, SchoolCode, StudentId, Text};

/// A decision already taken on the case, shown to later reviewers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepRecord {
    pub step: ReviewStep,
    pub decision: Decision,
    pub unit: Text,
    pub reviewer: PersonName,
    pub opinion: Text,
    pub decided_at: DateTime<Utc>,
}

/// What a reviewer sees of the case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseSummary {
    pub business: Business,
    pub student_name: PersonName,
    pub student_id: StudentId,
    pub status: StudentStatus,
    pub in_province: ProvinceCode,
    pub in_school: SchoolCode,
    pub out_province: ProvinceCode,
    pub out_school: SchoolCode,
    pub current_grade: Grade,
    pub target_grade: Grade,
    pub reason: Text,
    /// The initiator's evidence; approvers on both sides see it (domain.md R25).
    #[serde(default, skip_serializing_if = "UpTo::is_empty")]
    pub evidence: UpTo<Attachment, EVIDENCE_MAX>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<StepRecord>,
}

/// `review.request`: hub → the province that must act on `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewRequest {
    pub step: ReviewStep,
    /// Last working day of the step (10 working days, [003 Q33]).
    pub deadline: NaiveDate,
    /// 主管教育部门 of the step's school (its side's), as the registry has it when the step
    /// starts: department-level steps are routed by it (domain.md D.6). None when the registry
    /// does not know the school's department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<DivisionCode>,
    pub case: CaseSummary,
}

/// `review.decision`: acting province → hub. One case per decision: there is no bulk
/// approval of transfers (domain.md R37).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewDecision {
    pub step: ReviewStep,
    pub decision: Decision,
    /// The reviewing unit (school or department) as the province names it.
    pub unit: Text,
    pub reviewer: PersonName,
    /// 核办意见
    pub opinion: Text,
}
