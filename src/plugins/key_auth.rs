//! Kong's key-auth plugin (priority 1250): an API key from the headers,
//! query parameters and (with `key_in_body`) body fields named by
//! `key_names`, looked up name by name in that order as Kong does;
//! `hide_credentials` strips the name from all three before the upstream
//! sees the request; a key whose `ttl` has run out (from its `created_at`)
//! no longer authenticates. Answers 401 "No API key found in request",
//! "Duplicate API key found" or "Unauthorized", with
//! `WWW-Authenticate: Key realm="kong"` (or the configured realm).
//!
//! `key_in_body`: the body (form-urlencoded, JSON object or multipart, see
//! `body_fields`) is read before the access phase only when it may be
//! needed: the first key name is not in a header or the query, or
//! `hide_credentials` must strip it from the body. A body the pipeline did
//! not read whole (longer than its read-ahead bound) or that does not
//! parse has no fields, as Kong treats a body it cannot process. The
//! upstream receives the body as it came, or without the key field when
//! `hide_credentials` is set.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderName, Method, StatusCode};
use serde_json::Value;

use super::auth_common::{self as common, with_www_authenticate};
use super::body_fields::{BodyFields, Field};
use super::{CredentialInfo, Plugin, Reply, RequestCtx};
use crate::model::State;

pub struct KeyAuth {
    key_names: Vec<String>,
    hide_credentials: bool,
    key_in_header: bool,
    key_in_query: bool,
    key_in_body: bool,
    anonymous: Option<String>,
    run_on_preflight: bool,
    www: String,
    state: State,
}

pub fn build(config: &Value, state: &State) -> Result<Arc<dyn Plugin>, String> {
    let flag =
        |name: &str, default: bool| config.get(name).and_then(Value::as_bool).unwrap_or(default);
    let key_names = match config.get("key_names").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None => vec!["apikey".to_string()],
    };
    let realm = config
        .get("realm")
        .and_then(Value::as_str)
        .unwrap_or("kong");
    Ok(Arc::new(KeyAuth {
        key_names,
        hide_credentials: flag("hide_credentials", false),
        key_in_header: flag("key_in_header", true),
        key_in_query: flag("key_in_query", true),
        key_in_body: flag("key_in_body", false),
        anonymous: config
            .get("anonymous")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .map(str::to_string),
        run_on_preflight: flag("run_on_preflight", true),
        www: common::www_authenticate_base("Key", Some(realm)),
        state: state.clone(),
    }))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The fields of the body the pipeline read whole, if it did.
fn parse_body(ctx: &RequestCtx, req: &http::request::Parts) -> BodyFields {
    match &ctx.body {
        Some(b) if b.complete => BodyFields::parse(
            req.headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            &b.bytes,
        ),
        _ => BodyFields::None,
    }
}

impl KeyAuth {
    /// The values of `name` in the headers (when `key_in_header`).
    fn in_header(&self, req: &http::request::Parts, name: &str) -> Vec<String> {
        if !self.key_in_header {
            return Vec::new();
        }
        let Ok(h) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
            return Vec::new();
        };
        req.headers
            .get_all(&h)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    /// The values of `name` in the query string (when `key_in_query`).
    fn in_query(&self, req: &http::request::Parts, name: &str) -> Vec<String> {
        if !self.key_in_query {
            return Vec::new();
        }
        form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    /// Kong's `hide_credentials`: the name leaves the headers, the query
    /// and (with `key_in_body`) the body, wherever the key was found.
    fn hide(
        &self,
        ctx: &mut RequestCtx,
        req: &mut http::request::Parts,
        name: &str,
        body: &BodyFields,
    ) {
        if let Ok(h) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            req.headers.remove(&h);
        }
        if let Some(q) = req.uri.query() {
            if common::query_param(Some(q), name).is_some() {
                let rest = common::query_without(q, name);
                common::set_query(req, rest.as_deref());
            }
        }
        if let Some(peeked) = ctx.body.as_mut() {
            if let Some(stripped) = body.without(&peeked.bytes, name) {
                peeked.replace(stripped);
            }
        }
    }

    fn authenticate(
        &self,
        ctx: &mut RequestCtx,
        req: &mut http::request::Parts,
    ) -> Result<(), &'static str> {
        // Parsed once, and only if a name is looked up in the body.
        let mut body: Option<BodyFields> = None;
        let mut key: Option<String> = None;
        for name in &self.key_names {
            let mut values = self.in_header(req, name);
            if values.is_empty() {
                values = self.in_query(req, name);
            }
            if values.is_empty() && self.key_in_body {
                let fields = body.get_or_insert_with(|| parse_body(ctx, req));
                match fields.get(name) {
                    Field::One(v) => values.push(v),
                    Field::Many => return Err("Duplicate API key found"),
                    Field::Missing | Field::Other => {}
                }
            }
            match values.len() {
                0 => continue,
                1 => {
                    key = values.pop();
                    if self.hide_credentials {
                        let fields = match (self.key_in_body, body.take()) {
                            (false, _) => BodyFields::None,
                            (true, Some(f)) => f,
                            (true, None) => parse_body(ctx, req),
                        };
                        self.hide(ctx, req, name, &fields);
                    }
                    break;
                }
                _ => return Err("Duplicate API key found"),
            }
        }
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err("No API key found in request");
        };
        let found = self.state.consumer_by_api_key(&key).filter(|(c, _)| {
            c.ttl.is_none_or(|ttl| {
                c.created_at.saturating_add(ttl.min(i64::MAX as u64) as i64) > now()
            })
        });
        let Some((cred, consumer)) = found else {
            return Err("Unauthorized");
        };
        let credential = CredentialInfo {
            id: cred.id,
            identifier: cred.id.to_string(),
        };
        common::set_consumer(
            ctx,
            &mut req.headers,
            &self.state,
            consumer,
            Some(credential),
        );
        Ok(())
    }
}

impl Plugin for KeyAuth {
    /// The body is needed when the first key name must be looked up in it
    /// (Kong reads it lazily, name by name), or to strip the key from it.
    fn wants_body(&self, ctx: &RequestCtx, req: &http::request::Parts) -> bool {
        let skipped = (!self.run_on_preflight && req.method == Method::OPTIONS)
            || (self.anonymous.is_some() && common::already_authenticated(ctx));
        if !self.key_in_body || skipped {
            return false;
        }
        if self.hide_credentials {
            return true;
        }
        self.key_names.first().is_some_and(|name| {
            self.in_header(req, name).is_empty() && self.in_query(req, name).is_empty()
        })
    }

    fn access(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Option<Reply> {
        if !self.run_on_preflight && req.method == Method::OPTIONS {
            return None;
        }
        if self.anonymous.is_some() && common::already_authenticated(ctx) {
            return None;
        }
        match self.authenticate(ctx, req) {
            Ok(()) => None,
            Err(message) => match &self.anonymous {
                Some(anon) => common::anonymous(ctx, &mut req.headers, &self.state, anon),
                None => Some(with_www_authenticate(
                    Reply::message(StatusCode::UNAUTHORIZED, message),
                    &self.www,
                )),
            },
        }
    }
}
