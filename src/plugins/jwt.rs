//! Kong's jwt plugin (priority 1450), to the letter of Kong 3.x: the token
//! comes from the query (`uri_param_names`), cookies (`cookie_names`) or
//! headers (`header_names`, `[Bb]earer\s+(.+)`); `key_claim_name` is read
//! from the claims, then the JWT header, and names the credential; only the
//! credential's own algorithm is accepted; `claims_to_verify` (exp, nbf)
//! and `maximum_expiration` answer with Kong's bare-map bodies; `anonymous`
//! lets a failed request in as that consumer (OR with other auth plugins).
//!
//! Beyond Kong: a verified token is checked against the replicated
//! revocation list (`revocations`), 401 `{"message":"Token revoked"}`.
//!
//! Decoding keys are parsed once per change of the jwt credentials (the
//! compiled `Keys` are shared by every instance and by successive configs
//! that did not touch a credential), never per request.
//!
//! Signatures are checked by `jsonwebtoken`, except ES512 (ECDSA on P-521
//! with SHA-512), which that crate lacks: RustCrypto's `p521` checks it,
//! with the key read from `rsa_public_key` as Kong does for every non-HS
//! algorithm.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::{HeaderName, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::auth_common::{self as common, json_reply, with_www_authenticate};
use super::revocations::{self, RevocationIndex, TokenFacts};
use super::{CredentialInfo, Plugin, Reply, RequestCtx};
use crate::model::{Entity, EntityKind, State};

/// One jwt credential, ready to verify with.
struct CompiledCredential {
    id: Uuid,
    consumer: Uuid,
    /// Kong's algorithm name, as configured on the credential.
    algorithm: String,
    /// `None` when the credential has no usable secret or public key
    /// ("Invalid key/secret"), or names an algorithm we cannot verify.
    key: Option<Verifier>,
}

/// How one credential's signatures are checked.
enum Verifier {
    /// Every algorithm `jsonwebtoken` implements.
    Jose(Algorithm, DecodingKey),
    /// ES512: ECDSA on P-521 with SHA-512.
    Es512(p521::ecdsa::VerifyingKey),
}

impl Verifier {
    /// Whether `signature` (base64url, as in the token) signs `signed`.
    fn verify(&self, signature: &str, signed: &[u8]) -> bool {
        match self {
            Verifier::Jose(alg, key) => {
                jsonwebtoken::crypto::verify(signature, signed, key, *alg).unwrap_or(false)
            }
            Verifier::Es512(key) => {
                use p521::ecdsa::signature::Verifier as _;
                // JWS carries R || S, 66 bytes each (RFC 7518 §3.4).
                let Ok(raw) = URL_SAFE_NO_PAD.decode(signature.trim_end_matches('=')) else {
                    return false;
                };
                let Ok(sig) = p521::ecdsa::Signature::from_slice(&raw) else {
                    return false;
                };
                key.verify(signed, &sig).is_ok()
            }
        }
    }
}

/// An ES512 public key from PEM (SubjectPublicKeyInfo of a P-521 key).
fn es512_key(pem: &str) -> Option<p521::ecdsa::VerifyingKey> {
    use p521::pkcs8::DecodePublicKey;
    p521::ecdsa::VerifyingKey::from_public_key_pem(pem.trim()).ok()
}

type Keys = HashMap<String, CompiledCredential>;

struct Config {
    uri_param_names: Vec<String>,
    cookie_names: Vec<String>,
    header_names: Vec<HeaderName>,
    key_claim_name: String,
    verify_exp: bool,
    verify_nbf: bool,
    anonymous: Option<String>,
    run_on_preflight: bool,
    maximum_expiration: i64,
    /// `Bearer` or `Bearer realm="x"`.
    www_base: String,
    /// The base with `error="invalid_token"`.
    www_error: String,
}

pub struct Jwt {
    config: Config,
    state: State,
    keys: Arc<Keys>,
    revocations: Arc<RevocationIndex>,
}

/// A failed authentication, before `anonymous` is considered.
enum Failure {
    Message(&'static str, bool),
    Owned(String),
    Claims(Value),
}

fn strings(config: &Value, field: &str) -> Vec<String> {
    config
        .get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn build(config: &Value, state: &State) -> Result<Arc<dyn Plugin>, String> {
    let uri_param_names = match config.get("uri_param_names") {
        None | Some(Value::Null) => vec!["jwt".to_string()],
        Some(_) => strings(config, "uri_param_names"),
    };
    let header_names = match config.get("header_names") {
        None | Some(Value::Null) => vec![http::header::AUTHORIZATION],
        Some(_) => strings(config, "header_names")
            .iter()
            .map(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("header_names: {e}"))?,
    };
    let claims_to_verify = strings(config, "claims_to_verify");
    let realm = config.get("realm").and_then(Value::as_str);
    let www_base = common::www_authenticate_base("Bearer", realm);
    let www_error = match realm {
        Some(_) => format!("{www_base}, error=\"invalid_token\""),
        None => "Bearer error=\"invalid_token\"".to_string(),
    };
    let secret_is_base64 = config
        .get("secret_is_base64")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let config = Config {
        uri_param_names,
        cookie_names: strings(config, "cookie_names"),
        header_names,
        key_claim_name: config
            .get("key_claim_name")
            .and_then(Value::as_str)
            .unwrap_or("iss")
            .to_string(),
        verify_exp: claims_to_verify.iter().any(|c| c == "exp"),
        verify_nbf: claims_to_verify.iter().any(|c| c == "nbf"),
        anonymous: config
            .get("anonymous")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .map(str::to_string),
        run_on_preflight: config
            .get("run_on_preflight")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        maximum_expiration: config
            .get("maximum_expiration")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        www_base,
        www_error,
    };
    Ok(Arc::new(Jwt {
        config,
        state: state.clone(),
        keys: keys_for(state, secret_is_base64),
        revocations: revocations::index_for(state),
    }))
}

/// The compiled credentials of the last states seen, one slot per value
/// of `secret_is_base64` (it changes how a secret is read).
type KeysSlot = Option<(State, Arc<Keys>)>;
static KEYS: Mutex<[KeysSlot; 2]> = Mutex::new([None, None]);

fn keys_for(state: &State, secret_is_base64: bool) -> Arc<Keys> {
    let mut slots = KEYS.lock().unwrap_or_else(|p| p.into_inner());
    let slot = &mut slots[usize::from(secret_is_base64)];
    if let Some((prev, keys)) = slot.as_ref() {
        if prev.same_table(state, EntityKind::JwtCredential) {
            return keys.clone();
        }
    }
    let keys = Arc::new(compile_keys(state, secret_is_base64));
    *slot = Some((state.clone(), keys.clone()));
    keys
}

fn compile_keys(state: &State, secret_is_base64: bool) -> Keys {
    let mut keys = Keys::new();
    for e in state.iter(EntityKind::JwtCredential) {
        let Entity::JwtCredential(c) = e else {
            continue;
        };
        let key = if c.algorithm == ES512 {
            c.rsa_public_key
                .as_deref()
                .and_then(es512_key)
                .map(Verifier::Es512)
        } else {
            algorithm(&c.algorithm).and_then(|alg| {
                let key = match alg {
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                        let secret = c.secret.as_deref()?;
                        if secret_is_base64 {
                            let bytes = STANDARD
                                .decode(secret)
                                .or_else(|_| URL_SAFE_NO_PAD.decode(secret.trim_end_matches('=')))
                                .ok()?;
                            DecodingKey::from_secret(&bytes).ok()?
                        } else {
                            DecodingKey::from_secret(secret.as_bytes()).ok()?
                        }
                    }
                    Algorithm::ES256 | Algorithm::ES384 => {
                        DecodingKey::from_ec_pem(c.rsa_public_key.as_deref()?.as_bytes()).ok()?
                    }
                    Algorithm::EdDSA => {
                        DecodingKey::from_ed_pem(c.rsa_public_key.as_deref()?.as_bytes()).ok()?
                    }
                    _ => DecodingKey::from_rsa_pem(c.rsa_public_key.as_deref()?.as_bytes()).ok()?,
                };
                Some(Verifier::Jose(alg, key))
            })
        };
        keys.insert(
            c.key.clone(),
            CompiledCredential {
                id: c.id,
                consumer: c.consumer.id,
                algorithm: c.algorithm.clone(),
                key,
            },
        );
    }
    keys
}

const ES512: &str = "ES512";

/// Whether `name` is an algorithm Kong (and so this plugin) verifies.
fn known_algorithm(name: &str) -> bool {
    name == ES512 || algorithm(name).is_some()
}

/// The algorithms `jsonwebtoken` verifies, by their JOSE names (ES512 is
/// handled apart, see `Verifier`).
fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

static BEARER: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"\s*[Bb]earer\s+(.+)").expect("static regex"));

/// A compact JWT split and decoded (signature not yet checked).
struct Decoded<'t> {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    signed: &'t str,
    signature: &'t str,
}

fn json_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Kong's `jwt_parser:new`: "invalid JSON", "invalid typ", "invalid alg".
fn decode(token: &str) -> Result<Decoded<'_>, &'static str> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Bad token; invalid JSON");
    };
    let (Some(header), Some(claims)) = (json_part(h), json_part(c)) else {
        return Err("Bad token; invalid JSON");
    };
    if let Some(typ) = header.get("typ") {
        if !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT")) {
            return Err("Bad token; invalid typ");
        }
    }
    let known = header
        .get("alg")
        .and_then(Value::as_str)
        .is_some_and(known_algorithm);
    if !known {
        return Err("Bad token; invalid alg");
    }
    Ok(Decoded {
        header,
        claims,
        signed: &token[..h.len() + 1 + c.len()],
        signature: s,
    })
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as f64
}

impl Jwt {
    /// Kong's `retrieve_tokens`: every source, deduplicated.
    fn token(&self, req: &http::request::Parts) -> Result<Option<String>, Failure> {
        let mut found: Vec<String> = Vec::new();
        let mut add = |t: String| {
            if !t.is_empty() && !found.contains(&t) {
                found.push(t);
            }
        };
        if let Some(q) = req.uri.query() {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                if self.config.uri_param_names.iter().any(|n| *n == k) {
                    add(v.into_owned());
                }
            }
        }
        for name in &self.config.cookie_names {
            if let Some(c) = common::cookie(&req.headers, name) {
                add(c);
            }
        }
        for name in &self.config.header_names {
            let Some(v) = req.headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if let Some(m) = BEARER.captures(v).and_then(|c| c.get(1)) {
                add(m.as_str().to_string());
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(Failure::Message("Multiple tokens provided", true)),
        }
    }

    fn authenticate(
        &self,
        ctx: &mut RequestCtx,
        req: &mut http::request::Parts,
    ) -> Result<(), Failure> {
        let Some(token) = self.token(req)? else {
            return Err(Failure::Message("Unauthorized", false));
        };
        let jwt = decode(&token).map_err(|m| Failure::Message(m, true))?;
        let name = &self.config.key_claim_name;
        let Some(key) = jwt.claims.get(name).or_else(|| jwt.header.get(name)) else {
            return Err(Failure::Owned(format!("No mandatory '{name}' in claims")));
        };
        let Some(key) = key.as_str().filter(|k| !k.is_empty()) else {
            return Err(Failure::Owned(format!("Invalid '{name}' in claims")));
        };
        let cred = self.keys.get(key);
        let consumer = cred.and_then(|c| match self.state.get(EntityKind::Consumer, c.consumer) {
            Some(Entity::Consumer(consumer)) => Some(consumer),
            _ => None,
        });
        let (Some(cred), Some(consumer)) = (cred, consumer) else {
            return Err(Failure::Owned(format!(
                "No credentials found for given '{name}'"
            )));
        };
        if jwt.header.get("alg").and_then(Value::as_str) != Some(cred.algorithm.as_str()) {
            return Err(Failure::Message("Invalid algorithm", true));
        }
        let Some(verifier) = &cred.key else {
            return Err(Failure::Message("Invalid key/secret", true));
        };
        if !verifier.verify(jwt.signature, jwt.signed.as_bytes()) {
            return Err(Failure::Message("Invalid signature", true));
        }
        self.check_claims(&jwt.claims)?;
        let revoked = self.revocations.is_revoked(&TokenFacts {
            token: &token,
            jti: jwt.claims.get("jti").and_then(Value::as_str),
            iat: jwt.claims.get("iat").and_then(Value::as_f64),
            consumer: consumer.id,
            credential: cred.id,
        });
        if revoked {
            return Err(Failure::Message("Token revoked", true));
        }
        let credential = CredentialInfo {
            id: cred.id,
            identifier: key.to_string(),
        };
        let claims = Value::Object(jwt.claims);
        common::set_consumer(
            ctx,
            &mut req.headers,
            &self.state,
            consumer,
            Some(credential),
        );
        ctx.authenticated_token = Some(token);
        ctx.token_claims = Some(claims);
        Ok(())
    }

    /// `claims_to_verify` then `maximum_expiration`, with Kong's bodies.
    fn check_claims(&self, claims: &Map<String, Value>) -> Result<(), Failure> {
        let now = now();
        let mut errors = Map::new();
        if self.config.verify_exp {
            match claims.get("exp").and_then(Value::as_f64) {
                None => {
                    errors.insert("exp".into(), json!("must be a number"));
                }
                Some(exp) if exp <= now => {
                    errors.insert("exp".into(), json!("token expired"));
                }
                _ => {}
            }
        }
        if self.config.verify_nbf {
            match claims.get("nbf").and_then(Value::as_f64) {
                None => {
                    errors.insert("nbf".into(), json!("must be a number"));
                }
                Some(nbf) if nbf > now => {
                    errors.insert("nbf".into(), json!("token not valid yet"));
                }
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(Failure::Claims(Value::Object(errors)));
        }
        if self.config.maximum_expiration > 0 {
            let exp = claims.get("exp").and_then(Value::as_f64);
            if exp.is_none_or(|exp| exp - now > self.config.maximum_expiration as f64) {
                return Err(Failure::Claims(
                    json!({"exp": "exceeds maximum allowed expiration"}),
                ));
            }
        }
        Ok(())
    }

    fn reply(&self, failure: Failure) -> Reply {
        let unauthorized = StatusCode::UNAUTHORIZED;
        match failure {
            Failure::Message(m, false) => {
                with_www_authenticate(Reply::message(unauthorized, m), &self.config.www_base)
            }
            Failure::Message(m, true) => {
                with_www_authenticate(Reply::message(unauthorized, m), &self.config.www_error)
            }
            Failure::Owned(m) => {
                with_www_authenticate(Reply::message(unauthorized, &m), &self.config.www_error)
            }
            Failure::Claims(body) => {
                with_www_authenticate(json_reply(unauthorized, &body), &self.config.www_error)
            }
        }
    }
}

impl Plugin for Jwt {
    fn access(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Option<Reply> {
        if !self.config.run_on_preflight && req.method == Method::OPTIONS {
            return None;
        }
        if self.config.anonymous.is_some() && common::already_authenticated(ctx) {
            return None;
        }
        match self.authenticate(ctx, req) {
            Ok(()) => None,
            Err(failure) => match &self.config.anonymous {
                Some(anon) => common::anonymous(ctx, &mut req.headers, &self.state, anon),
                None => Some(self.reply(failure)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(v: Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn decode_reports_kong_messages() {
        assert_eq!(decode("abc").err(), Some("Bad token; invalid JSON"));
        assert_eq!(decode("a.b.c.d").err(), Some("Bad token; invalid JSON"));
        let none = format!("{}.{}.", part(json!({"alg":"none"})), part(json!({})));
        assert_eq!(decode(&none).err(), Some("Bad token; invalid alg"));
        let typ = format!(
            "{}.{}.x",
            part(json!({"alg":"HS256","typ":"JWS"})),
            part(json!({}))
        );
        assert_eq!(decode(&typ).err(), Some("Bad token; invalid typ"));
        let ok = format!(
            "{}.{}.sig",
            part(json!({"alg":"HS256"})),
            part(json!({"iss":"k"}))
        );
        let d = decode(&ok).expect("decodes");
        assert_eq!(d.signature, "sig");
        assert_eq!(d.claims["iss"], "k");
        assert!(ok.starts_with(d.signed) && ok[d.signed.len()..] == *".sig");
    }

    #[test]
    fn es512_is_a_known_alg_and_its_signatures_are_checked() {
        use p521::ecdsa::{signature::Signer, Signature, SigningKey};
        use p521::elliptic_curve::Generate;
        use p521::pkcs8::{EncodePublicKey, LineEnding};
        let es = format!("{}.{}.s", part(json!({"alg":"ES512"})), part(json!({})));
        assert!(decode(&es).is_ok());
        let sk = SigningKey::generate();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let v = Verifier::Es512(es512_key(&pem).expect("a P-521 public key"));
        let sig: Signature = sk.sign(b"h.c");
        let b64 = URL_SAFE_NO_PAD.encode(sig.to_bytes());
        assert!(v.verify(&b64, b"h.c"));
        assert!(!v.verify(&b64, b"h.d"), "another message");
        assert!(!v.verify(&b64[..b64.len() - 4], b"h.c"), "short signature");
        assert!(!v.verify("!!", b"h.c"), "not base64url");
        assert!(es512_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_none());
    }

    #[test]
    fn bearer_regex_takes_the_token() {
        let m = BEARER.captures("bearer   a.b.c").and_then(|c| c.get(1));
        assert_eq!(m.map(|m| m.as_str()), Some("a.b.c"));
        assert!(BEARER.captures("Basic abc").is_none());
    }
}
