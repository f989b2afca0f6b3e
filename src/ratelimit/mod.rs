//! Cluster-wide rate limiting: sliding windows, counters, gossip.
//!
//! (Docs filled in below.)

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
pub use window::Period;

#[cfg(test)]
mod tests;
