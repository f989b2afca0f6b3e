//! Turning a request body into a complete, validated entity before any
//! command is proposed: Kong's shorthands (`url`, foreign keys by name),
//! ids, timestamps, generated credentials, PATCH merging, plugin config
//! normalization, typed decoding (with form coercion) and validation.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::body::{coerce_at, wanted_from_message, Decoded};
use super::credentials;
use super::errors::{field_paths, serde_complaint, violation_at, AdminError};
use super::lookup::{as_id, endpoint_key_field, find, foreign_keys};
use crate::model::{plugin_schemas, validate, ApplyError, Entity, EntityKind, State};

/// How the body relates to what is stored.
pub enum Mode<'a> {
    /// POST: a new entity.
    Create,
    /// PUT: replaces `existing`, or creates the entity the path names.
    Put {
        existing: Option<&'a Entity>,
        key: &'a str,
    },
    /// PATCH: the body is merged into `existing`.
    Patch(&'a Entity),
}

/// A prepared write.
#[derive(Debug)]
pub struct Prepared {
    pub entity: Entity,
    /// Certificates only: the SNI names the body asked for, if it did.
    pub snis: Option<Vec<String>>,
}

/// Kinds whose entities carry `updated_at`.
pub fn has_updated_at(kind: EntityKind) -> bool {
    use EntityKind as K;
    matches!(
        kind,
        K::Service
            | K::Route
            | K::Upstream
            | K::Target
            | K::Consumer
            | K::ConsumerGroup
            | K::Plugin
            | K::Certificate
            | K::Sni
    )
}

/// Builds the entity a write asks for. `parent` is the foreign key the
/// path imposes (nested collections).
pub fn prepare(
    state: &State,
    kind: EntityKind,
    decoded: Decoded,
    mode: Mode<'_>,
    parent: Option<(&str, Uuid)>,
    now: i64,
) -> Result<Prepared, AdminError> {
    let from_form = decoded.from_form;
    let Value::Object(mut body) = decoded.value else {
        return Err(AdminError::bad_json());
    };
    if kind == EntityKind::Service {
        expand_url(&mut body)?;
    }
    let snis = match kind {
        EntityKind::Certificate => take_snis(&mut body)?,
        _ => None,
    };
    if kind == EntityKind::JwtRevocation {
        revocation_fields(&mut body, now)?;
    }
    resolve_foreign_keys(state, kind, &mut body)?;

    let creating = !matches!(
        mode,
        Mode::Patch(_)
            | Mode::Put {
                existing: Some(_),
                ..
            }
    );
    let mut value = match mode {
        Mode::Create => {
            let id = match body.get("id") {
                None | Some(Value::Null) => Uuid::new_v4(),
                Some(Value::String(s)) => {
                    as_id(s).ok_or_else(|| AdminError::field("id", "expected a valid UUID"))?
                }
                Some(_) => return Err(AdminError::field("id", "expected a string")),
            };
            body.insert("id".into(), json!(id));
            body
        }
        Mode::Put { existing, key } => {
            let id = match existing {
                Some(e) => e.id(),
                None => as_id(key).unwrap_or_else(Uuid::new_v4),
            };
            // As Kong's PUT: a path that is not an id names the entity.
            if as_id(key).is_none() {
                if let Some(field) = endpoint_key_field(kind) {
                    if body.get(field).is_none_or(Value::is_null) {
                        body.insert(field.into(), json!(key));
                    }
                }
            }
            if let Some(created) = existing.and_then(|e| e.to_json().get("created_at").cloned()) {
                body.insert("created_at".into(), created);
            }
            body.insert("id".into(), json!(id));
            body
        }
        Mode::Patch(existing) => {
            let mut merged = existing.to_json();
            merge(&mut merged, Value::Object(body));
            let Value::Object(mut merged) = merged else {
                return Err(AdminError::bad_json());
            };
            merged.insert("id".into(), json!(existing.id()));
            merged
        }
    };
    if let Some((field, id)) = parent {
        value.insert(field.into(), json!({ "id": id }));
    }
    if value.get("created_at").is_none_or(Value::is_null) {
        value.insert("created_at".into(), json!(now));
    }
    if has_updated_at(kind) {
        value.insert("updated_at".into(), json!(now));
    }
    if creating {
        generate_credentials(kind, &mut value);
    }
    strip_nulls(&mut value);
    if kind == EntityKind::Plugin {
        normalize_plugin(&mut value, from_form)?;
    }
    let entity = decode(kind, Value::Object(value), from_form)?;
    validate::validate_entity(&entity)?;
    Ok(Prepared { entity, snis })
}

/// Applies a JSON merge: objects merge recursively, null removes, other
/// values replace.
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else if let Some(existing) = t.get_mut(&k) {
                    merge(existing, v);
                } else {
                    t.insert(k, v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        if let Value::Object(inner) = v {
            strip_nulls(inner);
        }
    }
}

/// Kong's `url` shorthand: `protocol://host[:port][/path]`.
fn expand_url(body: &mut Map<String, Value>) -> Result<(), AdminError> {
    let Some(url) = body.remove("url") else {
        return Ok(());
    };
    let Value::String(url) = url else {
        return Err(AdminError::field("url", "expected a string"));
    };
    let invalid = || AdminError::field("url", "missing host in url");
    let (protocol, rest) = url.split_once("://").ok_or_else(invalid)?;
    let protocol = protocol.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (host, port) = split_host_port(authority).ok_or_else(invalid)?;
    if host.is_empty() {
        return Err(invalid());
    }
    let port = match port {
        Some(p) => p,
        None if protocol == "https" || protocol == "grpcs" || protocol == "tls" => 443,
        None => 80,
    };
    body.insert("protocol".into(), json!(protocol));
    body.insert("host".into(), json!(host));
    body.insert("port".into(), json!(port));
    if let Some(path) = path {
        body.insert("path".into(), json!(path));
    }
    Ok(())
}

fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        return Some((format!("[{host}]"), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), Some(port.parse().ok()?))),
        None => Some((authority.to_string(), None)),
    }
}

fn take_snis(body: &mut Map<String, Value>) -> Result<Option<Vec<String>>, AdminError> {
    match body.remove("snis") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::String(s)) => Ok(Some(vec![s])),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(AdminError::field("snis", "expected a string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(AdminError::field("snis", "expected an array")),
    }
}

/// `/jwt-revocations`: the token itself becomes its hash (and its `exp`
/// the entry's expiry); exactly one matcher must be given.
fn revocation_fields(body: &mut Map<String, Value>, now: i64) -> Result<(), AdminError> {
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

/// Foreign keys may be given as `{"id": uuid}`, by the parent's endpoint
/// key (`{"name": "x"}`, `{"username": "x"}`), or as a bare id or name.
fn resolve_foreign_keys(
    state: &State,
    kind: EntityKind,
    body: &mut Map<String, Value>,
) -> Result<(), AdminError> {
    for &(field, target) in foreign_keys(kind) {
        let Some(value) = body.get(field) else {
            continue;
        };
        let (key, rendered) = match value {
            Value::Null => continue,
            Value::String(s) => (s.clone(), format!("{{id=\"{s}\"}}")),
            Value::Object(map) => match map.get("id") {
                Some(Value::String(s)) => {
                    if as_id(s).is_none() {
                        return Err(AdminError::field(
                            &format!("{field}.id"),
                            "expected a valid UUID",
                        ));
                    }
                    continue;
                }
                Some(_) => {
                    return Err(AdminError::field(
                        &format!("{field}.id"),
                        "expected a string",
                    ))
                }
                None => match map.iter().find_map(|(k, v)| Some((k, v.as_str()?))) {
                    Some((k, s)) => (s.to_string(), format!("{{{k}=\"{s}\"}}")),
                    None => continue,
                },
            },
            _ => return Err(AdminError::field(field, "expected a record")),
        };
        let id = match find(state, target, &key, None) {
            Some(e) => e.id(),
            None => match as_id(&key) {
                // Existence of an id is the model's foreign-key rule.
                Some(id) => id,
                None => {
                    let message = format!(
                        "the foreign key '{rendered}' does not reference an existing '{}' entity.",
                        target.collection()
                    );
                    let mut fields = std::collections::BTreeMap::new();
                    fields.insert(field.to_string(), json!(message));
                    return Err(ApplyError::ForeignKey { message, fields }.into());
                }
            },
        };
        body.insert(field.into(), json!({ "id": id }));
    }
    Ok(())
}

fn generate_credentials(kind: EntityKind, value: &mut Map<String, Value>) {
    let missing = |v: &Map<String, Value>, f: &str| v.get(f).is_none_or(Value::is_null);
    match kind {
        EntityKind::JwtCredential => {
            if missing(value, "key") {
                value.insert("key".into(), json!(credentials::random_key()));
            }
            if missing(value, "secret") {
                value.insert("secret".into(), json!(credentials::random_secret()));
            }
        }
        EntityKind::KeyAuthCredential if missing(value, "key") => {
            value.insert("key".into(), json!(credentials::random_key()));
        }
        _ => {}
    }
}

/// Most coercion retries one decode may make (one per offending field).
const MAX_COERCIONS: usize = 64;

fn normalize_plugin(value: &mut Map<String, Value>, from_form: bool) -> Result<(), AdminError> {
    let name = match value.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(AdminError::field("name", "expected a string")),
        None => return Err(AdminError::field("name", "required field missing")),
    };
    let mut config = value.remove("config").unwrap_or_else(|| json!({}));
    for _ in 0..MAX_COERCIONS {
        match plugin_schemas::normalize_config(&name, config.clone()) {
            Ok(normalized) => {
                value.insert("config".into(), normalized);
                return Ok(());
            }
            Err(ApplyError::SchemaViolation { fields }) if from_form => {
                let mut changed = false;
                for (path, message) in field_paths(&fields) {
                    let inner = path.strip_prefix("config.").unwrap_or(&path);
                    changed |= coerce_at(&mut config, inner, wanted_from_message(&message));
                }
                if !changed {
                    return Err(ApplyError::SchemaViolation { fields }.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AdminError::field("config", "could not be decoded"))
}

fn decode_once(
    kind: EntityKind,
    value: &Value,
) -> Result<Entity, serde_path_to_error::Error<serde_json::Error>> {
    macro_rules! decode_as {
        ($($variant:ident),+) => {
            match kind {
                $(EntityKind::$variant => Entity::$variant(serde_path_to_error::deserialize(value)?),)+
            }
        };
    }
    Ok(decode_as!(
        Service,
        Route,
        Upstream,
        Target,
        Consumer,
        ConsumerGroup,
        ConsumerGroupMember,
        Plugin,
        JwtCredential,
        KeyAuthCredential,
        AclCredential,
        Certificate,
        Sni,
        JwtRevocation
    ))
}

/// Decodes the typed entity; form values that serde rejected as strings
/// are coerced to the wanted type and decoding retried.
pub fn decode(kind: EntityKind, value: Value, from_form: bool) -> Result<Entity, AdminError> {
    decode_with(value, from_form, |v| decode_once(kind, v))
}

/// `decode` for any deserializable type (e.g. a cluster request).
pub fn decode_plain<T: serde::de::DeserializeOwned>(
    value: Value,
    from_form: bool,
) -> Result<T, AdminError> {
    decode_with(value, from_form, |v| serde_path_to_error::deserialize(v))
}

fn decode_with<T>(
    mut value: Value,
    from_form: bool,
    attempt: impl Fn(&Value) -> Result<T, serde_path_to_error::Error<serde_json::Error>>,
) -> Result<T, AdminError> {
    for _ in 0..MAX_COERCIONS {
        let err = match attempt(&value) {
            Ok(decoded) => return Ok(decoded),
            Err(err) => err,
        };
        let complaint = serde_complaint(&err);
        let coerced = from_form
            && complaint.wanted_from_string.is_some()
            && coerce_at(&mut value, &complaint.path, complaint.wanted_from_string);
        if !coerced {
            return Err(AdminError::Apply(violation_at(
                &complaint.path,
                complaint.message,
            )));
        }
    }
    Err(AdminError::field("", "could not be decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_shorthand() {
        let mut body = json!({"url": "https://example.com:8443/api"});
        let Value::Object(ref mut map) = body else {
            unreachable!()
        };
        expand_url(map).unwrap();
        assert_eq!(
            body,
            json!({"protocol": "https", "host": "example.com", "port": 8443, "path": "/api"})
        );
        let mut bad = Map::new();
        bad.insert("url".into(), json!("nope"));
        assert!(expand_url(&mut bad).is_err());
    }

    #[test]
    fn updated_at_list_matches_the_entities() {
        // Decoding with an `updated_at` must succeed exactly for the kinds
        // listed, so the list cannot drift from entities.rs.
        let samples: Vec<(EntityKind, Value)> = vec![
            (EntityKind::Service, json!({"host": "h"})),
            (EntityKind::Consumer, json!({"username": "u"})),
            (
                EntityKind::JwtCredential,
                json!({"consumer": {"id": Uuid::nil()}, "key": "k"}),
            ),
            (
                EntityKind::KeyAuthCredential,
                json!({"consumer": {"id": Uuid::nil()}, "key": "k"}),
            ),
            (
                EntityKind::AclCredential,
                json!({"consumer": {"id": Uuid::nil()}, "group": "g"}),
            ),
            (EntityKind::JwtRevocation, json!({"jti": "x"})),
            (EntityKind::Upstream, json!({"name": "u"})),
            (
                EntityKind::Sni,
                json!({"name": "a", "certificate": {"id": Uuid::nil()}}),
            ),
        ];
        for (kind, mut v) in samples {
            v["id"] = json!(Uuid::nil());
            v["updated_at"] = json!(1);
            assert_eq!(
                decode(kind, v, false).is_ok(),
                has_updated_at(kind),
                "{kind:?}"
            );
        }
    }
}
