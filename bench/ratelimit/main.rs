//! Rate-limiting figures (issue 6) on a 3-node loopback cluster, measured
//! on real processes: the accuracy of the `cluster` and `local` policies,
//! and the gossip traffic a node sends with 10,000 active keys.
//!
//! Run (release build; about 5½ minutes, self-stopping):
//!
//! ```text
//! export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
//! cargo build --release --bin raftgate --example bench-ratelimit
//! $CARGO_TARGET_DIR/release/examples/bench-ratelimit [PHASE…] [--second-secs 10]
//!     [--minute-secs 200] [--second-limit 50] [--loads 0.9,1.2,2,10]
//! ```
//!
//! PHASE is any of `check`, `second`, `minute`, `gossip` (default: all, in
//! that order). The node binary is `$RAFTGATE_BIN`, else the `raftgate`
//! next to this example's directory (`…/release/raftgate`).
//!
//! * `check`: median cost of one decision (`ratelimit::bench_check`, median
//!   of 5 runs of 200,000 checks on a limiter holding 10,000 keys).
//! * `second`: per-second limit L (default 50/s). For each policy
//!   (`cluster`, `local`) and spread (round-robin, skewed 80/10/10 over the
//!   three proxies), the four offered loads 0.9, 1.2, 2 and 10 × L run
//!   concurrently for `--second-secs`, each on its own route (so its own
//!   counter); the four (policy, spread) batches run one after the other.
//! * `minute`: L = 100/min and L = 1000/min; all 32 configurations
//!   (2 limits × 2 policies × 2 spreads × 4 loads) run concurrently for
//!   `--minute-secs`, each on its own route. About 1,000 requests/s in all.
//! * `gossip`: a route with a limit never reached; 10,000 distinct keys,
//!   each sent once to every node (30,000 requests in 20 s) so that every
//!   node holds 10,000 keys with its own counts, then each key once more
//!   (10,000 requests in 20 s, round-robin). Each node's
//!   `raftgate_gossip_bytes_sent_total` (message bytes, summed over its
//!   peers, HTTP framing not included) is read from its `/metrics` before
//!   and after those last 20 s.
//!
//! **Windows.** Admitted requests are counted by the load generator's own
//! clock, at the instant each request was sent, in *sliding* windows one
//! period long, stepped every 20 ms for a per-second limit and every
//! second for a per-minute one: a 200 s run gives 141 one-minute windows
//! (fixed windows would give three), and no span of one period is favoured
//! by its alignment with the nodes' buckets.
//! Admitted ÷ L is reported at p50, p99 and max over those windows, with
//! the requests refused when the offered load is below L. The goal (issue
//! 6): at p99 at most 2 % + 3 requests over L, never more than 5 % over,
//! nothing refused at 0.9 × L; `goal` says whether a `cluster` row meets
//! it (`local` rows are there to show the difference).
//!
//! Beside them: `peak sent`, the most requests *sent* (admitted or not) in
//! any window ÷ L, which shows when the generator itself bunched requests
//! (its tasks wait for a core on a busy machine); in brackets after the
//! refusals below L, those refused although at most L requests (the
//! refused one included) had been sent in the period up to them
//! (refusals the bunching does not explain);
//! the p50 and p99 round
//! trip of the requests; and after each batch the nodes' refusals by
//! reason (`raftgate_ratelimit_decisions_total`: `over_limit`, the
//! cluster's count is at L; `over_share`, this node spent its share of
//! what remains until its counts reach the peers; `partitioned`). A run
//! prints the load average (`/proc/loadavg`) when it starts and after each
//! phase.
//!
//! The generator is one tokio runtime: each configuration is a task that
//! sends its requests on schedule, each request in its own task, so a slow
//! answer never delays the next request.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use serde_json::json;
use tokio::time::Instant;

/// Hard limit on the whole run: the watchdog kills the nodes and exits.
const WATCHDOG: Duration = Duration::from_secs(9 * 60);

/// Time allowed to one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Spread {
    RoundRobin,
    /// 80 % to node 1, 10 % to each other.
    Skewed,
}

impl Spread {
    fn node(self, i: u64) -> usize {
        match self {
            Spread::RoundRobin => (i % 3) as usize,
            Spread::Skewed => [0, 0, 0, 0, 0, 0, 0, 0, 1, 2][(i % 10) as usize],
        }
    }
    fn name(self) -> &'static str {
        match self {
            Spread::RoundRobin => "rr",
            Spread::Skewed => "80/10/10",
        }
    }
}

/// One limited route and the load offered to it.
#[derive(Clone, Debug)]
struct Config {
    route: String,
    period_ms: u64,
    limit: u64,
    policy: &'static str,
    spread: Spread,
    mult: f64,
}

impl Config {
    fn rate_per_sec(&self) -> f64 {
        self.mult * self.limit as f64 * 1000.0 / self.period_ms as f64
    }
}

#[derive(Clone, Default)]
struct Outcome {
    /// Send instants of the admitted requests, ms from the run's start.
    admitted_ms: Vec<u64>,
    /// Send instants of every request, ms from the run's start.
    sent_ms: Vec<u64>,
    /// Send instants of the refused requests (429 or no answer).
    refused_ms: Vec<u64>,
    /// Round trips of all answered requests, µs, sorted.
    rtt_us: Vec<u64>,
    offered: u64,
    rejected: u64,
    errors: u64,
}

/// Sends `cfg`'s load for `secs` from `start`; every request carries
/// `x-consumer: bench` (the route makes the counter key distinct).
async fn drive(
    http: reqwest::Client,
    ports: Arc<Vec<u16>>,
    cfg: Config,
    start: Instant,
    secs: u64,
) -> Outcome {
    let rate = cfg.rate_per_sec();
    let total = (rate * secs as f64).floor() as u64;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let port = ports[cfg.spread.node(i) % ports.len()];
        let url = format!("http://127.0.0.1:{port}/{}", cfg.route);
        let req = http.get(url).header("x-consumer", "bench");
        set.spawn(async move {
            let sent = start.elapsed();
            let status = match req.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            let rtt = start.elapsed().saturating_sub(sent);
            (sent.as_millis() as u64, status, rtt.as_micros() as u64)
        });
    }
    let mut out = Outcome {
        offered: total,
        ..Outcome::default()
    };
    while let Some(r) = set.join_next().await {
        if let Ok((sent, _, rtt)) = r {
            out.rtt_us.push(rtt);
            out.sent_ms.push(sent);
        }
        match r {
            Ok((sent, 200, _)) => out.admitted_ms.push(sent),
            Ok((sent, status, _)) => {
                out.refused_ms.push(sent);
                if status == 429 {
                    out.rejected += 1;
                } else {
                    out.errors += 1;
                }
            }
            Err(_) => out.errors += 1,
        }
    }
    out.admitted_ms.sort_unstable();
    out.sent_ms.sort_unstable();
    out.refused_ms.sort_unstable();
    out.rtt_us.sort_unstable();
    out
}

/// The `q` quantile of sorted values (0 when empty).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0)
}

/// Admitted per sliding window `[s, s + period)`, `s` stepped by `step`
/// from 0 while the window fits in `duration`.
fn sliding_counts(sorted_ms: &[u64], period: u64, step: u64, duration: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut s = 0;
    while s + period <= duration {
        while lo < sorted_ms.len() && sorted_ms[lo] < s {
            lo += 1;
        }
        hi = hi.max(lo);
        while hi < sorted_ms.len() && sorted_ms[hi] < s + period {
            hi += 1;
        }
        out.push((hi - lo) as u64);
        s += step;
    }
    out
}

/// Sliding windows start every 20 ms for a per-second limit, every
/// second for a per-minute one.
fn window_step(period_ms: u64) -> u64 {
    if period_ms <= 1000 {
        20
    } else {
        1000
    }
}

/// p50, p99 and max of admitted ÷ L.
fn quantiles(counts: &[u64], limit: u64) -> (f64, f64, f64) {
    let mut r: Vec<f64> = counts.iter().map(|c| *c as f64 / limit as f64).collect();
    r.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        r.get(((r.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (q(0.5), q(0.99), q(1.0))
}

struct Bench {
    cluster: Cluster,
    ports: Arc<Vec<u16>>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Bench {
    fn admin(&self, path: &str, body: serde_json::Value) {
        let (s, b) = self
            .cluster
            .post(&self.cluster.node(1).admin_url(path), &body);
        assert_eq!(s, 201, "{path}: {b}");
    }

    /// Routes `/<route>` with their rate-limiting plugins, then waits for
    /// every node to apply them.
    fn configure(&self, configs: &[Config]) {
        for c in configs {
            self.admin(
                "/services/b/routes",
                json!({"name": c.route, "paths": [format!("/{}", c.route)]}),
            );
            let period = if c.period_ms == 1000 {
                "second"
            } else {
                "minute"
            };
            self.admin(
                &format!("/routes/{}/plugins", c.route),
                json!({"name": "rate-limiting", "config": {period: c.limit,
                    "limit_by": "header", "header_name": "x-consumer", "policy": c.policy}}),
            );
        }
        self.cluster.wait_converged(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Runs `configs` concurrently for `secs`.
    fn run(&self, configs: &[Config], secs: u64) -> Vec<Outcome> {
        self.rt.block_on(async {
            let start = Instant::now() + Duration::from_millis(200);
            let tasks: Vec<_> = configs
                .iter()
                .map(|c| {
                    tokio::spawn(drive(
                        self.http.clone(),
                        self.ports.clone(),
                        c.clone(),
                        start,
                        secs,
                    ))
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap_or_default());
            }
            out
        })
    }

    /// Per node, the sum of the metric series whose lines start with
    /// `prefix`.
    fn metric(&self, prefix: &str) -> Vec<u64> {
        self.cluster
            .nodes
            .iter()
            .map(|n| {
                let text = self
                    .cluster
                    .http
                    .get(n.status_url("/metrics"))
                    .send()
                    .and_then(|r| r.text())
                    .unwrap_or_default();
                text.lines()
                    .filter(|l| l.starts_with(prefix))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as u64
            })
            .collect()
    }

    /// `raftgate_gossip_bytes_sent_total` summed over peers, per node.
    fn gossip_bytes(&self) -> Vec<u64> {
        self.metric("raftgate_gossip_bytes_sent_total{")
    }

    /// Refusals so far, all nodes: over_limit, over_share, partitioned.
    fn refusals(&self) -> [u64; 3] {
        ["over_limit", "over_share", "partitioned"].map(|o| {
            let prefix = format!("raftgate_ratelimit_decisions_total{{outcome=\"{o}\"}}");
            self.metric(&prefix).iter().sum()
        })
    }

    /// Prints what the nodes refused since `before`, by reason.
    fn print_refusals(&self, before: [u64; 3]) {
        let now = self.refusals();
        println!(
            "refused by the nodes: over_limit {}, over_share {}, partitioned {}",
            now[0].saturating_sub(before[0]),
            now[1].saturating_sub(before[1]),
            now[2].saturating_sub(before[2])
        );
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn check_cost() -> f64 {
    let n = 200_000u64;
    let mut runs: Vec<f64> = (0..5)
        .map(|_| raftgate::ratelimit::bench_check(n).as_nanos() as f64 / n as f64)
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    runs[2]
}

fn configs(
    prefix: &str,
    period_ms: u64,
    limit: u64,
    policy: &'static str,
    spread: Spread,
    loads: &[f64],
) -> Vec<Config> {
    loads
        .iter()
        .copied()
        .map(|mult| Config {
            route: format!(
                "{prefix}-{limit}-{policy}-{}-{}",
                if spread == Spread::RoundRobin {
                    "rr"
                } else {
                    "sk"
                },
                (mult * 10.0) as u32
            ),
            period_ms,
            limit,
            policy,
            spread,
            mult,
        })
        .collect()
}

/// Prints one table row per configuration; returns how many `cluster`
/// rows miss the goal.
fn report(configs: &[Config], outcomes: &[Outcome], secs: u64) -> usize {
    println!(
        "policy   spread    offered   p50    p99    max    goal  refused(<L) (of which ≤L sent)  peak sent  rtt p50/p99 ms  offered/admitted/refused/errors"
    );
    let mut misses = 0;
    for (c, o) in configs.iter().zip(outcomes) {
        let step = window_step(c.period_ms);
        let counts = sliding_counts(&o.admitted_ms, c.period_ms, step, secs * 1000);
        let (p50, p99, max) = quantiles(&counts, c.limit);
        let peak_sent = sliding_counts(&o.sent_ms, c.period_ms, step, secs * 1000)
            .into_iter()
            .max()
            .unwrap_or(0) as f64
            / c.limit as f64;
        let l = c.limit as f64;
        // Refusals the generator's bunching does not explain: at most L
        // requests (this one included) were sent in the period up to it.
        let unexplained = o
            .refused_ms
            .iter()
            .filter(|&&r| {
                let from = r.saturating_sub(c.period_ms - 1);
                let lo = o.sent_ms.partition_point(|&t| t < from);
                let hi = o.sent_ms.partition_point(|&t| t <= r);
                ((hi - lo) as u64) <= c.limit
            })
            .count();
        let refused_low = if c.mult < 1.0 {
            format!("{} ({unexplained})", o.rejected + o.errors)
        } else {
            "-".into()
        };
        let goal = if c.policy != "cluster" {
            "-"
        } else {
            let ok = p99 * l <= l * 1.02 + 3.0 + 1e-9
                && max <= 1.05 + 1e-9
                && (c.mult >= 1.0 || o.rejected + o.errors == 0);
            if !ok {
                misses += 1;
            }
            if ok {
                "ok"
            } else {
                "MISS"
            }
        };
        println!(
            "{:<8} {:<9} {:>5.1}×L  {p50:.3}  {p99:.3}  {max:.3}  {goal:<4}  {refused_low:>30}  {peak_sent:>9.3}  {:>6.1}/{:<6.1}  {}/{}/{}/{} ({} windows)",
            c.policy,
            c.spread.name(),
            c.mult,
            quantile(&o.rtt_us, 0.5) as f64 / 1000.0,
            quantile(&o.rtt_us, 0.99) as f64 / 1000.0,
            o.offered,
            o.admitted_ms.len(),
            o.rejected,
            o.errors,
            counts.len()
        );
    }
    misses
}

fn arg_value(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let second_secs = arg_value(&args, "--second-secs", 10);
    let minute_secs = arg_value(&args, "--minute-secs", 200).max(61);
    let second_limit = arg_value(&args, "--second-limit", 50);
    let loads: Vec<f64> = args
        .iter()
        .position(|a| a == "--loads")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![0.9, 1.2, 2.0, 10.0]);
    let phases: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["check", "second", "minute", "gossip"].contains(a))
        .collect();
    let all = phases.is_empty();
    let wants = |p: &str| all || phases.contains(&p);

    if std::env::var_os("RAFTGATE_BIN").is_none() {
        // This example lives in …/release/examples/; the node in …/release/.
        if let Some(bin) = std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("raftgate")))
            .filter(|p| p.exists())
        {
            std::env::set_var("RAFTGATE_BIN", bin);
        }
    }
    println!("node binary: {}", common::binary().display());
    println!("load average at start: {}", loadavg());
    let began = std::time::Instant::now();

    if wants("check") {
        println!(
            "check: median {:.0} ns per check (5 runs of 200,000, 10,000 keys)",
            check_cost()
        );
    }
    if !(wants("second") || wants("minute") || wants("gossip")) {
        return;
    }

    let cluster = Cluster::start(3, &[]);
    let port = common::free_port();
    let upstream = std::process::Command::new(common::binary())
        .args(["demo-upstream", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--name", "bench"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("demo upstream");
    let mut pids: Vec<u32> = cluster.nodes.iter().map(|n| n.pid()).collect();
    pids.push(upstream.id());
    let mut upstream = upstream;
    std::thread::spawn(move || {
        std::thread::sleep(WATCHDOG);
        eprintln!("bench-ratelimit: over {WATCHDOG:?}, stopping");
        for pid in pids {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        std::process::exit(2);
    });

    let bench = Bench {
        ports: Arc::new(cluster.nodes.iter().map(|n| n.proxy).collect()),
        cluster,
        http: reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client"),
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
    };
    bench.admin(
        "/services",
        json!({"name": "b", "url": format!("http://127.0.0.1:{port}")}),
    );
    let mut misses = 0;

    if wants("second") {
        let limit = second_limit;
        println!(
            "\n== per-second limit L = {limit}/s; {second_secs} s per batch; sliding 1 s windows stepped every 20 ms"
        );
        for policy in ["cluster", "local"] {
            for spread in [Spread::RoundRobin, Spread::Skewed] {
                let batch = configs("s", 1000, limit, policy, spread, &loads);
                bench.configure(&batch);
                let before = bench.refusals();
                let out = bench.run(&batch, second_secs);
                misses += report(&batch, &out, second_secs);
                bench.print_refusals(before);
            }
        }
        println!("load average: {}", loadavg());
    }

    if wants("minute") {
        let mut all = Vec::new();
        for limit in [100, 1000] {
            for policy in ["cluster", "local"] {
                for spread in [Spread::RoundRobin, Spread::Skewed] {
                    all.extend(configs("m", 60_000, limit, policy, spread, &loads));
                }
            }
        }
        bench.configure(&all);
        let rate: f64 = all.iter().map(Config::rate_per_sec).sum();
        println!(
            "\n== per-minute limits, {} configurations concurrently ({rate:.0} requests/s in all) for {minute_secs} s; sliding 60 s windows stepped every 1 s",
            all.len()
        );
        let before = bench.refusals();
        let out = bench.run(&all, minute_secs);
        for limit in [100, 1000] {
            println!("-- L = {limit}/min");
            let (c, o): (Vec<Config>, Vec<Outcome>) = all
                .iter()
                .cloned()
                .zip(out.iter().cloned())
                .filter(|(c, _)| c.limit == limit)
                .unzip();
            misses += report(&c, &o, minute_secs);
        }
        bench.print_refusals(before);
        println!("load average: {}", loadavg());
    }

    if wants("gossip") {
        bench.admin("/services/b/routes", json!({"name": "g", "paths": ["/g"]}));
        bench.admin(
            "/routes/g/plugins",
            json!({"name": "rate-limiting", "config": {"minute": 1_000_000,
                "limit_by": "header", "header_name": "x-consumer"}}),
        );
        bench.cluster.wait_converged(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(500));
        let keys = 10_000u64;
        // (requests, seconds, key of request i, node of request i)
        let pass = |n: u64, secs: u64, key: fn(u64) -> u64, node: fn(u64) -> usize| {
            bench.rt.block_on(async {
                let rate = n as f64 / secs as f64;
                let start = Instant::now();
                let mut set = tokio::task::JoinSet::new();
                let mut failed = 0u64;
                for i in 0..n {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate))
                        .await;
                    let port = bench.ports[node(i)];
                    let req = bench
                        .http
                        .get(format!("http://127.0.0.1:{port}/g"))
                        .header("x-consumer", format!("key-{:05}", key(i)));
                    set.spawn(
                        async move { matches!(req.send().await, Ok(r) if r.status() == 200) },
                    );
                }
                while let Some(r) = set.join_next().await {
                    if !matches!(r, Ok(true)) {
                        failed += 1;
                    }
                }
                failed
            })
        };
        let warm = pass(3 * keys, 20, |i| i / 3, |i| (i % 3) as usize);
        let before = bench.gossip_bytes();
        let t = std::time::Instant::now();
        let measured = pass(keys, 20, |i| i, |i| (i % 3) as usize);
        let after = bench.gossip_bytes();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "\n== gossip with {keys} active keys (each counted on every node; then {keys} requests in 20 s, round-robin); {} requests failed",
            warm + measured
        );
        println!("node  gossip sent (both peers)  per peer");
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let rate = a.saturating_sub(*b) as f64 / secs;
            println!(
                "{:<5} {:>10.0} bytes/s       {:>10.0} bytes/s",
                i + 1,
                rate,
                rate / 2.0
            );
        }
        println!("load average: {}", loadavg());
    }

    println!(
        "\ndone in {:.0} s; cluster rows missing the goal: {misses}",
        began.elapsed().as_secs_f64()
    );
    let _ = upstream.kill();
    let _ = upstream.wait();
}
