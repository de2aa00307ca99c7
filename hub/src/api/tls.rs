//! Serving a router over HTTPS with client certificates: rustls verifies the chain against the
//! exchange CA; the peer's certificate is read (x509-parser) and attached to every request as
//! [`Peer`], for the handlers to authorize by role.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::{debug, info};

/// The authenticated client of a request.
#[derive(Debug, Clone)]
pub struct Peer(pub certs::CertInfo);

/// Builds the TLS configuration: our certificate, and client certificates required and
/// verified against `client_ca`.
///
/// # Errors
/// Unreadable or invalid files.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("Failed to read {}", cert.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("Failed to read {}", key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in
        CertificateDer::pem_file_iter(client_ca).with_context(|| format!("Failed to read {}", client_ca.display()))?
    {
        roots.add(ca?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TLS connections until `stop` turns true.
pub async fn serve(listener: TcpListener, config: ServerConfig, app: Router, mut stop: watch::Receiver<bool>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    if let Ok(addr) = listener.local_addr() {
        info!(address = %addr, "Operator API listening (HTTPS, client certificates).");
    }
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { debug!(error = %e, "Accept failed."); continue; }
            },
            _ = stop.changed() => return,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%remote, error = %e, "TLS handshake refused.");
                    return;
                }
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| certs::CertInfo::parse_der(der).ok())
                .map(Peer);
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                if let Some(p) = &peer {
                    req.extensions_mut().insert(p.clone());
                }
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await
            {
                debug!(%remote, error = %e, "Connection ended.");
            }
        });
    }
}
