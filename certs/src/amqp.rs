//! Connecting to the broker with an exchange identity: AMQPS, the client certificate, and the
//! EXTERNAL mechanism. There is no other way in: a URL that carries a user name, a password or
//! another mechanism is refused here, because lapin would otherwise silently log in as
//! `guest` with PLAIN.
//!
//! A broker may be a cluster (集群): the URL setting then names several nodes, separated by
//! commas, and [`connect`] takes the first that answers. Each new connection starts one node
//! further on (from a place that differs between processes), so connections spread over the
//! nodes and a dead node costs one refused attempt, not an outage.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    /// `amqps://host:port` (optionally with a vhost path; `vhost` below wins), or several such
    /// URLs separated by commas: the nodes of one cluster.
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
    #[error("{node}: no answer within {} s", .after.as_secs())]
    Timeout { node: String, after: Duration },
}

/// How long one node may take to accept a connection (TCP, TLS, AMQP) before the next is tried.
/// A node that is down refuses at once; one whose machine is gone is only found out by waiting.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(15);

/// The nodes a URL setting names: one URL, or several separated by commas.
pub fn nodes(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|n| !n.is_empty()).collect()
}

/// Checks a URL setting: at least one node, each a valid [`uri`].
///
/// # Errors
/// The first node that is not a valid `amqps://` URL, or none at all.
pub fn validate(url: &str, vhost: &str) -> Result<(), ConnectError> {
    let nodes = nodes(url);
    if nodes.is_empty() {
        return Err(ConnectError::Url("no broker URL given".into()));
    }
    for n in nodes {
        uri(n, vhost)?;
    }
    Ok(())
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

/// Where the next connection of this process starts in the list of nodes.
static NEXT_NODE: AtomicUsize = AtomicUsize::new(0);

/// Connects once to one of the nodes, trying each at most once (from a rotating start).
/// Retrying is the caller's business (it knows whether it is starting up or riding out an
/// outage).
///
/// # Errors
/// Unreadable files, a bad URL, or every node refusing or unreachable. Of several failures the
/// one that waiting will not heal (a refused certificate, an unknown vhost) is returned, so
/// that a misconfiguration is not mistaken for an outage.
pub async fn connect(id: &Identity<'_>) -> Result<Connection, ConnectError> {
    validate(id.url, id.vhost)?;
    let nodes = nodes(id.url);
    // Offset by the process id: processes started together do not all begin with node 1.
    let start = NEXT_NODE.fetch_add(1, Ordering::Relaxed).wrapping_add(std::process::id() as usize);
    let mut failure = None;
    for i in 0..nodes.len() {
        let node = nodes[(start + i) % nodes.len()];
        match tokio::time::timeout(NODE_TIMEOUT, connect_node(id, node)).await {
            Ok(Ok(conn)) => {
                // The node, not the whole list: which node a connection took is what an
                // operator needs when one node misbehaves.
                if failure.is_some() {
                    tracing::info!(node, "Connected to another broker node.");
                } else {
                    tracing::info!(node, "Connected to the broker.");
                }
                return Ok(conn);
            }
            Ok(Err(e)) => {
                tracing::debug!(node, error = %e, "Broker node refused or unreachable.");
                if crate::preflight::classify(&e, "", id.vhost).permanent {
                    return Err(e);
                }
                failure = Some(e);
            }
            Err(_) => failure = Some(ConnectError::Timeout { node: node.to_owned(), after: NODE_TIMEOUT }),
        }
    }
    Err(failure.unwrap_or_else(|| ConnectError::Url("no broker URL given".into())))
}

/// Connects once to `node`, one `amqps://` URL.
///
/// # Errors
/// As [`connect`], for this node alone.
pub async fn connect_node(id: &Identity<'_>, node: &str) -> Result<Connection, ConnectError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| ConnectError::Io { path: p.display().to_string(), source });
    let ca = String::from_utf8_lossy(&read(id.ca)?).into_owned();
    let tls = OwnedTLSConfig {
        identity: Some(OwnedIdentity::PKCS8 { pem: read(id.cert)?, key: read(id.key)? }),
        cert_chain: Some(ca),
    };
    let uri = uri(node, id.vhost)?;
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

    #[test]
    fn a_cluster_is_a_comma_separated_list_of_nodes_each_checked() {
        assert_eq!(
            nodes("amqps://a:5671, amqps://b:5671,amqps://c:5671"),
            ["amqps://a:5671", "amqps://b:5671", "amqps://c:5671"]
        );
        assert_eq!(nodes("amqps://a:5671"), ["amqps://a:5671"]);
        validate("amqps://a:5671,amqps://b:5671", "v").unwrap();
        assert!(validate("amqps://a:5671,amqp://b:5672", "v").is_err(), "every node must be amqps://");
        assert!(validate("amqps://a:5671,amqps://u:p@b:5671", "v").is_err(), "no credentials on any node");
        assert!(validate(" , ", "v").is_err(), "no node at all");
    }
}
