//! Response aggregation: a route with `aggregate` calls its backends
//! concurrently (after the access phase ran once), each with its own
//! timeout, and answers with their JSON bodies merged — nested under each
//! backend's `key`, or merged at the top level (`mode: merge`). Parts that
//! did not arrive are named in `X-Aggregate-Missing` and in `"_missing"`;
//! the answer is 502/504 only when a `required` part is missing or every
//! part is. Backend paths take `{name}` placeholders from the named
//! captures of the route's regex paths; the client's query is passed on.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::balancer::HashInput;
use super::errors;
use super::forward::{self, UpstreamHead};
use super::snapshot::Snapshot;
use crate::model::Aggregation;
use crate::plugins::Reply;

/// Largest backend body read (beyond: that part fails).
const PART_LIMIT: usize = 8 * 1024 * 1024;

pub const MISSING_HEADER: &str = "x-aggregate-missing";

/// Why a part is missing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Miss {
    Timeout,
    Failed,
}

/// The named captures of the first of a route's regex paths (compiled by
/// the router, in the route's order) that matches `path`.
pub fn path_params(regex_paths: &[regex::Regex], path: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for re in regex_paths {
        if let Some(caps) = re.captures(path) {
            for name in re.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    out.insert(name.to_string(), m.as_str().to_string());
                }
            }
            break;
        }
    }
    out
}

/// `{name}` in `template` replaced by the parameter (percent-encoded path
/// characters are kept as the client sent them); unknown names stay.
pub fn substitute(template: &str, params: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match params.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Calls one backend; its JSON body or why it is missing.
async fn call(
    snap: &Snapshot,
    service: uuid::Uuid,
    path: String,
    query: Option<&str>,
    base: &UpstreamHead,
    hash: &HashInput<'_>,
) -> Result<Value, Miss> {
    let entry = snap.services.get(&service).ok_or(Miss::Failed)?;
    let mut path_and_query = forward::join_path(entry.service.path.as_deref(), &path);
    if let Some(q) = query {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let mut headers = base.headers.clone();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_TYPE);
    headers.remove(header::TRANSFER_ENCODING);
    if let Ok(h) = HeaderValue::from_str(&entry.host_header) {
        headers.insert(header::HOST, h);
    }
    let head = UpstreamHead {
        method: http::Method::GET,
        path_and_query,
        headers,
    };
    let (resp, in_flight) = forward::send(entry, &head, crate::plugins::empty_body(), hash)
        .await
        .map_err(|e| match e {
            forward::ForwardError::Timeout => Miss::Timeout,
            _ => Miss::Failed,
        })?;
    if !resp.status().is_success() {
        return Err(Miss::Failed);
    }
    let body = http_body_util::Limited::new(resp.into_body(), PART_LIMIT)
        .collect()
        .await
        .map_err(|_| Miss::Failed)?
        .to_bytes();
    drop(in_flight);
    serde_json::from_slice(&body).map_err(|_| Miss::Failed)
}

/// Fans out to every backend of `agg` and builds the merged answer.
pub async fn fan_out(
    snap: &Snapshot,
    agg: &Aggregation,
    params: &HashMap<String, String>,
    query: Option<&str>,
    base: &UpstreamHead,
    hash: &HashInput<'_>,
) -> Reply {
    let calls = agg.backends.iter().map(|b| {
        let path = substitute(b.path.as_deref().unwrap_or("/"), params);
        let limit = Duration::from_millis(b.timeout.max(1));
        async move {
            match tokio::time::timeout(limit, call(snap, b.service.id, path, query, base, hash))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(Miss::Timeout),
            }
        }
    });
    let results = futures::future::join_all(calls).await;
    merge(agg, results)
}

fn merge(agg: &Aggregation, results: Vec<Result<Value, Miss>>) -> Reply {
    let mut out = Map::new();
    let mut missing: Vec<&str> = Vec::new();
    let mut fatal: Option<Miss> = None;
    let mut all_timeout = true;
    for (b, r) in agg.backends.iter().zip(results) {
        match r {
            Ok(v) => match (agg.mode.as_str(), v) {
                ("merge", Value::Object(o)) => out.extend(o),
                (_, v) => {
                    out.insert(b.key.clone(), v);
                }
            },
            Err(miss) => {
                missing.push(&b.key);
                all_timeout &= miss == Miss::Timeout;
                if b.required && fatal.is_none() {
                    fatal = Some(miss);
                }
            }
        }
    }
    if missing.len() == agg.backends.len() && fatal.is_none() {
        fatal = Some(if all_timeout {
            Miss::Timeout
        } else {
            Miss::Failed
        });
    }
    let missing_list = missing.join(",");
    let mut reply = match fatal {
        Some(Miss::Timeout) => Reply::message(StatusCode::GATEWAY_TIMEOUT, errors::GATEWAY_TIMEOUT),
        Some(Miss::Failed) => Reply::message(StatusCode::BAD_GATEWAY, errors::BAD_GATEWAY),
        None => {
            if !missing.is_empty() {
                out.insert(
                    "_missing".into(),
                    Value::Array(missing.iter().map(|k| Value::from(*k)).collect()),
                );
            }
            let mut r = Reply::message(StatusCode::OK, "");
            r.body = Bytes::from(serde_json::to_vec(&out).unwrap_or_default());
            r
        }
    };
    if !missing.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&missing_list) {
            reply.headers.insert(MISSING_HEADER, v);
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AggregateBackend;
    use serde_json::json;

    fn agg(mode: &str, required: &[bool]) -> Aggregation {
        Aggregation {
            mode: mode.into(),
            backends: required
                .iter()
                .enumerate()
                .map(|(i, r)| AggregateBackend {
                    key: format!("k{i}"),
                    service: serde_json::from_value(json!({"id": uuid::Uuid::nil()})).unwrap(),
                    path: None,
                    timeout: 10,
                    required: *r,
                })
                .collect(),
        }
    }

    #[test]
    fn params_come_from_the_first_matching_regex_path() {
        let paths = [
            regex::Regex::new("^(?:/u/(?P<id>\\d+))").unwrap(),
            regex::Regex::new("^(?:/(?P<kind>\\w+)/(?P<id>\\d+))").unwrap(),
        ];
        let p = path_params(&paths, "/u/42/x");
        assert_eq!(p, HashMap::from([("id".to_string(), "42".to_string())]));
        let p = path_params(&paths, "/v/7");
        assert_eq!(p["kind"], "v");
        assert_eq!(p["id"], "7");
        assert!(path_params(&paths, "/nothing").is_empty());
    }

    #[test]
    fn substitutes_known_params_only() {
        let p = HashMap::from([("id".to_string(), "42".to_string())]);
        assert_eq!(substitute("/u/{id}/x/{other}", &p), "/u/42/x/{other}");
        assert_eq!(substitute("/u/{id", &p), "/u/{id");
    }

    #[test]
    fn merges_and_marks_missing() {
        let r = merge(
            &agg("nested", &[false, false]),
            vec![Ok(json!({"a": 1})), Err(Miss::Timeout)],
        );
        assert_eq!(r.status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, json!({"k0": {"a": 1}, "_missing": ["k1"]}));
        assert_eq!(r.headers[MISSING_HEADER], "k1");
        let r = merge(
            &agg("merge", &[false, false]),
            vec![Ok(json!({"a": 1})), Ok(json!({"b": 2}))],
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, json!({"a": 1, "b": 2}));
        assert!(r.headers.get(MISSING_HEADER).is_none());
    }

    #[test]
    fn required_or_all_missing_fails() {
        let r = merge(
            &agg("nested", &[true, false]),
            vec![Err(Miss::Timeout), Ok(json!(1))],
        );
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
        let r = merge(
            &agg("nested", &[false, false]),
            vec![Err(Miss::Timeout), Err(Miss::Failed)],
        );
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(r.headers[MISSING_HEADER], "k0,k1");
    }
}
