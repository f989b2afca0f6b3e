//! The chaos suite: fault scenarios against a real three-node cluster while
//! a workload runs on every node, then a checker of the recorded history.
//!
//! Backends: `local` (processes on loopback; kill -9, SIGSTOP/SIGCONT,
//! restart, wipe, and link faults through our own TCP proxy) and `docker`
//! (see chaos/docker.sh). Run: `bash chaos/run.sh [scenario …]`.
//!
//! The checker fails a scenario when an acknowledged write is missing on a
//! node, a write that was never issued appears, nodes hold different state,
//! a token is accepted after its revocation was acknowledged (by a node
//! connected to the majority, `revocations::GRACE` after the answer; by any
//! node once healed),
//! no leader exists 3 s after a fault that leaves a majority connected, or
//! proxied requests to surviving nodes fail more than 0.1% of the time.

#[path = "../tests/common/mod.rs"]
mod common;
mod docker;
mod faultproxy;
mod revocations;
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

/// Where the cluster runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    /// Processes on loopback; link faults through our TCP proxy.
    Local,
    /// The Compose cluster (project `raftgate-chaos`), reached only
    /// through ports published on 127.0.0.1; faults through `docker`.
    Docker,
}

const DOCKER_PROJECT: &str = "raftgate-chaos";

struct Harness {
    backend: Backend,
    cluster: Cluster,
    links: Links,
    down: Down,
    /// Nodes partitioned from the majority.
    cut_off: Down,
    upstream: Option<std::process::Child>,
    /// Runs the fault proxies; kept alive with the harness.
    _runtime: tokio::runtime::Runtime,
    next_id: u64,
}

impl Harness {
    fn start(backend: Backend) -> Harness {
        match backend {
            Backend::Local => Harness::start_local(),
            Backend::Docker => Harness::start_docker(),
        }
    }

    fn start_docker() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        docker::compose(&["down", "-v", "--remove-orphans"]);
        docker::compose(&["up", "-d"]);
        let nodes = (1..=3)
            .map(|id| {
                let base = 8000 + 10 * (id as u16 - 1);
                common::Node::in_container(
                    id,
                    &docker::container(&format!("node{id}")),
                    base,
                    base + 1,
                    8100 + 10 * (id as u16 - 1),
                )
            })
            .collect();
        let cluster = Cluster::attach(nodes, docker::ADMIN_TOKEN);
        cluster.wait_ready_all(Duration::from_secs(60));
        let upstream = "http://172.28.0.21:8080".to_string();
        Harness::with_probe_route(Backend::Docker, cluster, None, &upstream, runtime)
    }

    fn with_probe_route(
        backend: Backend,
        cluster: Cluster,
        upstream: Option<std::process::Child>,
        upstream_url: &str,
        runtime: tokio::runtime::Runtime,
    ) -> Harness {
        let (status, svc) = cluster.post(
            &cluster.node(1).admin_url("/services"),
            &serde_json::json!({"name": "chaos-upstream", "url": upstream_url}),
        );
        assert_eq!(status, 201, "{svc}");
        let (status, route) = cluster.post(
            &cluster.node(1).admin_url("/services/chaos-upstream/routes"),
            &serde_json::json!({"name": "chaos-probe", "paths": [workload::PROXY_PATH]}),
        );
        assert_eq!(status, 201, "{route}");
        revocations::setup(&cluster, "chaos-upstream");
        cluster.wait_converged(Duration::from_secs(10));
        Harness {
            backend,
            cluster,
            links: Links::default(),
            down: Down::default(),
            cut_off: Down::default(),
            upstream,
            _runtime: runtime,
            next_id: 4,
        }
    }

    /// Cuts `alone` off from `rest` (both ways).
    fn partition(&self, alone: u64, rest: &[u64]) {
        match self.backend {
            Backend::Local => {
                self.cut_off.lock().unwrap().insert(alone);
                self.links.partition(&[alone], rest);
            }
            Backend::Docker => {
                // Disconnecting the container also takes away its published
                // ports: clients cannot reach it either. Cut off as well:
                // once back, it is judged on revocations only after the
                // grace period from its return, as on the local backend.
                self.cut_off.lock().unwrap().insert(alone);
                self.take_down(alone);
                docker::disconnect(&self.container(alone));
            }
        }
    }

    fn heal(&self) {
        match self.backend {
            Backend::Local => {
                self.links.heal();
                self.cut_off.lock().unwrap().clear();
            }
            Backend::Docker => {
                for node in &self.cluster.nodes {
                    docker::reconnect(&self.container(node.id), node.id);
                }
                self.cluster.wait_ready_all(Duration::from_secs(30));
                for node in &self.cluster.nodes {
                    self.bring_up(node.id);
                }
                self.cut_off.lock().unwrap().clear();
            }
        }
    }

    /// Loss and delay on every link between nodes. Local backend: both in
    /// our proxies. Docker: delay in the fault proxy all links go through,
    /// loss as real packet loss (iptables) on what nodes receive from it.
    fn degrade_links(&self, fault: LinkFault) -> Result<(), String> {
        let ids = self.running();
        match self.backend {
            Backend::Local => {
                self.links.set_all(&ids, fault);
                Ok(())
            }
            Backend::Docker => {
                docker::set_links(&ids, LinkFault { loss: 0.0, ..fault })?;
                if fault.loss > 0.0 {
                    for id in &ids {
                        docker::set_loss(&self.container(*id), fault.loss, Some(docker::PROXY_IP))?;
                    }
                }
                Ok(())
            }
        }
    }

    fn restore_links(&self) {
        match self.backend {
            Backend::Local => self.links.heal(),
            Backend::Docker => {
                if let Err(e) = docker::heal_links() {
                    eprintln!("   healing the fault proxy: {e}");
                }
                for node in &self.cluster.nodes {
                    docker::clear_loss(&self.container(node.id));
                }
            }
        }
    }

    /// Docker: checks that every node's peers reach it through the fault
    /// proxy (else a delay set there would not be felt, and the scenario
    /// would pass without its fault).
    fn check_links_proxied(&self) -> Result<(), String> {
        let view = self.cluster.cluster_view(1);
        for id in 1..=3u64 {
            let want = format!("{}:{}", docker::PROXY_IP, 9000 + id);
            let has = view["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["id"] == id)
                .and_then(|n| n["address"].as_str());
            if has != Some(want.as_str()) {
                return Err(format!(
                    "node {id} is not behind the fault proxy: its address is {has:?}"
                ));
            }
        }
        Ok(())
    }

    /// Times one admin write through the leader: it commits only after a
    /// round trip to a follower, so it takes at least twice the added
    /// delay when the delay is in effect.
    fn timed_write(&self, leader: u64, name: &str) -> Option<Duration> {
        let started = Instant::now();
        let (status, _) = self.cluster.create_service(leader, name);
        (status == 201).then(|| started.elapsed())
    }

    fn container(&self, id: u64) -> String {
        self.cluster.node(id).container.clone().unwrap_or_default()
    }

    fn start_local() -> Harness {
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
        let upstream_url = format!("http://127.0.0.1:{upstream_port}");
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
        let mut h = Harness::with_probe_route(
            Backend::Local,
            cluster,
            Some(upstream),
            &upstream_url,
            runtime,
        );
        h.links = links;
        h
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
        if let Some(upstream) = &mut self.upstream {
            let _ = upstream.kill();
            let _ = upstream.wait();
        }
        if self.backend == Backend::Docker {
            // Takes the fault proxy and the nodes' network namespaces (and
            // so every fault) with it.
            docker::compose(&["down", "-v", "--remove-orphans"]);
        }
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

/// Scenarios the Docker backend runs (wiping and rejoining under a new id
/// needs the local backend's process control).
const DOCKER_SCENARIOS: &[&str] = &[
    "leader-kill",
    "follower-kill",
    "leader-isolated",
    "split-2-1",
    "leader-paused",
    "rolling-restart",
    "full-restart",
    "loss",
    "loss-and-delay",
];

fn run_scenario(name: &str, backend: Backend) -> Outcome {
    let mut h = Harness::start(backend);
    let workload = Workload::start(&h.cluster, name, h.down.clone(), h.cut_off.clone());
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
            h.partition(alone, &rest);
            leader_required = true;
            leader_after = h.wait_leader_among(&rest, Duration::from_secs(10));
            std::thread::sleep(Duration::from_secs(8));
            h.heal();
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
            let delay = Duration::from_millis(100);
            let fault = LinkFault {
                cut: false,
                delay,
                loss: 0.10,
            };
            if h.backend == Backend::Docker {
                if let Err(e) = h.check_links_proxied() {
                    errors.push(e);
                }
            }
            let leader = h.leader();
            match h.degrade_links(fault) {
                Ok(()) => {
                    // The delay must be felt: a write commits after a round
                    // trip between nodes (lost packets only add to it).
                    let took =
                        (1..=3).find_map(|i| h.timed_write(leader, &format!("delay-probe-{i}")));
                    match took {
                        Some(t) if t >= 2 * delay => {
                            eprintln!("   a write took {t:?} under the delay")
                        }
                        Some(t) => errors.push(format!("delay not in effect: a write took {t:?}")),
                        None => errors.push("no write went through under the delay".into()),
                    }
                }
                Err(e) => errors.push(format!("degrading the links: {e}")),
            }
            std::thread::sleep(Duration::from_secs(30));
            h.restore_links();
        }
        "loss" => {
            // Docker only: real packet loss on everything the nodes
            // receive, clients' requests included.
            for node in &h.cluster.nodes {
                if let Err(e) = docker::set_loss(&h.container(node.id), docker::LOSS, None) {
                    errors.push(e);
                }
            }
            std::thread::sleep(Duration::from_secs(30));
            h.restore_links();
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
    errors.extend(revocations::check(&h.cluster, &history.revocations));
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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let backend = if args.first().map(String::as_str) == Some("--docker") {
        args.remove(0);
        Backend::Docker
    } else {
        Backend::Local
    };
    let all = match backend {
        Backend::Local => SCENARIOS,
        Backend::Docker => DOCKER_SCENARIOS,
    };
    let wanted: Vec<String> = if args.is_empty() {
        all.iter().map(|s| s.to_string()).collect()
    } else {
        args
    };
    let known: BTreeSet<&str> = all.iter().copied().collect();
    let mut outcomes = Vec::new();
    for name in &wanted {
        if !known.contains(name.as_str()) {
            eprintln!("unknown scenario {name}; known: {all:?}");
            std::process::exit(2);
        }
        eprintln!("-- scenario {name}");
        let outcome = run_scenario(name, backend);
        for e in &outcome.errors {
            eprintln!("   FAIL: {e}");
        }
        outcomes.push(outcome);
    }

    println!();
    println!("backend: {backend:?}");
    println!(
        "{:<18} {:>6} {:>6} {:>7} {:>5} {:>8} {:>7} {:>9} {:>12}  result",
        "scenario",
        "ok",
        "failed",
        "unknown",
        "lost",
        "phantom",
        "revoked",
        "proxy ok%",
        "new leader"
    );
    for o in &outcomes {
        let leader = match (o.leader_after, o.leader_required) {
            (Some(t), _) => format!("{} ms", t.as_millis()),
            (None, true) => "none".into(),
            (None, false) => "-".into(),
        };
        println!(
            "{:<18} {:>6} {:>6} {:>7} {:>5} {:>8} {:>7} {:>9} {:>12}  {}",
            o.scenario,
            o.history.ok(),
            o.history.failed(),
            o.history.unknown(),
            o.lost,
            o.phantom,
            o.history.revocations.acknowledged().count(),
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
