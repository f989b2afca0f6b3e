//! Sliding windows made of buckets: the pure arithmetic, no clock reads.
//!
//! A period `P` (second … year) is cut into [`BUCKETS_PER_PERIOD`] buckets
//! of `P / 10` each. Bucket `i` covers `[i·b, (i+1)·b)` milliseconds since
//! the Unix epoch, so every node agrees on bucket boundaries without
//! talking (given clocks synchronised well within a bucket).
//!
//! The count of the sliding window `(now − P, now]` is estimated from the
//! buckets: the current bucket and the nine before it count in full, and the
//! bucket before those (the one sliding out) counts by the fraction of it
//! still inside the window, as if its requests were spread evenly over it.
//! This is the "previous window" weighting applied per bucket, so the
//! weighting error is at most one bucket's worth (a tenth of the period)
//! instead of a whole period.
//!
//! Why ten: ten buckets keep the weighting error to a tenth of the period's
//! traffic in the worst (bursty) case, and nothing for even traffic; they
//! keep memory to at most eleven small counters per key, period and node;
//! and a second's buckets (100 ms) stay wider than the gossip interval
//! (50 ms) and than ordinary clock skew, so a request is rarely counted in
//! a different bucket by different nodes.

use serde::{Deserialize, Serialize};

/// Buckets per period. See the module docs for the choice.
pub const BUCKETS_PER_PERIOD: u64 = 10;

/// Kong's periods. A month is 30 days and a year 365 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Period {
    /// All periods, shortest first.
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Month,
        Period::Year,
    ];

    /// Length of the period in milliseconds.
    pub const fn millis(self) -> u64 {
        match self {
            Period::Second => 1_000,
            Period::Minute => 60_000,
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
            Period::Month => 30 * 86_400_000,
            Period::Year => 365 * 86_400_000,
        }
    }

    /// Length of one bucket in milliseconds.
    pub const fn bucket_millis(self) -> u64 {
        self.millis() / BUCKETS_PER_PERIOD
    }

    /// The bucket holding `now_ms`.
    pub const fn bucket_of(self, now_ms: u64) -> u64 {
        now_ms / self.bucket_millis()
    }

    /// Kong's config field name: `second`, `minute`, …
    pub const fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// The suffix of Kong's `X-RateLimit-Limit-<Period>` headers.
    pub const fn header_suffix(self) -> &'static str {
        match self {
            Period::Second => "Second",
            Period::Minute => "Minute",
            Period::Hour => "Hour",
            Period::Day => "Day",
            Period::Month => "Month",
            Period::Year => "Year",
        }
    }

    /// Parses a Kong config field name.
    pub fn from_name(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.name() == name)
    }

    /// A one-byte code for the wire.
    pub const fn code(self) -> u8 {
        match self {
            Period::Second => 0,
            Period::Minute => 1,
            Period::Hour => 2,
            Period::Day => 3,
            Period::Month => 4,
            Period::Year => 5,
        }
    }

    /// The inverse of [`Period::code`].
    pub fn from_code(code: u8) -> Option<Period> {
        Period::ALL.get(usize::from(code)).copied()
    }
}

/// How much a bucket counts towards the window ending at `now_ms`: 1 for
/// the current bucket and the nine before, the fraction still inside the
/// window for the one sliding out, 0 for anything older or in the future.
pub fn weight(period: Period, bucket: u64, now_ms: u64) -> f64 {
    let b = period.bucket_millis();
    let current = now_ms / b;
    if bucket > current {
        // A peer's clock ahead of ours: not ours to count yet. Counting it
        // would be safer but would let one fast clock block everyone.
        return 0.0;
    }
    let age = current - bucket;
    if age < BUCKETS_PER_PERIOD {
        1.0
    } else if age == BUCKETS_PER_PERIOD {
        let into = now_ms % b;
        (b - into) as f64 / b as f64
    } else {
        0.0
    }
}

/// True when a bucket can no longer count towards any window from `now_ms`
/// on.
pub fn expired(period: Period, bucket: u64, now_ms: u64) -> bool {
    period.bucket_of(now_ms) > bucket.saturating_add(BUCKETS_PER_PERIOD)
}

/// The oldest bucket that still counts at `now_ms`.
pub fn oldest_live(period: Period, now_ms: u64) -> u64 {
    period.bucket_of(now_ms).saturating_sub(BUCKETS_PER_PERIOD)
}

/// Weighted sum of `(bucket, count)` pairs for the window ending at `now_ms`.
pub fn estimate<I>(period: Period, buckets: I, now_ms: u64) -> f64
where
    I: IntoIterator<Item = (u64, u64)>,
{
    buckets
        .into_iter()
        .map(|(bucket, count)| weight(period, bucket, now_ms) * count as f64)
        .sum()
}

/// Milliseconds from `now_ms` until the estimate of the given buckets has
/// fallen to `target` or below, assuming no new requests; `None` when it
/// never does within the period (cannot happen for `target >= 0`, kept for
/// safety). Zero when it already is.
pub fn millis_until_at_most(
    period: Period,
    buckets: &[(u64, u64)],
    now_ms: u64,
    target: f64,
) -> Option<u64> {
    let at = |t: u64| estimate(period, buckets.iter().copied(), t);
    let mut prev_t = now_ms;
    let mut prev = at(now_ms);
    if prev <= target {
        return Some(0);
    }
    let b = period.bucket_millis();
    let mut boundary = (now_ms / b).saturating_add(1).saturating_mul(b);
    // Between bucket boundaries the estimate falls linearly (only the
    // bucket sliding out changes), so stepping boundary by boundary and
    // interpolating inside the step that crosses `target` is exact.
    for _ in 0..=BUCKETS_PER_PERIOD + 1 {
        // Just before the boundary: the sliding-out bucket is nearly gone.
        let just_before = boundary.saturating_sub(1).max(prev_t);
        let value = at(just_before);
        if value <= target {
            let span = (just_before - prev_t) as f64;
            let drop = prev - value;
            let need = prev - target;
            let frac = if drop > 0.0 {
                (need / drop).min(1.0)
            } else {
                1.0
            };
            return Some((prev_t - now_ms) + (span * frac).ceil() as u64);
        }
        let value_at = at(boundary);
        if value_at <= target {
            return Some(boundary - now_ms);
        }
        prev_t = boundary;
        prev = value_at;
        boundary = boundary.saturating_add(b);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_sizes() {
        assert_eq!(Period::Second.bucket_millis(), 100);
        assert_eq!(Period::Minute.bucket_millis(), 6_000);
        assert_eq!(Period::Month.millis(), 2_592_000_000);
        assert_eq!(Period::Year.bucket_millis(), 3_153_600_000);
        for p in Period::ALL {
            assert_eq!(Period::from_code(p.code()), Some(p));
            assert_eq!(Period::from_name(p.name()), Some(p));
            assert_eq!(p.millis() % BUCKETS_PER_PERIOD, 0);
        }
        assert_eq!(Period::from_code(6), None);
    }

    #[test]
    fn weights_slide_out_linearly() {
        let p = Period::Second;
        // now = 2_050: current bucket 20, bucket 10 slides out, half gone.
        assert_eq!(weight(p, 20, 2_050), 1.0);
        assert_eq!(weight(p, 11, 2_050), 1.0);
        assert!((weight(p, 10, 2_050) - 0.5).abs() < 1e-9);
        assert_eq!(weight(p, 9, 2_050), 0.0);
        assert_eq!(weight(p, 21, 2_050), 0.0);
        // At a boundary the sliding-out bucket still counts in full …
        assert_eq!(weight(p, 10, 2_000), 1.0);
        // … and just before the next one it has almost gone.
        assert!((weight(p, 10, 2_099) - 0.01).abs() < 1e-9);
        assert_eq!(weight(p, 10, 2_100), 0.0);
    }

    #[test]
    fn rollover_estimate_matches_even_traffic() {
        // One request every 10 ms for 3 s: the window always holds 100.
        let p = Period::Second;
        let mut counts = std::collections::BTreeMap::new();
        for t in (0..3_000u64).step_by(10) {
            *counts.entry(p.bucket_of(t)).or_insert(0u64) += 1;
        }
        for now in [1_000u64, 1_234, 1_999, 2_500, 2_990] {
            let live: Vec<(u64, u64)> = counts
                .iter()
                .filter(|(b, _)| **b <= p.bucket_of(now))
                .map(|(b, c)| (*b, *c))
                .collect();
            let est = estimate(p, live.iter().copied(), now);
            // Requests at or before `now` in (now-1000, now]: 100 (±1 at edges).
            assert!((est - 100.0).abs() <= 1.0, "now={now} est={est}");
        }
        assert!(expired(p, 5, 1_600));
        assert!(!expired(p, 5, 1_599));
        assert_eq!(oldest_live(p, 1_599), 5);
    }

    #[test]
    fn time_until_room() {
        let p = Period::Second;
        // 10 requests in bucket 0, now = 500: they count fully until 1_000,
        // then slide out over [1_000, 1_100).
        let b = [(0u64, 10u64)];
        assert_eq!(millis_until_at_most(p, &b, 500, 10.0), Some(0));
        let ms = millis_until_at_most(p, &b, 500, 9.0).unwrap_or(0);
        assert!((500..=511).contains(&ms), "{ms}");
        let ms = millis_until_at_most(p, &b, 500, 0.0).unwrap_or(0);
        assert!((599..=600).contains(&ms), "{ms}");
        // Nothing stored: no wait.
        assert_eq!(millis_until_at_most(p, &[], 500, 0.0), Some(0));
        // Extreme clocks do not panic.
        let _ = millis_until_at_most(Period::Year, &[(u64::MAX / 4, 5)], u64::MAX, 0.0);
        let _ = weight(Period::Year, u64::MAX, u64::MAX);
    }
}
