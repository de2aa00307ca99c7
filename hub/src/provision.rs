//! Admitting parties to the exchange and cutting them off: the broker topology, one confined
//! broker user per province, the certificate registry and the revocation list (CRL).
//!
//! The broker admits a client only with a certificate the exchange CA signed (checked by
//! signature at TLS) that is not on the CRL published in `[pki] crl_dir`, read at every
//! handshake. A province's broker user has no password (it logs in only with EXTERNAL, i.e. its
//! certificate) and may write only to the hub's inbound exchange, read only its own queue, and
//! configure nothing. A revoked certificate stays out for good: the CRL only ever grows, and
//! no command admits a serial that the registry or the CRL lists as revoked.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use certs::crl::{self, Revocation};
use certs::{Ca, CertInfo, Role, Validity};
use chrono::Utc;
use schemas::ids::ProvinceCode;
use sqlx::PgConnection;
use tracing::info;

use crate::amqp::{self, names};
use crate::broker_admin::{Admin, Permissions};
use crate::config::{PkiSettings, Settings};
use crate::failpoint;
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

fn pki(settings: &Settings) -> Result<&PkiSettings> {
    settings.pki.as_ref().context("this command needs [pki] ca in the settings")
}

fn ca_der(pki: &PkiSettings) -> Result<Vec<u8>> {
    let pem = std::fs::read(&pki.ca).with_context(|| format!("Failed to read {}", pki.ca.display()))?;
    certs::der_of_pem(&pem).with_context(|| format!("{} is not a PEM certificate", pki.ca.display()))
}

/// Reads a certificate and checks that it may be admitted: issued by the exchange CA, valid
/// now, and never revoked (by the registry or the published CRL).
async fn admissible(settings: &Settings, conn: &mut PgConnection, cert: &Path) -> Result<CertInfo> {
    let info = CertInfo::read(cert).with_context(|| format!("Failed to read {}", cert.display()))?;
    let pki = pki(settings)?;
    let ca_pem = std::fs::read(&pki.ca).with_context(|| format!("Failed to read {}", pki.ca.display()))?;
    certs::verify_issued_by(&info, &ca_pem)
        .with_context(|| format!("{} is not issued by the exchange CA", cert.display()))?;
    match info.validity_at(Utc::now()) {
        Validity::Expired => bail!("{} expired on {}", cert.display(), info.not_after),
        Validity::NotYetValid => bail!("{} is not valid before {}", cert.display(), info.not_before),
        _ => {}
    }
    if let Some(r) = store::certs::get(conn, &info.serial).await?
        && let Some(at) = r.revoked_at
    {
        bail!(
            "certificate {} of {} was revoked on {at}: a revoked certificate is never admitted again; issue a new one",
            info.serial,
            r.principal
        );
    }
    if let Some(dir) = &pki.crl_dir
        && let Some(list) = crl::read_published(dir, &ca_der(pki)?)
            .with_context(|| format!("Failed to read the CRL in {}", dir.display()))?
        && list.lists(&info.serial)
    {
        bail!("certificate {} is on the exchange's revocation list: it is never admitted again", info.serial);
    }
    Ok(info)
}

async fn database(settings: &Settings) -> Result<sqlx::PgPool> {
    let pool = store::pool(&settings.database)?;
    store::migrate(&pool).await?;
    Ok(pool)
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
    let pool = database(settings).await?;
    let mut conn = pool.acquire().await?;
    let hub = admissible(settings, &mut conn, &settings.broker.cert).await?;
    if hub.role != Role::Hub {
        bail!("broker.cert is a {} certificate, not the hub's", hub.role.unit());
    }
    store::certs::register(&mut conn, &hub).await?;
    let broker = connect_when_admitted(settings).await?;
    let ch = broker.create_channel().await?;
    amqp::declare_core(&ch, settings.broker.delivery_limit).await?;
    let _ = broker.close(200, "provisioned".into()).await;
    info!(%vhost, "Broker topology provisioned.");
    for cert in province_certs {
        add_province(settings, cert).await?;
    }
    Ok(())
}

/// Permissions set through the management API apply at once; the retry rides out a broker
/// that is still starting.
async fn connect_when_admitted(settings: &Settings) -> Result<lapin::Connection> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut told = false;
    loop {
        match amqp::connect(&settings.broker, "hub-provision").await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                if !told {
                    info!(error = format!("{e:#}"), "Waiting (up to 20 s) for the broker to accept the hub…");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Admits a province: its certificate, its confined broker user, its queue.
///
/// # Errors
/// A certificate that is not a valid, unrevoked province certificate of the exchange CA, or a
/// broker or database failure.
pub async fn add_province(settings: &Settings, cert: &Path) -> Result<ProvinceCode> {
    let (admin, _) = admin(settings)?;
    let pool = database(settings).await?;
    let mut conn = pool.acquire().await?;
    let info = admissible(settings, &mut conn, cert).await?;
    let Role::Province(p) = info.role else {
        bail!("{} is a {} certificate, not a province's", cert.display(), info.role.unit());
    };
    let user = names::province_user(p);
    store::certs::register(&mut conn, &info).await?;
    admin.ensure_certificate_user(&user).await?;
    admin.set_permissions(&settings.broker.vhost, &user, &province_permissions(p)).await?;
    let broker = connect_when_admitted(settings).await?;
    let ch = broker.create_channel().await?;
    amqp::declare_core(&ch, settings.broker.delivery_limit).await?;
    amqp::declare_province(&ch, p, settings.broker.delivery_limit).await?;
    let _ = broker.close(200, "province added".into()).await;
    info!(province = p.code(), serial = %info.serial, not_after = %info.not_after, "Province admitted.");
    Ok(p)
}

/// Registers an operator's or the national office's certificate (registry only: these parties
/// use the operator API, not the broker).
///
/// # Errors
/// A certificate that is not valid, not of the exchange CA, revoked, or not of such a role.
pub async fn admit_person(settings: &Settings, cert: &Path) -> Result<CertInfo> {
    let pool = database(settings).await?;
    let mut conn = pool.acquire().await?;
    let info = admissible(settings, &mut conn, cert).await?;
    if !matches!(info.role, Role::Operator(_) | Role::National(_)) {
        bail!(
            "{} is a {} certificate; only operators and the national office are admitted this way",
            cert.display(),
            info.role.unit()
        );
    }
    store::certs::register(&mut conn, &info).await?;
    Ok(info)
}

/// The CA with its key, for signing the revocation list: from `ca_dir` (`ca.key` there) or
/// `[pki] ca_key`; checked to belong to the `[pki] ca` certificate.
///
/// # Errors
/// No key configured, or a key that is not the exchange CA's.
pub fn signing_ca(settings: &Settings, ca_dir: Option<&Path>) -> Result<Ca> {
    let pki = pki(settings)?;
    let key = match (ca_dir, &pki.ca_key) {
        (Some(dir), _) => dir.join("ca.key"),
        (None, Some(key)) => key.clone(),
        (None, None) => bail!("signing the revocation list needs the CA key: give --ca DIR or set [pki] ca_key"),
    };
    Ca::from_files(&pki.ca, &key)
        .with_context(|| format!("The CA key {} cannot sign for {}", key.display(), pki.ca.display()))
}

/// Publishes the CRL: what is listed already, plus every certificate the registry has revoked.
///
/// # Errors
/// No `[pki] crl_dir`, an unwritable directory, or a list that does not verify.
pub async fn publish_crl(settings: &Settings, ca: &Ca, conn: &mut PgConnection) -> Result<crl::Published> {
    let dir = crl_dir(settings)?;
    let revoked: Vec<Revocation> = store::certs::revoked(conn)
        .await?
        .into_iter()
        .map(|(serial, revoked_at)| Revocation { serial, revoked_at })
        .collect();
    crl::publish(dir, ca, &revoked, Utc::now())
        .with_context(|| format!("Failed to publish the CRL in {}", dir.display()))
}

fn crl_dir(settings: &Settings) -> Result<&Path> {
    pki(settings)?
        .crl_dir
        .as_deref()
        .context("revocation publishes the CRL the broker checks: set [pki] crl_dir (the broker's crl_cache directory)")
}

/// The result of a revocation.
#[derive(Debug)]
pub struct Revoked {
    pub principal: String,
    /// Whether the principal lost its broker access (it had no other valid certificate).
    pub access_removed: bool,
    pub connections_closed: usize,
    /// Serials on the published CRL.
    pub listed: usize,
}

/// Revokes a certificate so that it can never connect again: the CRL the broker checks lists
/// it (first: if anything later fails, the certificate is already out), the registry marks it,
/// the holder's broker permissions go when it has no other valid certificate, and its
/// connections are closed (a holder of another valid certificate simply reconnects).
///
/// Everything it needs is checked before anything changes; run again, it completes a
/// revocation that was interrupted, and changes nothing more in one that was complete.
///
/// # Errors
/// A missing prerequisite (CA key, CRL directory, management API, database), an unknown
/// serial, or a failure on the way (run it again).
pub async fn revoke(settings: &Settings, serial: &str, reason: &str, ca_dir: Option<&Path>) -> Result<Revoked> {
    let serial = crl::normalize_serial(serial);
    // --- Everything needed, checked before anything changes. ---
    let ca = signing_ca(settings, ca_dir)?;
    let dir = crl_dir(settings)?;
    probe_writable(dir)?;
    let (admin, cfg) = admin(settings)?;
    admin.connections(&settings.broker.vhost).await.context("The broker's management API must be reachable")?;
    let pool = store::pool(&settings.database)?;
    let mut conn = pool.acquire().await.context("The hub's database must be reachable")?;
    let cert = store::certs::get(&mut conn, &serial)
        .await?
        .with_context(|| format!("no registered certificate with serial {serial} (`hub certs list` shows them)"))?;

    // --- The broker refuses it from the next handshake on. ---
    let mut revoked: Vec<Revocation> = store::certs::revoked(&mut conn)
        .await?
        .into_iter()
        .map(|(serial, revoked_at)| Revocation { serial, revoked_at })
        .collect();
    revoked.push(Revocation { serial: serial.clone(), revoked_at: cert.revoked_at.unwrap_or_else(Utc::now) });
    let published = crl::publish(dir, &ca, &revoked, Utc::now())
        .with_context(|| format!("Failed to publish the CRL in {}", dir.display()))?;
    failpoint::pass(failpoint::REVOKE_AFTER_CRL);

    // --- The hub refuses its messages. ---
    store::certs::revoke(&mut conn, &serial, reason).await?;
    failpoint::pass(failpoint::REVOKE_AFTER_REGISTRY);

    // --- Its access and its open connections. ---
    let still_admitted = store::certs::is_admitted(&mut conn, &cert.principal).await?;
    if !still_admitted {
        admin.clear_permissions(&settings.broker.vhost, &cert.principal).await?;
    }
    let settle = Duration::from_millis(cfg.statistics_interval_ms.saturating_mul(3).max(2000));
    let why = format!("certificate {serial} revoked");
    let closed = close_all(&admin, &settings.broker.vhost, &cert.principal, &why, settle).await?;
    info!(principal = %cert.principal, %serial, access_removed = !still_admitted, connections_closed = closed, crl_entries = published.listed, "Certificate revoked.");
    Ok(Revoked {
        principal: cert.principal,
        access_removed: !still_admitted,
        connections_closed: closed,
        listed: published.listed,
    })
}

/// Fails unless a file can be created in `dir` (checked before a revocation changes anything).
fn probe_writable(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create the CRL directory {}", dir.display()))?;
    let probe = dir.join(format!(".probe.{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| format!("The CRL directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The management API lists connections from statistics refreshed every few seconds, so a
/// connection opened just before the revocation may not be listed yet: keep closing what
/// appears until a full statistics period has shown nothing new.
async fn close_all(admin: &Admin, vhost: &str, user: &str, reason: &str, settle: Duration) -> Result<usize> {
    let mut closed = 0;
    let mut quiet_since = Instant::now();
    let started = Instant::now();
    let mut told = Instant::now();
    info!(
        user,
        settle_secs = settle.as_secs(),
        "Closing the connections of {user} until the broker's statistics show none for {} s…",
        settle.as_secs()
    );
    while quiet_since.elapsed() < settle && started.elapsed() < settle * 5 {
        let n = admin.close_connections(vhost, user, reason).await?;
        if n > 0 {
            closed += n;
            quiet_since = Instant::now();
        }
        if told.elapsed() >= Duration::from_secs(5) {
            info!(user, closed, elapsed_secs = started.elapsed().as_secs(), "Still closing connections…");
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(closed)
}
