//! `GET /` and `GET /status` in Kong's shape, with the cluster's view
//! added, and `GET /plugins/enabled`.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::backend::Backend;
use super::handlers::App;
use crate::model::{plugin_schemas::KNOWN_PLUGINS, Entity, EntityKind};

/// The Kong release whose Admin API and behaviour raftgate follows
/// (shared/reference/kong.md).
pub const KONG_COMPATIBLE_VERSION: &str = "3.10.0";

/// Kong's plugin priorities (kong.md §5), shown under `available_on_server`.
fn priority(name: &str) -> Option<u32> {
    Some(match name {
        "correlation-id" => 100_001,
        "cors" => 2000,
        "jwt" => 1450,
        "key-auth" => 1250,
        "ip-restriction" => 990,
        "acl" => 950,
        "rate-limiting" => 910,
        "request-size-limiting" => 951,
        "request-transformer" => 801,
        "response-transformer" => 800,
        "prometheus" => 13,
        _ => return None,
    })
}

/// `GET /plugins/enabled`.
pub fn plugins_enabled() -> Value {
    json!({ "enabled_plugins": KNOWN_PLUGINS })
}

/// `GET /`.
pub fn root<B: Backend>(app: &App<B>) -> Value {
    let state = app.backend.state();
    let settings = &app.settings;
    let mut available = Map::new();
    for name in KNOWN_PLUGINS {
        let mut info = json!({ "version": settings.version });
        if let Some(p) = priority(name) {
            info["priority"] = json!(p);
        }
        available.insert((*name).to_string(), info);
    }
    let enabled: BTreeSet<&str> = state
        .iter(EntityKind::Plugin)
        .filter_map(|e| match e {
            Entity::Plugin(p) => Some(p.name.as_str()),
            _ => None,
        })
        .collect();
    json!({
        "tagline": "Welcome to raftgate",
        "version": KONG_COMPATIBLE_VERSION,
        "raftgate_version": settings.version,
        "edition": "community",
        "hostname": settings.hostname,
        "node_id": settings.node_id,
        "plugins": {
            "available_on_server": available,
            "enabled_in_cluster": enabled,
        },
        "configuration": settings.configuration,
        "pids": { "master": std::process::id() },
        "cluster": app.backend.cluster_info(),
    })
}

/// Resident memory of this process, from /proc (Linux); 0 elsewhere.
fn resident_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Names the configuration a node runs: equal on nodes that applied the
/// same log prefix.
pub fn configuration_hash(version: u64) -> String {
    hex::encode(&Sha256::digest(version.to_be_bytes())[..16])
}

/// `GET /status`.
pub fn status<B: Backend>(app: &App<B>) -> Value {
    let state = app.backend.state();
    let rss = resident_bytes();
    json!({
        "memory": {
            "resident_set_size": format!("{:.2} MiB", rss as f64 / (1024.0 * 1024.0)),
            "resident_set_size_bytes": rss,
        },
        "server": app.settings.counters.snapshot(),
        "configuration_hash": configuration_hash(state.version()),
        "configuration_version": state.version(),
        "cluster": app.backend.cluster_info(),
    })
}
