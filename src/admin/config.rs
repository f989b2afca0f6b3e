//! `/config`, Kong's DB-less endpoint: `GET` dumps the whole state as a
//! declarative document, `POST` replaces the configuration with one (JSON
//! or YAML, as the whole body or under the key `config`), applied as a
//! single Raft command.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::backend::Backend;
use super::body;
use super::errors::AdminError;
use super::handlers::Ctx;
use crate::model::{Command, Entity, EntityKind, State};

/// The state as a flat declarative document: one top-level array per
/// collection, foreign keys by id.
///
/// TODO(model merge): replace the body with
/// `crate::model::declarative::dump(state)` (parents first, parses back).
pub fn dump(state: &State) -> Value {
    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));
    for kind in EntityKind::ALL {
        let items: Vec<Value> = state.iter(*kind).map(Entity::to_json).collect();
        if !items.is_empty() {
            doc.insert(kind.collection().into(), Value::Array(items));
        }
    }
    Value::Object(doc)
}

/// The declarative text a `POST /config` body carries.
fn config_text(content_type: &str, bytes: &[u8]) -> Result<String, AdminError> {
    let text = || {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| AdminError::message(StatusCode::BAD_REQUEST, "Cannot parse body"))
    };
    if content_type == "application/x-www-form-urlencoded" {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(bytes).into_owned().collect();
        return match body::nest_pairs(&pairs)?.get("config") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(AdminError::field("config", "required field missing")),
        };
    }
    if content_type == "application/json" || content_type.ends_with("+json") {
        let value: Value = serde_json::from_slice(bytes).map_err(|_| AdminError::bad_json())?;
        return match value.get("config") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(inner @ Value::Object(_)) => Ok(inner.to_string()),
            Some(_) => Err(AdminError::field("config", "expected a string")),
            None => text(),
        };
    }
    text()
}

/// The one place `POST /config` calls the model's declarative parser:
/// returns the entities and the file's `select_tags`.
///
/// TODO(model merge): replace the body with
/// `crate::model::declarative::parse(text).map(|c| (c.entities, c.select_tags))`.
fn parse_declarative(_text: &str) -> Result<(Vec<Entity>, Vec<String>), AdminError> {
    Err(AdminError::message(
        StatusCode::NOT_IMPLEMENTED,
        "declarative config is not available in this build",
    ))
}

/// `POST /config`.
pub async fn post<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let bytes = &ctx.bytes;
    let content_type = ctx
        .parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if content_type.starts_with("multipart/") {
        return Err(AdminError::message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
        ));
    }
    let text = config_text(&content_type, bytes)?;
    if text.trim().is_empty() {
        return Err(AdminError::message(
            StatusCode::BAD_REQUEST,
            "expected a declarative configuration",
        ));
    }
    let (entities, select_tags) = parse_declarative(&text)?;
    ctx.app
        .backend
        .write(Command::ApplyConfig {
            entities,
            delete_missing: true,
            select_tags,
        })
        .await?;
    let state = ctx.app.backend.state();
    Ok((StatusCode::CREATED, Json(json!({"config": dump(&state)}))).into_response())
}
