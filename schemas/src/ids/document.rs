//! ID documents (身份证件): type code plus number (domain.md §A.3.1).

use serde::{Deserialize, Serialize};

use super::{IdError, IdKind, IdProblem, ResidentId, string_id};

/// ID document type (身份证件类型) codes of the national system ([001 Q22]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum IdDocumentType {
    /// 居民身份证
    #[serde(rename = "1")]
    ResidentCard,
    /// 香港特区护照/身份证明
    #[serde(rename = "6")]
    HongKong,
    /// 澳门特区护照/身份证明
    #[serde(rename = "7")]
    Macao,
    /// 台湾居民来往大陆通行证
    #[serde(rename = "8")]
    TaiwanPermit,
    /// 境外永久居住证
    #[serde(rename = "9")]
    ForeignPermanentResidence,
    /// 护照
    #[serde(rename = "A")]
    Passport,
    /// 其他 / no ID document
    #[serde(rename = "Z")]
    Other,
}

impl IdDocumentType {
    /// # Errors
    /// Anything but one of `1 6 7 8 9 A Z`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Ok(match s {
            "1" => IdDocumentType::ResidentCard,
            "6" => IdDocumentType::HongKong,
            "7" => IdDocumentType::Macao,
            "8" => IdDocumentType::TaiwanPermit,
            "9" => IdDocumentType::ForeignPermanentResidence,
            "A" => IdDocumentType::Passport,
            "Z" => IdDocumentType::Other,
            _ => return Err(IdError::new(IdKind::DocumentType, IdProblem::Unknown)),
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            IdDocumentType::ResidentCard => "1",
            IdDocumentType::HongKong => "6",
            IdDocumentType::Macao => "7",
            IdDocumentType::TaiwanPermit => "8",
            IdDocumentType::ForeignPermanentResidence => "9",
            IdDocumentType::Passport => "A",
            IdDocumentType::Other => "Z",
        }
    }
}

/// The number of a non-resident ID document: 1–30 characters of letters, digits, `(`, `)`
/// and `-` (e.g. a Hong Kong identity card `A123456(7)`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct DocumentNumber(String);

impl DocumentNumber {
    /// # Errors
    /// Empty, longer than 30 characters, or another character.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let len = s.chars().count();
        if len == 0 || len > 30 {
            return Err(IdError::new(IdKind::DocumentNumber, IdProblem::Length { expected: "1-30", found: len }));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '(' | ')' | '-');
        if let Some(pos) = s.chars().position(|c| !ok(c)) {
            return Err(IdError::new(IdKind::DocumentNumber, IdProblem::Character { position: pos + 1 }));
        }
        Ok(DocumentNumber(s.to_owned()))
    }
}

impl AsRef<str> for DocumentNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(DocumentNumber);

/// A student's (or guardian's) ID document, valid for its type: type 1 carries a valid
/// resident ID; types 6/7/8/9/A carry a document number; type Z may carry none ([001 Q22]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "IdDocumentWire", into = "IdDocumentWire")]
pub enum IdDocument {
    Resident(ResidentId),
    /// A document of type 6, 7, 8, 9 or A.
    NonResident {
        kind: IdDocumentType,
        number: DocumentNumber,
    },
    /// Type Z: no ID document; the number may be absent.
    NoDocument {
        number: Option<DocumentNumber>,
    },
}

impl IdDocument {
    pub fn kind(&self) -> IdDocumentType {
        match self {
            IdDocument::Resident(_) => IdDocumentType::ResidentCard,
            IdDocument::NonResident { kind, .. } => *kind,
            IdDocument::NoDocument { .. } => IdDocumentType::Other,
        }
    }

    /// The document number as written, if there is one.
    pub fn number(&self) -> Option<&str> {
        match self {
            IdDocument::Resident(id) => Some(id.as_ref()),
            IdDocument::NonResident { number, .. } => Some(number.as_ref()),
            IdDocument::NoDocument { number } => number.as_ref().map(AsRef::as_ref),
        }
    }
}

/// Wire shape: `<type>` then an optional `<number>`.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IdDocumentWire {
    #[serde(rename = "type")]
    kind: IdDocumentType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    number: Option<String>,
}

impl TryFrom<IdDocumentWire> for IdDocument {
    type Error = IdError;

    fn try_from(w: IdDocumentWire) -> Result<Self, IdError> {
        let missing =
            || IdError::new(IdKind::IdDocument, IdProblem::Inconsistent("证件号缺失 / document number missing"));
        Ok(match w.kind {
            IdDocumentType::ResidentCard => IdDocument::Resident(ResidentId::parse(&w.number.ok_or_else(missing)?)?),
            IdDocumentType::Other => {
                IdDocument::NoDocument { number: w.number.as_deref().map(DocumentNumber::parse).transpose()? }
            }
            kind => IdDocument::NonResident { kind, number: DocumentNumber::parse(&w.number.ok_or_else(missing)?)? },
        })
    }
}

impl From<IdDocument> for IdDocumentWire {
    fn from(d: IdDocument) -> Self {
        IdDocumentWire { kind: d.kind(), number: d.number().map(str::to_owned) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Result<IdDocument, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn each_type_requires_its_number_shape() {
        assert!(matches!(doc(r#"{"type":"1","number":"510104201605120358"}"#).unwrap(), IdDocument::Resident(_)));
        assert!(doc(r#"{"type":"1","number":"510104201605120359"}"#).is_err());
        assert!(doc(r#"{"type":"1"}"#).is_err());
        assert_eq!(doc(r#"{"type":"6","number":"A123456(7)"}"#).unwrap().kind(), IdDocumentType::HongKong);
        assert!(doc(r#"{"type":"A"}"#).is_err());
        assert_eq!(doc(r#"{"type":"Z"}"#).unwrap(), IdDocument::NoDocument { number: None });
        assert!(doc(r#"{"type":"2","number":"1"}"#).is_err());
        assert!(doc(r#"{"type":"A","number":"E 1234"}"#).is_err());
    }

    #[test]
    fn document_types_round_trip_through_their_codes() {
        for code in ["1", "6", "7", "8", "9", "A", "Z"] {
            assert_eq!(IdDocumentType::parse(code).unwrap().code(), code);
        }
        assert!(IdDocumentType::parse("a").is_err());
    }
}
