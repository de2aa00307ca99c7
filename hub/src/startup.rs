//! Building the hub and running it until stopped: database (waited for, migrated), the HTTP
//! surface, the consumer, the outbox relay and the scheduler. On SIGTERM or SIGINT it stops
//! consuming, lets in-flight messages finish, flushes the outbox, and exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::amqp::consumer;
use crate::api::{self, AppState};
use crate::config::Settings;
use crate::context::Context;
use crate::health::Health;
use crate::retry::{backoff, panic_text};
use crate::{housekeeping, relay, scheduler, store};

/// Runs the hub until SIGTERM or SIGINT.
///
/// # Errors
/// When the HTTP port cannot be bound or the migrations fail.
pub async fn run(settings: Settings) -> Result<()> {
    // What would only fail later (a wrong key, a province's certificate, a bad calendar) stops
    // the hub now, named, before it binds a port or touches the database.
    let preflight = crate::check::offline(&settings);
    if !preflight.passed() {
        anyhow::bail!("not starting: {}", preflight.failures());
    }
    for (check, outcome) in &preflight.lines {
        if let certs::preflight::Outcome::Warn(what) = outcome {
            warn!(check = *check, "{what}");
        }
    }
    let pool = store::pool(&settings.database)?;
    wait_for_database(&pool).await?;
    store::migrate(&pool).await?;
    // A broker that refuses the hub's certificate, or has no vhost for it, will not change its
    // mind: stop and say so. One that is down is waited for by the consumer and the relay.
    if let Err(e) = crate::amqp::probe(&settings.broker).await {
        let problem = crate::check::broker_problem(&e, &settings.broker.vhost);
        if problem.permanent {
            anyhow::bail!("not starting: broker: {problem}");
        }
        warn!(error = %problem.why, "Broker not reachable yet; the consumer and the relay will keep trying.");
    }
    let metrics = crate::telemetry::install_metrics().context("Failed to install the metrics recorder")?;

    let listener = tokio::net::TcpListener::bind(settings.http.listen)
        .await
        .with_context(|| format!("Failed to bind {}", settings.http.listen))?;
    info!(address = %listener.local_addr()?, "HTTP listening (healthz, readyz, metrics).");

    let health = Arc::new(Health::default());
    let ctx = Context::new(pool.clone(), settings)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (consumer_done_tx, consumer_done_rx) = watch::channel(false);

    let app = api::router(AppState {
        pool: pool.clone(),
        health: health.clone(),
        metrics,
        stuck_after: ctx.rules.stuck_after(),
    });
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await;
    });
    let consumer = tokio::spawn({
        let (ctx, stop, health) = (ctx.clone(), stop_rx.clone(), health.clone());
        async move {
            supervise("consumer", stop.clone(), || consumer::run(ctx.clone(), stop.clone(), health.clone())).await;
            let _ = consumer_done_tx.send(true);
        }
    });
    let relay = tokio::spawn({
        let (ctx, stop, health) = (ctx.clone(), stop_rx.clone(), health.clone());
        async move {
            supervise("relay", stop.clone(), || {
                relay::run(ctx.clone(), stop.clone(), consumer_done_rx.clone(), health.clone())
            })
            .await;
        }
    });
    let ops = match &ctx.settings.ops {
        Some(o) => {
            let config = certs::serve::tls_config(&o.cert, &o.key, &o.client_ca)?;
            let limits = o.limits.to_limits("[ops]").map_err(anyhow::Error::msg)?;
            let listener = tokio::net::TcpListener::bind(o.listen)
                .await
                .with_context(|| format!("Failed to bind {}", o.listen))?;
            certs::serve::announce("Operator API (HTTPS, client certificates)", &listener, true, &limits);
            Some(tokio::spawn(certs::serve::serve(
                listener,
                Some(Arc::new(config)),
                api::ops::router(ctx.clone()),
                limits,
                Arc::new(certs::serve::Gauges::default()),
                stop_rx.clone(),
            )))
        }
        None => None,
    };
    let scheduler = tokio::spawn({
        let (ctx, stop) = (ctx.clone(), stop_rx.clone());
        async move { supervise("scheduler", stop.clone(), || scheduler::run(ctx.clone(), stop.clone())).await }
    });
    let housekeeping = tokio::spawn({
        let (pool, retention, stop) = (pool.clone(), ctx.settings.retention, stop_rx.clone());
        async move {
            supervise("housekeeping", stop.clone(), || housekeeping::run(pool.clone(), retention, stop.clone())).await
        }
    });
    let sealer = tokio::spawn({
        let (ctx, stop) = (ctx.clone(), stop_rx.clone());
        async move { supervise("sealer", stop.clone(), || crate::message_log::run(ctx.clone(), stop.clone())).await }
    });

    wait_for_signal().await;
    info!("Stopping: finishing in-flight messages, then flushing the outbox.");
    let _ = stop_tx.send(true);
    if let Some(o) = ops {
        let _ = o.await;
    }
    for (name, task) in [
        ("consumer", consumer),
        ("relay", relay),
        ("scheduler", scheduler),
        ("housekeeping", housekeeping),
        ("sealer", sealer),
        ("http", http),
    ] {
        if tokio::time::timeout(Duration::from_secs(30), task).await.is_err() {
            warn!(task = name, "Did not stop within 30 s.");
        }
    }
    pool.close().await;
    info!("Stopped.");
    Ok(())
}

/// Runs a task, and runs it again if it panics (a bug must cost one restart, not the hub's
/// ability to relay or to fire timers). Returns when the task ends by itself.
async fn supervise<F, Fut>(name: &'static str, stop: watch::Receiver<bool>, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(start()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                let text = panic_text(&*e.into_panic());
                tracing::error!(task = name, panic = %text, "Task panicked; restarting it.");
                if *stop.borrow() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return,
        }
    }
}

/// Waits for the database while waiting can help.
///
/// # Errors
/// A database that does not exist or refuses the login: waiting will not help.
async fn wait_for_database(pool: &sqlx::PgPool) -> Result<()> {
    let mut delays = backoff();
    while let Err(e) = store::ping(pool).await {
        let problem = store::problem(&e);
        if problem.permanent {
            anyhow::bail!("not starting: database: {problem}");
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(15));
        warn!(error = %problem.why, retry_in = ?delay, "Database not reachable yet.");
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
