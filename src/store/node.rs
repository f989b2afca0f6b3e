//! `Store`: one node's handle on the replicated store. It opens sled,
//! starts openraft, forms or joins the cluster, and offers what the rest of
//! the node needs: write a command from any node (forwarded to the leader),
//! read the applied state, linearizable reads, membership changes and the
//! cluster's view.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ReadPolicy, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use super::auth::ClusterSecret;
use super::client::{CallError, ClusterClient};
use super::log_store::LogStore;
use super::network::Network;
use super::state_machine::{Applied, StateMachine};
use super::types::{ApplyResult, Node, NodeId, Raft};
use crate::admin::{Backend, WriteError};
use crate::model::{Command, CommandOutput, Proposal, State};

/// How long a write may take (finding a leader, committing, applying: a
/// large declarative config takes seconds) before answering 503.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// What a node needs to know to take part in a cluster.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// The cluster address other nodes reach this one at.
    pub advertise: String,
    pub secret: ClusterSecret,
    /// Founding members (id → cluster address); empty when joining.
    pub initial_cluster: BTreeMap<NodeId, String>,
    /// A member's cluster address to join through.
    pub join: Option<String>,
    /// Stay a non-voting member.
    pub learner: bool,
    /// Snapshot every N applied entries.
    pub snapshot_every: u64,
    /// Local IP for outgoing cluster connections.
    pub source_ip: Option<std::net::IpAddr>,
}

/// A request to add a node, sent to any member's cluster port.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub addr: String,
    pub learner: bool,
}

/// Raft's numbers as this node sees them (see `Store::raft_stats`).
#[derive(Clone, Debug, Default)]
pub struct RaftStats {
    pub node_id: NodeId,
    /// leader | follower | candidate | learner | shutdown
    pub role: &'static str,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub last_applied_index: u64,
    /// On the leader: entries each peer is behind the leader's last log.
    pub replication_lag: Vec<(NodeId, u64)>,
    pub snapshot_index: u64,
    pub snapshot_size_bytes: u64,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    raft: Raft,
    client: ClusterClient,
    applied: watch::Receiver<Applied>,
    /// Kept to read the stored snapshot's size for metrics.
    db: sled::Db,
    /// When a leader's append (or heartbeat) last reached this node.
    leader_contact: std::sync::Mutex<Option<std::time::Instant>>,
    /// Set once, when this process first saw its state current with the
    /// cluster's (`run_catch_up`); never cleared.
    caught_up: std::sync::atomic::AtomicBool,
    /// The state version the data plane serves, when one is attached.
    enforced: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
}

fn raft_config(snapshot_every: u64) -> Config {
    Config {
        cluster_name: "raftgate".to_string(),
        heartbeat_interval: 40,
        election_timeout_min: 150,
        election_timeout_max: 300,
        // Logs behind a snapshot are purged, keeping a few for peers that
        // lag only a little.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: snapshot_every / 5,
        enable_pre_vote: Some(true),
        ..Default::default()
    }
}

fn unavailable(e: impl std::fmt::Display) -> WriteError {
    WriteError::Unavailable(e.to_string())
}

/// sled's page cache. Its default (1 GiB) made a node holding a million
/// revocations use about 1 GiB more memory than the state itself; the
/// applied state lives in memory anyway (`model::State`), so sled's cache
/// only speeds up log appends and snapshot reads, which need far less.
const STORE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl Store {
    /// Opens the node's storage and starts Raft. Forming or joining the
    /// cluster happens in the background (see `bootstrap`).
    pub async fn open(config: StoreConfig) -> io::Result<Store> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db_path = config.data_dir.join("store");
        let db = tokio::task::spawn_blocking(move || {
            sled::Config::new()
                .path(db_path)
                .cache_capacity(STORE_CACHE_BYTES)
                .open()
        })
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
        let log = LogStore::open(&db)?;
        let db_handle = db.clone();
        let sm = StateMachine::open(&db)?;
        let applied = sm.subscribe();
        let client = ClusterClient::new(config.secret.clone(), config.source_ip);
        let raft_cfg = Arc::new(
            raft_config(config.snapshot_every)
                .validate()
                .map_err(io::Error::other)?,
        );
        let raft = Raft::new(
            config.node_id,
            raft_cfg,
            Network::new(client.clone()),
            log,
            sm,
        )
        .await
        .map_err(io::Error::other)?;
        Ok(Store {
            inner: Arc::new(Inner {
                config,
                raft,
                client,
                applied,
                db: db_handle,
                leader_contact: std::sync::Mutex::new(None),
                caught_up: std::sync::atomic::AtomicBool::new(false),
                enforced: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    pub fn client(&self) -> &ClusterClient {
        &self.inner.client
    }

    pub fn secret(&self) -> &ClusterSecret {
        &self.inner.config.secret
    }

    /// Every newly applied state, as it is applied.
    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.inner.applied.clone()
    }

    /// Forms the cluster (founding members, or a lone node) or joins it
    /// through a member. Harmless on restart: an initialized node skips it.
    pub async fn bootstrap(&self) -> io::Result<()> {
        let raft = &self.inner.raft;
        if raft.is_initialized().await.map_err(io::Error::other)? {
            return Ok(());
        }
        let cfg = &self.inner.config;
        if let Some(join) = &cfg.join {
            let req = JoinRequest {
                node_id: cfg.node_id,
                addr: cfg.advertise.clone(),
                learner: cfg.learner,
            };
            loop {
                let answer: Result<Result<serde_json::Value, String>, CallError> = self
                    .inner
                    .client
                    .call(join, "/cluster/join", &req, Duration::from_secs(60))
                    .await;
                match answer {
                    Ok(Ok(_)) => {
                        tracing::info!(node_id = cfg.node_id, via = %join, "joined the cluster");
                        return Ok(());
                    }
                    Ok(Err(e)) => tracing::warn!(via = %join, error = %e, "join refused; retrying"),
                    Err(e) => tracing::warn!(via = %join, error = %e, "join failed; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                if raft.is_initialized().await.map_err(io::Error::other)? {
                    return Ok(());
                }
            }
        }
        let members: BTreeMap<NodeId, Node> = if cfg.initial_cluster.is_empty() {
            BTreeMap::from([(cfg.node_id, Node::new(&cfg.advertise))])
        } else {
            cfg.initial_cluster
                .iter()
                .map(|(id, addr)| (*id, Node::new(addr)))
                .collect()
        };
        match raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another founding member's initialization reached us first.
            Err(RaftError::APIError(e)) => {
                tracing::debug!(error = %e, "cluster already initialized");
                Ok(())
            }
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// Proposes on the leader, wherever it is, retrying the same request id
    /// across leader changes (the state machine applies it once).
    pub async fn propose(&self, proposal: Proposal) -> Result<(ApplyResult, u64), WriteError> {
        let started = Instant::now();
        let mut last_error = String::from("no leader");
        while started.elapsed() < WRITE_DEADLINE {
            match self.inner.raft.client_write(proposal.clone()).await {
                Ok(resp) => return Ok((resp.data, resp.log_id.index)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(fwd))) => {
                    if let Some(leader) = fwd.leader_node {
                        let answer: Result<Result<(ApplyResult, u64), String>, CallError> = self
                            .inner
                            .client
                            .call(
                                &leader.addr,
                                "/cluster/write",
                                &proposal,
                                WRITE_DEADLINE.saturating_sub(started.elapsed()),
                            )
                            .await;
                        match answer {
                            Ok(Ok(done)) => return Ok(done),
                            Ok(Err(e)) => last_error = e,
                            Err(e) => last_error = e.to_string(),
                        }
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(WriteError::Unavailable(format!(
            "no leader accepted the write within {WRITE_DEADLINE:?}: {last_error}"
        )))
    }

    /// Proposes only if this node is the leader (used by the cluster port
    /// for forwarded writes).
    pub async fn propose_as_leader(
        &self,
        proposal: Proposal,
    ) -> Result<(ApplyResult, u64), String> {
        self.inner
            .raft
            .client_write(proposal)
            .await
            .map(|resp| (resp.data, resp.log_id.index))
            .map_err(|e| e.to_string())
    }

    /// Waits until this node has applied `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), WriteError> {
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "applied")
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// The leader's read index (this node must be the leader).
    pub async fn read_index_as_leader(&self) -> Result<u64, String> {
        self.inner
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|r| r.index())
            .map_err(|e| e.to_string())
    }

    async fn leader_addr(&self) -> Option<(NodeId, String)> {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader)?;
        Some((leader, node.addr.clone()))
    }

    /// Adds a node as learner and, unless `learner`, promotes it to voter
    /// once it caught up. Must run on the leader.
    pub async fn add_node_as_leader(&self, req: JoinRequest) -> Result<serde_json::Value, String> {
        let raft = &self.inner.raft;
        let metrics = raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        let already_voter = membership.voter_ids().any(|id| id == req.node_id);
        if !already_voter {
            raft.add_learner(req.node_id, Node::new(&req.addr), true)
                .await
                .map_err(|e| e.to_string())?;
            if !req.learner {
                raft.change_membership(
                    ChangeMembers::AddVoterIds(BTreeSet::from([req.node_id])),
                    true,
                )
                .await
                .map_err(|e| e.to_string())?;
            }
        }
        Ok(self.cluster_view())
    }

    /// Removes a node from the membership. Must run on the leader.
    pub async fn remove_node_as_leader(
        &self,
        node_id: NodeId,
    ) -> Result<serde_json::Value, String> {
        let raft = &self.inner.raft;
        let membership = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .clone();
        if membership.voter_ids().any(|id| id == node_id) {
            raft.change_membership(
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id])),
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
        } else if membership.get_node(&node_id).is_some() {
            raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node_id])), false)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            return Err(format!("node {node_id} is not a member"));
        }
        Ok(self.cluster_view())
    }

    /// Runs `local` if this node leads, else calls `path` on the leader.
    async fn on_leader<Req, Resp, F, Fut>(
        &self,
        path: &str,
        req: Req,
        local: F,
    ) -> Result<Resp, WriteError>
    where
        Req: Serialize + Clone,
        Resp: serde::de::DeserializeOwned,
        F: Fn(Req) -> Fut,
        Fut: std::future::Future<Output = Result<Resp, String>>,
    {
        let started = Instant::now();
        let mut last_error = String::from("no leader");
        while started.elapsed() < WRITE_DEADLINE {
            match self.leader_addr().await {
                Some((leader, _)) if leader == self.node_id() => match local(req.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(e) => last_error = e,
                },
                Some((_, addr)) => {
                    let answer: Result<Result<Resp, String>, CallError> = self
                        .inner
                        .client
                        .call(&addr, path, &req, Duration::from_secs(60))
                        .await;
                    match answer {
                        Ok(Ok(v)) => return Ok(v),
                        Ok(Err(e)) => return Err(WriteError::Unavailable(e)),
                        Err(e) => last_error = e.to_string(),
                    }
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(WriteError::Unavailable(last_error))
    }

    /// True once this node is a member and has applied the cluster's state.
    ///
    /// A node's own log and state say nothing of what the cluster
    /// committed while it was away: after a restart they are as old as its
    /// last stop, and a node that led before comes back believing it still
    /// leads. So readiness first needs this process to have seen its state
    /// current once (`run_catch_up`: a read index from a leader a quorum
    /// follows, then applied that far). After that, it needs what the node
    /// knows to be committed applied; a node cut off from its peers keeps
    /// that verdict and stays ready to proxy with the state it has.
    pub fn is_ready(&self) -> bool {
        if !self
            .inner
            .caught_up
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return false;
        }
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let member = metrics
            .membership_config
            .membership()
            .get_node(&self.node_id())
            .is_some();
        let applied = metrics.last_applied.as_ref().map(|l| l.index);
        let committed = std::cmp::max(
            metrics.local_committed.as_ref().map(|l| l.index),
            metrics.cluster_committed.as_ref().map(|l| l.index),
        );
        member && applied >= committed && applied.is_some()
    }

    /// Runs once after start, until this node has applied the cluster's
    /// state as a leader confirmed by a quorum reports it (its read
    /// index); then readiness may be granted. Each try is bounded: a node
    /// that believes it still leads may wait on a quorum that never
    /// answers until a real leader shows up.
    pub async fn run_catch_up(self) {
        const TRY: Duration = Duration::from_secs(2);
        loop {
            match tokio::time::timeout(TRY, Backend::linearizable_barrier(&self)).await {
                Ok(Ok(())) => {
                    self.inner
                        .caught_up
                        .store(true, std::sync::atomic::Ordering::Release);
                    tracing::info!("caught up with the cluster's state");
                    return;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "not caught up yet"),
                Err(_) => tracing::debug!("not caught up yet: no answer from a leader"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Attaches the data plane's served state version (`Proxy::published_version`).
    pub fn set_enforced_source(&self, version: Arc<std::sync::atomic::AtomicU64>) {
        let _ = self.inner.enforced.set(version);
    }

    /// The state version this node enforces: the data plane's, when one is
    /// attached, else the applied state's.
    pub fn enforced_version(&self) -> u64 {
        match self.inner.enforced.get() {
            Some(v) => v.load(std::sync::atomic::Ordering::Acquire),
            None => self.inner.applied.borrow().state.version(),
        }
    }

    /// Records that a leader's append entries reached this node.
    pub fn note_leader_contact(&self) {
        let mut at = self
            .inner
            .leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *at = Some(std::time::Instant::now());
    }

    /// Raft's numbers for the metrics exporter (cheap; read at scrape time).
    /// `leader` is the leader only while it is heard from: with pre-vote a
    /// cut-off follower keeps its term and its last leader forever, which
    /// would hide that it has none.
    pub fn raft_stats(&self) -> RaftStats {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        // A few election timeouts (150-300 ms) without contact.
        const STALE_MS: u128 = 1_000;
        // The plain number is simpler than the instant type it is
        // deprecated for, and means the same.
        #[allow(deprecated)]
        let acked_ms = m.millis_since_quorum_ack;
        let leader = match m.state {
            ServerState::Leader => acked_ms
                .filter(|ms| u128::from(*ms) < STALE_MS)
                .map(|_| m.id),
            _ => {
                let at = *self
                    .inner
                    .leader_contact
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                m.current_leader
                    .filter(|_| at.is_some_and(|t| t.elapsed().as_millis() < STALE_MS))
            }
        };
        let last_log = m.last_log_index.unwrap_or(0);
        let replication_lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != m.id)
                    .map(|(id, log)| {
                        (
                            *id,
                            last_log.saturating_sub(log.as_ref().map_or(0, |l| l.index)),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let snapshot_size_bytes = self
            .inner
            .db
            .open_tree("sm_snapshot")
            .ok()
            .and_then(|t| t.get(b"snapshot_data").ok().flatten())
            .map_or(0, |v| v.len() as u64);
        RaftStats {
            node_id: m.id,
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            leader,
            term: m.current_term,
            last_log_index: last_log,
            committed_index: std::cmp::max(
                m.local_committed.as_ref().map(|l| l.index),
                m.cluster_committed.as_ref().map(|l| l.index),
            )
            .unwrap_or(0),
            last_applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
            replication_lag,
            snapshot_index: m.snapshot.as_ref().map_or(0, |l| l.index),
            snapshot_size_bytes,
        }
    }

    /// This node's view of the cluster, for `GET /cluster` and status.
    pub fn cluster_view(&self) -> serde_json::Value {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last_log = m.last_log_index.unwrap_or(0);
        let matched: BTreeMap<NodeId, Option<u64>> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.as_ref().map(|l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let nodes: Vec<serde_json::Value> = membership
            .nodes()
            .map(|(id, node)| {
                let lag = matched
                    .get(id)
                    .map(|idx| last_log.saturating_sub(idx.unwrap_or(0)));
                serde_json::json!({
                    "id": id,
                    "address": node.addr,
                    "role": if voters.contains(id) { "voter" } else { "learner" },
                    "leader": m.current_leader == Some(*id),
                    "matched_index": matched.get(id).copied().flatten(),
                    "lag": lag,
                })
            })
            .collect();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        serde_json::json!({
            "node_id": m.id,
            "state": state,
            "leader": m.current_leader,
            "term": m.current_term,
            "last_log_index": m.last_log_index,
            "committed_index": m.cluster_committed.as_ref().or(m.local_committed.as_ref()).map(|l| l.index),
            "last_applied_index": m.last_applied.as_ref().map(|l| l.index),
            "snapshot_index": m.snapshot.as_ref().map(|l| l.index),
            "config_version": self.inner.applied.borrow().state.version(),
            "state_digest": self.state_digest(),
            "ready": self.is_ready(),
            "nodes": nodes,
        })
    }

    /// On the leader, every `every`: proposes dropping revocations whose
    /// token can no longer be valid. The leader reads the clock here, so
    /// applying the purge stays deterministic on every node.
    pub async fn run_revocation_purge(self, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if !self.inner.raft.is_leader() {
                continue;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let state = self.inner.applied.borrow().state.clone();
            let expired = state
                .iter(crate::model::EntityKind::JwtRevocation)
                .any(|e| matches!(e, crate::model::Entity::JwtRevocation(r) if r.expires_at.is_some_and(|t| t < now)));
            if !expired {
                continue;
            }
            let proposal = Proposal {
                request_id: Uuid::new_v4(),
                command: Command::PurgeRevocations { now },
            };
            match self.propose(proposal).await {
                Ok((ApplyResult(Ok(out)), _)) => tracing::info!(?out, "purged expired revocations"),
                Ok((ApplyResult(Err(e)), _)) => {
                    tracing::warn!(error = %e, "revocation purge refused")
                }
                Err(e) => tracing::warn!(error = %e, "revocation purge not applied"),
            }
        }
    }

    /// SHA-256 of every record of the applied state: equal on two nodes
    /// exactly when they hold the same state.
    pub fn state_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let state = self.inner.applied.borrow().state.clone();
        let mut hasher = Sha256::new();
        for (key, value) in state.records() {
            hasher.update((key.len() as u64).to_be_bytes());
            hasher.update(&key);
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(&value);
        }
        hex::encode(hasher.finalize())
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

impl Backend for Store {
    async fn write(&self, command: Command) -> Result<CommandOutput, WriteError> {
        let proposal = Proposal {
            request_id: Uuid::new_v4(),
            command,
        };
        let (result, index) = self.propose(proposal).await?;
        self.wait_applied(index, WRITE_DEADLINE).await?;
        result.0.map_err(WriteError::Rejected)
    }

    fn state(&self) -> Arc<State> {
        self.inner.applied.borrow().state.clone()
    }

    async fn linearizable_barrier(&self) -> Result<(), WriteError> {
        let this = self.clone();
        let index: u64 = self
            .on_leader("/cluster/read-index", (), move |()| {
                let this = this.clone();
                async move { this.read_index_as_leader().await }
            })
            .await?;
        self.wait_applied(index, WRITE_DEADLINE).await
    }

    fn cluster_info(&self) -> serde_json::Value {
        self.cluster_view()
    }

    async fn add_node(
        &self,
        node_id: u64,
        cluster_addr: String,
        learner: bool,
    ) -> Result<serde_json::Value, WriteError> {
        let req = JoinRequest {
            node_id,
            addr: cluster_addr,
            learner,
        };
        let this = self.clone();
        self.on_leader("/cluster/join", req, move |req| {
            let this = this.clone();
            async move { this.add_node_as_leader(req).await }
        })
        .await
    }

    async fn wait_all_applied(&self, timeout: Duration) -> Result<Vec<u64>, WriteError> {
        // Applied is not enforced: each node's proxy serves a state once it
        // has compiled it. So the wait is on the state version every node's
        // data plane serves (the same on every node for the same log),
        // this node's included.
        let target = self.inner.applied.borrow().state.version();
        let members: Vec<(NodeId, String)> = self
            .inner
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        let started = Instant::now();
        let mut pending = members;
        while !pending.is_empty() && started.elapsed() < timeout {
            let left = timeout.saturating_sub(started.elapsed());
            let asks = pending.iter().map(|(id, addr)| {
                let client = self.inner.client.clone();
                let addr = addr.clone();
                let id = *id;
                let local = (id == self.node_id()).then(|| self.enforced_version());
                async move {
                    let enforced: Option<u64> = match local {
                        Some(v) => Some(v),
                        None => client
                            .call(
                                &addr,
                                "/cluster/enforced",
                                &(),
                                left.min(Duration::from_secs(1)),
                            )
                            .await
                            .ok(),
                    };
                    (id, enforced.is_some_and(|v| v >= target))
                }
            });
            let answers = futures::future::join_all(asks).await;
            pending.retain(|(id, _)| !answers.iter().any(|(a, done)| a == id && *done));
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Ok(pending.into_iter().map(|(id, _)| id).collect())
    }

    async fn remove_node(&self, node_id: u64) -> Result<serde_json::Value, WriteError> {
        let this = self.clone();
        self.on_leader("/cluster/remove", node_id, move |id| {
            let this = this.clone();
            async move { this.remove_node_as_leader(id).await }
        })
        .await
    }
}
