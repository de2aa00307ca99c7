//! Cross-province problem groups (问题学籍组, domain.md §B.3, §C): pure transitions. A group
//! holds the records of one student in two or more provinces, in turn order (the record
//! registered or changed later first: C.4). Each transition takes the group as it is and
//! returns the group as it becomes and the effects to carry out, as complete data; a refusal
//! is a code and a detail, and changes nothing.

mod detect;
#[cfg(test)]
mod tests;

pub use detect::{Candidate, Found, Settled, find, identity_of, member_of};

use chrono::{DateTime, Utc};
use schemas::CaseId;
use schemas::ErrorCode;
use schemas::ids::{IdDocument, PersonName, ProvinceCode, SchoolCode, StudentId, Text};
use schemas::messages::{
    Approval, AttachmentRef, Body, ChangedIdentity, GroupState, HandlingMode, Level, MEMBERS_MAX, MemberState,
    ProblemKind, ProblemMember, ProblemRelay, ProblemStatus, ProblemTask, TaskReason, UpTo,
};
use serde::{Deserialize, Serialize};

/// A refusal: the code and what exactly was wrong.
pub type Refusal = (ErrorCode, String);

/// One record of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub province: ProvinceCode,
    pub school: SchoolCode,
    pub student_id: StudentId,
    pub name: PersonName,
    pub id_document: IdDocument,
    pub registered_at: DateTime<Utc>,
    pub key_data_changed_at: Option<DateTime<Utc>>,
    pub state: MemberState,
    /// The national office's comment, once decided.
    pub comment: Option<Text>,
}

impl Member {
    /// When the record became what it is: registration or the last key-data change.
    pub fn since(&self) -> DateTime<Utc> {
        self.key_data_changed_at.map_or(self.registered_at, |k| k.max(self.registered_at))
    }

    /// Still a record of the student: not changed away, not deleted.
    pub fn remains(&self) -> bool {
        !matches!(self.state, MemberState::Changed | MemberState::Deleted)
    }

    /// Its province holds the task.
    pub fn handling(&self) -> bool {
        matches!(self.state, MemberState::Handling | MemberState::Rejected)
    }

    fn wire(&self) -> ProblemMember {
        ProblemMember {
            province: self.province,
            school: self.school.clone(),
            student_id: self.student_id.clone(),
            name: self.name.clone(),
            registered_at: self.registered_at,
            key_data_changed_at: self.key_data_changed_at,
            state: self.state,
            comment: self.comment.clone(),
        }
    }
}

/// How a group came to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "origin")]
pub enum Origin {
    /// The hub's national de-duplication of index updates.
    Dedup,
    /// Loaded by the national office (legacy groups).
    Loaded,
    /// 发起重新处理 of a record of a finished group (C.8).
    Reprocess { of: CaseId },
}

impl Origin {
    pub fn name(&self) -> &'static str {
        match self {
            Origin::Dedup => "dedup",
            Origin::Loaded => "loaded",
            Origin::Reprocess { .. } => "reprocess",
        }
    }
}

/// A problem group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: CaseId,
    pub kind: ProblemKind,
    pub origin: Origin,
    /// The de-duplication key: at most one unfinished group per key.
    pub identity: String,
    pub state: GroupState,
    /// In turn order.
    pub members: Vec<Member>,
    pub opened_at: DateTime<Utc>,
    /// Since when it waits on whom it waits on now.
    pub waiting_since: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// Who a group waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitingOn {
    Provinces(Vec<ProvinceCode>),
    NationalOffice,
}

impl Group {
    /// Whom it waits on now; `None` once closed.
    pub fn waiting_on(&self) -> Option<WaitingOn> {
        match self.state {
            GroupState::Closed => None,
            GroupState::Arbitration => Some(WaitingOn::NationalOffice),
            GroupState::Open => {
                let mut p: Vec<ProvinceCode> =
                    self.members.iter().filter(|m| m.handling()).map(|m| m.province).collect();
                p.dedup();
                Some(WaitingOn::Provinces(p))
            }
        }
    }

    /// The member of `province` with `student_id`.
    pub fn member(&self, province: ProvinceCode, student_id: &StudentId) -> Option<usize> {
        self.members.iter().position(|m| m.province == province && &m.student_id == student_id)
    }

    fn provinces(&self) -> Vec<ProvinceCode> {
        let mut p: Vec<ProvinceCode> = self.members.iter().map(|m| m.province).collect();
        p.sort();
        p.dedup();
        p
    }

    fn wire_members(&self) -> UpTo<ProblemMember, MEMBERS_MAX> {
        UpTo::new(self.members.iter().map(Member::wire).collect()).expect("a group has at most MEMBERS_MAX members")
    }

    /// `problem.status` of the group as it stands.
    pub fn status(&self) -> Body {
        Body::ProblemStatus(ProblemStatus {
            group_id: self.id,
            kind: self.kind,
            state: self.state,
            reprocesses: match self.origin {
                Origin::Reprocess { of } => Some(of),
                _ => None,
            },
            member: self.wire_members(),
        })
    }

    fn task(&self, i: usize, reason: TaskReason) -> Effect {
        let m = &self.members[i];
        Effect::Send {
            to: m.province,
            body: Box::new(Body::ProblemTask(ProblemTask {
                group_id: self.id,
                kind: self.kind,
                student_id: m.student_id.clone(),
                reason,
                attest_allowed: m.state != MemberState::Rejected,
                member: self.wire_members(),
            })),
        }
    }

    fn status_to_all(&self, effects: &mut Vec<Effect>) {
        for p in self.provinces() {
            effects.push(Effect::Send { to: p, body: Box::new(self.status()) });
        }
    }
}

/// What a transition asks the handler to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send {
        to: ProvinceCode,
        body: Box<Body>,
    },
    /// Hold every member's student in the register of open business.
    Hold,
    /// Let go of them.
    Release,
    /// A history entry.
    Event {
        actor: String,
        what: &'static str,
        detail: serde_json::Value,
    },
}

/// What the settings decide of problem handling.
pub trait ProblemRules {
    /// The approval levels of `province` for `mode`, in order ([002 §22]; Shandong escalates
    /// a deletion to the province: [003 Q21]; domain.md G-10).
    fn chain(&self, province: ProvinceCode, mode: HandlingMode) -> Vec<Level>;
    /// Why an evidence file is refused (size, type), if it is.
    fn evidence_problem(&self, file: &AttachmentRef) -> Option<Refusal>;
}

/// Sorts members into turn order: the record that became what it is later acts first (C.4);
/// ties by province and student id, so that every hub orders them alike.
fn in_turn_order(mut members: Vec<Member>) -> Vec<Member> {
    members.sort_by(|a, b| {
        b.since().cmp(&a.since()).then(a.province.cmp(&b.province)).then(a.student_id.cmp(&b.student_id))
    });
    members
}

/// Opens a group: the first member in turn order gets the task; every member's student is held.
pub fn open(
    id: CaseId,
    kind: ProblemKind,
    origin: Origin,
    identity: String,
    members: Vec<Member>,
    now: DateTime<Utc>,
) -> (Group, Vec<Effect>) {
    let reason = if matches!(origin, Origin::Reprocess { .. }) { TaskReason::Reprocess } else { TaskReason::FirstTurn };
    let mut members = in_turn_order(members);
    for (i, m) in members.iter_mut().enumerate() {
        m.state = if i == 0 { MemberState::Handling } else { MemberState::Waiting };
        m.comment = None;
    }
    let group = Group {
        id,
        kind,
        origin,
        identity,
        state: GroupState::Open,
        members,
        opened_at: now,
        waiting_since: now,
        closed_at: None,
    };
    let detail = serde_json::json!({
        "kind": kind, "origin": group.origin.name(),
        "members": group.members.iter().map(|m| format!("{}:{}", m.province.code(), m.student_id)).collect::<Vec<_>>(),
    });
    let effects =
        vec![Effect::Hold, Effect::Event { actor: "hub".into(), what: "opened", detail }, group.task(0, reason)];
    (group, effects)
}

/// Records of the group's identity found after it opened join it (a third province reporting
/// the same resident ID): they wait their turn after the records already in it; a group that
/// waited for arbitration goes back to its records, since the new one has not been handled.
pub fn join(group: &Group, mut joining: Vec<Member>, now: DateTime<Utc>) -> Option<(Group, Vec<Effect>)> {
    joining.retain(|j| group.member(j.province, &j.student_id).is_none());
    if group.state == GroupState::Closed || joining.is_empty() || group.members.len() + joining.len() > MEMBERS_MAX {
        return None;
    }
    let mut g = group.clone();
    let names: Vec<String> = joining.iter().map(|m| format!("{}:{}", m.province.code(), m.student_id)).collect();
    for mut m in in_turn_order(joining) {
        m.state = MemberState::Waiting;
        m.comment = None;
        g.members.push(m);
    }
    if g.state == GroupState::Arbitration {
        g.state = GroupState::Open;
    }
    let mut effects = vec![
        Effect::Hold,
        Effect::Event { actor: "hub".into(), what: "joined", detail: serde_json::json!({ "members": names }) },
    ];
    advance(&mut g, now, &mut effects);
    g.status_to_all(&mut effects);
    Some((g, effects))
}

/// A province's approved handling of one of its records.
#[derive(Debug, Clone)]
pub struct Handled<'a> {
    pub province: ProvinceCode,
    pub student_id: &'a StudentId,
    pub mode: HandlingMode,
    pub changed: Option<&'a ChangedIdentity>,
    pub approvals: &'a [Approval],
    pub evidence: Vec<AttachmentRef>,
}

/// Checks a change against the rules of C.3: something changes; never the name and the ID
/// number together; never a formal (resident) ID to "no ID document".
///
/// # Errors
/// `E_CHANGE_FORBIDDEN` with what was wrong.
pub fn check_change(member: &Member, changed: &ChangedIdentity) -> Result<(), Refusal> {
    let name_changes = changed.name.as_ref().is_some_and(|n| n != &member.name);
    let document_changes = changed.id_document.as_ref().is_some_and(|d| d != &member.id_document);
    if !name_changes && !document_changes {
        return Err((ErrorCode::ChangeForbidden, "a change must set a new name or a new ID document".into()));
    }
    if name_changes && document_changes {
        return Err((
            ErrorCode::ChangeForbidden,
            "the name and the ID number may not change together ([002 §2]); change one, then the other".into(),
        ));
    }
    if matches!(member.id_document, IdDocument::Resident(_))
        && matches!(changed.id_document, Some(IdDocument::NoDocument { .. }))
    {
        return Err((
            ErrorCode::ChangeForbidden,
            "a record with a resident ID may not change to no ID document ([002 §2])".into(),
        ));
    }
    Ok(())
}

fn check_result(member: &Member, r: &Handled<'_>, rules: &dyn ProblemRules) -> Result<(), Refusal> {
    if r.mode == HandlingMode::Attest && member.state == MemberState::Rejected {
        return Err((
            ErrorCode::ModeNotAllowed,
            format!("{} was not upheld by the national office: change or delete it", member.student_id),
        ));
    }
    // Evidence for all three modes ([002 §2]: 3种处理方式都需要上传).
    if r.evidence.is_empty() {
        return Err((
            ErrorCode::EvidenceMissing,
            "a handling result needs evidence (证明材料), whatever its mode".into(),
        ));
    }
    if let Some(refusal) = r.evidence.iter().find_map(|f| rules.evidence_problem(f)) {
        return Err(refusal);
    }
    let chain = rules.chain(r.province, r.mode);
    let levels: Vec<Level> = r.approvals.iter().map(|a| a.level).collect();
    if levels != chain {
        return Err((
            ErrorCode::Approvals,
            format!(
                "province {} approves {:?} through {chain:?}; the result carries {levels:?}",
                r.province.code(),
                r.mode
            ),
        ));
    }
    match (r.mode, r.changed) {
        (HandlingMode::Change, Some(changed)) => check_change(member, changed),
        (HandlingMode::Change, None) => {
            Err((ErrorCode::ChangeForbidden, "a change must say what it changes (`changed`)".into()))
        }
        (_, Some(_)) => Err((ErrorCode::ChangeForbidden, "only a change carries a changed identity".into())),
        (_, None) => Ok(()),
    }
}

/// A handling result (problem.result) from a member's province.
///
/// # Errors
/// A refusal, when the group, the turn, the mode, the evidence, the approvals or the change do
/// not allow it.
pub fn on_result(
    group: &Group,
    r: &Handled<'_>,
    rules: &dyn ProblemRules,
    now: DateTime<Utc>,
) -> Result<(Group, Vec<Effect>), Refusal> {
    if group.state == GroupState::Closed {
        return Err((ErrorCode::GroupClosed, format!("group {} has finished", group.id)));
    }
    let Some(i) = group.member(r.province, r.student_id) else {
        return Err((
            ErrorCode::GroupNotFound,
            format!("{} is not a record of province {} in group {}", r.student_id, r.province.code(), group.id),
        ));
    };
    if group.state == GroupState::Arbitration {
        return Err((ErrorCode::NotYourStep, "the group waits for the national office's decision".into()));
    }
    let member = &group.members[i];
    if !member.handling() {
        return Err((
            ErrorCode::NotYourStep,
            format!("{} is not to be handled now ({:?})", member.student_id, member.state),
        ));
    }
    check_result(member, r, rules)?;
    // The chain approves level after level, and not in the future (a clock a few minutes off
    // is tolerated).
    let times: Vec<DateTime<Utc>> = r.approvals.iter().map(|a| a.approved_at).collect();
    if times.windows(2).any(|w| w[1] < w[0]) || times.iter().any(|t| *t > now + chrono::Duration::minutes(5)) {
        return Err((ErrorCode::Approvals, "approvals must follow one another in time, none in the future".into()));
    }

    let mut g = group.clone();
    let m = &mut g.members[i];
    m.state = match r.mode {
        HandlingMode::Attest => MemberState::Attested,
        HandlingMode::Change => MemberState::Changed,
        HandlingMode::Delete => MemberState::Deleted,
    };
    if let Some(changed) = r.changed {
        if let Some(name) = &changed.name {
            m.name = name.clone();
        }
        if let Some(doc) = &changed.id_document {
            m.id_document = doc.clone();
        }
    }
    let mut effects = vec![Effect::Event {
        actor: r.province.code().to_owned(),
        what: "result",
        detail: serde_json::json!({
            "studentId": r.student_id, "mode": r.mode, "changed": r.changed,
            "approval": r.approvals, "evidence": r.evidence,
        }),
    }];
    // The result goes to the other side's provinces (C.4, [002 §2]).
    let relay = Body::ProblemRelay(ProblemRelay {
        group_id: g.id,
        province: r.province,
        student_id: r.student_id.clone(),
        mode: r.mode,
        changed: r.changed.cloned(),
        approval: UpTo::new(r.approvals.to_vec()).expect("as many approvals as the result carried"),
        evidence: UpTo::new(r.evidence.clone()).expect("as many files as the result carried"),
    });
    for p in g.provinces().into_iter().filter(|p| *p != r.province) {
        effects.push(Effect::Send { to: p, body: Box::new(relay.clone()) });
    }
    advance(&mut g, now, &mut effects);
    if g.state == GroupState::Open {
        // The sender learns its result was taken; on arbitration or close every member does.
        effects.push(Effect::Send { to: r.province, body: Box::new(g.status()) });
    }
    Ok((g, effects))
}

/// After a result or a decision: close (N-1 rule, a single record handled, every attestation
/// of a duplicate that may be attested twice), go to arbitration, or pass the turn.
fn advance(g: &mut Group, now: DateTime<Utc>, effects: &mut Vec<Effect>) {
    if g.members.iter().any(Member::handling) {
        return;
    }
    let remaining: Vec<usize> = (0..g.members.len()).filter(|&i| g.members[i].remains()).collect();
    if g.members.len() > 1 && remaining.len() <= 1 {
        // N-1 (C.5): every other record changed or deleted; the last one is attested and
        // approved by default, with no task to its province.
        if let Some(&last) = remaining.first()
            && g.members[last].state == MemberState::Waiting
        {
            g.members[last].state = MemberState::AutoAttested;
            effects.push(Effect::Event {
                actor: "hub".into(),
                what: "auto-attested",
                detail: serde_json::json!({ "studentId": g.members[last].student_id }),
            });
        }
        return close(g, now, effects);
    }
    if let Some(next) = g.members.iter().position(|m| m.state == MemberState::Waiting) {
        g.members[next].state = MemberState::Handling;
        g.waiting_since = now;
        effects.push(g.task(next, TaskReason::OtherSideAttested));
        return;
    }
    let upheld = g.members.iter().any(|m| m.state == MemberState::Upheld);
    if g.kind == ProblemKind::IdDuplicate && remaining.len() > 1 && !upheld {
        // Every remaining record of an ID duplicate attested: the national office decides (C.6).
        g.state = GroupState::Arbitration;
        g.waiting_since = now;
        effects.push(Effect::Event { actor: "hub".into(), what: "arbitration", detail: serde_json::json!({}) });
        g.status_to_all(effects);
        return;
    }
    // A name/sex/birth-date duplicate may keep both attestations (C.2, G-15); a single record
    // is done once handled.
    close(g, now, effects);
}

fn close(g: &mut Group, now: DateTime<Utc>, effects: &mut Vec<Effect>) {
    g.state = GroupState::Closed;
    g.closed_at = Some(now);
    g.waiting_since = now;
    effects.push(Effect::Release);
    effects.push(Effect::Event { actor: "hub".into(), what: "closed", detail: serde_json::json!({}) });
    g.status_to_all(effects);
}

/// The national office's decision (仲裁): exactly one record upheld; the others may then only
/// be changed or deleted (C.7).
///
/// # Errors
/// The group does not wait for arbitration, or the upheld record is not one of its own.
pub fn decide(
    group: &Group,
    upheld: &StudentId,
    comments: &[(StudentId, Text)],
    by: &str,
    now: DateTime<Utc>,
) -> Result<(Group, Vec<Effect>), Refusal> {
    match group.state {
        GroupState::Closed => return Err((ErrorCode::GroupClosed, format!("group {} has finished", group.id))),
        GroupState::Open => return Err((ErrorCode::NotYourStep, "the group does not wait for arbitration".into())),
        GroupState::Arbitration => {}
    }
    let Some(winner) = group.members.iter().position(|m| m.remains() && &m.student_id == upheld) else {
        return Err((ErrorCode::GroupNotFound, format!("{upheld} is not an attested record of group {}", group.id)));
    };
    if let Some((s, _)) = comments.iter().find(|(s, _)| !group.members.iter().any(|m| &m.student_id == s)) {
        return Err((ErrorCode::GroupNotFound, format!("the comment names {s}, not a record of group {}", group.id)));
    }
    let mut g = group.clone();
    g.state = GroupState::Open;
    g.waiting_since = now;
    let mut effects = vec![Effect::Event {
        actor: format!("national-office:{by}"),
        what: "decided",
        detail: serde_json::json!({ "upheld": upheld, "comments": comments }),
    }];
    let mut rejected = Vec::new();
    for (i, m) in g.members.iter_mut().enumerate() {
        m.comment = comments.iter().find(|(s, _)| s == &m.student_id).map(|(_, c)| c.clone());
        if i == winner {
            m.state = MemberState::Upheld;
        } else if m.remains() {
            m.state = MemberState::Rejected;
            rejected.push(i);
        }
    }
    g.status_to_all(&mut effects);
    for i in rejected {
        effects.push(g.task(i, TaskReason::ArbitrationRejected));
    }
    Ok((g, effects))
}

/// 发起重新处理 (C.8): a new group for one record of a finished group, handled by its own
/// province only; nothing goes to the other side.
///
/// # Errors
/// The group has not finished, the record is not the province's in it, or was changed or
/// deleted (nothing left to re-process).
pub fn reprocess(
    group: &Group,
    province: ProvinceCode,
    student_id: &StudentId,
    new_id: CaseId,
    now: DateTime<Utc>,
) -> Result<(Group, Vec<Effect>), Refusal> {
    let Some(i) = group.member(province, student_id) else {
        return Err((
            ErrorCode::GroupNotFound,
            format!("{student_id} is not a record of province {} in group {}", province.code(), group.id),
        ));
    };
    if group.state != GroupState::Closed {
        return Err((
            ErrorCode::GroupOpen,
            format!(
                "group {} has not finished ({:?}); finish its handling or arbitration first",
                group.id, group.state
            ),
        ));
    }
    let m = &group.members[i];
    if !m.remains() {
        return Err((ErrorCode::NotYourStep, format!("{student_id} was {:?}: nothing to re-process", m.state)));
    }
    let identity = format!("reprocess:{student_id}");
    let (g, mut effects) = open(new_id, group.kind, Origin::Reprocess { of: group.id }, identity, vec![m.clone()], now);
    effects.push(Effect::Send { to: province, body: Box::new(g.status()) });
    Ok((g, effects))
}
