//! What a case is: its fixed facts, its review chain, where it stands, and the archive as it
//! arrives. Data only; [`super::transition`] moves it.

use chrono::{DateTime, NaiveDate, Utc};
use schemas::ErrorCode;
use schemas::ids::{Grade, PersonName, ProvinceCode, SchoolCode, StudentId, Text};
use schemas::messages::{
    AttachmentRef, Business, CaseState, HeldStudent, Level, Outcome, ReviewStep, Side, StepRecord, StudentRecord,
    Waiting,
};
use schemas::{CaseId, Party};
use serde::{Deserialize, Serialize};

/// What is fixed about a case once it is opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub business: Business,
    pub student_id: StudentId,
    pub student_name: PersonName,
    /// The initiating (receiving / enrolling) side.
    pub in_province: ProvinceCode,
    pub in_school: SchoolCode,
    /// The other (sending / graduation) side, from the national index.
    pub out_province: ProvinceCode,
    /// The student's school as the index has it; replaced by the out-province's answer.
    pub out_school: SchoolCode,
    pub target_grade: Grade,
    pub reason: Text,
    /// The initiator's evidence, by reference: its content is kept beside the case.
    pub evidence: Vec<AttachmentRef>,
}

impl Facts {
    /// The province acting on `side`.
    pub fn province(&self, side: Side) -> ProvinceCode {
        match side {
            Side::In => self.in_province,
            Side::Out => self.out_province,
        }
    }

    pub(super) fn is_party(&self, p: Party) -> bool {
        p == Party::Province(self.in_province) || p == Party::Province(self.out_province)
    }
}

/// The review steps of a case, in order: never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<ReviewStep>", into = "Vec<ReviewStep>")]
pub struct Chain(Vec<ReviewStep>);

impl Chain {
    /// `None` for no steps.
    pub fn new(steps: Vec<ReviewStep>) -> Option<Chain> {
        (!steps.is_empty()).then_some(Chain(steps))
    }

    pub fn steps(&self) -> &[ReviewStep] {
        &self.0
    }

    /// The step at `n` (a review stage's index is always within its chain).
    pub(super) fn at(&self, n: usize) -> ReviewStep {
        self.0[n.min(self.0.len() - 1)]
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

impl TryFrom<Vec<ReviewStep>> for Chain {
    type Error = &'static str;
    fn try_from(steps: Vec<ReviewStep>) -> Result<Self, Self::Error> {
        Chain::new(steps).ok_or("a review chain has at least one step")
    }
}

impl From<Chain> for Vec<ReviewStep> {
    fn from(c: Chain) -> Self {
        c.0
    }
}

/// The review chain from the levels each side's province configures: the in-side's levels
/// first, then the out-side's (transfer: 转入学校 → 转入教育局 → 转出学校 → 转出教育局, [002 §18]).
/// `None` when neither side configures a level (the settings refuse that at start).
pub fn chain_from_levels(in_levels: &[Level], out_levels: &[Level]) -> Option<Chain> {
    Chain::new(
        in_levels
            .iter()
            .map(|l| ReviewStep::new(Side::In, *l))
            .chain(out_levels.iter().map(|l| ReviewStep::new(Side::Out, *l)))
            .collect(),
    )
}

/// The archive package as it arrives: the record and its manifest (one message), the
/// attachments (one message each, possibly before the record).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arriving {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<StudentRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Vec<AttachmentRef>>,
    /// Attachments received and checked, by reference (their content is kept beside the case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub received: Vec<AttachmentRef>,
}

/// A complete, checked package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    pub record: StudentRecord,
    pub manifest: Vec<AttachmentRef>,
}

/// Where a case the out-province holds stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum HeldStage {
    /// 正在核办: step `step` of `chain` is pending until `deadline` (last working day).
    Reviewing { chain: Chain, step: usize, deadline: NaiveDate },
    /// Closing: the out-province must release its hold before the case ends as `outcome`.
    Releasing {
        outcome: Outcome,
        code: Option<ErrorCode>,
        /// What the initiator is told when the case closes (who rejected it and why, or what
        /// the school must do first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remark: Option<String>,
    },
    /// 等待调档: the package was requested from the out-province.
    ArchiveRequested { arriving: Arriving },
    /// 电子档案已生成: the checked package was delivered; waiting for the import.
    Delivering { package: Package },
    /// Imported: the out-province is told to commit the transfer-out.
    Committing,
}

/// Where a case stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "one phase per case, moved with its case; boxing the held stage would forbid matching through it"
)]
pub enum Phase {
    /// 等待校验: waiting for the out-province to verify and hold the student.
    Verifying,
    /// The out-province holds the student for this case.
    Held {
        student: HeldStudent,
        stage: HeldStage,
    },
    Closed {
        outcome: Outcome,
        code: Option<ErrorCode>,
    },
}

impl Phase {
    /// The stage's name, as the store keeps it and the operators' views filter on it.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Verifying => "verifying",
            Phase::Held { stage, .. } => match stage {
                HeldStage::Reviewing { .. } => "reviewing",
                HeldStage::Releasing { .. } => "releasing",
                HeldStage::ArchiveRequested { .. } => "archive_requested",
                HeldStage::Delivering { .. } => "delivering",
                HeldStage::Committing => "committing",
            },
            Phase::Closed { .. } => "closed",
        }
    }

    /// Stages machines must advance (resent by timer, "stuck" when they do not move).
    pub fn is_automated(&self) -> bool {
        match self {
            Phase::Verifying => true,
            Phase::Held { stage, .. } => match stage {
                HeldStage::Reviewing { .. } => false,
                HeldStage::Releasing { .. }
                | HeldStage::ArchiveRequested { .. }
                | HeldStage::Delivering { .. }
                | HeldStage::Committing => true,
            },
            Phase::Closed { .. } => false,
        }
    }

    /// The held student and the stage, while the out-province holds the student.
    pub fn held(&self) -> Option<(&HeldStudent, &HeldStage)> {
        match self {
            Phase::Held { student, stage } => Some((student, stage)),
            Phase::Verifying | Phase::Closed { .. } => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, Phase::Closed { .. })
    }

    /// The pending review step's deadline, if a step is pending.
    pub fn deadline(&self) -> Option<NaiveDate> {
        match self {
            Phase::Held { stage: HeldStage::Reviewing { deadline, .. }, .. } => Some(*deadline),
            _ => None,
        }
    }
}

/// A case: its facts, where it stands since when, its decisions, and how often its current
/// request was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    pub id: CaseId,
    pub facts: Facts,
    pub phase: Phase,
    pub since: DateTime<Utc>,
    /// Sends of the current stage's request.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Requests sent again over the case's whole life (by timer or operator).
    pub resends: u32,
    /// Every reviewer's decision, in order (shown to later reviewers).
    pub decisions: Vec<StepRecord>,
    /// The review chain decided at verification, kept for the record after the reviews (the
    /// review stage carries its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Chain>,
}

impl Case {
    /// Who must act now, on which step, since when.
    pub fn waiting(&self) -> Option<Waiting> {
        let f = &self.facts;
        let out = Party::Province(f.out_province);
        let (party, step) = match &self.phase {
            Phase::Verifying => (out, None),
            Phase::Held { stage, .. } => match stage {
                HeldStage::Reviewing { chain, step, .. } => {
                    let s = chain.at(*step);
                    (Party::Province(f.province(s.side)), Some(s))
                }
                HeldStage::Releasing { .. } | HeldStage::ArchiveRequested { .. } | HeldStage::Committing => (out, None),
                HeldStage::Delivering { .. } => (Party::Province(f.in_province), None),
            },
            Phase::Closed { .. } => return None,
        };
        Some(Waiting { party, step, since: self.since })
    }

    /// The state as the provinces see it.
    pub fn state(&self) -> CaseState {
        match &self.phase {
            Phase::Verifying => CaseState::WaitingVerification,
            Phase::Held { stage, .. } => match stage {
                HeldStage::Reviewing { .. } => CaseState::UnderReview,
                HeldStage::Releasing { outcome: Outcome::Cancelled, .. } => CaseState::Cancelling,
                HeldStage::Releasing { .. } => CaseState::Rejecting,
                HeldStage::ArchiveRequested { .. } => CaseState::ArchiveRequested,
                HeldStage::Delivering { .. } => CaseState::ArchiveDelivering,
                HeldStage::Committing => CaseState::Committing,
            },
            Phase::Closed { outcome, .. } => match outcome {
                Outcome::Completed => CaseState::Completed,
                Outcome::Rejected => CaseState::Rejected,
                Outcome::Cancelled => CaseState::Cancelled,
                Outcome::Refused => CaseState::Refused,
            },
        }
    }

    /// Moves to a new phase: its clock restarts, its request is sent for the first time.
    pub(super) fn enter(&mut self, phase: Phase, now: DateTime<Utc>) {
        self.phase = phase;
        self.since = now;
        self.attempts = 1;
        self.last_error = None;
    }
}
