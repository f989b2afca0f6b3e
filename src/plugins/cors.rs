//! Kong's cors plugin (priority 2000). Preflight requests (`OPTIONS` with
//! `Access-Control-Request-Method`) are answered by the gateway with 200
//! and the allow headers, unless `preflight_continue` sends them upstream.
//! Other requests get `Access-Control-Allow-Origin` (+ credentials, exposed
//! headers) added to the response. Origins are exact strings or regexes
//! (anchored, as Kong does); `*` or no origins allows every origin.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use regex::Regex;

use super::{Plugin, Reply, RequestCtx};
use crate::model::State;

const ALLOW_ORIGIN: &str = "access-control-allow-origin";
const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
const ALLOW_HEADERS: &str = "access-control-allow-headers";
const ALLOW_METHODS: &str = "access-control-allow-methods";
const EXPOSE_HEADERS: &str = "access-control-expose-headers";
const MAX_AGE: &str = "access-control-max-age";
const ALLOW_PRIVATE_NETWORK: &str = "access-control-allow-private-network";

enum Origin {
    Exact(String),
    Pattern(Regex),
}

pub struct Cors {
    /// Empty: every origin (`*`).
    origins: Vec<Origin>,
    any_origin: bool,
    headers: Option<String>,
    exposed_headers: Option<String>,
    methods: String,
    max_age: Option<String>,
    credentials: bool,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

/// What `access` learned, for `header_filter`.
#[derive(Clone)]
struct Decision {
    allow_origin: Option<HeaderValue>,
    vary: bool,
    preflight_answered: bool,
}

fn strings(config: &serde_json::Value, field: &str) -> Vec<String> {
    config
        .get(field)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Kong treats an origin made only of these characters as a literal.
fn is_literal(origin: &str) -> bool {
    origin
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-'))
}

pub fn build(config: &serde_json::Value, _state: &State) -> Result<Arc<dyn Plugin>, String> {
    let raw = strings(config, "origins");
    let any_origin = raw.is_empty() || raw.iter().any(|o| o == "*");
    let mut origins = Vec::new();
    for o in raw.iter().filter(|o| *o != "*") {
        if is_literal(o) {
            origins.push(Origin::Exact(o.to_ascii_lowercase()));
        } else {
            let re = Regex::new(&format!("^(?:{o})$"))
                .map_err(|e| format!("invalid origin regex {o:?}: {e}"))?;
            origins.push(Origin::Pattern(re));
        }
    }
    let join = |field: &str| {
        let v = strings(config, field);
        (!v.is_empty()).then(|| v.join(","))
    };
    let methods = join("methods")
        .unwrap_or_else(|| "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT".to_string());
    let max_age = config
        .get("max_age")
        .and_then(|v| v.as_f64())
        .map(|n| (n.max(0.0) as u64).to_string());
    let flag = |field: &str, default: bool| {
        config
            .get(field)
            .and_then(|v| v.as_bool())
            .unwrap_or(default)
    };
    Ok(Arc::new(Cors {
        origins,
        any_origin,
        headers: join("headers"),
        exposed_headers: join("exposed_headers"),
        methods,
        max_age,
        credentials: flag("credentials", false),
        private_network: flag("private_network", false),
        preflight_continue: flag("preflight_continue", false),
        allow_origin_absent: flag("allow_origin_absent", true),
    }))
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request's `Origin`,
    /// and whether the answer depends on it (`Vary: Origin`).
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> (Option<HeaderValue>, bool) {
        if self.any_origin {
            if !self.credentials {
                return (Some(HeaderValue::from_static("*")), false);
            }
            // "*" is not allowed with credentials: echo the caller's origin.
            return (origin.cloned(), true);
        }
        if let [Origin::Exact(only)] = self.origins.as_slice() {
            return (HeaderValue::from_str(only).ok(), true);
        }
        let Some(origin) = origin else {
            return (None, true);
        };
        let Ok(text) = origin.to_str() else {
            return (None, true);
        };
        let lower = text.to_ascii_lowercase();
        let allowed = self.origins.iter().any(|o| match o {
            Origin::Exact(e) => *e == lower,
            Origin::Pattern(re) => re.is_match(text),
        });
        (allowed.then(|| origin.clone()), true)
    }
}

impl Plugin for Cors {
    fn access(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Option<Reply> {
        let origin = req.headers.get(http::header::ORIGIN);
        if origin.is_none() && !self.allow_origin_absent {
            return None;
        }
        let (allow_origin, vary) = self.allow_origin(origin);
        let preflight = req.method == Method::OPTIONS
            && req.headers.contains_key("access-control-request-method");
        if !preflight || self.preflight_continue {
            ctx.extensions.insert(Decision {
                allow_origin,
                vary,
                preflight_answered: false,
            });
            return None;
        }
        let mut reply = Reply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: bytes::Bytes::new(),
        };
        let h = &mut reply.headers;
        if let Some(v) = &allow_origin {
            h.insert(ALLOW_ORIGIN, v.clone());
        }
        if vary {
            h.append(http::header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            h.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        match &self.headers {
            Some(list) => set(h, ALLOW_HEADERS, list),
            None => {
                if let Some(asked) = req.headers.get("access-control-request-headers") {
                    h.insert(ALLOW_HEADERS, asked.clone());
                }
            }
        }
        set(h, ALLOW_METHODS, &self.methods);
        if let Some(age) = &self.max_age {
            set(h, MAX_AGE, age);
        }
        if self.private_network
            && req
                .headers
                .get("access-control-request-private-network")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
        {
            h.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
        }
        ctx.extensions.insert(Decision {
            allow_origin: None,
            vary: false,
            preflight_answered: true,
        });
        Some(reply)
    }

    fn header_filter(&self, ctx: &mut RequestCtx, resp: &mut http::response::Parts) {
        let Some(d) = ctx.extensions.get::<Decision>() else {
            return;
        };
        if d.preflight_answered {
            return;
        }
        let h = &mut resp.headers;
        if let Some(v) = &d.allow_origin {
            h.insert(ALLOW_ORIGIN, v.clone());
        }
        if d.vary {
            h.append(http::header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            h.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        if let Some(list) = &self.exposed_headers {
            set(h, EXPOSE_HEADERS, list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn resp_for(p: &Arc<dyn Plugin>, headers: &[(&str, &str)]) -> HeaderMap {
        let mut ctx = RequestCtx::default();
        assert!(p.access(&mut ctx, &mut req("GET", headers)).is_none());
        let (mut parts, _) = http::Response::new(()).into_parts();
        p.header_filter(&mut ctx, &mut parts);
        parts.headers
    }

    #[test]
    fn exact_and_regex_origins() {
        let p = build(
            &json!({"origins": ["http://a.example", "https://.*\\.b\\.example"],
                    "exposed_headers": ["x-one", "x-two"], "credentials": true}),
            &State::default(),
        )
        .unwrap();
        let h = resp_for(&p, &[("origin", "http://a.example")]);
        assert_eq!(h[ALLOW_ORIGIN], "http://a.example");
        assert_eq!(h[EXPOSE_HEADERS], "x-one,x-two");
        assert_eq!(h[ALLOW_CREDENTIALS], "true");
        assert_eq!(h["vary"], "Origin");
        let h = resp_for(&p, &[("origin", "https://x.b.example")]);
        assert_eq!(h[ALLOW_ORIGIN], "https://x.b.example");
        let h = resp_for(&p, &[("origin", "https://x.b.example.evil")]);
        assert!(h.get(ALLOW_ORIGIN).is_none());
        let h = resp_for(&p, &[("origin", "http://c.example")]);
        assert!(h.get(ALLOW_ORIGIN).is_none());
    }

    #[test]
    fn wildcard_without_and_with_credentials() {
        let p = build(&json!({"origins": ["*"]}), &State::default()).unwrap();
        assert_eq!(resp_for(&p, &[("origin", "http://z")])[ALLOW_ORIGIN], "*");
        let p = build(
            &json!({"origins": ["*"], "credentials": true}),
            &State::default(),
        )
        .unwrap();
        assert_eq!(
            resp_for(&p, &[("origin", "http://z")])[ALLOW_ORIGIN],
            "http://z"
        );
    }

    #[test]
    fn preflight_is_answered_with_config() {
        let p = build(
            &json!({"origins": ["http://a.example"], "methods": ["GET", "POST"],
                    "headers": ["x-h"], "max_age": 3600, "credentials": true}),
            &State::default(),
        )
        .unwrap();
        let mut ctx = RequestCtx::default();
        let r = p
            .access(
                &mut ctx,
                &mut req(
                    "OPTIONS",
                    &[
                        ("origin", "http://a.example"),
                        ("access-control-request-method", "POST"),
                    ],
                ),
            )
            .expect("answered");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers[ALLOW_METHODS], "GET,POST");
        assert_eq!(r.headers[ALLOW_HEADERS], "x-h");
        assert_eq!(r.headers[MAX_AGE], "3600");
        assert_eq!(r.headers[ALLOW_ORIGIN], "http://a.example");
        let p = build(&json!({"preflight_continue": true}), &State::default()).unwrap();
        assert!(p
            .access(
                &mut RequestCtx::default(),
                &mut req("OPTIONS", &[("access-control-request-method", "GET")])
            )
            .is_none());
    }

    #[test]
    fn bad_regex_is_refused() {
        assert!(build(&json!({"origins": ["http://(x"]}), &State::default()).is_err());
    }
}
