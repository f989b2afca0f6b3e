//! Kong's key-auth plugin (priority 1250): an API key from the headers
//! and/or query parameters named by `key_names`; `hide_credentials` strips
//! it before the upstream sees the request; a key whose `ttl` has run out
//! (from its `created_at`) no longer authenticates. Answers 401 "No API
//! key found in request", "Duplicate API key found" or "Unauthorized",
//! with `WWW-Authenticate: Key realm="kong"` (or the configured realm).
//!
//! `key_in_body` is not supported: the access phase runs before the
//! streamed body is read, and buffering every body for it is not worth
//! it; such a key is simply not found.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderName, Method, StatusCode};
use serde_json::Value;

use super::auth_common::{self as common, with_www_authenticate};
use super::{CredentialInfo, Plugin, Reply, RequestCtx};
use crate::model::State;

pub struct KeyAuth {
    key_names: Vec<String>,
    hide_credentials: bool,
    key_in_header: bool,
    key_in_query: bool,
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

impl KeyAuth {
    fn authenticate(
        &self,
        ctx: &mut RequestCtx,
        req: &mut http::request::Parts,
    ) -> Result<(), &'static str> {
        let mut key: Option<String> = None;
        for name in &self.key_names {
            let mut values: Vec<String> = Vec::new();
            if self.key_in_header {
                if let Ok(h) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                    values.extend(
                        req.headers
                            .get_all(&h)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .map(str::to_string),
                    );
                    if !values.is_empty() && self.hide_credentials {
                        req.headers.remove(&h);
                    }
                }
            }
            if values.is_empty() && self.key_in_query {
                if let Some(q) = req.uri.query() {
                    values.extend(
                        form_urlencoded::parse(q.as_bytes())
                            .filter(|(k, _)| k == name)
                            .map(|(_, v)| v.into_owned()),
                    );
                    if !values.is_empty() && self.hide_credentials {
                        let rest = common::query_without(q, name);
                        common::set_query(req, rest.as_deref());
                    }
                }
            }
            match values.len() {
                0 => continue,
                1 => {
                    key = values.pop();
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
