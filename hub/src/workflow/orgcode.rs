//! Organization-code changes (机构代码变动, domain.md §D): one change record at the province it
//! concerns, 未确认 → 已确认 → 处理完毕. An addition or a change takes effect when it is confirmed;
//! a revocation (撤销, 撤销教育阶段) stays confirmed while anything references the unit, and
//! executes once nothing does (D.7). Pure: the handler counts the blockers and writes.

use chrono::{DateTime, Utc};
use schemas::ids::{DivisionCode, ProvinceCode};
use schemas::messages::{
    Blockers, Body, ChangeAction, ChangeState, OrgBatch, OrgRecord, OrgcodeConfirm, OrgcodeRevoked, OrgcodeStatus,
    UnitKind,
};
use schemas::{CaseId, ErrorCode};

type Refusal = (ErrorCode, String);

/// One change record at its province.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: CaseId,
    pub province: ProvinceCode,
    /// Its place in the province's sequence.
    pub sequence: u64,
    pub kind: UnitKind,
    pub state: ChangeState,
    pub confirm_by: DivisionCode,
    pub record: OrgRecord,
}

/// What a transition asks the handler to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The registry takes the unit as the record describes it (新增, 变更).
    Apply(OrgRecord),
    /// The registry revokes the unit, or the record's stage of it.
    Revoke(OrgRecord),
    /// Tell the province.
    Send(Box<Body>),
    /// Count the blockers again later: a backstop to the execution in the transaction that
    /// removes the last one.
    Recheck,
    /// The history of the record.
    Event { what: &'static str, detail: String },
}

/// The province a record concerns: the unit's.
pub fn province_of(record: &OrgRecord, school_province: Option<ProvinceCode>) -> Option<ProvinceCode> {
    match (&record.department, &record.school) {
        (Some(d), _) => Some(d.code.province()),
        (None, Some(s)) => school_province.or(Some(s.department.province())),
        (None, None) => None,
    }
}

/// Who confirms (D.2, D.3): a division record the province's own department; a school record
/// the school's supervising department — the one it has now, for a school the registry knows
/// (a move is confirmed by the department it leaves), else the record's.
pub fn confirmer(record: &OrgRecord, current_department: Option<&DivisionCode>) -> Option<DivisionCode> {
    match (&record.department, &record.school) {
        (Some(d), _) => Some(DivisionCode::of_province(d.code.province())),
        (None, Some(s)) => Some(current_department.cloned().unwrap_or_else(|| s.department.clone())),
        (None, None) => None,
    }
}

/// Checks a batch as loaded: every record fits the batch's kind, no unit twice.
///
/// # Errors
/// The first record at fault, by its place (from 1).
pub fn check_batch(b: &OrgBatch) -> Result<(), Refusal> {
    let mut seen = std::collections::HashSet::new();
    for (i, r) in b.record.items().iter().enumerate() {
        r.check(b.kind).map_err(|why| (ErrorCode::Schema, format!("record {}: {why}", i + 1)))?;
        if !seen.insert((r.unit_code().to_owned(), r.stage)) {
            return Err((
                ErrorCode::Schema,
                format!(
                    "record {}: 同一批次中 {} 出现两次 / {} appears twice in the batch",
                    i + 1,
                    r.unit_code(),
                    r.unit_code()
                ),
            ));
        }
    }
    if b.record.is_empty() {
        return Err((ErrorCode::Schema, "批次没有变动记录 / the batch has no records".into()));
    }
    Ok(())
}

fn status(c: &Change, blockers: Option<Blockers>) -> Effect {
    Effect::Send(Box::new(Body::OrgcodeStatus(OrgcodeStatus {
        change_id: c.id,
        sequence: c.sequence,
        state: c.state,
        blockers,
    })))
}

/// 确认变动. `earlier` is the sequence of an unconfirmed earlier record of the same unit, if
/// any: records of one unit are confirmed in order, or a later state would be overwritten by an
/// earlier one. Confirming again changes nothing and answers where the record stands.
///
/// # Errors
/// Not the confirming department; an earlier record of the unit waits.
pub fn confirm(c: &Change, by: &OrgcodeConfirm, earlier: Option<u64>) -> Result<(Change, Vec<Effect>), Refusal> {
    if c.state != ChangeState::Unconfirmed {
        return Ok((c.clone(), vec![status(c, None)]));
    }
    if by.unit != c.confirm_by {
        return Err((
            ErrorCode::NotYourStep,
            format!("change {} is confirmed by department {}, not {}", c.id, c.confirm_by, by.unit),
        ));
    }
    if let Some(seq) = earlier {
        return Err((
            ErrorCode::ChangeOrder,
            format!("record {seq} of unit {} comes first; confirm it before {}", c.record.unit_code(), c.sequence),
        ));
    }
    let mut next = c.clone();
    let event = Effect::Event { what: "confirmed", detail: format!("{} {}", by.unit, by.reviewer) };
    if c.record.action.is_revocation() {
        next.state = ChangeState::Confirmed;
        Ok((next, vec![event]))
    } else {
        next.state = ChangeState::Done;
        let effects = vec![event, Effect::Apply(c.record.clone()), status(&next, None)];
        Ok((next, effects))
    }
}

/// A confirmed revocation, its blockers counted: executes when there are none (the province is
/// told, accounts disabled for a whole unit, G-8 for a stage); otherwise waits, the province told
/// what blocks it when `tell` (on confirmation).
pub fn settle(c: &Change, blockers: Blockers, tell: bool, now: DateTime<Utc>) -> (Change, Vec<Effect>) {
    if c.state != ChangeState::Confirmed {
        return (c.clone(), vec![]);
    }
    if !blockers.none() {
        let mut effects = vec![Effect::Recheck];
        if tell {
            effects.push(status(c, Some(blockers)));
        }
        return (c.clone(), effects);
    }
    let mut next = c.clone();
    next.state = ChangeState::Done;
    let revoked = OrgcodeRevoked {
        change_id: c.id,
        sequence: c.sequence,
        record: c.record.clone(),
        revoked_at: now,
        disable_accounts: c.record.action == ChangeAction::Revoke,
    };
    let effects = vec![
        Effect::Revoke(c.record.clone()),
        Effect::Event { what: "executed", detail: "no blockers left".into() },
        Effect::Send(Box::new(Body::OrgcodeRevoked(revoked))),
    ];
    (next, effects)
}

#[cfg(test)]
mod tests {
    use schemas::messages::{Department, DepartmentLevel, SchoolUnit, UpTo};

    use super::*;

    fn school_record(action: ChangeAction) -> OrgRecord {
        OrgRecord {
            action,
            department: None,
            school: Some(SchoolUnit {
                code: "3751000001".parse().unwrap(),
                name: "示范小学".parse().unwrap(),
                department: "510107000000".parse().unwrap(),
                stage: UpTo::default(),
                code_usable_from: None,
            }),
            stage: None,
        }
    }

    fn change(action: ChangeAction) -> Change {
        Change {
            id: CaseId::from_uuid(uuid::Uuid::new_v4()),
            province: "51".parse().unwrap(),
            sequence: 3,
            kind: UnitKind::School,
            state: ChangeState::Unconfirmed,
            confirm_by: "510107000000".parse().unwrap(),
            record: school_record(action),
        }
    }

    fn by(unit: &str) -> OrgcodeConfirm {
        OrgcodeConfirm {
            change_id: CaseId::from_uuid(uuid::Uuid::new_v4()),
            unit: unit.parse().unwrap(),
            reviewer: "孙科长".parse().unwrap(),
        }
    }

    #[test]
    fn an_addition_takes_effect_on_confirmation_a_revocation_waits() {
        let (done, effects) = confirm(&change(ChangeAction::Add), &by("510107000000"), None).unwrap();
        assert_eq!(done.state, ChangeState::Done);
        assert!(effects.iter().any(|e| matches!(e, Effect::Apply(_))));
        let (waiting, effects) = confirm(&change(ChangeAction::Revoke), &by("510107000000"), None).unwrap();
        assert_eq!(waiting.state, ChangeState::Confirmed);
        assert!(!effects.iter().any(|e| matches!(e, Effect::Apply(_) | Effect::Revoke(_))));
    }

    #[test]
    fn only_the_confirming_department_confirms_and_in_order() {
        let c = change(ChangeAction::Change);
        assert_eq!(confirm(&c, &by("510108000000"), None).unwrap_err().0, ErrorCode::NotYourStep);
        assert_eq!(confirm(&c, &by("510107000000"), Some(2)).unwrap_err().0, ErrorCode::ChangeOrder);
        // Again after it is done: the same state, nothing applied twice.
        let (done, _) = confirm(&c, &by("510107000000"), None).unwrap();
        let (again, effects) = confirm(&done, &by("510107000000"), None).unwrap();
        assert_eq!(again, done);
        assert!(effects.iter().all(|e| matches!(e, Effect::Send(_))));
    }

    #[test]
    fn a_revocation_executes_once_when_nothing_blocks_it() {
        let (c, _) = confirm(&change(ChangeAction::Revoke), &by("510107000000"), None).unwrap();
        let blocked = Blockers { business: 1, ..Blockers::default() };
        let (still, effects) = settle(&c, blocked, true, Utc::now());
        assert_eq!(still.state, ChangeState::Confirmed);
        assert!(effects.contains(&Effect::Recheck));
        let (done, effects) = settle(&c, Blockers::default(), false, Utc::now());
        assert_eq!(done.state, ChangeState::Done);
        let revoked: Vec<_> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(b) => match b.as_ref() {
                    Body::OrgcodeRevoked(r) => Some(r.disable_accounts),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(revoked, vec![true], "accounts disabled with a whole school");
        assert!(settle(&done, Blockers::default(), false, Utc::now()).1.is_empty(), "never twice");
    }

    #[test]
    fn a_stage_revocation_leaves_the_accounts_to_the_province() {
        let mut c = change(ChangeAction::RevokeStage);
        c.record.stage = Some(schemas::ids::Stage::Primary);
        c.state = ChangeState::Confirmed;
        let (_, effects) = settle(&c, Blockers::default(), false, Utc::now());
        assert!(effects.iter().any(
            |e| matches!(e, Effect::Send(b) if matches!(b.as_ref(), Body::OrgcodeRevoked(r) if !r.disable_accounts))
        ));
    }

    #[test]
    fn who_confirms_and_what_a_batch_may_hold() {
        let d = OrgRecord {
            action: ChangeAction::Add,
            department: Some(Department {
                code: "370215000000".parse().unwrap(),
                name: "新区教育局".parse().unwrap(),
                level: DepartmentLevel::County,
                parent: Some("370200000000".parse().unwrap()),
            }),
            school: None,
            stage: None,
        };
        assert_eq!(confirmer(&d, None).unwrap().as_ref(), "370000000000", "the province confirms a division");
        let s = school_record(ChangeAction::Change);
        let current: DivisionCode = "510104000000".parse().unwrap();
        assert_eq!(confirmer(&s, Some(&current)), Some(current), "a move is confirmed by the department it leaves");
        assert_eq!(confirmer(&s, None).unwrap().as_ref(), "510107000000");
        let batch = |kind, record: Vec<OrgRecord>| OrgBatch {
            batch_id: "B-1".parse().unwrap(),
            version: 1,
            kind,
            published_on: "2026-09-15".parse().unwrap(),
            record: UpTo::new(record).unwrap(),
        };
        assert!(check_batch(&batch(UnitKind::Division, vec![d.clone()])).is_ok());
        assert!(check_batch(&batch(UnitKind::School, vec![d.clone()])).is_err(), "a department in a school batch");
        assert!(check_batch(&batch(UnitKind::Division, vec![d.clone(), d])).is_err(), "one unit twice");
        assert!(check_batch(&batch(UnitKind::School, vec![])).is_err());
        let mut stage_without = school_record(ChangeAction::RevokeStage);
        assert!(check_batch(&batch(UnitKind::School, vec![stage_without.clone()])).is_err());
        stage_without.stage = Some(schemas::ids::Stage::Junior);
        assert!(check_batch(&batch(UnitKind::School, vec![stage_without])).is_ok());
    }
}
