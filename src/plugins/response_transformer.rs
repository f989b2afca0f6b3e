//! Kong's response-transformer plugin (priority 800): `remove`, `rename`,
//! `replace`, `add`, `append` on the response headers and on the top-level
//! keys of a JSON object body; `json_types` (boolean/number/string, by
//! position) types the values of add/replace/append. The body is buffered
//! only when JSON operations are configured and the response is
//! uncompressed `application/json`; otherwise it streams untouched.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;

use super::request_transformer::{
    apply_headers, apply_json, header_name, is_json, list, map_buffered, ops, Ops, BODY_LIMIT,
};
use super::{Body, BoxError, Plugin, RequestCtx};
use crate::model::State;

pub struct ResponseTransformer {
    headers: Ops<HeaderName>,
    json: Ops<String>,
    /// json_types of replace, add, append.
    types: [Vec<String>; 3],
}

pub fn build(config: &Value, _state: &State) -> Result<Arc<dyn Plugin>, String> {
    let plain = |s: &str| Ok(s.to_string());
    Ok(Arc::new(ResponseTransformer {
        headers: ops(config, "headers", header_name)?,
        json: ops(config, "json", plain)?,
        types: [
            list(config, "replace", "json_types"),
            list(config, "add", "json_types"),
            list(config, "append", "json_types"),
        ],
    }))
}

/// Set by `header_filter` when the body is to be transformed.
#[derive(Clone, Copy)]
struct TransformJson;

/// A configured string as the JSON type named for it (string by default
/// or when it does not parse as that type).
fn typed(types: &[String], i: usize, v: &str) -> Value {
    match types.get(i).map(String::as_str) {
        Some("boolean") => match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(v.to_string()),
        },
        Some("number") => serde_json::from_str::<serde_json::Number>(v.trim())
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(v.to_string())),
        _ => Value::String(v.to_string()),
    }
}

impl ResponseTransformer {
    fn transform(&self, bytes: Bytes) -> Bytes {
        let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&bytes) else {
            return bytes;
        };
        // apply_json calls `typed` per operation list; the list is told
        // apart by running one operation kind at a time.
        let only = |pick: usize| {
            let mut o: Ops<String> = Ops::default();
            match pick {
                0 => o.replace = self.json.replace.clone(),
                1 => o.add = self.json.add.clone(),
                _ => o.append = self.json.append.clone(),
            }
            o
        };
        let head = Ops {
            remove: self.json.remove.clone(),
            rename: self.json.rename.clone(),
            ..Ops::default()
        };
        apply_json(&head, &mut obj, |_, v| Value::String(v.to_string()));
        for pick in 0..3 {
            let types = &self.types[pick];
            apply_json(&only(pick), &mut obj, |i, v| typed(types, i, v));
        }
        serde_json::to_vec(&obj).map(Bytes::from).unwrap_or(bytes)
    }
}

fn passthrough(e: BoxError) -> BoxError {
    e
}

impl Plugin for ResponseTransformer {
    fn header_filter(&self, ctx: &mut RequestCtx, resp: &mut http::response::Parts) {
        apply_headers(&self.headers, &mut resp.headers);
        let encoded = resp
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if !self.json.is_empty() && !encoded && is_json(resp.headers.get(CONTENT_TYPE)) {
            resp.headers.remove(CONTENT_LENGTH);
            ctx.extensions.insert(TransformJson);
        }
    }

    fn response_body(&self, ctx: &RequestCtx, body: Body) -> Body {
        if ctx.extensions.get::<TransformJson>().is_none() {
            return body;
        }
        let me = ResponseTransformer {
            headers: Ops::default(),
            json: self.json.clone(),
            types: self.types.clone(),
        };
        map_buffered(body, BODY_LIMIT, move |b| me.transform(b), passthrough)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use serde_json::json;

    fn run(config: Value, ct: &str, body: &'static str) -> (http::HeaderMap, Bytes) {
        let p = build(&config, &State::default()).unwrap();
        let (mut parts, _) = http::Response::builder()
            .header("content-type", ct)
            .header("content-length", body.len())
            .header("x-old", "o")
            .header("x-gone", "g")
            .body(())
            .unwrap()
            .into_parts();
        let mut ctx = RequestCtx::default();
        p.header_filter(&mut ctx, &mut parts);
        let b: Body = Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed();
        let out = futures::executor::block_on(p.response_body(&ctx, b).collect())
            .unwrap()
            .to_bytes();
        (parts.headers, out)
    }

    #[test]
    fn headers_and_typed_json() {
        let cfg = json!({
            "remove": {"headers": ["x-gone"], "json": ["secret"]},
            "rename": {"headers": ["x-old:x-new"], "json": ["a:b"]},
            "replace": {"json": ["r:5"], "json_types": ["number"]},
            "add": {"headers": ["x-add:1"], "json": ["flag:true", "s:txt"], "json_types": ["boolean"]},
            "append": {"headers": ["x-add:2"], "json": ["l:x"]}
        });
        let (h, out) = run(
            cfg,
            "application/json; charset=utf-8",
            r#"{"secret":1,"a":2,"r":"old","l":"w"}"#,
        );
        assert!(h.get("x-gone").is_none());
        assert_eq!(h["x-new"], "o");
        let add: Vec<_> = h.get_all("x-add").iter().collect();
        assert_eq!(add, ["1", "2"]);
        assert!(h.get("content-length").is_none());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"b": 2, "r": 5, "flag": true, "s": "txt", "l": ["w", "x"]})
        );
    }

    #[test]
    fn non_json_streams_untouched() {
        let (h, out) = run(
            json!({"add": {"json": ["x:1"]}}),
            "text/plain",
            r#"{"a":1}"#,
        );
        assert_eq!(h["content-length"], "7");
        assert_eq!(&out[..], br#"{"a":1}"#);
    }
}
