//! Admitting parties to the exchange and cutting them off: the broker topology, one confined
//! broker user per province, the certificate registry and the broker's trust store.
//!
//! A province's broker user has no password (it logs in only with EXTERNAL, i.e. its
//! certificate) and may write only to the hub's inbound exchange, read only its own queue, and
//! configure nothing. The broker admits at TLS only certificates present in its trust-store
//! directory, so a revoked certificate stays out even after the province gets a new one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use certs::{CertInfo, Role, Validity};
use chrono::Utc;
use schemas::ids::ProvinceCode;
use tracing::info;

use crate::amqp::{self, names};
use crate::broker_admin::{Admin, Permissions};
use crate::config::Settings;
use crate::store;

/// What a province may do on the broker.
pub fn province_permissions(p: ProvinceCode) -> Permissions {
    Permissions {
        configure: "^$".to_owned(),
        write: format!("^{}$", regex_escape(names::INBOUND_EXCHANGE)),
        read: format!("^{}$", regex_escape(&names::province_queue(p))),
    }
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '-' { vec![c] } else { vec!['\\', c] }).collect()
}

fn admin(settings: &Settings) -> Result<(Admin, &crate::config::BrokerAdmin)> {
    let cfg = settings.broker.admin.as_ref().context("this command needs [broker.admin] in the settings")?;
    Ok((Admin::new(cfg)?, cfg))
}

/// Reads a certificate and checks that it is valid now and issued by the exchange CA.
fn admissible(settings: &Settings, cert: &Path) -> Result<CertInfo> {
    let info = CertInfo::read(cert).with_context(|| format!("Failed to read {}", cert.display()))?;
    let pki = settings.pki.as_ref().context("this command needs [pki] ca in the settings")?;
    let ca_pem = std::fs::read(&pki.ca).with_context(|| format!("Failed to read {}", pki.ca.display()))?;
    certs::verify_issued_by(&info, &ca_pem)
        .with_context(|| format!("{} is not issued by the exchange CA", cert.display()))?;
    match info.validity_at(Utc::now()) {
        Validity::Expired => bail!("{} expired on {}", cert.display(), info.not_after),
        Validity::NotYetValid => bail!("{} is not valid before {}", cert.display(), info.not_before),
        _ => {}
    }
    Ok(info)
}

/// Admits a certificate: registry, then the broker's trust store.
async fn admit(settings: &Settings, info: &CertInfo) -> Result<()> {
    let pool = store::pool(&settings.database)?;
    store::migrate(&pool).await?;
    let mut conn = pool.acquire().await?;
    store::certs::register(&mut conn, info).await?;
    let (_, cfg) = admin(settings)?;
    let path = cfg.trust_dir.join(format!("{}.pem", info.serial));
    std::fs::create_dir_all(&cfg.trust_dir).with_context(|| format!("Failed to create {}", cfg.trust_dir.display()))?;
    std::fs::write(&path, info.pem()).with_context(|| format!("Failed to write {}", path.display()))?;
    Ok(())
}

/// Sets up the vhost, the hub's own access and the topology; then admits each province
/// certificate given.
///
/// # Errors
/// When the broker, the database or a certificate is not as required.
pub async fn provision(settings: &Settings, province_certs: &[&Path]) -> Result<()> {
    let (admin, _) = admin(settings)?;
    let vhost = &settings.broker.vhost;
    admin.ensure_vhost(vhost).await?;
    admin.ensure_certificate_user("hub").await?;
    let all = Permissions { configure: ".*".into(), write: ".*".into(), read: ".*".into() };
    admin.set_permissions(vhost, "hub", &all).await?;
    let hub = admissible(settings, &settings.broker.cert)?;
    if hub.role != Role::Hub {
        bail!("broker.cert is a {} certificate, not the hub's", hub.role.unit());
    }
    admit(settings, &hub).await?;
    // The trust store picks new certificates up on its next refresh.
    let conn = connect_when_admitted(settings).await?;
    let ch = conn.create_channel().await?;
    amqp::declare_core(&ch, settings.broker.delivery_limit).await?;
    let _ = conn.close(200, "provisioned".into()).await;
    info!(%vhost, "Broker topology provisioned.");
    for cert in province_certs {
        add_province(settings, cert).await?;
    }
    Ok(())
}

async fn connect_when_admitted(settings: &Settings) -> Result<lapin::Connection> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match amqp::connect(&settings.broker, "hub-provision").await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = format!("{e:#}"), "Waiting for the broker to admit the hub's certificate.");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Admits a province: its certificate, its confined broker user, its queue.
///
/// # Errors
/// A certificate that is not a valid province certificate of the exchange CA, or a broker or
/// database failure.
pub async fn add_province(settings: &Settings, cert: &Path) -> Result<ProvinceCode> {
    let info = admissible(settings, cert)?;
    let Role::Province(p) = info.role else {
        bail!("{} is a {} certificate, not a province's", cert.display(), info.role.unit());
    };
    let (admin, _) = admin(settings)?;
    let user = names::province_user(p);
    admit(settings, &info).await?;
    admin.ensure_certificate_user(&user).await?;
    admin.set_permissions(&settings.broker.vhost, &user, &province_permissions(p)).await?;
    let conn = connect_when_admitted(settings).await?;
    let ch = conn.create_channel().await?;
    amqp::declare_core(&ch, settings.broker.delivery_limit).await?;
    amqp::declare_province(&ch, p, settings.broker.delivery_limit).await?;
    let _ = conn.close(200, "province added".into()).await;
    info!(province = p.code(), serial = %info.serial, not_after = %info.not_after, "Province admitted.");
    Ok(p)
}

/// The result of a revocation.
#[derive(Debug)]
pub struct Revoked {
    pub principal: String,
    /// Whether the principal lost its broker access (it had no other valid certificate).
    pub access_removed: bool,
    pub connections_closed: usize,
}

/// Revokes a certificate: the registry marks it, the broker's trust store drops it, and when
/// its holder has no other valid certificate its broker permissions go; its connections are
/// closed either way (a holder of another valid certificate simply reconnects).
///
/// # Errors
/// An unknown serial, or a broker or database failure.
pub async fn revoke(settings: &Settings, serial: &str, reason: &str) -> Result<Revoked> {
    let serial = serial.to_ascii_lowercase().replace(':', "");
    let pool = store::pool(&settings.database)?;
    let mut conn = pool.acquire().await?;
    let cert = store::certs::revoke(&mut conn, &serial, reason)
        .await?
        .with_context(|| format!("no registered certificate with serial {serial}"))?;
    let (admin, cfg) = admin(settings)?;
    let settle = Duration::from_millis(cfg.statistics_interval_ms.saturating_mul(3).max(2000));
    let path = cfg.trust_dir.join(format!("{serial}.pem"));
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("Failed to remove {}", path.display())),
    }
    let still_admitted = store::certs::is_admitted(&mut conn, &cert.principal).await?;
    if !still_admitted {
        admin.clear_permissions(&settings.broker.vhost, &cert.principal).await?;
    }
    let reason = format!("certificate {serial} revoked");
    let closed = close_all(&admin, &settings.broker.vhost, &cert.principal, &reason, settle).await?;
    info!(principal = %cert.principal, %serial, access_removed = !still_admitted, connections_closed = closed, "Certificate revoked.");
    Ok(Revoked { principal: cert.principal, access_removed: !still_admitted, connections_closed: closed })
}

/// The management API lists connections from statistics refreshed every few seconds, so a
/// connection opened just before the revocation may not be listed yet: keep closing what
/// appears until a full statistics period has shown nothing new.
async fn close_all(admin: &Admin, vhost: &str, user: &str, reason: &str, settle: Duration) -> Result<usize> {
    let mut closed = 0;
    let mut quiet_since = Instant::now();
    let started = Instant::now();
    while quiet_since.elapsed() < settle && started.elapsed() < settle * 5 {
        let n = admin.close_connections(vhost, user, reason).await?;
        if n > 0 {
            closed += n;
            quiet_since = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(closed)
}

/// Registers an operator's or the national office's certificate (registry only: these parties
/// use the operator API, not the broker).
///
/// # Errors
/// A certificate that is not valid, not of the exchange CA, or not of such a role.
pub async fn admit_person(settings: &Settings, cert: &Path) -> Result<CertInfo> {
    let info = admissible(settings, cert)?;
    if !matches!(info.role, Role::Operator(_) | Role::National(_)) {
        bail!(
            "{} is a {} certificate; only operators and the national office are admitted this way",
            cert.display(),
            info.role.unit()
        );
    }
    let pool = store::pool(&settings.database)?;
    store::migrate(&pool).await?;
    let mut conn = pool.acquire().await?;
    store::certs::register(&mut conn, &info).await?;
    Ok(info)
}
