//! Deterministic tests of the counters, the share rule and gossip: every
//! clock is an explicit `now_ms`, gossip is delivered by the test loop.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::*;
use bytes::Bytes;

const T0: u64 = 1_800_000_000_000; // a multiple of every bucket length below a day

fn limiter(id: u64) -> RateLimiter {
    RateLimiter::new(LimiterConfig::new(id))
}

fn cluster(n: u64, now: u64) -> Vec<RateLimiter> {
    let all: Vec<(u64, String)> = (1..=n).map(|i| (i, format!("node{i}"))).collect();
    (1..=n)
        .map(|i| {
            let rl = limiter(i);
            rl.set_peers(&all, now);
            rl
        })
        .collect()
}

/// Load pattern: which node gets the k-th request.
#[derive(Clone, Copy, Debug)]
enum Spread {
    RoundRobin,
    /// 80 % to the first node, 10 % to each other.
    Skewed,
}

fn node_for(spread: Spread, k: u64) -> usize {
    match spread {
        Spread::RoundRobin => (k % 3) as usize,
        Spread::Skewed => [0, 0, 0, 0, 1, 0, 0, 0, 0, 2][(k % 10) as usize],
    }
}

struct SimResult {
    per_window: Vec<u64>,
    rejected: u64,
    /// Largest number admitted in any span of one period (not only the
    /// load generator's windows).
    max_sliding: u64,
}

/// Three nodes; `factor × limit` requests per period, evenly spaced from
/// `start`; each node gossips every `gossip_ms` on the wall-clock grid as
/// `run_gossip` does, node i `i × skew_ms` late (clock skew), delivered
/// `delay_ms` later.
fn simulate(
    period: Period,
    limit: u64,
    factor: f64,
    spread: Spread,
    windows: u64,
    start: u64,
    gossip_ms: u64,
    delay_ms: u64,
    skew_ms: u64,
) -> SimResult {
    let nodes = cluster(3, start);
    let p = period.millis();
    let end = start + windows * p;
    let per_ms = factor * limit as f64 / p as f64;
    let mut k: u64 = 0;
    let mut admitted_at: Vec<u64> = Vec::new();
    let mut rejected = 0;
    let mut in_flight: VecDeque<(u64, usize, Bytes)> = VecDeque::new();
    for t in start..end {
        while in_flight.front().is_some_and(|(due, _, _)| *due <= t) {
            if let Some((_, to, bytes)) = in_flight.pop_front() {
                if let Some(node) = nodes.get(to) {
                    assert!(node.receive(&bytes, t).is_ok());
                }
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            if t.saturating_sub(i as u64 * skew_ms) % gossip_ms == 0 {
                let bytes = encode(&node.take_changes());
                for to in 0..nodes.len() {
                    if to != i {
                        in_flight.push_back((t + delay_ms, to, bytes.clone()));
                    }
                }
            }
        }
        // Requests due by the end of this millisecond.
        while (k as f64) < ((t - start + 1) as f64) * per_ms {
            let node = node_for(spread, k);
            k += 1;
            let d = nodes[node].check("r:s:alice", &[(period, limit)], t);
            if d.allowed {
                admitted_at.push(t);
            } else {
                rejected += 1;
            }
        }
    }
    let mut per_window = vec![0u64; windows as usize];
    for &t in &admitted_at {
        per_window[((t - start) / p) as usize] += 1;
    }
    let mut max_sliding = 0u64;
    let mut lo = 0usize;
    for hi in 0..admitted_at.len() {
        while admitted_at[hi] - admitted_at[lo] >= p {
            lo += 1;
        }
        max_sliding = max_sliding.max((hi - lo + 1) as u64);
    }
    SimResult {
        per_window,
        rejected,
        max_sliding,
    }
}

fn bound(limit: u64) -> f64 {
    limit as f64 * 1.02 + 3.0
}

#[test]
fn share_rule_keeps_cluster_within_bound() {
    let cases = [
        (Period::Second, 100u64),
        (Period::Second, 1_000),
        (Period::Minute, 100),
        (Period::Minute, 1_000),
    ];
    let mut report = String::new();
    for (period, limit) in cases {
        let windows = if period == Period::Second { 8 } else { 3 };
        for spread in [Spread::RoundRobin, Spread::Skewed] {
            for factor in [0.9, 1.2, 2.0, 10.0] {
                // Generator windows aligned with buckets, and offset by
                // half a bucket.
                for offset in [0, period.bucket_millis() / 2] {
                    let r = simulate(
                        period,
                        limit,
                        factor,
                        spread,
                        windows,
                        T0 + offset,
                        50,
                        1,
                        1,
                    );
                    let worst = r.per_window.iter().copied().max().unwrap_or(0);
                    report.push_str(&format!(
                        "{period:?} L={limit} {spread:?} {factor}L off={offset}: max/window {worst} sliding {} rejected {}\n",
                        r.max_sliding, r.rejected
                    ));
                    for (w, &n) in r.per_window.iter().enumerate() {
                        assert!(
                            n as f64 <= bound(limit),
                            "{period:?} L={limit} {spread:?} {factor}L: window {w} admitted {n}\n{report}"
                        );
                    }
                    if factor <= 0.9 {
                        assert_eq!(r.rejected, 0, "{period:?} L={limit} {spread:?}\n{report}");
                    } else {
                        // Offered over the limit: the limit is reached.
                        let last = r.per_window.last().copied().unwrap_or(0);
                        assert!(last as f64 >= limit as f64 * 0.9, "{report}");
                    }
                }
            }
        }
    }
    println!("{report}");
}
