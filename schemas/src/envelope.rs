//! The envelope (信封) every message travels in, and the identifiers it carries.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{IdError, IdKind, IdProblem, ProvinceCode, string_id};
use crate::messages::{Body, MessageType};

/// Parses a UUID in its canonical form only (36 characters, lower case, hyphens), so that one
/// id has exactly one spelling and deduplication by text is sound.
fn parse_canonical_uuid(s: &str, kind: IdKind) -> Result<Uuid, IdError> {
    let len = s.chars().count();
    if len != 36 {
        return Err(IdError::new(kind, IdProblem::Length { expected: "36", found: len }));
    }
    let uuid =
        Uuid::parse_str(s).map_err(|_| IdError::new(kind, IdProblem::Inconsistent("应为UUID / must be a UUID")))?;
    if uuid.hyphenated().to_string() != s {
        return Err(IdError::new(kind, IdProblem::Inconsistent("UUID须为小写 / UUID must be lower case")));
    }
    Ok(uuid)
}

/// Message id: a UUID made by the sender; the deduplication key at every receiver.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(Uuid, [u8; 36]);

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

impl MessageId {
    /// A fresh, time-ordered id (UUID v7).
    pub fn new_v7() -> Self {
        Self::from_uuid(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        let mut text = [0u8; 36];
        uuid.hyphenated().encode_lower(&mut text);
        MessageId(uuid, text)
    }

    /// # Errors
    /// Anything but a canonical lower-case UUID.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        parse_canonical_uuid(s, IdKind::MessageId).map(Self::from_uuid)
    }

    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl AsRef<str> for MessageId {
    fn as_ref(&self) -> &str {
        std::str::from_utf8(&self.1).expect("hyphenated UUID is ASCII")
    }
}

string_id!(MessageId);

/// Case id (业务编号): a UUID assigned by the hub when an application becomes a case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct CaseId(Uuid, [u8; 36]);

impl std::fmt::Debug for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaseId({})", self.0)
    }
}

impl CaseId {
    pub fn new_v7() -> Self {
        Self::from_uuid(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        let mut text = [0u8; 36];
        uuid.hyphenated().encode_lower(&mut text);
        CaseId(uuid, text)
    }

    /// # Errors
    /// Anything but a canonical lower-case UUID.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        parse_canonical_uuid(s, IdKind::CaseId).map(Self::from_uuid)
    }

    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl AsRef<str> for CaseId {
    fn as_ref(&self) -> &str {
        std::str::from_utf8(&self.1).expect("hyphenated UUID is ASCII")
    }
}

string_id!(CaseId);

/// A party on the exchange: the hub, or a province's adapter. Written as the broker user
/// name its certificate carries: `hub`, or `prov-NN` with NN the GB/T 2260 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub enum Party {
    Hub,
    Province(ProvinceCode),
}

impl Party {
    /// # Errors
    /// Anything but `hub` or `prov-` followed by a province code.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s == "hub" {
            return Ok(Party::Hub);
        }
        match s.strip_prefix("prov-") {
            Some(code) => {
                ProvinceCode::parse(code).map(Party::Province).map_err(|e| IdError::new(IdKind::Party, e.problem))
            }
            None => Err(IdError::new(IdKind::Party, IdProblem::Prefix)),
        }
    }

    pub fn province(self) -> Option<ProvinceCode> {
        match self {
            Party::Hub => None,
            Party::Province(p) => Some(p),
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Party::Hub => f.write_str("hub"),
            Party::Province(p) => write!(f, "prov-{}", p.code()),
        }
    }
}

impl std::str::FromStr for Party {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Party::parse(s)
    }
}

impl TryFrom<String> for Party {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Party::parse(&s)
    }
}

impl From<Party> for String {
    fn from(p: Party) -> String {
        p.to_string()
    }
}

impl From<ProvinceCode> for Party {
    fn from(p: ProvinceCode) -> Self {
        Party::Province(p)
    }
}

/// A message: who sends it to whom, about which case, in reply to what, and its body.
/// The message type is the body's; it cannot disagree with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub message_id: MessageId,
    pub sender: Party,
    pub recipient: Party,
    pub case_id: Option<CaseId>,
    /// The message this one answers, if any.
    pub correlation_id: Option<MessageId>,
    pub sent_at: DateTime<Utc>,
    pub body: Body,
}

impl Envelope {
    /// A new message with a fresh id, sent now (to the millisecond).
    pub fn new(sender: Party, recipient: Party, body: Body) -> Self {
        Envelope {
            message_id: MessageId::new_v7(),
            sender,
            recipient,
            case_id: None,
            correlation_id: None,
            sent_at: Utc::now().trunc_subsecs(3),
            body,
        }
    }

    pub fn with_case(mut self, case_id: CaseId) -> Self {
        self.case_id = Some(case_id);
        self
    }

    pub fn in_reply_to(mut self, message_id: MessageId) -> Self {
        self.correlation_id = Some(message_id);
        self
    }

    pub fn message_type(&self) -> MessageType {
        self.body.message_type()
    }
}
