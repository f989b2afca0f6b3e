//! The workload run during a scenario, its history, and the checker.
//!
//! Writes create services with unique names; revocations run beside them
//! (`revocations.rs`). Each is recorded as `ok`
//! (201: acknowledged), `failed` (a definite refusal: 4xx, or the
//! connection was refused so nothing was sent), or `unknown` (timeout,
//! reset, 5xx: it may or may not have been applied), as Jepsen classifies
//! outcomes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::Cluster;
use crate::revocations::{self, RevocationHistory};

const WRITERS: usize = 4;
const PAUSE: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    Unknown,
}

#[derive(Default, Clone)]
pub struct History {
    /// name → (id when acknowledged, outcome)
    pub writes: BTreeMap<String, (Option<String>, Status)>,
    /// (node, proxied request succeeded) samples taken on surviving nodes.
    pub proxied: Vec<(u64, bool)>,
    /// Why proxied requests failed, per node: the answer's status or the
    /// client's error, the first few of each node.
    pub proxy_failures: BTreeMap<u64, Vec<String>>,
    /// Revocations issued and any revoked token seen accepted.
    pub revocations: RevocationHistory,
}

impl History {
    fn count(&self, s: Status) -> usize {
        self.writes.values().filter(|(_, st)| *st == s).count()
    }
    pub fn ok(&self) -> usize {
        self.count(Status::Ok)
    }
    pub fn failed(&self) -> usize {
        self.count(Status::Failed)
    }
    pub fn unknown(&self) -> usize {
        self.count(Status::Unknown)
    }
    pub fn proxy_success_pct(&self) -> String {
        if self.proxied.is_empty() {
            return "-".into();
        }
        let ok = self.proxied.iter().filter(|(_, ok)| *ok).count();
        format!("{:.2}", 100.0 * ok as f64 / self.proxied.len() as f64)
    }
}

/// Nodes the scenario has taken down (killed, paused, stopping): proxied
/// requests are only sent to the others, the surviving nodes.
pub type Down = Arc<Mutex<BTreeSet<u64>>>;

pub struct Workload {
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
    revoked: Arc<Mutex<RevocationHistory>>,
    threads: Vec<JoinHandle<()>>,
}

/// Path of the route the harness creates to the demo upstream.
pub const PROXY_PATH: &str = "/chaos-probe";

/// How long a proxy probe may take. 2 s, except under real packet loss
/// (the Docker `loss` scenarios drop 10 % of what a node receives, the
/// probe's own request included): there TCP's retransmission schedule
/// (200, 400, 800, 1600 ms …) turns four drops in a row of one segment,
/// 1 in 10,000, into a 3 s wait, so with 2 s about one run in four would
/// count a kernel retransmission as a gateway failure (≈900 probes, ≈3
/// lossy segments each, any failure on a node over 0.1 %). 10 s needs six
/// drops in a row.
fn probe_timeout(scenario: &str) -> Duration {
    if scenario.starts_with("loss") {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(2)
    }
}

impl Workload {
    /// Starts writers, the revoker and the proxy prober. `down`: nodes taken
    /// down; `cut_off`: nodes partitioned from the majority (still serving,
    /// but not expected to learn new revocations until healed).
    pub fn start(cluster: &Cluster, scenario: &str, down: Down, cut_off: Down) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(History::default()));
        let revoked = Arc::new(Mutex::new(RevocationHistory::default()));
        let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.admin).collect();
        let proxies: Vec<(u64, u16)> = cluster.nodes.iter().map(|n| (n.id, n.proxy)).collect();
        let token = cluster.admin_token.clone();
        let mut threads: Vec<JoinHandle<()>> = (0..WRITERS)
            .map(|w| {
                let stop = stop.clone();
                let history = history.clone();
                let ports = ports.clone();
                let scenario = scenario.to_string();
                let token = token.clone();
                std::thread::spawn(move || {
                    let http =
                        crate::common::client_with_token(token.as_deref(), Duration::from_secs(5));
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let port = ports[(w + i) % ports.len()];
                        let name = format!("chaos-{scenario}-{w}-{i}");
                        let outcome = write(&http, port, &name);
                        history.lock().unwrap().writes.insert(name, outcome);
                        i += 1;
                        std::thread::sleep(PAUSE);
                    }
                })
            })
            .collect();
        threads.push(revocations::spawn(
            cluster,
            scenario,
            down.clone(),
            cut_off,
            stop.clone(),
            revoked.clone(),
        ));
        let (stop2, history2) = (stop.clone(), history.clone());
        let probe_timeout = probe_timeout(scenario);
        threads.push(std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(probe_timeout)
                .build()
                .unwrap();
            while !stop2.load(Ordering::Relaxed) {
                for (node, port) in &proxies {
                    if down.lock().unwrap().contains(node) {
                        continue;
                    }
                    let failure = match http
                        .get(format!("http://127.0.0.1:{port}{PROXY_PATH}"))
                        .send()
                    {
                        Ok(r) if r.status().as_u16() == 200 => None,
                        Ok(r) => Some(format!("answered {}", r.status().as_u16())),
                        Err(e) if e.is_timeout() => Some("timed out".to_string()),
                        Err(e) => Some(format!("{e}")),
                    };
                    // A node taken down while the request was in flight
                    // does not count against the survivors.
                    if !down.lock().unwrap().contains(node) {
                        let mut h = history2.lock().unwrap();
                        h.proxied.push((*node, failure.is_none()));
                        if let Some(why) = failure {
                            let seen = h.proxy_failures.entry(*node).or_default();
                            if seen.len() < 3 {
                                seen.push(why);
                            }
                        }
                    }
                }
                std::thread::sleep(PAUSE);
            }
        }));
        Workload {
            stop,
            history,
            revoked,
            threads,
        }
    }

    pub fn stop(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let mut history = self.history.lock().unwrap().clone();
        history.revocations = self.revoked.lock().unwrap().clone();
        history
    }
}

fn write(http: &reqwest::blocking::Client, port: u16, name: &str) -> (Option<String>, Status) {
    let resp = http
        .post(format!("http://127.0.0.1:{port}/services"))
        .json(&json!({"name": name, "host": "example.com"}))
        .send();
    match resp {
        Ok(r) => {
            let code = r.status().as_u16();
            match code {
                201 => {
                    let body: Value = r.json().unwrap_or(Value::Null);
                    (body["id"].as_str().map(str::to_string), Status::Ok)
                }
                400..=499 => (None, Status::Failed),
                _ => (None, Status::Unknown),
            }
        }
        Err(e) if e.is_connect() => (None, Status::Failed),
        Err(_) => (None, Status::Unknown),
    }
}

pub struct Check {
    pub lost: usize,
    pub phantom: usize,
    pub divergent: bool,
    pub errors: Vec<String>,
}

/// Every service name on a node, through the paginated Admin API.
fn services_on(cluster: &Cluster, node: u64) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    let mut path = "/services?size=1000".to_string();
    loop {
        let (status, body) = cluster.get(&cluster.node(node).admin_url(&path));
        if status != 200 {
            return Err(format!("node {node} answered {status} to {path}"));
        }
        for svc in body["data"].as_array().cloned().unwrap_or_default() {
            if let Some(name) = svc["name"].as_str() {
                names.insert(name.to_string());
            }
        }
        match body["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => return Ok(names),
        }
    }
}

/// Checks the history against every running node. Only services named by
/// the workload (`prefix…`) are judged for phantoms.
pub fn check(cluster: &Cluster, history: &History, prefix: &str) -> Check {
    let mut errors = Vec::new();
    let acked: BTreeSet<&String> = history
        .writes
        .iter()
        .filter(|(_, (_, s))| *s == Status::Ok)
        .map(|(name, _)| name)
        .collect();
    let issued: BTreeSet<&String> = history.writes.keys().collect();
    let mut lost = BTreeSet::new();
    let mut phantom = BTreeSet::new();
    let mut digests = BTreeMap::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        match services_on(cluster, node.id) {
            Ok(names) => {
                for name in &acked {
                    if !names.contains(*name) {
                        lost.insert((*name).clone());
                    }
                }
                for name in names.iter().filter(|n| n.starts_with(prefix)) {
                    if !issued.contains(name) {
                        phantom.insert(name.clone());
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        let view = cluster.cluster_view(node.id);
        digests.insert(
            node.id,
            view["state_digest"].as_str().unwrap_or("").to_string(),
        );
    }
    let distinct: BTreeSet<&String> = digests.values().collect();
    let divergent = distinct.len() != 1;
    if !lost.is_empty() {
        errors.push(format!(
            "{} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            lost.iter().next()
        ));
    }
    if !phantom.is_empty() {
        errors.push(format!("{} writes never issued appeared", phantom.len()));
    }
    if divergent {
        errors.push(format!("nodes hold different states: {digests:?}"));
    }
    let by_node: BTreeMap<u64, (usize, usize)> =
        history
            .proxied
            .iter()
            .fold(BTreeMap::new(), |mut acc, (node, ok)| {
                let e = acc.entry(*node).or_insert((0, 0));
                e.0 += 1;
                if *ok {
                    e.1 += 1;
                }
                acc
            });
    for (node, (total, ok)) in by_node {
        let failed = total - ok;
        if failed as f64 > total as f64 * 0.001 {
            let why = history
                .proxy_failures
                .get(&node)
                .map(|w| w.join("; "))
                .unwrap_or_default();
            errors.push(format!(
                "node {node}: {failed} of {total} proxied requests failed ({why})"
            ));
        }
    }
    Check {
        lost: lost.len(),
        phantom: phantom.len(),
        divergent,
        errors,
    }
}
