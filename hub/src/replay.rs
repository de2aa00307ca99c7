//! Settling dead letters (死信处置): an operator replays one after its cause was fixed (a
//! certificate registered, a fault of the hub mended), or discards it. A replay either
//! processes the message — exactly once, in one transaction with the settlement and the audit
//! entry — or changes nothing but the audit trail, which records the attempt and why it failed.

use anyhow::Result;
use chrono::Utc;
use schemas::ErrorCode;
use tracing::info;

use crate::context::Context;
use crate::handlers::case::Actor;
use crate::service::{self, Handled, Inbound};
use crate::store::dead_letters::{self, Kept, Settlement};
use crate::store::{cases, inbox};

/// What settling a dead letter came to.
#[derive(Debug)]
pub enum Settled {
    /// Replayed and processed (or answered with a business refusal), or discarded.
    Done {
        audit_id: i64,
        handled: Option<Handled>,
    },
    NotFound,
    /// Not done: already settled, not replayable, or poison still (its code and reason). The
    /// attempt is in the audit trail.
    Refused {
        audit_id: i64,
        code: ErrorCode,
        detail: String,
    },
}

/// Why `kept` cannot be replayed as it stands, if it cannot.
fn unreplayable(kept: &Kept) -> Option<(ErrorCode, String)> {
    let d = &kept.listed;
    if d.state != "open" {
        let by = d.settled_by.as_deref().unwrap_or("?");
        let at = d.settled_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        return Some((
            ErrorCode::DeadLetterSettled,
            format!("dead letter {} was {} by {by} at {at}", d.dead_letter_id, d.state),
        ));
    }
    if d.truncated {
        let detail = format!("only {} of its {} bytes were kept", kept.body.len(), d.size);
        return Some((ErrorCode::NotReplayable, detail));
    }
    if d.sender == "unknown" {
        return Some((ErrorCode::NotReplayable, "its sender is unknown".to_owned()));
    }
    None
}

/// Writes the audit entry of an attempt that changed nothing, in a transaction of its own.
async fn refused(
    ctx: &Context,
    id: i64,
    by: &Actor<'_>,
    action: &str,
    code: ErrorCode,
    detail: String,
) -> Result<Settled> {
    let mut conn = ctx.pool.acquire().await?;
    let case_id = dead_letters::get(&mut conn, id).await?.and_then(|k| k.listed.case_id);
    let note = format!("dead letter {id} not {action}: {} {detail}; {}", code.code(), by.note);
    let audit_id =
        cases::audit(&mut conn, by.name, by.role, &format!("{action}-dead-letter-refused"), case_id, &note).await?;
    Ok(Settled::Refused { audit_id, code, detail })
}

/// Replays dead letter `id`: its inbox claim given up, the message processed as if it had just
/// arrived from its sender (the same checks, the same handler), its replies with ids of their
/// own. Poison still, or a message already processed: nothing is kept but the refused attempt.
///
/// # Errors
/// Database errors.
pub async fn replay(ctx: &Context, id: i64, by: &Actor<'_>) -> Result<Settled> {
    let mut tx = ctx.pool.begin().await?;
    let Some(kept) = dead_letters::lock(&mut tx, id).await? else { return Ok(Settled::NotFound) };
    if let Some((code, detail)) = unreplayable(&kept) {
        drop(tx);
        return refused(ctx, id, by, "replay", code, detail).await;
    }
    let d = &kept.listed;
    let note = format!("dead letter {id} ({} {} from {}) replayed; {}", d.code, d.message_id, d.sender, by.note);
    let audit_id = cases::audit(&mut tx, by.name, by.role, "replay-dead-letter", d.case_id, &note).await?;
    inbox::release_poison(&mut tx, &d.sender, d.message_id).await?;
    dead_letters::settle(&mut tx, id, Settlement::Replayed, by.name, audit_id).await?;
    let message_id = d.message_id.to_string();
    // Checked again as on arrival, signature included: a replay admits nothing the hub
    // would have refused then.
    let msg = Inbound {
        body: &kept.body,
        user_id: Some(&d.sender),
        amqp_message_id: Some(&message_id),
        replay: Some(audit_id),
        signature: kept.signature.as_deref(),
        signer: kept.signer.as_deref(),
    };
    let handled = service::handle_in(&mut tx, ctx, msg).await?;
    let (code, detail) = match handled {
        Handled::Processed(_) | Handled::Refused(..) => {
            tx.commit().await?;
            info!(dead_letter = id, audit_id, message_id = %d.message_id, sender = %d.sender, "Dead letter replayed.");
            return Ok(Settled::Done { audit_id, handled: Some(handled) });
        }
        Handled::Poison(code) | Handled::Suppressed(code) => {
            (code, "the message is poison still; fix its cause first".to_owned())
        }
        Handled::Duplicate => (ErrorCode::DeadLetterSettled, "the message was processed since".to_owned()),
    };
    drop(tx);
    refused(ctx, id, by, "replay", code, detail).await
}

/// Discards dead letter `id`: kept for the record (until retention prunes it), never replayed.
///
/// # Errors
/// Database errors.
pub async fn discard(ctx: &Context, id: i64, by: &Actor<'_>) -> Result<Settled> {
    let mut tx = ctx.pool.begin().await?;
    let Some(kept) = dead_letters::lock(&mut tx, id).await? else { return Ok(Settled::NotFound) };
    let d = &kept.listed;
    if d.state != "open" {
        let detail = format!("dead letter {id} was {} already", d.state);
        drop(tx);
        return refused(ctx, id, by, "discard", ErrorCode::DeadLetterSettled, detail).await;
    }
    let note = format!("dead letter {id} ({} {} from {}) discarded; {}", d.code, d.message_id, d.sender, by.note);
    let audit_id = cases::audit(&mut tx, by.name, by.role, "discard-dead-letter", d.case_id, &note).await?;
    dead_letters::settle(&mut tx, id, Settlement::Discarded, by.name, audit_id).await?;
    tx.commit().await?;
    info!(dead_letter = id, audit_id, at = %Utc::now(), "Dead letter discarded.");
    Ok(Settled::Done { audit_id, handled: None })
}
