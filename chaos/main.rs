//! The chaos suite: fault scenarios against a real three-node cluster while
//! a workload runs on every node, then a checker of the recorded history.
//!
//! Backends: `local` (processes on loopback; kill -9, SIGSTOP/SIGCONT,
//! restart, wipe, and link faults through our own TCP proxy) and `docker`
//! (see chaos/docker.sh). Run: `bash chaos/run.sh [scenario …]`.
//!
//! The checker fails a scenario when an acknowledged write is missing on a
//! node, a write that was never issued appears, nodes hold different state,
//! no leader exists 3 s after a fault that leaves a majority connected, or
//! proxied requests to surviving nodes fail more than 0.1% of the time.

#[path = "../tests/common/mod.rs"]
mod common;
mod faultproxy;
mod workload;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Cluster;
use faultproxy::{LinkFault, Links};
use workload::{Down, History, Workload};

/// One row of the final table.
struct Outcome {
    scenario: String,
    history: History,
    lost: usize,
    phantom: usize,
    divergent: bool,
    leader_after: Option<Duration>,
    leader_required: bool,
    errors: Vec<String>,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.errors.is_empty()
    }
}

struct Harness {
    cluster: Cluster,
    links: Links,
    down: Down,
    upstream: std::process::Child,
    /// Runs the fault proxies; kept alive with the harness.
    _runtime: tokio::runtime::Runtime,
    next_id: u64,
}

impl Harness {
    fn start() -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let links = Links::default();
        // Reserve the proxy ports first: they are the addresses peers use.
        let proxy_ports = std::sync::Mutex::new(std::collections::BTreeMap::new());
        let cluster = Cluster::start_custom(
            3,
            |node| {
                let port = runtime
                    .block_on(faultproxy::start(
                        links.clone(),
                        node.id,
                        format!("127.0.0.1:{}", node.cluster).parse().unwrap(),
                    ))
                    .unwrap();
                proxy_ports.lock().unwrap().insert(node.id, port);
                format!("127.0.0.1:{port}")
            },
            |node| {
                let port = proxy_ports.lock().unwrap()[&node.id];
                vec![
                    "--cluster-advertise".into(),
                    format!("127.0.0.1:{port}"),
                    "--cluster-source-ip".into(),
                    faultproxy::source_ip(node.id).to_string(),
                ]
            },
        );
        // A demo upstream and one route to it, proxied by every node.
        let upstream_port = common::free_port();
        let upstream = std::process::Command::new(common::binary())
            .args([
                "demo-upstream",
                "--listen",
                &format!("127.0.0.1:{upstream_port}"),
            ])
            .args(["--name", "chaos-upstream"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the demo upstream");
        let (status, svc) = cluster.post(
            &cluster.node(1).admin_url("/services"),
            &serde_json::json!({"name": "chaos-upstream", "url": format!("http://127.0.0.1:{upstream_port}")}),
        );
        assert_eq!(status, 201, "{svc}");
        let (status, route) = cluster.post(
            &cluster.node(1).admin_url("/services/chaos-upstream/routes"),
            &serde_json::json!({"name": "chaos-probe", "paths": [workload::PROXY_PATH]}),
        );
        assert_eq!(status, 201, "{route}");
        cluster.wait_converged(Duration::from_secs(10));
        Harness {
            cluster,
            links,
            down: Down::default(),
            upstream,
            _runtime: runtime,
            next_id: 4,
        }
    }

    /// Marks a node as taken down before the fault hits it, so that no
    /// probe is in flight to it when it goes.
    fn take_down(&self, id: u64) {
        self.down.lock().unwrap().insert(id);
        std::thread::sleep(Duration::from_millis(300));
    }

    fn bring_up(&self, id: u64) {
        self.down.lock().unwrap().remove(&id);
    }

    fn running(&self) -> Vec<u64> {
        self.cluster
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect()
    }

    /// Time until one of `among` is a leader recognised by the others.
    fn wait_leader_among(&self, among: &[u64], timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            for id in among {
                let view = self.cluster.cluster_view(*id);
                if view["state"] == "leader" {
                    return Some(started.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn leader(&self) -> u64 {
        self.cluster.leader(Duration::from_secs(10))
    }

    /// Restarts a node and counts it as surviving once it is ready.
    fn restart(&mut self, id: u64) {
        self.cluster.restart(id);
        self.cluster.wait_ready_all(Duration::from_secs(30));
        self.bring_up(id);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.upstream.kill();
        let _ = self.upstream.wait();
    }
}

const SCENARIOS: &[&str] = &[
    "leader-kill",
    "follower-kill",
    "leader-isolated",
    "split-2-1",
    "leader-paused",
    "rolling-restart",
    "full-restart",
    "wipe-rejoin",
    "loss-and-delay",
];

fn run_scenario(name: &str) -> Outcome {
    let mut h = Harness::start();
    let workload = Workload::start(&h.cluster, name, h.down.clone());
    std::thread::sleep(Duration::from_secs(2));
    let mut leader_after = None;
    let mut leader_required = false;
    let mut errors = Vec::new();

    match name {
        "leader-kill" | "follower-kill" => {
            let leader = h.leader();
            let victim = if name == "leader-kill" {
                leader
            } else {
                *h.running().iter().find(|id| **id != leader).unwrap()
            };
            h.take_down(victim);
            h.cluster.node_mut(victim).kill();
            let rest: Vec<u64> = h.running();
            leader_required = true;
            leader_after = h.wait_leader_among(&rest, Duration::from_secs(10));
            std::thread::sleep(Duration::from_secs(4));
            h.restart(victim);
        }
        "leader-isolated" | "split-2-1" => {
            let leader = h.leader();
            let alone = if name == "leader-isolated" {
                leader
            } else {
                *h.running().iter().find(|id| **id != leader).unwrap()
            };
            let rest: Vec<u64> = h.running().into_iter().filter(|id| *id != alone).collect();
            h.links.partition(&[alone], &rest);
            leader_required = true;
            leader_after = h.wait_leader_among(&rest, Duration::from_secs(10));
            std::thread::sleep(Duration::from_secs(8));
            h.links.heal();
        }
        "leader-paused" => {
            let leader = h.leader();
            let rest: Vec<u64> = h.running().into_iter().filter(|id| *id != leader).collect();
            h.take_down(leader);
            h.cluster.node(leader).signal("STOP");
            leader_required = true;
            leader_after = h.wait_leader_among(&rest, Duration::from_secs(10));
            let paused_for = leader_after.unwrap_or_default();
            std::thread::sleep(Duration::from_secs(10).saturating_sub(paused_for));
            h.cluster.node(leader).signal("CONT");
            h.cluster.wait_ready_all(Duration::from_secs(30));
            h.bring_up(leader);
        }
        "rolling-restart" => {
            for id in h.running() {
                h.take_down(id);
                h.cluster.node_mut(id).stop();
                h.restart(id);
            }
        }
        "full-restart" => {
            let ids = h.running();
            for id in &ids {
                h.take_down(*id);
                h.cluster.node_mut(*id).stop();
            }
            for id in &ids {
                h.cluster.restart(*id);
            }
            h.cluster.wait_ready_all(Duration::from_secs(30));
            for id in &ids {
                h.bring_up(*id);
            }
            leader_after = h.wait_leader_among(&ids, Duration::from_secs(10));
        }
        "wipe-rejoin" => {
            let leader = h.leader();
            let victim = *h.running().iter().find(|id| **id != leader).unwrap();
            h.take_down(victim);
            h.cluster.node_mut(victim).kill();
            h.cluster.node(victim).wipe();
            let (status, body) = h.cluster.http_delete(
                &h.cluster
                    .node(leader)
                    .admin_url(&format!("/cluster/nodes/{victim}")),
            );
            if status >= 300 {
                errors.push(format!("removing node {victim}: {status} {body}"));
            }
            let new_id = h.next_id;
            h.next_id += 1;
            let mut newcomer = h.cluster.new_node(
                new_id,
                vec!["--join".into(), h.cluster.node(leader).cluster_addr()],
            );
            // The newcomer's peers reach it directly (no proxy for it).
            newcomer.extra_args.extend([
                "--cluster-source-ip".into(),
                faultproxy::source_ip(new_id).to_string(),
            ]);
            newcomer.start(&h.cluster.secret_file);
            h.cluster.nodes.retain(|n| n.id != victim);
            h.cluster.nodes.push(newcomer);
            h.cluster.wait_ready_all(Duration::from_secs(30));
        }
        "loss-and-delay" => {
            let ids = h.running();
            for from in &ids {
                for to in &ids {
                    if from != to {
                        h.links.set(
                            *from,
                            *to,
                            LinkFault {
                                cut: false,
                                delay: Duration::from_millis(100),
                                loss: 0.10,
                            },
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(30));
            h.links.heal();
        }
        other => errors.push(format!("unknown scenario {other}")),
    }

    std::thread::sleep(Duration::from_secs(2));
    let history = workload.stop();
    h.cluster.wait_ready_all(Duration::from_secs(30));
    h.cluster.wait_converged(Duration::from_secs(30));
    if leader_required {
        match leader_after {
            Some(t) if t <= Duration::from_secs(3) => {}
            Some(t) => errors.push(format!("no leader for {t:?} after the fault")),
            None => errors.push("no leader after the fault".into()),
        }
    }
    let check = workload::check(&h.cluster, &history, &format!("chaos-{name}-"));
    errors.extend(check.errors.iter().cloned());
    drop(h);
    Outcome {
        scenario: name.to_string(),
        history,
        lost: check.lost,
        phantom: check.phantom,
        divergent: check.divergent,
        leader_after,
        leader_required,
        errors,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wanted: Vec<String> = if args.is_empty() {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        args
    };
    let known: BTreeSet<&str> = SCENARIOS.iter().copied().collect();
    let mut outcomes = Vec::new();
    for name in &wanted {
        if !known.contains(name.as_str()) {
            eprintln!("unknown scenario {name}; known: {SCENARIOS:?}");
            std::process::exit(2);
        }
        eprintln!("-- scenario {name}");
        let outcome = run_scenario(name);
        for e in &outcome.errors {
            eprintln!("   FAIL: {e}");
        }
        outcomes.push(outcome);
    }

    println!();
    println!(
        "{:<18} {:>6} {:>6} {:>7} {:>5} {:>8} {:>9} {:>12}  result",
        "scenario", "ok", "failed", "unknown", "lost", "phantom", "proxy ok%", "new leader"
    );
    for o in &outcomes {
        let leader = match (o.leader_after, o.leader_required) {
            (Some(t), _) => format!("{} ms", t.as_millis()),
            (None, true) => "none".into(),
            (None, false) => "-".into(),
        };
        println!(
            "{:<18} {:>6} {:>6} {:>7} {:>5} {:>8} {:>9} {:>12}  {}",
            o.scenario,
            o.history.ok(),
            o.history.failed(),
            o.history.unknown(),
            o.lost,
            o.phantom,
            o.history.proxy_success_pct(),
            leader,
            if o.passed() && !o.divergent {
                "pass"
            } else {
                "FAIL"
            },
        );
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    println!(
        "chaos: {} passed, {} failed",
        outcomes.len() - failed,
        failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
