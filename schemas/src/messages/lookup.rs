//! `lookup.*`: the national student lookup (全国学籍查询), answered from the index.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::StudentStatus;
use crate::error::ErrorCode;
use crate::ids::{DocumentNumber, Grade, IdError, PersonName, ProvinceCode, ResidentId, SchoolCode, StudentId};

/// `lookup.request`: name plus national student ID or ID-document number ([002 §17]: the
/// name is required, and at least one of the two identifiers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "LookupRequestWire", into = "LookupRequestWire")]
pub struct LookupRequest {
    pub name: PersonName,
    pub key: LookupKey,
    /// The user of the provincial system who asks (an account or a name): kept in the hub's
    /// lookup audit (查询审计), never in its logs.
    pub requested_by: Option<PersonName>,
}

/// What identifies the student besides the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupKey {
    StudentId(StudentId),
    /// A resident ID number (document type 1), checked like everywhere else.
    ResidentId(ResidentId),
    /// The number of another ID document (types 6/7/8/9/A).
    DocumentNumber(DocumentNumber),
}

impl LookupKey {
    /// Reads the `documentNumber` of a lookup: a number with the shape of a resident ID (17
    /// digits and a check character) is one, and must be valid as one — a wrong check digit is
    /// refused, not looked up; a lower-case `x` is the upper-case check character. Anything
    /// else is another document's number.
    ///
    /// # Errors
    /// A resident ID with a wrong check digit or birth date, or an invalid document number.
    pub fn document(s: &str) -> Result<LookupKey, IdError> {
        let b = s.as_bytes();
        if b.len() == 18 && b[..17].iter().all(u8::is_ascii_digit) {
            let normalized = format!("{}{}", &s[..17], s[17..].to_ascii_uppercase());
            return ResidentId::parse(&normalized).map(LookupKey::ResidentId);
        }
        DocumentNumber::parse(s).map(LookupKey::DocumentNumber)
    }
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LookupRequestWire {
    name: PersonName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    student_id: Option<StudentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    document_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_by: Option<PersonName>,
}

impl TryFrom<LookupRequestWire> for LookupRequest {
    type Error = String;
    fn try_from(w: LookupRequestWire) -> Result<Self, Self::Error> {
        let key = match (w.student_id, w.document_number) {
            (Some(id), None) => LookupKey::StudentId(id),
            (None, Some(n)) => LookupKey::document(&n).map_err(|e| e.to_string())?,
            _ => {
                return Err(
                    "全国学籍号与身份证件号须且只须填写一个 / give exactly one of studentId and documentNumber".into(),
                );
            }
        };
        Ok(LookupRequest { name: w.name, key, requested_by: w.requested_by })
    }
}

impl From<LookupRequest> for LookupRequestWire {
    fn from(r: LookupRequest) -> Self {
        let (student_id, document_number) = match r.key {
            LookupKey::StudentId(id) => (Some(id), None),
            LookupKey::ResidentId(n) => (None, Some(n.to_string())),
            LookupKey::DocumentNumber(n) => (None, Some(n.to_string())),
        };
        LookupRequestWire { name: r.name, student_id, document_number, requested_by: r.requested_by }
    }
}

/// The part of a student's index entry a receiving school needs to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LookupMatch {
    pub student_id: StudentId,
    pub name: PersonName,
    pub province: ProvinceCode,
    pub school: SchoolCode,
    pub grade: Grade,
    pub status: StudentStatus,
    pub problem_record: bool,
    /// Whether a cross-province transfer can be applied for now.
    pub transfer_eligible: bool,
    /// Why not, when not eligible.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "codes")]
    pub reason: Vec<ErrorCode>,
    /// 最新学籍变动时间
    pub changed_at: DateTime<Utc>,
    /// The kind of the open problem record, when `problemRecord` is true and it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_kind: Option<super::ProblemKind>,
}

/// `lookup.result`: hub → province. No `student` means nobody matched both name and key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LookupResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student: Option<LookupMatch>,
}

/// Reads a list of error codes as strings. (quick-xml would take each repeated element's name
/// for the variant of a unit enum; reading text and looking the code up avoids that.)
fn codes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ErrorCode>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| ErrorCode::from_code(t).ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{t}`"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resident_id_in_a_lookup_is_normalized_and_checked() {
        let key = LookupKey::document("44010620110819019x").unwrap();
        assert_eq!(key, LookupKey::ResidentId(ResidentId::parse("44010620110819019X").unwrap()));
        let err = LookupKey::document("510104201605120357").unwrap_err();
        assert!(err.to_string().contains("校验码"), "{err}");
        assert!(matches!(LookupKey::document("A123456(7)").unwrap(), LookupKey::DocumentNumber(_)));
    }
}
