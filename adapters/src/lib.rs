//! The province-side adapter (省级适配器): the province's authenticated, durable pipe to the hub.
//!
//! # Layout
//! - [`identity`]: who this adapter is, from its certificate;
//! - [`config`]: settings; [`store`]: the SQLite outbox and inbox;
//! - [`link`]: the broker connection (publish the outbox, take the inbox);
//! - [`api`]: the local API for the provincial system; [`webhook`]: optional push;
//! - [`simulate`]: a simulated provincial system, for demos and tests;
//! - [`runner`]: run until stopped; [`check`]: what it checks first, and `adapter check`.

pub mod api;
pub mod check;
pub mod config;
pub use certs::failpoint;
pub mod identity;
pub mod link;
pub mod runner;
pub mod sequence;
pub mod signing;
pub mod simulate;
pub mod store;
pub mod webhook;
