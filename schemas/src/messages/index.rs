//! `index.*`: provinces keep the national student index (全国学籍索引) current.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::common::{Batch, StudentStatus};
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
