//! The case's timers: resending an automated stage's request that was not answered, and
//! reminding the reviewer of a pending step before, on and after its deadline (both parties
//! once it is overdue).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use schemas::messages::CaseReminder;

use super::*;

/// The first reminder due for a step with this deadline, from `now` on, after `after`.
pub(super) fn next_reminder(
    deadline: NaiveDate,
    after: Option<ReminderKind>,
    now: DateTime<Utc>,
    rules: &dyn Rules,
) -> Option<(DateTime<Utc>, ReminderKind)> {
    let nine = Duration::hours(9);
    let candidates = [
        (start_of(rules.calendar().sub_working_days(deadline, rules.remind_before())) + nine, ReminderKind::Upcoming),
        (start_of(deadline) + nine, ReminderKind::Due),
        (start_of(deadline + Duration::days(1)) + nine, ReminderKind::Overdue),
    ];
    let order = |k: ReminderKind| match k {
        ReminderKind::Upcoming => 0,
        ReminderKind::Due => 1,
        ReminderKind::Overdue => 2,
    };
    candidates
        .into_iter()
        .filter(|(_, k)| after.is_none_or(|a| order(*k) > order(a)))
        .find(|(at, k)| *at > now || *k == ReminderKind::Overdue)
        .map(|(at, k)| (at.max(now), k))
}

/// Sends the automated stage's request again, backing off.
pub(super) fn resend(case: &Case, now: DateTime<Utc>, rules: &dyn Rules) -> Transition {
    let mut c = case.clone();
    c.attempts += 1;
    c.resends += 1;
    let mut effects = stage_request(&c);
    effects.push(Effect::Arm { timer: CaseTimer::Resend, at: resend_at(&c, now, rules) });
    Transition::Changed(Box::new(c), effects)
}

pub(super) fn on_resend_due(case: &Case, now: DateTime<Utc>, rules: &dyn Rules) -> Transition {
    if case.phase.is_automated() { resend(case, now, rules) } else { Transition::Ignored("no request to resend") }
}

pub(super) fn on_reminder_due(case: &Case, kind: ReminderKind, now: DateTime<Utc>, rules: &dyn Rules) -> Transition {
    let f = &case.facts;
    match &case.phase {
        Phase::Held { stage: HeldStage::Reviewing { chain, step, deadline }, .. } => {
            let s = chain.at(*step);
            let reminder = Body::CaseReminder(CaseReminder { step: s, deadline: *deadline, kind });
            let acting = f.province(s.side);
            let mut effects = vec![Effect::Send { to: acting, body: reminder.clone() }];
            if kind == ReminderKind::Overdue {
                // Overdue: the other party learns that its case is late, too.
                let other = if acting == f.in_province { f.out_province } else { f.in_province };
                effects.push(Effect::Send { to: other, body: reminder });
            }
            if let Some((at, next)) = next_reminder(*deadline, Some(kind), now, rules) {
                effects.push(Effect::Arm { timer: CaseTimer::Reminder(next), at });
            }
            Transition::Changed(Box::new(case.clone()), effects)
        }
        Phase::Verifying
        | Phase::Held {
            stage:
                HeldStage::Releasing { .. }
                | HeldStage::ArchiveRequested { .. }
                | HeldStage::Delivering { .. }
                | HeldStage::Committing,
            ..
        }
        | Phase::Closed { .. } => Transition::Ignored("no review step pending"),
    }
}
