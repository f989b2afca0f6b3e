//! The Docker backend's levers: Compose for the cluster's lifetime,
//! `docker network disconnect/connect` for partitions, and an iptables
//! `statistic` DROP rule inside a container's network namespace (entered
//! with `nsenter`) for packet loss — the kernel here has no netem. Only
//! containers of our own project are touched.

use std::process::{Command, Stdio};

use crate::DOCKER_PROJECT;

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

/// Sets (Some) or clears (None) random loss on a container's inbound
/// packets.
pub fn set_loss(container: &str, loss: Option<f64>) {
    let pid = run("docker", &["inspect", "-f", "{{.State.Pid}}", container]);
    if pid.is_empty() || pid == "0" {
        return;
    }
    let rule = |op: &str, p: f64| {
        let p = format!("{p:.2}");
        run(
            "nsenter",
            &[
                "-t",
                &pid,
                "-n",
                "iptables",
                op,
                "INPUT",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        );
    };
    match loss {
        Some(p) => rule("-I", p),
        // The scenarios only ever add 10% loss.
        None => rule("-D", LOSS),
    }
}
