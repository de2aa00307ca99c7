//! The message families (DESIGN.md §4). Each family has its own XSD under `schemas/xsd/`.
//!
//! [`Body`] is the closed set of message bodies, decoded in one place; [`MessageType`] is the
//! envelope's `type`, and each body has exactly one.

mod apply;
mod archive;
mod case;
mod case_state;
mod common;
mod delivery;
mod error;
mod index;
mod lookup;
mod orgcode;
mod problem;
mod review;
mod verify;

pub use apply::{Application, EVIDENCE_MAX, EnrollmentPermit, EnrollmentPermitted, PERMIT_MAX};
pub use archive::{
    ArchiveCommit, ArchiveCommitted, ArchiveDeliver, ArchiveImported, ArchivePackage, ArchiveRequest, FamilyMember,
    ImportFailed, Imported, RecordChange, StudentRecord, StudyPeriod,
};
pub use case::{
    CaseAccepted, CaseCancel, CaseClosed, CaseDetail, CaseQuery, CaseRelease, CaseReleased, CaseReminder, CaseStatus,
    NextStep, Outcome, ReleaseReason, ReminderKind, StageChange,
};
pub use common::{
    Attachment, AttachmentRef, Base64Data, Batch, Business, CaseState, Decision, FileName, Level, MediaType,
    ReviewStep, Sha256, Side, StudentStatus, UpTo, Waiting, YearMonth,
};
pub use delivery::{ReplayRequest, ReplayResult};
pub use error::ErrorReport;
pub use index::{INDEX_BATCH_MAX, IndexRemoval, IndexRemove, IndexResult, IndexResync, IndexUpsert, StudentSummary};
pub use lookup::{LookupKey, LookupMatch, LookupRequest, LookupResult};
pub use orgcode::{
    Blockers, ChangeAction, ChangeState, Department, DepartmentLevel, OrgBatch, OrgRecord, OrgcodeChange,
    OrgcodeConfirm, OrgcodeResend, OrgcodeRevoked, OrgcodeStatus, RECORDS_MAX, SchoolUnit, UnitKind,
};
pub use problem::{
    APPROVALS_MAX, Approval, ChangedIdentity, GroupState, HandlingMode, MEMBERS_MAX, MemberState, PROBLEM_EVIDENCE_MAX,
    ProblemKind, ProblemMember, ProblemRelay, ProblemReprocess, ProblemResult, ProblemStatus, ProblemTask, TaskReason,
};
pub use review::{CaseSummary, ReviewDecision, ReviewRequest, StepRecord};
pub use verify::{HeldStudent, Refusal, VerifyRequest, VerifyResult};

use crate::choice::xml_choice;

macro_rules! messages {
    ($( $(#[$doc:meta])* $variant:ident($ty:ty) = $type_name:literal, $elem:literal; )+) => {
        /// The envelope's `type`: family and name, e.g. `transfer.apply`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MessageType {
            $( $variant, )+
        }

        impl MessageType {
            pub const ALL: &'static [MessageType] = &[$(MessageType::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(MessageType::$variant => $type_name,)+ }
            }

            /// The body element this type carries.
            pub fn element(self) -> &'static str {
                match self { $(MessageType::$variant => $elem,)+ }
            }

            /// The family: the part before the dot (`transfer`, `archive`, `error`, …).
            pub fn family(self) -> &'static str {
                let s = self.as_str();
                s.split_once('.').map_or(s, |(family, _)| family)
            }

            pub fn parse(s: &str) -> Option<MessageType> {
                match s { $($type_name => Some(MessageType::$variant),)+ _ => None }
            }
        }

        xml_choice! {
            /// A message body: exactly one element of a known type.
            pub enum Body as "a message body" {
                $( $(#[$doc])* $variant($ty) = $elem, )+
            }
        }

        impl Body {
            pub fn message_type(&self) -> MessageType {
                match self { $(Body::$variant(_) => MessageType::$variant,)+ }
            }
        }
    };
}

messages! {
    IndexUpsert(IndexUpsert) = "index.upsert", "indexUpsert";
    IndexRemove(IndexRemove) = "index.remove", "indexRemove";
    IndexResult(IndexResult) = "index.result", "indexResult";
    LookupRequest(LookupRequest) = "lookup.request", "lookupRequest";
    LookupResult(LookupResult) = "lookup.result", "lookupResult";
    TransferApply(Application) = "transfer.apply", "transferApply";
    EnrollmentApply(Application) = "enrollment.apply", "enrollmentApply";
    EnrollmentPermit(EnrollmentPermit) = "enrollment.permit", "enrollmentPermit";
    EnrollmentPermitted(EnrollmentPermitted) = "enrollment.permitted", "enrollmentPermitted";
    VerifyRequest(VerifyRequest) = "verify.request", "verifyRequest";
    VerifyResult(VerifyResult) = "verify.result", "verifyResult";
    ReviewRequest(ReviewRequest) = "review.request", "reviewRequest";
    ReviewDecision(ReviewDecision) = "review.decision", "reviewDecision";
    CaseAccepted(CaseAccepted) = "case.accepted", "caseAccepted";
    CaseStatus(CaseStatus) = "case.status", "caseStatus";
    CaseReminder(CaseReminder) = "case.reminder", "caseReminder";
    CaseCancel(CaseCancel) = "case.cancel", "caseCancel";
    CaseRelease(CaseRelease) = "case.release", "caseRelease";
    CaseReleased(CaseReleased) = "case.released", "caseReleased";
    CaseClosed(CaseClosed) = "case.closed", "caseClosed";
    ArchiveRequest(ArchiveRequest) = "archive.request", "archiveRequest";
    ArchivePackage(ArchivePackage) = "archive.package", "archivePackage";
    ArchiveAttachment(Attachment) = "archive.attachment", "archiveAttachment";
    ArchiveDeliver(ArchiveDeliver) = "archive.deliver", "archiveDeliver";
    ArchiveImported(ArchiveImported) = "archive.imported", "archiveImported";
    ArchiveCommit(ArchiveCommit) = "archive.commit", "archiveCommit";
    ArchiveCommitted(ArchiveCommitted) = "archive.committed", "archiveCommitted";
    Error(ErrorReport) = "error", "error";
    // Added later; appended so that the samples' message ids stay stable.
    IndexResync(IndexResync) = "index.resync", "indexResync";
    CaseQuery(CaseQuery) = "case.query", "caseQuery";
    CaseDetail(CaseDetail) = "case.detail", "caseDetail";
    ReplayRequest(ReplayRequest) = "replay.request", "replayRequest";
    ReplayResult(ReplayResult) = "replay.result", "replayResult";
    ProblemTask(ProblemTask) = "problem.task", "problemTask";
    ProblemResult(ProblemResult) = "problem.result", "problemResult";
    ProblemRelay(ProblemRelay) = "problem.relay", "problemRelay";
    ProblemStatus(ProblemStatus) = "problem.status", "problemStatus";
    ProblemReprocess(ProblemReprocess) = "problem.reprocess", "problemReprocess";
    OrgcodeChange(OrgcodeChange) = "orgcode.change", "orgcodeChange";
    OrgcodeConfirm(OrgcodeConfirm) = "orgcode.confirm", "orgcodeConfirm";
    OrgcodeStatus(OrgcodeStatus) = "orgcode.status", "orgcodeStatus";
    OrgcodeRevoked(OrgcodeRevoked) = "orgcode.revoked", "orgcodeRevoked";
    OrgcodeResend(OrgcodeResend) = "orgcode.resend", "orgcodeResend";
}

impl Body {
    /// The problem group (问题学籍组) a message of that business is about: every one names it.
    pub fn problem_group(&self) -> Option<crate::CaseId> {
        match self {
            Body::ProblemTask(m) => Some(m.group_id),
            Body::ProblemResult(m) => Some(m.group_id),
            Body::ProblemRelay(m) => Some(m.group_id),
            Body::ProblemStatus(m) => Some(m.group_id),
            Body::ProblemReprocess(m) => Some(m.group_id),
            _ => None,
        }
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl schemars::JsonSchema for MessageType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MessageType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
        schemars::json_schema!({ "type": "string", "description": "报文类型 / message type", "enum": names })
    }
}

impl serde::Serialize for MessageType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MessageType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MessageType::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("未知报文类型 / unknown message type `{s}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_message_and_only_those_name_a_group() {
        for t in MessageType::ALL {
            let body = crate::samples::body(*t);
            assert_eq!(body.problem_group().is_some(), t.family() == "problem", "{t}");
        }
    }
}
