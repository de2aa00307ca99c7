//! Cancellation (撤销) by the initiator, only while a review step is pending (domain.md G-3),
//! and the out-province's release of its hold, which ends a cancelled or rejected case.

use chrono::{DateTime, Utc};

use super::*;

pub(super) fn on_cancel(case: &Case, from: Party, now: DateTime<Utc>, rules: &dyn Rules) -> Transition {
    let initiator = Party::Province(case.facts.in_province);
    if from != initiator {
        return Transition::Refused(
            ErrorCode::CancelRefused,
            format!("only the initiating province ({initiator}) may cancel"),
        );
    }
    let refused = |why: &str| Transition::Refused(ErrorCode::CancelRefused, why.to_owned());
    match &case.phase {
        Phase::Held { student, stage: HeldStage::Reviewing { .. } } => {
            let effects = vec![release(case, ReleaseReason::Cancelled)];
            let stage = HeldStage::Releasing { outcome: Outcome::Cancelled, code: None, remark: None };
            enter_automated(case.clone(), Phase::Held { student: student.clone(), stage }, now, rules, effects)
        }
        Phase::Verifying => {
            refused("the case is waiting for verification; it can be cancelled once a review step is pending")
        }
        Phase::Held { stage: HeldStage::Releasing { .. }, .. } => refused("the case is already being closed"),
        Phase::Held {
            stage: HeldStage::ArchiveRequested { .. } | HeldStage::Delivering { .. } | HeldStage::Committing,
            ..
        } => refused("the final approval is given; the archive hand-over runs to its end (domain.md G-3)"),
        Phase::Closed { outcome: Outcome::Completed, .. } => refused("调档完毕: a completed case cannot be cancelled"),
        Phase::Closed { .. } => closed_case(),
    }
}

pub(super) fn on_released(case: &Case, from: Party, now: DateTime<Utc>) -> Transition {
    let out = Party::Province(case.facts.out_province);
    match &case.phase {
        Phase::Held { stage: HeldStage::Releasing { outcome, code, remark }, .. } if from == out => {
            let remark = remark.clone().or_else(|| code.map(|k| k.zh().to_owned()));
            close(case.clone(), *outcome, *code, remark.as_deref(), now, vec![])
        }
        Phase::Held { stage: HeldStage::Releasing { .. }, .. } => not_your_step(case, from),
        Phase::Verifying
        | Phase::Held {
            stage:
                HeldStage::Reviewing { .. }
                | HeldStage::ArchiveRequested { .. }
                | HeldStage::Delivering { .. }
                | HeldStage::Committing,
            ..
        }
        | Phase::Closed { .. } => Transition::Ignored("release without a pending release"),
    }
}
