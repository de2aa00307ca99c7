//! Running the adapter until SIGTERM/SIGINT: identity first (refuse to start on a bad
//! certificate), then the store, the link, the local API and the optional webhook.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use schemas::Party;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::identity::{self, Identity};
use crate::link::{Link, LinkState};
use crate::{store, webhook};

/// Checks the certificate and the configuration; logs the identity and warns when the
/// certificate expires soon.
///
/// # Errors
/// An unusable certificate or a configuration claiming another province.
pub fn check_identity(settings: &Settings) -> Result<Identity> {
    let id = identity::check(&settings.broker.cert, settings.claimed_province()?, Utc::now())?;
    for key in std::iter::once(&settings.broker.key).chain(settings.api.tls.as_ref().map(|t| &t.key)) {
        if let Some(why) = certs::files::key_exposure(key) {
            warn!("{why}");
        }
    }
    info!(province = id.province.code(), serial = %id.cert.serial, not_after = %id.cert.not_after, "Identity from the certificate.");
    warn_if_expiring(&id);
    Ok(id)
}

fn warn_if_expiring(id: &Identity) {
    if id.expires_soon {
        warn!(
            days_left = id.days_left,
            not_after = %id.cert.not_after,
            "The certificate expires in {} days: renew it (证书即将过期).",
            id.days_left
        );
    }
}

/// Runs until a signal.
///
/// # Errors
/// When the identity, the store or the local API port is unusable.
pub async fn run(settings: Settings) -> Result<()> {
    let preflight = crate::check::offline(&settings);
    if !preflight.passed() {
        anyhow::bail!("not starting: {}", preflight.failures());
    }
    let identity = Arc::new(check_identity(&settings)?);
    let me = Party::Province(identity.province);
    let pool = store::open(&settings.storage.path).await?;
    // A store restored from a backup asks the hub for what it sent since (`adapter restore`).
    let asked = store::queue_pending_replay(&pool, |since| {
        let body = schemas::messages::Body::ReplayRequest(schemas::messages::ReplayRequest { since });
        let env = schemas::Envelope::new(me, Party::Hub, body);
        (env.message_id.to_string(), env.message_type().as_str().to_owned(), schemas::codec::to_xml(&env).into_bytes())
    })
    .await?;
    if let Some(since) = asked {
        info!(%since, "Restored store: the hub is asked to send again what it sent since then.");
    }
    let depths = store::depths(&pool).await?;
    info!(queued = depths.outbox_queued, inbox_pending = depths.inbox_pending, "Store opened.");
    let settings = Arc::new(settings);
    let state = Arc::new(LinkState::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    // What it publishes is signed with its certificate's key; what the hub sends is checked
    // against the exchange CA.
    let signer = certs::signature::Signer::load(&settings.broker.cert, &settings.broker.key)
        .context("Failed to load the signing key")?;
    let ca_pem = std::fs::read(&settings.broker.ca)
        .with_context(|| format!("Failed to read {}", settings.broker.ca.display()))?;
    let link = Link {
        settings: settings.clone(),
        me,
        pool: pool.clone(),
        state: state.clone(),
        signer: Arc::new(signer),
        hub_keys: Arc::new(crate::signing::HubKeys::new(ca_pem)),
    };
    let mut link_task = tokio::spawn(link.run(stop_rx.clone()));
    let webhook_task = settings
        .webhook
        .as_ref()
        .map(|w| tokio::spawn(webhook::run(pool.clone(), w.url.clone(), w.secret.clone(), stop_rx.clone())));
    let housekeeping = tokio::spawn(housekeeping(
        pool.clone(),
        settings.broker.cert.clone(),
        identity.province,
        settings.storage.retention_days,
        stop_rx.clone(),
    ));

    let limits = settings.api.limits.to_limits("[api.limits]").map_err(anyhow::Error::msg)?;
    let tls = match &settings.api.tls {
        Some(t) => Some(Arc::new(certs::serve::tls_config(&t.cert, &t.key, &t.client_ca)?)),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(settings.api.listen)
        .await
        .with_context(|| format!("Failed to bind the local API on {}", settings.api.listen))?;
    certs::serve::announce("Local API", &listener, tls.is_some(), &limits);
    let state = AppState {
        pool: pool.clone(),
        me,
        identity,
        link: state,
        max_bytes: settings.limits.max_message_bytes,
        metrics: api::install_metrics()?,
    };
    let probes = match settings.api.probe_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("Failed to bind the probe listener on {addr}"))?;
            info!(address = %addr, "Probes listening (healthz, readyz, metrics; plain HTTP).");
            let router = api::probe_router(state.clone());
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }))
        }
        None => None,
    };
    let app = api::router(state);
    let http = tokio::spawn(certs::serve::serve(
        listener,
        tls,
        app,
        limits,
        Arc::new(certs::serve::Gauges::default()),
        stop_rx.clone(),
    ));

    // A link that cannot work (a refused certificate, a missing vhost) stops the adapter with
    // its reason, rather than retrying for ever.
    let refused = tokio::select! {
        _ = wait_for_signal() => None,
        ended = &mut link_task => match ended {
            Ok(Err(problem)) => Some(problem),
            _ => None,
        },
    };
    info!("Stopping.");
    let _ = stop_tx.send(true);
    if refused.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(15), link_task).await;
    }
    if let Some(w) = webhook_task {
        let _ = w.await;
    }
    let _ = housekeeping.await;
    let _ = http.await;
    if let Some(p) = probes {
        let _ = p.await;
    }
    pool.close().await;
    match refused {
        Some(problem) => Err(anyhow::anyhow!("the broker link cannot work: {problem}")),
        None => {
            info!("Stopped.");
            Ok(())
        }
    }
}

/// Daily: prune old rows, and check the certificate again (a long-running adapter must not
/// drift into an expired certificate unannounced).
async fn housekeeping(
    pool: sqlx::SqlitePool,
    cert: std::path::PathBuf,
    province: schemas::ids::ProvinceCode,
    days: u32,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match store::prune(&pool, days).await {
            Ok(n) if n > 0 => info!(rows = n, "Old messages pruned."),
            Ok(_) => {}
            Err(e) => warn!(error = format!("{e:#}"), "Pruning failed."),
        }
        match identity::check(&cert, Some(province), Utc::now()) {
            Ok(id) => warn_if_expiring(&id),
            Err(e) => {
                tracing::error!(error = %e, "The certificate is no longer usable: the broker will refuse this adapter.")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Puts a backup in place of the store (the adapter must be stopped): the backup is checked,
/// the current files are kept aside, never deleted, and the next start asks the hub to send
/// again what it sent since an hour before the newest message the backup holds — the adapter
/// keeps one copy of each message, so nothing arrives twice.
///
/// # Errors
/// A running adapter, a backup that is not a sound store, or a file that cannot be moved.
pub async fn restore(settings: &Settings, from: &std::path::Path) -> Result<String> {
    for addr in std::iter::once(settings.api.listen).chain(settings.api.probe_listen) {
        if std::net::TcpListener::bind(addr).is_err() {
            anyhow::bail!("{addr} is in use: the adapter seems to be running; stop it before restoring");
        }
    }
    let (outbox, inbox, newest) = store::check_backup(from).await?;
    let path = &settings.storage.path;
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut kept = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            let aside = std::path::PathBuf::from(format!("{}.before-restore-{stamp}{suffix}", path.display()));
            std::fs::rename(&file, &aside).with_context(|| format!("Failed to move {} aside", file.display()))?;
            kept.push(aside.display().to_string());
        }
    }
    std::fs::copy(from, path).with_context(|| format!("Failed to copy {} to {}", from.display(), path.display()))?;
    let newest = match newest {
        Some(t) => chrono::DateTime::parse_from_rfc3339(&t).context("inbox.received_at")?.with_timezone(&Utc),
        None => std::fs::metadata(from)?.modified().map(chrono::DateTime::<Utc>::from)?,
    };
    let since = newest - chrono::Duration::hours(1);
    let pool = store::open(path).await?;
    store::mark_replay(&pool, since).await?;
    pool.close().await;
    let aside =
        if kept.is_empty() { String::new() } else { format!("; the previous files are kept as {}", kept.join(", ")) };
    Ok(format!(
        "Restored {} ({outbox} outgoing, {inbox} incoming messages) to {}{aside}. At its next start the adapter asks the hub to send again what it sent since {since}.",
        from.display(),
        path.display()
    ))
}
