//! The counters: per key, per period, per bucket, this node's own count
//! and the last count heard from each peer; and the decision rule.
//!
//! Keys are spread over [`LimiterConfig::shards`] shards, each a plain
//! `std::sync::Mutex<HashMap>`; a check locks one shard for a few hundred
//! nanoseconds and never across an `.await` (there is none). The peer list
//! is published through `arc-swap`, so a check reads it without a lock.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::window::{self, Period};

/// Settings of a [`RateLimiter`].
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// This node's Raft id; messages claiming to come from it are ignored.
    pub node_id: u64,
    /// How often [`super::gossip::run_gossip`] sends changes (default 50 ms).
    pub gossip_interval: Duration,
    /// A peer not heard from for longer than this is "silent" (default:
    /// the larger of 3 × `gossip_interval` and 1 s).
    pub staleness: Duration,
    /// Hard cap on keys held; beyond it the least recently used go first.
    pub max_keys: usize,
    /// Number of lock shards (a power of two is not required).
    pub shards: usize,
}

impl LimiterConfig {
    /// Defaults for `node_id`: 50 ms gossip, 1 s staleness, 1,000,000 keys,
    /// 64 shards.
    pub fn new(node_id: u64) -> Self {
        let gossip_interval = Duration::from_millis(50);
        LimiterConfig {
            node_id,
            gossip_interval,
            staleness: default_staleness(gossip_interval),
            max_keys: 1_000_000,
            shards: 64,
        }
    }
}

/// The larger of 3 × `interval` and one second.
pub fn default_staleness(interval: Duration) -> Duration {
    interval.saturating_mul(3).max(Duration::from_secs(1))
}

/// Kong's `policy`: `local` counts this node's requests only; `cluster`
/// (the default here) counts the whole cluster's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Cluster,
    Local,
}

/// How one check behaves; built by the plugin from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckOptions {
    pub policy: Policy,
    /// While some peer is silent: `false` (default) keeps this node to its
    /// equal share `limit / N` of each window; `true` keeps counting with
    /// the last counts heard, so the cluster may admit up to N × the limit
    /// during a long partition.
    pub fail_open: bool,
}

/// Why a check ended as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// The cluster-wide (or, for `local`, this node's) count is at the limit.
    OverLimit,
    /// The cluster has room, but this node has spent its share of what
    /// remains until its counts reach the peers.
    OverShare,
    /// Some peer is silent and this node has spent its `limit / N`.
    Partitioned,
}

/// The state of one period after a check, for Kong's headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodStatus {
    pub period: Period,
    pub limit: u64,
    /// Requests left in the window after this one (0 when denied here).
    pub remaining: u64,
    /// Whole seconds (at least 1, at most the period) until the window
    /// has more room: when `remaining` is 0, until one more request would
    /// fit; otherwise until the oldest bucket counted has slid out.
    pub reset_secs: u64,
}

/// The answer to [`RateLimiter::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub outcome: Outcome,
    /// One per limit given, in the same order.
    pub periods: Vec<PeriodStatus>,
    /// For `Retry-After`, set only when denied: whole seconds, at least 1.
    pub retry_after_secs: Option<u64>,
}

impl Decision {
    /// The period for `RateLimit-Limit/-Remaining/-Reset`: the one with the
    /// fewest requests remaining (the first such in the order given).
    pub fn most_restrictive(&self) -> Option<&PeriodStatus> {
        self.periods.iter().min_by_key(|s| s.remaining)
    }
}

/// Decisions so far, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecisionStats {
    pub allowed: u64,
    pub over_limit: u64,
    pub over_share: u64,
    pub partitioned: u64,
}

/// What the node knows about one peer, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStat {
    pub node_id: u64,
    pub addr: String,
    pub bytes_sent: u64,
    pub messages_sent: u64,
    pub send_errors: u64,
    pub bytes_received: u64,
    /// Wall-clock millis of the last message from this peer (0 = never).
    pub last_heard_ms: u64,
    pub silent: bool,
}

pub(crate) struct Peer {
    pub(crate) id: u64,
    pub(crate) addr: String,
    pub(crate) last_heard_ms: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    /// The `seq` of the last message merged from this peer: what this node
    /// acknowledges to it.
    pub(crate) received_seq: AtomicU64,
    /// The last of this node's rounds this peer acknowledged (from its
    /// latest message: a restarted peer acknowledges nothing yet).
    pub(crate) acked_seq: AtomicU64,
    /// Set when this peer was added, so a new peer gets one staleness
    /// period of grace before it counts as silent.
    added_ms: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnBucket {
    pub(crate) idx: u64,
    /// Offset of the first request within the bucket, in ms.
    pub(crate) first: u32,
    pub(crate) count: u64,
    /// The count last handed to gossip.
    pub(crate) sent: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct PeriodCounts {
    pub(crate) period: Period,
    /// Sorted by bucket, oldest first; only buckets with requests.
    pub(crate) own: VecDeque<OwnBucket>,
    /// Per peer node, its cells sorted by bucket.
    pub(crate) peers: Vec<(u64, VecDeque<window::Cell>)>,
}

impl PeriodCounts {
    fn new(period: Period) -> Self {
        PeriodCounts {
            period,
            own: VecDeque::new(),
            peers: Vec::new(),
        }
    }

    fn prune(&mut self, now_ms: u64) {
        let p = self.period;
        while self
            .own
            .front()
            .is_some_and(|b| window::expired(p, b.idx, now_ms))
        {
            self.own.pop_front();
        }
        for (_, buckets) in &mut self.peers {
            while buckets
                .front()
                .is_some_and(|(idx, _, _)| window::expired(p, *idx, now_ms))
            {
                buckets.pop_front();
            }
        }
        self.peers.retain(|(_, b)| !b.is_empty());
    }

    fn own_estimate(&self, now_ms: u64) -> f64 {
        window::estimate(
            self.period,
            self.own.iter().map(|b| (b.idx, b.first, b.count)),
            now_ms,
        )
    }

    fn peers_estimate(&self, now_ms: u64) -> f64 {
        self.peers
            .iter()
            .map(|(_, b)| window::estimate(self.period, b.iter().copied(), now_ms))
            .sum()
    }

    fn add_own(&mut self, now_ms: u64) {
        let idx = self.period.bucket_of(now_ms);
        match self.own.back_mut() {
            Some(b) if b.idx == idx => b.count = b.count.saturating_add(1),
            Some(b) if b.idx > idx => {
                // The clock went backwards: count in the newest bucket
                // rather than reorder.
                b.count = b.count.saturating_add(1);
            }
            _ => self.own.push_back(OwnBucket {
                idx,
                first: window::offset_in_bucket(self.period, now_ms),
                count: 1,
                sent: 0,
            }),
        }
    }

    /// Merge = max of the count, min of the first offset, per node and
    /// bucket.
    fn merge_peer(&mut self, node: u64, idx: u64, first: u32, count: u64) {
        let pos = match self.peers.iter().position(|(n, _)| *n == node) {
            Some(pos) => pos,
            None => {
                self.peers.push((node, VecDeque::new()));
                self.peers.len() - 1
            }
        };
        let Some((_, buckets)) = self.peers.get_mut(pos) else {
            return;
        };
        match buckets.binary_search_by_key(&idx, |(i, _, _)| *i) {
            Ok(at) => {
                if let Some(slot) = buckets.get_mut(at) {
                    slot.1 = slot.1.min(first);
                    slot.2 = slot.2.max(count);
                }
            }
            Err(at) => buckets.insert(at, (idx, first, count)),
        }
    }
}

/// Unacknowledged gossip rounds remembered per key (20 rounds: a second).
const MAX_UNACKED_ROUNDS: usize = 20;

/// What a gossip take needs from the limiter: its round number, and the
/// last round every peer has acknowledged.
pub(crate) struct Round {
    pub(crate) seq: u64,
    pub(crate) acked: u64,
    acks: Vec<(u64, u64)>,
}

impl Round {
    pub(crate) fn message(
        self,
        from: u64,
        entries: Vec<super::gossip::GossipEntry>,
    ) -> super::gossip::GossipMessage {
        super::gossip::GossipMessage {
            from,
            seq: self.seq,
            acks: self.acks,
            entries,
        }
    }
}

pub(crate) struct Entry {
    pub(crate) periods: Vec<PeriodCounts>,
    /// Requests admitted here since the last gossip take.
    pub(crate) unsent: u64,
    /// `(round, requests)`: admissions handed to gossip rounds that not
    /// every peer has acknowledged yet, oldest first. They count as
    /// unpublished until then: the peers decide without them.
    pub(crate) unacked: VecDeque<(u64, u64)>,
    pub(crate) last_active_ms: u64,
    /// Already listed in its shard's `dirty`.
    pub(crate) dirty: bool,
}

impl Entry {
    fn new(now_ms: u64) -> Self {
        Entry {
            periods: Vec::new(),
            unsent: 0,
            unacked: VecDeque::new(),
            last_active_ms: now_ms,
            dirty: false,
        }
    }

    /// Hands this entry's unsent admissions to gossip round `seq`, and
    /// forgets the rounds every peer has acknowledged (`acked`).
    pub(crate) fn start_round(&mut self, seq: u64, acked: u64) {
        while self.unacked.front().is_some_and(|(s, _)| *s <= acked) {
            self.unacked.pop_front();
        }
        if self.unsent > 0 {
            self.unacked.push_back((seq, self.unsent));
            self.unsent = 0;
        }
        // A peer that stays silent acknowledges nothing: fold the oldest
        // rounds into the next one (counted as unacknowledged for longer,
        // which is the safe side) rather than grow.
        if self.unacked.len() > MAX_UNACKED_ROUNDS {
            if let Some((_, n)) = self.unacked.pop_front() {
                if let Some(next) = self.unacked.front_mut() {
                    next.1 = next.1.saturating_add(n);
                }
            }
        }
    }

    /// Admissions the peers may not know of: unsent, or in a round not
    /// every live peer has acknowledged (`acked`).
    fn unpublished(&self, acked: u64) -> u64 {
        self.unacked
            .iter()
            .filter(|(s, _)| *s > acked)
            .fold(self.unsent, |sum, (_, n)| sum.saturating_add(*n))
    }

    fn period_mut(&mut self, period: Period) -> &mut PeriodCounts {
        let pos = match self.periods.iter().position(|p| p.period == period) {
            Some(pos) => pos,
            None => {
                self.periods.push(PeriodCounts::new(period));
                self.periods.len() - 1
            }
        };
        // `pos` is in bounds by construction; index through get_mut anyway
        // would need a fallback value, so keep the direct index here.
        &mut self.periods[pos]
    }

    fn idle(&self, now_ms: u64) -> bool {
        let longest = self
            .periods
            .iter()
            .map(|p| p.period.millis() + p.period.bucket_millis())
            .max()
            .unwrap_or(0);
        now_ms.saturating_sub(self.last_active_ms) > longest
    }
}

#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) map: HashMap<String, Entry>,
    pub(crate) dirty: Vec<String>,
}

/// Cluster-aware sliding-window counters. Share one `Arc<RateLimiter>`
/// between the proxy (which calls [`RateLimiter::check`]) and the gossip
/// task.
pub struct RateLimiter {
    pub(crate) config: LimiterConfig,
    pub(crate) shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    pub(crate) peers: ArcSwap<Vec<Arc<Peer>>>,
    sweep_cursor: AtomicUsize,
    /// Number of gossip takes so far.
    pub(crate) take_seq: AtomicU64,
    allowed: AtomicU64,
    over_limit: AtomicU64,
    over_share: AtomicU64,
    partitioned: AtomicU64,
}

pub(crate) fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic elsewhere while holding the lock leaves plain counters that
    // are still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RateLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        let n = config.shards.max(1);
        RateLimiter {
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            config,
            hasher: RandomState::new(),
            peers: ArcSwap::from_pointee(Vec::new()),
            sweep_cursor: AtomicUsize::new(0),
            take_seq: AtomicU64::new(0),
            allowed: AtomicU64::new(0),
            over_limit: AtomicU64::new(0),
            over_share: AtomicU64::new(0),
            partitioned: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    pub(crate) fn shard_of(&self, key: &str) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key);
        let i = (h % self.shards.len() as u64) as usize;
        // `shards` is never empty (see `new`), and `i < len`.
        &self.shards[i]
    }

    fn shard_cap(&self) -> usize {
        (self.config.max_keys / self.shards.len()).max(1)
    }

    /// Replaces the peer set (this node's id is skipped if present).
    /// Known peers keep their stats; new ones get one staleness period of
    /// grace before they count as silent.
    pub fn set_peers(&self, peers: &[(u64, String)], now_ms: u64) {
        let old = self.peers.load();
        let mut next: Vec<Arc<Peer>> = Vec::with_capacity(peers.len());
        for (id, addr) in peers {
            if *id == self.config.node_id || next.iter().any(|p| p.id == *id) {
                continue;
            }
            match old.iter().find(|p| p.id == *id && p.addr == *addr) {
                Some(p) => next.push(Arc::clone(p)),
                None => {
                    let heard = old
                        .iter()
                        .find(|p| p.id == *id)
                        .map(|p| p.last_heard_ms.load(Ordering::Relaxed))
                        .unwrap_or(0);
                    next.push(Arc::new(Peer {
                        id: *id,
                        addr: addr.clone(),
                        last_heard_ms: AtomicU64::new(heard),
                        bytes_sent: AtomicU64::new(0),
                        messages_sent: AtomicU64::new(0),
                        send_errors: AtomicU64::new(0),
                        bytes_received: AtomicU64::new(0),
                        received_seq: AtomicU64::new(0),
                        acked_seq: AtomicU64::new(0),
                        added_ms: now_ms,
                    }));
                }
            }
        }
        self.peers.store(Arc::new(next));
    }

    fn peer_silent(&self, p: &Peer, now_ms: u64) -> bool {
        let stale = self.config.staleness.as_millis().min(u128::from(u64::MAX)) as u64;
        let seen = p.last_heard_ms.load(Ordering::Relaxed).max(p.added_ms);
        now_ms.saturating_sub(seen) > stale
    }

    /// True while some known peer is silent.
    pub fn any_peer_silent(&self, now_ms: u64) -> bool {
        self.peers
            .load()
            .iter()
            .any(|p| self.peer_silent(p, now_ms))
    }

    /// Number of nodes this node believes are in the cluster (itself
    /// included).
    pub fn cluster_size(&self) -> usize {
        self.peers.load().len() + 1
    }

    /// Cluster policy, fail closed: see [`RateLimiter::check_with`].
    pub fn check(&self, key: &str, limits: &[(Period, u64)], now_ms: u64) -> Decision {
        self.check_with(key, limits, CheckOptions::default(), now_ms)
    }

    /// Decides one request for `key` against every `(period, limit)`;
    /// counts it here only when it is allowed.
    ///
    /// Cluster policy, per period, with `total` the window estimate of all
    /// nodes' counts as known here, `unsent` this node's admissions for the
    /// key since its last gossip round, and in rounds not every live peer
    /// has acknowledged yet, `published = total − unsent` (what every node
    /// knows), and `N` the cluster size:
    /// 1. deny if `total + 1 > limit`;
    /// 2. while a peer is silent (and not `fail_open`): deny if this node's
    ///    own window count `+ 1 > limit / N`;
    /// 3. deny if `unsent ≥ (limit − published) × (own_published + 1) /
    ///    (published + N)`: each node spends, between two gossips, at
    ///    most its traffic-weighted share of what remains.
    pub fn check_with(
        &self,
        key: &str,
        limits: &[(Period, u64)],
        opts: CheckOptions,
        now_ms: u64,
    ) -> Decision {
        let peers = self.peers.load();
        let cluster = opts.policy == Policy::Cluster;
        let n = if cluster { peers.len() + 1 } else { 1 };
        let (acked, any_silent) = self.peer_view(&peers, now_ms);
        let partitioned = cluster && !opts.fail_open && any_silent;
        let nf = n as f64;

        let mut shard = lock(self.shard_of(key));
        if !shard.map.contains_key(key) {
            self.make_room(&mut shard, now_ms);
            shard.map.insert(key.to_owned(), Entry::new(now_ms));
        }
        let Some(entry) = shard.map.get_mut(key) else {
            return Decision {
                allowed: true,
                outcome: Outcome::Allowed,
                periods: Vec::new(),
                retry_after_secs: None,
            };
        };
        entry.last_active_ms = entry.last_active_ms.max(now_ms);
        let unsent = entry.unpublished(acked) as f64;

        struct Seen {
            period: Period,
            limit: u64,
            total: f64,
            outcome: Outcome,
        }
        let mut seen: Vec<Seen> = Vec::with_capacity(limits.len());
        for &(period, limit) in limits {
            let pc = entry.period_mut(period);
            pc.prune(now_ms);
            let own = pc.own_estimate(now_ms);
            let total = if cluster {
                own + pc.peers_estimate(now_ms)
            } else {
                own
            };
            let lim = limit as f64;
            let outcome = if total + 1.0 > lim + 1e-9 {
                Outcome::OverLimit
            } else if n > 1 && partitioned && own + 1.0 > lim / nf + 1e-9 {
                Outcome::Partitioned
            } else if n > 1 {
                let published = (total - unsent).max(0.0);
                let own_published = (own - unsent).max(0.0);
                let share = (own_published + 1.0) / (published + nf);
                if unsent >= (lim - published) * share {
                    Outcome::OverShare
                } else {
                    Outcome::Allowed
                }
            } else {
                Outcome::Allowed
            };
            seen.push(Seen {
                period,
                limit,
                total,
                outcome,
            });
        }
        let denied = seen.iter().find(|s| s.outcome != Outcome::Allowed);
        let outcome = denied.map_or(Outcome::Allowed, |s| s.outcome);
        let allowed = outcome == Outcome::Allowed;
        if allowed {
            for (i, &(period, _)) in limits.iter().enumerate() {
                // A period listed twice still counts the request once.
                if !limits[..i].iter().any(|(p, _)| *p == period) {
                    entry.period_mut(period).add_own(now_ms);
                }
            }
            entry.unsent = entry.unsent.saturating_add(1);
            if !entry.dirty && cluster && !limits.is_empty() {
                entry.dirty = true;
                shard.dirty.push(key.to_owned());
            }
        }

        let mut periods = Vec::with_capacity(seen.len());
        let mut retry_after: Option<u64> = None;
        let entry = shard.map.get(key);
        for s in &seen {
            let after = if allowed { s.total + 1.0 } else { s.total };
            let lim = s.limit as f64;
            let blocked = s.outcome != Outcome::Allowed;
            let remaining = if blocked {
                0
            } else {
                (lim - after).max(0.0).floor() as u64
            };
            let reset_ms = match (s.outcome, entry) {
                (Outcome::OverShare, _) => 0,
                (_, Some(e)) if remaining == 0 => {
                    // Exact: when one more request fits.
                    let cells = combined(e, s.period, cluster);
                    window::millis_until_at_most(s.period, &cells, now_ms, (lim - 1.0).max(0.0))
                        .unwrap_or_else(|| s.period.millis())
                }
                // Cheap, for the common case: when the oldest bucket
                // counted has left the window.
                (_, Some(e)) => oldest_leaves_in(e, s.period, cluster, now_ms),
                (_, None) => 0,
            };
            let wait_secs = reset_ms.div_ceil(1000).max(1);
            // Kong's reset never exceeds the period; with buckets the last
            // request can take up to a bucket longer to leave entirely.
            let reset_secs = wait_secs.min(s.period.millis() / 1000).max(1);
            if blocked {
                // Retry-After stays exact: retrying sooner would fail.
                retry_after = Some(retry_after.map_or(wait_secs, |r| r.max(wait_secs)));
            }
            periods.push(PeriodStatus {
                period: s.period,
                limit: s.limit,
                remaining,
                reset_secs,
            });
        }
        drop(shard);

        let counter = match outcome {
            Outcome::Allowed => &self.allowed,
            Outcome::OverLimit => &self.over_limit,
            Outcome::OverShare => &self.over_share,
            Outcome::Partitioned => &self.partitioned,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Decision {
            allowed,
            outcome,
            periods,
            retry_after_secs: if allowed {
                None
            } else {
                retry_after.or(Some(1))
            },
        }
    }

    /// In one pass over the peers: the last of this node's gossip rounds
    /// that every live peer has acknowledged (silent peers are not waited
    /// for), and whether any peer is silent.
    fn peer_view(&self, peers: &[Arc<Peer>], now_ms: u64) -> (u64, bool) {
        let mut acked = u64::MAX;
        let mut any_silent = false;
        for p in peers {
            if self.peer_silent(p, now_ms) {
                any_silent = true;
            } else {
                acked = acked.min(p.acked_seq.load(Ordering::Relaxed));
            }
        }
        (acked, any_silent)
    }

    /// This node's admissions for `key` that some live peer may not know
    /// of, as the share rule counts them.
    #[cfg(test)]
    pub(crate) fn unpublished(&self, key: &str, now_ms: u64) -> u64 {
        let (acked, _) = self.peer_view(&self.peers.load(), now_ms);
        lock(self.shard_of(key))
            .map
            .get(key)
            .map_or(0, |e| e.unpublished(acked))
    }

    /// Frees a slot in a full shard: drops idle keys first, then the least
    /// recently active eighth of the shard.
    fn make_room(&self, shard: &mut Shard, now_ms: u64) {
        let cap = self.shard_cap();
        if shard.map.len() < cap {
            return;
        }
        shard.map.retain(|_, e| !e.idle(now_ms));
        if shard.map.len() < cap {
            return;
        }
        let mut ages: Vec<u64> = shard.map.values().map(|e| e.last_active_ms).collect();
        let evict = (ages.len() / 8).max(1);
        let nth = evict.saturating_sub(1).min(ages.len().saturating_sub(1));
        if ages.is_empty() {
            return;
        }
        let (_, cutoff, _) = ages.select_nth_unstable(nth);
        let cutoff = *cutoff;
        let mut removed = 0usize;
        shard.map.retain(|_, e| {
            if removed < evict && e.last_active_ms <= cutoff {
                removed += 1;
                false
            } else {
                true
            }
        });
    }

    /// Records counts heard from `from` (merge = max per node and bucket).
    pub(crate) fn merge_counts(
        &self,
        from: u64,
        key: &str,
        buckets: impl Iterator<Item = (Period, window::Cell)>,
        now_ms: u64,
    ) {
        let mut shard = lock(self.shard_of(key));
        if !shard.map.contains_key(key) {
            self.make_room(&mut shard, now_ms);
            shard.map.insert(key.to_owned(), Entry::new(now_ms));
        }
        let Some(entry) = shard.map.get_mut(key) else {
            return;
        };
        entry.last_active_ms = entry.last_active_ms.max(now_ms);
        for (period, (idx, first, count)) in buckets {
            if window::expired(period, idx, now_ms)
                || idx > period.bucket_of(now_ms).saturating_add(period.buckets())
            {
                continue;
            }
            let pc = entry.period_mut(period);
            pc.merge_peer(from, idx, first, count);
        }
    }

    pub(crate) fn note_heard(&self, from: u64, bytes: usize, now_ms: u64) {
        if let Some(p) = self.peers.load().iter().find(|p| p.id == from) {
            p.last_heard_ms.fetch_max(now_ms, Ordering::Relaxed);
            p.bytes_received.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Records a peer's round: what to acknowledge to it, and what it
    /// acknowledges of ours. The latest message wins, not the highest
    /// number: a message overtaken by an older one only makes both sides
    /// more careful for a round, and a restarted peer (numbering from 1
    /// again) is believed at once.
    pub(crate) fn note_round(&self, from: u64, seq: u64, acks: &[(u64, u64)], now_ms: u64) {
        if let Some(p) = self.peers.load().iter().find(|p| p.id == from) {
            p.last_heard_ms.fetch_max(now_ms, Ordering::Relaxed);
            p.received_seq.store(seq, Ordering::Relaxed);
            let ours = acks
                .iter()
                .find(|(node, _)| *node == self.config.node_id)
                .map_or(0, |(_, s)| *s);
            p.acked_seq.store(ours, Ordering::Relaxed);
        }
    }

    /// Starts a gossip round: its number, the last round every peer has
    /// acknowledged, and the acknowledgements to send.
    pub(crate) fn begin_round(&self) -> Round {
        let seq = self
            .take_seq
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let peers = self.peers.load();
        Round {
            seq,
            acked: peers
                .iter()
                .map(|p| p.acked_seq.load(Ordering::Relaxed))
                .min()
                .unwrap_or(u64::MAX),
            acks: peers
                .iter()
                .map(|p| (p.id, p.received_seq.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Drops idle keys from a few shards (round robin); the gossip task
    /// calls this every tick so that a full pass takes `shards` ticks.
    pub fn sweep_some(&self, shards: usize, now_ms: u64) {
        let len = self.shards.len();
        for _ in 0..shards.min(len) {
            let i = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) % len;
            if let Some(s) = self.shards.get(i) {
                let mut s = lock(s);
                s.map.retain(|_, e| !e.idle(now_ms));
            }
        }
    }

    /// Drops every idle key now.
    pub fn sweep(&self, now_ms: u64) {
        self.sweep_some(self.shards.len(), now_ms);
    }

    /// Keys held.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    pub fn decision_stats(&self) -> DecisionStats {
        DecisionStats {
            allowed: self.allowed.load(Ordering::Relaxed),
            over_limit: self.over_limit.load(Ordering::Relaxed),
            over_share: self.over_share.load(Ordering::Relaxed),
            partitioned: self.partitioned.load(Ordering::Relaxed),
        }
    }

    /// Per known peer: traffic and liveness, for metrics.
    pub fn peer_stats(&self, now_ms: u64) -> Vec<PeerStat> {
        self.peers
            .load()
            .iter()
            .map(|p| PeerStat {
                node_id: p.id,
                addr: p.addr.clone(),
                bytes_sent: p.bytes_sent.load(Ordering::Relaxed),
                messages_sent: p.messages_sent.load(Ordering::Relaxed),
                send_errors: p.send_errors.load(Ordering::Relaxed),
                bytes_received: p.bytes_received.load(Ordering::Relaxed),
                last_heard_ms: p.last_heard_ms.load(Ordering::Relaxed),
                silent: self.peer_silent(p, now_ms),
            })
            .collect()
    }
}

/// Milliseconds until the oldest bucket with requests, on any node, has
/// slid out of the window.
fn oldest_leaves_in(e: &Entry, period: Period, cluster: bool, now_ms: u64) -> u64 {
    let Some(pc) = e.periods.iter().find(|p| p.period == period) else {
        return 0;
    };
    let own = pc.own.front().map(|b| b.idx);
    let peers = pc
        .peers
        .iter()
        .filter(|_| cluster)
        .filter_map(|(_, cells)| cells.front().map(|c| c.0));
    let Some(oldest) = own.into_iter().chain(peers).min() else {
        return 0;
    };
    let gone_at = oldest
        .saturating_add(period.buckets() + 1)
        .saturating_mul(period.bucket_millis());
    gone_at.saturating_sub(now_ms)
}

/// All nodes' counts for one period of an entry.
fn combined(e: &Entry, period: Period, cluster: bool) -> Vec<window::Cell> {
    let Some(pc) = e.periods.iter().find(|p| p.period == period) else {
        return Vec::new();
    };
    let mut out: Vec<window::Cell> = pc.own.iter().map(|b| (b.idx, b.first, b.count)).collect();
    if cluster {
        for (_, b) in &pc.peers {
            out.extend(b.iter().copied());
        }
    }
    out
}

/// Wall-clock milliseconds since the Unix epoch: the clock every node
/// uses, so that bucket numbers agree across nodes.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

/// Total wall time of `iterations` checks on a 3-node limiter holding
/// 10,000 keys under a limit never reached (the common path). For the
/// lead's bench: divide by `iterations` for the mean per check.
pub fn bench_check(iterations: u64) -> Duration {
    let rl = RateLimiter::new(LimiterConfig::new(1));
    let start_ms = 1_700_000_000_000u64;
    rl.set_peers(&[(2, "b".into()), (3, "c".into())], start_ms);
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("route-0000:service-0000:consumer-{i:05}"))
        .collect();
    let limits = [
        (Period::Second, 1_000_000_000u64),
        (Period::Minute, 1_000_000_000),
    ];
    for k in &keys {
        rl.merge_counts(
            2,
            k,
            [(Period::Minute, (Period::Minute.bucket_of(start_ms), 0, 3))].into_iter(),
            start_ms,
        );
    }
    let t = std::time::Instant::now();
    for i in 0..iterations {
        let key = keys.get((i % 10_000) as usize).map_or("k", String::as_str);
        let d = rl.check(key, &limits, start_ms + i / 1000);
        std::hint::black_box(d);
    }
    t.elapsed()
}
