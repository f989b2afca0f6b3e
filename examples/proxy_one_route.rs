//! A raftgate proxy with one route `/` to one upstream and no plugins,
//! with no cluster behind it: for bench/proxy/run.sh until the node's CLI
//! can start the same thing.
//!
//! `proxy_one_route LISTEN_ADDR UPSTREAM_HOST:PORT`
//!
//! Connections are served by the proxy's worker threads, as on the node:
//! `PROXY_WORKERS` of them (default: one per core). The main runtime only
//! waits for Ctrl-C. The allocator is the node's (jemalloc,
//! `src/main.rs`), so that the bench measures what ships.

use std::sync::Arc;

use raftgate::model::{Command, Entity, EntityKind, Proposal, State};
use raftgate::proxy::{serve, workers, ProxySettings};
use serde_json::json;
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(proxy())
}

async fn proxy() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18000".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    let (host, port) = upstream.rsplit_once(':').expect("UPSTREAM as host:port");
    let service = Uuid::new_v4();
    let mut state = State::default();
    for (kind, value) in [
        (
            EntityKind::Service,
            json!({"id": service, "host": host, "port": port.parse::<u16>().expect("port")}),
        ),
        (
            EntityKind::Route,
            json!({"id": Uuid::new_v4(), "paths": ["/"], "service": {"id": service}}),
        ),
    ] {
        let entity = Entity::from_json(kind, value).expect("entity");
        state
            .apply(&Proposal {
                request_id: Uuid::new_v4(),
                command: Command::Create { entity },
            })
            .expect("apply");
    }
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(state));
    let workers = match std::env::var("PROXY_WORKERS") {
        Ok(n) => n.parse().expect("PROXY_WORKERS as a number"),
        Err(_) => workers::default_count(),
    };
    let settings = ProxySettings {
        listen: listen.parse().expect("LISTEN_ADDR"),
        tls_listen: None,
        workers,
        ..ProxySettings::default()
    };
    serve(settings, rx, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
