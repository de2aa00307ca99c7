//! Pushing inbound messages to the provincial system's webhook, until it answers 2xx — which
//! counts as its acknowledgement. The pull API stays available beside it.

use std::time::Duration;

use chrono::Utc;
use sqlx::SqlitePool;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::link::backoff;
use crate::store;

/// Pushes until `shutdown` turns true.
pub async fn run(pool: SqlitePool, url: String, mut shutdown: watch::Receiver<bool>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("HTTP client");
    loop {
        match store::due_pushes(&pool, 50).await {
            Ok(due) => {
                for (id, body, attempts) in due {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/xml")
                        .header("x-message-id", &id)
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
