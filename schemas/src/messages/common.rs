//! Types shared by several message families.

use base64::Engine as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::ErrorCode;
use crate::ids::{IdError, IdKind, IdProblem, is_xml_char, string_id};

/// The cross-province businesses that run as cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Business {
    /// 跨省转学
    Transfer,
    /// 毕业后跨省就学
    Enrollment,
}

/// Student-record status (学籍状态), domain.md §A.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StudentStatus {
    /// 在校
    Enrolled,
    /// 休学
    Suspended,
    /// 复学
    Resumed,
    /// 出境 (phase 1: 出国)
    Abroad,
    /// 其他离校
    OtherDeparture,
    /// 退学
    Withdrawn,
    /// 开除
    Expelled,
    /// 小学毕业
    PrimaryGraduate,
    /// 初中毕业
    JuniorGraduate,
    /// 高中毕业
    SeniorGraduate,
    /// 结业
    Completed,
    /// 肄业
    Attended,
    /// 死亡
    Deceased,
    /// 失踪
    Missing,
    /// 辍学
    DroppedOut,
    /// 疑似辍学
    SuspectedDropout,
    /// 去中职就读
    ToVocational,
    /// 异地就读
    StudyingElsewhere,
}

impl StudentStatus {
    /// The statuses of a student on a school's roll (在籍学生): they block the revocation of
    /// the school or of its stage ([002 §20]); a student who left, graduated or died does not.
    pub const ON_ROLL: [StudentStatus; 4] =
        [StudentStatus::Enrolled, StudentStatus::Suspended, StudentStatus::Resumed, StudentStatus::DroppedOut];

    pub fn label_zh(self) -> &'static str {
        match self {
            StudentStatus::Enrolled => "在校",
            StudentStatus::Suspended => "休学",
            StudentStatus::Resumed => "复学",
            StudentStatus::Abroad => "出境",
            StudentStatus::OtherDeparture => "其他离校",
            StudentStatus::Withdrawn => "退学",
            StudentStatus::Expelled => "开除",
            StudentStatus::PrimaryGraduate => "小学毕业",
            StudentStatus::JuniorGraduate => "初中毕业",
            StudentStatus::SeniorGraduate => "高中毕业",
            StudentStatus::Completed => "结业",
            StudentStatus::Attended => "肄业",
            StudentStatus::Deceased => "死亡",
            StudentStatus::Missing => "失踪",
            StudentStatus::DroppedOut => "辍学",
            StudentStatus::SuspectedDropout => "疑似辍学",
            StudentStatus::ToVocational => "去中职就读",
            StudentStatus::StudyingElsewhere => "异地就读",
        }
    }
}

/// Which side of a case a review step belongs to: `In` is the initiating side (receiving
/// school of a transfer, enrolling school of an enrollment), `Out` the other (sending or
/// graduation side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    In,
    Out,
}

/// Approval level (核办层级) within a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// 学校
    School,
    /// 学校主管教育局 (usually the county)
    Bureau,
    /// 地市教育局
    City,
    /// 省级教育行政部门
    Province,
}

/// A review step: side and level, written `IN_SCHOOL`, `OUT_BUREAU`, `OUT_CITY`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct ReviewStep {
    pub side: Side,
    pub level: Level,
}

impl ReviewStep {
    pub const fn new(side: Side, level: Level) -> Self {
        ReviewStep { side, level }
    }

    /// # Errors
    /// Not `IN_`/`OUT_` followed by `SCHOOL`, `BUREAU`, `CITY` or `PROVINCE`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let unknown = || IdError::new(IdKind::Text, IdProblem::Inconsistent("未知核办环节 / unknown review step"));
        let (side, level) = s.split_once('_').ok_or_else(unknown)?;
        let side = match side {
            "IN" => Side::In,
            "OUT" => Side::Out,
            _ => return Err(unknown()),
        };
        let level = match level {
            "SCHOOL" => Level::School,
            "BUREAU" => Level::Bureau,
            "CITY" => Level::City,
            "PROVINCE" => Level::Province,
            _ => return Err(unknown()),
        };
        Ok(ReviewStep { side, level })
    }

    fn text(self) -> &'static str {
        match (self.side, self.level) {
            (Side::In, Level::School) => "IN_SCHOOL",
            (Side::In, Level::Bureau) => "IN_BUREAU",
            (Side::In, Level::City) => "IN_CITY",
            (Side::In, Level::Province) => "IN_PROVINCE",
            (Side::Out, Level::School) => "OUT_SCHOOL",
            (Side::Out, Level::Bureau) => "OUT_BUREAU",
            (Side::Out, Level::City) => "OUT_CITY",
            (Side::Out, Level::Province) => "OUT_PROVINCE",
        }
    }
}

impl AsRef<str> for ReviewStep {
    fn as_ref(&self) -> &str {
        self.text()
    }
}

string_id!(ReviewStep);

/// A reviewer's decision (核办通过 / 核办不通过).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Approve,
    Reject,
}

pub use super::case_state::{CaseState, Waiting};

/// A lower-case hexadecimal SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256([u8; 32]);

impl Sha256 {
    pub fn of(data: &[u8]) -> Self {
        Sha256(sha2::Sha256::digest(data).into())
    }

    /// # Errors
    /// Anything but 64 lower-case hexadecimal digits.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let len = s.chars().count();
        if len != 64 {
            return Err(IdError::new(IdKind::Sha256, IdProblem::Length { expected: "64", found: len }));
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let nibble = |pos: usize| {
                let c = pair[pos];
                match c {
                    b'0'..=b'9' => Ok(c - b'0'),
                    b'a'..=b'f' => Ok(c - b'a' + 10),
                    _ => Err(IdError::new(IdKind::Sha256, IdProblem::Character { position: 2 * i + pos + 1 })),
                }
            };
            out[i] = nibble(0)? << 4 | nibble(1)?;
        }
        Ok(Sha256(out))
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for Sha256 {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Sha256::parse(s)
    }
}

impl TryFrom<String> for Sha256 {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Sha256::parse(&s)
    }
}

impl From<Sha256> for String {
    fn from(d: Sha256) -> String {
        d.to_string()
    }
}

/// A media type such as `image/jpeg` or `application/pdf`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct MediaType(String);

impl MediaType {
    /// # Errors
    /// Not `type/subtype` in lower case, at most 100 characters.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad =
            || IdError::new(IdKind::MediaType, IdProblem::Inconsistent("应为 type/subtype / must be type/subtype"));
        if s.len() > 100 {
            return Err(IdError::new(IdKind::MediaType, IdProblem::Length { expected: "1-100", found: s.len() }));
        }
        let (t, sub) = s.split_once('/').ok_or_else(bad)?;
        let tok = |x: &str, extra: &str| {
            !x.is_empty()
                && x.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.as_bytes().contains(&b))
        };
        if !(tok(t, "") && tok(sub, ".+-")) {
            return Err(bad());
        }
        Ok(MediaType(s.to_owned()))
    }
}

impl AsRef<str> for MediaType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(MediaType);

/// A file name: 1–200 characters, no path separators, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct FileName(String);

impl FileName {
    /// # Errors
    /// Empty, too long, a path separator, a control character, only dots, or surrounding spaces.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let len = s.chars().count();
        if len == 0 || len > 200 {
            return Err(IdError::new(IdKind::FileName, IdProblem::Length { expected: "1-200", found: len }));
        }
        if let Some(pos) = s.chars().position(|c| c.is_control() || c == '/' || c == '\\' || !is_xml_char(c)) {
            return Err(IdError::new(IdKind::FileName, IdProblem::Character { position: pos + 1 }));
        }
        if s.chars().all(|c| c == '.') || s.trim() != s {
            return Err(IdError::new(IdKind::FileName, IdProblem::Inconsistent("文件名不合法 / invalid file name")));
        }
        Ok(FileName(s.to_owned()))
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(FileName);

/// Binary content, base64 on the wire (`xs:base64Binary`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Base64Data(Vec<u8>);

impl Base64Data {
    pub fn new(bytes: Vec<u8>) -> Self {
        Base64Data(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl std::fmt::Debug for Base64Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64Data({} bytes)", self.0.len())
    }
}

impl TryFrom<String> for Base64Data {
    type Error = base64::DecodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map(Base64Data)
    }
}

impl From<Base64Data> for String {
    fn from(d: Base64Data) -> String {
        base64::engine::general_purpose::STANDARD.encode(d.0)
    }
}

/// A reference to an attachment: what it is and how to check it, without the content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentRef {
    pub name: FileName,
    pub media_type: MediaType,
    pub size: u64,
    pub sha256: Sha256,
}

/// An attachment with its content. Its digest and size are declared by the sender and
/// checked by the receiver ([`Attachment::check`]); a mismatch is a business refusal
/// (`E_ATTACHMENT_DIGEST`), not a malformed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attachment {
    pub name: FileName,
    pub media_type: MediaType,
    pub size: u64,
    pub sha256: Sha256,
    pub content: Base64Data,
}

impl Attachment {
    /// Builds an attachment whose declared size and digest match its content.
    pub fn new(name: FileName, media_type: MediaType, content: Vec<u8>) -> Self {
        Attachment {
            name,
            media_type,
            size: content.len() as u64,
            sha256: Sha256::of(&content),
            content: Base64Data::new(content),
        }
    }

    /// # Errors
    /// `E_ATTACHMENT_DIGEST` when the content does not match the declared size or digest.
    pub fn check(&self) -> Result<(), ErrorCode> {
        let bytes = self.content.bytes();
        if bytes.len() as u64 != self.size || Sha256::of(bytes) != self.sha256 {
            return Err(ErrorCode::AttachmentDigest);
        }
        Ok(())
    }

    pub fn reference(&self) -> AttachmentRef {
        AttachmentRef {
            name: self.name.clone(),
            media_type: self.media_type.clone(),
            size: self.size,
            sha256: self.sha256,
        }
    }
}

/// A year and month (`xs:gYearMonth`, e.g. `2016-09`), such as the enrolment month (入学年月).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct YearMonth(NaiveDate);

impl YearMonth {
    /// # Errors
    /// Not `YYYY-MM` with a real month.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::new(IdKind::Text, IdProblem::Inconsistent("应为 YYYY-MM / must be YYYY-MM"));
        if s.len() != 7 || s.as_bytes()[4] != b'-' {
            return Err(bad());
        }
        let year: i32 = s[..4].parse().map_err(|_| bad())?;
        let month: u32 = s[5..].parse().map_err(|_| bad())?;
        if !s[..4].bytes().chain(s[5..].bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        NaiveDate::from_ymd_opt(year, month, 1).map(YearMonth).ok_or_else(bad)
    }

    pub fn first_day(self) -> NaiveDate {
        self.0
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m"))
    }
}

impl std::str::FromStr for YearMonth {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        YearMonth::parse(s)
    }
}

impl TryFrom<String> for YearMonth {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        YearMonth::parse(&s)
    }
}

impl From<YearMonth> for String {
    fn from(m: YearMonth) -> String {
        m.to_string()
    }
}

/// A list of 1 to `MAX` items; serialized as repeated elements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    try_from = "Vec<T>",
    into = "Vec<T>",
    bound(serialize = "T: Serialize + Clone", deserialize = "T: Deserialize<'de>")
)]
pub struct Batch<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> Batch<T, MAX> {
    /// # Errors
    /// An empty list or one longer than `MAX`.
    pub fn new(items: Vec<T>) -> Result<Self, String> {
        if items.is_empty() || items.len() > MAX {
            return Err(format!(
                "批量应为1-{MAX}条,实际{} / a batch holds 1-{MAX} items, found {}",
                items.len(),
                items.len()
            ));
        }
        Ok(Batch(items))
    }

    pub fn items(&self) -> &[T] {
        &self.0
    }

    pub fn into_items(self) -> Vec<T> {
        self.0
    }
}

impl<T, const MAX: usize> TryFrom<Vec<T>> for Batch<T, MAX> {
    type Error = String;
    fn try_from(v: Vec<T>) -> Result<Self, String> {
        Batch::new(v)
    }
}

impl<T, const MAX: usize> From<Batch<T, MAX>> for Vec<T> {
    fn from(b: Batch<T, MAX>) -> Vec<T> {
        b.0
    }
}

/// A list of 0 to `MAX` items; serialized as repeated elements, omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    try_from = "Vec<T>",
    into = "Vec<T>",
    bound(serialize = "T: Serialize + Clone", deserialize = "T: Deserialize<'de>")
)]
pub struct UpTo<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> UpTo<T, MAX> {
    /// # Errors
    /// A list longer than `MAX`.
    pub fn new(items: Vec<T>) -> Result<Self, String> {
        if items.len() > MAX {
            return Err(format!("最多{MAX}条,实际{} / at most {MAX} items, found {}", items.len(), items.len()));
        }
        Ok(UpTo(items))
    }

    pub fn items(&self) -> &[T] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_items(self) -> Vec<T> {
        self.0
    }
}

impl<T, const MAX: usize> Default for UpTo<T, MAX> {
    fn default() -> Self {
        UpTo(Vec::new())
    }
}

impl<T, const MAX: usize> TryFrom<Vec<T>> for UpTo<T, MAX> {
    type Error = String;
    fn try_from(v: Vec<T>) -> Result<Self, String> {
        UpTo::new(v)
    }
}

impl<T, const MAX: usize> From<UpTo<T, MAX>> for Vec<T> {
    fn from(b: UpTo<T, MAX>) -> Vec<T> {
        b.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_states_are_spelled_as_on_the_wire() {
        for s in CaseState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn review_steps_round_trip() {
        for s in
            ["IN_SCHOOL", "IN_BUREAU", "IN_CITY", "IN_PROVINCE", "OUT_SCHOOL", "OUT_BUREAU", "OUT_CITY", "OUT_PROVINCE"]
        {
            assert_eq!(ReviewStep::parse(s).unwrap().to_string(), s);
        }
        for bad in ["IN", "in_school", "OUT_COUNTY", "_SCHOOL", ""] {
            assert!(ReviewStep::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_and_attachments_check_their_content() {
        let a = Attachment::new(
            FileName::parse("证明.pdf").unwrap(),
            MediaType::parse("application/pdf").unwrap(),
            b"%PDF".to_vec(),
        );
        assert!(a.check().is_ok());
        assert_eq!(Sha256::parse(&a.sha256.to_string()).unwrap(), a.sha256);
        let mut tampered = a.clone();
        tampered.content = Base64Data::new(b"%PDX".to_vec());
        assert_eq!(tampered.check(), Err(ErrorCode::AttachmentDigest));
        assert!(Sha256::parse(&"A".repeat(64)).is_err());
    }

    #[test]
    fn file_names_and_media_types_are_checked() {
        for bad in ["", ".", "..", "...", "a/b", "a\\b", " a", "a\u{7}", "a\u{FFFE}"] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(MediaType::parse("image/jpeg").is_ok());
        for bad in ["image", "Image/jpeg", "image/", "/jpeg", "image/jpeg; q=1"] {
            assert!(MediaType::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(YearMonth::parse("2016-09").unwrap().to_string(), "2016-09");
        for bad in ["2016-13", "2016-9", "16-09", "2016/09", "+016-09"] {
            assert!(YearMonth::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batches_are_bounded() {
        assert!(Batch::<u8, 2>::new(vec![]).is_err());
        assert!(Batch::<u8, 2>::new(vec![1, 2, 3]).is_err());
        assert_eq!(Batch::<u8, 2>::new(vec![1, 2]).unwrap().items(), &[1, 2]);
        assert!(UpTo::<u8, 2>::new(vec![]).unwrap().is_empty());
        assert!(UpTo::<u8, 2>::new(vec![1, 2, 3]).is_err());
    }
}
