//! `verify.*`: the hub asks the other province to verify the student (转出省份校验) and to
//! hold him for the case.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::common::{Business, StudentStatus};
use crate::choice::xml_choice;
use crate::error::ErrorCode;
use crate::ids::{Grade, IdDocument, PersonName, ProvinceCode, SchoolCode, Sex, StudentId, Text};

/// `verify.request`: hub → out-province.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    pub business: Business,
    pub student_name: PersonName,
    pub student_id: StudentId,
    pub requesting_province: ProvinceCode,
    pub requesting_school: SchoolCode,
    pub target_grade: Grade,
}

/// The student as the out-province holds him, now held for the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeldStudent {
    pub school: SchoolCode,
    pub grade: Grade,
    pub status: StudentStatus,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub id_document: IdDocument,
}

/// Why the out-province refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Refusal {
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<Text>,
}

xml_choice! {
    /// `verify.result`: out-province → hub.
    pub enum VerifyResult as "a verification result" {
        /// Found, eligible, and now held for this case.
        Held(HeldStudent) = "held",
        /// Not found or not eligible; nothing is held.
        Refused(Refusal) = "refused",
    }
}
