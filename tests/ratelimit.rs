//! The rate-limiting plugin against a real 3-node cluster: requests spread
//! round-robin over the three proxies, counters shared by gossip.
//!
//! Spacing: requests are sent 120 ms apart (more than two gossip rounds of
//! 50 ms), so every node has heard the others' counts before the next
//! request; the share rule then never refuses before the limit, and the
//! first request past it is refused by whichever node it reaches. (Sent
//! back to back, each node would still admit its share of what remains,
//! and the rest once the counts have travelled.)
//!
//! `rate_limiting_across_three_nodes` identifies requests by IP, header,
//! path or service, and checks that `consumer` / `credential` fall back to
//! the client IP when nobody is authenticated, as Kong does.
//! `consumer_group_tiers_get_their_own_quotas` authenticates consumers
//! with key-auth and gives each tier (consumer group) its own
//! group-scoped plugin, as `cluster/demo/kong.yaml` does.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Cluster;
use serde_json::{json, Value};

const GAP: Duration = Duration::from_millis(120);

struct Upstream(Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    cluster: Cluster,
    _upstream: Upstream,
    http: reqwest::blocking::Client,
    next: std::cell::Cell<usize>,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Env {
    fn start() -> Env {
        let cluster = Cluster::start(3, &[]);
        let port = common::free_port();
        let child = Command::new(common::binary())
            .args(["demo-upstream", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--name", "rl-upstream"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo upstream");
        let (status, svc) = cluster.post(
            &cluster.node(1).admin_url("/services"),
            &json!({"name": "rl", "url": format!("http://127.0.0.1:{port}")}),
        );
        assert_eq!(status, 201, "{svc}");
        Env {
            cluster,
            _upstream: Upstream(child),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            next: std::cell::Cell::new(0),
        }
    }

    /// A route `/name` on the service with a rate-limiting plugin.
    fn route_with_limit(&self, name: &str, config: Value) {
        let c = &self.cluster;
        let (status, body) = c.post(
            &c.node(1).admin_url("/services/rl/routes"),
            &json!({"name": name, "paths": [format!("/{name}")]}),
        );
        assert_eq!(status, 201, "{body}");
        let (status, body) = c.post(
            &c.node(2).admin_url(&format!("/routes/{name}/plugins")),
            &json!({"name": "rate-limiting", "config": config}),
        );
        assert_eq!(status, 201, "{body}");
    }

    /// Lets every node apply and compile the configuration.
    fn settle(&self) {
        self.cluster.wait_converged(Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(500));
    }

    /// One GET through the next node (round-robin), after the gap.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        std::thread::sleep(GAP);
        let i = self.next.get();
        self.next.set(i + 1);
        let node = &self.cluster.nodes[i % self.cluster.nodes.len()];
        let mut req = self.http.get(node.proxy_url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().expect("proxy answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Statuses of `n` requests.
    fn statuses(&self, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
        (0..n).map(|_| self.get(path, headers).status).collect()
    }
}

fn six_then_429(n: usize) -> Vec<u16> {
    let mut v = vec![200; 6];
    v.resize(n, 429);
    v
}

#[test]
fn rate_limiting_across_three_nodes() {
    let env = Env::start();
    env.route_with_limit("basic", json!({"minute": 6, "limit_by": "ip"}));
    env.route_with_limit(
        "hdr",
        json!({"minute": 6, "limit_by": "header", "header_name": "x-client"}),
    );
    env.route_with_limit(
        "pth",
        json!({"minute": 6, "limit_by": "path", "path": "/pth/exact"}),
    );
    env.route_with_limit("svc", json!({"minute": 6, "limit_by": "service"}));
    env.route_with_limit("cons", json!({"minute": 6, "limit_by": "consumer"}));
    env.route_with_limit("cred", json!({"minute": 6, "limit_by": "credential"}));
    env.route_with_limit(
        "hidden",
        json!({"minute": 2, "limit_by": "ip", "hide_client_headers": true}),
    );
    env.route_with_limit(
        "custom",
        json!({"second": 2, "minute": 100, "limit_by": "ip",
               "error_code": 503, "error_message": "slow down"}),
    );
    env.route_with_limit(
        "local",
        json!({"minute": 2, "policy": "local", "limit_by": "ip"}),
    );
    env.settle();

    // Six 200s, then 429s, with Kong's headers, over all three nodes.
    for i in 0..6u64 {
        let a = env.get("/basic", &[]);
        assert_eq!(a.status, 200, "request {i}: {:?}", a.body);
        assert_eq!(a.h("x-ratelimit-limit-minute"), Some("6"));
        let left = (5 - i).to_string();
        assert_eq!(a.h("x-ratelimit-remaining-minute"), Some(left.as_str()));
        assert_eq!(a.h("ratelimit-limit"), Some("6"));
        assert_eq!(a.h("ratelimit-remaining"), Some(left.as_str()));
        let reset: u64 = a.h("ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
        assert!(a.h("retry-after").is_none());
    }
    for _ in 0..3 {
        let a = env.get("/basic", &[]);
        assert_eq!(a.status, 429);
        assert_eq!(a.body, json!({"message": "API rate limit exceeded"}));
        assert_eq!(a.h("ratelimit-remaining"), Some("0"));
        assert_eq!(a.h("x-ratelimit-remaining-minute"), Some("0"));
        let retry: u64 = a.h("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }

    // Header: separate counters per value; no header → the IP's counter.
    assert_eq!(
        env.statuses("/hdr", &[("x-client", "a")], 8),
        six_then_429(8)
    );
    assert_eq!(
        env.statuses("/hdr", &[("x-client", "b")], 8),
        six_then_429(8)
    );
    assert_eq!(env.statuses("/hdr", &[], 8), six_then_429(8));

    // Path: the configured path has its counter; other paths the IP's.
    assert_eq!(env.statuses("/pth/exact", &[], 7), six_then_429(7));
    assert_eq!(env.statuses("/pth/other", &[], 7), six_then_429(7));

    // Service; consumer and credential with nobody identified → IP.
    assert_eq!(env.statuses("/svc", &[], 7), six_then_429(7));
    assert_eq!(env.statuses("/cons", &[], 7), six_then_429(7));
    assert_eq!(env.statuses("/cred", &[], 7), six_then_429(7));

    // hide_client_headers: nothing on a 200; Retry-After on the 429.
    for _ in 0..2 {
        let a = env.get("/hidden", &[]);
        assert_eq!(a.status, 200);
        assert!(a.h("ratelimit-limit").is_none());
        assert!(a.h("x-ratelimit-limit-minute").is_none());
    }
    let a = env.get("/hidden", &[]);
    assert_eq!(a.status, 429);
    assert!(a.h("retry-after").is_some());
    assert!(a.h("ratelimit-remaining").is_none());

    // error_code / error_message; the second limit is the restrictive one
    // (three requests 120 ms apart fall in one second).
    assert_eq!(env.statuses("/custom", &[], 2), vec![200, 200]);
    let a = env.get("/custom", &[]);
    assert_eq!(a.status, 503);
    assert_eq!(a.body, json!({"message": "slow down"}));
    assert_eq!(a.h("ratelimit-limit"), Some("2"));
    assert_eq!(a.h("x-ratelimit-limit-minute"), Some("100"));
    assert_eq!(a.h("retry-after"), Some("1"));

    // policy local: each node counts alone, so three nodes admit 3 × 2.
    let got = env.statuses("/local", &[], 9);
    assert_eq!(got.iter().filter(|s| **s == 200).count(), 6, "{got:?}");

    // Every node reports the gossip it sends each of its two peers.
    for node in &env.cluster.nodes {
        let text = env
            .http
            .get(node.status_url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .expect("metrics");
        assert!(text.contains("\nraftgate_gossip_peers 2\n"), "{text}");
        let sent: Vec<(String, f64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("raftgate_gossip_bytes_sent_total{peer=\""))
            .filter_map(|l| {
                let (peer, value) = l.split_once("\"} ")?;
                Some((peer.to_string(), value.parse().ok()?))
            })
            .collect();
        let mut peers: Vec<&str> = sent.iter().map(|(p, _)| p.as_str()).collect();
        peers.sort_unstable();
        let mut others: Vec<String> = env
            .cluster
            .nodes
            .iter()
            .filter(|n| n.id != node.id)
            .map(|n| n.id.to_string())
            .collect();
        others.sort_unstable();
        assert_eq!(peers, others, "node {}: {sent:?}", node.id);
        // Counts of ~70 admitted requests went out: more than heartbeats.
        assert!(sent.iter().all(|(_, b)| *b > 1_000.0), "{sent:?}");
    }
}

/// The demo's tiers on a small scale: consumer groups free, premium and
/// internal, each with its own group-scoped rate-limiting plugin (3, 6
/// and 9 a minute, by consumer), over a route that authenticates with
/// key-auth and whose own plugin (2 a minute) is the default for a
/// consumer in no group. The four consumers' requests are interleaved and
/// spread round-robin over the three nodes: each gets exactly its own
/// quota, cluster-wide.
#[test]
fn consumer_group_tiers_get_their_own_quotas() {
    let env = Env::start();
    let c = &env.cluster;
    // Writes go through every node; each is forwarded to the leader.
    let admin = |via: u64, path: &str, body: Value| {
        let (status, answer) = c.post(&c.node(via).admin_url(path), &body);
        assert_eq!(status, 201, "{path}: {answer}");
    };
    admin(
        1,
        "/services/rl/routes",
        json!({"name": "tiers", "paths": ["/tiers"]}),
    );
    admin(2, "/routes/tiers/plugins", json!({"name": "key-auth"}));
    admin(
        3,
        "/routes/tiers/plugins",
        json!({"name": "rate-limiting", "config": {"minute": 2, "limit_by": "consumer"}}),
    );
    let tiers = [("free", 3usize), ("premium", 6), ("internal", 9)];
    for (i, (group, limit)) in tiers.iter().enumerate() {
        let via = 1 + i as u64 % 3;
        admin(via, "/consumer_groups", json!({ "name": group }));
        admin(
            via,
            &format!("/consumer_groups/{group}/plugins"),
            json!({"name": "rate-limiting",
                   "config": {"minute": limit, "limit_by": "consumer", "policy": "cluster"}}),
        );
    }
    let consumers = [
        ("free-app", Some("free"), 3usize),
        ("premium-app", Some("premium"), 6),
        ("internal-app", Some("internal"), 9),
        ("no-tier-app", None, 2),
    ];
    for (i, (name, group, _)) in consumers.iter().enumerate() {
        let via = 1 + i as u64 % 3;
        admin(via, "/consumers", json!({ "username": name }));
        admin(
            via,
            &format!("/consumers/{name}/key-auth"),
            json!({ "key": format!("{name}-key") }),
        );
        if let Some(group) = group {
            admin(
                via,
                &format!("/consumer_groups/{group}/consumers"),
                json!({ "consumer": name }),
            );
        }
    }
    env.settle();

    // Without a key: key-auth refuses, and nothing is counted.
    assert_eq!(env.get("/tiers", &[]).status, 401);

    // Rounds over the four consumers, each sending its quota + 2.
    let mut got: Vec<Vec<u16>> = vec![Vec::new(); consumers.len()];
    for round in 0..11 {
        for (i, (name, _, limit)) in consumers.iter().enumerate() {
            if round >= limit + 2 {
                continue;
            }
            let key = format!("{name}-key");
            let a = env.get("/tiers", &[("apikey", key.as_str())]);
            let want = limit.to_string();
            assert_eq!(
                a.h("x-ratelimit-limit-minute"),
                Some(want.as_str()),
                "{name}, request {round}: {:?}",
                a.headers
            );
            if a.status == 200 {
                let left = limit.saturating_sub(round + 1).to_string();
                assert_eq!(a.h("ratelimit-remaining"), Some(left.as_str()), "{name}");
            }
            got[i].push(a.status);
        }
    }
    for ((name, _, limit), statuses) in consumers.iter().zip(&got) {
        let mut want = vec![200; *limit];
        want.resize(limit + 2, 429);
        assert_eq!(statuses, &want, "{name}");
    }
}
