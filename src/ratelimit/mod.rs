//! Cluster-wide rate limiting: sliding windows, counters, gossip.
//!
//! This module owns the counting and the deciding; it knows nothing of
//! HTTP. The rate-limiting plugin builds a key (route, service,
//! identifier) and the `(period, limit)` pairs from its config, calls
//! [`RateLimiter::check_with`] and turns the [`Decision`] into Kong's
//! headers. The node wiring runs [`run_gossip`] with a `send` over the
//! authenticated cluster port, and hands what arrives there to
//! [`RateLimiter::receive`].
//!
//! # Algorithm
//!
//! **Windows.** Each period (second, minute, hour, day, month = 30 days,
//! year = 365 days) is cut into buckets aligned on the Unix epoch: 50 of
//! 20 ms for a second, 10 for the others (6 s for a minute). The count of
//! the sliding window is the sum of the buckets inside the period, plus the
//! bucket sliding out weighted by the part of it still inside the window
//! (its requests taken as spread evenly from its first request to its
//! end). See [`window`] for why a second needs finer buckets.
//!
//! **Counters.** Per key, period and bucket, a node keeps its own count and,
//! per peer, the last count that peer reported. Counts are absolute, so
//! merging is `max` per node and bucket, and the cluster's count is the sum
//! over nodes: lost, repeated or reordered gossip never corrupts it.
//!
//! **Gossip.** Every 50 ms, on the same wall-clock instants on every node
//! (multiples of the interval since the epoch), each node sends every peer
//! the buckets it changed since its last send, and every 20th round all its
//! live buckets (so counts lost in transit come back within a second). An
//! empty message still goes out: it is the heartbeat. Rounds are numbered,
//! and each message acknowledges the last round merged from each peer. No
//! request waits on the network.
//!
//! **Decision** (policy `cluster`), per period, where `total` is the window
//! count of all nodes as known here, `unsent` this node's admissions that
//! some live peer may not know of (since its last send, or in a round not
//! every live peer has acknowledged yet), `P = total − unsent` the count
//! every node knows, `own` this node's part of `P`, and `N` the number of
//! nodes:
//!
//! 1. deny when `total + 1 > limit`;
//! 2. deny when `unsent ≥ (limit − P) × (own + 1) / (P + N)`.
//!
//! Rule 2 hands out what remains, `limit − P`, in shares proportional to
//! each node's part of the traffic (smoothed by `+1` so an idle node still
//! has a share). The shares sum to what remains, and each node may exceed
//! its share by at most the one request that crosses it, so at any instant
//! the cluster has admitted at most `limit + N` — whatever the load and
//! however it is spread. Far from the limit the shares are large and rule 2
//! never binds; at a steady load it binds only when the offered rate
//! exceeds about `limit / (period + gossip interval)`, i.e. ≈ 0.95 × the
//! limit for a per-second limit and ≈ 0.999 × for a per-minute one, so a
//! load of 0.9 × the limit is never refused.
//!
//! A denial by rule 2 is a 429 like any other ([`Outcome::OverShare`] tells
//! them apart in metrics): a burst sent to one node faster than gossip
//! gets that node's share, and the rest once the counts have travelled
//! (one or two rounds, 50–100 ms).
//!
//! Policy `local` is rule 1 with this node's counts only, as Kong's
//! `local`: with N nodes the cluster admits up to N × the limit.
//!
//! # Error bound
//!
//! Over-admission has three sources: the one request per node that crosses
//! its share (≤ N per window, and only while the limit is being hit),
//! counts in flight (bounded by the acknowledgements: a round counts as
//! unpublished until every live peer has said it merged it), and the
//! bucket weighting, which assumes even spread inside the bucket sliding
//! out. Deterministic simulations (`tests.rs`: 3 nodes, 50 ms rounds, 1 ms
//! delivery, 1 ms skew; per-second and per-minute limits of 100 and 1000;
//! offered 0.9, 1.2, 2 and 10 × the limit, round robin and 80/10/10) admit
//! at most `limit × 1.02 + 3` in every load-generator window, and refuse
//! nothing at 0.9 × the limit. Counted over *any* span of one second, with
//! rounds starting up to 10 ms late and messages overtaking each other,
//! also at most `limit × 1.02 + 3`; with 20 ms of such noise at most 2.4 %
//! over, and a few requests at 0.9 × the limit refused. With 5 ms delivery
//! and 3 ms skew, any span at most 0.2 % over.
//!
//! # Partitions
//!
//! A peer not heard from for longer than the staleness (3 gossip
//! intervals, at least 1 s) is *silent*. Two behaviours, chosen per check
//! by [`CheckOptions::fail_open`]:
//!
//! * **fail closed to a share** (`fail_open = false`, the default): while
//!   any peer is silent, a node also denies once its own window count
//!   reaches `limit / N` (N counts the silent nodes too). Every side of
//!   any partition does the same, so the cluster as a whole stays within
//!   the limit (`N × limit / N`), at the cost of refusing traffic a side
//!   could have served. The counts last heard from silent peers keep
//!   counting until they slide out. The share is the equal share, not the
//!   traffic-weighted one of before the partition: a weighted share cannot
//!   be agreed on without talking, and equal shares are safe whatever the
//!   other side does.
//! * **fail open** (`fail_open = true`): keep deciding with the counts last
//!   heard. Nothing is refused for want of a peer, but during a long
//!   partition each side may admit up to the whole limit, so the cluster
//!   up to N × the limit.
//!
//! When the partition heals, the full resync (within 1 s) restores the
//! counts on both sides.
//!
//! Kong's `fault_tolerant` (default `true`) means "serve when the counter
//! store is unreachable"; mapping it to `fail_open` would make fail-open
//! the default. Which mapping the plugin uses is the plugin's choice; this
//! module only offers both.
//!
//! # Memory
//!
//! Buckets are stored only when they have requests and are dropped once
//! they slide out. A key idle for longer than its longest period (plus a
//! bucket) is dropped by a sweep of one shard per gossip round. At most
//! [`LimiterConfig::max_keys`] keys (default 1,000,000) are held; a full
//! shard first drops idle keys, then its least recently used eighth.
//! Dropping a live key forgets its counts (it may then admit up to another
//! limit): the cap is a guard against memory exhaustion, not a working
//! size.
//!
//! # Clocks
//!
//! Every `now_ms` is wall-clock milliseconds since the epoch ([`now_ms`]):
//! bucket numbers are compared across nodes, so clocks must agree to well
//! within a bucket (20 ms for per-second limits); NTP on a LAN does. A
//! node whose clock is a few ms off shifts its second's counts by part of
//! a bucket, which the weighting absorbs.
//! Nothing here reads the clock except [`now_ms`] and [`run_gossip`], so
//! tests drive time explicitly.
//!
//! [`bench_check`] times the check for the benchmark suite.

pub mod counters;
pub mod gossip;
pub mod window;

pub use counters::{
    bench_check, default_staleness, now_ms, CheckOptions, Decision, DecisionStats, LimiterConfig,
    Outcome, PeerStat, PeriodStatus, Policy, RateLimiter,
};
pub use gossip::{
    decode, encode, run_gossip, GossipBucket, GossipEntry, GossipError, GossipMessage,
};
pub use window::{limits_from_config, Period};

#[cfg(test)]
mod tests;

/// This node's limiter, shared by every compiled rate-limiting plugin
/// instance (counters must outlive config changes). `serve` installs the
/// cluster-wide one at start; a process that never did (unit tests, the
/// bench's bare proxy) gets a single-node limiter on first use.
pub fn shared() -> std::sync::Arc<RateLimiter> {
    SHARED
        .get_or_init(|| std::sync::Arc::new(RateLimiter::new(LimiterConfig::new(0))))
        .clone()
}

/// Installs this node's limiter; returns false if one was already in use.
pub fn install(limiter: std::sync::Arc<RateLimiter>) -> bool {
    SHARED.set(limiter).is_ok()
}

static SHARED: std::sync::OnceLock<std::sync::Arc<RateLimiter>> = std::sync::OnceLock::new();
