//! Pushing inbound messages to the provincial system's webhook, until it answers 2xx — which
//! counts as its acknowledgement. The pull API stays available beside it.
//!
//! Each push is `POST url` with the message (`application/xml`) and the headers
//! `x-message-id`, `x-message-type`, `x-xueji-timestamp` (Unix seconds) and
//! `x-xueji-signature: sha256=<hex>`, the HMAC-SHA256 under the configured secret of
//! `<timestamp>.<body>`. The provincial system recomputes it over the raw body, compares in
//! constant time, and refuses a timestamp more than five minutes old: a forged or replayed push
//! is refused.

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use sqlx::SqlitePool;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::link::backoff;
use crate::store;

/// The shortest secret accepted.
pub const MIN_SECRET: usize = 32;

/// The webhook's signing key: read like a string, never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 under `secret` of `<timestamp>.<body>`.
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret.0.as_bytes(), &[timestamp.to_string().as_bytes(), b".", body]))
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Pushes until `shutdown` turns true.
pub async fn run(pool: SqlitePool, url: String, secret: Secret, mut shutdown: watch::Receiver<bool>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("HTTP client");
    loop {
        match store::due_pushes(&pool, 50).await {
            Ok(due) => {
                for (id, message_type, body, attempts) in due {
                    let timestamp = Utc::now().timestamp();
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/xml")
                        .header("x-message-id", &id)
                        .header("x-message-type", &message_type)
                        .header("x-xueji-timestamp", timestamp.to_string())
                        .header("x-xueji-signature", signature(&secret, timestamp, &body))
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            let _ = store::inbox_ack(&pool, &id).await;
                            info!(message_id = %id, "Pushed to the provincial system.");
                        }
                        outcome => {
                            let why = match outcome {
                                Ok(r) => format!("HTTP {}", r.status()),
                                Err(e) => e.to_string(),
                            };
                            let step = backoff(Duration::from_secs(300))
                                .nth(attempts.clamp(0, 20) as usize)
                                .unwrap_or(Duration::from_secs(300));
                            warn!(message_id = %id, attempts = attempts + 1, error = %why, "Webhook push failed; will retry.");
                            let _ = store::push_failed(&pool, &id, &why, Utc::now() + step).await;
                        }
                    }
                }
            }
            Err(e) => warn!(error = format!("{e:#}"), "Cannot read the inbox for pushing."),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_every_byte_of_the_body() {
        let key = Secret::new("k".repeat(MIN_SECRET));
        let s = signature(&key, 1_700_000_000, b"<message/>");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_eq!(s, signature(&key, 1_700_000_000, b"<message/>"));
        assert_ne!(s, signature(&key, 1_700_000_001, b"<message/>"), "a replay with a new time");
        assert_ne!(s, signature(&key, 1_700_000_000, b"<message />"), "a changed body");
        assert_ne!(s, signature(&Secret::new("j".repeat(MIN_SECRET)), 1_700_000_000, b"<message/>"), "another key");
        // RFC 4231, test case 2: the construction is the standard HMAC-SHA256.
        assert_eq!(
            hmac_hex(b"Jefe", &[b"what do ya ", b"want for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
