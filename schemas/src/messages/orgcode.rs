//! `orgcode.*`: organization-code updates (机构代码, domain.md §B.4, §D). The national office
//! loads batches of change records from the national institution-code system (divisions
//! yearly, schools quarterly); each record goes to the province it concerns, numbered in that
//! province's own sequence; the province confirms it (确认变动); additions and changes take
//! effect then, a revocation once nothing references the unit any more.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::common::UpTo;
use crate::CaseId;
use crate::ids::{BatchId, DivisionCode, PersonName, SchoolCode, Stage, Text};

/// Most change records in one batch.
pub const RECORDS_MAX: usize = 20_000;

/// What a batch changes: administrative divisions (行政区划变动, yearly in September) or schools
/// (学校变动, quarterly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnitKind {
    Division,
    School,
}

/// 数据变化类型.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeAction {
    /// 新增
    Add,
    /// 变更 (name, level, parent; for a school also its supervising department and stages)
    Change,
    /// 撤销
    Revoke,
    /// 撤销教育阶段: one education stage of a school.
    RevokeStage,
}

impl ChangeAction {
    /// Whether the record waits for its blockers before it takes effect.
    pub fn is_revocation(self) -> bool {
        matches!(self, ChangeAction::Revoke | ChangeAction::RevokeStage)
    }
}

/// 教育部门级别.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DepartmentLevel {
    /// 省级
    Province,
    /// 地市级
    City,
    /// 区县级
    County,
}

/// An education department (教育行政部门), identified by its division code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Department {
    pub code: DivisionCode,
    pub name: Text,
    pub level: DepartmentLevel,
    /// 上级教育部门代码; none for a province's own department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<DivisionCode>,
}

/// A school as the institution-code system describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchoolUnit {
    pub code: SchoolCode,
    pub name: Text,
    /// 主管教育部门: who confirms its changes and reviews its department-level steps.
    pub department: DivisionCode,
    /// 教育阶段 it runs.
    #[serde(default, skip_serializing_if = "UpTo::is_empty")]
    pub stage: UpTo<Stage, 3>,
    /// A newly linked code syncs to the national side within 1–2 days ([003 Q39]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_usable_from: Option<DateTime<Utc>>,
}

/// One change record (变动记录): the unit as it is after the change (or as it was, for a
/// revocation), and for `REVOKE_STAGE` the stage revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgRecord {
    pub action: ChangeAction,
    /// The department, in a division batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Department>,
    /// The school, in a school batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub school: Option<SchoolUnit>,
    /// The stage a `REVOKE_STAGE` revokes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
}

impl OrgRecord {
    /// The code of the unit it changes (a division code or a school identification code).
    pub fn unit_code(&self) -> &str {
        match (&self.department, &self.school) {
            (Some(d), _) => d.code.as_ref(),
            (None, Some(s)) => s.code.as_ref(),
            (None, None) => "",
        }
    }

    /// Checks what the XSD cannot: the unit matches the batch's kind, and a stage is named
    /// exactly when one is revoked.
    ///
    /// # Errors
    /// What is wrong, in Chinese and English.
    pub fn check(&self, kind: UnitKind) -> Result<(), String> {
        match (kind, &self.department, &self.school) {
            (UnitKind::Division, Some(_), None) | (UnitKind::School, None, Some(_)) => {}
            (UnitKind::Division, ..) => {
                return Err(
                    "行政区划批次的记录须且只须含 department / a division record has exactly a department".into()
                );
            }
            (UnitKind::School, ..) => {
                return Err("学校批次的记录须且只须含 school / a school record has exactly a school".into());
            }
        }
        match (self.action, self.stage, kind) {
            (ChangeAction::RevokeStage, Some(_), UnitKind::School) => Ok(()),
            (ChangeAction::RevokeStage, ..) => {
                Err("撤销教育阶段仅用于学校且须指明 stage / REVOKE_STAGE is for a school and names its stage".into())
            }
            (_, Some(_), _) => Err("只有撤销教育阶段可指明 stage / only REVOKE_STAGE names a stage".into()),
            _ => Ok(()),
        }
    }
}

/// A batch as the national office loads it (JSON file, `hub ops load-batch`): the same id and
/// version again is a no-op; other content under them is refused; a correction is a new
/// version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgBatch {
    pub batch_id: BatchId,
    pub version: u32,
    pub kind: UnitKind,
    /// 发布日期
    pub published_on: NaiveDate,
    pub record: UpTo<OrgRecord, RECORDS_MAX>,
}

/// 处理状态 of one record at one province.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeState {
    /// 未确认
    Unconfirmed,
    /// 已确认: a revocation waiting for its blockers.
    Confirmed,
    /// 处理完毕
    Done,
}

/// `orgcode.change`: hub → the province the record concerns, in that province's sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgcodeChange {
    /// The province's own sequence number, from 1 without gaps: its adapter passes the records
    /// on in this order and asks for what is missing (`orgcode.resend`).
    pub sequence: u64,
    /// The record's id, named by the confirmation.
    pub change_id: CaseId,
    pub batch_id: BatchId,
    pub version: u32,
    pub kind: UnitKind,
    pub published_on: NaiveDate,
    /// The department that must confirm it: the province's own for a division, the school's
    /// supervising department for a school.
    pub confirm_by: DivisionCode,
    pub record: OrgRecord,
}

/// `orgcode.confirm`: province → hub, 确认变动 by the registrar of `unit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgcodeConfirm {
    pub change_id: CaseId,
    /// The confirming department: the record's `confirmBy`.
    pub unit: DivisionCode,
    pub reviewer: PersonName,
}

/// What keeps a revocation from executing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blockers {
    /// Open cross-province business naming the unit (transfers, enrollments, problem groups).
    pub business: u32,
    /// Students on the school's roll (of the stage, for a stage revocation).
    pub students: u32,
    /// Active schools under the division.
    pub schools: u32,
    /// Active departments under the division.
    pub departments: u32,
}

impl Blockers {
    pub fn none(&self) -> bool {
        *self == Blockers::default()
    }
}

/// `orgcode.status`: hub → province, where a confirmed record stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgcodeStatus {
    pub change_id: CaseId,
    pub sequence: u64,
    pub state: ChangeState,
    /// For a revocation still waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blockers: Option<Blockers>,
}

/// `orgcode.revoked`: hub → province, the revocation executed now (处理完毕). For a school or a
/// division, the unit's accounts are to be disabled at this moment ([002 §20]); for one stage,
/// `disableAccounts` is false and the province decides (domain.md G-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgcodeRevoked {
    pub change_id: CaseId,
    pub sequence: u64,
    /// The record that executed: the unit revoked (and the stage).
    pub record: OrgRecord,
    pub revoked_at: DateTime<Utc>,
    pub disable_accounts: bool,
}

/// `orgcode.resend`: province (its adapter) → hub, a gap in the sequence: send every record
/// after `after` again, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgcodeResend {
    pub after: u64,
}
