//! The hub's HTTP surfaces: health, readiness and Prometheus metrics (plain HTTP, internal);
//! the operator API ([`ops`], HTTPS with client certificates).

pub mod ops;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use crate::health::Health;
use crate::store::outbox;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready when the database answers and this process consumes from the broker.
async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let database = sqlx::query("SELECT 1").execute(&s.pool).await.is_ok();
    let consuming = s.health.consuming.load(Ordering::SeqCst);
    let relaying = s.health.relaying.load(Ordering::SeqCst);
    let ready = database && consuming && relaying;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        code,
        Json(serde_json::json!({ "ready": ready, "database": database, "consuming": consuming, "relaying": relaying })),
    )
}

async fn metrics(State(s): State<AppState>) -> String {
    if let Ok((count, age)) = outbox::lag(&s.pool).await {
        metrics::gauge!("hub_outbox_unsent").set(count as f64);
        metrics::gauge!("hub_outbox_lag_seconds").set(age);
    }
    s.metrics.render()
}
