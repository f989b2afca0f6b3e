//! Per-plugin config schemas: Kong's defaults filled in, bad fields named.
//!
//! PLACEHOLDER (to be completed by the model work): passes configs through.

use super::errors::ApplyError;

/// Names of the plugins this gateway runs.
pub const KNOWN_PLUGINS: &[&str] = &[
    "jwt",
    "key-auth",
    "acl",
    "rate-limiting",
    "correlation-id",
    "cors",
    "ip-restriction",
    "request-size-limiting",
    "request-transformer",
    "response-transformer",
    "prometheus",
];

/// Validates `config` for plugin `name` and returns it with defaults filled.
pub fn normalize_config(
    name: &str,
    config: serde_json::Value,
) -> Result<serde_json::Value, ApplyError> {
    if !KNOWN_PLUGINS.contains(&name) {
        return Err(ApplyError::field(
            "name",
            format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property"),
        ));
    }
    Ok(config)
}
