//! What the hub sends: envelopes addressed to a province, each with an id derived from what
//! caused it (an inbound message, a fired timer, an operator's action) and its position, so a
//! replay of the same cause writes the same outbox rows, which the outbox's unique key absorbs.

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use schemas::codec;
use schemas::messages::Body;
use schemas::topology;
use schemas::{CaseId, Envelope, MessageId, Party};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::{outbox, trace};

/// Namespace of the hub's derived message ids.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a9e_4b7d_4c1a_9e3f_58d2_0b6a_7c41);

/// A message to send, addressed; [`emit`] gives it its id and envelope.
#[derive(Debug, Clone)]
pub struct Reply {
    pub recipient: Party,
    pub case_id: Option<CaseId>,
    pub body: Body,
}

/// What made the hub send something: the root of its messages' ids.
#[derive(Debug, Clone, Copy)]
pub enum Cause<'a> {
    /// An inbound message: its authenticated sender, its id, the digest of its bytes, and the
    /// operator's replay (audit entry) it is processed under, if it is one.
    Message { sender: &'a str, message_id: Uuid, digest: &'a [u8; 32], replay: Option<i64> },
    /// A timer, at the due time it fired for.
    Timer { timer_id: i64, due_at: DateTime<Utc> },
    /// An operator's action, by its audit entry.
    Operator { audit_id: i64 },
}

impl Cause<'_> {
    /// The bytes every id derived from this cause starts from.
    fn key(&self) -> Vec<u8> {
        match self {
            Cause::Message { sender, message_id, digest, replay } => {
                let mut name = Vec::with_capacity(96);
                name.extend_from_slice(sender.as_bytes());
                name.extend_from_slice(message_id.as_bytes());
                name.extend_from_slice(&digest[..]);
                if let Some(audit_id) = replay {
                    name.extend_from_slice(format!("replay:{audit_id}").as_bytes());
                }
                name
            }
            Cause::Timer { timer_id, due_at } => format!("timer:{timer_id}:{}", due_at.timestamp_micros()).into_bytes(),
            Cause::Operator { audit_id } => format!("audit:{audit_id}").into_bytes(),
        }
    }

    /// The id of the `n`th message this cause sends.
    pub fn derive_id(&self, n: u32) -> MessageId {
        let mut name = self.key();
        name.extend_from_slice(&n.to_be_bytes());
        MessageId::from_uuid(Uuid::new_v5(&ID_NAMESPACE, &name))
    }
}

/// The message id of an unreadable message: its AMQP message id when that is a UUID, else one
/// derived from its bytes (so a redelivery of the same bytes is recognized).
pub fn fallback_id(amqp_message_id: Option<&str>, digest: &[u8; 32]) -> Uuid {
    amqp_message_id.and_then(|m| Uuid::parse_str(m).ok()).unwrap_or_else(|| Uuid::new_v5(&ID_NAMESPACE, digest))
}

/// Writes replies to the outbox, their ids derived from `cause`.
///
/// # Errors
/// Database errors.
pub async fn emit(
    conn: &mut PgConnection,
    cause: &Cause<'_>,
    replies: Vec<Reply>,
    correlation: Option<MessageId>,
    now: DateTime<Utc>,
) -> Result<()> {
    emit_traced(conn, cause, replies, correlation, now, None).await
}

/// [`emit`], and the inbound message's line in the trace, all in one statement.
///
/// # Errors
/// Database errors.
pub async fn emit_traced(
    conn: &mut PgConnection,
    cause: &Cause<'_>,
    replies: Vec<Reply>,
    correlation: Option<MessageId>,
    now: DateTime<Utc>,
    inbound: Option<&trace::NewTrace<'_>>,
) -> Result<()> {
    let mut pending = Pending::default();
    pending.add(cause, replies, correlation, now, inbound);
    pending.flush(conn).await
}

/// What several causes send, gathered and then written in one statement ([`Pending::flush`]):
/// the consumer's group commit writes all its messages' outbox rows and trace lines at once.
/// The trace keeps the order in which they were added.
#[derive(Debug, Default)]
pub struct Pending {
    messages: Vec<outbox::NewMessage>,
    lines: Vec<Line>,
}

/// A line of the trace to write: an inbound message's, or that of the outbox row it made.
#[derive(Debug)]
enum Line {
    /// An inbound message's line, its text owned.
    In {
        trace: trace::NewTrace<'static>,
        party: String,
        message_type: String,
        code: Option<String>,
    },
    Out {
        message: usize,
        correlation: Option<Uuid>,
    },
}

impl Pending {
    /// Adds the inbound message's trace line (when given), then the replies it causes, their ids
    /// derived from `cause`.
    pub fn add(
        &mut self,
        cause: &Cause<'_>,
        replies: Vec<Reply>,
        correlation: Option<MessageId>,
        now: DateTime<Utc>,
        inbound: Option<&trace::NewTrace<'_>>,
    ) {
        if let Some(t) = inbound {
            let trace = trace::NewTrace { party: "", message_type: "", code: None, ..t.clone() };
            let (party, message_type, code) =
                (t.party.to_owned(), t.message_type.to_owned(), t.code.map(str::to_owned));
            self.lines.push(Line::In { trace, party, message_type, code });
        }
        for (n, reply) in replies.into_iter().enumerate() {
            let out = Envelope {
                message_id: cause.derive_id(u32::try_from(n).unwrap_or(u32::MAX - 1)),
                sender: Party::Hub,
                recipient: reply.recipient,
                case_id: reply.case_id,
                correlation_id: correlation,
                sent_at: now,
                body: reply.body,
            };
            self.lines.push(Line::Out { message: self.messages.len(), correlation: correlation.map(|c| c.uuid()) });
            self.messages.push(new_message(&out));
        }
    }

    /// Writes what was added, in one statement, and empties the buffer.
    ///
    /// # Errors
    /// Database errors.
    pub async fn flush(&mut self, conn: &mut PgConnection) -> Result<()> {
        let traces: Vec<trace::NewTrace<'_>> = self
            .lines
            .iter()
            .map(|l| match l {
                Line::In { trace, party, message_type, code } => {
                    trace::NewTrace { party, message_type, code: code.as_deref(), ..trace.clone() }
                }
                Line::Out { message, correlation } => outbox::queued_line(&self.messages[*message], *correlation),
            })
            .collect();
        outbox::enqueue_all(conn, &self.messages, &traces).await.context("Failed to write to the outbox")?;
        drop(traces);
        self.messages.clear();
        self.lines.clear();
        Ok(())
    }
}

/// An envelope as the outbox keeps it: addressed to its recipient's queue.
fn new_message(env: &Envelope) -> outbox::NewMessage {
    outbox::NewMessage {
        message_id: env.message_id.uuid(),
        exchange: topology::OUTBOUND_EXCHANGE.to_owned(),
        routing_key: env.recipient.to_string(),
        message_type: env.message_type().as_str().to_owned(),
        recipient: env.recipient.to_string(),
        case_id: env.case_id.map(|c| c.uuid()),
        group_id: env.body.problem_group().map(|g| g.uuid()),
        correlation_id: env.correlation_id.map(|c| c.to_string()),
        headers: serde_json::json!({}),
        body: codec::to_xml(env).into_bytes(),
    }
}

/// Writes an envelope to the outbox, addressed to its recipient's queue, and traces it.
///
/// # Errors
/// Database errors.
pub async fn enqueue(conn: &mut PgConnection, env: &Envelope) -> Result<()> {
    outbox::enqueue(conn, &new_message(env), env.correlation_id.map(|c| c.uuid()))
        .await
        .context("Failed to write to the outbox")
}
