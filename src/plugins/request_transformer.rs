//! Kong's request-transformer plugin (priority 801): `remove`, `rename`,
//! `replace`, `add`, `append` (applied in that order) on the request's
//! headers, query string and body, plus `http_method` and `replace.uri`.
//! Body edits apply to JSON objects and form-urlencoded bodies only; such a
//! body is buffered (up to `BODY_LIMIT`, beyond: 413) and sent upstream
//! without its original `Content-Length`. Other bodies stream untouched.
//!
//! The small "name:value" helpers here are shared with the
//! response-transformer.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, StatusCode};
use serde_json::{Map, Value};

use super::{Body, BodyRejected, BoxError, Plugin, Reply, RequestCtx};
use crate::model::State;

/// Largest body the transformers buffer.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// One of remove/rename/replace/add/append for one target, in Kong's order.
#[derive(Debug, Clone)]
pub struct Ops<K> {
    pub remove: Vec<K>,
    pub rename: Vec<(K, K)>,
    pub replace: Vec<(K, String)>,
    pub add: Vec<(K, String)>,
    pub append: Vec<(K, String)>,
}

impl<K> Default for Ops<K> {
    fn default() -> Self {
        Ops {
            remove: Vec::new(),
            rename: Vec::new(),
            replace: Vec::new(),
            add: Vec::new(),
            append: Vec::new(),
        }
    }
}

impl<K> Ops<K> {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }
}

/// The strings of `config[op][target]`.
pub fn list(config: &Value, op: &str, target: &str) -> Vec<String> {
    config
        .get(op)
        .and_then(|o| o.get(target))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits "name:value" at the first colon.
pub fn pair(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("invalid value: {s}"))
}

/// Reads the five operations on `target` with `key` turning a name into K.
pub fn ops<K>(
    config: &Value,
    target: &str,
    key: impl Fn(&str) -> Result<K, String>,
) -> Result<Ops<K>, String> {
    let pairs = |op: &str| -> Result<Vec<(K, String)>, String> {
        list(config, op, target)
            .iter()
            .map(|s| pair(s).and_then(|(k, v)| Ok((key(&k)?, v))))
            .collect()
    };
    Ok(Ops {
        remove: list(config, "remove", target)
            .iter()
            .map(|s| key(s.trim()))
            .collect::<Result<_, _>>()?,
        rename: pairs("rename")?
            .into_iter()
            .map(|(k, v)| Ok((k, key(v.trim())?)))
            .collect::<Result<_, String>>()?,
        replace: pairs("replace")?,
        add: pairs("add")?,
        append: pairs("append")?,
    })
}

pub fn header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("invalid header name: {s}"))
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// Applies header operations (values that are not valid header values are
/// skipped; they were accepted as plain strings by the schema).
pub fn apply_headers(ops: &Ops<HeaderName>, headers: &mut HeaderMap) {
    for name in &ops.remove {
        headers.remove(name);
    }
    for (from, to) in &ops.rename {
        let values: Vec<HeaderValue> = headers.get_all(from).iter().cloned().collect();
        if values.is_empty() {
            continue;
        }
        headers.remove(from);
        headers.remove(to);
        for v in values {
            headers.append(to.clone(), v);
        }
    }
    for (name, value) in &ops.replace {
        if headers.contains_key(name) {
            if let Some(v) = header_value(value) {
                headers.insert(name.clone(), v);
            }
        }
    }
    for (name, value) in &ops.add {
        if !headers.contains_key(name) {
            if let Some(v) = header_value(value) {
                headers.insert(name.clone(), v);
            }
        }
    }
    for (name, value) in &ops.append {
        if let Some(v) = header_value(value) {
            headers.append(name.clone(), v);
        }
    }
}

/// Applies operations to an ordered list of (name, value) pairs (a query
/// string or a form body).
pub fn apply_pairs(ops: &Ops<String>, pairs: &mut Vec<(String, String)>) {
    for name in &ops.remove {
        pairs.retain(|(k, _)| k != name);
    }
    for (from, to) in &ops.rename {
        if pairs.iter().any(|(k, _)| k == from) {
            pairs.retain(|(k, _)| k != to);
            for (k, _) in pairs.iter_mut().filter(|(k, _)| k == from) {
                *k = to.clone();
            }
        }
    }
    for (name, value) in &ops.replace {
        if pairs.iter().any(|(k, _)| k == name) {
            pairs.retain(|(k, _)| k != name);
            pairs.push((name.clone(), value.clone()));
        }
    }
    for (name, value) in &ops.add {
        if !pairs.iter().any(|(k, _)| k == name) {
            pairs.push((name.clone(), value.clone()));
        }
    }
    for (name, value) in &ops.append {
        pairs.push((name.clone(), value.clone()));
    }
}

/// Applies operations to a JSON object; `typed(op_index_in_list, value)`
/// gives the JSON value of a configured string for add/replace/append.
pub fn apply_json(
    ops: &Ops<String>,
    obj: &mut Map<String, Value>,
    typed: impl Fn(usize, &str) -> Value,
) {
    for name in &ops.remove {
        obj.remove(name);
    }
    for (from, to) in &ops.rename {
        if let Some(v) = obj.remove(from) {
            obj.insert(to.clone(), v);
        }
    }
    for (i, (name, value)) in ops.replace.iter().enumerate() {
        if obj.contains_key(name) {
            obj.insert(name.clone(), typed(i, value));
        }
    }
    for (i, (name, value)) in ops.add.iter().enumerate() {
        if !obj.contains_key(name) {
            obj.insert(name.clone(), typed(i, value));
        }
    }
    for (i, (name, value)) in ops.append.iter().enumerate() {
        let new = typed(i, value);
        match obj.remove(name) {
            Some(Value::Array(mut a)) => {
                a.push(new);
                obj.insert(name.clone(), Value::Array(a));
            }
            Some(old) => {
                obj.insert(name.clone(), Value::Array(vec![old, new]));
            }
            None => {
                obj.insert(name.clone(), Value::Array(vec![new]));
            }
        }
    }
}

/// Buffers `body` (at most `limit` bytes), then yields `f(bytes)` as one
/// frame. `over` turns a read failure (or the limit) into the body error.
pub fn map_buffered<F>(body: Body, limit: usize, f: F, over: fn(BoxError) -> BoxError) -> Body
where
    F: FnOnce(Bytes) -> Bytes + Send + Sync + 'static,
{
    use http_body_util::BodyExt;
    Buffered {
        inner: body,
        buf: bytes::BytesMut::new(),
        limit,
        f: Some(Box::new(f)),
        over,
    }
    .boxed()
}

/// The body was larger than a transformer buffers.
#[derive(Debug)]
pub struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body too large to transform")
    }
}

impl std::error::Error for TooLarge {}

type MapFn = Box<dyn FnOnce(Bytes) -> Bytes + Send + Sync>;

struct Buffered {
    inner: Body,
    buf: bytes::BytesMut,
    limit: usize,
    /// `None` once the mapped frame went out.
    f: Option<MapFn>,
    over: fn(BoxError) -> BoxError,
}

impl http_body::Body for Buffered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        loop {
            if self.f.is_none() {
                return Poll::Ready(None);
            }
            match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    self.f = None;
                    return Poll::Ready(Some(Err((self.over)(e))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers of a buffered body are dropped.
                    if let Some(data) = frame.data_ref() {
                        if self.buf.len() + data.len() > self.limit {
                            self.f = None;
                            let e: BoxError = Box::new(TooLarge);
                            return Poll::Ready(Some(Err((self.over)(e))));
                        }
                        self.buf.extend_from_slice(data);
                    }
                }
                Poll::Ready(None) => {
                    let whole = std::mem::take(&mut self.buf).freeze();
                    let Some(f) = self.f.take() else {
                        return Poll::Ready(None);
                    };
                    return Poll::Ready(Some(Ok(http_body::Frame::data(f(whole)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.f.is_none()
    }
}

pub fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"))
}

/// Which body the access phase decided to transform.
#[derive(Clone, Copy, Debug)]
enum BodyKind {
    Json,
    Form,
}

pub struct RequestTransformer {
    http_method: Option<Method>,
    uri: Option<String>,
    headers: Ops<HeaderName>,
    query: Ops<String>,
    body: Ops<String>,
}

pub fn build(config: &Value, _state: &State) -> Result<Arc<dyn Plugin>, String> {
    let http_method = match config.get("http_method").and_then(|v| v.as_str()) {
        None => None,
        Some(m) => Some(
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("invalid http_method {m:?}"))?,
        ),
    };
    let uri = config
        .get("replace")
        .and_then(|r| r.get("uri"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    if let Some(u) = &uri {
        if !u.starts_with('/') || u.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(format!("invalid replace.uri {u:?}"));
        }
    }
    let plain = |s: &str| Ok(s.to_string());
    Ok(Arc::new(RequestTransformer {
        http_method,
        uri,
        headers: ops(config, "headers", header_name)?,
        query: ops(config, "querystring", plain)?,
        body: ops(config, "body", plain)?,
    }))
}

/// The path the upstream request should use instead of the routed one
/// (request-transformer's `replace.uri`); read by the pipeline.
#[derive(Clone, Debug)]
pub struct UpstreamPath(pub String);

fn too_large(e: BoxError) -> BoxError {
    if e.downcast_ref::<TooLarge>().is_some() {
        let reply = Reply::message(StatusCode::PAYLOAD_TOO_LARGE, "Request size limit exceeded");
        return Box::new(BodyRejected(reply));
    }
    e
}

impl Plugin for RequestTransformer {
    fn access(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Option<Reply> {
        if let Some(m) = &self.http_method {
            req.method = m.clone();
        }
        if let Some(u) = &self.uri {
            ctx.extensions.insert(UpstreamPath(u.clone()));
        }
        if !self.query.is_empty() {
            let mut pairs: Vec<(String, String)> =
                form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            apply_pairs(&self.query, &mut pairs);
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            let mut pq = req.uri.path().to_string();
            if !query.is_empty() {
                pq.push('?');
                pq.push_str(&query);
            }
            let mut uri_parts = req.uri.clone().into_parts();
            if let Ok(p) = pq.parse() {
                uri_parts.path_and_query = Some(p);
                if let Ok(u) = http::Uri::from_parts(uri_parts) {
                    req.uri = u;
                }
            }
        }
        apply_headers(&self.headers, &mut req.headers);
        if !self.body.is_empty() {
            let ct = req.headers.get(CONTENT_TYPE);
            let kind = if is_json(ct) {
                Some(BodyKind::Json)
            } else if ct
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
            {
                Some(BodyKind::Form)
            } else {
                None
            };
            if let Some(kind) = kind {
                req.headers.remove(CONTENT_LENGTH);
                ctx.extensions.insert(kind);
            }
        }
        None
    }

    fn request_body(&self, ctx: &RequestCtx, body: Body) -> Body {
        let Some(kind) = ctx.extensions.get::<BodyKind>().copied() else {
            return body;
        };
        let ops = self.body.clone();
        map_buffered(
            body,
            BODY_LIMIT,
            move |bytes| transform_body(kind, &ops, bytes),
            too_large,
        )
    }
}

fn transform_body(kind: BodyKind, ops: &Ops<String>, bytes: Bytes) -> Bytes {
    match kind {
        BodyKind::Json => {
            let parsed: Result<Value, _> = if bytes.iter().all(u8::is_ascii_whitespace) {
                Ok(Value::Object(Map::new()))
            } else {
                serde_json::from_slice(&bytes)
            };
            // Not a JSON object: sent on as it came.
            let Ok(Value::Object(mut obj)) = parsed else {
                return bytes;
            };
            apply_json(ops, &mut obj, |_, v| Value::String(v.to_string()));
            serde_json::to_vec(&obj).map(Bytes::from).unwrap_or(bytes)
        }
        BodyKind::Form => {
            let mut pairs: Vec<(String, String)> =
                form_urlencoded::parse(&bytes).into_owned().collect();
            apply_pairs(ops, &mut pairs);
            Bytes::from(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use serde_json::json;

    fn run(config: Value, req: http::Request<&'static str>) -> (http::request::Parts, Bytes) {
        let p = build(&config, &State::default()).unwrap();
        let (mut parts, body) = req.into_parts();
        let mut ctx = RequestCtx::default();
        assert!(p.access(&mut ctx, &mut parts).is_none());
        let body: Body = Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed();
        let out = futures::executor::block_on(p.request_body(&ctx, body).collect())
            .unwrap()
            .to_bytes();
        (parts, out)
    }

    #[test]
    fn headers_in_kongs_order() {
        let (parts, _) = run(
            json!({"remove": {"headers": ["x-gone"]},
                   "rename": {"headers": ["x-old:x-new"]},
                   "replace": {"headers": ["x-rep:new", "x-absent:no"]},
                   "add": {"headers": ["x-add:1", "x-rep:ignored"]},
                   "append": {"headers": ["x-app:2"]}}),
            http::Request::builder()
                .header("x-gone", "1")
                .header("x-old", "o")
                .header("x-rep", "old")
                .header("x-app", "1")
                .body("")
                .unwrap(),
        );
        let h = &parts.headers;
        assert!(h.get("x-gone").is_none());
        assert!(h.get("x-old").is_none());
        assert_eq!(h["x-new"], "o");
        assert_eq!(h["x-rep"], "new");
        assert!(h.get("x-absent").is_none());
        assert_eq!(h["x-add"], "1");
        let app: Vec<_> = h.get_all("x-app").iter().collect();
        assert_eq!(app, ["1", "2"]);
    }

    #[test]
    fn querystring_method_and_uri() {
        let p = build(
            &json!({"http_method": "post", "replace": {"uri": "/new", "querystring": ["q:2"]},
                    "remove": {"querystring": ["drop"]}, "rename": {"querystring": ["a:b"]},
                    "add": {"querystring": ["z:9"]}, "append": {"querystring": ["q:3"]}}),
            &State::default(),
        )
        .unwrap();
        let (mut parts, _) = http::Request::builder()
            .uri("/p?drop=1&a=x&q=1")
            .body(())
            .unwrap()
            .into_parts();
        let mut ctx = RequestCtx::default();
        p.access(&mut ctx, &mut parts);
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri.query(), Some("b=x&q=2&z=9&q=3"));
        assert_eq!(ctx.extensions.get::<UpstreamPath>().unwrap().0, "/new");
    }

    #[test]
    fn json_and_form_bodies() {
        let cfg = json!({"remove": {"body": ["secret"]}, "rename": {"body": ["a:b"]},
                         "replace": {"body": ["r:new"]}, "add": {"body": ["n:v"]},
                         "append": {"body": ["l:x"]}});
        let (parts, out) = run(
            cfg.clone(),
            http::Request::builder()
                .header("content-type", "application/json")
                .header("content-length", "40")
                .body(r#"{"secret":1,"a":2,"r":"old","l":"w"}"#)
                .unwrap(),
        );
        assert!(parts.headers.get("content-length").is_none());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!({"b": 2, "r": "new", "n": "v", "l": ["w", "x"]}));
        let (_, out) = run(
            cfg.clone(),
            http::Request::builder()
                .header("content-type", "application/x-www-form-urlencoded")
                .body("secret=1&a=2")
                .unwrap(),
        );
        assert_eq!(&out[..], b"b=2&n=v&l=x");
        // Other content types stream untouched.
        let (_, out) = run(
            cfg,
            http::Request::builder()
                .header("content-type", "text/plain")
                .body("secret=1")
                .unwrap(),
        );
        assert_eq!(&out[..], b"secret=1");
    }

    #[test]
    fn invalid_json_passes_through() {
        let (_, out) = run(
            json!({"add": {"body": ["n:v"]}}),
            http::Request::builder()
                .header("content-type", "application/json")
                .body("[1,2")
                .unwrap(),
        );
        assert_eq!(&out[..], b"[1,2");
    }
}
