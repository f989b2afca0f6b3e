//! The Kong-compatible Admin API (axum): handlers, Kong's error format,
//! admin tokens. It talks to the replicated store only through `Backend`.
//!
//! Mount it with [`router`]; the route table in `routes.rs` lists every
//! endpoint (and generates `/openapi.json`).

pub mod auth;
pub mod backend;
pub mod body;
mod certificates;
mod cluster;
mod config;
pub mod credentials;
pub mod decode;
pub mod errors;
mod groups;
pub mod handlers;
mod info;
pub mod lookup;
pub mod openapi;
pub mod pagination;
pub mod prepare;
mod revocations;
pub mod routes;
mod shorthand;
mod tags;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use auth::Role;
pub use backend::{Backend, WriteError};

/// Node facts and access rules the Admin API needs.
#[derive(Clone)]
pub struct AdminSettings {
    pub node_id: u64,
    pub hostname: String,
    /// raftgate's version, shown by `GET /` as `raftgate_version` (its
    /// `version` is the Kong version whose Admin API this one follows, so
    /// Kong tooling that parses it keeps working).
    pub version: String,
    /// The node settings safe to show (`GET /` → `configuration`): no
    /// secrets, no token hashes.
    pub configuration: serde_json::Value,
    /// Admin tokens as (hex SHA-256 of the token, role).
    pub tokens: Vec<(String, Role)>,
    /// Whether requests must carry a token (the lead sets this when the
    /// admin listener is not loopback).
    pub require_tokens: bool,
    /// Server counters shown by `GET /status`. The Admin API counts its own
    /// requests in `total_requests`; share the `Arc` with the proxy so it
    /// counts there too, and let the listeners keep `connections_*`.
    pub counters: Arc<AdminCounters>,
}

impl AdminSettings {
    /// Settings for node `node_id` with no tokens required.
    pub fn new(node_id: u64) -> Self {
        AdminSettings {
            node_id,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".to_string()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            configuration: serde_json::json!({}),
            tokens: Vec::new(),
            require_tokens: false,
            counters: Arc::default(),
        }
    }

    /// Adds a token given in clear (it is hashed at once).
    pub fn with_token(mut self, token: &str, role: Role) -> Self {
        self.tokens.push((credentials::sha256_hex(token), role));
        self
    }

    /// Adds a token already hashed (hex SHA-256, as stored in settings).
    pub fn with_token_hash(mut self, sha256_hex: &str, role: Role) -> Self {
        self.tokens
            .push((sha256_hex.trim().to_ascii_lowercase(), role));
        self
    }
}

/// Token hashes stay out of debug output (a weak token could be guessed
/// back from its hash).
impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("node_id", &self.node_id)
            .field("hostname", &self.hostname)
            .field("version", &self.version)
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("require_tokens", &self.require_tokens)
            .finish_non_exhaustive()
    }
}

/// Kong's `GET /status` `server` counters.
#[derive(Debug, Default)]
pub struct AdminCounters {
    pub connections_active: AtomicU64,
    pub connections_reading: AtomicU64,
    pub connections_writing: AtomicU64,
    pub connections_waiting: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_handled: AtomicU64,
    pub total_requests: AtomicU64,
}

impl AdminCounters {
    /// The counters as Kong's JSON object.
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "connections_active": get(&self.connections_active),
            "connections_reading": get(&self.connections_reading),
            "connections_writing": get(&self.connections_writing),
            "connections_waiting": get(&self.connections_waiting),
            "connections_accepted": get(&self.connections_accepted),
            "connections_handled": get(&self.connections_handled),
            "total_requests": get(&self.total_requests),
        })
    }
}

/// The Admin API over `backend`, with token checks when
/// `settings.require_tokens`.
pub fn router<B: Backend>(backend: B, settings: AdminSettings) -> axum::Router {
    let settings = Arc::new(settings);
    let table = routes::table();
    let app = handlers::App {
        backend,
        settings: settings.clone(),
        openapi: Arc::new(openapi::document(&table, &settings.version)),
    };
    let inner = routes::build(&table, app);
    // Kong resolves `/services/` as `/services`: drop one trailing slash
    // before routing.
    let tolerant = tower::ServiceExt::map_request(inner, strip_trailing_slash);
    let counters = settings.counters.clone();
    axum::Router::new()
        .fallback_service(tolerant)
        .layer(axum::middleware::from_fn_with_state(
            settings,
            auth::require_token,
        ))
        .layer(axum::middleware::map_request(
            move |request: axum::extract::Request| {
                counters.total_requests.fetch_add(1, Ordering::Relaxed);
                std::future::ready(request)
            },
        ))
}

fn strip_trailing_slash(mut request: axum::extract::Request) -> axum::extract::Request {
    let uri = request.uri();
    let path = uri.path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = &path[..path.len() - 1];
        let rebuilt = match uri.query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(new_uri) = rebuilt.parse() {
            *request.uri_mut() = new_uri;
        }
    }
    request
}
