//! Problem groups (问题学籍组): opened by the national de-duplication of index updates or loaded
//! by the national office; handling results and re-processing from provinces; the national
//! office's decisions. Each runs in the unit of work of its cause, the group row locked: the
//! handler gathers facts, the workflow ([`crate::workflow::problem`]) decides, the handler
//! writes.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use schemas::ids::{ProvinceCode, StudentId, Text};
use schemas::messages::{Attachment, HandlingMode, ProblemKind, ProblemReprocess, ProblemResult, StudentSummary};
use schemas::{CaseId, Envelope, ErrorCode, Party};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Effects, refuse};
use crate::context::Context;
use crate::outgoing::Reply;
use crate::store::timers::Owner;
use crate::store::{orgcodes, problems, register, timers};
use crate::workflow::index::IndexEntry;
use crate::workflow::problem::{
    self as workflow, Candidate, Effect, Group, Handled, Member, Origin, Refusal, Settled, identity_of,
};

/// The business name of problem groups in the register of open business.
pub const OWNER: &str = "problem";

/// Namespace of group ids: derived from the identity and the how-many-th group of it, so that a
/// replayed cause opens the same group.
const GROUP_NAMESPACE: Uuid = Uuid::from_u128(0x9d1e_4c2a_7b3f_4e58_a061_5c7d_8e9f_0a1b);

/// How long a group waits before it tries again to hold a student another business holds.
const HOLD_RETRY: chrono::Duration = chrono::Duration::minutes(10);

/// The timer slot (and kind) of that retry.
pub const HOLD_TIMER: &str = "problem.hold";

fn owner(id: CaseId) -> Owner<'static> {
    Owner { business: OWNER, id: id.uuid() }
}

/// Holds every record's student in the register of open business; `false` when another
/// business (an open case) holds one already: that case runs to its end, and the group takes
/// the student when it lets go (admission reads the groups meanwhile, so no new business
/// starts).
async fn hold(conn: &mut PgConnection, g: &Group) -> Result<bool> {
    let mut all = true;
    let mut seen = std::collections::BTreeSet::new();
    for m in g.members.iter().filter(|m| seen.insert(m.student_id.to_string())) {
        match register::holder(conn, m.student_id.as_ref()).await? {
            Some(h) if h.business == OWNER && h.business_id == g.id.uuid() => {}
            Some(_) => all = false,
            None => {
                let schools = vec![m.school.to_string()];
                let divisions = orgcodes::departments_of(conn, &schools).await?;
                let entry = register::Entry {
                    student_id: m.student_id.as_ref(),
                    business: OWNER,
                    business_id: g.id.uuid(),
                    schools,
                    divisions,
                };
                all &= register::open(conn, &entry).await?;
            }
        }
    }
    Ok(all)
}

async fn retry_hold(conn: &mut PgConnection, id: CaseId, now: DateTime<Utc>) -> Result<()> {
    timers::schedule(conn, owner(id), HOLD_TIMER, HOLD_TIMER, now + HOLD_RETRY).await?;
    Ok(())
}

/// The hold retry: takes the students now free; armed again while one is still busy.
///
/// # Errors
/// Database errors.
pub async fn on_hold_timer(conn: &mut PgConnection, id: CaseId, now: DateTime<Utc>) -> Result<Option<Vec<Reply>>> {
    let Some(g) = problems::lock(conn, id.uuid()).await? else { return Ok(Some(vec![])) };
    if g.state != schemas::messages::GroupState::Closed && !hold(conn, &g).await? {
        retry_hold(conn, id, now).await?;
    }
    Ok(Some(vec![]))
}

/// Carries out a transition's effects; returns the messages to send.
async fn materialize(
    conn: &mut PgConnection,
    g: &Group,
    effects: Vec<Effect>,
    now: DateTime<Utc>,
) -> Result<Vec<Reply>> {
    let mut replies = Vec::new();
    for effect in effects {
        match effect {
            Effect::Send { to, body } => {
                replies.push(Reply { recipient: Party::Province(to), case_id: None, body: *body })
            }
            Effect::Hold => {
                if !hold(conn, g).await? {
                    retry_hold(conn, g.id, now).await?;
                }
            }
            Effect::Release => {
                register::close(conn, OWNER, g.id.uuid()).await?;
                timers::cancel_all(conn, owner(g.id)).await?;
                // A revocation this group blocked last executes in this transaction.
                let provinces: Vec<ProvinceCode> = g.members.iter().map(|m| m.province).collect();
                replies.extend(super::orgcode::settle(conn, &provinces, now).await?);
            }
            Effect::Event { actor, what, detail } => {
                problems::add_event(conn, g.id.uuid(), now, &actor, what, &detail).await?;
            }
        }
    }
    Ok(replies)
}

/// Opens the group the candidates of one identity make, unless one is unfinished already or
/// the last one settled them.
async fn open_if_new(
    conn: &mut PgConnection,
    kind: ProblemKind,
    identity: &str,
    candidates: &[Candidate],
    now: DateTime<Utc>,
) -> Result<Vec<Reply>> {
    if let Some(running) = problems::unfinished(conn, identity).await? {
        // Records found after the group opened join it.
        let Some(group) = problems::lock(conn, running).await? else { return Ok(vec![]) };
        let joining = candidates.iter().map(workflow::member_of).collect();
        let Some((g, effects)) = workflow::join(&group, joining, now) else { return Ok(vec![]) };
        problems::save_with_members(conn, &g).await?;
        return materialize(conn, &g, effects, now).await;
    }
    let (last, count) = problems::last_closed(conn, identity).await?;
    let settled = last.map(|g| Settled { members: g.members });
    let Some(found) = workflow::find(kind, identity, candidates, settled.as_ref()) else {
        return Ok(vec![]);
    };
    let id = CaseId::from_uuid(Uuid::new_v5(&GROUP_NAMESPACE, format!("{identity}#{count}").as_bytes()));
    let (group, effects) = workflow::open(id, found.kind, Origin::Dedup, found.identity, found.members, now);
    problems::insert(conn, &group).await?;
    materialize(conn, &group, effects, now).await
}

fn candidate(e: &IndexEntry) -> Candidate {
    Candidate { province: e.province, summary: e.summary.clone() }
}

/// The national de-duplication of what an index update applied (`applied`: written to the
/// index already) and of what it could not (`conflicting`: a national student ID another
/// province holds, with the report that claimed it).
///
/// # Errors
/// Database errors.
pub async fn deduplicate(
    conn: &mut PgConnection,
    applied: &[IndexEntry],
    conflicting: &[(IndexEntry, ProvinceCode, StudentSummary)],
    now: DateTime<Utc>,
) -> Result<Vec<Reply>> {
    let mut replies = Vec::new();
    // Resident IDs: one query for the whole batch.
    let mut by_identity: BTreeMap<String, (ProblemKind, Vec<Candidate>)> = BTreeMap::new();
    let numbers: Vec<String> = applied
        .iter()
        .filter(|e| matches!(e.summary.id_document, schemas::ids::IdDocument::Resident(_)))
        .filter_map(|e| e.summary.id_document.number().map(str::to_owned))
        .collect();
    for e in crate::store::index::by_resident_ids(conn, &numbers).await? {
        let (kind, identity) = identity_of(&e.summary);
        by_identity.entry(identity).or_insert_with(|| (kind, vec![])).1.push(candidate(&e));
    }
    // Without a resident ID: name, sex and birth date (rare; one query each).
    for e in applied.iter().filter(|e| !matches!(e.summary.id_document, schemas::ids::IdDocument::Resident(_))) {
        let (kind, identity) = identity_of(&e.summary);
        if by_identity.contains_key(&identity) {
            continue;
        }
        let same = same_name_sex_birth(conn, &e.summary).await?;
        by_identity.insert(identity, (kind, same.iter().map(candidate).collect()));
    }
    for (identity, (kind, candidates)) in &by_identity {
        // Most records have no twin in another province: no further query for them.
        let first = candidates.first().map(|c| c.province);
        if candidates.iter().all(|c| Some(c.province) == first) {
            continue;
        }
        replies.extend(open_if_new(conn, *kind, identity, candidates, now).await?);
    }
    // One national student ID claimed by two provinces: the second record is not in the index
    // (it would overwrite the first); the group holds both.
    for (held, province, report) in conflicting {
        let identity = format!("sid:{}", held.summary.student_id);
        let candidates = [candidate(held), Candidate { province: *province, summary: report.clone() }];
        replies.extend(open_if_new(conn, ProblemKind::IdDuplicate, &identity, &candidates, now).await?);
    }
    Ok(replies)
}

/// The index records without a resident ID that share `s`'s name, sex and birth date.
async fn same_name_sex_birth(conn: &mut PgConnection, s: &StudentSummary) -> Result<Vec<IndexEntry>> {
    let sex = serde_json::to_value(s.sex)?.as_str().unwrap_or_default().to_owned();
    crate::store::index::by_name_sex_birth(conn, s.name.as_ref(), &sex, s.birth_date).await
}

/// `problem.result`: a province's approved handling of one of its records.
///
/// # Errors
/// Database errors.
pub async fn result(
    conn: &mut PgConnection,
    ctx: &Context,
    env: &Envelope,
    sender: ProvinceCode,
    r: &ProblemResult,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let from = Party::Province(sender);
    let Some(group) = problems::lock(conn, r.group_id.uuid()).await? else {
        return Ok(refuse(from, env, ErrorCode::GroupNotFound, &format!("no problem group {}", r.group_id)));
    };
    if let Some(bad) = r.evidence.items().iter().find(|f| f.check().is_err()) {
        let detail = format!("{}: content does not match its declared size or SHA-256", bad.name);
        return Ok(refuse(from, env, ErrorCode::AttachmentDigest, &detail));
    }
    let handled = Handled {
        province: sender,
        student_id: &r.student_id,
        mode: r.mode,
        changed: r.changed.as_ref(),
        approvals: r.approval.items(),
        evidence: r.evidence.items().iter().map(Attachment::reference).collect(),
    };
    let (g, effects) = match workflow::on_result(&group, &handled, &*ctx.rules, now) {
        Ok(done) => done,
        Err((code, detail)) => return Ok(refuse(from, env, code, &detail)),
    };
    problems::save(conn, &g).await?;
    problems::save_evidence(conn, g.id.uuid(), r.evidence.items()).await?;
    let mut replies = materialize(conn, &g, effects, now).await?;
    if r.mode == HandlingMode::Change
        && let Some(i) = g.member(sender, &r.student_id)
    {
        // The changed identity is de-duplicated again: the record may relapse (C.1).
        replies.extend(relapse(conn, &g.members[i], now).await?);
    }
    Ok(Effects { replies, refused: None })
}

/// De-duplicates a changed record's new identity against the index.
async fn relapse(conn: &mut PgConnection, m: &Member, now: DateTime<Utc>) -> Result<Vec<Reply>> {
    let Some(mut entry) = crate::store::index::by_student_id(conn, m.student_id.as_ref()).await? else {
        return Ok(vec![]);
    };
    if entry.province != m.province {
        return Ok(vec![]);
    }
    entry.summary.name = m.name.clone();
    entry.summary.id_document = m.id_document.clone();
    let (kind, identity) = identity_of(&entry.summary);
    let others = match entry.summary.id_document.number() {
        Some(n) if kind == ProblemKind::IdDuplicate => {
            crate::store::index::by_resident_ids(conn, &[n.to_owned()]).await?
        }
        _ => same_name_sex_birth(conn, &entry.summary).await?,
    };
    let mut candidates: Vec<Candidate> =
        others.iter().filter(|o| o.summary.student_id != entry.summary.student_id).map(candidate).collect();
    candidates.push(candidate(&entry));
    open_if_new(conn, kind, &identity, &candidates, now).await
}

/// `problem.reprocess`: 发起重新处理 of a record of a finished group (C.8).
///
/// # Errors
/// Database errors.
pub async fn reprocess(
    conn: &mut PgConnection,
    env: &Envelope,
    sender: ProvinceCode,
    r: &ProblemReprocess,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let from = Party::Province(sender);
    let Some(group) = problems::lock(conn, r.group_id.uuid()).await? else {
        return Ok(refuse(from, env, ErrorCode::GroupNotFound, &format!("no problem group {}", r.group_id)));
    };
    let new_id = CaseId::from_uuid(Uuid::new_v5(&GROUP_NAMESPACE, env.message_id.uuid().as_bytes()));
    let (g, mut effects) = match workflow::reprocess(&group, sender, &r.student_id, new_id, now) {
        Ok(done) => done,
        Err((code, detail)) => return Ok(refuse(from, env, code, &detail)),
    };
    if let Some(other) = problems::unfinished(conn, &g.identity).await? {
        let detail = format!("{} is being re-processed already in group {other}", r.student_id);
        return Ok(refuse(from, env, ErrorCode::GroupOpen, &detail));
    }
    effects.push(Effect::Event {
        actor: sender.code().to_owned(),
        what: "reprocess",
        detail: serde_json::json!({ "of": group.id, "reason": r.reason }),
    });
    problems::insert(conn, &g).await?;
    let replies = materialize(conn, &g, effects, now).await?;
    Ok(Effects { replies, refused: None })
}

/// The outcome of a national-office action.
pub enum Acted {
    Done { group_id: CaseId, replies: Vec<Reply> },
    Refused(Refusal),
}

/// The national office's decision on a group waiting for arbitration.
///
/// # Errors
/// Database errors.
pub async fn decide(
    conn: &mut PgConnection,
    id: Uuid,
    upheld: &StudentId,
    comments: &[(StudentId, Text)],
    by: &str,
    now: DateTime<Utc>,
) -> Result<Acted> {
    let Some(group) = problems::lock(conn, id).await? else {
        return Ok(Acted::Refused((ErrorCode::GroupNotFound, format!("no problem group {id}"))));
    };
    let (g, effects) = match workflow::decide(&group, upheld, comments, by, now) {
        Ok(done) => done,
        Err(refusal) => return Ok(Acted::Refused(refusal)),
    };
    problems::save(conn, &g).await?;
    let replies = materialize(conn, &g, effects, now).await?;
    Ok(Acted::Done { group_id: g.id, replies })
}

/// A group the national office loads (legacy groups: domain.md §B.3).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadGroup {
    pub kind: ProblemKind,
    pub member: Vec<LoadMember>,
}

/// One record of a loaded group.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadMember {
    pub province: ProvinceCode,
    pub school: schemas::ids::SchoolCode,
    pub student_id: StudentId,
    pub name: schemas::ids::PersonName,
    pub id_document: schemas::ids::IdDocument,
    pub registered_at: DateTime<Utc>,
    #[serde(default)]
    pub key_data_changed_at: Option<DateTime<Utc>>,
}

/// Loads a group through the same path as a detected one. Its identity is its records, so the
/// same file loaded twice opens one group.
///
/// # Errors
/// Database errors.
pub async fn load(conn: &mut PgConnection, l: &LoadGroup, by: &str, now: DateTime<Utc>) -> Result<Acted> {
    let mut provinces: Vec<ProvinceCode> = l.member.iter().map(|m| m.province).collect();
    provinces.sort();
    provinces.dedup();
    if !l.kind.is_duplicate() || provinces.len() < 2 || l.member.len() > schemas::messages::MEMBERS_MAX {
        return Ok(Acted::Refused((
            ErrorCode::Schema,
            format!(
                "a loaded group is a duplicate (ID_DUPLICATE or NAME_SEX_BIRTH_DUPLICATE) of 2 to {} records in two or more provinces",
                schemas::messages::MEMBERS_MAX
            ),
        )));
    }
    let mut keys: Vec<String> = l.member.iter().map(|m| format!("{}:{}", m.province.code(), m.student_id)).collect();
    keys.sort();
    let identity = format!("loaded:{}", keys.join(","));
    if let Some(existing) = problems::unfinished(conn, &identity).await? {
        return Ok(Acted::Done { group_id: CaseId::from_uuid(existing), replies: vec![] });
    }
    let (_, count) = problems::last_closed(conn, &identity).await?;
    let id = CaseId::from_uuid(Uuid::new_v5(&GROUP_NAMESPACE, format!("{identity}#{count}").as_bytes()));
    let members = l
        .member
        .iter()
        .map(|m| Member {
            province: m.province,
            school: m.school.clone(),
            student_id: m.student_id.clone(),
            name: m.name.clone(),
            id_document: m.id_document.clone(),
            registered_at: m.registered_at,
            key_data_changed_at: m.key_data_changed_at,
            state: schemas::messages::MemberState::Waiting,
            comment: None,
        })
        .collect();
    let (group, mut effects) = workflow::open(id, l.kind, Origin::Loaded, identity, members, now);
    effects.push(Effect::Event {
        actor: format!("national-office:{by}"),
        what: "loaded",
        detail: serde_json::json!({}),
    });
    problems::insert(conn, &group).await?;
    let replies = materialize(conn, &group, effects, now).await?;
    Ok(Acted::Done { group_id: id, replies })
}
