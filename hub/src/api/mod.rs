//! The hub's HTTP surfaces: health, readiness and Prometheus metrics (plain HTTP, internal);
//! the operator API ([`ops`], HTTPS with client certificates) and the console beside it
//! ([`console`], the same listener and roles).

pub mod console;
pub mod ops;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use crate::health::Health;
use crate::store;
use crate::workflow::calendar::business_date;

/// How long readiness and metrics wait for the database: an outage must be reported at once,
/// not after the pool's acquire timeout.
const DATABASE_WAIT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
    /// An automated stage older than this is stuck (`[cases] stuck_after_secs`).
    pub stuck_after: chrono::Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(certs::serve::access_log))
        .with_state(state)
}

/// Ready when the database answers and this process consumes from the broker.
async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let ping = crate::store::ping(&s.pool);
    let database = matches!(tokio::time::timeout(DATABASE_WAIT, ping).await, Ok(Ok(_)));
    let consuming = s.health.consuming.load(Ordering::SeqCst);
    let relaying = s.health.relaying.load(Ordering::SeqCst);
    let ready = database && consuming && relaying;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        code,
        Json(serde_json::json!({ "ready": ready, "database": database, "consuming": consuming, "relaying": relaying })),
    )
}

/// The Prometheus exposition; the gauges of what the database holds are read at each scrape
/// (and left at their last value when the database does not answer in time).
async fn metrics(State(s): State<AppState>) -> String {
    let now = Utc::now();
    let read = store::gauges(&s.pool, now - s.stuck_after, business_date(now));
    if let Ok(Ok(g)) = tokio::time::timeout(DATABASE_WAIT, read).await {
        metrics::gauge!("hub_outbox_unsent").set(g.outbox_unsent as f64);
        metrics::gauge!("hub_outbox_lag_seconds").set(g.outbox_lag_seconds);
        metrics::gauge!("hub_cases_open").set(g.cases_open as f64);
        metrics::gauge!("hub_cases_stuck").set(g.cases_stuck as f64);
        metrics::gauge!("hub_cases_overdue").set(g.cases_overdue as f64);
        metrics::gauge!("hub_dead_letters").set(g.dead_letters as f64);
        metrics::gauge!("hub_dead_letters_suppressed").set(g.dead_letters_suppressed as f64);
        metrics::gauge!("hub_index_disputed").set(g.index_disputed as f64);
        metrics::gauge!("hub_message_log_lag_seconds").set(g.message_log_lag_seconds);
    }
    s.metrics.render()
}
