//! The data plane: listeners, the request pipeline, forwarding, upstream
//! balancing, health checks and TLS. It reads only the `State` published
//! on a watch channel: each new state is compiled once into a `Snapshot`
//! (router, plugin chains, balancers, certificates) and swapped in with
//! arc-swap; a request loads one `Arc` and never waits on anything else.
//!
//! `Proxy::bind` then `Proxy::run` (or `serve`, both in one) is what the
//! node's main calls; connections are served on the proxy's own worker
//! threads (`workers`).

pub mod aggregate;
pub mod balancer;
pub mod connector;
pub mod errors;
pub mod forward;
pub mod grpc;
pub mod h1;
pub mod h1body;
pub mod h1incoming;
pub mod h1parse;
pub mod h1server;
pub mod health;
pub mod listener;
pub mod passthrough;
pub mod peek;
pub mod pipeline;
pub mod pool;
pub mod realip;
pub mod rewind;
pub mod snapshot;
pub mod tls;
pub mod websocket;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpSocket;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::model::State;
use snapshot::{Compiler, Snapshot};

/// Where the proxy listens and the limits that protect the node.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// Plain HTTP (HTTP/1.1 and h2c), Kong's 0.0.0.0:8000.
    pub listen: SocketAddr,
    /// TLS (HTTP/1.1 and h2 by ALPN), Kong's 0.0.0.0:8443; `None` = off.
    pub tls_listen: Option<SocketAddr>,
    /// Largest request head (request line + headers); beyond: 431.
    pub max_header_bytes: usize,
    /// Time a client has to send its request head; beyond: 408.
    pub header_read_timeout: Duration,
    /// Connections served at once; beyond: 503 and close.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_grace: Duration,
    /// Peers whose `X-Forwarded-For` names the client (Kong's
    /// `trusted_ips`); none by default.
    pub trusted_ips: realip::TrustedIps,
    /// Worker threads serving connections (`workers`); one per core by
    /// default.
    pub workers: usize,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            tls_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8443))),
            max_header_bytes: 32 * 1024,
            header_read_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            drain_grace: Duration::from_secs(10),
            trusted_ips: realip::TrustedIps::default(),
            workers: workers::default_count(),
        }
    }
}

/// What every connection task shares.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub settings: ProxySettings,
    pub connections: Arc<Semaphore>,
    /// hyper's HTTP/2 server (h2c by prior knowledge, h2 by ALPN).
    pub http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// Access log and connection counters (observe).
    pub observer: Arc<crate::observe::Observer>,
    compiler: Compiler,
    certs: Arc<tls::Resolver>,
    /// `State::version` of the snapshot being served, set once it is.
    published_version: Arc<std::sync::atomic::AtomicU64>,
}

impl Shared {
    /// Compiles and publishes `state` (router, plugins, balancers, certs).
    fn publish(&self, state: &State) {
        let snapshot = crate::blocking::cpu_bound(|| self.compiler.compile(state));
        self.certs
            .index
            .store(Arc::new(tls::CertIndex::compile(state)));
        tracing::debug!(
            version = snapshot.version,
            routes = snapshot.router.len(),
            "config published"
        );
        self.snapshot.store(Arc::new(snapshot));
        self.published_version
            .store(state.version(), std::sync::atomic::Ordering::Release);
    }
}

/// A bound, not yet running, proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: workers::Listeners,
    states: watch::Receiver<Arc<State>>,
}

/// A listening socket for the workers to share: SO_REUSEADDR, a backlog
/// of 1024 (what tokio's own bind asks for), non-blocking.
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// `max_connections`, kept within what a semaphore can count.
fn connection_limit(settings: &ProxySettings) -> u32 {
    settings
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Proxy {
    /// Binds the listeners and compiles the current state; no access log.
    pub async fn bind(
        settings: ProxySettings,
        states: watch::Receiver<Arc<State>>,
    ) -> std::io::Result<Proxy> {
        Self::bind_observed(settings, states, Arc::default()).await
    }

    /// `bind`, reporting requests and connections to `observer`.
    pub async fn bind_observed(
        settings: ProxySettings,
        mut states: watch::Receiver<Arc<State>>,
        observer: Arc<crate::observe::Observer>,
    ) -> std::io::Result<Proxy> {
        let certs = tls::resolver().map_err(io_error)?;
        let http = listen(settings.listen)?;
        let tls = match settings.tls_listen {
            Some(addr) => Some((
                listen(addr)?,
                TlsAcceptor::from(tls::server_config(certs.clone())),
            )),
            None => None,
        };
        let mut shared = Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            connections: Arc::new(Semaphore::new(connection_limit(&settings) as usize)),
            http2: hyper::server::conn::http2::Builder::new(TokioExecutor::new()),
            settings,
            observer,
            compiler: Compiler::default(),
            certs,
            published_version: Arc::default(),
        };
        shared.http2 = listener::http2_builder(&shared.settings);
        let current = states.borrow_and_update().clone();
        shared.publish(&current);
        Ok(Proxy {
            shared: Arc::new(shared),
            listeners: workers::Listeners { http, tls },
            states,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listeners
            .http
            .local_addr()
            .unwrap_or_else(|_| self.shared.settings.listen)
    }

    /// The `State::version` the proxy serves: requests see a state's
    /// entities (e.g. a revocation) once this has reached its version.
    pub fn published_version(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.shared.published_version.clone()
    }

    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .tls
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting, lets the
    /// requests in flight finish (up to the drain grace period) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Proxy {
            shared,
            listeners,
            mut states,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (finish_tx, finish_rx) = watch::channel(false);

        // A worker that cannot start stops those started before it (the
        // channels' senders go with this function).
        let mut running = Vec::new();
        for index in 0..shared.settings.workers.max(1) {
            let (stop, finish) = (stop_rx.clone(), finish_rx.clone());
            running.push(workers::spawn(
                index,
                &listeners,
                shared.clone(),
                stop,
                finish,
            )?);
        }
        drop(listeners);
        let watcher_shared = shared.clone();
        let watcher = tokio::spawn(async move {
            while states.changed().await.is_ok() {
                let state = states.borrow_and_update().clone();
                watcher_shared.publish(&state);
            }
        });

        shutdown.await;
        tracing::info!("proxy shutting down; draining in-flight requests");
        let _ = stop_tx.send(true);
        for w in &mut running {
            let _ = (&mut w.accepting_ended).await;
        }
        watcher.abort();
        // Every connection holds a permit; all back means all drained.
        let all = connection_limit(&shared.settings);
        let drained = tokio::time::timeout(
            shared.settings.drain_grace,
            shared.connections.acquire_many(all),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("drain grace period over; closing remaining connections");
        }
        let _ = finish_tx.send(true);
        for w in running {
            let _ = w.exited.await;
        }
        Ok(())
    }
}

/// Binds and runs the proxy until `shutdown` completes.
pub async fn serve(
    settings: ProxySettings,
    states: watch::Receiver<Arc<State>>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    Proxy::bind(settings, states).await?.run(shutdown).await
}
