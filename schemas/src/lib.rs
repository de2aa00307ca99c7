//! The wire model of the cross-province student-record exchange (跨省学籍业务交换).
//!
//! # Layout
//! - [`ids`]: identifiers and codes that can only be built valid;
//! - [`envelope`]: the envelope and its ids ([`MessageId`], [`CaseId`], [`Party`]);
//! - [`messages`]: the message families and the closed [`Body`] enum;
//! - [`codec`]: XML (the wire format, under one versioned namespace) and JSON (the adapter's
//!   local API), with the hostile-input guards;
//! - [`error`]: the stable error catalogue;
//! - [`topology`]: the broker names the hub and the adapters share.
//!
//! This crate does no I/O. The XSDs in `schemas/xsd/` describe the same documents; the test
//! suite checks every example and every produced message against them with `xmllint`.

mod choice;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod messages;
pub mod samples;
pub mod topology;

pub use codec::{DEFAULT_MAX_BYTES, NAMESPACE, ParseError, SCHEMA_VERSION};
pub use envelope::{CaseId, Envelope, MessageId, Party};
pub use error::ErrorCode;
pub use messages::{Body, MessageType};
