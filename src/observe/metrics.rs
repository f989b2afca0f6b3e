//! The metrics registry of the node, served at `/metrics` in Prometheus'
//! text format.
//!
//! Three families live here:
//! - Kong's (`kong_*`), fed by the prometheus plugin's log phase with the
//!   names and labels Kong uses, so dashboards and alerts carry over
//!   ([`Naming::Kong`], the default); Kong's names break two of promtool's
//!   naming lints, so [`Naming::Prometheus`] offers the same series in
//!   base units with `_total` on counters;
//! - the cluster's (`raftgate_raft_*`, `raftgate_config_*`, …), read from a
//!   `ClusterView` at scrape time (nothing on the request path);
//! - hooks other modules call (`gossip_*`, `ratelimit_decision`): plain
//!   counters and gauges with small, fixed label sets.
//!
//! Label cardinality is bounded by construction: labels are entity names
//! (bounded by the config), status codes, fixed words and peer node ids;
//! never a raw path, and a consumer only when the plugin asks for it
//! (`per_consumer`).

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Kong's latency buckets (ms), from its exporter's defaults.
const LATENCY_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0,
    2000.0, 5000.0, 10000.0, 30000.0, 60000.0,
];

/// How the prometheus plugin's series are named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Naming {
    /// Kong's names: latencies in milliseconds (`kong_request_latency_ms`),
    /// `kong_bandwidth_bytes` without `_total`.
    #[default]
    Kong,
    /// Prometheus' conventions: latencies in seconds
    /// (`kong_request_latency_seconds`), `kong_bandwidth_bytes_total`.
    Prometheus,
}

impl std::str::FromStr for Naming {
    type Err = String;
    fn from_str(s: &str) -> Result<Naming, String> {
        match s {
            "kong" => Ok(Naming::Kong),
            "prometheus" => Ok(Naming::Prometheus),
            other => Err(format!("'{other}' is not one of kong, prometheus")),
        }
    }
}

impl Naming {
    /// The name of a latency histogram (`request`, `upstream`, `kong`).
    fn latency(self, what: &str) -> String {
        match self {
            Naming::Kong => format!("kong_{what}_latency_ms"),
            Naming::Prometheus => format!("kong_{what}_latency_seconds"),
        }
    }

    fn bandwidth(self) -> &'static str {
        match self {
            Naming::Kong => "kong_bandwidth_bytes",
            Naming::Prometheus => "kong_bandwidth_bytes_total",
        }
    }

    /// Latency buckets in the histograms' unit.
    fn buckets(self) -> Vec<f64> {
        let ms_per_unit = self.ms_per_unit();
        LATENCY_BUCKETS.iter().map(|b| b / ms_per_unit).collect()
    }

    fn ms_per_unit(self) -> f64 {
        match self {
            Naming::Kong => 1.0,
            Naming::Prometheus => 1000.0,
        }
    }
}

/// The `outcome` labels of `raftgate_ratelimit_decisions_total`, as the
/// rate limiter names its outcomes.
pub const RATELIMIT_OUTCOMES: [&str; 4] = ["allowed", "over_limit", "over_share", "partitioned"];

/// The workspace label: raftgate has a single one, Kong's default.
pub const WORKSPACE: &str = "default";

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    naming: Naming,
    pub http_requests: IntCounterVec,
    pub request_latency: HistogramVec,
    pub upstream_latency: HistogramVec,
    pub kong_latency: HistogramVec,
    pub bandwidth: IntCounterVec,
    pub connections: IntGaugeVec,
    pub requests_total: prometheus::IntCounter,

    pub raft_term: IntGauge,
    pub raft_is_leader: IntGauge,
    pub raft_role: IntGaugeVec,
    pub raft_leader_id: IntGauge,
    pub raft_has_leader: IntGauge,
    pub raft_last_log_index: IntGauge,
    pub raft_committed_index: IntGauge,
    pub raft_last_applied_index: IntGauge,
    pub raft_replication_lag: IntGaugeVec,
    pub raft_snapshot_index: IntGauge,
    pub raft_snapshot_size: IntGauge,
    pub raft_snapshot_age: Gauge,
    pub node_ready: IntGauge,
    pub config_version: IntGauge,
    pub revocations_active: IntGauge,

    pub gossip_peers: IntGauge,
    pub gossip_last_message_age: prometheus::GaugeVec,
    pub gossip_bytes_sent: IntCounterVec,
    pub ratelimit_decisions: IntCounterVec,
    /// The series of `ratelimit_decisions` for [`RATELIMIT_OUTCOMES`],
    /// resolved once: a decision then costs one atomic add.
    ratelimit_outcomes: Vec<prometheus::IntCounter>,
    pub access_log_dropped: prometheus::IntCounter,

    /// Snapshot index last seen and when it changed (for the age).
    snapshot_seen: Mutex<Option<(u64, Instant)>>,
    /// When each gossip peer was last heard from.
    gossip_seen: Mutex<std::collections::BTreeMap<String, Instant>>,
}

/// Builds a metric and registers it; names and labels are constants, so a
/// failure is a programming error caught by the unit tests.
fn reg<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: T) -> T {
    if let Err(e) = registry.register(Box::new(m.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    m
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::new(name, help).expect("valid metric"))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histogram(r: &Registry, naming: Naming, what: &str, help: &str) -> HistogramVec {
    let opts = HistogramOpts::new(naming.latency(what), help).buckets(naming.buckets());
    reg(
        r,
        HistogramVec::new(opts, &["service", "route", "workspace"]).expect("valid metric"),
    )
}

impl Metrics {
    fn new(naming: Naming) -> Metrics {
        let r = Registry::new();
        let ratelimit_decisions = counter_vec(
            &r,
            "raftgate_ratelimit_decisions_total",
            "Rate-limit decisions by outcome",
            &["outcome"],
        );
        let ratelimit_outcomes = RATELIMIT_OUTCOMES
            .iter()
            .map(|o| ratelimit_decisions.with_label_values(&[*o]))
            .collect();
        Metrics {
            http_requests: counter_vec(
                &r,
                "kong_http_requests_total",
                "HTTP status codes per consumer/service/route in Kong",
                &[
                    "service",
                    "route",
                    "code",
                    "source",
                    "workspace",
                    "consumer",
                ],
            ),
            request_latency: histogram(
                &r,
                naming,
                "request",
                "Total latency incurred during requests for each service/route in Kong",
            ),
            upstream_latency: histogram(
                &r,
                naming,
                "upstream",
                "Latency added by upstream response for each service/route in Kong",
            ),
            kong_latency: histogram(
                &r,
                naming,
                "kong",
                "Latency added by Kong and enabled plugins for each service/route in Kong",
            ),
            bandwidth: counter_vec(
                &r,
                naming.bandwidth(),
                "Total bandwidth (ingress/egress) throughput in bytes",
                &["service", "route", "direction", "workspace", "consumer"],
            ),
            // Kong's kong_nginx_* equivalents, named so that promtool's
            // lint passes (Kong's are gauges ending in _total).
            connections: gauge_vec(
                &r,
                "raftgate_http_connections",
                "Proxy connections by state, as in /status",
                &["state"],
            ),
            requests_total: reg(
                &r,
                prometheus::IntCounter::new(
                    "raftgate_http_requests_total",
                    "Requests received by the proxy",
                )
                .expect("valid metric"),
            ),
            raft_term: gauge(&r, "raftgate_raft_term", "Current Raft term of this node"),
            raft_is_leader: gauge(
                &r,
                "raftgate_raft_is_leader",
                "1 when this node is the Raft leader",
            ),
            raft_role: gauge_vec(
                &r,
                "raftgate_raft_role",
                "1 for this node's current Raft role",
                &["role"],
            ),
            raft_leader_id: gauge(
                &r,
                "raftgate_raft_leader_id",
                "Node id of the leader this node knows (0: none)",
            ),
            raft_has_leader: gauge(
                &r,
                "raftgate_raft_has_leader",
                "1 when this node knows a leader",
            ),
            raft_last_log_index: gauge(
                &r,
                "raftgate_raft_last_log_index",
                "Index of the last entry in this node's Raft log",
            ),
            raft_committed_index: gauge(
                &r,
                "raftgate_raft_committed_index",
                "Highest log index this node knows to be committed",
            ),
            raft_last_applied_index: gauge(
                &r,
                "raftgate_raft_last_applied_index",
                "Index of the last entry applied to this node's state machine",
            ),
            raft_replication_lag: gauge_vec(
                &r,
                "raftgate_raft_replication_lag_entries",
                "On the leader: entries each peer is behind the leader's log",
                &["peer"],
            ),
            raft_snapshot_index: gauge(
                &r,
                "raftgate_raft_snapshot_index",
                "Last log index included in this node's latest snapshot",
            ),
            raft_snapshot_size: gauge(
                &r,
                "raftgate_raft_snapshot_size_bytes",
                "Size of this node's latest snapshot",
            ),
            raft_snapshot_age: reg(
                &r,
                Gauge::new(
                    "raftgate_raft_snapshot_age_seconds",
                    "Seconds since this process saw the latest snapshot index change",
                )
                .expect("valid metric"),
            ),
            node_ready: gauge(
                &r,
                "raftgate_node_ready",
                "1 when /status/ready answers 200",
            ),
            config_version: gauge(
                &r,
                "raftgate_config_version",
                "Version of the applied configuration",
            ),
            revocations_active: gauge(
                &r,
                "raftgate_jwt_revocations_active",
                "JWT revocations in the applied state",
            ),
            gossip_peers: gauge(
                &r,
                "raftgate_gossip_peers",
                "Rate-limit gossip peers this node exchanges counters with",
            ),
            gossip_last_message_age: reg(
                &r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "raftgate_gossip_last_message_age_seconds",
                        "Seconds since the last gossip message from each peer",
                    ),
                    &["peer"],
                )
                .expect("valid metric"),
            ),
            gossip_bytes_sent: counter_vec(
                &r,
                "raftgate_gossip_bytes_sent_total",
                "Bytes of rate-limit gossip sent to each peer",
                &["peer"],
            ),
            ratelimit_decisions,
            ratelimit_outcomes,
            access_log_dropped: reg(
                &r,
                prometheus::IntCounter::new(
                    "raftgate_access_log_dropped_total",
                    "Access log lines dropped because the writer fell behind",
                )
                .expect("valid metric"),
            ),
            naming,
            snapshot_seen: Mutex::new(None),
            gossip_seen: Mutex::new(Default::default()),
            registry: r,
        }
    }

    /// A latency in the unit of the latency histograms.
    pub fn latency_value(&self, d: std::time::Duration) -> f64 {
        d.as_secs_f64() * 1000.0 / self.naming.ms_per_unit()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.refresh_ages();
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    fn refresh_ages(&self) {
        let seen = self.gossip_seen.lock().unwrap_or_else(|p| p.into_inner());
        for (peer, at) in seen.iter() {
            self.gossip_last_message_age
                .with_label_values(&[peer.as_str()])
                .set(at.elapsed().as_secs_f64());
        }
    }

    /// See [`ratelimit_decision`].
    pub fn count_ratelimit_decision(&self, outcome: &str) {
        match RATELIMIT_OUTCOMES.iter().position(|o| *o == outcome) {
            Some(i) if i < self.ratelimit_outcomes.len() => self.ratelimit_outcomes[i].inc(),
            _ => self.ratelimit_decisions.with_label_values(&[outcome]).inc(),
        }
    }

    /// Copies the cluster's view into the gauges (called at scrape time).
    pub fn set_cluster(&self, v: &ClusterView) {
        self.raft_term.set(v.term as i64);
        self.raft_is_leader.set(i64::from(v.role == "leader"));
        for role in ["leader", "follower", "candidate", "learner", "shutdown"] {
            self.raft_role
                .with_label_values(&[role])
                .set(i64::from(v.role == role));
        }
        self.raft_leader_id.set(v.leader.unwrap_or(0) as i64);
        self.raft_has_leader.set(i64::from(v.leader.is_some()));
        self.raft_last_log_index.set(v.last_log_index as i64);
        self.raft_committed_index.set(v.committed_index as i64);
        self.raft_last_applied_index
            .set(v.last_applied_index as i64);
        // Lag is only known on the leader; elsewhere the series go away.
        self.raft_replication_lag.reset();
        for (peer, lag) in &v.replication_lag {
            self.raft_replication_lag
                .with_label_values(&[peer.to_string().as_str()])
                .set(*lag as i64);
        }
        self.raft_snapshot_index.set(v.snapshot_index as i64);
        self.raft_snapshot_size.set(v.snapshot_size_bytes as i64);
        {
            let mut seen = self.snapshot_seen.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match *seen {
                Some((idx, _)) if idx == v.snapshot_index => {}
                _ => *seen = Some((v.snapshot_index, now)),
            }
            let age = seen.map_or(0.0, |(_, at)| at.elapsed().as_secs_f64());
            self.raft_snapshot_age
                .set(if v.snapshot_index == 0 { 0.0 } else { age });
        }
        self.config_version.set(v.config_version as i64);
        self.revocations_active.set(v.revocations as i64);
    }
}

/// The cluster as one node sees it, handed over by whoever owns the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    pub node_id: u64,
    /// leader | follower | candidate | learner | shutdown
    pub role: &'static str,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub last_applied_index: u64,
    /// On the leader: (peer, entries behind).
    pub replication_lag: Vec<(u64, u64)>,
    pub snapshot_index: u64,
    pub snapshot_size_bytes: u64,
    pub config_version: u64,
    pub revocations: u64,
}

static NAMING: OnceLock<Naming> = OnceLock::new();

/// Chooses the names of the prometheus plugin's series; call before the
/// first use of [`global`] (later calls change nothing).
pub fn use_naming(naming: Naming) {
    if NAMING.set(naming).is_err() && NAMING.get() != Some(&naming) {
        tracing::warn!(?naming, "metric names were already chosen");
    }
}

/// The node's metrics (one registry per process).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics::new(NAMING.get().copied().unwrap_or_default()))
}

/// Hook for the rate-limiting plugin: one decision, by outcome (one of
/// [`RATELIMIT_OUTCOMES`]; keep the set small).
pub fn ratelimit_decision(outcome: &str) {
    global().count_ratelimit_decision(outcome);
}

/// Hook for gossip: a message from `peer` (a node id) arrived now.
pub fn gossip_received(peer: u64) {
    let m = global();
    let mut seen = m.gossip_seen.lock().unwrap_or_else(|p| p.into_inner());
    seen.insert(peer.to_string(), Instant::now());
}

/// Hook for gossip: `bytes` were sent to `peer`.
pub fn gossip_sent(peer: u64, bytes: u64) {
    global()
        .gossip_bytes_sent
        .with_label_values(&[peer.to_string().as_str()])
        .inc_by(bytes);
}

/// Hook for gossip: the number of peers changed; forgets the ones gone.
pub fn gossip_peers(peers: &[u64]) {
    let m = global();
    m.gossip_peers.set(peers.len() as i64);
    let mut seen = m.gossip_seen.lock().unwrap_or_else(|p| p.into_inner());
    let keep: Vec<String> = peers.iter().map(u64::to_string).collect();
    seen.retain(|p, _| keep.contains(p));
    m.gossip_last_message_age.reset();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let m = Metrics::new(Naming::Kong);
        m.http_requests
            .with_label_values(&["s", "r", "200", "service", WORKSPACE, ""])
            .inc();
        m.set_cluster(&ClusterView {
            role: "leader",
            leader: Some(1),
            term: 3,
            replication_lag: vec![(2, 5)],
            snapshot_index: 10,
            ..Default::default()
        });
        let text = m.render();
        assert!(text.contains("# TYPE kong_http_requests_total counter"));
        assert!(text.contains("raftgate_raft_term 3"));
        assert!(text.contains("raftgate_raft_is_leader 1"));
        assert!(text.contains("raftgate_raft_replication_lag_entries{peer=\"2\"} 5"));
        assert!(text.contains("raftgate_raft_role{role=\"follower\"} 0"));
        m.set_cluster(&ClusterView {
            role: "follower",
            ..Default::default()
        });
        let text = m.render();
        assert!(!text.contains("raftgate_raft_replication_lag_entries{"));
        assert!(text.contains("raftgate_raft_has_leader 0"));
    }

    #[test]
    fn prometheus_naming_uses_seconds_and_total() {
        let m = Metrics::new(Naming::Prometheus);
        let labels = ["s", "r", WORKSPACE];
        let latency = m.latency_value(std::time::Duration::from_millis(250));
        assert!((latency - 0.25).abs() < 1e-9, "{latency}");
        m.request_latency
            .with_label_values(&labels)
            .observe(latency);
        m.bandwidth
            .with_label_values(&["s", "r", "egress", WORKSPACE, ""])
            .inc_by(7);
        let text = m.render();
        assert!(
            text.contains("# TYPE kong_request_latency_seconds histogram"),
            "{text}"
        );
        assert!(text.contains(
            "kong_request_latency_seconds_bucket{route=\"r\",service=\"s\",workspace=\"default\",le=\"0.2\"} 0"
        ), "{text}");
        assert!(text.contains(
            "kong_request_latency_seconds_bucket{route=\"r\",service=\"s\",workspace=\"default\",le=\"0.5\"} 1"
        ), "{text}");
        assert!(text.contains("kong_bandwidth_bytes_total{"), "{text}");
        assert!(!text.contains("_ms"), "{text}");
        assert_eq!("prometheus".parse::<Naming>(), Ok(Naming::Prometheus));
        assert!("seconds".parse::<Naming>().is_err());
    }

    #[test]
    fn ratelimit_outcomes_are_counted_by_label() {
        let m = Metrics::new(Naming::Kong);
        m.count_ratelimit_decision("over_share");
        m.count_ratelimit_decision("over_share");
        m.count_ratelimit_decision("something_else");
        let text = m.render();
        assert!(text.contains("raftgate_ratelimit_decisions_total{outcome=\"partitioned\"} 0"));
        assert!(text.contains("raftgate_ratelimit_decisions_total{outcome=\"over_share\"} 2"));
        assert!(text.contains("raftgate_ratelimit_decisions_total{outcome=\"something_else\"} 1"));
    }

    /// Every metric each Grafana dashboard queries exists under the naming
    /// it is written for.
    #[test]
    fn dashboards_query_only_known_metrics() {
        let dashboards = [
            (
                Naming::Kong,
                include_str!("../../observe/grafana/raftgate.json"),
            ),
            (
                Naming::Prometheus,
                include_str!("../../observe/grafana/raftgate-prometheus-names.json"),
            ),
        ];
        for (naming, dashboard) in dashboards {
            assert_dashboard_metrics_exist(naming, dashboard);
        }
    }

    fn assert_dashboard_metrics_exist(naming: Naming, dashboard: &str) {
        let m = Metrics::new(naming);
        let labels3 = ["s", "r", WORKSPACE];
        m.request_latency.with_label_values(&labels3).observe(1.0);
        m.upstream_latency.with_label_values(&labels3).observe(1.0);
        m.kong_latency.with_label_values(&labels3).observe(1.0);
        m.http_requests
            .with_label_values(&["s", "r", "200", "service", WORKSPACE, "c"])
            .inc();
        m.bandwidth
            .with_label_values(&["s", "r", "ingress", WORKSPACE, ""])
            .inc();
        m.connections.with_label_values(&["active"]).set(1);
        m.raft_replication_lag.with_label_values(&["2"]).set(1);
        m.gossip_last_message_age.with_label_values(&["2"]).set(1.0);
        m.gossip_bytes_sent.with_label_values(&["2"]).inc();
        m.ratelimit_decisions.with_label_values(&["allowed"]).inc();
        m.raft_role.with_label_values(&["leader"]).set(1);
        let text = m.render();
        let mut names: Vec<&str> = dashboard
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("kong_") || w.starts_with("raftgate_"))
            .collect();
        names.sort();
        names.dedup();
        assert!(names.len() > 10, "{names:?}");
        for name in names {
            assert!(
                text.contains(&format!("\n{name}{{")) || text.contains(&format!("\n{name} ")),
                "{naming:?} dashboard uses unknown metric {name}"
            );
        }
    }
}
