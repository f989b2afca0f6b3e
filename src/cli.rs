//! The `raftgate` command line: `serve` runs a node; `cluster …` manages
//! membership through a node's Admin API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::admin::Backend;
use crate::observe::status::NodeProbe;
use crate::settings::{load_or_create_secret, ServeArgs, Settings};
use crate::store::auth::ClusterSecret;
use crate::store::{Store, StoreConfig};

#[derive(Parser, Debug)]
#[command(
    name = "raftgate",
    version,
    about = "A Kong-compatible API gateway replicated over Raft"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Commands>,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Run one node.
    Serve(Box<ServeArgs>),
    /// Run a demo upstream that answers every request with JSON describing
    /// it (stands in for the seed's user-service and account-service).
    DemoUpstream {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "demo-service")]
        name: String,
    },
    /// Declarative config through any node: validate, apply, sync, diff, dump.
    Config {
        #[command(subcommand)]
        action: crate::cli_config::ConfigAction,
        #[command(flatten)]
        target: crate::cli_admin::AdminTarget,
    },
    /// Revoke JWTs on every node (by jti, token, consumer or credential).
    Revoke(crate::cli_revoke::RevokeArgs),
    /// Inspect or change the cluster's membership.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        #[command(flatten)]
        target: crate::cli_admin::AdminTarget,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// Nodes, roles, leader, term, indexes and lag.
    Status,
    /// Add a node (its cluster address) as voter, or learner.
    Join {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        address: String,
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the membership.
    Remove { node_id: u64 },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Commands::Serve(Box::default())) {
        Commands::Serve(args) => serve(Settings::resolve(&args)?).await,
        Commands::DemoUpstream { listen, name } => {
            crate::demo::serve_echo(listen, name).await?;
            Ok(())
        }
        Commands::Revoke(args) => crate::cli_revoke::run(args).await,
        Commands::Cluster { action, target } => crate::cli_admin::cluster(&target, action).await,
        Commands::Config { action, target } => {
            let code = crate::cli_config::run(&target, action).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}

struct StoreProbe(Store);

impl NodeProbe for StoreProbe {
    fn ready(&self) -> bool {
        self.0.is_ready()
    }
    fn cluster(&self) -> crate::observe::metrics::ClusterView {
        let r = self.0.raft_stats();
        let state = self.0.state();
        crate::observe::metrics::ClusterView {
            node_id: r.node_id,
            role: r.role,
            leader: r.leader,
            term: r.term,
            last_log_index: r.last_log_index,
            committed_index: r.committed_index,
            last_applied_index: r.last_applied_index,
            replication_lag: r.replication_lag,
            snapshot_index: r.snapshot_index,
            snapshot_size_bytes: r.snapshot_size_bytes,
            config_version: state.version(),
            revocations: state.iter(crate::model::EntityKind::JwtRevocation).count() as u64,
        }
    }
    fn configuration_hash(&self) -> String {
        // Kong's is 32 hex digits; the state digest is equal on two nodes
        // exactly when they hold the same configuration.
        self.0.state_digest().chars().take(32).collect()
    }
}

/// Cluster-port path of rate-limit gossip.
const GOSSIP_PATH: &str = "/gossip/ratelimit";

/// Sends this node's rate-limit counters to the Raft members, whose list
/// follows every membership change.
fn spawn_gossip(store: &Store, limiter: Arc<crate::ratelimit::RateLimiter>) {
    let mut applied = store.applied();
    let members = |a: &crate::store::state_machine::Applied| -> Vec<(u64, String)> {
        a.membership
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect()
    };
    let me = limiter.node_id();
    let peer_ids = move |list: &[(u64, String)]| -> Vec<u64> {
        list.iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != me)
            .collect()
    };
    let first = members(&applied.borrow());
    crate::observe::metrics::gossip_peers(&peer_ids(&first));
    let (peers_tx, peers) = tokio::sync::watch::channel(first);
    tokio::spawn(async move {
        while applied.changed().await.is_ok() {
            let now = members(&applied.borrow_and_update());
            let changed = peers_tx.send_if_modified(|old| {
                let changed = *old != now;
                *old = now.clone();
                changed
            });
            if changed {
                crate::observe::metrics::gossip_peers(&peer_ids(&now));
            }
        }
    });
    let client = store.client().clone();
    let interval = Duration::from_millis(50);
    // The gossip loop names a peer by its address; the metrics by its id.
    let addresses = peers.clone();
    tokio::spawn(crate::ratelimit::run_gossip(
        limiter,
        interval,
        peers,
        move |addr, body| {
            let client = client.clone();
            let peer = addresses
                .borrow()
                .iter()
                .find(|(_, a)| *a == addr)
                .map(|(id, _)| *id);
            let bytes = body.len() as u64;
            async move {
                let sent = client
                    .post(&addr, GOSSIP_PATH, body, Duration::from_secs(1))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                if let (Ok(()), Some(peer)) = (&sent, peer) {
                    crate::observe::metrics::gossip_sent(peer, bytes);
                }
                sent
            }
        },
    ));
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

/// Runs one node until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    crate::observe::metrics::use_naming(settings.metric_names);
    let secret = load_or_create_secret(&settings.cluster_secret_file)?;
    let store = Store::open(StoreConfig {
        node_id: settings.node_id,
        data_dir: settings.data_dir.clone(),
        advertise: settings.cluster_advertise.clone(),
        secret: ClusterSecret::new(&secret),
        initial_cluster: settings.initial_cluster.clone(),
        join: settings.join.clone(),
        learner: settings.learner,
        snapshot_every: settings.snapshot_every,
        source_ip: settings.cluster_source_ip,
    })
    .await
    .context("opening the store")?;

    let cluster = bind(settings.cluster_listen, "cluster").await?;
    let admin = bind(settings.admin_listen, "admin").await?;
    let status = bind(settings.status_listen, "status").await?;
    tracing::info!(
        node_id = settings.node_id,
        cluster = %settings.cluster_listen,
        admin = %settings.admin_listen,
        status = %settings.status_listen,
        proxy = %settings.proxy_listen,
        "raftgate node starting"
    );

    // Rate-limit counters: one limiter per node, gossiped to the Raft
    // members over the authenticated cluster port.
    let limiter = Arc::new(crate::ratelimit::RateLimiter::new(
        crate::ratelimit::LimiterConfig::new(settings.node_id),
    ));
    if !crate::ratelimit::install(limiter.clone()) {
        anyhow::bail!("a rate limiter was already installed in this process");
    }
    let gossip_in = limiter.clone();
    let extension: crate::store::server::Extension = Arc::new(move |path, body| {
        (path == GOSSIP_PATH).then(|| {
            gossip_in
                .receive(body, crate::ratelimit::now_ms())
                .map(crate::observe::metrics::gossip_received)
                .map_err(|e| e.to_string())
        })
    });
    tokio::spawn(crate::store::server::serve(
        store.clone(),
        cluster,
        Some(extension),
    ));
    spawn_gossip(&store, limiter);
    let bootstrap = store.clone();
    tokio::spawn(async move {
        if let Err(e) = bootstrap.bootstrap().await {
            tracing::error!(error = %e, "could not form or join the cluster");
        }
    });

    tokio::spawn(store.clone().run_catch_up());
    tokio::spawn(store.clone().run_revocation_purge(Duration::from_secs(60)));
    let probe: Arc<dyn NodeProbe> = Arc::new(StoreProbe(store.clone()));
    let access_log = crate::observe::access_log::AccessLog::open(&settings.access_log)
        .with_context(|| format!("opening the access log {:?}", settings.access_log))?;
    let server_counters = Arc::new(crate::observe::ServerCounters::default());
    let observer = Arc::new(crate::observe::Observer::new(
        access_log,
        server_counters.clone(),
    ));
    let listeners_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sources = crate::observe::status::StatusSources {
        probe,
        server: server_counters,
        listeners_up: listeners_up.clone(),
    };
    tokio::spawn(async move {
        let _ = axum::serve(status, crate::observe::status::router(sources)).await;
    });
    let mut admin_settings = crate::admin::AdminSettings::new(settings.node_id);
    if let Some(file) = &settings.admin_tokens_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        admin_settings.tokens =
            crate::admin::auth::parse_tokens(&text).map_err(anyhow::Error::msg)?;
    }
    admin_settings.require_tokens = crate::admin::auth::tokens_required_for(&settings.admin_listen);
    if admin_settings.require_tokens && admin_settings.tokens.is_empty() {
        anyhow::bail!(
            "the admin listener {} is not loopback: give admin tokens with --admin-tokens-file",
            settings.admin_listen
        );
    }
    let admin_router = crate::admin::router(store.clone(), admin_settings);
    tokio::spawn(async move {
        let _ = axum::serve(admin, admin_router).await;
    });

    // The data plane reads only the applied state, republished here.
    let mut applied = store.applied();
    let (states_tx, states) = tokio::sync::watch::channel(applied.borrow().state.clone());
    tokio::spawn(async move {
        while applied.changed().await.is_ok() {
            let state = applied.borrow_and_update().state.clone();
            states_tx.send_replace(state);
        }
    });
    let proxy_settings = crate::proxy::ProxySettings {
        listen: settings.proxy_listen,
        tls_listen: settings.proxy_tls_listen,
        trusted_ips: settings.trusted_ips.clone(),
        workers: settings.proxy_workers,
        ..Default::default()
    };
    let proxy = crate::proxy::Proxy::bind_observed(proxy_settings, states, observer)
        .await
        .with_context(|| format!("binding the proxy on {}", settings.proxy_listen))?;
    store.set_enforced_source(proxy.published_version());
    listeners_up.store(true, std::sync::atomic::Ordering::Release);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let proxy_task = tokio::spawn(proxy.run(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));

    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    let _ = proxy_task.await;
    tokio::time::timeout(Duration::from_secs(5), store.shutdown())
        .await
        .ok();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
