//! `index.*` and `lookup.*`.

use std::collections::BTreeMap;

use anyhow::Result;
use schemas::ids::ProvinceCode;
use schemas::messages::{Body, IndexRemove, IndexResult, IndexUpsert, LookupKey, LookupRequest, LookupResult};
use schemas::{Envelope, ErrorCode, Party};
use sqlx::PgConnection;

use super::Effects;
use crate::context::Context;
use crate::outgoing::Reply;
use crate::store;
use crate::workflow::index::{
    AuditKeyKind, Decision, IndexEntry, Limited, Moving, answer_lookup, audit_digest, audit_identity, decide_removal,
    decide_upsert, lookup_allowed,
};

fn result(to: ProvinceCode, applied: u32, stale: u32, conflicting: u32) -> Effects {
    Effects {
        replies: vec![Reply {
            recipient: Party::Province(to),
            case_id: None,
            body: Body::IndexResult(IndexResult { applied, stale, conflicting }),
        }],
        refused: None,
    }
}

/// The index entries of `ids` that exist, locked, by student id.
async fn lock_entries(
    conn: &mut PgConnection,
    ids: impl Iterator<Item = String>,
) -> Result<BTreeMap<String, IndexEntry>> {
    let mut ids: Vec<String> = ids.collect();
    ids.sort();
    ids.dedup();
    Ok(store::index::lock(conn, &ids).await?.into_iter().map(|e| (e.summary.student_id.to_string(), e)).collect())
}

/// The hand-overs of the students a run reports for a province the index does not list them
/// in (the rare case: no query otherwise).
async fn handing_over(
    conn: &mut PgConnection,
    run: &[(ProvinceCode, &IndexUpsert)],
    current: &BTreeMap<String, IndexEntry>,
) -> Result<BTreeMap<String, Moving>> {
    let foreign: Vec<String> = run
        .iter()
        .flat_map(|(sender, b)| b.student.items().iter().map(move |s| (sender, s.student_id.to_string())))
        .filter(|(sender, id)| current.get(id).is_some_and(|e| e.province != **sender))
        .map(|(_, id)| id)
        .collect();
    if foreign.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut out = BTreeMap::new();
    for (student, from, to) in store::cases::handing_over(conn, &foreign).await? {
        out.insert(student, Moving { from: ProvinceCode::parse(&from)?, to: ProvinceCode::parse(&to)? });
    }
    Ok(out)
}

/// Applies a batch in order (a student reported twice: the later report is judged against the
/// earlier one), under locks on the existing rows; then the national de-duplication of what it
/// applied and of what conflicted opens the problem groups they make.
pub async fn upsert(
    conn: &mut PgConnection,
    sender: ProvinceCode,
    batch: &IndexUpsert,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Effects> {
    let mut effects = upsert_run(conn, &[(sender, batch)], now).await?;
    Ok(effects.pop().expect("one result per batch"))
}

/// [`upsert`] for consecutive `index.upsert` messages of a group (组提交), as one batch: the
/// same decisions, in the same order, as one message after another, with one lock, one write,
/// one de-duplication and one settling of waiting revocations for all of them. Each message
/// gets its own result; what the run as a whole causes (problem groups, executed revocations)
/// is sent with the last message's.
///
/// # Panics
/// When `run` is empty.
pub async fn upsert_run(
    conn: &mut PgConnection,
    run: &[(ProvinceCode, &IndexUpsert)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Effects>> {
    let ids: Vec<String> = run.iter().flat_map(|(_, b)| b.student.items()).map(|s| s.student_id.to_string()).collect();
    let mut current = lock_entries(conn, ids.into_iter()).await?;
    let moving = handing_over(conn, run, &current).await?;
    let mut changed = BTreeMap::new();
    let mut handed_over = std::collections::BTreeSet::new();
    let mut conflicts = Vec::new();
    let mut settling = Vec::new();
    let mut out = Vec::with_capacity(run.len());
    for &(sender, batch) in run {
        let (mut applied, mut stale, mut conflicting) = (0, 0, 0);
        for s in batch.student.items() {
            let id = s.student_id.to_string();
            match decide_upsert(current.get(&id), sender, s.changed_at, moving.get(&id).copied()) {
                Decision::Apply => {
                    if current.get(&id).is_some_and(|e| e.province != sender) {
                        handed_over.insert(id.clone());
                    }
                    let entry = IndexEntry { province: sender, summary: s.clone(), disputed_at: None };
                    current.insert(id.clone(), entry.clone());
                    changed.insert(id, entry);
                    applied += 1;
                }
                Decision::Stale => stale += 1,
                Decision::Conflict => {
                    conflicting += 1;
                    if let Some(held) = current.get(&id) {
                        conflicts.push((held.clone(), sender, s.clone()));
                    }
                }
            }
        }
        if applied > 0 && !settling.contains(&sender) {
            settling.push(sender);
        }
        out.push(result(sender, applied, stale, conflicting));
    }
    let (moved, stayed): (Vec<_>, Vec<_>) = changed.into_iter().partition(|(id, _)| handed_over.contains(id));
    let entries = |v: Vec<(String, IndexEntry)>| v.into_iter().map(|(_, e)| e).collect::<Vec<_>>();
    let (moved, stayed) = (entries(moved), entries(stayed));
    store::index::upsert(conn, &stayed).await?;
    store::index::hand_over(conn, &moved).await?;
    let changed: Vec<IndexEntry> = moved.into_iter().chain(stayed).collect();
    let mut caused = super::problem::deduplicate(conn, &changed, &conflicts, now).await?;
    if !settling.is_empty() {
        // Students who left a school (or its stage) may have been a revocation's last blocker
        // (学生学籍转移 is the province's own business; the hub sees it here).
        caused.extend(super::orgcode::settle(conn, &settling, now).await?);
    }
    out.last_mut().expect("a run of at least one message").replies.extend(caused);
    Ok(out)
}

/// Removes students the sender holds.
pub async fn remove(
    conn: &mut PgConnection,
    sender: ProvinceCode,
    batch: &IndexRemove,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Effects> {
    let mut current = lock_entries(conn, batch.entry.items().iter().map(|e| e.student_id.to_string())).await?;
    let mut gone = Vec::new();
    let (mut applied, mut stale, mut conflicting) = (0, 0, 0);
    for r in batch.entry.items() {
        let id = r.student_id.to_string();
        match decide_removal(current.get(&id), sender, r.changed_at) {
            Decision::Apply => {
                current.remove(&id);
                gone.push(id);
                applied += 1;
            }
            Decision::Stale => stale += 1,
            Decision::Conflict => conflicting += 1,
        }
    }
    store::index::delete(conn, &gone).await?;
    let mut effects = result(sender, applied, stale, conflicting);
    if applied > 0 {
        effects.replies.extend(super::orgcode::settle(conn, &[sender], now).await?);
    }
    Ok(effects)
}

/// The lookup audit's key, read once per process.
///
/// # Errors
/// Database errors.
pub async fn audit_key<'c>(ctx: &'c Context, conn: &mut PgConnection) -> sqlx::Result<&'c [u8]> {
    let key = ctx.lookup_audit_key.get_or_try_init(|| store::lookups::audit_key(conn)).await?;
    Ok(key.as_slice())
}

/// Answers from the index, within the province's lookup limits, and audits the lookup — who,
/// about whom (a keyed digest), when, and what was answered — whether answered or refused.
pub async fn lookup(
    conn: &mut PgConnection,
    ctx: &Context,
    env: &Envelope,
    province: ProvinceCode,
    req: &LookupRequest,
) -> Result<Effects> {
    let sender = Party::Province(province);
    let key = audit_key(ctx, conn).await?;
    let (kind, identifier) = audit_identity(&req.key);
    let digest = audit_digest(key, kind, &identifier);
    let recent = store::lookups::recent(conn, province.code(), &digest).await?;
    let mut entry = store::lookups::NewEntry {
        province: province.code(),
        requested_by: req.requested_by.as_ref().map(AsRef::as_ref),
        message_id: env.message_id.uuid(),
        key_kind: kind.as_str(),
        key_digest: &digest,
        outcome: "not_found",
        found_province: None,
        found_digest: None,
    };
    if let Err(limit) = lookup_allowed(recent.answered_last_minute, recent.of_student_last_hour, &ctx.settings.lookups)
    {
        entry.outcome = limit.outcome();
        store::lookups::record(conn, &entry).await?;
        let detail = match limit {
            Limited::Province => format!(
                "查询超过每分钟{n}次的上限 / over this province's {n} lookups a minute",
                n = ctx.settings.lookups.per_minute
            ),
            Limited::Student => format!(
                "同一学生每小时至多查询{n}次 / at most {n} lookups of one student an hour",
                n = ctx.settings.lookups.same_student_per_hour
            ),
        };
        return Ok(super::refuse(sender, env, ErrorCode::RateLimited, &detail));
    }
    let candidates = match &req.key {
        LookupKey::StudentId(id) => store::index::by_student_id(conn, id.as_ref()).await?.into_iter().collect(),
        LookupKey::ResidentId(n) => store::index::by_document(conn, n.as_ref()).await?,
        LookupKey::DocumentNumber(n) => store::index::by_document(conn, n.as_ref()).await?,
    };
    // Every candidate's open business, from the one register, in one query.
    let ids: Vec<String> = candidates.iter().map(|c| c.summary.student_id.to_string()).collect();
    let open = store::register::held_among(conn, &ids).await?;
    let problems = store::problems::open_kinds(conn, &ids).await?;
    let student = answer_lookup(
        &candidates,
        &req.name,
        |p| ctx.rules.transfer_statuses(p),
        |e| open.contains(e.summary.student_id.as_ref()),
        |e| problems.get(e.summary.student_id.as_ref()).copied(),
    );
    let found =
        student.as_ref().map(|m| (m.province, audit_digest(key, AuditKeyKind::StudentId, m.student_id.as_ref())));
    if let Some((p, d)) = &found {
        entry.outcome = "found";
        entry.found_province = Some(p.code());
        entry.found_digest = Some(d);
    }
    store::lookups::record(conn, &entry).await?;
    Ok(Effects {
        replies: vec![Reply { recipient: sender, case_id: None, body: Body::LookupResult(LookupResult { student }) }],
        refused: None,
    })
}
