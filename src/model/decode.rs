//! Turning JSON (an Admin API body, a declarative entry) into a typed
//! entity, with Kong's messages on the offending field when a value has
//! the wrong type or is missing: `{"port": "expected an integer"}`,
//! `{"routes": …}`, `{"colour": "unknown field"}`.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::command::{Entity, EntityKind};
use super::errors::{ApplyError, FieldErrors};

/// Fills the defaults Kong's subschemas give: a route whose protocols are
/// `grpc`/`grpcs` has `strip_path` false unless the input says otherwise
/// (and validation refuses true). Applies to JSON before typed decoding.
pub fn subschema_defaults(kind: EntityKind, value: &mut Value) {
    if kind != EntityKind::Route {
        return;
    }
    let Value::Object(obj) = value else { return };
    if obj.get("strip_path").is_some_and(|v| !v.is_null()) {
        return;
    }
    // Kong picks the subschema by the first protocol listed.
    let first = match obj.get("protocols") {
        Some(Value::Array(items)) => items.first().and_then(Value::as_str),
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    if matches!(first, Some("grpc" | "grpcs")) {
        obj.insert("strip_path".into(), Value::Bool(false));
    }
}

/// Reads an entity of `kind` from JSON, naming the field at fault.
pub fn entity(kind: EntityKind, mut value: Value) -> Result<Entity, ApplyError> {
    subschema_defaults(kind, &mut value);
    Ok(match kind {
        EntityKind::Service => Entity::Service(typed(value)?),
        EntityKind::Route => Entity::Route(typed(value)?),
        EntityKind::Upstream => Entity::Upstream(typed(value)?),
        EntityKind::Target => Entity::Target(typed(value)?),
        EntityKind::Consumer => Entity::Consumer(typed(value)?),
        EntityKind::ConsumerGroup => Entity::ConsumerGroup(typed(value)?),
        EntityKind::ConsumerGroupMember => Entity::ConsumerGroupMember(typed(value)?),
        EntityKind::Plugin => Entity::Plugin(typed(value)?),
        EntityKind::JwtCredential => Entity::JwtCredential(typed(value)?),
        EntityKind::KeyAuthCredential => Entity::KeyAuthCredential(typed(value)?),
        EntityKind::AclCredential => Entity::AclCredential(typed(value)?),
        EntityKind::Certificate => Entity::Certificate(typed(value)?),
        EntityKind::Sni => Entity::Sni(typed(value)?),
        EntityKind::JwtRevocation => Entity::JwtRevocation(typed(value)?),
    })
}

/// Deserializes any value, turning a failure into a Kong field error.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApplyError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let inner = e.into_inner().to_string();
        let message = kong_message(&inner, &mut path);
        let mut errs = FieldErrors::new();
        let at: Vec<&str> = path.iter().map(String::as_str).collect();
        if at.is_empty() {
            errs.entity(message);
        } else {
            errs.at(&at, message);
        }
        match errs.into_result() {
            Err(err) => err,
            Ok(()) => ApplyError::field("@entity", inner),
        }
    })
}

/// The text between the first pair of backticks.
fn quoted(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    Some(&text[start..start + len])
}

/// Kong's wording for a serde message; may extend `path` with the field
/// the message names.
fn kong_message(inner: &str, path: &mut Vec<String>) -> String {
    let expected = inner.rsplit_once(", expected ").map_or("", |(_, e)| e);
    if inner.starts_with("unknown field") || inner.starts_with("missing field") {
        if let Some(field) = quoted(inner) {
            if path.last().map(String::as_str) != Some(field) {
                path.push(field.to_string());
            }
        }
        return if inner.starts_with("unknown") {
            "unknown field".into()
        } else {
            "required field missing".into()
        };
    }
    if inner.starts_with("invalid type: null") {
        return "required field missing".into();
    }
    if inner.starts_with("invalid value: integer") {
        let range = match expected {
            "u8" => Some((0, u64::from(u8::MAX))),
            "u16" => Some((0, u64::from(u16::MAX))),
            "u32" => Some((0, u64::from(u32::MAX))),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            return format!("value should be between {lo} and {hi}");
        }
    }
    if inner.contains("UUID") {
        return "expected a valid UUID".into();
    }
    let integer = ["u8", "u16", "u32", "u64", "i32", "i64", "usize"];
    if integer.contains(&expected) || inner.contains("expected an integer") {
        "expected an integer".into()
    } else if expected.contains("f64") || expected.contains("number") {
        "expected a number".into()
    } else if expected.contains("string") {
        "expected a string".into()
    } else if expected.contains("boolean") {
        "expected a boolean".into()
    } else if expected.contains("sequence") {
        "expected an array".into()
    } else if expected.contains("struct") || expected.contains("map") {
        "expected a record".into()
    } else {
        inner.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(kind: EntityKind, value: Value) -> Value {
        match entity(kind, value) {
            Err(e) => e.to_json()["fields"].clone(),
            Ok(e) => panic!("expected an error, got {e:?}"),
        }
    }

    const ID: &str = "5f8c4a6e-0000-4000-8000-000000000001";

    #[test]
    fn grpc_routes_default_strip_path_to_false() {
        let strip = |value: Value| match entity(EntityKind::Route, value) {
            Ok(Entity::Route(r)) => r.strip_path,
            other => panic!("{other:?}"),
        };
        assert!(!strip(json!({"id": ID, "protocols": ["grpcs", "grpc"]})));
        assert!(strip(
            json!({"id": ID, "protocols": ["grpc"], "strip_path": true})
        ));
        assert!(strip(json!({"id": ID, "protocols": ["http"]})));
        assert!(strip(json!({"id": ID})));
    }

    #[test]
    fn type_errors_name_the_field() {
        let f = fields(
            EntityKind::Service,
            json!({"id": ID, "host": "h", "port": "x"}),
        );
        assert_eq!(f["port"], "expected an integer");
        let f = fields(
            EntityKind::Service,
            json!({"id": ID, "host": "h", "port": 70000}),
        );
        assert_eq!(f["port"], "value should be between 0 and 65535");
        let f = fields(EntityKind::Service, json!({"id": ID, "host": 5}));
        assert_eq!(f["host"], "expected a string");
        let f = fields(EntityKind::Service, json!({"id": ID}));
        assert_eq!(f["host"], "required field missing");
        let f = fields(
            EntityKind::Service,
            json!({"id": ID, "host": "h", "colour": 1}),
        );
        assert_eq!(f["colour"], "unknown field");
        let f = fields(EntityKind::Service, json!({"id": "nope", "host": "h"}));
        assert_eq!(f["id"], "expected a valid UUID");
        let f = fields(EntityKind::Route, json!({"id": ID, "paths": "/a"}));
        assert_eq!(f["paths"], "expected an array");
        let f = fields(EntityKind::Route, json!({"id": ID, "paths": ["/a", 3]}));
        assert_eq!(f["paths"]["1"], "expected a string");
        let f = fields(EntityKind::Route, json!({"id": ID, "strip_path": "yes"}));
        assert_eq!(f["strip_path"], "expected a boolean");
        let f = fields(EntityKind::Route, json!({"id": ID, "service": {"id": "x"}}));
        assert_eq!(f["service"]["id"], "expected a valid UUID");
        let f = fields(EntityKind::Route, json!({"id": ID, "service": "users"}));
        assert_eq!(f["service"], "expected a record");
        let f = fields(
            EntityKind::Upstream,
            json!({"id": ID, "name": "u", "healthchecks": {"active": {"timeout": -1}}}),
        );
        assert!(f["healthchecks"]["active"]["timeout"].is_string());
    }

    #[test]
    fn good_json_reads_with_defaults() {
        let e = entity(EntityKind::Service, json!({"id": ID, "host": "h"})).expect("service");
        assert_eq!(e.to_json()["port"], 80);
        assert_eq!(e.to_json()["retries"], 5);
    }
}
