//! `POST /jwt-revocations` bodies: a token is replaced by its SHA-256 (and
//! its `exp` becomes the entry's expiry) before anything is stored, and
//! exactly one matcher (jti, token, consumer, credential) must be given.

use serde_json::{json, Map, Value};

use super::credentials;
use super::errors::{violation_at, AdminError};

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
