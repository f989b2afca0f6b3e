//! Rate-limiting figures (issue 6) on a 3-node loopback cluster.
//!
//! Run: `cargo build --release --bin raftgate --example bench-ratelimit &&
//! RAFTGATE_BIN=$CARGO_TARGET_DIR/release/raftgate
//! $CARGO_TARGET_DIR/release/examples/bench-ratelimit [SECONDS_PER_RUN
//! LIMIT_PER_SECOND]` (defaults 6 s, 50/s; 16 runs, about 2 minutes).
//! Point `RAFTGATE_BIN` at a binary built from this tree.
//!
//! Prints the median cost of one check (`ratelimit::bench_check`, median
//! of 5 runs), then, for a per-second limit L, policies `cluster` and
//! `local`, offered loads 0.9, 1.2, 2 and 10 × L spread round-robin and
//! skewed 80/10/10 over the three proxies: admitted ÷ L at p50, p99 and
//! max over the load generator's one-second windows, and the rejections
//! when the offered load is below L. Requests are identified by a header
//! (one consumer, `limit_by = header`).
//!
//! Not measured here (see the report): the per-minute limits (100/min and
//! 1000/min need several minutes per point), and gossip bytes/s with
//! 10,000 active keys (the node exposes no per-peer counters yet).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::json;

fn check_cost() -> f64 {
    let n = 200_000u64;
    let mut runs: Vec<f64> = (0..5)
        .map(|_| raftgate::ratelimit::bench_check(n).as_nanos() as f64 / n as f64)
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    runs[2]
}

/// Sends `rate` requests/s for `secs` seconds; `pick(i)` gives the node
/// index of request `i`. Returns admitted per one-second window (by this
/// generator's clock) and the total rejected.
fn load(
    ports: &[u16],
    path: &str,
    rate: f64,
    secs: u64,
    pick: fn(u64) -> usize,
) -> (Vec<u64>, u64) {
    let windows: Arc<Vec<AtomicU64>> = Arc::new((0..secs).map(|_| AtomicU64::new(0)).collect());
    let rejected = Arc::new(AtomicU64::new(0));
    let total = (rate * secs as f64).round() as u64;
    let workers = 16u64;
    let start = Instant::now() + Duration::from_millis(100);
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let windows = windows.clone();
            let rejected = rejected.clone();
            let ports = ports.to_vec();
            let path = path.to_string();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut i = w;
                while i < total {
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    let port = ports[pick(i) % ports.len()];
                    let resp = http
                        .get(format!("http://127.0.0.1:{port}{path}"))
                        .header("x-consumer", "bench")
                        .send();
                    let sent = at.saturating_duration_since(start).as_secs();
                    match resp.map(|r| r.status().as_u16()) {
                        Ok(200) => {
                            if let Some(w) = windows.get(sent as usize) {
                                w.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += workers;
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let w = windows.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    (w, rejected.load(Ordering::Relaxed))
}

fn round_robin(i: u64) -> usize {
    i as usize
}

fn skewed(i: u64) -> usize {
    match i % 10 {
        0..=7 => 0,
        8 => 1,
        _ => 2,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(6);
    let limit: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    println!(
        "check: median {:.0} ns per check (5 runs of 200,000)",
        check_cost()
    );

    let cluster = Cluster::start(3, &[]);
    let port = common::free_port();
    let mut upstream = std::process::Command::new(common::binary())
        .args(["demo-upstream", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--name", "bench"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("demo upstream");
    let admin = |path: &str, body: serde_json::Value| {
        let (s, b) = cluster.post(&cluster.node(1).admin_url(path), &body);
        assert_eq!(s, 201, "{b}");
    };
    admin(
        "/services",
        json!({"name": "b", "url": format!("http://127.0.0.1:{port}")}),
    );
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.proxy).collect();
    println!("per-second limit L = {limit}/s, {secs} s per run, 1 s windows");
    println!("policy  spread  offered  p50    p99    max    rejected(<L)");
    let mut run = 0;
    for policy in ["cluster", "local"] {
        for (spread, pick) in [
            ("rr", round_robin as fn(u64) -> usize),
            ("80/10/10", skewed),
        ] {
            for mult in [0.9, 1.2, 2.0, 10.0] {
                run += 1;
                let name = format!("r{run}");
                admin(
                    "/services/b/routes",
                    json!({"name": name, "paths": [format!("/{name}")]}),
                );
                admin(
                    &format!("/routes/{name}/plugins"),
                    json!({"name": "rate-limiting", "config": {"second": limit,
                        "limit_by": "header", "header_name": "x-consumer", "policy": policy}}),
                );
                cluster.wait_converged(Duration::from_secs(20));
                std::thread::sleep(Duration::from_millis(500));
                let (windows, rejected) =
                    load(&ports, &format!("/{name}"), mult * limit as f64, secs, pick);
                // The first window starts cold; report the steady ones.
                let mut ratios: Vec<f64> = windows
                    .iter()
                    .skip(1)
                    .map(|a| *a as f64 / limit as f64)
                    .collect();
                ratios.sort_by(|a, b| a.total_cmp(b));
                let q = |p: f64| {
                    ratios
                        .get(((ratios.len() as f64 - 1.0) * p).round() as usize)
                        .copied()
                        .unwrap_or(0.0)
                };
                let rej = if mult < 1.0 {
                    rejected.to_string()
                } else {
                    "-".into()
                };
                println!(
                    "{policy:<7} {spread:<8} {mult:>5.1}×L  {:.3}  {:.3}  {:.3}  {rej}",
                    q(0.5),
                    q(0.99),
                    q(1.0)
                );
            }
        }
    }
    let _ = upstream.kill();
    let _ = upstream.wait();
}
