//! What nodes tell each other about their counters, and the loop that
//! tells it. Transport-agnostic: the caller supplies `send`.
//!
//! A message carries, per key, this node's *absolute* count for each
//! bucket that changed since the previous message. The receiver keeps the
//! maximum per sender and bucket, so a lost, repeated or reordered message
//! never corrupts a count: a later message for the same bucket supersedes
//! it, and every [`FULL_SYNC_EVERY`]th message resends all live buckets so
//! that counts lost in transit, or missed during a partition, come back.
//! An empty message is still sent every interval: it is the heartbeat by
//! which peers tell a live node from a silent one.
//!
//! Every message is numbered (`seq`, the sender's round) and acknowledges,
//! per peer, the number of the last message it merged from that peer
//! (`acks`). A node counts the admissions of a round as unpublished until
//! every live peer has acknowledged that round: only then does it know
//! that they decide with those counts. (An earlier version took "heard
//! from the peer since the round" as the proof, which a message sent just
//! before the round and delivered just after it faked; under scheduling
//! noise of a few ms that let the cluster admit 7–11 % over a per-second
//! limit.)
//!
//! Wire format: one version byte ([`WIRE_VERSION`]), then the
//! [`GossipMessage`] in bincode 2 (standard config: variable-length
//! integers), so a bucket costs about 1 + 5 + 1–3 bytes and a key its
//! length plus a byte or two.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::counters::{lock, now_ms, RateLimiter};
use super::window::{self, Period};

/// The first byte of every message.
pub const WIRE_VERSION: u8 = 2;

/// Largest message accepted (decoding stops beyond it).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Every this many ticks, send all live buckets, not only changed ones.
pub const FULL_SYNC_EVERY: u64 = 20;

/// One bucket of one key: this node's absolute count in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipBucket {
    /// [`Period::code`].
    pub period: u8,
    /// Bucket number: epoch millis / the period's bucket length.
    pub bucket: u64,
    /// Offset of the bucket's first request from the bucket's start, ms.
    pub first: u32,
    pub count: u64,
}

/// The buckets of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipEntry {
    pub key: String,
    pub buckets: Vec<GossipBucket>,
}

/// What one node sends its peers each interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipMessage {
    /// The sender's node id.
    pub from: u64,
    /// The sender's round number (its gossip takes, counted from its start).
    pub seq: u64,
    /// Per peer node id: the `seq` of the last message the sender merged
    /// from that peer.
    pub acks: Vec<(u64, u64)>,
    pub entries: Vec<GossipEntry>,
}

/// Why bytes could not be read as a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GossipError {
    #[error("empty gossip message")]
    Empty,
    #[error("unsupported gossip format version {0}")]
    Version(u8),
    #[error("malformed gossip message: {0}")]
    Malformed(String),
}

/// Version byte + bincode.
pub fn encode(msg: &GossipMessage) -> Bytes {
    let mut out = vec![WIRE_VERSION];
    match bincode::serde::encode_into_std_write(msg, &mut out, bincode::config::standard()) {
        Ok(_) => Bytes::from(out),
        // Writing to a Vec cannot fail; should it, send a heartbeat.
        Err(_) => {
            let empty = GossipMessage {
                from: msg.from,
                seq: msg.seq,
                acks: msg.acks.clone(),
                entries: Vec::new(),
            };
            let mut out = vec![WIRE_VERSION];
            let _ = bincode::serde::encode_into_std_write(
                &empty,
                &mut out,
                bincode::config::standard(),
            );
            Bytes::from(out)
        }
    }
}

/// The inverse of [`encode`]; never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<GossipMessage, GossipError> {
    let (&version, body) = bytes.split_first().ok_or(GossipError::Empty)?;
    if version != WIRE_VERSION {
        return Err(GossipError::Version(version));
    }
    let config = bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>();
    match bincode::serde::decode_from_slice::<GossipMessage, _>(body, config) {
        Ok((msg, used)) if used == body.len() => Ok(msg),
        Ok(_) => Err(GossipError::Malformed("trailing bytes".into())),
        Err(e) => Err(GossipError::Malformed(e.to_string())),
    }
}

impl RateLimiter {
    /// This node's counts that changed since the previous take (or since
    /// the start), as absolute values. Marks them as sent.
    pub fn take_changes(&self) -> GossipMessage {
        let round = self.begin_round();
        let mut entries = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let dirty = std::mem::take(&mut shard.dirty);
            for key in dirty {
                let Some(e) = shard.map.get_mut(&key) else {
                    continue;
                };
                e.dirty = false;
                e.start_round(round.seq, round.acked);
                let mut buckets = Vec::new();
                for pc in &mut e.periods {
                    let code = pc.period.code();
                    for b in pc.own.iter_mut().filter(|b| b.count != b.sent) {
                        b.sent = b.count;
                        buckets.push(GossipBucket {
                            period: code,
                            bucket: b.idx,
                            first: b.first,
                            count: b.count,
                        });
                    }
                }
                if !buckets.is_empty() {
                    entries.push(GossipEntry { key, buckets });
                }
            }
        }
        round.message(self.node_id(), entries)
    }

    /// Every live bucket this node has counted, for a full resync. Also
    /// marks everything as sent.
    pub fn take_all(&self, now_ms: u64) -> GossipMessage {
        let round = self.begin_round();
        let mut entries = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.dirty.clear();
            for (key, e) in shard.map.iter_mut() {
                e.dirty = false;
                e.start_round(round.seq, round.acked);
                let mut buckets = Vec::new();
                for pc in &mut e.periods {
                    let period = pc.period;
                    for b in pc.own.iter_mut() {
                        b.sent = b.count;
                        if !window::expired(period, b.idx, now_ms) {
                            buckets.push(GossipBucket {
                                period: period.code(),
                                bucket: b.idx,
                                first: b.first,
                                count: b.count,
                            });
                        }
                    }
                }
                if !buckets.is_empty() {
                    entries.push(GossipEntry {
                        key: key.clone(),
                        buckets,
                    });
                }
            }
        }
        round.message(self.node_id(), entries)
    }

    /// Takes in a peer's message: marks `from` as heard and keeps, per
    /// bucket, the larger of the stored and the received count. Messages
    /// claiming to be from this node are ignored. Idempotent and
    /// commutative.
    pub fn merge(&self, from: u64, msg: &GossipMessage, now_ms: u64) {
        if from == self.node_id() {
            return;
        }
        self.note_round(from, msg.seq, &msg.acks, now_ms);
        for entry in &msg.entries {
            let buckets = entry.buckets.iter().filter_map(|b| {
                Period::from_code(b.period).map(|p| (p, (b.bucket, b.first, b.count)))
            });
            self.merge_counts(from, &entry.key, buckets, now_ms);
        }
    }

    /// Decodes `bytes` and merges them as coming from the sender they name;
    /// for the cluster port's handler (which has authenticated the peer).
    /// Returns the sender's id.
    pub fn receive(&self, bytes: &[u8], now_ms: u64) -> Result<u64, GossipError> {
        let msg = decode(bytes)?;
        self.note_heard(msg.from, bytes.len(), now_ms);
        self.merge(msg.from, &msg, now_ms);
        Ok(msg.from)
    }
}

/// Sends this node's changes to every peer every `interval` until the
/// `peers` sender is dropped. Ticks fall on multiples of `interval` of
/// the wall clock (see [`now_ms`]), the same instants on every node. `peers` lists `(node id, address)` for the
/// Raft membership (this node may be in it; it is skipped). `send(addr,
/// bytes)` delivers one message (the receiver calls
/// [`RateLimiter::receive`]); a send taking longer than the staleness
/// period is abandoned and counted as an error. Also sweeps idle keys, one
/// shard per tick.
pub async fn run_gossip<F, Fut>(
    limiter: Arc<RateLimiter>,
    interval: Duration,
    mut peers: tokio::sync::watch::Receiver<Vec<(u64, String)>>,
    send: F,
) where
    F: Fn(String, Bytes) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let interval = interval.max(Duration::from_millis(1));
    let timeout = limiter.config().staleness.max(interval);
    let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    let mut tick: u64 = 0;
    {
        let list = peers.borrow_and_update().clone();
        limiter.set_peers(&list, now_ms());
    }
    loop {
        // Tick on the wall-clock grid (multiples of the interval since the
        // epoch): every node then publishes at the same instants, so all
        // nodes' shares are computed from the same published counts.
        let now = now_ms();
        let next = (now / interval_ms)
            .saturating_add(1)
            .saturating_mul(interval_ms);
        tokio::time::sleep(Duration::from_millis(next.saturating_sub(now))).await;
        match peers.has_changed() {
            Ok(true) => {
                let list = peers.borrow_and_update().clone();
                limiter.set_peers(&list, now_ms());
            }
            Ok(false) => {}
            Err(_) => return,
        }
        let now = now_ms();
        let msg = if tick.is_multiple_of(FULL_SYNC_EVERY) {
            limiter.take_all(now)
        } else {
            limiter.take_changes()
        };
        tick = tick.wrapping_add(1);
        let bytes = encode(&msg);
        let targets = limiter.peers.load_full();
        let sends = targets.iter().map(|p| {
            let fut = send(p.addr.clone(), bytes.clone());
            async move { (p, tokio::time::timeout(timeout, fut).await) }
        });
        for (p, result) in futures::future::join_all(sends).await {
            match result {
                Ok(Ok(())) => {
                    p.bytes_sent
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    p.messages_sent.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    p.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        limiter.sweep_some(1, now_ms());
    }
}
