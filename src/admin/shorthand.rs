//! What Kong accepts in a body beyond an entity's own fields: the `url`
//! of a service, the `snis` of a certificate, and foreign keys given by
//! the parent's name (`{"name": "x"}`) or as a bare id or name.

use serde_json::{json, Map, Value};

use super::errors::AdminError;
use super::lookup::{as_id, find, foreign_keys};
use crate::model::{ApplyError, EntityKind, State};

/// Kong's `url` shorthand: `protocol://host[:port][/path]`.
pub fn expand_url(body: &mut Map<String, Value>) -> Result<(), AdminError> {
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

pub fn take_snis(body: &mut Map<String, Value>) -> Result<Option<Vec<String>>, AdminError> {
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

/// Foreign keys may be given as `{"id": uuid}`, by the parent's endpoint
/// key (`{"name": "x"}`, `{"username": "x"}`), or as a bare id or name.
pub fn resolve_foreign_keys(
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
}
