//! Connecting to the broker with an exchange identity: AMQPS, the client certificate, and the
//! EXTERNAL mechanism. There is no other way in: a URL that carries a user name, a password or
//! another mechanism is refused here, because lapin would otherwise silently log in as
//! `guest` with PLAIN.

use std::path::Path;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    /// `amqps://host:port` (optionally with a vhost path; `vhost` below wins).
    pub url: &'a str,
    pub vhost: &'a str,
    /// PEM of the CA that issued the broker's server certificate.
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Shown in the broker's connection list.
    pub connection_name: &'a str,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("broker URL: {0}")]
    Url(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
}

/// Builds the AMQP URI: the given host and port, the vhost, EXTERNAL, a heartbeat.
///
/// # Errors
/// A URL that is not `amqps://`, or that carries credentials or a query.
pub fn uri(url: &str, vhost: &str) -> Result<String, ConnectError> {
    let parsed = url::Url::parse(url).map_err(|e| ConnectError::Url(e.to_string()))?;
    if parsed.scheme() != "amqps" {
        return Err(ConnectError::Url(format!("`{url}` is not amqps://: only TLS connections are allowed")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ConnectError::Url("credentials in the URL: the certificate is the only credential".into()));
    }
    if parsed.query().is_some() {
        return Err(ConnectError::Url("a query in the URL: the mechanism is always EXTERNAL".into()));
    }
    let host = parsed.host_str().ok_or_else(|| ConnectError::Url(format!("`{url}` has no host")))?;
    let port = parsed.port().unwrap_or(5671);
    let vhost: String = vhost
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("amqps://{host}:{port}/{vhost}?auth_mechanism=external&heartbeat=30"))
}

/// Connects once. Retrying is the caller's business (it knows whether it is starting up or
/// riding out an outage).
///
/// # Errors
/// Unreadable files, a bad URL, or the broker refusing TLS or the login.
pub async fn connect(id: &Identity<'_>) -> Result<Connection, ConnectError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| ConnectError::Io { path: p.display().to_string(), source });
    let ca = String::from_utf8_lossy(&read(id.ca)?).into_owned();
    let tls = OwnedTLSConfig {
        identity: Some(OwnedIdentity::PKCS8 { pem: read(id.cert)?, key: read(id.key)? }),
        cert_chain: Some(ca),
    };
    let uri = uri(id.url, id.vhost)?;
    let props = ConnectionProperties::default().with_connection_name(id.connection_name.into());
    let runtime = lapin::runtime::default_runtime()?;
    Ok(Connection::connect_with_config(&uri, props, tls, runtime).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_always_says_external_and_refuses_credentials() {
        assert_eq!(
            uri("amqps://localhost:5681", "t 1").unwrap(),
            "amqps://localhost:5681/t%201?auth_mechanism=external&heartbeat=30"
        );
        assert!(uri("amqp://localhost:5672", "x").is_err());
        assert!(uri("amqps://guest:guest@localhost", "x").is_err());
        assert!(uri("amqps://localhost?auth_mechanism=plain", "x").is_err());
    }
}
