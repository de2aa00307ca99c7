//! Verification (转出省份校验): the out-province finds the student by name and national student
//! ID, checks he may do this business, and holds him for the case — or refuses.

use chrono::{DateTime, Utc};
use schemas::messages::StudentStatus;

use super::*;

pub(super) fn body(case: &Case) -> VerifyRequest {
    let f = &case.facts;
    VerifyRequest {
        business: f.business,
        student_name: f.student_name.clone(),
        student_id: f.student_id.clone(),
        requesting_province: f.in_province,
        requesting_school: f.in_school.clone(),
        target_grade: f.target_grade,
    }
}

pub(super) fn request(case: &Case) -> Effect {
    Effect::Send { to: case.facts.out_province, body: Body::VerifyRequest(body(case)) }
}

pub(super) fn on_verified(
    case: &Case,
    from: Party,
    result: &VerifyResult,
    now: DateTime<Utc>,
    rules: &dyn Rules,
) -> Transition {
    let f = &case.facts;
    let out = Party::Province(f.out_province);
    match &case.phase {
        Phase::Verifying if from != out => Transition::Refused(
            ErrorCode::NotYourStep,
            format!("verification is the out-province's ({out}), not {from}'s"),
        ),
        Phase::Verifying => match result {
            VerifyResult::Refused(r) => {
                let remark = r.remark.as_ref().map(|t| t.to_string()).unwrap_or_else(|| r.code.zh().to_owned());
                // The index said the out-province holds the student, the out-province says it
                // does not: the index must not go on offering him (operators see the
                // disagreement, and the province is asked to report him again).
                let effects = if r.code == ErrorCode::StudentNotFound {
                    vec![Effect::IndexDisputed { province: f.out_province, student: f.student_id.clone() }]
                } else {
                    vec![]
                };
                close(case.clone(), Outcome::Refused, Some(r.code), Some(&remark), now, effects)
            }
            VerifyResult::Held(held) => {
                let mut c = case.clone();
                c.facts.out_school = held.school.clone();
                match rules.eligible(f.business, f.out_province, held) {
                    Err(code) => {
                        // The out-province holds him already: it must let go before the case ends.
                        let effects = vec![release(&c, ReleaseReason::Rejected)];
                        let remark = Some(refusal_text(code, held.status));
                        let stage = HeldStage::Releasing { outcome: Outcome::Refused, code: Some(code), remark };
                        enter_automated(c, Phase::Held { student: held.clone(), stage }, now, rules, effects)
                    }
                    Ok(()) => {
                        let chain = rules.chain(f.business, f.in_province, f.out_province);
                        c.chain = Some(chain.clone());
                        start_step(c, held.clone(), chain, 0, now, rules, vec![])
                    }
                }
            }
        },
        Phase::Held { .. } | Phase::Closed { .. } => Transition::Ignored("verification result after verification"),
    }
}

/// What the initiator is told when the student's record status refuses the business: the code's
/// text and what the school must do first (domain.md §A.4).
pub fn refusal_text(code: ErrorCode, status: StudentStatus) -> String {
    use StudentStatus::*;
    let advice = match status {
        Suspended => {
            "该生处于休学状态,须先由转出学校办理复学 / the student is suspended: the sending school must process 复学 (resumption) first"
        }
        Resumed => {
            "复学后学籍状态应为在校,请转出省核对学籍状态 / a resumed student should be 在校: the out-province must correct the status first"
        }
        JuniorGraduate => {
            "初中毕业生请办理毕业后跨省就学 / a junior-high graduate goes through post-graduation enrollment (毕业后跨省就学), not a transfer"
        }
        SeniorGraduate | Completed | Attended => {
            "已毕业、结业或肄业,不能办理跨省转学 / graduated, completed or left: no cross-province transfer"
        }
        Deceased | ToVocational | StudyingElsewhere => {
            "须先由转出学校办理恢复在校生申请 / the sending school must first restore the student to 在校 (恢复在校生申请)"
        }
        Missing => {
            "学籍状态为失踪,须先由转出学校核实并恢复 / the student is recorded as missing: the sending school must verify and restore the record first"
        }
        DroppedOut => {
            "辍学学生须先经主管教育局审核返校 / a dropout must first return to school, reviewed by the supervising bureau"
        }
        SuspectedDropout => "疑似辍学学生须先返校 / a suspected dropout must first return to school",
        Enrolled | PrimaryGraduate | Abroad | OtherDeparture | Withdrawn | Expelled => {
            "该省不允许此学籍状态转出 / the out-province does not let this status transfer"
        }
    };
    format!("{}:{} ({}). {advice}", code.zh(), status.label_zh(), code.en())
}
