//! Observability, black-box: `/metrics` checked by `promtool` and scraped
//! by a real Prometheus server from a running 3-node cluster, the access
//! log (and every other log line) free of the credentials a run used,
//! correlation ids, `/status`, and readiness.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package,
//! which `scripts/test.sh` installs; these tests fail when it is missing.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Cluster};
use serde_json::{json, Value};

const API_KEY: &str = "SEKRET-apikey-7f3a91";
const TOKEN: &str = "SEKRET-token-c0ffee42";

/// Kong's metric names break two of promtool's naming lints (a unit
/// abbreviated in the name, a counter without `_total`); the names are
/// kept on purpose (dashboards and alerts written for Kong use them).
/// These four findings, all on Kong's names, are the whole list: with
/// every Kong family present promtool must report exactly them, and
/// raftgate's own series must pass clean.
const KONG_NAME_LINTS: &[&str] = &[
    "kong_bandwidth_bytes counter metrics should have \"_total\" suffix",
    "kong_kong_latency_ms metric names should not contain abbreviated units",
    "kong_request_latency_ms metric names should not contain abbreviated units",
    "kong_upstream_latency_ms metric names should not contain abbreviated units",
];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_upstream() -> (Killed, u16) {
    let port = free_port();
    let child = Command::new(common::binary())
        .args(["demo-upstream", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--name", "obs-upstream"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo upstream");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "demo upstream did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Killed(child), port)
}

/// A global prometheus plugin (every flag on), correlation-id echoed, and
/// a service + route `/obs`.
fn configure(c: &Cluster, upstream: u16) {
    let admin = |p: &str| c.node(1).admin_url(p);
    let (s, b) = c.post(
        &admin("/plugins"),
        &json!({"name": "prometheus", "config": {
            "status_code_metrics": true, "latency_metrics": true,
            "bandwidth_metrics": true}}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = c.post(
        &admin("/plugins"),
        &json!({"name": "correlation-id", "config": {"echo_downstream": true}}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = c.post(
        &admin("/services"),
        &json!({"name": "obs-svc", "url": format!("http://127.0.0.1:{upstream}")}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = c.post(
        &admin("/services/obs-svc/routes"),
        &json!({"name": "obs-route", "paths": ["/obs"]}),
    );
    assert_eq!(s, 201, "{b}");
    c.wait_converged(Duration::from_secs(10));
}

/// One request through `node`'s proxy carrying credentials; its status.
fn request_with_secrets(c: &Cluster, node: u64) -> (u16, Option<String>) {
    let url = c
        .node(node)
        .proxy_url(&format!("/obs/thing?apikey={API_KEY}&x=1"));
    match c
        .http
        .get(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-api-key", API_KEY)
        .send()
    {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("kong-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ),
        Err(_) => (0, None),
    }
}

fn metrics_text(c: &Cluster, node: u64) -> String {
    c.http
        .get(c.node(node).status_url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("GET /metrics")
}

/// `promtool check metrics` on `text`: no parse error, and lint findings
/// that are exactly `expected` (none: exit status 0).
fn promtool_check(text: &str, expected: &[&str]) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool missing: install Debian's `prometheus` package (scripts/test.sh does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut findings: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    findings.sort_unstable();
    let mut wanted = expected.to_vec();
    wanted.sort_unstable();
    // 0: clean; 3: lint findings only (1 would be a parse error).
    let code = out.status.code();
    let wanted_code = if expected.is_empty() { 0 } else { 3 };
    assert_eq!(
        (code, findings),
        (Some(wanted_code), wanted),
        "promtool check metrics:\n{report}\n---\n{text}"
    );
}

fn prometheus_query(c: &Cluster, port: u16, query: &str) -> Option<f64> {
    let (_, v) = c.get(&format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        url_escape(query)
    ));
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn metrics_scraped_by_prometheus_and_logs_hold_no_secrets() {
    let (_upstream, up_port) = spawn_upstream();
    let c = Cluster::start(3, &[]);
    // Before any Kong series exists, raftgate's own pass every lint.
    let text = metrics_text(&c, 1);
    assert!(text.contains("raftgate_raft_term "), "{text}");
    assert!(!text.contains("kong_request_latency_ms"), "{text}");
    promtool_check(&text, &[]);
    configure(&c, up_port);

    // Traffic on every node; each answered request counts once.
    let mut sent = 0u64;
    let mut ids = Vec::new();
    for i in 0..30u64 {
        let (status, id) = request_with_secrets(&c, 1 + i % 3);
        assert_eq!(status, 200, "request {i}");
        sent += 1;
        ids.push(id.expect("correlation id echoed"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "correlation ids are unique");
    // An incoming id is kept.
    let r = c
        .http
        .get(c.node(1).proxy_url("/obs/keep"))
        .header("kong-request-id", "client-chosen-id")
        .send()
        .unwrap();
    assert_eq!(r.headers()["kong-request-id"], "client-chosen-id");
    sent += 1;

    // /metrics on each node: Kong's series with names, not paths.
    for id in 1..=3 {
        let text = metrics_text(&c, id);
        promtool_check(&text, KONG_NAME_LINTS);
        assert!(
            text.contains("kong_http_requests_total{code=\"200\",consumer=\"\",route=\"obs-route\",service=\"obs-svc\",source=\"service\",workspace=\"default\"}"),
            "{text}"
        );
        assert!(text.contains("kong_request_latency_ms_bucket"));
        assert!(text.contains("kong_bandwidth_bytes{"));
        assert!(text.contains("raftgate_raft_term "));
        assert!(!text.contains("/obs/thing"), "raw path in a label");
        assert!(!text.contains(API_KEY));
    }
    let leader = c.leader(Duration::from_secs(10));
    let text = metrics_text(&c, leader);
    assert!(text.contains("raftgate_raft_is_leader 1"), "{text}");
    assert!(
        text.contains("raftgate_raft_replication_lag_entries{peer="),
        "{text}"
    );

    // A real Prometheus scrapes the three nodes.
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<String> = (1..=3)
        .map(|id| format!("'127.0.0.1:{}'", c.node(id).status))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: raftgate\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let prom_port = free_port();
    let prom_log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(prom_log.try_clone().unwrap())
            .stderr(prom_log)
            .spawn()
            .expect("prometheus missing: install Debian's `prometheus` package"),
    );
    let query = "sum(kong_http_requests_total{route=\"obs-route\"})";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = prometheus_query(&c, prom_port, query);
        if seen == Some(sent as f64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let up = prometheus_query(&c, prom_port, "sum(up{job=\"raftgate\"})");
    assert_eq!(
        seen,
        Some(sent as f64),
        "Prometheus saw {seen:?} requests, {sent} were sent (targets up: {up:?}); log:\n{}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );

    // Logs: one access line per request, and no credential anywhere.
    std::thread::sleep(Duration::from_millis(300));
    let mut access_lines = 0;
    for node in &c.nodes {
        let log = node.log_text();
        for secret in [API_KEY, TOKEN, "apikey="] {
            assert!(
                !log.contains(secret),
                "node {} logged '{secret}':\n{log}",
                node.id
            );
        }
        for line in log.lines().filter(|l| l.contains("\"request_id\"")) {
            let v: Value = serde_json::from_str(line).expect("access log line is JSON");
            if v["path"] == "/obs/thing" {
                assert_eq!(v["route"], "obs-route");
                assert_eq!(v["service"], "obs-svc");
                assert_eq!(v["status"], 200);
                assert!(v["latencies"]["request"].is_u64());
                assert!(v["upstream"].as_str().is_some());
                assert!(v["bytes_out"].as_u64().unwrap_or(0) > 0);
                access_lines += 1;
            }
        }
    }
    assert_eq!(access_lines, 30, "one access log line per request");
}

/// With `--metric-names prometheus` the same series come in base units
/// with `_total` on counters, and the whole output passes promtool clean.
#[test]
fn prometheus_naming_passes_promtool_clean() {
    let (_upstream, up_port) = spawn_upstream();
    let c = Cluster::start(1, &["--metric-names", "prometheus"]);
    configure(&c, up_port);
    for i in 0..5 {
        assert_eq!(request_with_secrets(&c, 1).0, 200, "request {i}");
    }
    let text = metrics_text(&c, 1);
    promtool_check(&text, &[]);
    for family in [
        "kong_request_latency_seconds_bucket{",
        "kong_upstream_latency_seconds_bucket{",
        "kong_kong_latency_seconds_bucket{",
        "kong_bandwidth_bytes_total{",
        "kong_http_requests_total{",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert!(!text.contains("_latency_ms"), "{text}");
    // Five requests, each far below 30 s: all in the seconds bucket 30.
    assert!(
        text.contains("kong_request_latency_seconds_bucket{route=\"obs-route\",service=\"obs-svc\",workspace=\"default\",le=\"30\"} 5"),
        "{text}"
    );
}

#[test]
fn readiness_and_status() {
    let (_upstream, up_port) = spawn_upstream();
    let mut c = Cluster::start(3, &[]);
    configure(&c, up_port);

    // /status has Kong's shape and the node's role and leader.
    let (s, status) = c.get(&c.node(2).status_url("/status"));
    assert_eq!(s, 200);
    for k in [
        "connections_active",
        "connections_reading",
        "connections_writing",
        "connections_waiting",
        "connections_accepted",
        "connections_handled",
        "total_requests",
    ] {
        assert!(status["server"][k].is_number(), "{k} in {status}");
    }
    assert_eq!(
        status["configuration_hash"].as_str().map(str::len),
        Some(32)
    );
    assert!(status["leader"].is_u64(), "{status}");
    let (_, s1) = c.get(&c.node(1).status_url("/status"));
    assert_eq!(s1["configuration_hash"], status["configuration_hash"]);

    // A node that has not caught up (here: it never reaches the cluster
    // it was told to join) is live but not ready.
    let mut lonely = c.new_node(9, vec![]);
    lonely.extra_args = vec!["--join".into(), format!("127.0.0.1:{}", free_port())];
    lonely.start(&c.secret_file);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get(&lonely.status_url("/status/live")).0 != 200 {
        assert!(Instant::now() < deadline, "node 9 never live");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..20 {
        let (s, b) = c.get(&lonely.status_url("/status/ready"));
        assert_eq!(s, 503, "{b}");
        std::thread::sleep(Duration::from_millis(100));
    }
    lonely.kill();

    // Cut node 1 off: it keeps proxying with the state it applied, stays
    // ready, and /status shows it has no leader.
    c.node_mut(2).kill();
    c.node_mut(3).kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, s) = c.get(&c.node(1).status_url("/status"));
        if s["leader"].is_null() && s.get("leader").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 still reports a leader: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.get(&c.node(1).status_url("/status/ready")).0, 200);
    let (s, _) = request_with_secrets(&c, 1);
    assert_eq!(s, 200, "a node cut off keeps proxying");
    let text = metrics_text(&c, 1);
    assert!(text.contains("raftgate_raft_has_leader 0"), "{text}");
}

/// Readiness of a node whose state is behind the cluster's: node 3 misses
/// writes while it is down, then comes back while the other two are down.
/// Its log and state are older than what the cluster committed and,
/// having heard from no leader since it started, it cannot know by how
/// much: it must not be ready (though live). Once its peers are back it
/// catches up, and when it first answers ready it holds what it missed.
#[test]
fn a_restarted_node_is_not_ready_until_it_has_caught_up() {
    let mut c = Cluster::start(3, &[]);
    c.node_mut(3).stop();
    for i in 0..20 {
        let (s, b) = c.create_service(1, &format!("missed-{i}"));
        assert_eq!(s, 201, "{b}");
    }
    c.node_mut(1).stop();
    c.node_mut(2).stop();
    c.restart(3);
    let status3 = c.node(3).status;
    let node3 = move |p: &str| format!("http://127.0.0.1:{status3}{p}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(&node3("/status/live")).0 != 200 {
        assert!(Instant::now() < deadline, "node 3 never live");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..30 {
        let (s, b) = c.get(&node3("/status/ready"));
        assert_eq!(
            s,
            503,
            "a node behind the cluster answered ready: {b} {} {}",
            c.get(&node3("/status")).1,
            c.cluster_view(3)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, status) = c.get(&node3("/status"));
    assert_eq!(status["ready"], false, "{status}");
    let (s, _) = c.get(&c.node(3).admin_url("/services/missed-19"));
    assert_eq!(s, 404, "node 3 is indeed behind");

    c.restart(1);
    c.restart(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get(&node3("/status/ready")).0 != 200 {
        assert!(Instant::now() < deadline, "node 3 never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (s, b) = c.get(&c.node(3).admin_url("/services/missed-19"));
    assert_eq!(s, 200, "ready before holding the writes it missed: {b}");
}
