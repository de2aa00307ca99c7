//! Serving the exchange's HTTP surfaces (the hub's operator API, the adapter's local API) with
//! every resource a client can hold bounded: a cap on open connections, a deadline for the TLS
//! handshake, for each request's head, and for a connection that does nothing. Over the cap a
//! connection is closed at once; an accept error (e.g. out of file descriptors) backs off
//! instead of spinning. With TLS, clients must present a certificate that the configured CA
//! signed; it is read and attached to each request as [`Peer`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::{CertError, CertInfo};

/// What one server allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// From accepting the connection to a completed TLS handshake.
    pub handshake_timeout: Duration,
    /// For the head (request line and headers) of each request, and for the first request of a
    /// connection to begin.
    pub header_timeout: Duration,
    /// A connection with no request in progress and no byte moved for this long is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// Limits from configured numbers (deadlines in seconds), checked: a cap of at least one, a
    /// deadline between zero and a day. `what` names the settings' table in the error.
    ///
    /// # Errors
    /// The setting that is out of range, named.
    pub fn from_settings(
        what: &str,
        max_connections: usize,
        [handshake, header, idle]: [f64; 3],
    ) -> Result<Limits, String> {
        let secs = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v < 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!("{what} {name}: {v} is not a number of seconds between 0 and a day"))
            }
        };
        if max_connections == 0 {
            return Err(format!("{what} max_connections must be at least 1"));
        }
        Ok(Limits {
            max_connections,
            handshake_timeout: secs("handshake_timeout_secs", handshake)?,
            header_timeout: secs("header_timeout_secs", header)?,
            idle_timeout: secs("idle_timeout_secs", idle)?,
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The authenticated client of a request: its certificate, verified by rustls against the
/// configured CA (by signature) and read with x509-parser.
#[derive(Debug, Clone)]
pub struct Peer(pub CertInfo);

/// A TLS server configuration: this server's certificate, and client certificates required and
/// verified against `client_ca`.
///
/// # Errors
/// Unreadable or invalid files.
pub fn tls_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<ServerConfig, CertError> {
    let read_err = |p: &Path, e: String| CertError::Pem(format!("{}: {e}", p.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(cert, e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(client_ca).map_err(|e| read_err(client_ca, e.to_string()))? {
        roots
            .add(ca.map_err(|e| read_err(client_ca, e.to_string()))?)
            .map_err(|e| read_err(client_ca, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| read_err(client_ca, e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Pem(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| read_err(cert, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Open connections, for metrics and tests.
#[derive(Debug, Default)]
pub struct Gauges {
    pub open: AtomicUsize,
    /// Connections closed on arrival because the cap was reached.
    pub refused: AtomicU64,
    /// Connections closed by a deadline (handshake, head, idle).
    pub timed_out: AtomicU64,
}

/// Serves `app` on `listener` until `stop` turns true; with `tls`, over TLS with client
/// certificates.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    limits: Limits,
    gauges: Arc<Gauges>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_errors = 0u32;
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => {
                accept_errors = 0;
                a
            }
            Err(e) => {
                // EMFILE and friends: retrying at once would spin; wait, longer each time.
                accept_errors = accept_errors.saturating_add(1);
                let delay = Duration::from_millis(5u64 << accept_errors.min(8)).min(Duration::from_secs(1));
                warn!(error = %e, retry_in = ?delay, "Accept failed; backing off.");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            gauges.refused.fetch_add(1, Ordering::Relaxed);
            if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                warn!(limit = limits.max_connections, "Connection limit reached; closing new connections.");
                last_refusal_log = Some(Instant::now());
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, gauges, stop) = (acceptor.clone(), app.clone(), gauges.clone(), stop.clone());
        tokio::spawn(async move {
            gauges.open.fetch_add(1, Ordering::Relaxed);
            match acceptor {
                None => connection(tcp, None, app, limits, &gauges, stop).await,
                Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let peer = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|der| CertInfo::parse_der(der).ok())
                            .map(Peer);
                        connection(stream, peer, app, limits, &gauges, stop).await;
                    }
                    Ok(Err(e)) => debug!(%remote, error = %e, "TLS handshake refused."),
                    Err(_) => {
                        gauges.timed_out.fetch_add(1, Ordering::Relaxed);
                        debug!(%remote, "TLS handshake timed out.");
                    }
                },
            }
            gauges.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// One connection's life: HTTP/1 or HTTP/2 until the client leaves, a deadline passes, or the
/// server stops.
async fn connection<S>(
    io: S,
    peer: Option<Peer>,
    app: Router,
    limits: Limits,
    gauges: &Gauges,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let io = Watched { inner: io, activity: activity.clone() };
    let in_flight = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let opened = Instant::now();
    let service = {
        let (in_flight, requests) = (in_flight.clone(), requests.clone());
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(p) = &peer {
                req.extensions_mut().insert(p.clone());
            }
            requests.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight::enter(in_flight.clone());
            let app = app.clone();
            async move {
                let response = app.oneshot(req.map(axum::body::Body::new)).await;
                drop(guard);
                response
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    let timeout = e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout);
                    if timeout {
                        gauges.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    debug!(error = %e, "Connection ended.");
                }
                return;
            }
            _ = tokio::time::sleep(tick) => {
                if let Some(since) = closing {
                    // A client that does not finish within the grace period is cut off.
                    if since.elapsed() > limits.header_timeout {
                        return;
                    }
                } else if requests.load(Ordering::Relaxed) == 0 && opened.elapsed() > limits.header_timeout {
                    // No request has even begun (the protocol is read first, before HTTP/1's
                    // own head deadline applies): a connection held open for nothing.
                    gauges.timed_out.fetch_add(1, Ordering::Relaxed);
                    return;
                } else if in_flight.load(Ordering::Relaxed) == 0 && activity.idle_for() > limits.idle_timeout {
                    gauges.timed_out.fetch_add(1, Ordering::Relaxed);
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
            _ = stop.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
        }
    }
}

/// When bytes last moved on a connection.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { start: Instant::now(), last: AtomicU64::new(0) }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// Counts requests being handled on a connection while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records when bytes move through it.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Turns the web framework's own refusals (plain text: an unreadable path or query, a body over
/// the limit, an unknown route) into the exchange's typed error body, `{code, messageZh,
/// messageEn, offendingMessageId, detail}`, so that every refusal a client meets is documented.
pub async fn typed_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use schemas::ErrorCode;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::Malformed,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::Unexpected,
        s if s.is_server_error() => ErrorCode::Unavailable,
        _ => ErrorCode::Schema,
    };
    let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let detail = if text.trim().is_empty() { status.to_string() } else { text.trim().to_owned() };
    let report = schemas::messages::ErrorReport::new(code, None, Some(&detail));
    (status, axum::Json(report)).into_response()
}

/// The access log: one line per request — method, path (never the query: it may carry a
/// student's identifiers), status, milliseconds. Probes and scrapes (`/healthz`, `/readyz`,
/// `/metrics`) at DEBUG, everything else at INFO.
pub async fn access_log(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(%method, %path, status, ms, "HTTP request.");
    } else {
        info!(%method, %path, status, ms, "HTTP request.");
    }
    response
}

/// Logs where a server listens.
pub fn announce(what: &str, listener: &TcpListener, tls: bool, limits: &Limits) {
    if let Ok(addr) = listener.local_addr() {
        info!(
            address = %addr,
            tls,
            max_connections = limits.max_connections,
            idle_timeout_secs = limits.idle_timeout.as_secs(),
            "{what} listening."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (std::net::SocketAddr, Arc<Gauges>, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let gauges = Arc::new(Gauges::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(serve(listener, None, app, limits, gauges.clone(), stop_rx));
        (addr, gauges, stop_tx)
    }

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Whether the server closes `s` within `within` (EOF or reset on read).
    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(within, s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_by_the_head_deadline_and_others_are_served() {
        let limits = Limits { header_timeout: Duration::from_millis(300), ..Limits::default() };
        let (addr, gauges, _stop) = start(limits).await;
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(get(addr).await.ends_with("ok"), "served while another connection idles");
        assert!(closed_within(&mut silent, Duration::from_secs(3)).await, "the silent connection stays open");
        assert!(gauges.timed_out.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let limits = Limits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _gauges, _stop) = start(limits).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
        assert!(closed_within(&mut s, Duration::from_secs(3)).await, "the idle keep-alive connection stays open");
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_on_arrival() {
        let limits = Limits { max_connections: 2, ..Limits::default() };
        let (addr, gauges, _stop) = start(limits).await;
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut c, Duration::from_secs(3)).await, "a third connection is kept");
        assert_eq!(gauges.refused.load(Ordering::Relaxed), 1);
        assert!(gauges.open.load(Ordering::Relaxed) <= 2);
    }
}
