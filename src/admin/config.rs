//! `/config`, Kong's DB-less endpoint: `GET` dumps the whole state as a
//! declarative document, `POST` replaces the configuration with one (JSON
//! or YAML, as the whole body or under the key `config`), applied as a
//! single Raft command.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::backend::Backend;
use super::body;
use super::errors::AdminError;
use super::handlers::Ctx;
use crate::model::{Command, Entity, State};

/// The state as a declarative document that parses back to it.
pub fn dump(state: &State) -> Value {
    crate::model::declarative::dump(state)
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

/// The entities of a declarative document and its `select_tags`.
fn parse_declarative(text: &str) -> Result<(Vec<Entity>, Vec<String>), AdminError> {
    let config = crate::model::declarative::parse(text)?;
    Ok((config.entities, config.select_tags))
}

/// `POST /config`.
pub async fn post<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let bytes = &ctx.bytes;
    let content_type = super::body::media_type(&ctx.parts.headers).unwrap_or_default();
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
    let (entities, mut select_tags) = crate::blocking::cpu_bound(|| parse_declarative(&text))?;
    // Kong's POST /config replaces the whole config; `?mode=apply` (the
    // CLI's `config apply`) only upserts, `?mode=sync` is the replacement
    // scoped by `select_tags` (query, else the file's `_info`).
    let delete_missing = match ctx.query.get("mode").map(String::as_str) {
        None | Some("replace") | Some("sync") => true,
        Some("apply") => false,
        Some(other) => {
            return Err(AdminError::field(
                "mode",
                format!("expected one of: replace, sync, apply (got '{other}')"),
            ))
        }
    };
    if let Some(tags) = ctx.query.get("select_tags") {
        select_tags = tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
    }
    ctx.app
        .backend
        .write(Command::ApplyConfig {
            entities,
            delete_missing,
            select_tags,
        })
        .await?;
    let state = ctx.app.backend.state();
    Ok((StatusCode::CREATED, Json(json!({"config": dump(&state)}))).into_response())
}
