//! The gateway's entities, with Kong's field names and defaults.
//!
//! Every struct here is plain data: what the Admin API accepts and returns,
//! what the Raft log carries, and what the data plane compiles. Defaults
//! follow Kong 3.x (see shared/reference/kong.md). Validation that needs
//! only one entity lives in `validate.rs`; rules across entities (unique
//! names, foreign keys) are enforced by `State::apply`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Seconds since the Unix epoch, chosen by the node that proposes a write.
pub type Timestamp = i64;

/// A reference to another entity, as Kong writes it: `{"id": "…"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct ForeignKey {
    pub id: Uuid,
}

impl ForeignKey {
    pub fn new(id: Uuid) -> Self {
        Self { id }
    }
}

fn default_http() -> String {
    "http".to_string()
}
fn default_port() -> u16 {
    80
}
fn default_retries() -> u32 {
    5
}
fn default_timeout_ms() -> u64 {
    60_000
}
fn yes() -> bool {
    true
}
fn default_route_protocols() -> Vec<String> {
    vec!["http".to_string(), "https".to_string()]
}
fn default_redirect_code() -> u16 {
    426
}
fn default_path_handling() -> String {
    "v0".to_string()
}
fn default_algorithm() -> String {
    "round-robin".to_string()
}
fn default_slots() -> u32 {
    10_000
}
fn default_hash_none() -> String {
    "none".to_string()
}
fn default_weight() -> u32 {
    100
}
fn default_jwt_algorithm() -> String {
    "HS256".to_string()
}
/// Every request protocol of Kong 3's http subsystem, WebSocket included
/// (as Kong Enterprise, which has `ws`/`wss` routes, defaults it): a plugin
/// added without `protocols` must not skip requests on a `ws` route.
fn default_plugin_protocols() -> Vec<String> {
    ["grpc", "grpcs", "http", "https", "ws", "wss"]
        .map(str::to_string)
        .to_vec()
}
fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_http")]
    pub protocol: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_timeout_ms")]
    pub connect_timeout: u64,
    #[serde(default = "default_timeout_ms")]
    pub write_timeout: u64,
    #[serde(default = "default_timeout_ms")]
    pub read_timeout: u64,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub tls_verify: Option<bool>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_route_protocols")]
    pub protocols: Vec<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Header name → accepted values (Kong: a value starting with `~*` is a regex).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub snis: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub strip_path: bool,
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub regex_priority: i64,
    #[serde(default = "default_redirect_code")]
    pub https_redirect_status_code: u16,
    #[serde(default = "default_path_handling")]
    pub path_handling: String,
    #[serde(default = "yes")]
    pub request_buffering: bool,
    #[serde(default = "yes")]
    pub response_buffering: bool,
    #[serde(default)]
    pub service: Option<ForeignKey>,
    /// raftgate extension: answer by calling several backends and merging
    /// their JSON bodies (response aggregation). `None` for a plain route.
    #[serde(default)]
    pub aggregate: Option<Aggregation>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// A route's fan-out to several backends whose JSON answers are merged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    /// "nested": each part under its `key`; "merge": objects merged at the top.
    #[serde(default = "default_aggregate_mode")]
    pub mode: String,
    pub backends: Vec<AggregateBackend>,
}

fn default_aggregate_mode() -> String {
    "nested".to_string()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AggregateBackend {
    pub key: String,
    pub service: ForeignKey,
    /// Path on the service; `{name}` placeholders take the client's path
    /// parameters captured by the route's regex path.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_backend_timeout")]
    pub timeout: u64,
    #[serde(default)]
    pub required: bool,
}

fn default_backend_timeout() -> u64 {
    1_000
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    pub name: String,
    /// "round-robin", "least-connections" or "consistent-hashing".
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// "none", "consumer", "ip", "header".
    #[serde(default = "default_hash_none")]
    pub hash_on: String,
    #[serde(default = "default_hash_none")]
    pub hash_fallback: String,
    #[serde(default)]
    pub hash_on_header: Option<String>,
    #[serde(default)]
    pub hash_fallback_header: Option<String>,
    #[serde(default)]
    pub host_header: Option<String>,
    /// Kong's cookie / query-arg / URI-capture hashing inputs; accepted so
    /// that decK files and dumps from Kong load as they are.
    #[serde(default)]
    pub hash_on_cookie: Option<String>,
    #[serde(default = "default_probe_path")]
    pub hash_on_cookie_path: String,
    #[serde(default)]
    pub hash_on_query_arg: Option<String>,
    #[serde(default)]
    pub hash_fallback_query_arg: Option<String>,
    #[serde(default)]
    pub hash_on_uri_capture: Option<String>,
    #[serde(default)]
    pub hash_fallback_uri_capture: Option<String>,
    #[serde(default)]
    pub use_srv_name: bool,
    #[serde(default)]
    pub healthchecks: Healthchecks,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Kong's health-check settings. Zero intervals or counters disable a check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Healthchecks {
    #[serde(default)]
    pub active: ActiveHealthcheck,
    #[serde(default)]
    pub passive: PassiveHealthcheck,
    #[serde(default)]
    pub threshold: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthcheck {
    #[serde(default = "default_http", rename = "type")]
    pub kind: String,
    #[serde(default = "default_probe_path")]
    pub http_path: String,
    #[serde(default = "default_probe_timeout")]
    pub timeout: u64,
    #[serde(default = "default_probe_concurrency")]
    pub concurrency: u32,
    #[serde(default)]
    pub healthy: HealthyRule,
    #[serde(default)]
    pub unhealthy: UnhealthyRule,
    #[serde(default = "yes")]
    pub https_verify_certificate: bool,
    #[serde(default)]
    pub https_sni: Option<String>,
    /// Extra headers sent with each probe.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
}

impl Default for ActiveHealthcheck {
    fn default() -> Self {
        Self {
            kind: default_http(),
            http_path: default_probe_path(),
            timeout: default_probe_timeout(),
            concurrency: default_probe_concurrency(),
            healthy: HealthyRule::default(),
            unhealthy: UnhealthyRule::default(),
            https_verify_certificate: true,
            https_sni: None,
            headers: None,
        }
    }
}

fn default_probe_path() -> String {
    "/".to_string()
}
fn default_probe_timeout() -> u64 {
    1
}
fn default_probe_concurrency() -> u32 {
    10
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthcheck {
    #[serde(default = "default_http", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub healthy: HealthyRule,
    #[serde(default)]
    pub unhealthy: UnhealthyRule,
}

impl Default for PassiveHealthcheck {
    fn default() -> Self {
        Self {
            kind: default_http(),
            healthy: HealthyRule::default(),
            unhealthy: UnhealthyRule::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthyRule {
    /// Seconds between active probes of healthy targets (0 = off).
    #[serde(default)]
    pub interval: u64,
    #[serde(default = "default_healthy_statuses")]
    pub http_statuses: Vec<u16>,
    #[serde(default)]
    pub successes: u32,
}

impl Default for HealthyRule {
    fn default() -> Self {
        Self {
            interval: 0,
            http_statuses: default_healthy_statuses(),
            successes: 0,
        }
    }
}

fn default_healthy_statuses() -> Vec<u16> {
    vec![200, 302]
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UnhealthyRule {
    /// Seconds between active probes of unhealthy targets (0 = off).
    #[serde(default)]
    pub interval: u64,
    #[serde(default = "default_unhealthy_statuses")]
    pub http_statuses: Vec<u16>,
    #[serde(default)]
    pub http_failures: u32,
    #[serde(default)]
    pub tcp_failures: u32,
    #[serde(default)]
    pub timeouts: u32,
}

impl Default for UnhealthyRule {
    fn default() -> Self {
        Self {
            interval: 0,
            http_statuses: default_unhealthy_statuses(),
            http_failures: 0,
            tcp_failures: 0,
            timeouts: 0,
        }
    }
}

fn default_unhealthy_statuses() -> Vec<u16> {
    vec![429, 500, 503]
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    pub upstream: ForeignKey,
    /// "host:port" (port defaults to 8000 as in Kong).
    pub target: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub custom_id: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroup {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    pub name: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// A consumer's membership of a consumer group (Kong's
/// `consumer_group_consumers`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroupMember {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    pub consumer_group: ForeignKey,
    pub consumer: ForeignKey,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    pub name: String,
    #[serde(default)]
    pub instance_name: Option<String>,
    #[serde(default)]
    pub service: Option<ForeignKey>,
    #[serde(default)]
    pub route: Option<ForeignKey>,
    #[serde(default)]
    pub consumer: Option<ForeignKey>,
    #[serde(default)]
    pub consumer_group: Option<ForeignKey>,
    /// The plugin's configuration, with Kong's defaults filled in on write.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    #[serde(default = "default_plugin_protocols")]
    pub protocols: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtCredential {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    pub consumer: ForeignKey,
    pub key: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub rsa_public_key: Option<String>,
    #[serde(default = "default_jwt_algorithm")]
    pub algorithm: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthCredential {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    pub consumer: ForeignKey,
    pub key: String,
    /// Seconds the key lives after `created_at`; `None` for ever.
    #[serde(default)]
    pub ttl: Option<u64>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AclCredential {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    pub consumer: ForeignKey,
    pub group: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    /// PEM chain.
    pub cert: String,
    /// PEM private key. Never logged.
    pub key: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sni {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
    pub name: String,
    pub certificate: ForeignKey,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// One entry of the JWT revocation list. Exactly one matcher is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtRevocation {
    pub id: Uuid,
    #[serde(default)]
    pub created_at: Timestamp,
    /// Revokes the token whose `jti` claim equals this.
    #[serde(default)]
    pub jti: Option<String>,
    /// Revokes the token whose SHA-256 (hex) equals this; the token itself
    /// is never stored.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Revokes every token of this consumer with `iat` < `issued_before`.
    #[serde(default)]
    pub consumer: Option<ForeignKey>,
    /// Revokes every token signed by this jwt credential with `iat` <
    /// `issued_before` (or all of them when `issued_before` is absent).
    #[serde(default)]
    pub credential: Option<ForeignKey>,
    #[serde(default)]
    pub issued_before: Option<Timestamp>,
    /// After this instant the matched token(s) cannot be valid any more and
    /// the entry may be purged. `None`: kept until lifted.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}
