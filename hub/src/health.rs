//! What this hub process reports about itself (readiness): written by the consumer and the
//! relay, read by the HTTP surface. A neutral home, so that none of them imports another.

use std::sync::atomic::AtomicBool;

/// What readiness reports.
#[derive(Debug, Default)]
pub struct Health {
    pub consuming: AtomicBool,
    pub relaying: AtomicBool,
}
