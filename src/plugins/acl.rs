//! Kong's acl plugin (priority 950): lets a consumer through when one of
//! its acl groups is in `allow` (or none is in `deny`); otherwise 403
//! "You cannot consume this service". A request with no consumer (no auth
//! plugin ran, or none identified it) gets 401 "Unauthorized". The groups
//! go upstream as `X-Consumer-Groups` unless `hide_groups_header`. With
//! `include_consumer_groups`, the names of the consumer's consumer groups
//! count as acl groups too.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use super::{Plugin, Reply, RequestCtx};
use crate::model::{Entity, EntityKind, State};

const X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");
const BLOCKED: &str = "You cannot consume this service";

pub struct Acl {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    hide_groups_header: bool,
    include_consumer_groups: bool,
    state: State,
}

fn list(config: &Value, field: &str) -> Option<Vec<String>> {
    let a = config.get(field)?.as_array()?;
    let v: Vec<String> = a
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    (!v.is_empty()).then_some(v)
}

pub fn build(config: &Value, state: &State) -> Result<Arc<dyn Plugin>, String> {
    let allow = list(config, "allow");
    let deny = list(config, "deny");
    if allow.is_none() && deny.is_none() {
        return Err("one of allow or deny is required".into());
    }
    let flag = |name: &str| config.get(name).and_then(Value::as_bool).unwrap_or(false);
    Ok(Arc::new(Acl {
        allow,
        deny,
        hide_groups_header: flag("hide_groups_header"),
        include_consumer_groups: flag("include_consumer_groups"),
        state: state.clone(),
    }))
}

impl Plugin for Acl {
    fn access(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Option<Reply> {
        req.headers.remove(X_CONSUMER_GROUPS);
        if ctx.consumer.is_none() {
            return Some(Reply::message(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        let mut groups: Vec<&str> = ctx.acl_groups.iter().map(String::as_str).collect();
        if self.include_consumer_groups {
            for id in &ctx.consumer_groups {
                if let Some(Entity::ConsumerGroup(g)) =
                    self.state.get(EntityKind::ConsumerGroup, *id)
                {
                    groups.push(g.name.as_str());
                }
            }
        }
        let any_in = |names: &[String]| groups.iter().any(|g| names.iter().any(|n| n == g));
        let blocked = match (&self.allow, &self.deny) {
            (Some(allow), _) => !any_in(allow),
            (None, Some(deny)) => any_in(deny),
            (None, None) => false,
        };
        if blocked {
            return Some(Reply::message(StatusCode::FORBIDDEN, BLOCKED));
        }
        if !self.hide_groups_header && !groups.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&groups.join(", ")) {
                req.headers.insert(X_CONSUMER_GROUPS, v);
            }
        }
        None
    }
}
