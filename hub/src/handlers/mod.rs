//! Handlers: one per message family, called inside the message's transaction. They load and
//! lock what they change (store), decide with the pure workflow functions, write, and return
//! the replies to send.

pub mod case;
mod index;

use anyhow::Result;
use chrono::{DateTime, Utc};
use schemas::ids::ProvinceCode;
use schemas::messages::{Body, Business, ErrorReport};
use schemas::{Envelope, ErrorCode, Party};
use sqlx::PgConnection;

use crate::service::{Context, Effects, Reply};

/// Runs the handler for the envelope's type. The sender is authenticated and is a province.
///
/// # Errors
/// Database errors (the transaction is retried).
pub async fn dispatch(
    conn: &mut PgConnection,
    ctx: &Context,
    env: &Envelope,
    sender: Party,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let province: ProvinceCode = sender.province().expect("the service admits provinces only");
    match &env.body {
        Body::IndexUpsert(batch) => index::upsert(conn, province, batch).await,
        Body::IndexRemove(batch) => index::remove(conn, province, batch).await,
        Body::LookupRequest(req) => index::lookup(conn, ctx, sender, req).await,
        Body::TransferApply(app) => case::apply(conn, ctx, env, province, app, Business::Transfer, now).await,
        Body::EnrollmentApply(app) => case::apply(conn, ctx, env, province, app, Business::Enrollment, now).await,
        Body::EnrollmentPermit(p) => case::permit(conn, province, p).await,
        Body::CaseQuery(_) => case::query(conn, env, sender).await,
        Body::VerifyResult(_)
        | Body::ReviewDecision(_)
        | Body::CaseCancel(_)
        | Body::CaseReleased(_)
        | Body::ArchivePackage(_)
        | Body::ArchiveAttachment(_)
        | Body::ArchiveImported(_)
        | Body::ArchiveCommitted(_) => case::on_message(conn, ctx, env, sender, now).await,
        // Businesses not served by this hub yet, and messages only the hub sends: refused, with
        // an answer, never dead-lettered (the message itself is well-formed).
        other => {
            let detail = format!("{} is not accepted from a province by this hub", other.message_type());
            Ok(refuse(sender, env, ErrorCode::Unexpected, &detail))
        }
    }
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

/// Runs a due timer inside the scheduler's transaction; returns the messages to send, or
/// `None` when what it concerns is busy right now (the timer stays due).
///
/// # Errors
/// An unknown timer kind, or database errors.
pub async fn timer(
    conn: &mut PgConnection,
    ctx: &Context,
    timer: &crate::store::timers::Due,
    now: DateTime<Utc>,
) -> Result<Option<Vec<Reply>>> {
    match timer.kind.as_str() {
        case::RESEND | case::REMINDER => case::on_timer(conn, ctx, timer, now).await,
        other => anyhow::bail!("unknown timer kind `{other}`"),
    }
}
