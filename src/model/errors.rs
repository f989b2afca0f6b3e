//! Errors of applying a command, shaped as Kong's Admin API reports them
//! (`{"code","name","message","fields"}`, kong/db/errors.lua).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A rule a command broke. Returned by `State::apply` (which then changes
/// nothing) and by validation before a command is proposed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ApplyError {
    /// Kong code 2, HTTP 400. `fields` maps a field (or `@entity`) to messages.
    #[error("{}", schema_message(.fields))]
    SchemaViolation {
        fields: BTreeMap<String, serde_json::Value>,
    },
    /// Kong code 4, HTTP 400.
    #[error("{message}")]
    ForeignKey {
        message: String,
        fields: BTreeMap<String, serde_json::Value>,
    },
    /// Kong code 5, HTTP 409. `value` is Kong's rendering, e.g. `{username="bob"}`.
    #[error("UNIQUE violation detected on '{value}'")]
    Unique { value: String },
    /// Kong code 6, HTTP 404.
    #[error("Not found")]
    NotFound,
    /// Kong code 3 ("primary key violation"), HTTP 400: POST with an id in use.
    #[error("primary key violation on key '{{id=\"{id}\"}}'")]
    PrimaryKey { id: String },
}

fn schema_message(fields: &BTreeMap<String, serde_json::Value>) -> String {
    let mut parts = Vec::new();
    for (field, msg) in fields {
        flatten(field, msg, &mut parts);
    }
    match parts.len() {
        1 => format!("schema violation ({})", parts[0]),
        n => format!("{n} schema violations ({})", parts.join("; ")),
    }
}

fn flatten(prefix: &str, msg: &serde_json::Value, out: &mut Vec<String>) {
    match msg {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                flatten(prefix, item, out);
            }
        }
        // Kong prints entity-level messages bare: "schema violation (at least …)".
        serde_json::Value::String(s) if prefix == "@entity" => out.push(s.clone()),
        serde_json::Value::String(s) => out.push(format!("{prefix}: {s}")),
        other => out.push(format!("{prefix}: {other}")),
    }
}

impl ApplyError {
    /// A schema violation on one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut fields = BTreeMap::new();
        fields.insert(field.to_string(), serde_json::Value::String(message.into()));
        ApplyError::SchemaViolation { fields }
    }

    /// Kong's numeric error code.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::SchemaViolation { .. } => 2,
            ApplyError::PrimaryKey { .. } => 3,
            ApplyError::ForeignKey { .. } => 4,
            ApplyError::Unique { .. } => 5,
            ApplyError::NotFound => 6,
        }
    }

    /// Kong's error name.
    pub fn name(&self) -> &'static str {
        match self {
            ApplyError::SchemaViolation { .. } => "schema violation",
            ApplyError::PrimaryKey { .. } => "primary key violation",
            ApplyError::ForeignKey { .. } => "foreign key violation",
            ApplyError::Unique { .. } => "unique constraint violation",
            ApplyError::NotFound => "not found",
        }
    }

    /// The HTTP status the Admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ApplyError::Unique { .. } | ApplyError::PrimaryKey { .. } => 409,
            ApplyError::NotFound => 404,
            _ => 400,
        }
    }

    /// Kong's JSON error body.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ApplyError::NotFound => serde_json::json!({"message": "Not found"}),
            ApplyError::SchemaViolation { fields } | ApplyError::ForeignKey { fields, .. } => {
                serde_json::json!({
                    "code": self.code(), "name": self.name(),
                    "message": self.to_string(), "fields": fields,
                })
            }
            _ => serde_json::json!({
                "code": self.code(), "name": self.name(),
                "message": self.to_string(), "fields": {},
            }),
        }
    }
}

/// Collects Kong-shaped field errors: `field → message`, nested records as
/// objects (`{"config": {"minute": "…"}}`) and entity-level messages under
/// `@entity`. The first message for a field wins, as in Kong.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors {
    fields: BTreeMap<String, serde_json::Value>,
}

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` at `path` (e.g. `["config", "minute"]`).
    pub fn at(&mut self, path: &[&str], message: impl Into<String>) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let slot = self
            .fields
            .entry(first.to_string())
            .or_insert(serde_json::Value::Null);
        insert_nested(slot, rest, message.into());
    }

    /// Records `message` on a top-level field.
    pub fn field(&mut self, field: &str, message: impl Into<String>) {
        self.at(&[field], message);
    }

    /// Records an entity-level message (`@entity`).
    pub fn entity(&mut self, message: impl Into<String>) {
        let slot = self
            .fields
            .entry("@entity".to_string())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(items) = slot {
            items.push(serde_json::Value::String(message.into()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else a schema violation.
    pub fn into_result(self) -> Result<(), ApplyError> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(ApplyError::SchemaViolation {
                fields: self.fields,
            })
        }
    }
}

fn insert_nested(slot: &mut serde_json::Value, rest: &[&str], message: String) {
    match rest.split_first() {
        None => {
            if slot.is_null() {
                *slot = serde_json::Value::String(message);
            }
        }
        Some((key, tail)) => {
            if slot.is_null() {
                *slot = serde_json::Value::Object(Default::default());
            }
            if let serde_json::Value::Object(map) = slot {
                let inner = map
                    .entry(key.to_string())
                    .or_insert(serde_json::Value::Null);
                insert_nested(inner, tail, message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_errors_render_like_kong() {
        let mut errs = FieldErrors::new();
        errs.at(&["config", "minute"], "expected a number");
        errs.entity("at least one of these fields must be non-empty: 'a', 'b'");
        errs.field("name", "unknown field");
        let err = errs.into_result().unwrap_err();
        let body = err.to_json();
        assert_eq!(body["code"], 2);
        assert_eq!(body["fields"]["config"]["minute"], "expected a number");
        assert_eq!(
            body["message"],
            "3 schema violations (at least one of these fields must be non-empty: 'a', 'b'; \
             config.minute: expected a number; name: unknown field)"
        );
    }

    #[test]
    fn first_message_for_a_field_wins() {
        let mut errs = FieldErrors::new();
        errs.field("port", "first");
        errs.field("port", "second");
        assert_eq!(
            errs.into_result().unwrap_err().to_string(),
            "schema violation (port: first)"
        );
    }
}
