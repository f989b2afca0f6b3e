//! What the Admin API needs from the replicated store: write a command,
//! read the locally applied state, and the cluster's view.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{ApplyError, Command, CommandOutput, State};

/// Why a write did not produce an outcome.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The command was applied and broke a rule: nothing changed (4xx).
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    /// No leader could be reached in time, or the outcome is unknown (503).
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}

/// The replicated store as the Admin API sees it. Implemented by
/// `store::Store`; unit tests may implement it over a plain `State`.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Proposes `command`; answers once it is applied on this node
    /// (read-your-writes), forwarding to the leader when needed.
    fn write(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<CommandOutput, WriteError>> + Send;

    /// The state this node has applied.
    fn state(&self) -> Arc<State>;

    /// Waits until this node has applied everything the leader had
    /// committed when called (`?consistency=linearizable`).
    fn linearizable_barrier(&self) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// The cluster's view for `GET /cluster`, `GET /` and `GET /status`:
    /// this node's id and role, leader, term, indexes, members.
    fn cluster_info(&self) -> serde_json::Value;

    /// Adds a node (as learner, then voter unless `learner`).
    fn add_node(
        &self,
        node_id: u64,
        cluster_addr: String,
        learner: bool,
    ) -> impl Future<Output = Result<serde_json::Value, WriteError>> + Send;

    /// Removes a node from the membership.
    fn remove_node(
        &self,
        node_id: u64,
    ) -> impl Future<Output = Result<serde_json::Value, WriteError>> + Send;

    /// Waits until every live member (voters and learners) enforces
    /// everything this node had applied when called (its data plane serves
    /// that state), or `timeout` passes; answers the ids of the nodes that
    /// did not (empty: all did). Serves
    /// `POST /jwt-revocations?wait=all`. Stores that cannot tell say so.
    fn wait_all_applied(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u64>, WriteError>> + Send {
        let _ = timeout;
        async {
            Err(WriteError::Unavailable(
                "this store cannot wait for every node".into(),
            ))
        }
    }
}
