//! `adapter check`, and what `adapter run` checks before it starts: the province's certificate,
//! key and chain, the local API's TLS files, the store, and (unless offline) the broker — each
//! finding with its fix ([`certs::preflight`]).

use std::time::Duration;

use certs::preflight::{Expected, Report};

use crate::config::Settings;

/// Checks what can be checked without the network.
pub fn offline(settings: &Settings) -> Report {
    let mut report = Report::default();
    let expected = Expected::Province(settings.claimed_province().ok().flatten());
    let b = &settings.broker;
    if let Some(info) = certs::preflight::identity_files(&mut report, "broker.cert", &b.cert, &b.key, &b.ca, expected) {
        report.ok("identity", format!("{} ({})", info.role.common_name(), info.subject));
    }
    if let Some(tls) = &settings.api.tls {
        let fix = "point it at the CA of the provincial system's client certificates";
        certs::preflight::mutual_tls_files(&mut report, "api.tls", &tls.cert, &tls.key, &tls.client_ca, fix);
    }
    storage(&mut report, settings);
    report
}

fn storage(report: &mut Report, settings: &Settings) {
    let path = &settings.storage.path;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let probe = dir.join(format!(".adapter-check-{}", std::process::id()));
    let writable = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
    let _ = std::fs::remove_file(&probe);
    match writable {
        Ok(_) => report.ok("storage", format!("{} (directory writable)", path.display())),
        Err(e) => report.fail(
            "storage",
            format!("storage.path {}: cannot write in {}: {e}", path.display(), dir.display()),
            "create the directory, owned by the user the adapter runs as",
        ),
    }
}

/// Everything, the broker included (TLS, the EXTERNAL login, the vhost).
pub async fn online(settings: &Settings) -> Report {
    let mut report = offline(settings);
    let b = &settings.broker;
    let user = certs::CertInfo::read(&b.cert).map(|i| i.role.common_name()).unwrap_or_else(|_| "?".into());
    let identity = certs::amqp::Identity {
        url: &b.url,
        vhost: &b.vhost,
        ca: &b.ca,
        cert: &b.cert,
        key: &b.key,
        connection_name: "adapter-check",
    };
    certs::preflight::broker(&mut report, &identity, &user, Duration::from_secs(10)).await;
    report
}
