//! Processing one inbound message: ONE database transaction records it in the inbox, runs the
//! handler for its type under row locks, and writes every outgoing message to the outbox. The
//! caller acknowledges the delivery only after this returns `Ok`.
//!
//! Outgoing message ids are derived from the inbound message (UUID v5), so a replay writes the
//! same rows and the outbox's unique key makes it harmless.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use chrono::{DateTime, SubsecRound, Utc};
use schemas::codec::{self, ParseError};
use schemas::messages::{Body, ErrorReport};
use schemas::{CaseId, Envelope, ErrorCode, MessageId, MessageType, Party};
use sha2::Digest;
use sqlx::{PgConnection, PgPool};
use tracing::{Instrument, debug, error, warn};
use uuid::Uuid;

use crate::amqp::names;
use crate::config::Settings;
use crate::handlers;
use crate::store::{self, dead_letters, inbox, outbox};

/// Namespace of the hub's derived message ids.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a9e_4b7d_4c1a_9e3f_58d2_0b6a_7c41);

/// What the hub needs to process messages.
#[derive(Clone)]
pub struct Context {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub rules: Arc<crate::rules::CaseRules>,
}

impl Context {
    /// # Errors
    /// When the case rules cannot be built (e.g. an invalid calendar file).
    pub fn new(pool: PgPool, settings: Settings) -> anyhow::Result<Context> {
        let rules = Arc::new(crate::rules::CaseRules::new(&settings)?);
        Ok(Context { pool, settings: Arc::new(settings), rules })
    }
}

/// A delivery as the consumer hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub body: &'a [u8],
    /// The AMQP `user_id`, validated by the broker against the authenticated user.
    pub user_id: Option<&'a str>,
    /// The AMQP `message_id` property, used only when the body cannot be read.
    pub amqp_message_id: Option<&'a str>,
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

/// A message a handler wants sent, addressed; the service gives it its id and envelope.
#[derive(Debug, Clone)]
pub struct Reply {
    pub recipient: Party,
    pub case_id: Option<CaseId>,
    pub body: Body,
}

/// A handler's result: the messages to send, and a business refusal code if it refused.
#[derive(Debug, Default)]
pub struct Effects {
    pub replies: Vec<Reply>,
    pub refused: Option<ErrorCode>,
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

/// Processes one delivery. `Err` means a transient failure (database unreachable, lost race):
/// nothing was committed, and the caller retries the same delivery later.
///
/// # Errors
/// Transient database errors.
pub async fn handle(ctx: &Context, msg: Inbound<'_>) -> Result<Handled> {
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
        return dead_letter(ctx, &msg, "unknown", fallback_id(&msg, &digest), &digest, poison, now).await;
    };

    let envelope = match codec::from_xml(msg.body, ctx.settings.limits.max_message_bytes) {
        Ok(e) => e,
        Err(ParseError { code, detail, message_id }) => {
            let id = message_id.map_or_else(|| fallback_id(&msg, &digest), |m| m.uuid());
            let poison = Poison {
                code,
                detail,
                reply_to: Some(sender),
                offending: message_id,
                case_id: None,
                message_type: None,
            };
            return dead_letter(ctx, &msg, &sender.to_string(), id, &digest, poison, now).await;
        }
    };
    let key = sender.to_string();
    // Dead-letters this (parsed) envelope, answering its sender.
    let reject = |code, detail: String| {
        let poison = Poison {
            code,
            detail,
            reply_to: Some(sender),
            offending: Some(envelope.message_id),
            case_id: envelope.case_id,
            message_type: Some(envelope.message_type().as_str()),
        };
        dead_letter(ctx, &msg, &key, envelope.message_id.uuid(), &digest, poison, now)
    };
    if envelope.sender != sender {
        let detail = format!("envelope says sender {} but the authenticated sender is {sender}", envelope.sender);
        return reject(ErrorCode::Sender, detail).await;
    }
    if envelope.recipient != Party::Hub {
        let detail = format!("addressed to {}; provinces send to the hub only", envelope.recipient);
        return reject(ErrorCode::Unexpected, detail).await;
    }

    let span = tracing::info_span!("message", message_id = %envelope.message_id, case_id = ?envelope.case_id.map(|c| c.to_string()), message_type = %envelope.message_type(), %sender);
    // Instrumented, not entered: a span guard held across awaits corrupts the span stack.
    async {
        let mut tx = ctx.pool.begin().await?;
        if !store::certs::is_admitted(&mut tx, &key).await? {
            drop(tx);
            let detail = format!("{sender} holds no registered, unrevoked certificate");
            return reject(ErrorCode::Revoked, detail).await;
        }
        let message_type = envelope.message_type();
        let case_id = envelope.case_id.map(|c| c.uuid());
        match inbox::claim(
            &mut tx,
            &key,
            envelope.message_id.uuid(),
            message_type.as_str(),
            case_id,
            &digest,
            inbox::Outcome::Processed,
        )
        .await?
        {
            inbox::Claim::New => {}
            inbox::Claim::Redelivery => {
                debug!("Redelivery of a processed message skipped.");
                return Ok(Handled::Duplicate);
            }
            inbox::Claim::Reused => {
                drop(tx);
                let detail = format!("message id {} was already used for a different message", envelope.message_id);
                return reject(ErrorCode::Duplicate, detail).await;
            }
        }

        let effects = handlers::dispatch(&mut tx, ctx, &envelope, sender, now).await?;
        let cause = cause_key(&key, envelope.message_id.uuid(), &digest);
        emit(&mut tx, &cause, effects.replies, Some(envelope.message_id), now).await?;
        let handled = match effects.refused {
            Some(code) => {
                inbox::set_outcome(&mut tx, &key, envelope.message_id.uuid(), inbox::Outcome::Refused).await?;
                Handled::Refused(message_type, code)
            }
            None => Handled::Processed(message_type),
        };
        crate::failpoint::pass(crate::failpoint::CONSUMER_BEFORE_COMMIT);
        tx.commit().await?;
        Ok(handled)
    }
    .instrument(span)
    .await
}

/// Records a poison message once, bounded, and answers its sender when known — in one
/// transaction. Over the sender's rate (`[limits] poison_per_minute`) the message is only
/// counted: no body, no reply, one log line a minute, so a flood costs constant space.
async fn dead_letter(
    ctx: &Context,
    msg: &Inbound<'_>,
    sender_key: &str,
    message_id: Uuid,
    digest: &[u8; 32],
    poison: Poison,
    now: DateTime<Utc>,
) -> Result<Handled> {
    let mut tx = ctx.pool.begin().await?;
    let limit = i64::from(ctx.settings.limits.poison_per_minute);
    if dead_letters::recent(&mut tx, sender_key).await? >= limit {
        let n = dead_letters::suppress(&mut tx, sender_key, poison.code.code(), msg.body.len()).await?;
        tx.commit().await?;
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
    warn!(code = poison.code.code(), sender = sender_key, %message_id, detail = %poison.detail, "Message dead-lettered.");
    let case_id = poison.case_id.map(|c| c.uuid());
    let claim =
        inbox::claim(&mut tx, sender_key, message_id, "unknown", case_id, digest, inbox::Outcome::Poison).await?;
    if claim == inbox::Claim::Redelivery {
        return Ok(Handled::Poison(poison.code));
    }
    if let Some(recipient) = poison.reply_to {
        let report = ErrorReport::new(poison.code, poison.offending, Some(&poison.detail));
        let reply = Envelope {
            message_id: derive_id(sender_key, message_id, digest, 0),
            sender: Party::Hub,
            recipient,
            case_id: poison.case_id,
            correlation_id: poison.offending,
            sent_at: now,
            body: Body::Error(report),
        };
        enqueue(&mut tx, &reply).await?;
    }
    dead_letters::record(
        &mut tx,
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
    tx.commit().await?;
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
    let id = envelope.as_ref().map_or_else(|| fallback_id(&msg, &digest), |e| e.message_id.uuid());
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
    dead_letter(ctx, &msg, &key, id, &digest, poison, now).await
}

/// Records what the broker dead-lettered (e.g. a message delivered more often than the
/// delivery limit, because the hub crashed while handling it), bounded, like any dead letter.
///
/// # Errors
/// Database errors.
pub async fn record_broker_dead_letter(ctx: &Context, msg: Inbound<'_>, reason: &str) -> Result<()> {
    let digest: [u8; 32] = sha2::Sha256::digest(msg.body).into();
    let sender = msg.user_id.unwrap_or("unknown");
    let id = fallback_id(&msg, &digest);
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

/// The bytes every id derived from one inbound message starts from.
fn cause_key(sender: &str, message_id: Uuid, digest: &[u8; 32]) -> Vec<u8> {
    let mut name = Vec::with_capacity(96);
    name.extend_from_slice(sender.as_bytes());
    name.extend_from_slice(message_id.as_bytes());
    name.extend_from_slice(digest);
    name
}

/// Writes replies to the outbox. Their ids derive from `cause` (what made the hub send them:
/// an inbound message, a fired timer, an operator's action) and their position, so a replay of
/// the same cause writes the same rows, which the outbox's unique key absorbs.
///
/// # Errors
/// Database errors.
pub async fn emit(
    conn: &mut PgConnection,
    cause: &[u8],
    replies: Vec<Reply>,
    correlation: Option<MessageId>,
    now: DateTime<Utc>,
) -> Result<()> {
    for (n, reply) in replies.into_iter().enumerate() {
        let mut name = cause.to_vec();
        name.extend_from_slice(&(n as u32).to_be_bytes());
        let out = Envelope {
            message_id: MessageId::from_uuid(Uuid::new_v5(&ID_NAMESPACE, &name)),
            sender: Party::Hub,
            recipient: reply.recipient,
            case_id: reply.case_id,
            correlation_id: correlation,
            sent_at: now,
            body: reply.body,
        };
        enqueue(conn, &out).await?;
    }
    Ok(())
}

/// Writes an envelope to the outbox, addressed to its recipient's queue.
async fn enqueue(conn: &mut PgConnection, env: &Envelope) -> Result<()> {
    let body = codec::to_xml(env).into_bytes();
    outbox::enqueue(
        conn,
        &outbox::NewMessage {
            message_id: env.message_id.uuid(),
            exchange: names::OUTBOUND_EXCHANGE.to_owned(),
            routing_key: env.recipient.to_string(),
            message_type: env.message_type().as_str().to_owned(),
            recipient: env.recipient.to_string(),
            case_id: env.case_id.map(|c| c.uuid()),
            correlation_id: env.correlation_id.map(|c| c.to_string()),
            headers: serde_json::json!({}),
            body,
        },
    )
    .await
    .context("Failed to write to the outbox")
}

/// The id of the `n`th message caused by an inbound one (as [`emit`] derives it).
fn derive_id(sender: &str, message_id: Uuid, digest: &[u8; 32], n: u32) -> MessageId {
    let mut name = cause_key(sender, message_id, digest);
    name.extend_from_slice(&n.to_be_bytes());
    MessageId::from_uuid(Uuid::new_v5(&ID_NAMESPACE, &name))
}

/// The inbox key of a message whose envelope cannot be read: its AMQP message id when that is a
/// UUID, else one derived from its bytes (so a redelivery of the same bytes is recognized).
fn fallback_id(msg: &Inbound<'_>, digest: &[u8; 32]) -> Uuid {
    msg.amqp_message_id.and_then(|m| Uuid::parse_str(m).ok()).unwrap_or_else(|| Uuid::new_v5(&ID_NAMESPACE, digest))
}
