//! `problem.*`: cross-province problem records (跨省问题学籍, domain.md §B.3, §C). A group
//! (问题学籍组) holds the records of one student in two or more provinces; the member registered
//! later acts first; a change or delete relays to the other side, an attestation passes the
//! turn; both attesting an ID duplicate goes to the national office (教育部仲裁).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{Attachment, AttachmentRef, Level, UpTo};
use crate::CaseId;
use crate::ids::{IdDocument, PersonName, ProvinceCode, SchoolCode, StudentId, Text};

/// Most evidence files on one handling result.
pub const PROBLEM_EVIDENCE_MAX: usize = 10;
/// Most approvals on one handling result (school, bureau, city, province and a few more).
pub const APPROVALS_MAX: usize = 8;
/// Most members of one group.
pub const MEMBERS_MAX: usize = 10;

/// 问题学籍类型 ([004 Annex 1], domain.md C.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProblemKind {
    /// 身份证件号重复: the same resident ID under two records (or one national student ID
    /// claimed by two provinces).
    IdDuplicate,
    /// 姓名性别出生日期重复: records without a resident ID sharing name, sex and birth date.
    NameSexBirthDuplicate,
    /// 身份证件号不存在
    IdNotFound,
    /// 身份证件号与姓名不匹配
    IdNameMismatch,
    /// 身份证件号已发生变更
    IdChanged,
}

impl ProblemKind {
    /// A duplicate found by de-duplication, as opposed to a failed authentication. Only a
    /// duplicate blocks post-graduation enrollment (domain.md R35).
    pub fn is_duplicate(self) -> bool {
        matches!(self, ProblemKind::IdDuplicate | ProblemKind::NameSexBirthDuplicate)
    }
}

/// 处理方式 (domain.md C.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HandlingMode {
    /// 佐证: the record is genuine.
    Attest,
    /// 变更: the record was entered wrongly and is corrected.
    Change,
    /// 删除: the record should not exist.
    Delete,
}

/// Where one member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MemberState {
    /// Not its turn yet.
    Waiting,
    /// Its province has the task (待处理).
    Handling,
    /// 仲裁不通过: its province has the task again, with only change or delete allowed.
    Rejected,
    /// 佐证 approved.
    Attested,
    /// 变更 approved.
    Changed,
    /// 删除 approved.
    Deleted,
    /// 自动佐证: every other member changed or deleted (N-1 rule, C.5).
    AutoAttested,
    /// 仲裁通过: no longer a problem record; keeps its identity.
    Upheld,
}

/// Where a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroupState {
    /// A member's province is handling it.
    Open,
    /// 等待仲裁: every member attested an ID duplicate; the national office decides.
    Arbitration,
    /// 已结束
    Closed,
}

/// One record of the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProblemMember {
    pub province: ProvinceCode,
    pub school: SchoolCode,
    pub student_id: StudentId,
    pub name: PersonName,
    /// 注册时间
    pub registered_at: DateTime<Utc>,
    /// 关键数据变更时间, if the key data changed after registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_data_changed_at: Option<DateTime<Utc>>,
    pub state: MemberState,
    /// The national office's comment (补充意见) on this member, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Text>,
}

/// Why a task was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskReason {
    /// The group opened and this record was registered (or its key data changed) last.
    FirstTurn,
    /// The member before it attested.
    OtherSideAttested,
    /// The national office did not uphold this record (仲裁不通过).
    ArbitrationRejected,
    /// Its own province started re-processing (发起重新处理).
    Reprocess,
}

/// `problem.task`: hub → province, handle this record of the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProblemTask {
    pub group_id: CaseId,
    pub kind: ProblemKind,
    /// The record to handle (one of the province's).
    pub student_id: StudentId,
    pub reason: TaskReason,
    /// Whether 佐证 is allowed; 变更 and 删除 always are.
    pub attest_allowed: bool,
    /// Every member, this one included.
    pub member: UpTo<ProblemMember, MEMBERS_MAX>,
}

/// One approval the result went through in its province (审核记录).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    pub level: Level,
    /// The approving unit (school or department).
    pub unit: Text,
    pub reviewer: PersonName,
    pub approved_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opinion: Option<Text>,
}

/// The identity a change sets (变更后信息): what changes, at least one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangedIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_document: Option<IdDocument>,
}

/// `problem.result`: province → hub, the approved handling of a record it was tasked with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProblemResult {
    pub group_id: CaseId,
    pub student_id: StudentId,
    pub mode: HandlingMode,
    /// Required for a change, absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<ChangedIdentity>,
    /// Every level of the province's chain for this mode, in order.
    #[serde(default, skip_serializing_if = "UpTo::is_empty")]
    pub approval: UpTo<Approval, APPROVALS_MAX>,
    /// 证明材料: required for all three modes (JPG/PNG/JPEG, each ≤ 2 MB: domain.md C.10).
    #[serde(default, skip_serializing_if = "UpTo::is_empty")]
    pub evidence: UpTo<Attachment, PROBLEM_EVIDENCE_MAX>,
}

/// `problem.relay`: hub → the other members' provinces, one member's approved result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProblemRelay {
    pub group_id: CaseId,
    pub province: ProvinceCode,
    pub student_id: StudentId,
    pub mode: HandlingMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<ChangedIdentity>,
    #[serde(default, skip_serializing_if = "UpTo::is_empty")]
    pub approval: UpTo<Approval, APPROVALS_MAX>,
    /// The evidence by reference; the national office keeps the files.
    #[serde(default, skip_serializing_if = "UpTo::is_empty")]
    pub evidence: UpTo<AttachmentRef, PROBLEM_EVIDENCE_MAX>,
}

/// `problem.status`: hub → province, where a group stands: to the sender of an accepted
/// result or re-processing, and to every member when the group goes to arbitration, is
/// decided, or closes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProblemStatus {
    pub group_id: CaseId,
    pub kind: ProblemKind,
    pub state: GroupState,
    /// The re-processed group this one continues, for a re-processing group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprocesses: Option<CaseId>,
    pub member: UpTo<ProblemMember, MEMBERS_MAX>,
}

/// `problem.reprocess`: province → hub, 发起重新处理 of one of its records in a finished group
/// (domain.md C.8): a new group for that record alone, handled by this province only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProblemReprocess {
    pub group_id: CaseId,
    pub student_id: StudentId,
    pub reason: Text,
}
