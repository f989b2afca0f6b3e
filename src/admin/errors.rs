//! Every way an Admin API request can fail, rendered as Kong renders it:
//! `{"code","name","message","fields"}` for DAO errors, `{"message"}` for
//! the rest. Also turns serde's complaints into Kong schema violations that
//! name the field.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::backend::WriteError;
use crate::model::ApplyError;

/// An Admin API failure; converts into the HTTP answer.
#[derive(Debug)]
pub enum AdminError {
    /// A model rule (schema, foreign key, unique, not found).
    Apply(ApplyError),
    /// A Kong DAO-style error outside `ApplyError` (invalid size, offset …).
    Kong {
        status: StatusCode,
        code: u16,
        name: &'static str,
        message: String,
        fields: Value,
    },
    /// A bare `{"message": …}` answer.
    Message(StatusCode, String),
}

impl AdminError {
    pub fn not_found() -> Self {
        AdminError::Apply(ApplyError::NotFound)
    }

    /// True for the answers a node lagging behind the leader could give
    /// wrongly: an entity or a reference not found, a name seemingly free.
    pub fn may_come_from_lag(&self) -> bool {
        matches!(
            self,
            AdminError::Apply(
                ApplyError::NotFound | ApplyError::ForeignKey { .. } | ApplyError::Unique { .. }
            )
        )
    }

    pub fn message(status: StatusCode, message: impl Into<String>) -> Self {
        AdminError::Message(status, message.into())
    }

    pub fn bad_json() -> Self {
        Self::message(StatusCode::BAD_REQUEST, "Cannot parse JSON body")
    }

    /// A schema violation on one (possibly dotted) field.
    pub fn field(path: &str, message: impl Into<String>) -> Self {
        AdminError::Apply(violation_at(path, message.into()))
    }

    pub fn invalid_size() -> Self {
        AdminError::Kong {
            status: StatusCode::BAD_REQUEST,
            code: 9,
            name: "invalid size",
            message: "size must be an integer between 1 and 1000".into(),
            fields: json!({}),
        }
    }

    pub fn invalid_offset(offset: &str) -> Self {
        AdminError::Kong {
            status: StatusCode::BAD_REQUEST,
            code: 7,
            name: "invalid offset",
            message: format!("'{offset}' is not a valid offset: bad base64 encoding"),
            fields: json!({}),
        }
    }

    /// Kong's "invalid options" error (code 11), e.g. for a bad `tags` query.
    pub fn invalid_option(option: &str, message: &str) -> Self {
        AdminError::Kong {
            status: StatusCode::BAD_REQUEST,
            code: 11,
            name: "invalid options",
            message: format!("invalid option ({option}: {message})"),
            fields: json!({ option: message }),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Apply(e) => {
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            AdminError::Kong { status, .. } | AdminError::Message(status, _) => *status,
        }
    }
}

impl From<ApplyError> for AdminError {
    fn from(e: ApplyError) -> Self {
        AdminError::Apply(e)
    }
}

impl From<WriteError> for AdminError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(e) => AdminError::Apply(e),
            WriteError::Unavailable(why) => AdminError::Message(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cluster unavailable: {why}"),
            ),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match self {
            AdminError::Apply(e) => e.to_json(),
            AdminError::Kong {
                code,
                name,
                message,
                fields,
                ..
            } => json!({"code": code, "name": name, "message": message, "fields": fields}),
            AdminError::Message(_, message) => json!({ "message": message }),
        };
        (status, Json(body)).into_response()
    }
}

/// A schema violation whose `fields` nest along `path` ("service.id" →
/// `{"service": {"id": message}}`), as Kong nests record fields.
pub fn violation_at(path: &str, message: String) -> ApplyError {
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let Some((first, rest)) = segments.split_first() else {
        let mut fields = BTreeMap::new();
        fields.insert("@entity".to_string(), json!([message]));
        return ApplyError::SchemaViolation { fields };
    };
    let mut leaf = Value::String(message);
    for seg in rest.iter().rev() {
        leaf = json!({ *seg: leaf });
    }
    let mut fields = BTreeMap::new();
    fields.insert((*first).to_string(), leaf);
    ApplyError::SchemaViolation { fields }
}

/// What a serde error means, in Kong's words, and where it points.
pub struct SerdeComplaint {
    /// Dotted path of the offending field ("" for the entity itself).
    pub path: String,
    pub message: String,
    /// What the value should have been, when the error was a type mismatch
    /// on a string (form bodies send only strings and may be coerced).
    pub wanted_from_string: Option<Wanted>,
}

/// The JSON type a string value could be coerced to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Integer,
    Number,
    Boolean,
    Array,
}

/// Reads a `serde_path_to_error` failure into Kong terms.
pub fn serde_complaint(err: &serde_path_to_error::Error<serde_json::Error>) -> SerdeComplaint {
    let mut path = String::new();
    for seg in err.path().iter() {
        if let serde_path_to_error::Segment::Map { key } = seg {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        }
    }
    let raw = err.inner().to_string();
    // serde_json appends " at line L column C" when parsing text.
    let raw = raw.split(" at line ").next().unwrap_or(&raw).to_string();
    let mut wanted_from_string = None;
    let message = if let Some(name) = backticked(&raw, "unknown field `") {
        // serde_path_to_error already ends the path with the unknown key.
        if path.rsplit('.').next() != Some(name.as_str()) {
            push_field(&mut path, &name);
        }
        "unknown field".to_string()
    } else if let Some(name) = backticked(&raw, "missing field `") {
        push_field(&mut path, &name);
        "required field missing".to_string()
    } else if raw.contains("UUID") || raw.contains("uuid") {
        "expected a valid UUID".to_string()
    } else if let Some(expected) = raw.strip_prefix("invalid type: ") {
        let (found, expected) = expected.split_once(", expected ").unwrap_or(("", expected));
        let (msg, wanted) = expected_message(expected);
        if found.starts_with("string") {
            wanted_from_string = wanted;
        }
        msg
    } else if let Some(rest) = raw.strip_prefix("invalid value: ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        match expected {
            "u16" => "value should be between 0 and 65535".to_string(),
            "u8" => "value should be between 0 and 255".to_string(),
            "u32" | "u64" => "value must be a non-negative integer".to_string(),
            _ => format!("invalid value, expected {expected}"),
        }
    } else {
        raw
    };
    SerdeComplaint {
        path,
        message,
        wanted_from_string,
    }
}

fn push_field(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
}

fn backticked(raw: &str, prefix: &str) -> Option<String> {
    let rest = raw.strip_prefix(prefix)?;
    Some(rest.split('`').next().unwrap_or(rest).to_string())
}

fn expected_message(expected: &str) -> (String, Option<Wanted>) {
    let e = expected.trim();
    let integer = [
        "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "usize", "isize",
    ];
    if integer.contains(&e) || e.contains("integer") {
        ("expected an integer".into(), Some(Wanted::Integer))
    } else if e == "f64" || e == "f32" || e.contains("number") {
        ("expected a number".into(), Some(Wanted::Number))
    } else if e.contains("bool") {
        ("expected a boolean".into(), Some(Wanted::Boolean))
    } else if e.contains("sequence") || e.contains("array") {
        ("expected an array".into(), Some(Wanted::Array))
    } else if e.contains("string") || e == "a borrowed str" {
        ("expected a string".into(), None)
    } else if e.contains("struct") || e.contains("map") {
        ("expected a record".into(), None)
    } else {
        (format!("expected {e}"), None)
    }
}

/// Flattens a Kong `fields` object into (dotted path, message) pairs.
pub fn field_paths(fields: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(prefix, item, out);
                }
            }
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    for (k, v) in fields {
        walk(k, v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        port: u16,
        inner: Option<Inner>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        id: uuid::Uuid,
    }

    fn complaint(v: Value) -> SerdeComplaint {
        let err = serde_path_to_error::deserialize::<_, T>(v).unwrap_err();
        serde_complaint(&err)
    }

    #[test]
    fn names_the_field() {
        let c = complaint(json!({"port": 1, "bogus": 2}));
        assert_eq!(
            (c.path.as_str(), c.message.as_str()),
            ("bogus", "unknown field")
        );
        let c = complaint(json!({"port": "80"}));
        assert_eq!(c.message, "expected an integer");
        assert_eq!(c.wanted_from_string, Some(Wanted::Integer));
        let c = complaint(json!({"port": 1, "inner": {"id": "nope"}}));
        assert_eq!(
            (c.path.as_str(), c.message.as_str()),
            ("inner.id", "expected a valid UUID")
        );
        let c = complaint(json!({}));
        assert_eq!(
            (c.path.as_str(), c.message.as_str()),
            ("port", "required field missing")
        );
        let c = complaint(json!({"port": 70000}));
        assert_eq!(c.message, "value should be between 0 and 65535");
    }

    #[test]
    fn nests_fields() {
        let e = violation_at("service.id", "expected a valid UUID".into());
        assert_eq!(
            e.to_json()["fields"],
            json!({"service": {"id": "expected a valid UUID"}})
        );
        assert_eq!(
            e.to_json()["message"],
            "schema violation (service.id: expected a valid UUID)"
        );
    }
}
