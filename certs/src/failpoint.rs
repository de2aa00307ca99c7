//! Crash points for the fault tests: with `XJ_CRASH_AT=<point>` the process kills itself with
//! SIGKILL the first time it passes `<point>` (`<point>:<n>`: the n-th time; with
//! `XJ_CRASH_ON=<tag>` only passes with that tag count, e.g. the message type the hub just
//! committed, so a test crashes on exactly the message it means). This is how the
//! tests crash the hub and the adapter at an exact instant (between commit and ack, between
//! commit and publish) and prove nothing is lost or doubled. Unset — always, in production — it
//! costs one check of a value read once.
//!
//! Why here: the hub and the adapter both need it, and this crate is the one they share for
//! their process edges (broker connection, HTTP serving); the crash points sit at exactly those
//! edges. It depends on nothing but `std` and `tracing`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// After a message's transaction committed, before its delivery is acknowledged.
pub const CONSUMER_AFTER_COMMIT: &str = "consumer-after-commit";
/// Inside a message's transaction, just before commit.
pub const CONSUMER_BEFORE_COMMIT: &str = "consumer-before-commit";
/// Outbox rows claimed, nothing published yet.
pub const RELAY_BEFORE_PUBLISH: &str = "relay-before-publish";
/// Published and confirmed by the broker, not yet marked sent.
pub const RELAY_AFTER_CONFIRM: &str = "relay-after-confirm";
/// Adapter: an inbound message committed to the inbox, not yet acknowledged to the broker.
pub const INBOUND_AFTER_COMMIT: &str = "inbound-after-commit";
/// Adapter: the provincial system acknowledges inbox messages; nothing recorded yet.
pub const INBOX_BEFORE_ACK: &str = "inbox-before-ack";
/// Revocation: the CRL lists the certificate, the registry does not yet.
pub const REVOKE_AFTER_CRL: &str = "revoke-after-crl";
/// Revocation: registry and CRL updated, broker access and connections not yet touched.
pub const REVOKE_AFTER_REGISTRY: &str = "revoke-after-registry";

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static TAG: OnceLock<Option<String>> = OnceLock::new();
static PASSES: AtomicU64 = AtomicU64::new(0);

fn armed() -> &'static Option<(String, u64)> {
    ARMED.get_or_init(|| {
        let spec = std::env::var("XJ_CRASH_AT").ok()?;
        let (point, n) = match spec.split_once(':') {
            Some((p, n)) => (p.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        tracing::warn!(%point, n, "Crash point armed (XJ_CRASH_AT): this process will kill itself there.");
        Some((point, n))
    })
}

/// Passes `point`; dies there if it is the armed one.
pub fn pass(point: &str) {
    pass_tagged(point, None);
}

/// Passes `point` with a tag (e.g. a message type); with `XJ_CRASH_ON` set, only a pass with
/// that tag counts.
pub fn pass_tagged(point: &str, tag: Option<&str>) {
    let wanted = TAG.get_or_init(|| std::env::var("XJ_CRASH_ON").ok().filter(|t| !t.is_empty()));
    if wanted.as_deref().is_some_and(|w| Some(w) != tag) {
        return;
    }
    if let Some((armed, n)) = armed()
        && armed == point
        && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        tracing::error!(point, "Crash point reached: SIGKILL.");
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
