//! Names of the broker topology: the contract between the hub and every adapter, the same in
//! every vhost. Kept here, beside the messages, so both sides build them from one place.

use crate::Party;
use crate::ids::ProvinceCode;

/// Provinces publish here (topic; any routing key reaches the inbox). Their only write.
pub const INBOUND_EXCHANGE: &str = "hub.in";
/// The hub's inbox: a quorum queue with a delivery limit and a dead-letter exchange.
pub const INBOX_QUEUE: &str = "hub.inbox";
/// The hub publishes here (direct); the routing key is the recipient party (`prov-37`).
pub const OUTBOUND_EXCHANGE: &str = "hub.out";
/// Dead letters: the hub's own (with the reason in headers) and the broker's.
pub const DEAD_LETTER_EXCHANGE: &str = "hub.dlx";
pub const DEAD_LETTER_QUEUE: &str = "hub.dead";
/// The AMQP header an adapter sets to the message's case id, so the hub can order messages per
/// case before it has parsed the body.
pub const CASE_ID_HEADER: &str = "x-case-id";
/// The sender's detached signature over the exact body bytes, standard base64 (the form:
/// `certs::signature`). Every message on the exchange carries one.
pub const SIGNATURE_HEADER: &str = "x-signature";
/// Who signed: the SHA-256 fingerprint of the signer's certificate, lower-case hexadecimal.
pub const SIGNER_HEADER: &str = "x-signer";
/// The hub's certificate (DER, standard base64) on what the hub sends, so that an adapter
/// checks the hub's signature against its exchange CA without being told the hub's
/// certificate; provinces need not send theirs (the hub's registry holds it).
pub const SIGNER_CERTIFICATE_HEADER: &str = "x-signer-certificate";

/// The queue a province reads, and only it.
pub fn province_queue(p: ProvinceCode) -> String {
    format!("prov.{}.in", p.code())
}

/// The routing key (and broker user) of a province.
pub fn province_user(p: ProvinceCode) -> String {
    Party::Province(p).to_string()
}
