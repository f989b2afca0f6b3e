//! Values the Admin API makes up for credentials, and what it reads from a
//! JWT it is asked to revoke. Randomness lives here, before proposing,
//! never in apply.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::model::EntityKind;

/// A credential key as Kong makes one: 32 random hex characters.
pub fn random_key() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// A jwt secret as Kong's tests expect it: 32 alphanumeric characters.
pub fn random_secret() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Hex SHA-256, the only form in which a revoked token (or an admin token)
/// is kept.
pub fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

/// The claims of a compact JWT, read without checking its signature (the
/// token is only being revoked). `None` if it is not a JWT.
pub fn unverified_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(payload))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The token's `exp` claim, in whole seconds.
pub fn expiry(token: &str) -> Option<i64> {
    let claims = unverified_claims(token)?;
    let exp = claims.get("exp")?;
    exp.as_i64()
        .or_else(|| exp.as_f64().map(|f| f.ceil() as i64))
}

/// Fills a new credential's `key` (and a jwt's `secret`) when the body
/// left them out, as Kong's `auto` fields.
pub fn generate_credentials(kind: EntityKind, value: &mut Map<String, Value>) {
    let missing = |v: &Map<String, Value>, f: &str| v.get(f).is_none_or(Value::is_null);
    match kind {
        EntityKind::JwtCredential => {
            if missing(value, "key") {
                value.insert("key".into(), json!(random_key()));
            }
            if missing(value, "secret") {
                value.insert("secret".into(), json!(random_secret()));
            }
        }
        EntityKind::KeyAuthCredential if missing(value, "key") => {
            value.insert("key".into(), json!(random_key()));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_have_kongs_shape() {
        let k = random_key();
        assert_eq!(k.len(), 32);
        assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
        let s = random_secret();
        assert_eq!(s.len(), 32);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(random_secret(), s);
    }

    #[test]
    fn reads_exp_without_verifying() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":1700000000}"#);
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln");
        assert_eq!(expiry(&token), Some(1_700_000_000));
        assert_eq!(expiry("not-a-token"), None);
        assert_eq!(sha256_hex("abc").len(), 64);
    }
}
