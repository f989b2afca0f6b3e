//! The status listener: `/status` (Kong's shape plus this node's role and
//! leader), `/status/ready`, `/status/live` and `/metrics`. Readiness and
//! the cluster's view come from a `NodeProbe`, so this module needs
//! nothing of the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::metrics::{self, ClusterView};
use super::ServerCounters;

/// What the status endpoints ask of the node.
pub trait NodeProbe: Send + Sync + 'static {
    /// The node is a member and has applied the cluster's state.
    fn ready(&self) -> bool;
    /// The cluster as this node sees it.
    fn cluster(&self) -> ClusterView;
    /// Hash of the applied configuration (`configuration_hash`).
    fn configuration_hash(&self) -> String;
}

/// Everything the status listener reads.
#[derive(Clone)]
pub struct StatusSources {
    pub probe: Arc<dyn NodeProbe>,
    pub server: Arc<ServerCounters>,
    /// Set once the proxy's listeners are bound.
    pub listeners_up: Arc<AtomicBool>,
}

impl StatusSources {
    fn ready(&self) -> bool {
        self.listeners_up.load(Ordering::Acquire) && self.probe.ready()
    }
}

pub fn router(sources: StatusSources) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready))
        .route("/status/live", get(live))
        .route("/metrics", get(metrics_text))
        .with_state(sources)
}

/// Resident memory of this process, from /proc (Linux), in bytes.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

async fn status(State(s): State<StatusSources>) -> impl IntoResponse {
    let view = s.probe.cluster();
    Json(serde_json::json!({
        "server": s.server.to_json(),
        "configuration_hash": s.probe.configuration_hash(),
        "memory": {
            "process_resident_bytes": rss_bytes(),
        },
        "node_id": view.node_id,
        "role": view.role,
        "leader": view.leader,
        "term": view.term,
        "last_applied_index": view.last_applied_index,
        "config_version": view.config_version,
        "ready": s.ready(),
    }))
}

async fn ready(State(s): State<StatusSources>) -> impl IntoResponse {
    if s.ready() {
        (
            StatusCode::OK,
            Json(serde_json::json!({"message": "ready"})),
        )
    } else {
        let why = if s.listeners_up.load(Ordering::Acquire) {
            "not ready: the cluster's state is not applied yet"
        } else {
            "not ready: listeners are not up yet"
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "message": why })),
        )
    }
}

async fn live() -> impl IntoResponse {
    Json(serde_json::json!({"message": "live"}))
}

async fn metrics_text(State(s): State<StatusSources>) -> impl IntoResponse {
    let m = metrics::global();
    let view = s.probe.cluster();
    m.set_cluster(&view);
    m.node_ready.set(i64::from(s.ready()));
    s.server.export();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}
