//! Preflight: what a process checks before it runs, and how `hub check` and `adapter check`
//! report it — each finding named, with the fix. The same checks decide at start-up whether a
//! failure is permanent (the process stops with the finding) or transient (retried, logged at
//! WARN from the first failure).
//!
//! Identity files: the certificate parses, is of the expected role, is valid now, chains to the
//! exchange CA by signature, its key is the key of the certificate, and the key file is its
//! owner's only. The broker: TLS both ways and the EXTERNAL login with that certificate, and the
//! vhost. A broker error is classified by what it means ([`classify`]): a refused login or
//! certificate, or a missing vhost, does not heal by retrying; a refused connection does.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;

use crate::{CertInfo, Role, Validity};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    /// Works, but needs attention (e.g. a certificate that expires soon).
    Warn(String),
    Fail {
        why: String,
        fix: String,
    },
}

/// What was checked, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub lines: Vec<(&'static str, Outcome)>,
}

impl Report {
    pub fn ok(&mut self, check: &'static str, what: impl Into<String>) {
        self.lines.push((check, Outcome::Ok(what.into())));
    }

    pub fn warn(&mut self, check: &'static str, what: impl Into<String>) {
        self.lines.push((check, Outcome::Warn(what.into())));
    }

    pub fn fail(&mut self, check: &'static str, why: impl Into<String>, fix: impl Into<String>) {
        self.lines.push((check, Outcome::Fail { why: why.into(), fix: fix.into() }));
    }

    /// Whether nothing failed.
    pub fn passed(&self) -> bool {
        !self.lines.iter().any(|(_, o)| matches!(o, Outcome::Fail { .. }))
    }

    /// The failures, one per line with its fix: what a process that refuses to start says.
    pub fn failures(&self) -> String {
        self.lines
            .iter()
            .filter_map(|(check, o)| match o {
                Outcome::Fail { why, fix } => Some(format!("{check}: {why} (fix: {fix})")),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (check, outcome) in &self.lines {
            match outcome {
                Outcome::Ok(what) => writeln!(f, "ok    {check:<12} {what}")?,
                Outcome::Warn(what) => writeln!(f, "WARN  {check:<12} {what}")?,
                Outcome::Fail { why, fix } => writeln!(f, "FAIL  {check:<12} {why}\n      {:<12} fix: {fix}", "")?,
            }
        }
        Ok(())
    }
}

/// Whom a certificate must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Hub,
    /// Any province, or this one when configured.
    Province(Option<schemas::ids::ProvinceCode>),
    /// A server certificate (the operator API, an adapter's local API).
    Server,
}

impl Expected {
    fn admits(self, role: &Role) -> bool {
        match (self, role) {
            (Expected::Hub, Role::Hub) | (Expected::Server, Role::Server(_)) => true,
            (Expected::Province(want), Role::Province(p)) => want.is_none_or(|w| w == *p),
            _ => false,
        }
    }

    fn describe(self) -> String {
        match self {
            Expected::Hub => "the hub's (CN hub, OU hub)".into(),
            Expected::Province(Some(p)) => format!("province {}'s (CN prov-{})", p.code(), p.code()),
            Expected::Province(None) => "a province's (CN prov-NN)".into(),
            Expected::Server => "a server's (OU server)".into(),
        }
    }
}

/// What to make a new certificate with, for the fixes.
fn renew_hint(expected: Expected) -> &'static str {
    match expected {
        Expected::Hub => "make a request with `hub certs request --role hub` and have the exchange operator sign it",
        Expected::Province(_) => {
            "make a request with `adapter request --province NN` and have the exchange operator sign it (`hub certs sign`)"
        }
        Expected::Server => "make a request with `hub certs request --role server --name HOST` and sign it",
    }
}

/// Checks a certificate, its key and its chain to `ca`; `label` names them in the report
/// (e.g. `broker.cert`). Returns the certificate when it is usable.
pub fn identity_files(
    report: &mut Report,
    label: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
    expected: Expected,
) -> Option<CertInfo> {
    let info = match CertInfo::read(cert) {
        Ok(info) => info,
        Err(e) => {
            report.fail(
                "certificate",
                format!("{label} {}: {e}", cert.display()),
                "point it at the PEM certificate the exchange CA signed for this party",
            );
            return None;
        }
    };
    if !expected.admits(&info.role) {
        report.fail(
            "role",
            format!(
                "{label} {} is {} ({}), but this needs {}",
                cert.display(),
                info.role.common_name(),
                info.role.unit(),
                expected.describe()
            ),
            format!("use {} certificate; {}", expected.describe(), renew_hint(expected)),
        );
        return None;
    }
    match info.validity_at(Utc::now()) {
        Validity::Expired => {
            report.fail("validity", format!("{label} expired on {}", info.not_after), renew_hint(expected));
        }
        Validity::NotYetValid => report.fail(
            "validity",
            format!("{label} is valid only from {}", info.not_before),
            "check this machine's clock, or wait until then",
        ),
        Validity::ExpiresSoon { days_left } => {
            report.warn("validity", format!("{label} expires in {days_left} days ({}): renew it", info.not_after));
        }
        Validity::Valid { days_left } => {
            report.ok("validity", format!("{label} valid until {} ({days_left} days)", info.not_after));
        }
    }
    match std::fs::read(ca) {
        Err(e) => {
            report.fail("chain", format!("{}: {e}", ca.display()), "point it at the exchange CA certificate (ca.pem)")
        }
        Ok(ca_pem) => match crate::verify_issued_by(&info, &ca_pem) {
            Ok(()) => report.ok("chain", format!("{label} is signed by the CA in {}", ca.display())),
            Err(e) => report.fail(
                "chain",
                format!("{label} is not signed by the CA in {}: {e}", ca.display()),
                "use the certificate the exchange CA signed, and the exchange CA's ca.pem",
            ),
        },
    }
    key_matches(report, label, &info, key);
    // Everything this party sends is signed with this key.
    #[cfg(feature = "sign")]
    if let Err(e) = crate::signature::Signer::load(cert, key) {
        report.fail(
            "signing",
            format!("{label}: messages cannot be signed with {}: {e}", key.display()),
            "use the certificate's own key, of a type the exchange signs with (EC P-256 or P-384, RSA, Ed25519)",
        );
    }
    match crate::files::key_exposure(key) {
        Some(why) => {
            report.fail("key file", why, format!("chmod 600 {}, owned by the user the service runs as", key.display()))
        }
        None if key.exists() => report.ok("key file", format!("{} is its owner's only", key.display())),
        None => {}
    }
    Some(info)
}

/// A server that asks its clients for certificates: its own files ([`server_files`]) and the
/// CA of its clients' certificates, readable. `table` names the settings (`ops`, `api.tls`);
/// `fix` says which CA it must be.
pub fn mutual_tls_files(
    report: &mut Report,
    table: &'static str,
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    fix: &str,
) {
    server_files(report, &format!("{table}.cert"), cert, key);
    if let Err(e) = std::fs::read(client_ca) {
        report.fail(table, format!("{table}.client_ca {}: {e}", client_ca.display()), fix);
    }
}

/// A TLS server's certificate and key (any subject: a local API's certificate may come from the
/// provincial system's own CA): both readable, the key the certificate's, the key file private.
pub fn server_files(report: &mut Report, label: &str, cert: &Path, key: &Path) {
    let der = std::fs::read(cert).ok().and_then(|pem| {
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
        (block.label == "CERTIFICATE").then_some(block.contents)
    });
    let Some(der) = der else {
        report.fail(
            "certificate",
            format!("{label} {}: not a readable PEM certificate", cert.display()),
            "point it at the server's PEM certificate",
        );
        return;
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, c)) => {
            let spki = c.public_key().raw.to_vec();
            check_key(report, label, &spki, key, &c.subject().to_string());
        }
        Err(e) => report.fail(
            "certificate",
            format!("{label} {}: {e}", cert.display()),
            "point it at the server's PEM certificate",
        ),
    }
    if let Some(why) = crate::files::key_exposure(key) {
        report.fail("key file", why, format!("chmod 600 {}, owned by the user the service runs as", key.display()));
    }
}

/// Whether `key` holds the private half of `info`'s public key.
fn key_matches(report: &mut Report, label: &str, info: &CertInfo, key: &Path) {
    let spki =
        x509_parser::parse_x509_certificate(&info.der).map(|(_, c)| c.public_key().raw.to_vec()).unwrap_or_default();
    check_key(report, label, &spki, key, &info.role.common_name());
}

fn check_key(report: &mut Report, label: &str, spki: &[u8], key: &Path, subject: &str) {
    let pem = match std::fs::read_to_string(key) {
        Ok(p) => p,
        Err(e) => {
            report.fail("key", format!("{}: {e}", key.display()), "point it at this certificate's private key (PEM)");
            return;
        }
    };
    let pair = match rcgen::KeyPair::from_pem(&pem) {
        Ok(k) => k,
        Err(e) => {
            report.fail(
                "key",
                format!("{} is not a PEM private key: {e}", key.display()),
                "use the .key file made with the request",
            );
            return;
        }
    };
    if rcgen::PublicKeyData::subject_public_key_info(&pair) == spki {
        report.ok("key", format!("{} is the key of {label}", key.display()));
    } else {
        report.fail(
            "key",
            format!("{} is not the key of {label} ({subject})", key.display()),
            "use the key the certificate request was made with (the .key beside the .csr), or the certificate issued for this key",
        );
    }
}

/// Why the broker could not be reached or refused us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Does not heal by waiting: stop and fix.
    pub permanent: bool,
    pub why: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (fix: {})", self.why, self.fix)
    }
}

/// What a connection failure means, for `user` (the certificate's CN) and `vhost`.
pub fn classify(e: &crate::amqp::ConnectError, user: &str, vhost: &str) -> Problem {
    use crate::amqp::ConnectError;
    use lapin::ErrorKind;
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    let permanent = |why: String, fix: &str| Problem { permanent: true, why, fix: fix.to_owned() };
    match e {
        ConnectError::Url(why) => permanent(format!("broker URL: {why}"), "use amqps://host:port, without credentials"),
        ConnectError::Io { path, source } => {
            permanent(format!("{path}: {source}"), "point the setting at a readable PEM file")
        }
        ConnectError::Timeout { .. } => transient(e.to_string()),
        ConnectError::Amqp(err) => {
            let text = err.to_string();
            match err.kind() {
                ErrorKind::ProtocolError(amqp) => match amqp.kind() {
                    AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => permanent(
                        format!("the broker refused the login of {user}: {}", amqp.get_message()),
                        "admit the certificate: `hub broker add-province --cert …` for a province, `hub broker provision` for the hub",
                    ),
                    AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => permanent(
                        format!(
                            "{user} may not use vhost {vhost}: it does not exist, or the certificate is not admitted to it ({})",
                            amqp.get_message()
                        ),
                        "`hub broker provision` creates the vhost and admits the hub; `hub broker add-province --cert …` admits a province",
                    ),
                    _ => transient(text),
                },
                ErrorKind::IOError(io) => tls_or_network(io, &text, user),
                _ => transient(text),
            }
        }
    }
}

fn tls_or_network(io: &std::io::Error, text: &str, user: &str) -> Problem {
    let inner = io.get_ref().map(|e| e.to_string()).unwrap_or_default();
    let all = format!("{text} {inner}");
    let has = |s: &str| all.contains(s);
    if has("invalid peer certificate") {
        Problem {
            permanent: true,
            why: format!("the broker's server certificate is not trusted: {all}"),
            fix: "broker.ca must be the CA that signed the broker's server certificate (the exchange CA), and the URL's host a name the server certificate carries".into(),
        }
    } else if has("CertificateRevoked") {
        Problem {
            permanent: true,
            why: format!("the broker says the certificate of {user} is revoked"),
            fix: "have a new certificate issued (`hub certs sign`) and admitted".into(),
        }
    } else if has("BadCertificate")
        || has("UnknownCA")
        || has("DecryptError")
        || has("CertificateRequired")
        || has("AccessDenied")
        || has("certificate") && has("alert")
    {
        Problem {
            permanent: true,
            why: format!("the broker refused the certificate of {user}: {all}"),
            fix: "use a certificate signed by the exchange CA, with its own key, not revoked".into(),
        }
    } else {
        transient(all)
    }
}

fn transient(why: String) -> Problem {
    Problem {
        permanent: false,
        why: format!("broker unreachable: {why}"),
        fix: "is the broker running, and the port open from here? (retried)".into(),
    }
}

/// Connects once with `identity` (TLS, EXTERNAL, the vhost), within `timeout`, to each node
/// the URL names. A cluster passes while one node takes the login: a node that is down only
/// warns (the others carry the load), a node that refuses the certificate fails.
pub async fn broker(report: &mut Report, identity: &crate::amqp::Identity<'_>, user: &str, timeout: Duration) {
    let nodes = crate::amqp::nodes(identity.url);
    let (mut up, mut down) = (0, Vec::new());
    for node in &nodes {
        match tokio::time::timeout(timeout, crate::amqp::connect_node(identity, node)).await {
            Err(_) => down.push((
                node,
                Problem {
                    permanent: false,
                    why: format!("no answer from {node} within {} s", timeout.as_secs()),
                    fix: "is the broker running, and the port open from here?".into(),
                },
            )),
            Ok(Ok(conn)) => {
                up += 1;
                report.ok("broker", format!("{node} TLS and EXTERNAL login as {user}, vhost {}", identity.vhost));
                let _ = conn.close(200, "preflight".into()).await;
            }
            Ok(Err(e)) => down.push((node, classify(&e, user, identity.vhost))),
        }
    }
    for (node, p) in down {
        if up > 0 && !p.permanent {
            report.warn("broker", format!("{node} unreachable, the other nodes take its connections: {}", p.why));
        } else {
            report.fail("broker", p.why, p.fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, Profile};

    fn issue(dir: &Path, ca: &Ca, role: Role, stem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        ca.issue(&Profile::new(role, 30)).unwrap().write(dir, stem).unwrap();
        (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")))
    }

    #[test]
    fn each_broken_identity_is_named_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create("Exchange CA", 30).unwrap();
        ca.write(&dir.path().join("ca")).unwrap();
        let ca_pem = dir.path().join("ca/ca.pem");
        let p37 = schemas::ids::ProvinceCode::parse("37").unwrap();
        let (cert, key) = issue(dir.path(), &ca, Role::Province(p37), "prov-37");
        let check = |cert: &Path, key: &Path, ca: &Path, expected| {
            let mut r = Report::default();
            identity_files(&mut r, "broker.cert", cert, key, ca, expected);
            r
        };
        let good = check(&cert, &key, &ca_pem, Expected::Province(Some(p37)));
        assert!(good.passed(), "{good}");

        // Another certificate's key.
        let (_, other_key) = issue(dir.path(), &ca, Role::Province(p37), "other");
        let r = check(&cert, &other_key, &ca_pem, Expected::Province(None));
        assert!(!r.passed() && r.failures().contains("is not the key of broker.cert"), "{r}");
        // A province's certificate given to the hub.
        let r = check(&cert, &key, &ca_pem, Expected::Hub);
        assert!(r.failures().contains("prov-37") && r.failures().contains("hub"), "{r}");
        // Another province's.
        let r = check(&cert, &key, &ca_pem, Expected::Province(Some(schemas::ids::ProvinceCode::parse("44").unwrap())));
        assert!(!r.passed(), "{r}");
        // Signed by another CA with the same name: refused by signature.
        let rogue = Ca::create("Exchange CA", 30).unwrap();
        let (rogue_cert, rogue_key) = issue(dir.path(), &rogue, Role::Province(p37), "rogue");
        let r = check(&rogue_cert, &rogue_key, &ca_pem, Expected::Province(None));
        assert!(r.failures().contains("not signed by the CA"), "{r}");
        // A key others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let r = check(&cert, &key, &ca_pem, Expected::Province(None));
        assert!(r.failures().contains("chmod 600"), "{r}");
        // Missing files.
        let r = check(&dir.path().join("none.pem"), &key, &ca_pem, Expected::Province(None));
        assert!(r.failures().contains("none.pem"), "{r}");
    }
}
