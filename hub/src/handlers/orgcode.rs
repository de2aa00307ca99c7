//! Organization-code batches (机构代码变动): loaded by the national office, distributed to the
//! provinces in their own sequences, confirmed by them; revocations executed in the unit of
//! work that removes their last blocker. The workflow ([`crate::workflow::orgcode`]) decides,
//! this module gathers the facts and writes.
//!
//! Every business that lets go of a unit calls [`settle`] in its own transaction: a case
//! closing, a problem group closing, the index changing, another change taking effect.

use anyhow::Result;
use chrono::{DateTime, Utc};
use schemas::ids::ProvinceCode;
use schemas::messages::{Body, ChangeState, OrgBatch, OrgcodeChange, OrgcodeConfirm, OrgcodeResend};
use schemas::{CaseId, Envelope, ErrorCode, Party};
use sha2::Digest as _;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Effects, refuse};
use crate::outgoing::Reply;
use crate::store::timers::Owner;
use crate::store::{orgcodes, schools, timers};
use crate::workflow::orgcode::{self as workflow, Change, Effect};

/// The owner name of change records' timers.
pub const OWNER: &str = "orgcode";

/// The timer slot (and kind) of the backstop recount of a waiting revocation.
pub const RECHECK_TIMER: &str = "orgcode.recheck";

/// How often a waiting revocation counts its blockers again by itself. The execution normally
/// happens in the transaction that removes the last blocker; this catches a blocker that went
/// away by a path that does not settle (e.g. an operator's repair in the database).
const RECHECK: chrono::Duration = chrono::Duration::minutes(10);

/// Most records sent again for one `orgcode.resend`; the adapter asks again for the rest.
const RESEND_MAX: i64 = 5_000;

/// Namespace of change ids: derived from batch, version and place, so a batch loaded again
/// names the same records.
const CHANGE_NAMESPACE: Uuid = Uuid::from_u128(0x6f2a_1c3e_8d4b_4a59_9e0f_7b6c_5d4e_3f21);

fn owner(id: CaseId) -> Owner<'static> {
    Owner { business: OWNER, id: id.uuid() }
}

/// What loading a batch did.
#[derive(Debug)]
pub enum Loaded {
    Refused(ErrorCode, String),
    /// The same id, version and content were loaded before: nothing changed.
    Unchanged,
    Done {
        records: usize,
        replies: Vec<Reply>,
    },
}

/// Loads a batch: records it, numbers each record in its province's sequence and sends it
/// there. The same id and version again is a no-op; other content under them is refused.
///
/// # Errors
/// Database errors.
pub async fn load(conn: &mut PgConnection, batch: &OrgBatch, by: &str, now: DateTime<Utc>) -> Result<Loaded> {
    if let Err((code, detail)) = workflow::check_batch(batch) {
        return Ok(Loaded::Refused(code, detail));
    }
    let digest: [u8; 32] = sha2::Sha256::digest(serde_json::to_vec(batch)?).into();
    let sha: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let conflict = || {
        Loaded::Refused(
            ErrorCode::BatchConflict,
            format!(
                "batch {} version {} was loaded with other content; load a correction as a new version",
                batch.batch_id, batch.version
            ),
        )
    };
    let (id, version) = (batch.batch_id.as_ref(), batch.version);
    match orgcodes::batch_digest(conn, id, version).await? {
        Some(d) if d == sha => return Ok(Loaded::Unchanged),
        Some(_) => return Ok(conflict()),
        None => {}
    }
    if !orgcodes::insert_batch(conn, batch, &sha, by).await? {
        // A concurrent load of the same id and version committed first.
        let same = orgcodes::batch_digest(conn, id, version).await?.as_deref() == Some(sha.as_str());
        return Ok(if same { Loaded::Unchanged } else { conflict() });
    }
    let mut replies = Vec::new();
    for (i, record) in batch.record.items().iter().enumerate() {
        let current = match &record.school {
            Some(s) => schools::get(conn, s.code.as_ref()).await?,
            None => None,
        };
        let school_province = current.as_ref().and_then(|s| s.province.parse::<ProvinceCode>().ok());
        let department = current.as_ref().and_then(|s| s.department.as_deref()).and_then(|d| d.parse().ok());
        let (Some(province), Some(confirm_by)) =
            (workflow::province_of(record, school_province), workflow::confirmer(record, department.as_ref()))
        else {
            anyhow::bail!("record {} passed the check without a unit", i + 1);
        };
        let sequence = orgcodes::next_sequence(conn, province.code()).await?;
        let change_id =
            CaseId::from_uuid(Uuid::new_v5(&CHANGE_NAMESPACE, format!("{id}\u{1f}{version}\u{1f}{i}").as_bytes()));
        let change = Change {
            id: change_id,
            province,
            sequence,
            kind: batch.kind,
            state: ChangeState::Unconfirmed,
            confirm_by: confirm_by.clone(),
            record: record.clone(),
        };
        let origin = orgcodes::Origin { batch_id: id, version, ordinal: i };
        orgcodes::insert_change(conn, &change, origin).await?;
        orgcodes::add_event(conn, change_id.uuid(), "loaded", &format!("by {by}, sequence {sequence}"), now).await?;
        replies.push(change_message(&change, batch));
    }
    metrics::counter!("hub_orgcode_records_loaded_total").increment(replies.len() as u64);
    Ok(Loaded::Done { records: replies.len(), replies })
}

fn change_message(c: &Change, batch: &OrgBatch) -> Reply {
    Reply {
        recipient: Party::Province(c.province),
        case_id: None,
        body: Body::OrgcodeChange(OrgcodeChange {
            sequence: c.sequence,
            change_id: c.id,
            batch_id: batch.batch_id.clone(),
            version: batch.version,
            kind: batch.kind,
            published_on: batch.published_on,
            confirm_by: c.confirm_by.clone(),
            record: c.record.clone(),
        }),
    }
}

/// Carries out a transition's effects; returns the messages to send. `arm`: a waiting
/// revocation arms its recount (on confirmation and from the timer, not on every settle).
async fn materialize(
    conn: &mut PgConnection,
    c: &Change,
    effects: Vec<Effect>,
    arm: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Reply>> {
    let mut replies = Vec::new();
    for effect in effects {
        match effect {
            Effect::Apply(record) => orgcodes::apply(conn, &record).await?,
            Effect::Revoke(record) => {
                orgcodes::revoke(conn, &record, now).await?;
                timers::cancel_all(conn, owner(c.id)).await?;
                metrics::counter!("hub_orgcode_revocations_executed_total").increment(1);
                tracing::info!(change_id = %c.id, unit = record.unit_code(), province = c.province.code(), "Revocation executed.");
            }
            Effect::Send(body) => {
                replies.push(Reply { recipient: Party::Province(c.province), case_id: None, body: *body })
            }
            Effect::Recheck if arm => {
                timers::schedule(conn, owner(c.id), RECHECK_TIMER, RECHECK_TIMER, now + RECHECK).await?
            }
            Effect::Recheck => {}
            Effect::Event { what, detail } => orgcodes::add_event(conn, c.id.uuid(), what, &detail, now).await?,
        }
    }
    Ok(replies)
}

/// `orgcode.confirm` (确认变动) from the province the record concerns.
///
/// # Errors
/// Database errors.
pub async fn confirm(
    conn: &mut PgConnection,
    env: &Envelope,
    sender: ProvinceCode,
    by: &OrgcodeConfirm,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let from = Party::Province(sender);
    let c = match orgcodes::lock(conn, by.change_id.uuid()).await? {
        Some(c) if c.province == sender => c,
        _ => {
            let detail = format!("no change {} for province {}", by.change_id, sender.code());
            return Ok(refuse(from, env, ErrorCode::ChangeNotFound, &detail));
        }
    };
    let earlier = orgcodes::earlier_unconfirmed(conn, &c).await?;
    let (next, effects) = match workflow::confirm(&c, by, earlier) {
        Ok(t) => t,
        Err((code, detail)) => return Ok(refuse(from, env, code, &detail)),
    };
    let mut replies = Vec::new();
    if next != c {
        orgcodes::save_state(conn, &next, Some(&format!("{} {}", by.unit, by.reviewer)), now).await?;
        replies.extend(materialize(conn, &next, effects, true, now).await?);
        if next.state == ChangeState::Confirmed {
            let blockers = orgcodes::blockers(conn, &next.record).await?;
            let (done, effects) = workflow::settle(&next, blockers, true, now);
            if done != next {
                orgcodes::save_state(conn, &done, None, now).await?;
            }
            replies.extend(materialize(conn, &done, effects, true, now).await?);
        }
        // What took effect may have removed another revocation's last blocker (a school
        // moved away from a division, a school revoked under it).
        replies.extend(settle(conn, &[sender], now).await?);
    } else {
        replies.extend(materialize(conn, &next, effects, false, now).await?);
    }
    Ok(Effects { replies, refused: None })
}

/// Executes every revocation waiting in these provinces that nothing blocks any more, in the
/// caller's transaction; returns the messages to send. A school's revocation may unblock its
/// division's: it goes round until nothing more executes.
///
/// # Errors
/// Database errors.
pub async fn settle(conn: &mut PgConnection, provinces: &[ProvinceCode], now: DateTime<Utc>) -> Result<Vec<Reply>> {
    let provinces: Vec<String> = provinces.iter().map(|p| p.code().to_owned()).collect();
    let mut replies = Vec::new();
    // Each round executes at least one record or stops; units nest at most province → city →
    // county → school → stage.
    for _ in 0..6 {
        let waiting = orgcodes::lock_waiting(conn, &provinces).await?;
        let mut executed = false;
        for c in waiting {
            let blockers = orgcodes::blockers(conn, &c.record).await?;
            let (next, effects) = workflow::settle(&c, blockers, false, now);
            if next != c {
                executed = true;
                orgcodes::save_state(conn, &next, None, now).await?;
                replies.extend(materialize(conn, &next, effects, false, now).await?);
            }
        }
        if !executed {
            break;
        }
    }
    Ok(replies)
}

/// The backstop recount of one waiting revocation.
///
/// # Errors
/// Database errors.
pub async fn on_recheck_timer(conn: &mut PgConnection, id: CaseId, now: DateTime<Utc>) -> Result<Option<Vec<Reply>>> {
    let Some(c) = orgcodes::lock(conn, id.uuid()).await? else { return Ok(Some(vec![])) };
    let blockers = orgcodes::blockers(conn, &c.record).await?;
    let (next, effects) = workflow::settle(&c, blockers, false, now);
    if next != c {
        orgcodes::save_state(conn, &next, None, now).await?;
        let mut replies = materialize(conn, &next, effects, true, now).await?;
        replies.extend(settle(conn, &[c.province], now).await?);
        return Ok(Some(replies));
    }
    Ok(Some(materialize(conn, &next, effects, true, now).await?))
}

/// `orgcode.resend`: the province's adapter found a gap; every record after `after` goes again,
/// in order (with fresh message ids; the adapter passes on each sequence number once).
///
/// # Errors
/// Database errors.
pub async fn resend(conn: &mut PgConnection, sender: ProvinceCode, r: &OrgcodeResend) -> Result<Effects> {
    let rows = orgcodes::after(conn, sender.code(), r.after, RESEND_MAX).await?;
    tracing::info!(
        province = sender.code(),
        after = r.after,
        records = rows.len(),
        "Organization-code records sent again."
    );
    let mut replies = Vec::with_capacity(rows.len());
    for (c, origin) in rows {
        let batch_id = origin.batch_id.parse().map_err(anyhow::Error::msg)?;
        replies.push(Reply {
            recipient: Party::Province(sender),
            case_id: None,
            body: Body::OrgcodeChange(OrgcodeChange {
                sequence: c.sequence,
                change_id: c.id,
                batch_id,
                version: origin.version,
                kind: c.kind,
                published_on: origin.published_on,
                confirm_by: c.confirm_by.clone(),
                record: c.record.clone(),
            }),
        });
    }
    Ok(Effects { replies, refused: None })
}
