//! Reviews (核办): each step of the chain decided in order by the province that must act; any
//! rejection ends the case (once the out-province has released its hold).

use chrono::{DateTime, Utc};
use schemas::messages::Decision;

use super::*;

pub(super) fn on_decided(
    case: &Case,
    from: Party,
    decision: &ReviewDecision,
    now: DateTime<Utc>,
    rules: &dyn Rules,
) -> Transition {
    let f = &case.facts;
    match &case.phase {
        Phase::Held { student, stage: HeldStage::Reviewing { chain, step, .. } } => {
            let expected = chain.at(*step);
            let acting = f.province(expected.side);
            if decision.step != expected || from != Party::Province(acting) {
                return not_your_step(case, from);
            }
            let record = StepRecord {
                step: expected,
                decision: decision.decision,
                unit: decision.unit.clone(),
                reviewer: decision.reviewer.clone(),
                opinion: decision.opinion.clone(),
                decided_at: now,
            };
            let mut c = case.clone();
            c.decisions.push(record.clone());
            let recorded = Effect::Record { province: acting, record };
            match decision.decision {
                Decision::Reject => {
                    // The applicant learns why from the closing message itself, not only from the
                    // case history.
                    let remark = format!(
                        "{} 不同意 / rejected by {} ({}): {}",
                        expected, decision.unit, decision.reviewer, decision.opinion
                    );
                    let effects = vec![recorded, release(&c, ReleaseReason::Rejected)];
                    let stage = HeldStage::Releasing { outcome: Outcome::Rejected, code: None, remark: Some(remark) };
                    enter_automated(c, Phase::Held { student: student.clone(), stage }, now, rules, effects)
                }
                Decision::Approve if step + 1 < chain.len() => {
                    start_step(c, student.clone(), chain.clone(), step + 1, now, rules, vec![recorded])
                }
                Decision::Approve => {
                    let effects = vec![recorded, archive_request(&c)];
                    let stage = HeldStage::ArchiveRequested { arriving: Arriving::default() };
                    enter_automated(c, Phase::Held { student: student.clone(), stage }, now, rules, effects)
                }
            }
        }
        Phase::Held {
            stage:
                HeldStage::Releasing { .. }
                | HeldStage::ArchiveRequested { .. }
                | HeldStage::Delivering { .. }
                | HeldStage::Committing,
            ..
        }
        | Phase::Verifying => not_your_step(case, from),
        Phase::Closed { .. } => closed_case(),
    }
}
