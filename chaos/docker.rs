//! The Docker backend's levers: Compose for the cluster's lifetime,
//! `docker network disconnect/connect` for partitions, an iptables
//! `statistic` DROP rule inside a container's network namespace (entered
//! with `nsenter`) for packet loss — the kernel here has no netem — and
//! our fault proxy (docker-compose.chaos.yml), which every node's peers go
//! through, for delay. Only containers of our own project are touched, and
//! the proxy only through its control port published on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::faultproxy::{self, LinkFault};
use crate::DOCKER_PROJECT;

/// The compose files of the chaos cluster: the demo cluster, and the fault
/// proxy on the links between its nodes.
const COMPOSE_FILES: [&str; 4] = ["-f", "docker-compose.yml", "-f", "docker-compose.chaos.yml"];

/// The fault proxy's control port, as compose publishes it.
const PROXY_CONTROL: &str = "127.0.0.1:8200";

/// The fault proxy's address on the compose network: inter-node packets
/// reach a node from there.
pub const PROXY_IP: &str = "172.28.0.30";

/// The demo admin token the compose cluster is configured with.
pub const ADMIN_TOKEN: &str = "demo-admin-token";

fn run(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Runs `docker compose` (or `docker-compose`) on our chaos project.
pub fn compose(args: &[&str]) {
    let mut all = vec!["-p", DOCKER_PROJECT];
    all.extend_from_slice(&COMPOSE_FILES);
    all.extend_from_slice(args);
    let status = Command::new("bash")
        .arg("cluster/compose.sh")
        .args(&all)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("compose {args:?} failed");
    }
}

/// The container name of a compose service of our project.
pub fn container(service: &str) -> String {
    run(
        "docker",
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={DOCKER_PROJECT}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
            "--format",
            "{{.Names}}",
        ],
    )
}

fn network() -> String {
    format!("{DOCKER_PROJECT}_raftnet")
}

pub fn disconnect(container: &str) {
    run(
        "docker",
        &["network", "disconnect", "-f", &network(), container],
    );
}

/// Reconnects node `id` with its fixed address (a no-op when connected).
pub fn reconnect(container: &str, id: u64) {
    let ip = format!("172.28.0.{}", 10 + id);
    run(
        "docker",
        &["network", "connect", "--ip", &ip, &network(), container],
    );
}

/// The loss rate the scenarios use.
pub const LOSS: f64 = 0.10;

/// Tags our iptables rules, so that they can be found and removed.
const RULE_TAG: &str = "raftgate-chaos-loss";

fn netns_pid(container: &str) -> Option<String> {
    let pid = run("docker", &["inspect", "-f", "{{.State.Pid}}", container]);
    (!pid.is_empty() && pid != "0").then_some(pid)
}

/// Drops inbound packets of a container at random with probability `p`:
/// all of them, or (`from`) only those from one address. Fails when the
/// rule is not in place afterwards.
pub fn set_loss(container: &str, p: f64, from: Option<&str>) -> Result<(), String> {
    let Some(pid) = netns_pid(container) else {
        return Err(format!("{container} is not running"));
    };
    let p = format!("{p:.2}");
    let mut args = vec!["-t", pid.as_str(), "-n", "iptables", "-I", "INPUT"];
    if let Some(from) = from {
        args.extend(["-s", from]);
    }
    args.extend([
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        p.as_str(),
        "-m",
        "comment",
        "--comment",
        RULE_TAG,
        "-j",
        "DROP",
    ]);
    run("nsenter", &args);
    let rules = run("nsenter", &["-t", &pid, "-n", "iptables", "-S", "INPUT"]);
    if rules.contains(RULE_TAG) {
        Ok(())
    } else {
        Err(format!("no loss rule in {container} (iptables, nsenter?)"))
    }
}

/// Removes every loss rule `set_loss` put on a container.
pub fn clear_loss(container: &str) {
    let Some(pid) = netns_pid(container) else {
        return;
    };
    let rules = run("nsenter", &["-t", &pid, "-n", "iptables", "-S", "INPUT"]);
    for rule in rules.lines().filter(|r| r.contains(RULE_TAG)) {
        let Some(spec) = rule.strip_prefix("-A INPUT ") else {
            continue;
        };
        let mut args = vec!["-t", pid.as_str(), "-n", "iptables", "-D", "INPUT"];
        args.extend(spec.split_whitespace());
        run("nsenter", &args);
    }
}

/// Sends one command to the fault proxy's control port and answers its
/// reply; a few tries, as the port may only just have been published.
fn proxy_command(line: &str) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..20 {
        match try_proxy_command(line) {
            Ok(reply) if reply.starts_with("ok") => return Ok(reply),
            Ok(reply) => return Err(reply),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("fault proxy at {PROXY_CONTROL}: {last}"))
}

fn try_proxy_command(line: &str) -> std::io::Result<String> {
    let addr = PROXY_CONTROL.parse().expect("a socket address");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(reply.trim().to_string())
}

/// Puts `fault` on every link among `ids`, both ways, in the fault proxy.
pub fn set_links(ids: &[u64], fault: LinkFault) -> Result<(), String> {
    proxy_command(&faultproxy::all_command(ids, fault)).map(|_| ())
}

/// Clears every fault of the fault proxy.
pub fn heal_links() -> Result<(), String> {
    proxy_command("heal").map(|_| ())
}
