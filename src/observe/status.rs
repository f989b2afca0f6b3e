//! The status listener. Readiness and the cluster's view come from a
//! `NodeProbe`, so this module needs nothing of the store.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

/// What the status endpoints ask of the node.
pub trait NodeProbe: Send + Sync + 'static {
    /// The node is a member, has applied the cluster's state, and its
    /// listeners are up.
    fn ready(&self) -> bool;
    /// `/status` body: Kong's shape plus the cluster's view.
    fn status(&self) -> serde_json::Value;
}

pub fn router(probe: Arc<dyn NodeProbe>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready))
        .route("/status/live", get(live))
        .with_state(probe)
}

async fn status(State(probe): State<Arc<dyn NodeProbe>>) -> impl IntoResponse {
    Json(probe.status())
}

async fn ready(State(probe): State<Arc<dyn NodeProbe>>) -> impl IntoResponse {
    if probe.ready() {
        (
            StatusCode::OK,
            Json(serde_json::json!({"message": "ready"})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"message": "not ready"})),
        )
    }
}

async fn live() -> impl IntoResponse {
    Json(serde_json::json!({"message": "live"}))
}
