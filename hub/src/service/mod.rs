//! Processing one inbound message, in one unit of work ([`crate::unit`]): the sender gate
//! (who the broker says, with an admitted certificate), the parse, the inbox claim (a
//! redelivery is skipped, a reused id refused), the handler for its type, and the messages it
//! sends. The caller acknowledges the delivery only after this returns `Ok`. What cannot be
//! processed is a dead letter: kept once, bounded, its sender told.

use anyhow::Result;
use chrono::{DateTime, SubsecRound, Utc};
use futures_util::FutureExt;
use schemas::codec::{self, ParseError};
use schemas::messages::{Body, ErrorReport};
use schemas::{CaseId, Envelope, ErrorCode, MessageId, MessageType, Party};
use sha2::Digest;
use sqlx::PgConnection;
use tracing::{Instrument, debug, error, info, warn};
use uuid::Uuid;

use crate::context::Context;
use crate::failpoint;
use crate::handlers;
use crate::outgoing::{self, Cause, fallback_id};
use crate::store::{dead_letters, inbox, trace};

/// A delivery as the consumer hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub body: &'a [u8],
    /// The AMQP `user_id`, validated by the broker against the authenticated user.
    pub user_id: Option<&'a str>,
    /// The AMQP `message_id` property, used only when the body cannot be read.
    pub amqp_message_id: Option<&'a str>,
    /// An operator's replay of a dead letter (its audit entry): what the message sends then
    /// has ids of its own, apart from those of the refusal sent when it was dead-lettered.
    pub replay: Option<i64>,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Processed(MessageType),
    /// Answered with a business refusal.
    Refused(MessageType, ErrorCode),
    /// A redelivery of a message already processed: nothing done.
    Duplicate,
    /// Unusable: dead-lettered with its reason, the sender (when known) told.
    Poison(ErrorCode),
    /// Unusable, and over its sender's poison rate: counted, not kept, not answered.
    Suppressed(ErrorCode),
}

/// Why a message is poison: the code and what to tell.
struct Poison {
    code: ErrorCode,
    detail: String,
    /// Who to answer, when known.
    reply_to: Option<Party>,
    offending: Option<MessageId>,
    case_id: Option<CaseId>,
    message_type: Option<&'static str>,
}

/// Processes one delivery in a transaction of its own. `Err` means a transient failure
/// (database unreachable, lost race): nothing was committed, and the caller retries the same
/// delivery later.
///
/// # Errors
/// Transient database errors.
pub async fn handle(ctx: &Context, msg: Inbound<'_>) -> Result<Handled> {
    let mut tx = ctx.pool.begin().await?;
    let handled = handle_in(&mut tx, ctx, msg).await?;
    failpoint::pass(failpoint::CONSUMER_BEFORE_COMMIT);
    tx.commit().await?;
    Ok(handled)
}

/// Group commit (组提交): processes `msgs` in one transaction, each under its own savepoint, up
/// to the first whose processing fails (rolled back to its savepoint, so it leaves nothing
/// behind), and commits: one commit — one fsync — for the group. Returns what became of the
/// committed prefix; the caller acknowledges those and takes the first one after it alone
/// ([`handle`]), where its failure is told apart (transient, or for good). A failure of the
/// transaction itself commits nothing and returns an empty list; a commit whose answer was lost
/// is recognized by the inbox when its messages are taken again.
pub async fn handle_group(ctx: &Context, msgs: &[Inbound<'_>]) -> Vec<Handled> {
    let Ok(mut tx) = ctx.pool.begin().await else { return vec![] };
    let mut handled = Vec::with_capacity(msgs.len());
    for msg in msgs {
        // The first message needs no savepoint: if it fails, nothing is committed. After it,
        // one round trip folds the previous message's savepoint into the transaction and sets
        // a new one for this message.
        let mark = match handled.len() {
            0 => None,
            1 => Some("SAVEPOINT msg"),
            _ => Some("RELEASE SAVEPOINT msg; SAVEPOINT msg"),
        };
        if let Some(mark) = mark
            && sqlx::raw_sql(mark).execute(&mut *tx).await.is_err()
        {
            return vec![];
        }
        // A panic counts as a failure of this message; it is taken alone next.
        match std::panic::AssertUnwindSafe(handle_in(&mut tx, ctx, *msg)).catch_unwind().await {
            Ok(Ok(h)) => handled.push(h),
            _ => {
                if mark.is_none() {
                    // The transaction holds nothing else: rolled back as it is dropped.
                    return vec![];
                }
                if sqlx::raw_sql("ROLLBACK TO SAVEPOINT msg").execute(&mut *tx).await.is_err() {
                    return vec![];
                }
                break;
            }
        }
    }
    if handled.is_empty() {
        return handled;
    }
    failpoint::pass(failpoint::CONSUMER_BEFORE_COMMIT);
    if let Err(e) = tx.commit().await {
        warn!(error = %e, messages = handled.len(), "Group commit failed; its messages are taken one by one.");
        return vec![];
    }
    handled
}

/// Processes one delivery inside the caller's transaction (the consumer's group commit runs
/// several, each under a savepoint): everything it writes — claim, effects, outbox, trace or
/// dead letter — is on `conn` and commits or rolls back with it. `Err` means nothing of this
/// message may be kept: the caller rolls it back and retries it.
///
/// # Errors
/// Transient database errors.
pub async fn handle_in(conn: &mut PgConnection, ctx: &Context, msg: Inbound<'_>) -> Result<Handled> {
    let digest: [u8; 32] = sha2::Sha256::digest(msg.body).into();
    let now = Utc::now().trunc_subsecs(3);

    // The sender is who the broker says, never what the message says.
    let Some(sender) = msg.user_id.and_then(|u| Party::parse(u).ok()).filter(|p| p.province().is_some()) else {
        let poison = Poison {
            code: ErrorCode::Sender,
            detail: format!("no usable user_id property ({:?}); the sender cannot be known", msg.user_id),
            reply_to: None,
            offending: None,
            case_id: None,
            message_type: None,
        };
        return dead_letter(
            conn,
            ctx,
            &msg,
            "unknown",
            fallback_id(msg.amqp_message_id, &digest),
            &digest,
            poison,
            now,
        )
        .await;
    };

    let envelope = match codec::from_xml(msg.body, ctx.settings.limits.max_message_bytes) {
        Ok(e) => e,
        Err(ParseError { code, detail, message_id }) => {
            let id = message_id.map_or_else(|| fallback_id(msg.amqp_message_id, &digest), |m| m.uuid());
            let poison = Poison {
                code,
                detail,
                reply_to: Some(sender),
                offending: message_id,
                case_id: None,
                message_type: None,
            };
            return dead_letter(conn, ctx, &msg, &sender.to_string(), id, &digest, poison, now).await;
        }
    };
    let key = sender.to_string();
    // Dead-letters this (parsed) envelope, answering its sender.
    let poison_of = |code, detail: String| Poison {
        code,
        detail,
        reply_to: Some(sender),
        offending: Some(envelope.message_id),
        case_id: envelope.case_id,
        message_type: Some(envelope.message_type().as_str()),
    };
    let id = envelope.message_id.uuid();
    if envelope.sender != sender {
        let detail = format!("envelope says sender {} but the authenticated sender is {sender}", envelope.sender);
        return dead_letter(conn, ctx, &msg, &key, id, &digest, poison_of(ErrorCode::Sender, detail), now).await;
    }
    if envelope.recipient != Party::Hub {
        let detail = format!("addressed to {}; provinces send to the hub only", envelope.recipient);
        return dead_letter(conn, ctx, &msg, &key, id, &digest, poison_of(ErrorCode::Unexpected, detail), now).await;
    }

    let case_text = envelope.case_id.map(|c| c.to_string()).unwrap_or_default();
    let span = tracing::info_span!("message", message_id = %envelope.message_id, case_id = %case_text, message_type = %envelope.message_type(), %sender);
    let started = std::time::Instant::now();
    // Instrumented, not entered: a span guard held across awaits corrupts the span stack.
    let handled = async {
        let province = sender.province().expect("the sender gate admits provinces only");
        let message_type = envelope.message_type();
        let case_id = envelope.case_id.map(|c| c.uuid());
        // The admission check and the claim are one statement: nothing is claimed for a
        // sender without a registered, unrevoked certificate valid now.
        let new = inbox::NewClaim {
            sender: &key,
            message_id: id,
            message_type: message_type.as_str(),
            case_id,
            digest: &digest,
            outcome: inbox::Outcome::Processed,
        };
        let claim = inbox::claim_if_admitted(&mut *conn, &new).await?;
        let Some(claim) = claim else {
            let detail = format!("{sender} holds no registered, unrevoked certificate");
            return dead_letter(conn, ctx, &msg, &key, id, &digest, poison_of(ErrorCode::Revoked, detail), now).await;
        };
        match claim {
            inbox::Claim::New => {}
            inbox::Claim::Redelivery => {
                debug!("Redelivery of a processed message skipped.");
                return Ok(Handled::Duplicate);
            }
            inbox::Claim::Reused => {
                // The claim inserted nothing: the dead letter is all this message writes.
                let detail = format!("message id {} was already used for a different message", envelope.message_id);
                let poison = poison_of(ErrorCode::Duplicate, detail);
                return dead_letter(conn, ctx, &msg, &key, id, &digest, poison, now).await;
            }
        }
        let effects = handlers::dispatch(&mut *conn, ctx, &envelope, province, now).await?;
        let handled = match effects.refused {
            Some(code) => {
                inbox::set_outcome(&mut *conn, &key, id, inbox::Outcome::Refused).await?;
                Handled::Refused(message_type, code)
            }
            None => Handled::Processed(message_type),
        };
        let (outcome, code) = match &handled {
            Handled::Refused(_, code) => ("refused", Some(code.code())),
            _ => ("processed", None),
        };
        // An application belongs to the case it opened: its answers name it.
        let opened = effects.replies.iter().find_map(|r| r.case_id.map(|c| c.uuid()));
        let traced = trace::NewTrace {
            message_id: id,
            direction: trace::Direction::In,
            party: &key,
            message_type: message_type.as_str(),
            case_id: case_id.or(opened),
            correlation_id: envelope.correlation_id.map(|c| c.uuid()),
            outcome,
            code,
        };
        let cause = Cause::Message { sender: &key, message_id: id, digest: &digest, replay: msg.replay };
        let correlation = Some(envelope.message_id);
        outgoing::emit_traced(&mut *conn, &cause, effects.replies, correlation, now, Some(&traced)).await?;
        Ok(handled)
    }
    .instrument(span)
    .await?;
    // One line per message, with its plain ids and never its content (no names, no student
    // identifiers): what happened and how long it took. A dead letter has its own line.
    let (outcome, code) = match &handled {
        Handled::Processed(_) => ("processed", ""),
        Handled::Refused(_, c) => ("refused", c.code()),
        Handled::Duplicate => ("duplicate", ""),
        Handled::Poison(_) | Handled::Suppressed(_) => return Ok(handled),
    };
    info!(
        message_type = %envelope.message_type(),
        message_id = %envelope.message_id,
        case_id = %case_text,
        %sender,
        outcome,
        code,
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "Message {outcome}."
    );
    Ok(handled)
}

/// Records a poison message once, bounded, and answers its sender when known — in one
/// transaction. Over the sender's rate (`[limits] poison_per_minute`) the message is only
/// counted: no body, no reply, one log line a minute, so a flood costs constant space.
#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    tx: &mut PgConnection,
    ctx: &Context,
    msg: &Inbound<'_>,
    sender_key: &str,
    message_id: Uuid,
    digest: &[u8; 32],
    poison: Poison,
    now: DateTime<Utc>,
) -> Result<Handled> {
    let limit = i64::from(ctx.settings.limits.poison_per_minute);
    if dead_letters::recent(&mut *tx, sender_key).await? >= limit {
        let n = dead_letters::suppress(&mut *tx, sender_key, poison.code.code(), msg.body.len()).await?;
        if n == 1 {
            warn!(
                sender = sender_key,
                code = poison.code.code(),
                limit,
                "Poison over the sender's rate: counted, not kept, for the rest of this minute."
            );
        }
        return Ok(Handled::Suppressed(poison.code));
    }
    // The detail stays in the dead-letter table: it may quote the message's content.
    warn!(
        message_type = poison.message_type.unwrap_or(""),
        %message_id,
        case_id = %poison.case_id.map(|c| c.to_string()).unwrap_or_default(),
        sender = sender_key,
        outcome = "dead-lettered",
        code = poison.code.code(),
        "Message dead-lettered."
    );
    let case_id = poison.case_id.map(|c| c.uuid());
    let new = inbox::NewClaim {
        sender: sender_key,
        message_id,
        message_type: "unknown",
        case_id,
        digest,
        outcome: inbox::Outcome::Poison,
    };
    let claim = inbox::claim(&mut *tx, &new).await?;
    if claim == inbox::Claim::Redelivery {
        return Ok(Handled::Poison(poison.code));
    }
    let traced = trace::NewTrace {
        message_id,
        direction: trace::Direction::In,
        party: sender_key,
        message_type: poison.message_type.unwrap_or("unknown"),
        case_id,
        correlation_id: None,
        outcome: "dead-lettered",
        code: Some(poison.code.code()),
    };
    trace::record(&mut *tx, &traced).await?;
    if let Some(recipient) = poison.reply_to {
        let report = ErrorReport::new(poison.code, poison.offending, Some(&poison.detail));
        let cause = Cause::Message { sender: sender_key, message_id, digest, replay: msg.replay };
        let reply = Envelope {
            message_id: cause.derive_id(0),
            sender: Party::Hub,
            recipient,
            case_id: poison.case_id,
            correlation_id: poison.offending,
            sent_at: now,
            body: Body::Error(report),
        };
        outgoing::enqueue(&mut *tx, &reply).await?;
    }
    dead_letters::record(
        tx,
        &dead_letters::NewDeadLetter {
            sender: sender_key,
            message_id,
            message_type: poison.message_type,
            case_id,
            code: poison.code.code(),
            reason: &poison.detail,
            body: msg.body,
            sha256: digest,
            keep: ctx.settings.limits.dead_letter_body_bytes,
            source: dead_letters::Source::Hub,
        },
    )
    .await?;
    Ok(Handled::Poison(poison.code))
}

/// A message whose handling failed for good (after retries): recorded as a dead letter with
/// `E_INTERNAL` and the error, its sender told, so that it is neither lost nor redelivered in a
/// loop. `Err` when even that cannot be written (the caller then leaves it to the broker's
/// dead-lettering).
///
/// # Errors
/// Database errors.
pub async fn give_up(ctx: &Context, msg: Inbound<'_>, error: &str) -> Result<Handled> {
    let digest: [u8; 32] = sha2::Sha256::digest(msg.body).into();
    let now = Utc::now().trunc_subsecs(3);
    let sender = msg.user_id.and_then(|u| Party::parse(u).ok()).filter(|p| p.province().is_some());
    let envelope = codec::from_xml(msg.body, ctx.settings.limits.max_message_bytes).ok();
    let key = sender.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
    let id = envelope.as_ref().map_or_else(|| fallback_id(msg.amqp_message_id, &digest), |e| e.message_id.uuid());
    let poison = Poison {
        code: ErrorCode::Internal,
        detail: format!("processing failed repeatedly: {error}"),
        reply_to: sender,
        offending: envelope.as_ref().map(|e| e.message_id),
        case_id: envelope.as_ref().and_then(|e| e.case_id),
        message_type: envelope.as_ref().map(|e| e.message_type().as_str()),
    };
    // A message whose first attempt was recorded as processed is not a dead letter; the inbox
    // claim inside `dead_letter` finds it and changes nothing.
    let mut tx = ctx.pool.begin().await?;
    let handled = dead_letter(&mut tx, ctx, &msg, &key, id, &digest, poison, now).await?;
    tx.commit().await?;
    Ok(handled)
}

/// Records what the broker dead-lettered (e.g. a message delivered more often than the
/// delivery limit, because the hub crashed while handling it), bounded, like any dead letter.
///
/// # Errors
/// Database errors.
pub async fn record_broker_dead_letter(ctx: &Context, msg: Inbound<'_>, reason: &str) -> Result<()> {
    let digest: [u8; 32] = sha2::Sha256::digest(msg.body).into();
    let sender = msg.user_id.unwrap_or("unknown");
    let id = fallback_id(msg.amqp_message_id, &digest);
    error!(sender, message_id = %id, %reason, "The broker dead-lettered a message.");
    let mut conn = ctx.pool.acquire().await?;
    dead_letters::record(
        &mut conn,
        &dead_letters::NewDeadLetter {
            sender,
            message_id: id,
            message_type: None,
            case_id: None,
            code: ErrorCode::Internal.code(),
            reason,
            body: msg.body,
            sha256: &digest,
            keep: ctx.settings.limits.dead_letter_body_bytes,
            source: dead_letters::Source::Broker,
        },
    )
    .await?;
    Ok(())
}
