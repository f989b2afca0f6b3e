//! Membership over the Admin API: `POST /cluster/nodes` adds a node
//! (`{"node_id", "address", "learner"}`), `DELETE /cluster/nodes/{id}`
//! removes one. `GET /cluster` is the backend's view, served directly.

use super::backend::Backend;
use super::decode::decode_plain;
use super::errors::AdminError;
use super::handlers::Ctx;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNode {
    node_id: u64,
    address: String,
    #[serde(default)]
    learner: bool,
}

/// `POST /cluster/nodes`.
pub async fn add_node<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let decoded = ctx.decoded().await?;
    let request: AddNode = decode_plain(decoded.value, decoded.from_form)?;
    let result = ctx
        .app
        .backend
        .add_node(request.node_id, request.address, request.learner)
        .await?;
    Ok((StatusCode::OK, Json(result)).into_response())
}

/// `DELETE /cluster/nodes/{id}`.
pub async fn remove_node<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let id: u64 = ctx
        .param("id")
        .parse()
        .map_err(|_| AdminError::field("id", "expected an integer"))?;
    let result = ctx.app.backend.remove_node(id).await?;
    Ok((StatusCode::OK, Json(result)).into_response())
}
