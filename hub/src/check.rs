//! `hub check`, and what `hub run` checks before it starts: the hub's certificate, key and
//! chain, the operator API's TLS files, the PKI paths, the calendar and the business rules, and
//! (unless offline) the database, its migrations, the broker and its management API — each
//! finding with its fix ([`certs::preflight`]).

use std::time::Duration;

use certs::preflight::{Expected, Problem, Report};

use crate::config::Settings;

/// Checks what can be checked without the network.
pub fn offline(settings: &Settings) -> Report {
    let mut report = Report::default();
    let b = &settings.broker;
    if certs::preflight::identity_files(&mut report, "broker.cert", &b.cert, &b.key, &b.ca, Expected::Hub).is_some() {
        report.ok("identity", "the hub (CN hub)");
    }
    if let Some(ops) = &settings.ops {
        let fix = "point it at the exchange CA (it issues the operators' certificates)";
        certs::preflight::mutual_tls_files(&mut report, "ops", &ops.cert, &ops.key, &ops.client_ca, fix);
    }
    if let Some(pki) = &settings.pki {
        if let Err(e) = std::fs::read(&pki.ca) {
            report.fail("pki", format!("pki.ca {}: {e}", pki.ca.display()), "point it at the exchange CA certificate");
        }
        if let Some(dir) = pki.crl_dir.as_ref().filter(|d| !d.is_dir()) {
            report.fail(
                "pki",
                format!("pki.crl_dir {} is not a directory", dir.display()),
                "create it where the broker reads its CRLs (ssl_options.crl_cache)",
            );
        }
    }
    match crate::rules::CaseRules::new(settings) {
        Ok(_) => report.ok("rules", "calendar and review rules read"),
        Err(e) => report.fail("rules", format!("{e:#}"), "correct the calendar file or the [cases] settings"),
    }
    report
}

/// Everything: the files, then the database, the broker and its management API.
pub async fn online(settings: &Settings) -> Report {
    let mut report = offline(settings);
    match crate::store::check(&settings.database).await {
        Ok((applied, 0)) => {
            report.ok("database", format!("reachable, {applied} migrations applied"));
        }
        Ok((applied, pending)) => report.warn(
            "database",
            format!(
                "reachable, {applied} migrations applied, {pending} pending: `hub migrate` (or `hub run`) applies them"
            ),
        ),
        Err(p) => report.fail("database", p.why, p.fix),
    }
    let b = &settings.broker;
    let identity = certs::amqp::Identity {
        url: &b.url,
        vhost: &b.vhost,
        ca: &b.ca,
        cert: &b.cert,
        key: &b.key,
        connection_name: "hub-check",
    };
    certs::preflight::broker(&mut report, &identity, "hub", Duration::from_secs(10)).await;
    if let Some(admin) = &b.admin {
        let answer = match crate::broker_admin::Admin::new(admin) {
            Ok(a) => a.whoami().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(()) => report.ok("broker admin", format!("{} as {}", admin.url, admin.user)),
            Err(e) => report.fail(
                "broker admin",
                format!("{e:#}"),
                "check broker.admin.url, user and password (HUB_BROKER__ADMIN__PASSWORD_FILE)",
            ),
        }
    }
    report
}

/// Whether a broker failure at start-up is worth waiting for.
pub fn broker_problem(e: &anyhow::Error, vhost: &str) -> Problem {
    match e.chain().find_map(|c| c.downcast_ref::<certs::amqp::ConnectError>()) {
        Some(c) => certs::preflight::classify(c, "hub", vhost),
        None => Problem { permanent: false, why: format!("{e:#}"), fix: "retried".into() },
    }
}
