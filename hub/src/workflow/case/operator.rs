//! Operators' actions on a case (运维操作): resend the current request, ask for the archive
//! package again, resolve a stuck alert. The caller audits who did it.

use chrono::{DateTime, Utc};

use super::*;

pub(super) fn on_action(case: &Case, action: OperatorAction, now: DateTime<Utc>, rules: &dyn Rules) -> Transition {
    let unexpected = |why: &str| Transition::Refused(ErrorCode::Unexpected, why.to_owned());
    match (action, &case.phase) {
        (_, Phase::Closed { .. }) => closed_case(),
        (OperatorAction::Resend, Phase::Held { student, stage: HeldStage::Reviewing { chain, step, deadline } }) => {
            // A reviewer's request is in the province's inbox; sending it again is harmless.
            let mut c = case.clone();
            c.resends += 1;
            let request = review_request(&c, student, chain, *step, *deadline);
            Transition::Changed(Box::new(c), vec![request])
        }
        (OperatorAction::Resend, phase) if phase.is_automated() => timers::resend(case, now, rules),
        (OperatorAction::Resend, Phase::Verifying | Phase::Held { .. }) => {
            unexpected("nothing to resend at this stage")
        }
        (
            OperatorAction::Rerequest,
            Phase::Held { student, stage: HeldStage::ArchiveRequested { .. } | HeldStage::Delivering { .. } },
        ) => {
            let effects = vec![Effect::ForgetArchiveFiles, archive_request(case)];
            let stage = HeldStage::ArchiveRequested { arriving: Arriving::default() };
            enter_automated(case.clone(), Phase::Held { student: student.clone(), stage }, now, rules, effects)
        }
        (OperatorAction::Rerequest, Phase::Verifying | Phase::Held { .. }) => {
            unexpected("a package can be requested again only while it is requested or being delivered")
        }
        (OperatorAction::Resolve, phase) if phase.is_automated() => {
            let mut c = case.clone();
            c.since = now;
            c.last_error = None;
            Transition::Changed(Box::new(c), vec![])
        }
        (OperatorAction::Resolve, Phase::Verifying | Phase::Held { .. }) => unexpected(
            "only a stuck automated stage can be resolved; an overdue review waits for its reviewer (domain.md G-6)",
        ),
    }
}
