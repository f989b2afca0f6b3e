//! Typed decoding of request JSON into entities (and other requests), with
//! Kong's schema-violation errors and form coercion: form values are all
//! strings, so a string the decoder rejected is converted to the type it
//! wanted and decoding retried. Plugin configs go through the model's
//! schema the same way.

use serde_json::{json, Map, Value};

use super::body::{coerce_at, wanted_from_message};
use super::errors::{field_paths, serde_complaint, violation_at, AdminError};
use crate::model::{plugin_schemas, ApplyError, Entity, EntityKind};

/// Most coercion retries one decode may make (one per offending field).
const MAX_COERCIONS: usize = 64;

/// Replaces a plugin's `config` with the model's normalized form (Kong's
/// defaults filled in); for form bodies, fields the schema rejected as
/// strings are coerced and the schema asked again.
pub fn normalize_plugin(value: &mut Map<String, Value>, from_form: bool) -> Result<(), AdminError> {
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
pub fn decode(kind: EntityKind, mut value: Value, from_form: bool) -> Result<Entity, AdminError> {
    crate::model::decode::subschema_defaults(kind, &mut value);
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
