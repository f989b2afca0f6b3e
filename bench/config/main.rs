//! A large declarative config through one node of a 3-node loopback
//! cluster: 10,000 consumers each with a jwt credential, and 1,000
//! services with a route each. Reports the seconds from the POST until
//! every node serves it (the last route proxies on every node and the last
//! consumer reads back on every node), and each node's resident memory.
//!
//! Run: `bash bench/config/run.sh`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::json;

const CONSUMERS: usize = 10_000;
const SERVICES: usize = 1_000;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let cluster = Cluster::start(3, &[]);
    let upstream_port = common::free_port();
    let mut upstream = std::process::Command::new(common::binary())
        .args([
            "demo-upstream",
            "--listen",
            &format!("127.0.0.1:{upstream_port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let services: Vec<_> = (0..SERVICES)
        .map(|i| {
            json!({
                "name": format!("svc-{i}"),
                "url": format!("http://127.0.0.1:{upstream_port}"),
                "routes": [{"name": format!("route-{i}"), "paths": [format!("/svc-{i}")]}],
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|i| {
            json!({
                "username": format!("user-{i}"),
                "jwt_secrets": [{"key": format!("key-{i}"), "secret": format!("secret-{i:032}")}],
            })
        })
        .collect();
    let doc = json!({"_format_version": "3.0", "services": services, "consumers": consumers});
    let body = json!({ "config": doc.to_string() });
    println!("config: {} bytes of JSON", doc.to_string().len());
    let before: Vec<f64> = cluster.nodes.iter().map(|n| rss_mib(n.pid())).collect();

    let started = Instant::now();
    let (status, answer) = cluster.post(&cluster.node(1).admin_url("/config"), &body);
    assert_eq!(
        status,
        201,
        "{}",
        answer.to_string().chars().take(500).collect::<String>()
    );
    let answered = started.elapsed();

    let http = reqwest::blocking::Client::new();
    let last_route = format!("/svc-{}", SERVICES - 1);
    let last_user = format!("/consumers/user-{}", CONSUMERS - 1);
    let mut serving = Vec::new();
    for node in &cluster.nodes {
        loop {
            let routed = http
                .get(node.proxy_url(&last_route))
                .send()
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false);
            let read = cluster.get(&node.admin_url(&last_user)).0 == 200;
            if routed && read {
                serving.push(started.elapsed());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "node {} never served it",
                node.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let all = serving.iter().max().copied().unwrap_or_default();
    println!(
        "POST /config answered after {:.2} s",
        answered.as_secs_f64()
    );
    for (node, t) in cluster.nodes.iter().zip(&serving) {
        println!("node {} serves it after {:.2} s", node.id, t.as_secs_f64());
    }
    println!("every node serves it after {:.2} s", all.as_secs_f64());
    for (node, b) in cluster.nodes.iter().zip(before) {
        println!(
            "node {} resident memory: {:.0} MiB before, {:.0} MiB after",
            node.id,
            b,
            rss_mib(node.pid())
        );
    }
    let _ = upstream.kill();
    let _ = upstream.wait();
}
