//! `index.*`: provinces keep the national student index (全国学籍索引) current.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::common::{Batch, StudentStatus};
use super::problem::ProblemKind;
use crate::ids::{Grade, IdDocument, PersonName, SchoolCode, Sex, StudentId, Text};

/// Most students per index message, so one message stays far below the size cap.
pub const INDEX_BATCH_MAX: usize = 1000;

/// One student as the national index knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StudentSummary {
    pub student_id: StudentId,
    pub name: PersonName,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub id_document: IdDocument,
    pub school: SchoolCode,
    pub grade: Grade,
    pub status: StudentStatus,
    /// 是否问题学籍: an open problem record blocks cross-province business.
    pub problem_record: bool,
    /// 在办业务: business open in the province (status change, key-data change, …).
    pub open_business: bool,
    /// When the province last changed this record; older updates never overwrite newer ones.
    pub changed_at: DateTime<Utc>,
    /// The kind of the open problem record, when `problemRecord` is true and the province
    /// knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_kind: Option<ProblemKind>,
    /// 注册时间: when the record was registered. With `keyDataChangedAt` it decides who handles
    /// a problem group first (domain.md C.4); absent, `changedAt` stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<DateTime<Utc>>,
    /// 关键数据变更时间: when the key identity data last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_data_changed_at: Option<DateTime<Utc>>,
}

impl StudentSummary {
    /// When the record last became what it is: the later of its registration and its last
    /// key-data change (domain.md C.4: the later one is handled first).
    pub fn identity_since(&self) -> DateTime<Utc> {
        match (self.registered_at, self.key_data_changed_at) {
            (Some(r), Some(k)) => r.max(k),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => self.changed_at,
        }
    }
}

/// `index.upsert`: province → hub, students added or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexUpsert {
    pub student: Batch<StudentSummary, INDEX_BATCH_MAX>,
}

/// One student leaving the index (deleted in the province).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexRemoval {
    pub student_id: StudentId,
    pub changed_at: DateTime<Utc>,
}

/// `index.remove`: province → hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexRemove {
    pub entry: Batch<IndexRemoval, INDEX_BATCH_MAX>,
}

/// `index.resync`: hub → province, report these students again (`index.upsert`, or
/// `index.remove` for one it no longer holds): what the province said in a case disagrees with
/// what it reported to the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexResync {
    pub student_id: Batch<StudentId, INDEX_BATCH_MAX>,
    pub reason: Text,
}

/// `index.result`: hub → province, what an upsert or remove changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexResult {
    /// Entries applied.
    pub applied: u32,
    /// Entries ignored because the index already held a newer change.
    pub stale: u32,
    /// Entries refused because the student is registered to another province; those go
    /// through problem-record handling, not the index.
    pub conflicting: u32,
}
