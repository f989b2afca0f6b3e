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
