//! Processing one inbound message, in one unit of work ([`crate::unit`]): the sender gate
//! (who the broker says, with an admitted certificate), the parse, the inbox claim (a
//! redelivery is skipped, a reused id refused), the handler for its type, and the messages it
//! sends. The caller acknowledges the delivery only after this returns `Ok`. What cannot be
//! processed is a dead letter: kept once, bounded, its sender told.

use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, SubsecRound, Utc};
use schemas::codec::{self, ParseError};
use schemas::messages::{Body, ErrorReport};
use schemas::{CaseId, Envelope, ErrorCode, MessageId, MessageType, Party};
use sha2::Digest;
use sqlx::PgConnection;
use tracing::{Instrument, debug, error, info, warn};
use uuid::Uuid;

use crate::context::Context;
use crate::failpoint;
use crate::handlers::{self, Effects};
use crate::outgoing::{self, Cause, Pending, fallback_id};
use crate::signers::{self, Known};
use crate::store::{dead_letters, inbox, trace};
use certs::signature::Signature;

mod group;
pub use group::handle_group;

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
    /// The sender's signature over `body` (header `x-signature`) and the fingerprint of the
    /// certificate that made it (`x-signer`), as received.
    pub signature: Option<&'a str>,
    pub signer: Option<&'a str>,
}

impl<'a> Inbound<'a> {
    /// A message as it arrived from `user_id`, with its signature headers.
    pub fn new(body: &'a [u8], user_id: Option<&'a str>, signature: (Option<&'a str>, Option<&'a str>)) -> Self {
        Inbound { body, user_id, amqp_message_id: None, replay: None, signature: signature.0, signer: signature.1 }
    }

    /// The certificate its signature names, when it names a registered one.
    async fn signer(&self, conn: &mut PgConnection, ctx: &Context) -> Result<Option<Arc<Known>>> {
        let Some(fingerprint) = self.signer.map(str::trim).filter(|f| f.len() == 64) else { return Ok(None) };
        Ok(ctx.signers.find(conn, &fingerprint.to_ascii_lowercase()).await?)
    }
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
#[derive(Debug, Clone)]
struct Poison {
    code: ErrorCode,
    detail: String,
    /// Who to answer, when known.
    reply_to: Option<Party>,
    offending: Option<MessageId>,
    case_id: Option<CaseId>,
    message_type: Option<&'static str>,
}

impl Poison {
    /// A readable envelope's: its sender is answered.
    fn of(sender: Party, envelope: &Envelope, code: ErrorCode, detail: String) -> Poison {
        Poison {
            code,
            detail,
            reply_to: Some(sender),
            offending: Some(envelope.message_id),
            case_id: envelope.case_id,
            message_type: Some(envelope.message_type().as_str()),
        }
    }
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

/// Processes one delivery inside the caller's transaction (an operator's replay, and the
/// group commit's message-by-message path, run it): everything it writes — claim, effects,
/// outbox, trace or dead letter — is on `conn` and commits or rolls back with it. `Err` means
/// nothing of this message may be kept: the caller rolls it back and retries it.
///
/// # Errors
/// Transient database errors.
pub async fn handle_in(conn: &mut PgConnection, ctx: &Context, msg: Inbound<'_>) -> Result<Handled> {
    let started = std::time::Instant::now();
    let now = Utc::now().trunc_subsecs(3);
    let signer = msg.signer(&mut *conn, ctx).await?;
    let item = read(ctx, msg, signer.as_deref());
    if let Readable::Poison { key, id, poison } = &item.what {
        return dead_letter(conn, ctx, &msg, key, *id, &item.digest, poison.clone(), now).await;
    }
    // The admission check and the claim are one statement: nothing is claimed unless the
    // certificate that signed it is the sender's, registered, unrevoked and valid now.
    let new = item.new_claim().expect("an envelope has a claim");
    let claim = inbox::claim_if_admitted(&mut *conn, &new).await?;
    let mut unit = Unit::default();
    let handled = admitted(&mut *conn, ctx, &item, claim, now, &mut unit).await?;
    unit.finish(&mut *conn).await?;
    item.log(&handled, started);
    Ok(handled)
}

/// A delivery as read before any database work: its digest, and its sender and envelope or
/// why it is poison before it can be claimed.
struct Read<'a> {
    msg: Inbound<'a>,
    digest: [u8; 32],
    what: Readable,
}

enum Readable {
    /// Readable, from an authenticated province, addressed to the hub, with the signature
    /// that verified over it.
    Envelope { sender: Party, key: String, signature: Signature, envelope: Box<Envelope> },
    /// Unusable before any claim: recorded under `key` and `id`.
    Poison { key: String, id: Uuid, poison: Poison },
}

/// The sender gate, the parse, the signature (with `signer`, the certificate it names) and the
/// envelope's own checks (no I/O).
fn read<'a>(ctx: &Context, msg: Inbound<'a>, signer: Option<&Known>) -> Read<'a> {
    let digest: [u8; 32] = sha2::Sha256::digest(msg.body).into();
    let what = read_envelope(ctx, &msg, &digest, signer);
    Read { msg, digest, what }
}

fn read_envelope(ctx: &Context, msg: &Inbound<'_>, digest: &[u8; 32], signer: Option<&Known>) -> Readable {
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
        return Readable::Poison { key: "unknown".to_owned(), id: fallback_id(msg.amqp_message_id, digest), poison };
    };
    let key = sender.to_string();
    let envelope = match codec::from_xml(msg.body, ctx.settings.limits.max_message_bytes) {
        Ok(e) => e,
        Err(ParseError { code, detail, message_id }) => {
            let id = message_id.map_or_else(|| fallback_id(msg.amqp_message_id, digest), |m| m.uuid());
            let poison = Poison {
                code,
                detail,
                reply_to: Some(sender),
                offending: message_id,
                case_id: None,
                message_type: None,
            };
            return Readable::Poison { key, id, poison };
        }
    };
    // Dead-letters this (parsed) envelope, answering its sender.
    let poison_of = |code, detail: String| Readable::Poison {
        key: key.clone(),
        id: envelope.message_id.uuid(),
        poison: Poison::of(sender, &envelope, code, detail),
    };
    if envelope.sender != sender {
        let detail = format!("envelope says sender {} but the authenticated sender is {sender}", envelope.sender);
        return poison_of(ErrorCode::Sender, detail);
    }
    // The bytes are the sender's only if its certificate's key signed them: what the broker
    // authenticated is the connection, not the content (an operator's replay, or a message a
    // compromised broker account forged, is checked the same way).
    let signature = match signers::check(msg.body, (msg.signature, msg.signer), signer, &key) {
        Ok(signature) => signature,
        Err(signers::NotSigned::Refused(refusal)) => return poison_of(ErrorCode::Signature, refusal.to_string()),
        Err(signers::NotSigned::Unregistered(fingerprint)) => {
            let detail = format!("signed with certificate {fingerprint}, which is not registered for {sender}");
            return poison_of(ErrorCode::Revoked, detail);
        }
    };
    if envelope.recipient != Party::Hub {
        let detail = format!("addressed to {}; provinces send to the hub only", envelope.recipient);
        return poison_of(ErrorCode::Unexpected, detail);
    }
    Readable::Envelope { sender, key, signature, envelope: Box::new(envelope) }
}

impl Read<'_> {
    /// Who it is recorded under.
    fn key(&self) -> &str {
        match &self.what {
            Readable::Envelope { key, .. } | Readable::Poison { key, .. } => key,
        }
    }

    /// The id it is recorded under.
    fn id(&self) -> Uuid {
        match &self.what {
            Readable::Envelope { envelope, .. } => envelope.message_id.uuid(),
            Readable::Poison { id, .. } => *id,
        }
    }

    fn envelope(&self) -> Option<(Party, &Envelope)> {
        match &self.what {
            Readable::Envelope { sender, envelope, .. } => Some((*sender, envelope)),
            Readable::Poison { .. } => None,
        }
    }

    /// The inbox claim of a readable message.
    fn new_claim(&self) -> Option<inbox::NewClaim<'_>> {
        let (_, env) = self.envelope()?;
        let Readable::Envelope { signature, .. } = &self.what else { return None };
        Some(inbox::NewClaim {
            sender: self.key(),
            signer: Some(&signature.signer),
            logged: Some((self.msg.body, &signature.value)),
            message_id: env.message_id.uuid(),
            message_type: env.message_type().as_str(),
            case_id: env.case_id.map(|c| c.uuid()),
            group_id: env.body.problem_group().map(|g| g.uuid()),
            digest: &self.digest,
            outcome: inbox::Outcome::Processed,
        })
    }

    /// One line per message, with its plain ids and never its content (no names, no student
    /// identifiers): what happened and how long it took. A dead letter has its own line.
    fn log(&self, handled: &Handled, started: std::time::Instant) {
        let Some((sender, env)) = self.envelope() else { return };
        let (outcome, code) = match handled {
            Handled::Processed(_) => ("processed", ""),
            Handled::Refused(_, c) => ("refused", c.code()),
            Handled::Duplicate => ("duplicate", ""),
            Handled::Poison(_) | Handled::Suppressed(_) => return,
        };
        info!(
            message_type = %env.message_type(),
            message_id = %env.message_id,
            case_id = %env.case_id.map(|c| c.to_string()).unwrap_or_default(),
            %sender,
            outcome,
            code,
            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "Message {outcome}."
        );
    }
}

/// What the messages of one transaction write at its end: what they send with their trace
/// lines, and which of them were refused.
#[derive(Default)]
struct Unit {
    pending: Pending,
    refused: Vec<(String, Uuid)>,
}

impl Unit {
    /// Adds what a handled message sends and its trace line; returns its outcome.
    fn add(&mut self, item: &Read<'_>, effects: Effects, now: DateTime<Utc>) -> Handled {
        let (_, env) = item.envelope().expect("only a readable message is handled");
        let message_type = env.message_type();
        let id = env.message_id.uuid();
        let handled = match effects.refused {
            Some(code) => {
                self.refused.push((item.key().to_owned(), id));
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
            party: item.key(),
            message_type: message_type.as_str(),
            case_id: env.case_id.map(|c| c.uuid()).or(opened),
            correlation_id: env.correlation_id.map(|c| c.uuid()),
            outcome,
            code,
        };
        let cause =
            Cause::Message { sender: item.key(), message_id: id, digest: &item.digest, replay: item.msg.replay };
        self.pending.add(&cause, effects.replies, Some(env.message_id), now, Some(&traced));
        handled
    }

    /// Writes it all: one statement for what is sent, one for the refusals (when any).
    async fn finish(&mut self, conn: &mut PgConnection) -> Result<()> {
        self.pending.flush(&mut *conn).await?;
        let refused: Vec<(&str, Uuid)> = self.refused.iter().map(|(s, id)| (s.as_str(), *id)).collect();
        inbox::set_refused(conn, &refused).await?;
        self.refused.clear();
        Ok(())
    }
}

/// A readable message whose claim is known: skipped (a redelivery), dead-lettered (a sender
/// without an admitted certificate, a reused id) or handled, what it sends added to `unit`.
async fn admitted(
    conn: &mut PgConnection,
    ctx: &Context,
    item: &Read<'_>,
    claim: Option<inbox::Claim>,
    now: DateTime<Utc>,
    unit: &mut Unit,
) -> Result<Handled> {
    let (sender, envelope) = item.envelope().expect("only a readable message is claimed");
    let key = item.key();
    let id = envelope.message_id.uuid();
    let dead = match claim {
        None => Poison::of(
            sender,
            envelope,
            ErrorCode::Revoked,
            format!("the certificate that signed it is not a registered, unrevoked certificate of {sender} valid now"),
        ),
        Some(inbox::Claim::Redelivery) => {
            debug!(message_id = %envelope.message_id, "Redelivery of a processed message skipped.");
            return Ok(Handled::Duplicate);
        }
        Some(inbox::Claim::Reused) => {
            // The claim inserted nothing: the dead letter is all this message writes.
            let detail = format!("message id {} was already used for a different message", envelope.message_id);
            Poison::of(sender, envelope, ErrorCode::Duplicate, detail)
        }
        Some(inbox::Claim::New) => {
            let province = sender.province().expect("the sender gate admits provinces only");
            let case_text = envelope.case_id.map(|c| c.to_string()).unwrap_or_default();
            let span = tracing::info_span!("message", message_id = %envelope.message_id, case_id = %case_text, message_type = %envelope.message_type(), %sender);
            // Instrumented, not entered: a span guard held across awaits corrupts the span stack.
            let effects = handlers::dispatch(&mut *conn, ctx, envelope, province, now).instrument(span).await?;
            return Ok(unit.add(item, effects, now));
        }
    };
    // A dead letter is written at once, after what the unit sends so far.
    unit.pending.flush(&mut *conn).await?;
    dead_letter(conn, ctx, &item.msg, key, id, &item.digest, dead, now).await
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
        group_id: None,
        digest,
        outcome: inbox::Outcome::Poison,
        signer: None,
        logged: None,
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
            signature: msg.signature,
            signer: msg.signer,
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
            signature: msg.signature,
            signer: msg.signer,
        },
    )
    .await?;
    Ok(())
}
