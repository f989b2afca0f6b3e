//! INTERIM: the few Admin API endpoints the store's cluster tests need
//! until the full Admin API lands (then this file goes).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use uuid::Uuid;

use super::{Backend, WriteError};
use crate::model::{Command, CommandOutput, Entity, EntityKind};

fn error(e: WriteError) -> Response {
    match e {
        WriteError::Rejected(e) => (
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            Json(e.to_json()),
        )
            .into_response(),
        WriteError::Unavailable(msg) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "message": msg })),
        )
            .into_response(),
    }
}

pub fn router<B: Backend>(backend: B) -> Router {
    Router::new()
        .route(
            "/services",
            post(create_service::<B>).get(list_services::<B>),
        )
        .route("/services/{id}", get(get_service::<B>))
        .route("/cluster", get(cluster::<B>))
        .route("/cluster/nodes", post(add_node::<B>))
        .route("/cluster/nodes/{id}", delete(remove_node::<B>))
        .with_state(backend)
}

async fn create_service<B: Backend>(
    State(b): State<B>,
    Json(mut body): Json<serde_json::Value>,
) -> Response {
    if body.get("id").is_none() {
        body["id"] = serde_json::json!(Uuid::new_v4());
    }
    let entity = match Entity::from_json(EntityKind::Service, body) {
        Ok(e) => e,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"message": e.to_string()})),
            )
                .into_response()
        }
    };
    match b.write(Command::Create { entity }).await {
        Ok(CommandOutput::Entity { entity }) => {
            (StatusCode::CREATED, Json(entity.to_json())).into_response()
        }
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => error(e),
    }
}

async fn list_services<B: Backend>(State(b): State<B>) -> Response {
    let data: Vec<serde_json::Value> = b
        .state()
        .iter(EntityKind::Service)
        .map(|e| e.to_json())
        .collect();
    Json(serde_json::json!({"data": data, "next": null})).into_response()
}

async fn get_service<B: Backend>(State(b): State<B>, Path(id): Path<Uuid>) -> Response {
    match b.state().get(EntityKind::Service, id) {
        Some(e) => Json(e.to_json()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"message": "Not found"})),
        )
            .into_response(),
    }
}

async fn cluster<B: Backend>(State(b): State<B>) -> Response {
    Json(b.cluster_info()).into_response()
}

#[derive(serde::Deserialize)]
struct AddNode {
    node_id: u64,
    address: String,
    #[serde(default)]
    learner: bool,
}

async fn add_node<B: Backend>(State(b): State<B>, Json(req): Json<AddNode>) -> Response {
    match b.add_node(req.node_id, req.address, req.learner).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

async fn remove_node<B: Backend>(State(b): State<B>, Path(id): Path<u64>) -> Response {
    match b.remove_node(id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}
