//! Kong's rate-limiting plugin (priority 910), counted cluster-wide by
//! [`crate::ratelimit`].
//!
//! **Config** (normalized by `model::plugin_schemas`): `second` … `year`
//! (at least one), `limit_by` consumer / credential / ip / service /
//! header (`header_name`) / path (`path`), `policy`, `fault_tolerant`,
//! `hide_client_headers`, `error_code`, `error_message`, and one
//! raftgate field, `fail_open`.
//!
//! **Identifier**, as Kong: `consumer` = the consumer's id (or the
//! credential's when there is no consumer), `credential` = the credential's
//! id, `service` = the matched service's id, `header` = the header's first
//! value, `path` = the request path when it equals `path`, `ip` = the
//! client address. Whenever the chosen identifier is missing the client IP
//! is used instead.
//!
//! **Key**: `<route>:<service>:<identifier>` where route and service are
//! the *plugin's* scope (Kong's `conf.route_id` / `conf.service_id`, the
//! nil UUID when unscoped), so a global plugin counts a consumer across
//! every route, as Kong does. The prefix is built once at compile time;
//! a request costs one string concatenation.
//!
//! **Policy**: `cluster` (the schema's default in raftgate) counts every
//! node's requests through gossip; on a one-node cluster it is the same as
//! `local`. `local` counts this node's requests only (N nodes admit up to
//! N × the limit, as Kong's `local`).
//!
//! **Partitions**: `fault_tolerant` keeps Kong's meaning — serve when the
//! counter store fails — which never happens here (counters are in
//! memory), so it changes nothing. What a node does while it hears nothing
//! from some peer is chosen by `fail_open` (default `false`): `false`
//! keeps the node to its equal share `limit / N` of each window so the
//! cluster stays within the limit; `true` keeps deciding with the last
//! counts heard (each side of a partition may admit the whole limit).
//!
//! **Headers**, unless `hide_client_headers`: `X-RateLimit-Limit-<Period>`
//! and `X-RateLimit-Remaining-<Period>` for each period, and
//! `RateLimit-Limit` / `-Remaining` / `-Reset` for the most restrictive.
//! A blocked request gets `error_code` with `{"message": error_message}`
//! and `Retry-After` (always, as Kong).

use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use uuid::Uuid;

use super::{Plugin, Reply, RequestCtx};
use crate::model::{Entity, EntityKind, State};
use crate::ratelimit::{self, CheckOptions, Decision, Outcome, Period, Policy, RateLimiter};

/// What the request is counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LimitBy {
    Consumer,
    Credential,
    Ip,
    Service,
    Header(HeaderName),
    Path(String),
}

/// One compiled rate-limiting instance.
pub struct RateLimiting {
    limits: Vec<(Period, u64)>,
    /// `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>`,
    /// parallel to `limits`.
    period_headers: Vec<(HeaderName, HeaderName)>,
    limit_by: LimitBy,
    /// `<route>:<service>:` of the plugin's scope.
    prefix: String,
    opts: CheckOptions,
    hide_client_headers: bool,
    error_code: StatusCode,
    error_message: String,
    limiter: Arc<RateLimiter>,
}

/// Headers decided in `access`, written in `header_filter`.
#[derive(Clone, Debug)]
struct Pending(Vec<(HeaderName, HeaderValue)>);

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Builds with the node's shared limiter.
pub fn build(config: &serde_json::Value, state: &State) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(RateLimiting::new(
        config,
        state,
        ratelimit::shared(),
    )?))
}

fn capitalized(period: Period) -> &'static str {
    match period {
        Period::Second => "Second",
        Period::Minute => "Minute",
        Period::Hour => "Hour",
        Period::Day => "Day",
        Period::Month => "Month",
        Period::Year => "Year",
    }
}

/// The plugin entity whose `config` is `config` (by address: `compile`
/// hands `build` a reference into the state), for its route and service.
fn scope_of(config: &serde_json::Value, state: &State) -> (Uuid, Uuid) {
    for entity in state.iter(EntityKind::Plugin) {
        if let Entity::Plugin(p) = entity {
            if std::ptr::eq(&p.config, config) {
                return (
                    p.route.as_ref().map_or(Uuid::nil(), |f| f.id),
                    p.service.as_ref().map_or(Uuid::nil(), |f| f.id),
                );
            }
        }
    }
    (Uuid::nil(), Uuid::nil())
}

impl RateLimiting {
    /// Compiles `config` against `limiter`.
    pub fn new(
        config: &serde_json::Value,
        state: &State,
        limiter: Arc<RateLimiter>,
    ) -> Result<RateLimiting, String> {
        let limits = ratelimit::limits_from_config(config);
        if limits.is_empty() {
            return Err(
                "at least one of these fields must be non-empty: 'config.second', \
                 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"
                    .into(),
            );
        }
        let str_of = |name: &str| config.get(name).and_then(|v| v.as_str());
        let limit_by = match str_of("limit_by").unwrap_or("consumer") {
            "consumer" => LimitBy::Consumer,
            "credential" => LimitBy::Credential,
            "ip" => LimitBy::Ip,
            "service" => LimitBy::Service,
            "header" => {
                let name = str_of("header_name").ok_or("limit_by header needs header_name")?;
                LimitBy::Header(
                    HeaderName::from_bytes(name.trim().as_bytes())
                        .map_err(|_| format!("invalid header_name {name:?}"))?,
                )
            }
            "path" => LimitBy::Path(
                str_of("path")
                    .ok_or("limit_by path needs path")?
                    .to_string(),
            ),
            other => return Err(format!("unknown limit_by {other:?}")),
        };
        let policy = match str_of("policy") {
            None | Some("cluster") => Policy::Cluster,
            Some("local") => Policy::Local,
            Some(other) => return Err(format!("unsupported policy {other:?}")),
        };
        let fail_open = config
            .get("fail_open")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let hide_client_headers = config
            .get("hide_client_headers")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let code = config
            .get("error_code")
            .and_then(|v| v.as_f64())
            .unwrap_or(429.0);
        let error_code = if code.fract() == 0.0 && (100.0..=999.0).contains(&code) {
            StatusCode::from_u16(code as u16).map_err(|e| e.to_string())?
        } else {
            return Err(format!("invalid error_code {code}"));
        };
        let error_message = str_of("error_message")
            .unwrap_or("API rate limit exceeded")
            .to_string();
        let period_headers = limits
            .iter()
            .map(|(p, _)| {
                let name = capitalized(*p).to_ascii_lowercase();
                (
                    HeaderName::from_bytes(format!("x-ratelimit-limit-{name}").as_bytes())
                        .map_err(|e| e.to_string()),
                    HeaderName::from_bytes(format!("x-ratelimit-remaining-{name}").as_bytes())
                        .map_err(|e| e.to_string()),
                )
            })
            .map(|(a, b)| Ok((a?, b?)))
            .collect::<Result<Vec<_>, String>>()?;
        let (route, service) = scope_of(config, state);
        Ok(RateLimiting {
            limits,
            period_headers,
            limit_by,
            prefix: format!("{route}:{service}:"),
            opts: CheckOptions { policy, fail_open },
            hide_client_headers,
            error_code,
            error_message,
            limiter,
        })
    }

    /// The counter key of this request: prefix + identifier (falling back
    /// to the client IP as Kong).
    fn key(&self, ctx: &RequestCtx, req: &http::request::Parts) -> String {
        use std::fmt::Write;
        let mut key = String::with_capacity(self.prefix.len() + 40);
        key.push_str(&self.prefix);
        let written = match &self.limit_by {
            LimitBy::Consumer => {
                let id = ctx
                    .consumer
                    .as_ref()
                    .map(|c| c.id)
                    .or_else(|| ctx.credential.as_ref().map(|c| c.id));
                id.map(|id| write!(key, "{id}")).is_some()
            }
            LimitBy::Credential => ctx
                .credential
                .as_ref()
                .map(|c| write!(key, "{}", c.id))
                .is_some(),
            LimitBy::Ip => false,
            LimitBy::Service => ctx.service_id.map(|s| write!(key, "{s}")).is_some(),
            LimitBy::Header(name) => match req.headers.get(name) {
                Some(v) if !v.is_empty() => {
                    // Header bytes may be any visible byte; keep them
                    // distinct from IPs by a prefix.
                    key.push_str("h=");
                    key.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    true
                }
                _ => false,
            },
            LimitBy::Path(path) => {
                if req.uri.path() == path {
                    key.push_str(path);
                    true
                } else {
                    false
                }
            }
        };
        if !written {
            if let Some(ip) = ctx.client_ip {
                let _ = write!(key, "{ip}");
            }
        }
        key
    }

    /// Kong's client headers for `d` (empty when hidden).
    fn headers(&self, d: &Decision) -> Vec<(HeaderName, HeaderValue)> {
        if self.hide_client_headers {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(2 * d.periods.len() + 3);
        for (status, (limit_h, remaining_h)) in d.periods.iter().zip(&self.period_headers) {
            out.push((limit_h.clone(), HeaderValue::from(status.limit)));
            out.push((remaining_h.clone(), HeaderValue::from(status.remaining)));
        }
        if let Some(m) = d.most_restrictive() {
            out.push((RATELIMIT_LIMIT.clone(), HeaderValue::from(m.limit)));
            out.push((RATELIMIT_REMAINING.clone(), HeaderValue::from(m.remaining)));
            out.push((RATELIMIT_RESET.clone(), HeaderValue::from(m.reset_secs)));
        }
        out
    }

    /// Decides one request at `now_ms` (wall-clock ms): `None` to let it
    /// through (headers pending in `ctx`), `Some` for the block.
    pub fn decide(
        &self,
        ctx: &mut RequestCtx,
        req: &http::request::Parts,
        now_ms: u64,
    ) -> Option<Reply> {
        let key = self.key(ctx, req);
        let d = self
            .limiter
            .check_with(&key, &self.limits, self.opts, now_ms);
        crate::observe::metrics::ratelimit_decision(match d.outcome {
            Outcome::Allowed => "allowed",
            Outcome::OverLimit => "over_limit",
            Outcome::OverShare => "over_share",
            Outcome::Partitioned => "partitioned",
        });
        let headers = self.headers(&d);
        if d.allowed {
            if !headers.is_empty() {
                ctx.extensions.insert(Pending(headers));
            }
            return None;
        }
        let mut reply = Reply::message(self.error_code, &self.error_message);
        for (name, value) in headers {
            reply.headers.insert(name, value);
        }
        // Never more than the longest exhausted period (the window slides
        // fully in that time).
        let cap = d
            .periods
            .iter()
            .filter(|s| s.remaining == 0)
            .map(|s| s.period.millis() / 1000)
            .max()
            .unwrap_or(1)
            .max(1);
        let retry = d.retry_after_secs.unwrap_or(1).clamp(1, cap);
        reply
            .headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from(retry));
        Some(reply)
    }
}

impl Plugin for RateLimiting {
    fn access(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Option<Reply> {
        self.decide(ctx, req, ratelimit::now_ms())
    }

    fn header_filter(&self, ctx: &mut RequestCtx, resp: &mut http::response::Parts) {
        if let Some(Pending(headers)) = ctx.extensions.remove::<Pending>() {
            for (name, value) in headers {
                resp.headers.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
