//! The central hub of the cross-province student-record exchange (学籍跨省业务交换枢纽).
//!
//! # Layout
//! - [`amqp`]: the only code that speaks AMQP: topology, the inbox consumer, the publisher;
//! - [`service`]: one inbound message → one transaction (inbox, handler, outbox);
//! - [`handlers`]: per message family, inside that transaction;
//! - [`workflow`]: business rules as pure functions (no SQL, no AMQP, no clock);
//! - [`store`]: the only code with SQL;
//! - [`relay`]: outbox → broker with confirms; [`scheduler`]: timers;
//! - [`api`]: health, readiness, metrics; [`provision`] and [`broker_admin`]: admitting and
//!   cutting off parties; [`startup`]: run until stopped.

pub mod amqp;
pub mod api;
pub mod broker_admin;
pub mod cli;
pub mod config;
pub use certs::failpoint;
pub mod handlers;
pub mod health;
pub mod housekeeping;
pub mod provision;
pub mod relay;
pub mod retry;
pub mod rules;
pub mod scheduler;
pub mod schools;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod workflow;
