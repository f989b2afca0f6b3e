//! Turning a request body into a complete, validated entity before any
//! command is proposed: Kong's shorthands (`url`, foreign keys by name),
//! ids, timestamps, generated credentials, PATCH merging, plugin config
//! normalization, typed decoding (with form coercion) and validation.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::body::Decoded;
use super::credentials::generate_credentials;
use super::decode::{decode, normalize_plugin};
use super::errors::AdminError;
use super::lookup::{as_id, endpoint_key_field};
use super::revocations::revocation_fields;
use super::shorthand::{expand_url, resolve_foreign_keys, take_snis};
use crate::model::{validate, Entity, EntityKind, State};

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

    // Kong fills `auto` fields on insert and on PUT (a full replacement),
    // never on PATCH.
    let fill_auto = !matches!(mode, Mode::Patch(_));
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
    if fill_auto {
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

#[cfg(test)]
mod tests {
    use super::*;

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
