//! Admin write throughput and failover time on a 3-node loopback cluster.
//!
//! Run: `bash bench/cluster/run.sh` (builds release, then runs this).
//! Prints writes/s and p50/p99 latency for 1 and 32 concurrent writers,
//! and leader `kill -9` → first successful write through another node,
//! median and max over N trials.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn writes(cluster: &Cluster, writers: usize, per_writer: usize) {
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.admin).collect();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let ports = ports.clone();
            let latencies = latencies.clone();
            let failures = failures.clone();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut mine = Vec::with_capacity(per_writer);
                for i in 0..per_writer {
                    let port = ports[(w + i) % ports.len()];
                    let t = Instant::now();
                    let resp = http
                        .post(format!("http://127.0.0.1:{port}/services"))
                        .json(&json!({"name": format!("bench-{writers}-{w}-{i}"), "host": "example.com"}))
                        .send();
                    match resp {
                        Ok(r) if r.status().as_u16() == 201 => mine.push(t.elapsed()),
                        _ => *failures.lock().unwrap() += 1,
                    }
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    println!(
        "writers={writers:>2}  writes={:>5}  failed={}  writes/s={:>7.0}  p50={:.1}ms  p99={:.1}ms",
        lat.len(),
        failures.lock().unwrap(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
    );
}

fn failover(trials: usize) {
    let mut cluster = Cluster::start(3, &[]);
    let mut times = Vec::new();
    for trial in 0..trials {
        let leader = cluster.leader(Duration::from_secs(10));
        let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        // Make sure the others are caught up before the kill.
        assert_eq!(
            cluster.create_service(others[0], &format!("pre-{trial}")).0,
            201
        );
        cluster.node_mut(leader).kill();
        let t = Instant::now();
        let mut n = 0;
        loop {
            let via = others[n % 2];
            n += 1;
            if cluster.create_service(via, &format!("fail-{trial}-{n}")).0 == 201 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no write after failover"
            );
        }
        times.push(t.elapsed());
        cluster.restart(leader);
        cluster.wait_ready_all(Duration::from_secs(30));
    }
    times.sort();
    println!(
        "failover over {trials} trials: median={:.0}ms  max={:.0}ms  min={:.0}ms",
        ms(percentile(&times, 0.5)),
        ms(*times.last().unwrap()),
        ms(times[0]),
    );
}

fn main() {
    let trials: usize = std::env::var("FAILOVER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let cluster = Cluster::start(3, &[]);
    println!("== admin writes, 3 nodes on loopback, spread over all nodes ==");
    writes(&cluster, 1, 300);
    writes(&cluster, 32, 100);
    drop(cluster);
    println!("== failover: leader kill -9 -> first successful write via another node ==");
    failover(trials);
}
