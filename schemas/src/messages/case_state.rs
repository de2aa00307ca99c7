//! Where a case stands, as the provinces are told: its state and who must act next.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ReviewStep;
use crate::envelope::Party;

/// Where a case stands, as told to the provinces (the hub's workflow state, coarsened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseState {
    /// 等待校验: waiting for the out-province to verify the student.
    WaitingVerification,
    /// 正在核办: a review step is pending.
    UnderReview,
    /// 等待调档: the archive package was requested from the out-province.
    ArchiveRequested,
    /// 电子档案生成: the hub holds the checked package and delivers it.
    ArchiveDelivering,
    /// The in-province imported the archive; the out-province commits the transfer-out.
    Committing,
    /// 调档完毕: completed.
    Completed,
    /// 撤销中: cancelled, waiting for the out-province to close its side.
    Cancelling,
    /// 撤销完毕
    Cancelled,
    /// Rejected by a reviewer, waiting for the out-province to release its hold.
    Rejecting,
    /// 核办不通过
    Rejected,
    /// Refused at application or verification (校验错误); no review was opened.
    Refused,
}

impl CaseState {
    pub const ALL: [CaseState; 11] = [
        CaseState::WaitingVerification,
        CaseState::UnderReview,
        CaseState::ArchiveRequested,
        CaseState::ArchiveDelivering,
        CaseState::Committing,
        CaseState::Completed,
        CaseState::Cancelling,
        CaseState::Cancelled,
        CaseState::Rejecting,
        CaseState::Rejected,
        CaseState::Refused,
    ];

    /// The wire spelling (`UNDER_REVIEW`).
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::WaitingVerification => "WAITING_VERIFICATION",
            CaseState::UnderReview => "UNDER_REVIEW",
            CaseState::ArchiveRequested => "ARCHIVE_REQUESTED",
            CaseState::ArchiveDelivering => "ARCHIVE_DELIVERING",
            CaseState::Committing => "COMMITTING",
            CaseState::Completed => "COMPLETED",
            CaseState::Cancelling => "CANCELLING",
            CaseState::Cancelled => "CANCELLED",
            CaseState::Rejecting => "REJECTING",
            CaseState::Rejected => "REJECTED",
            CaseState::Refused => "REFUSED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, CaseState::Completed | CaseState::Cancelled | CaseState::Rejected | CaseState::Refused)
    }
}

/// Who must act next on a case, and since when ("waiting on whom, since when").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Waiting {
    pub party: Party,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<ReviewStep>,
    pub since: DateTime<Utc>,
}
