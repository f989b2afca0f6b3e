//! Aggregation benchmark: three backends that each take 50 ms, called by
//! the gateway concurrently through one aggregate route, against the same
//! three calls made one after another by a client (through the gateway's
//! plain routes). Prints p50/p90/p99 of each. Run:
//! `cargo run --release --example bench-aggregate [iterations]`.

#[path = "../../tests/proxy_support/mod.rs"]
mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::*;
use serde_json::json;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let ups = [
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    ];
    let mut e = Vec::new();
    for (i, u) in ups.iter().enumerate() {
        e.extend(service_and_route(
            i as u128 + 1,
            i as u128 + 11,
            &u.addr.to_string(),
            json!({"paths": [format!("/direct{i}")], "strip_path": true}),
        ));
    }
    let backends: Vec<_> = (0..3)
        .map(|i| json!({"key": format!("k{i}"), "service": {"id": id(i + 1)}, "path": "/sleep/50"}))
        .collect();
    e.push((
        "routes",
        json!({"id": id(20), "service": {"id": id(1)}, "paths": ["/agg"],
               "aggregate": {"backends": backends}}),
    ));
    let p = start(state(&e)).await;
    let c = client();
    // Warm the pools.
    for i in 0..3 {
        get(&c, p.http, &format!("/direct{i}/sleep/1"), &[]).await;
    }
    let mut agg = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = get(&c, p.http, "/agg", &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.header("x-aggregate-missing").is_none());
        agg.push(t.elapsed());
        let t = Instant::now();
        for i in 0..3 {
            let r = get(&c, p.http, &format!("/direct{i}/sleep/50"), &[]).await;
            assert_eq!(r.status, 200);
        }
        seq.push(t.elapsed());
    }
    let (a50, s50) = (pct(&mut agg, 0.5), pct(&mut seq, 0.5));
    println!("iterations: {n}");
    println!(
        "aggregate (gateway, concurrent): p50 {a50:.1} ms  p90 {:.1} ms  p99 {:.1} ms",
        pct(&mut agg, 0.9),
        pct(&mut agg, 0.99)
    );
    println!(
        "sequential (client, 3 calls):    p50 {s50:.1} ms  p90 {:.1} ms  p99 {:.1} ms",
        pct(&mut seq, 0.9),
        pct(&mut seq, 0.99)
    );
    println!("p50 cut: {:.0}%", (1.0 - a50 / s50) * 100.0);
}
