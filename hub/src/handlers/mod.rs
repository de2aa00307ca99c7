//! Handlers: one module per business, called inside the unit of work of their cause. A handler
//! gathers the facts its workflow decides on (store reads, under row locks), calls the pure
//! workflow, writes what it decided, and returns the messages to send.
//!
//! The contract: a message handler returns [`Effects`] (replies, and the refusal code when it
//! refused); a timer handler returns the replies, or `None` when what the timer concerns is busy
//! (the timer stays due). Message types are registered in [`dispatch`], timers in [`Timer`].

pub mod case;
pub mod delivery;
mod index;
pub use index::audit_key as lookup_audit_key;
pub mod orgcode;
pub mod problem;

use anyhow::Result;
use chrono::{DateTime, Utc};
use schemas::ids::ProvinceCode;
use schemas::messages::{Body, Business, ErrorReport};
use schemas::{Envelope, ErrorCode, Party};
use sqlx::PgConnection;

use crate::context::Context;
use crate::outgoing::Reply;
use crate::store::timers::Due;

/// A handler's result: the messages to send, and a business refusal code if it refused.
#[derive(Debug, Default)]
pub struct Effects {
    pub replies: Vec<Reply>,
    pub refused: Option<ErrorCode>,
}

/// Runs the handler for the envelope's type. The sender is authenticated and is a province.
///
/// # Errors
/// Database errors (the unit of work is retried).
pub async fn dispatch(
    conn: &mut PgConnection,
    ctx: &Context,
    env: &Envelope,
    province: ProvinceCode,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let sender = Party::Province(province);
    match &env.body {
        Body::IndexUpsert(batch) => index::upsert(conn, province, batch, now).await,
        Body::IndexRemove(batch) => index::remove(conn, province, batch, now).await,
        Body::LookupRequest(req) => index::lookup(conn, ctx, env, province, req).await,
        Body::TransferApply(app) => case::apply(conn, ctx, env, province, app, Business::Transfer, now).await,
        Body::EnrollmentApply(app) => case::apply(conn, ctx, env, province, app, Business::Enrollment, now).await,
        Body::EnrollmentPermit(p) => case::permit(conn, province, p).await,
        Body::CaseQuery(_) => case::query(conn, env, sender).await,
        Body::ReplayRequest(req) => delivery::replay(conn, sender, req).await,
        Body::ReplayResult(r) => Ok(delivery::replayed(sender, r)),
        Body::ProblemResult(r) => problem::result(conn, ctx, env, province, r, now).await,
        Body::ProblemReprocess(r) => problem::reprocess(conn, env, province, r, now).await,
        Body::OrgcodeConfirm(c) => orgcode::confirm(conn, env, province, c, now).await,
        Body::OrgcodeResend(r) => orgcode::resend(conn, province, r).await,
        Body::VerifyResult(_)
        | Body::ReviewDecision(_)
        | Body::CaseCancel(_)
        | Body::CaseReleased(_)
        | Body::ArchivePackage(_)
        | Body::ArchiveAttachment(_)
        | Body::ArchiveImported(_)
        | Body::ArchiveCommitted(_) => case::on_message(conn, ctx, env, sender, now).await,
        // Messages only the hub sends: refused, with an answer, never dead-lettered (the
        // message itself is well-formed).
        Body::IndexResult(_)
        | Body::IndexResync(_)
        | Body::LookupResult(_)
        | Body::EnrollmentPermitted(_)
        | Body::VerifyRequest(_)
        | Body::ReviewRequest(_)
        | Body::CaseAccepted(_)
        | Body::CaseStatus(_)
        | Body::CaseReminder(_)
        | Body::CaseRelease(_)
        | Body::CaseClosed(_)
        | Body::CaseDetail(_)
        | Body::ArchiveRequest(_)
        | Body::ArchiveDeliver(_)
        | Body::ArchiveCommit(_)
        | Body::ProblemTask(_)
        | Body::ProblemRelay(_)
        | Body::ProblemStatus(_)
        | Body::OrgcodeChange(_)
        | Body::OrgcodeStatus(_)
        | Body::OrgcodeRevoked(_)
        | Body::Error(_) => {
            let detail = format!("{} is sent by the hub, never to it", env.message_type());
            Ok(refuse(sender, env, ErrorCode::Unexpected, &detail))
        }
    }
}

/// [`dispatch`] for consecutive `index.upsert` messages of a group at once
/// ([`index::upsert_run`]): a province's bulk index traffic costs one batch of statements per
/// group, not one per message. One [`Effects`] per message, in order.
///
/// # Errors
/// Database errors (the unit of work is retried).
///
/// # Panics
/// When `run` is empty.
pub async fn dispatch_index_upserts(
    conn: &mut PgConnection,
    run: &[(ProvinceCode, &schemas::messages::IndexUpsert)],
    now: DateTime<Utc>,
) -> Result<Vec<Effects>> {
    index::upsert_run(conn, run, now).await
}

/// A business refusal: an `error` reply to the sender, nothing else changed.
pub fn refuse(to: Party, env: &Envelope, code: ErrorCode, detail: &str) -> Effects {
    Effects {
        replies: vec![Reply {
            recipient: to,
            case_id: env.case_id,
            body: Body::Error(ErrorReport::new(code, Some(env.message_id), Some(detail))),
        }],
        refused: Some(code),
    }
}

/// A timer, read back as its business's typed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Case {
        case: schemas::CaseId,
        timer: crate::workflow::case::CaseTimer,
    },
    /// A problem group tries again to hold a student another business held.
    ProblemHold {
        group: schemas::CaseId,
    },
    /// A waiting revocation counts its blockers again.
    OrgcodeRecheck {
        change: schemas::CaseId,
    },
}

impl Timer {
    /// The typed timer of a due row; `None` for a kind this build does not know.
    pub fn of(due: &Due) -> Option<Timer> {
        match due.owner_business.as_str() {
            case::OWNER => case::timer_of(&due.kind)
                .map(|timer| Timer::Case { case: schemas::CaseId::from_uuid(due.owner_id), timer }),
            problem::OWNER if due.kind == problem::HOLD_TIMER => {
                Some(Timer::ProblemHold { group: schemas::CaseId::from_uuid(due.owner_id) })
            }
            orgcode::OWNER if due.kind == orgcode::RECHECK_TIMER => {
                Some(Timer::OrgcodeRecheck { change: schemas::CaseId::from_uuid(due.owner_id) })
            }
            _ => None,
        }
    }
}

/// Runs a due timer inside its unit of work; returns the messages to send, or `None` when what
/// it concerns is busy right now (the timer stays due).
///
/// # Errors
/// Database errors.
pub async fn timer(
    conn: &mut PgConnection,
    ctx: &Context,
    timer: Timer,
    now: DateTime<Utc>,
) -> Result<Option<Vec<crate::outgoing::Reply>>> {
    match timer {
        Timer::Case { case, timer } => case::on_timer(conn, ctx, case, timer, now).await,
        Timer::ProblemHold { group } => problem::on_hold_timer(conn, group, now).await,
        Timer::OrgcodeRecheck { change } => orgcode::on_recheck_timer(conn, change, now).await,
    }
}
