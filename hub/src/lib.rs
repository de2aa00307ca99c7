//! The central hub of the cross-province student-record exchange (学籍跨省业务交换枢纽).
//!
//! # Layout
//! One way for every message: [`amqp`] consumer → [`service`] (inbox, sender check) →
//! [`unit`](mod@unit) (one transaction per cause) → [`handlers`] → pure [`workflow`] → [`store`] →
//! [`outgoing`] (outbox rows, derived ids) → [`relay`] (outbox → broker with confirms).
//!
//! - [`amqp`]: the only code that speaks AMQP: topology, the inbox consumer, the publisher;
//! - [`service`]: one inbound message: parse, authenticate the sender, check its signature
//!   ([`signers`]: the registry's certificates as verifiers), detect redeliveries;
//! - [`unit`](mod@unit): the unit of work every cause shares — a message, a due timer, an operator's
//!   action (with its audit id): begin, handle, enqueue the replies, commit;
//! - [`handlers`]: per business, inside the unit of work: gather facts, call the workflow,
//!   write what it decided; [`context`]: what they are given;
//! - [`workflow`]: business rules as pure functions (no SQL, no AMQP, no clock): a state enum
//!   per business, every (state, event) pair written out, effects returned as complete data;
//! - [`store`]: the only code with SQL; [`store::register`] is the register of open business
//!   (one open business per student, and what references a school);
//! - [`evidence`]: the message log's evidence format — hash chain, checkpoints, the bundle an
//!   auditor checks with standard tools (pure);
//! - [`replay`]: operators settling dead letters (replay after a fix, exactly once; discard);
//! - [`scheduler`]: due timers (typed kinds, owned by a business and its id);
//!   [`housekeeping`]: retention;
//! - [`api`]: health, readiness, metrics and the operators' API (roles by extractor:
//!   [`api::ops`]); [`cli`]: the command line, one module per command family;
//! - [`provision`] and [`broker_admin`]: admitting and cutting off parties; [`startup`]: run
//!   until stopped, after [`check`] (also `hub check`); [`health`], [`retry`], [`rules`], [`config`], [`telemetry`]: shared pieces
//!   with no business in them.
//!
//! No two of these modules import each other, directly or around a circle (`tests/layout.rs`).
//!
//! # What a new business adds
//! Beside `case` (transfers and enrollments), each business brings exactly:
//! 1. its messages in `schemas` (wire types, XSD, samples), and each new `Body` variant routed
//!    in [`handlers::dispatch`] — the match names every variant, so a new one does not compile
//!    until it is routed;
//! 2. `workflow/<business>/`: its state enum, events and pure transitions, registered in
//!    [`workflow`];
//! 3. `handlers/<business>.rs`: its facts and writes, called from [`handlers::dispatch`]; its
//!    timers as a variant of [`handlers::Timer`] with their owner name (`Timer::of`), run by
//!    [`handlers::timer`];
//! 4. `store/<business>.rs` and a migration: its tables; it writes its open items into
//!    [`store::register`] in the same transaction as its state, and clears them when done;
//! 5. its operator routes in [`api::ops`] (path constants, role extractor) with their client
//!    beside them, and its commands under [`cli`].
//!
//! Nothing else changes: the unit of work, outbox, relay, scheduler and consumer serve it as
//! they are.

pub mod amqp;
pub mod api;
pub mod broker_admin;
pub mod check;
pub mod cli;
pub mod config;
pub mod context;
pub mod evidence;
pub use certs::failpoint;
pub mod handlers;
pub mod health;
pub mod housekeeping;
pub mod message_log;
pub mod outgoing;
pub mod provision;
pub mod relay;
pub mod replay;
pub mod retry;
pub mod rules;
pub mod scheduler;
pub mod schools;
pub mod service;
pub mod signers;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod unit;
pub mod workflow;
