//! `POST /jwt-revocations` bodies: a token is replaced by its SHA-256 (and
//! its `exp` becomes the entry's expiry) before anything is stored, and
//! exactly one matcher (jti, token, consumer, credential) must be given.

use serde_json::{json, Map, Value};

use std::collections::HashMap;
use std::time::Duration;

use super::backend::Backend;
use super::credentials;
use super::errors::{violation_at, AdminError};

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
