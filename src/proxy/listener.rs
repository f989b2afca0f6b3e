//! Accepting connections: the plain and TLS listeners, the connection
//! limit (beyond it a quick 503, never a hang), the HTTP/1.1 + HTTP/2
//! server per connection (h2c by prior knowledge, h2 by ALPN), the limits
//! that protect the node (header size, header read timeout → 408), and
//! draining on shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;

use super::{errors, framing, pipeline, Shared};

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
    /// The number of the request whose head had both Content-Length and
    /// Transfer-Encoding (0: none), as the framing watch saw it.
    pub conflict: Arc<AtomicUsize>,
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
            conflict: Arc::default(),
        }
    }

    /// Whether the request being served is the one whose head had both
    /// Content-Length and Transfer-Encoding.
    pub fn conflicting_lengths(&self) -> bool {
        let n = self.conflict.load(Ordering::Relaxed);
        n != 0 && n == self.requests.load(Ordering::Relaxed)
    }
}

/// The per-connection HTTP server settings.
pub fn builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let limits = &shared.settings;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
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
    let _active = crate::observe::GaugeGuard::enter(&server.active);
    let reading = crate::observe::GaugeGuard::enter(&server.reading);
    let mut reading = Some(reading);
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let timeout = shared.settings.header_read_timeout;
    match tls {
        None => {
            // A second handle on the socket, to answer 408 after hyper
            // gave up on a client that never finished its headers.
            let (stream, raw) = match split_handle(stream) {
                Ok(pair) => pair,
                Err(_) => return,
            };
            // A client that sends nothing at all is dropped after the
            // header timeout too (hyper's timer starts with the first byte).
            let mut probe = [0u8; 1];
            match tokio::time::timeout(timeout, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    let _ = (&raw).write_all(&errors::raw_http1(
                        StatusCode::REQUEST_TIMEOUT,
                        "Request timeout",
                    ));
                    return;
                }
            }
            reading.take();
            let info = Arc::new(ConnInfo::new(remote, local_port, false, None));
            let timed_out = serve_http(stream, info.clone(), shared, stop).await;
            if timed_out && info.requests.load(Ordering::Relaxed) == 0 {
                let _ = (&raw).write_all(&errors::raw_http1(
                    StatusCode::REQUEST_TIMEOUT,
                    "Request timeout",
                ));
            }
        }
        Some(acceptor) => {
            let Ok(Ok(tls_stream)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await
            else {
                return;
            };
            reading.take();
            let sni = tls_stream.get_ref().1.server_name().map(str::to_string);
            let info = Arc::new(ConnInfo::new(remote, local_port, true, sni));
            serve_http(tls_stream, info, shared, stop).await;
        }
    }
}

/// Resolves once shutdown was asked for (at once if it already was).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn split_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let raw = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, raw))
}

/// Serves HTTP on one connection until it closes; on `stop`, finishes the
/// requests in flight and closes. Returns whether the connection ended on
/// a header read timeout.
async fn serve_http<I>(
    io: I,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let svc_info = info.clone();
    let service = service_fn(move |req| {
        svc_info.requests.fetch_add(1, Ordering::Relaxed);
        pipeline::handle(svc_shared.clone(), svc_info.clone(), req)
    });
    let io = framing::Watched::new(io, info.conflict.clone());
    let conn = shared
        .http
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => false,
        Err(e) => {
            let timed_out = e
                .downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_timeout());
            tracing::debug!(error = %e, remote = %info.remote, "connection ended with an error");
            timed_out
        }
    }
}
