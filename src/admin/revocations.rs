//! `POST /jwt-revocations` bodies: a token is replaced by its SHA-256 (and
//! its `exp` becomes the entry's expiry) before anything is stored, and
//! exactly one matcher (jti, token, consumer, credential) must be given.
//!
//! Beyond Kong (which has no revocation list): a JSON array of such bodies
//! creates them all in one Raft entry, all or none (`create_many`), so
//! that large lists load in seconds rather than one write per entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::backend::Backend;
use super::body::Decoded;
use super::credentials;
use super::errors::{violation_at, AdminError};
use super::handlers::{now, render, Ctx};
use super::prepare::{prepare, Mode};
use crate::model::{ApplyError, Command, EntityKind};

/// Most revocations one batch request may carry (one Raft entry).
pub const MAX_BATCH: usize = 10_000;

/// Longest `?timeout_ms` a `?wait=all` may ask for.
const MAX_WAIT_MS: u64 = 60_000;
const DEFAULT_WAIT_MS: u64 = 5_000;

/// Reads `?wait=all[&timeout_ms=N]` before anything is written: `None`
/// when the caller did not ask to wait.
pub fn wait_request(query: &HashMap<String, String>) -> Result<Option<Duration>, AdminError> {
    if query.get("wait").map(String::as_str) != Some("all") {
        return Ok(None);
    }
    let ms = match query.get("timeout_ms") {
        None => DEFAULT_WAIT_MS,
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|ms| (1..=MAX_WAIT_MS).contains(ms))
            .ok_or_else(|| {
                AdminError::field("timeout_ms", "expected an integer between 1 and 60000")
            })?,
    };
    Ok(Some(Duration::from_millis(ms)))
}

/// After the revocation is stored: waits until every live node applied it
/// (and so enforces it), and says which had not when the wait ended.
pub async fn wait_all<B: Backend>(backend: &B, timeout: Duration) -> Value {
    match backend.wait_all_applied(timeout).await {
        Ok(lagging) => json!({"all_applied": lagging.is_empty(), "lagging": lagging}),
        Err(e) => json!({"all_applied": false, "error": e.to_string()}),
    }
}

/// `/jwt-revocations`: the token itself becomes its hash (and its `exp`
/// the entry's expiry); exactly one matcher must be given.
pub fn revocation_fields(body: &mut Map<String, Value>, now: i64) -> Result<(), AdminError> {
    if let Some(token) = body.remove("token").filter(|t| !t.is_null()) {
        let Value::String(token) = token else {
            return Err(AdminError::field("token", "expected a string"));
        };
        if credentials::unverified_claims(&token).is_none() {
            return Err(AdminError::field("token", "not a valid JWT"));
        }
        if body.get("expires_at").is_none_or(Value::is_null) {
            if let Some(exp) = credentials::expiry(&token) {
                body.insert("expires_at".into(), json!(exp));
            }
        }
        body.insert(
            "token_sha256".into(),
            json!(credentials::sha256_hex(&token)),
        );
    }
    let matchers = ["jti", "token_sha256", "consumer", "credential"];
    let given = matchers
        .iter()
        .filter(|m| body.get(**m).is_some_and(|v| !v.is_null()))
        .count();
    if given != 1 {
        return Err(AdminError::Apply(violation_at(
            "",
            "exactly one of these fields must be non-empty: 'jti', 'token', 'consumer', 'credential'"
                .into(),
        )));
    }
    if body.get("consumer").is_some() && body.get("issued_before").is_none_or(Value::is_null) {
        body.insert("issued_before".into(), json!(now));
    }
    Ok(())
}

/// Whether a `POST /jwt-revocations` body is a JSON array (the batch
/// form): JSON, or no Content-Type, whose first character is `[`.
pub fn is_batch(headers: &axum::http::HeaderMap, bytes: &[u8]) -> bool {
    let json = super::body::media_type(headers)
        .is_none_or(|m| m.is_empty() || m == "application/json" || m.ends_with("+json"));
    json && bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[')
}

/// `POST /jwt-revocations` with a JSON array: each element is prepared and
/// checked as a single POST would be (an error names the element by its
/// index), then all are proposed as one command and applied together.
/// Answers 201 `{"data": [...]}`, plus `wait` with `?wait=all`.
pub async fn create_many<B: Backend>(
    ctx: &Ctx<B>,
    wait: Option<Duration>,
) -> Result<Response, AdminError> {
    let items = match serde_json::from_slice::<Value>(&ctx.bytes) {
        Ok(Value::Array(items)) => items,
        _ => return Err(AdminError::bad_json()),
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(AdminError::message(
            StatusCode::BAD_REQUEST,
            format!("a batch holds 1 to {MAX_BATCH} revocations"),
        ));
    }
    let state = ctx.app.backend.state();
    let now = now();
    let mut entities = Vec::with_capacity(items.len());
    let mut ids = HashSet::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let decoded = Decoded {
            value: item,
            from_form: false,
        };
        let prepared = prepare(
            &state,
            EntityKind::JwtRevocation,
            decoded,
            Mode::Create,
            None,
            now,
        )
        .map_err(|e| at_index(i, e))?;
        let id = prepared.entity.id();
        // A batch is applied as an upsert: refuse ids in use, as POST does.
        if !ids.insert(id) || state.get(EntityKind::JwtRevocation, id).is_some() {
            return Err(AdminError::Apply(ApplyError::PrimaryKey {
                id: id.to_string(),
            }));
        }
        entities.push(prepared.entity);
    }
    ctx.app
        .backend
        .write(Command::ApplyConfig {
            entities: entities.clone(),
            delete_missing: false,
            select_tags: Vec::new(),
        })
        .await?;
    let state = ctx.app.backend.state();
    let data: Vec<Value> = entities.iter().map(|e| render(&state, e)).collect();
    let mut answer = json!({ "data": data });
    if let Some(timeout) = wait {
        answer["wait"] = wait_all(&ctx.app.backend, timeout).await;
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// An element's schema violation, nested under its index ("3.jti: …").
fn at_index(i: usize, e: AdminError) -> AdminError {
    match e {
        AdminError::Apply(ApplyError::SchemaViolation { fields }) => {
            let inner: Map<String, Value> = fields.into_iter().collect();
            let mut nested = BTreeMap::new();
            nested.insert(i.to_string(), Value::Object(inner));
            AdminError::Apply(ApplyError::SchemaViolation { fields: nested })
        }
        other => other,
    }
}
