//! `transfer.apply` and `enrollment.apply`: the initiating school's application.

use serde::{Deserialize, Serialize};

use super::common::{Attachment, UpTo};
use crate::ids::{Grade, PersonName, SchoolCode, StudentId, Text};

/// Most evidence files on one application.
pub const EVIDENCE_MAX: usize = 10;

/// An application for a cross-province case, by the initiating (receiving or enrolling)
/// school. The sender's province is the initiating province; the other province is found
/// from the national index and confirmed by verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// The initiating school (转入学校 / 招生学校).
    pub school: SchoolCode,
    pub student_name: PersonName,
    pub student_id: StudentId,
    /// 转入年级 / 入学年级, chosen by the initiating side.
    pub target_grade: Grade,
    /// 转学理由 / 就学理由
    pub reason: Text,
    /// 证明材料, at most [`EVIDENCE_MAX`].
    #[serde(default, skip_serializing_if = "UpTo::is_empty")]
    pub evidence: UpTo<Attachment, EVIDENCE_MAX>,
}

/// `enrollment.permit`: province → hub, which of its senior-high schools may enroll junior-high
/// graduates of other provinces (毕业后跨省就学权限, [003 Q37]). Grants and revocations
/// together, at least one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "EnrollmentPermitWire", into = "EnrollmentPermitWire")]
pub struct EnrollmentPermit {
    pub grant: Vec<SchoolCode>,
    pub revoke: Vec<SchoolCode>,
}

/// Most schools in one permit message.
pub const PERMIT_MAX: usize = 1000;

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnrollmentPermitWire {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    grant: Vec<SchoolCode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    revoke: Vec<SchoolCode>,
}

impl TryFrom<EnrollmentPermitWire> for EnrollmentPermit {
    type Error = &'static str;
    fn try_from(w: EnrollmentPermitWire) -> Result<Self, Self::Error> {
        let n = w.grant.len() + w.revoke.len();
        if n == 0 || n > PERMIT_MAX {
            return Err("一次授权须涉及1-1000所学校 / a permit names 1 to 1000 schools");
        }
        Ok(EnrollmentPermit { grant: w.grant, revoke: w.revoke })
    }
}

impl From<EnrollmentPermit> for EnrollmentPermitWire {
    fn from(p: EnrollmentPermit) -> Self {
        EnrollmentPermitWire { grant: p.grant, revoke: p.revoke }
    }
}

/// `enrollment.permitted`: hub → province, what the permit changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollmentPermitted {
    pub granted: u32,
    pub revoked: u32,
    /// Schools not granted: unknown to the registry or of another province.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<SchoolCode>,
}
