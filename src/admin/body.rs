//! Request bodies as Kong accepts them: JSON, x-www-form-urlencoded and
//! multipart/form-data, with Kong's nested form keys (`paths[]=/a`,
//! `paths[1]=/a`, `config.minute=5`, `service.id=…`) turned into JSON.
//! Form values arrive as strings; `coerce_at` converts one of them once a
//! decoder said which type it wanted.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::{header, HeaderMap, Request, StatusCode};
use serde_json::{Map, Value};

use super::errors::{AdminError, Wanted};

/// Largest body the Admin API reads (a declarative config may be large).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// A decoded body: a JSON object, and whether it came from a form (whose
/// scalar values are all strings and may need coercion).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub value: Value,
    pub from_form: bool,
}

/// Reads the raw bytes, refusing bodies over `MAX_BODY_BYTES` with 413.
pub async fn read_bytes(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, AdminError> {
    let too_large = || AdminError::message(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())
}

/// The Content-Type's media type, lowercased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Decodes a body into a JSON object according to its Content-Type.
pub async fn decode(headers: &HeaderMap, bytes: bytes::Bytes) -> Result<Decoded, AdminError> {
    let json = |from_form| Decoded {
        value: Value::Object(Map::new()),
        from_form,
    };
    match media_type(headers).as_deref() {
        None | Some("") => {
            // curl without --data sends no Content-Type: an empty body is
            // an empty object (e.g. `POST /consumers/x/key-auth`).
            if bytes.iter().all(u8::is_ascii_whitespace) {
                Ok(json(false))
            } else if bytes.first() == Some(&b'{') {
                parse_json(&bytes)
            } else {
                Err(unsupported())
            }
        }
        Some("application/json") => parse_json(&bytes),
        Some(ct) if ct.ends_with("+json") => parse_json(&bytes),
        Some("application/x-www-form-urlencoded") => {
            let pairs = form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect::<Vec<_>>();
            Ok(Decoded {
                value: nest_pairs(&pairs)?,
                from_form: true,
            })
        }
        Some("multipart/form-data") => {
            let pairs = multipart_pairs(headers, bytes).await?;
            Ok(Decoded {
                value: nest_pairs(&pairs)?,
                from_form: true,
            })
        }
        Some(_) => Err(unsupported()),
    }
}

fn unsupported() -> AdminError {
    AdminError::message(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type")
}

fn parse_json(bytes: &[u8]) -> Result<Decoded, AdminError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ Value::Object(_)) => Ok(Decoded {
            value,
            from_form: false,
        }),
        _ => Err(AdminError::bad_json()),
    }
}

async fn multipart_pairs(
    headers: &HeaderMap,
    bytes: bytes::Bytes,
) -> Result<Vec<(String, String)>, AdminError> {
    let bad = || AdminError::message(StatusCode::BAD_REQUEST, "Cannot parse multipart body");
    let mut request = Request::new(Body::from(bytes));
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        request
            .headers_mut()
            .insert(header::CONTENT_TYPE, ct.clone());
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| bad())?;
    let mut pairs = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|_| bad())? {
        let name = field.name().unwrap_or_default().to_string();
        let text = field.text().await.map_err(|_| bad())?;
        pairs.push((name, text));
    }
    Ok(pairs)
}

/// One step of a nested form key.
#[derive(Debug, PartialEq)]
enum Seg {
    Name(String),
    /// `[]`: append.
    Push,
    /// `[n]`: Kong counts from 1.
    Index(usize),
}

fn parse_key(key: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segs.push(Seg::Name(name.to_string()));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            let inner = &stripped[..end];
            segs.push(if inner.is_empty() {
                Seg::Push
            } else if let Ok(n) = inner.parse::<usize>() {
                Seg::Index(n.max(1))
            } else {
                Seg::Name(inner.to_string())
            });
            rest = &stripped[end + 1..];
        }
    }
    segs
}

/// Deepest form key accepted (`a.b[1].c` is 4 levels).
const MAX_KEY_DEPTH: usize = 32;
/// Most array slots `[n]` keys may open in one body, so a small body
/// cannot make a huge array.
const MAX_INDEXED_SLOTS: usize = 65_536;

/// Builds a JSON object from form pairs with Kong's key nesting. An empty
/// value means null (Kong unsets the field); a plain key given twice
/// becomes an array.
pub fn nest_pairs(pairs: &[(String, String)]) -> Result<Value, AdminError> {
    let mut root = Value::Object(Map::new());
    let mut slots = MAX_INDEXED_SLOTS;
    for (key, value) in pairs {
        let segs = parse_key(key);
        if segs.is_empty() {
            continue;
        }
        if segs.len() > MAX_KEY_DEPTH {
            return Err(AdminError::message(
                StatusCode::BAD_REQUEST,
                "form key nested too deeply",
            ));
        }
        let leaf = if value.is_empty() {
            Value::Null
        } else {
            Value::String(value.clone())
        };
        insert(&mut root, &segs, leaf, &mut slots)?;
    }
    drop_holes(&mut root);
    Ok(root)
}

fn insert(
    node: &mut Value,
    segs: &[Seg],
    leaf: Value,
    slots: &mut usize,
) -> Result<(), AdminError> {
    let Some((first, rest)) = segs.split_first() else {
        return Ok(());
    };
    match first {
        Seg::Name(name) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else {
                return Ok(());
            };
            if rest.is_empty() {
                match map.get_mut(name) {
                    Some(Value::Array(items)) => items.push(leaf),
                    Some(existing) if !existing.is_null() => {
                        let previous = existing.take();
                        *existing = Value::Array(vec![previous, leaf]);
                    }
                    _ => {
                        map.insert(name.clone(), leaf);
                    }
                }
                Ok(())
            } else {
                insert(
                    map.entry(name.clone()).or_insert(Value::Null),
                    rest,
                    leaf,
                    slots,
                )
            }
        }
        Seg::Push | Seg::Index(_) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            let Value::Array(items) = node else {
                return Ok(());
            };
            let slot = match first {
                Seg::Index(n) => {
                    let grow = n.saturating_sub(items.len());
                    if grow > *slots {
                        return Err(AdminError::message(
                            StatusCode::BAD_REQUEST,
                            "form array index too large",
                        ));
                    }
                    *slots -= grow;
                    if grow > 0 {
                        items.resize(*n, Value::Null);
                    }
                    n - 1
                }
                _ => {
                    items.push(Value::Null);
                    items.len() - 1
                }
            };
            if rest.is_empty() {
                items[slot] = leaf;
                Ok(())
            } else {
                insert(&mut items[slot], rest, leaf, slots)
            }
        }
    }
}

fn drop_holes(node: &mut Value) {
    match node {
        Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(drop_holes);
        }
        Value::Object(map) => map.values_mut().for_each(drop_holes),
        _ => {}
    }
}

/// Converts the string at `path` (dotted, inside `root`) to `wanted`.
/// Returns false when there is nothing to convert there, or the string
/// does not read as that type (the caller then reports the error).
pub fn coerce_at(root: &mut Value, path: &str, wanted: Option<Wanted>) -> bool {
    let mut node = root;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        node = match node {
            Value::Object(map) => match map.get_mut(seg) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    coerce_value(node, wanted)
}

fn coerce_value(node: &mut Value, wanted: Option<Wanted>) -> bool {
    if let Value::Array(items) = node {
        if wanted == Some(Wanted::Array) {
            return false;
        }
        let mut changed = false;
        for item in items.iter_mut() {
            changed |= coerce_value(item, wanted);
        }
        return changed;
    }
    let Value::String(s) = node else {
        return false;
    };
    let new = match wanted {
        Some(Wanted::Integer) => s.trim().parse::<i64>().ok().map(Value::from),
        Some(Wanted::Number) => number(s),
        Some(Wanted::Boolean) => boolean(s),
        Some(Wanted::Array) => Some(Value::Array(vec![Value::String(s.clone())])),
        None => number(s).or_else(|| boolean(s)),
    };
    match new {
        Some(v) => {
            *node = v;
            true
        }
        None => false,
    }
}

fn number(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

fn boolean(s: &str) -> Option<Value> {
    match s.trim() {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => None,
    }
}

/// Guesses the wanted type from a validator's message (for plugin configs,
/// whose types only the plugin schema knows).
pub fn wanted_from_message(message: &str) -> Option<Wanted> {
    let m = message.to_ascii_lowercase();
    if m.contains("integer") {
        Some(Wanted::Integer)
    } else if m.contains("number") {
        Some(Wanted::Number)
    } else if m.contains("boolean") {
        Some(Wanted::Boolean)
    } else if m.contains("array") || m.contains("set") {
        Some(Wanted::Array)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nests_kong_keys() {
        let v = nest_pairs(&pairs(&[
            ("name", "x"),
            ("paths[]", "/a"),
            ("paths[]", "/b"),
            ("hosts[2]", "b.com"),
            ("hosts[1]", "a.com"),
            ("config.minute", "5"),
            ("config.policy", "local"),
            ("service.id", "abc"),
            ("methods", "GET"),
            ("methods", "POST"),
            ("headers[x-a][]", "1"),
            ("tags", ""),
        ]))
        .unwrap();
        assert_eq!(
            v,
            json!({
                "name": "x", "paths": ["/a", "/b"], "hosts": ["a.com", "b.com"],
                "config": {"minute": "5", "policy": "local"},
                "service": {"id": "abc"}, "methods": ["GET", "POST"],
                "headers": {"x-a": ["1"]}, "tags": null,
            })
        );
    }

    #[test]
    fn bounded_nesting() {
        let deep = format!("a{}", ".b".repeat(40));
        assert!(nest_pairs(&pairs(&[(deep.as_str(), "x")])).is_err());
        assert!(nest_pairs(&pairs(&[("a[1000000]", "x")])).is_err());
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("a{i}[1000]"), "x".to_string()))
            .collect();
        assert!(nest_pairs(&many).is_err(), "the slot budget is per body");
        assert_eq!(
            nest_pairs(&pairs(&[("a[3]", "x")])).unwrap(),
            json!({"a": ["x"]})
        );
    }

    #[test]
    fn coerces_strings() {
        let mut v =
            json!({"port": "8080", "flags": ["true"], "config": {"minute": "5"}, "paths": "/a"});
        assert!(coerce_at(&mut v, "port", Some(Wanted::Integer)));
        assert!(coerce_at(&mut v, "flags", Some(Wanted::Boolean)));
        assert!(coerce_at(&mut v, "config.minute", None));
        assert!(coerce_at(&mut v, "paths", Some(Wanted::Array)));
        assert!(!coerce_at(&mut v, "missing", None));
        assert_eq!(
            v,
            json!({"port": 8080, "flags": [true], "config": {"minute": 5}, "paths": ["/a"]})
        );
        let mut bad = json!({"port": "eighty"});
        assert!(!coerce_at(&mut bad, "port", Some(Wanted::Integer)));
    }
}
