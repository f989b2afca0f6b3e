//! Black-box test harness: real `raftgate` processes on loopback, each with
//! its own ports and data directory, driven over HTTP.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "test-cluster-secret-0123456789abcdef";

/// The raftgate binary: `$RAFTGATE_BIN`, else the one cargo built for
/// these tests.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("RAFTGATE_BIN") {
        return PathBuf::from(path);
    }
    match option_env!("CARGO_BIN_EXE_raftgate") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from("target/release/raftgate"),
    }
}

/// A port that was free a moment ago, below Linux's ephemeral range
/// (32768+) so that no outgoing connection can be holding it when a node
/// binds it, and never handed out twice by this process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) as u16 * 30,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + (port - 20_000) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Node {
    pub id: u64,
    pub proxy: u16,
    pub admin: u16,
    pub status: u16,
    pub cluster: u16,
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    /// Set when the node is a Docker container (the chaos suite's Docker
    /// backend): it is started, killed and signalled through `docker`.
    pub container: Option<String>,
    container_up: bool,
}

impl Node {
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin, path)
    }
    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.proxy, path)
    }
    pub fn status_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.status, path)
    }
    pub fn cluster_addr(&self) -> String {
        format!("127.0.0.1:{}", self.cluster)
    }
    /// The process id of the running node (0 when not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some() || self.container_up
    }

    /// A node that runs in the Docker container `name`, reached through
    /// the ports Compose published on 127.0.0.1.
    pub fn in_container(id: u64, name: &str, proxy: u16, admin: u16, status: u16) -> Node {
        Node {
            id,
            proxy,
            admin,
            status,
            cluster: 0,
            data_dir: PathBuf::new(),
            extra_args: Vec::new(),
            child: None,
            log: PathBuf::new(),
            container: Some(name.to_string()),
            container_up: true,
        }
    }

    fn docker(&self, args: &[&str]) {
        if let Some(name) = &self.container {
            let mut all: Vec<&str> = args.to_vec();
            all.push(name);
            let _ = Command::new("docker")
                .args(&all)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    pub fn start(&mut self, secret_file: &PathBuf) {
        if self.container.is_some() {
            self.docker(&["start"]);
            self.container_up = true;
            return;
        }
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .args(["--node-id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--cluster-secret-file")
            .arg(secret_file)
            .args(["--proxy-listen", &format!("127.0.0.1:{}", self.proxy)])
            .args(["--proxy-tls-listen", "off"])
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin)])
            .args(["--status-listen", &format!("127.0.0.1:{}", self.status)])
            .args(["--cluster-listen", &self.cluster_addr()])
            .args(&self.extra_args)
            .env("RUST_LOG", "info,openraft=error")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn raftgate"));
    }

    /// SIGKILL, as `kill -9`.
    pub fn kill(&mut self) {
        if self.container.is_some() {
            self.docker(&["kill", "-s", "KILL"]);
            self.container_up = false;
            return;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) {
        if self.container.is_some() {
            self.docker(&["stop", "-t", "10"]);
            self.container_up = false;
            return;
        }
        if let Some(mut child) = self.child.take() {
            sigterm(child.id());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, …) to the running process.
    pub fn signal(&self, name: &str) {
        match name {
            "STOP" if self.container.is_some() => return self.docker(&["pause"]),
            "CONT" if self.container.is_some() => return self.docker(&["unpause"]),
            _ => {}
        }
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{name}"), &child.id().to_string()])
                .status();
        }
    }

    /// Deletes the node's data directory (the node must be stopped).
    pub fn wipe(&self) {
        assert!(self.child.is_none(), "wipe a running node");
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub secret_file: PathBuf,
    pub nodes: Vec<Node>,
    pub http: reqwest::blocking::Client,
    /// Sent as `Kong-Admin-Token` with every request, when set.
    pub admin_token: Option<String>,
}

/// An HTTP client that sends the admin token, when given, on every request.
pub fn client_with_token(token: Option<&str>, timeout: Duration) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(token) {
            headers.insert("kong-admin-token", value);
        }
    }
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .unwrap()
}

impl Cluster {
    /// A cluster of already running nodes (the Docker backend), whose
    /// Admin API needs `token`.
    pub fn attach(nodes: Vec<Node>, token: &str) -> Cluster {
        let mut cluster = Cluster::empty_with_token(Some(token));
        cluster.nodes = nodes;
        cluster
    }

    fn empty() -> Cluster {
        Cluster::empty_with_token(None)
    }

    fn empty_with_token(token: Option<&str>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("cluster-secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        Cluster {
            dir,
            secret_file,
            nodes: Vec::new(),
            http: client_with_token(token, Duration::from_secs(30)),
            admin_token: token.map(str::to_string),
        }
    }

    pub fn new_node(&self, id: u64, extra_args: Vec<String>) -> Node {
        Node {
            id,
            proxy: free_port(),
            admin: free_port(),
            status: free_port(),
            cluster: free_port(),
            data_dir: self.dir.path().join(format!("node{id}")),
            extra_args,
            child: None,
            log: self.dir.path().join(format!("node{id}.log")),
            container: None,
            container_up: false,
        }
    }

    /// `n` founding nodes started with the same `--initial-cluster`.
    pub fn start(n: u64, extra_args: &[&str]) -> Cluster {
        Cluster::start_custom(
            n,
            |node| node.cluster_addr(),
            |_| extra_args.iter().map(|s| s.to_string()).collect(),
        )
    }

    /// Like `start`, with each node's address in `--initial-cluster` and
    /// its extra flags chosen by the caller.
    pub fn start_custom(
        n: u64,
        address: impl Fn(&Node) -> String,
        extra_args: impl Fn(&Node) -> Vec<String>,
    ) -> Cluster {
        let mut cluster = Cluster::empty();
        let mut nodes: Vec<Node> = (1..=n).map(|id| cluster.new_node(id, vec![])).collect();
        let initial: Vec<String> = nodes
            .iter()
            .map(|node| format!("{}={}", node.id, address(node)))
            .collect();
        for node in &mut nodes {
            let mut args = vec!["--initial-cluster".into(), initial.join(",")];
            args.extend(extra_args(node));
            node.extra_args = args;
        }
        // Start in reverse order: the order must not matter.
        for node in nodes.iter_mut().rev() {
            node.start(&cluster.secret_file);
        }
        cluster.nodes = nodes;
        cluster.wait_ready_all(Duration::from_secs(30));
        cluster
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap()
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    pub fn restart(&mut self, id: u64) {
        let secret = self.secret_file.clone();
        self.node_mut(id).start(&secret);
    }

    pub fn get(&self, url: &str) -> (u16, Value) {
        match self.http.get(url).send() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.json().unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub fn http_delete(&self, url: &str) -> (u16, Value) {
        match self.http.delete(url).send() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.json().unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        match self.http.post(url).json(body).send() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.json().unwrap_or(Value::Null);
                (status, body)
            }
            Err(e) => {
                eprintln!("POST {url}: {e:?}");
                (0, Value::Null)
            }
        }
    }

    pub fn is_ready(&self, id: u64) -> bool {
        self.get(&self.node(id).status_url("/status/ready")).0 == 200
    }

    pub fn wait_ready_all(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            while !self.is_ready(node.id) {
                assert!(
                    Instant::now() < deadline,
                    "node {} not ready in {timeout:?}; log:\n{}",
                    node.id,
                    node.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The cluster view as node `id` reports it.
    pub fn cluster_view(&self, id: u64) -> Value {
        self.get(&self.node(id).admin_url("/cluster")).1
    }

    /// The leader's id as seen by any running node, waiting for one.
    pub fn leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                let view = self.cluster_view(node.id);
                if let Some(leader) = view["leader"].as_u64() {
                    if self.node(leader).is_running() && view["state"] != "candidate" {
                        let leader_view = self.cluster_view(leader);
                        if leader_view["state"] == "leader" {
                            return leader;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates a service named `name` through node `via`.
    pub fn create_service(&self, via: u64, name: &str) -> (u16, Value) {
        self.post(
            &self.node(via).admin_url("/services"),
            &serde_json::json!({"name": name, "host": "example.com"}),
        )
    }

    /// Waits until every running node has applied at least as far as the
    /// furthest one, then returns each node's applied index.
    pub fn wait_converged(&self, timeout: Duration) -> BTreeMap<u64, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let applied: BTreeMap<u64, u64> = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .map(|n| {
                    let v = self.cluster_view(n.id);
                    (n.id, v["last_applied_index"].as_u64().unwrap_or(0))
                })
                .collect();
            let max = applied.values().max().copied().unwrap_or(0);
            if applied.values().all(|v| *v == max) {
                return applied;
            }
            assert!(
                Instant::now() < deadline,
                "nodes did not converge: {applied:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
