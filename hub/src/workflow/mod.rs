//! Business rules as pure functions: no SQL, no AMQP, no clock. Inputs in, decisions and
//! effects out; the service layer loads, locks and writes.

pub mod calendar;
pub mod case;
pub mod index;
pub mod orgcode;
pub mod problem;
