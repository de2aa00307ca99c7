//! Validated identifiers and codes (标识符与代码).
//!
//! Every type here can only be built valid: the field is private, the only ways in are
//! `FromStr` / `TryFrom<String>`, and serde goes through the same parser
//! (`#[serde(try_from = "String")]`), so neither XML nor JSON can produce an invalid value.
//! Sources for each rule are in `shared/domain.md` §A.3.

mod codes;
mod document;
mod province;
mod resident;
mod student;
mod text;

use std::fmt;

pub use codes::{BatchId, DivisionCode, Grade, SchoolCode, Stage};
pub use document::{DocumentNumber, IdDocument, IdDocumentType};
pub use province::ProvinceCode;
pub use resident::{ResidentId, Sex};
pub use student::{StudentId, StudentIdKind};
pub(crate) use text::is_xml_char;
pub use text::{PersonName, Text};

/// Which identifier failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    ResidentId,
    StudentId,
    DocumentType,
    DocumentNumber,
    IdDocument,
    SchoolCode,
    DivisionCode,
    ProvinceCode,
    Grade,
    PersonName,
    Text,
    MessageId,
    CaseId,
    Party,
    Sha256,
    MediaType,
    FileName,
    BatchId,
}

impl IdKind {
    /// Chinese and English names, for bilingual error texts.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            IdKind::ResidentId => ("居民身份证号码", "resident ID"),
            IdKind::StudentId => ("全国学籍号", "national student ID"),
            IdKind::DocumentType => ("身份证件类型", "ID document type"),
            IdKind::DocumentNumber => ("身份证件号", "ID document number"),
            IdKind::IdDocument => ("身份证件", "ID document"),
            IdKind::SchoolCode => ("学校标识码", "school identification code"),
            IdKind::DivisionCode => ("行政区划代码", "administrative division code"),
            IdKind::ProvinceCode => ("省级行政区代码", "province code"),
            IdKind::Grade => ("年级", "grade"),
            IdKind::PersonName => ("姓名", "name"),
            IdKind::Text => ("文本", "text"),
            IdKind::MessageId => ("消息编号", "message id"),
            IdKind::CaseId => ("业务编号", "case id"),
            IdKind::Party => ("参与方", "party"),
            IdKind::Sha256 => ("SHA-256摘要", "SHA-256 digest"),
            IdKind::MediaType => ("文件类型", "media type"),
            IdKind::FileName => ("文件名", "file name"),
            IdKind::BatchId => ("变动批次编号", "batch id"),
        }
    }
}

/// What is wrong with the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdProblem {
    /// Wrong number of characters.
    Length { expected: &'static str, found: usize },
    /// A character not allowed at this (1-based) position.
    Character { position: usize },
    /// ISO 7064 MOD 11-2 check digit does not match.
    CheckDigit,
    /// The embedded birth date is not a real calendar date.
    BirthDate,
    /// The region or province prefix is not a known one.
    Region,
    /// The prefix letter is not one of the allowed ones.
    Prefix,
    /// Not one of the enumerated values.
    Unknown,
    /// Combination of fields that the rules forbid.
    Inconsistent(&'static str),
    /// An invisible or direction-changing character (zero-width, bidirectional control, byte
    /// order mark) at this (1-based) position: it would let two names that differ look alike.
    Invisible { position: usize },
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdProblem::Length { expected, found } => {
                write!(f, "长度应为{expected},实际为{found} / length must be {expected}, found {found}")
            }
            IdProblem::Character { position } => {
                write!(f, "第{position}位字符不合法 / invalid character at position {position}")
            }
            IdProblem::CheckDigit => f.write_str("校验码错误 / wrong check digit"),
            IdProblem::BirthDate => f.write_str("出生日期不存在 / not a real birth date"),
            IdProblem::Region => f.write_str("地区代码不存在 / unknown region prefix"),
            IdProblem::Prefix => f.write_str("前缀不合法 / invalid prefix"),
            IdProblem::Unknown => f.write_str("不是有效取值 / not one of the allowed values"),
            IdProblem::Inconsistent(why) => f.write_str(why),
            IdProblem::Invisible { position } => write!(
                f,
                "第{position}位是不可见或改变书写方向的字符 / invisible or direction-changing character at position {position}"
            ),
        }
    }
}

/// A value that is not a valid identifier of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IdError {
    pub kind: IdKind,
    pub problem: IdProblem,
}

impl IdError {
    pub(crate) fn new(kind: IdKind, problem: IdProblem) -> Self {
        IdError { kind, problem }
    }
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (zh, en) = self.kind.names();
        write!(f, "{zh}无效 / invalid {en}: {}", self.problem)
    }
}

/// Checks that `s` has exactly `n` characters, all ASCII digits.
pub(crate) fn require_digits(s: &str, n: usize, kind: IdKind, expected: &'static str) -> Result<(), IdError> {
    let len = s.chars().count();
    if len != n {
        return Err(IdError::new(kind, IdProblem::Length { expected, found: len }));
    }
    if let Some(pos) = s.bytes().position(|b| !b.is_ascii_digit()) {
        return Err(IdError::new(kind, IdProblem::Character { position: pos + 1 }));
    }
    Ok(())
}

/// Implements the string plumbing every identifier shares: `FromStr`, `TryFrom<String>`,
/// `Display`, `AsRef<str>`, `From<T> for String`. The type must have a `parse(&str)`.
macro_rules! string_id {
    ($t:ty) => {
        impl ::std::str::FromStr for $t {
            type Err = $crate::ids::IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$t>::parse(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = $crate::ids::IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                <$t>::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_ref())
            }
        }
    };
}
pub(crate) use string_id;
