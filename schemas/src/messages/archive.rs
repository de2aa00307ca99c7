//! `archive.*`: the two-phase archive hand-over (调档). The out-province commits the
//! transfer-out only after the in-province confirmed the import, so a student is never lost
//! between provinces (seed 003 Q47).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::common::{AttachmentRef, StudentStatus, YearMonth};
use crate::choice::xml_choice;
use crate::ids::{Grade, IdDocument, PersonName, SchoolCode, Sex, StudentId, Text};

/// A family member or guardian (家庭成员或监护人).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FamilyMember {
    /// Relation to the student, as the province writes it (父亲, 母亲, …).
    pub relation: Text,
    pub name: PersonName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_document: Option<IdDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Text>,
}

/// A period of study at one school (学习简历).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StudyPeriod {
    pub from: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NaiveDate>,
    pub school_name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub school: Option<SchoolCode>,
}

/// One change in the record's history (学籍异动), with its evidence kept as attachments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordChange {
    pub on: NaiveDate,
    pub kind: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<Text>,
}

/// The electronic student archive (电子档案): basic record, family, study history, changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StudentRecord {
    pub student_id: StudentId,
    pub name: PersonName,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub id_document: IdDocument,
    /// 民族, two-digit GB 3304 code, when the province records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnicity: Option<Text>,
    /// 入学年月: counted from grade 1 of the current stage; does not change on transfer.
    pub enrolled: YearMonth,
    pub school: SchoolCode,
    pub grade: Grade,
    /// Carried as is: the receiving side must not coerce it to 在校 (domain.md R20).
    pub status: StudentStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub family: Vec<FamilyMember>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub study: Vec<StudyPeriod>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub change: Vec<RecordChange>,
}

/// `archive.request`: hub → out-province, send the package for this case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {}

/// `archive.package`: out-province → hub, the record and the manifest of its attachments,
/// each of which follows as one `archive.attachment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchivePackage {
    pub record: StudentRecord,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment: Vec<AttachmentRef>,
}

/// `archive.deliver`: hub → in-province, the checked package; its attachments follow as
/// `archive.attachment` messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchiveDeliver {
    pub record: StudentRecord,
    /// The grade the in-province admits the student into.
    pub target_grade: Grade,
    pub in_school: SchoolCode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment: Vec<AttachmentRef>,
}

/// A successful import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Imported {
    /// The in-province's own key for the new record, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<Text>,
}

/// A failed import, with its reason; the hub may deliver again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportFailed {
    pub reason: Text,
}

xml_choice! {
    /// `archive.imported`: in-province → hub.
    pub enum ArchiveImported as "an import result" {
        Imported(Imported) = "imported",
        Failed(ImportFailed) = "failed",
    }
}

/// `archive.commit`: hub → out-province, the in-province holds the student now: commit the
/// transfer-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveCommit {}

/// `archive.committed`: out-province → hub, the record is marked transferred out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveCommitted {}
