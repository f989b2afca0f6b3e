//! The proxy's worker threads, nginx's model: each worker is a thread with
//! a current-thread runtime of its own that accepts on its own handle of
//! the listening sockets (the kernel gives each new connection to one of
//! the workers waiting) and serves its connections start to end there. A
//! request's tasks, timers and sockets never change threads, and no
//! scheduler steals work: a multi-thread runtime cost about 650 more
//! instructions per proxied request (3 % of all), in work-stealing queues
//! and cross-thread wake-ups. The rest of the node (Raft, the admin API,
//! gossip, health probes, config compiles) stays on the main runtime.
//!
//! Stopping: `stop` closes every worker's accept loops; each worker then
//! keeps serving its open connections until `finish` says the drain is
//! over, and drops its runtime (closing whatever is left) before it says
//! it has exited.

use std::net::TcpListener as StdListener;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

use super::{listener, Shared};

/// A worker started by `spawn`.
pub struct Worker {
    /// Resolves once the worker stopped accepting.
    pub accepting_ended: oneshot::Receiver<()>,
    /// Resolves once its runtime is gone (every connection closed).
    pub exited: oneshot::Receiver<()>,
}

/// The listening sockets, shared by the workers (each registers its own
/// handle with its runtime).
pub struct Listeners {
    pub http: StdListener,
    pub tls: Option<(StdListener, TlsAcceptor)>,
}

/// Starts worker `index`: its thread, its runtime, its accept loops.
pub fn spawn(
    index: usize,
    listeners: &Listeners,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    mut finish: watch::Receiver<bool>,
) -> std::io::Result<Worker> {
    let http = listeners.http.try_clone()?;
    let tls = match &listeners.tls {
        Some((l, acceptor)) => Some((l.try_clone()?, acceptor.clone())),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (accepting_tx, accepting_ended) = oneshot::channel();
    let (exited_tx, exited) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("proxy-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let mut sockets = vec![(http, None)];
                if let Some((l, acceptor)) = tls {
                    sockets.push((l, Some(acceptor)));
                }
                let mut loops = Vec::new();
                for (l, acceptor) in sockets {
                    match TcpListener::from_std(l) {
                        Ok(l) => loops.push(tokio::spawn(listener::accept_loop(
                            l,
                            acceptor,
                            shared.clone(),
                            stop.clone(),
                        ))),
                        Err(e) => tracing::error!(error = %e, "a proxy worker lost its listener"),
                    }
                }
                for l in loops {
                    let _ = l.await;
                }
                let _ = accepting_tx.send(());
                let _ = finish.wait_for(|done| *done).await;
            });
            drop(runtime);
            let _ = exited_tx.send(());
        })?;
    Ok(Worker {
        accepting_ended,
        exited,
    })
}

/// The default number of workers: one per core.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
