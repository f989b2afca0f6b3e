//! openraft's network: Raft RPCs to a peer go through `ClusterClient` to
//! the peer's cluster port (served by `server.rs`).

use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::{CallError, ClusterClient};
use super::types::{Node, NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote};

#[derive(Clone)]
pub struct Network {
    client: ClusterClient,
}

impl Network {
    pub fn new(client: ClusterClient) -> Self {
        Self { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, _target: NodeId, node: &Node) -> Self::Network {
        Peer {
            client: self.client.clone(),
            addr: node.addr.clone(),
        }
    }
}

pub struct Peer {
    client: ClusterClient,
    addr: String,
}

/// The body of a full-snapshot RPC.
pub type SnapshotRequest = (Vote, SnapshotMeta, Vec<u8>);

fn rpc_error(e: CallError) -> RPCError<TypeConfig> {
    match e {
        CallError::Unreachable(msg) => RPCError::Unreachable(Unreachable::from_string(msg)),
        other => RPCError::Network(NetworkError::from_string(other.to_string())),
    }
}

/// Longest wait for a follower to store entries sent to it.
const APPEND_WITH_ENTRIES_TIMEOUT: Duration = Duration::from_secs(5);

impl Peer {
    async fn rpc<Req, Resp>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<TypeConfig>> = self
            .client
            .call(&self.addr, path, req, timeout)
            .await
            .map_err(rpc_error)?;
        answer.map_err(|e| RPCError::Network(NetworkError::from_string(e.to_string())))
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft gives every append the heartbeat interval (40 ms) as its
        // budget. A heartbeat must fail that fast, but an append carrying
        // entries (one may hold a 10,000-entity batch or a whole declarative
        // config, decoded and fsynced by the follower) cannot always make
        // it on a busy machine, and would then be retried forever.
        let timeout = if req.entries.is_empty() {
            option.hard_ttl()
        } else {
            option.hard_ttl().max(APPEND_WITH_ENTRIES_TIMEOUT)
        };
        self.rpc("/raft/append", &req, timeout).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc("/raft/vote", &req, option.hard_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc("/raft/pre-vote", &req, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req: SnapshotRequest = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        let timeout = option.hard_ttl().max(Duration::from_secs(30));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.rpc("/raft/snapshot", &req, timeout) => Ok(res?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc("/raft/transfer-leader", &req, option.hard_ttl())
            .await
    }
}
