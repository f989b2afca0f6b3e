//! Accepting connections: the plain and TLS listeners, the connection
//! limit (beyond it a quick 503, never a hang), the server per connection
//! (our HTTP/1.1 server, `h1server`, which hands a connection opening with
//! HTTP/2's preface to hyper's HTTP/2 server; over TLS, ALPN's "h2" goes
//! to hyper's directly), the TLS handshake's time limit, and draining on
//! shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;

use super::h1server::{self, Ended};
use super::{errors, pipeline, ProxySettings, Shared};
use crate::observe::GaugeGuard;
use crate::plugins::Body;

/// What the pipeline knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub local_port: u16,
    pub tls: bool,
    /// The server name the TLS client asked for.
    pub sni: Option<String>,
    /// Requests seen on this connection.
    pub requests: AtomicUsize,
    /// The client's IP and the local port, formatted once for the
    /// forwarded headers of every request on the connection.
    pub ip_header: HeaderValue,
    pub port_header: HeaderValue,
}

impl ConnInfo {
    fn new(remote: SocketAddr, local_port: u16, tls: bool, sni: Option<String>) -> ConnInfo {
        let ip = remote.ip().to_string();
        ConnInfo {
            remote,
            local_port,
            tls,
            sni,
            requests: AtomicUsize::new(0),
            ip_header: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("")),
            port_header: HeaderValue::from(local_port),
        }
    }
}

/// hyper's HTTP/2 server settings (HTTP/1.1 is `h1server`'s).
pub fn http2_builder(limits: &ProxySettings) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(256);
    b
}

/// Accepts until `stop` turns true.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        shared
            .observer
            .server
            .accepted
            .fetch_add(1, Ordering::Relaxed);
        let permit = match shared.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tokio::spawn(refuse(stream, tls.is_none()));
                continue;
            }
        };
        let shared = shared.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_stream(stream, remote, tls, shared, stop, permit).await;
        });
    }
}

/// Over the connection limit: a short 503 on plain HTTP, a close on TLS.
async fn refuse(mut stream: TcpStream, plain: bool) {
    if plain {
        let answer = errors::raw_http1(
            StatusCode::SERVICE_UNAVAILABLE,
            errors::TOO_MANY_CONNECTIONS,
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
        let _ = stream.shutdown().await;
    }
}

async fn serve_stream(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let server = shared.observer.server.clone();
    server.handled.fetch_add(1, Ordering::Relaxed);
    let _active = GaugeGuard::enter(&server.active);
    let reading = Some(GaugeGuard::enter(&server.reading));
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    match tls {
        None => {
            let info = Arc::new(ConnInfo::new(remote, local_port, false, None));
            serve_http(stream, info, shared, stop, reading).await;
        }
        Some(acceptor) => {
            let timeout = shared.settings.header_read_timeout;
            let Ok(Ok(tls_stream)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await
            else {
                return;
            };
            drop(reading);
            let conn = tls_stream.get_ref().1;
            let sni = conn.server_name().map(str::to_string);
            let h2 = conn.alpn_protocol() == Some(b"h2");
            let info = Arc::new(ConnInfo::new(remote, local_port, true, sni));
            if h2 {
                serve_http2(tls_stream, info, shared, stop).await;
            } else {
                serve_http(tls_stream, info, shared, stop, None).await;
            }
        }
    }
}

/// Resolves once shutdown was asked for (at once if it already was).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// HTTP/1.1 on one connection, or HTTP/2 if it opens with the preface.
async fn serve_http<I>(
    io: I,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    reading: Option<GaugeGuard<'_>>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let ended = h1server::serve(io, info.clone(), shared.clone(), stop.clone(), reading).await;
    if let Ended::Http2(io) = ended {
        serve_http2(io, info, shared, stop).await;
    }
}

/// Serves HTTP/2 on one connection until it closes; on `stop`, finishes
/// the requests in flight and closes.
async fn serve_http2<I>(
    io: I,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let svc_shared = shared.clone();
    let svc_info = info.clone();
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        svc_info.requests.fetch_add(1, Ordering::Relaxed);
        // No body: an empty one, which boxes without allocating.
        let req = req.map(|body| -> Body {
            if http_body::Body::is_end_stream(&body) {
                crate::plugins::empty_body()
            } else {
                body.map_err(|e| Box::new(e) as _).boxed()
            }
        });
        let (shared, info) = (svc_shared.clone(), svc_info.clone());
        async move {
            let resp = pipeline::handle(&shared, &info, req, None).await;
            let resp = resp.into_response();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = shared.http2.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, remote = %info.remote, "connection ended with an error");
    }
}
