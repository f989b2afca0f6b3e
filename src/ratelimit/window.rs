//! Sliding windows made of buckets: the pure arithmetic, no clock reads.
//!
//! A period `P` (second … year) is cut into [`Period::buckets`] buckets of
//! equal length `b`. Bucket `i` covers `[i·b, (i+1)·b)` milliseconds since
//! the Unix epoch, so every node agrees on bucket boundaries without
//! talking (given clocks synchronised well within a bucket).
//!
//! The count of the sliding window `(now − P, now]` is estimated from the
//! buckets: the current bucket and the ones before it inside the period
//! count in full, and the bucket sliding out counts by the fraction of it
//! still inside the window, as if its requests were spread evenly from its
//! first request to its end. This is the "previous window" weighting
//! applied per bucket, so the weighting error is at most one bucket's worth
//! instead of a whole period.
//!
//! How many: ten buckets for a minute and longer, fifty (20 ms each) for a
//! second. Admissions near a limit come in small clumps, one each time
//! gossip brings news of room, every 50 ms; a bucket holding several
//! rounds' clumps is far from evenly spread, and when the clumps sit late
//! in it the estimate lets its requests leave the window early. With 100 ms
//! buckets that let a per-second limit run 6–11 % over in some one-second
//! spans at 10 × the limit (simulated with a few ms of scheduling noise,
//! `tests.rs`, and measured on a loopback cluster); with 20 ms buckets,
//! one round's clump at most, the worst span stays within 2.5 %. A minute's
//! 6 s bucket holds 120 rounds, whose clumps even out. Memory stays at most
//! `buckets + 1` small counters per key, period and node, and a second's
//! counters live for a second.

use serde::{Deserialize, Serialize};

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

    /// Buckets per period: 50 for a second, 10 for the others (see the
    /// module docs for the choice).
    pub const fn buckets(self) -> u64 {
        match self {
            Period::Second => 50,
            _ => 10,
        }
    }

    /// Length of one bucket in milliseconds.
    pub const fn bucket_millis(self) -> u64 {
        self.millis() / self.buckets()
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

/// The `(period, limit)` pairs of a normalized rate-limiting plugin config
/// (fields `second` … `year`; `null` or absent = no limit), shortest period
/// first. Kong's limits are numbers: a fractional limit is rounded down.
pub fn limits_from_config(config: &serde_json::Value) -> Vec<(Period, u64)> {
    Period::ALL
        .into_iter()
        .filter_map(|p| {
            let v = config.get(p.name())?;
            let limit = match v.as_u64() {
                Some(n) => n,
                None => {
                    let f = v.as_f64()?;
                    if !f.is_finite() || f < 0.0 {
                        return None;
                    }
                    f.floor() as u64
                }
            };
            Some((p, limit))
        })
        .collect()
}

/// One bucket of one node: `(bucket number, offset in ms of its first
/// request from the bucket's start, count)`.
pub type Cell = (u64, u32, u64);

/// How much a bucket counts towards the window ending at `now_ms`: 1 for
/// the current bucket and the others inside the period, 0 for anything older or in the
/// future, and for the bucket sliding out the fraction of its requests
/// still inside the window, taking them as spread evenly from its first
/// request (`first_ms` into the bucket) to its end. Starting from the first
/// request rather than the bucket's start matters when traffic begins mid
/// bucket: spreading such a bucket over its whole length would let its
/// requests "leave" the window before they were made.
pub fn weight(period: Period, bucket: u64, first_ms: u32, now_ms: u64) -> f64 {
    let b = period.bucket_millis();
    let current = now_ms / b;
    if bucket > current {
        // A peer's clock ahead of ours: not ours to count yet. Counting it
        // would be safer but would let one fast clock block everyone.
        return 0.0;
    }
    let age = current - bucket;
    let n = period.buckets();
    if age < n {
        return 1.0;
    }
    if age > n {
        return 0.0;
    }
    let start = bucket.saturating_mul(b);
    let end = start.saturating_add(b);
    let first = start.saturating_add(u64::from(first_ms).min(b - 1));
    let window_start = now_ms.saturating_sub(period.millis());
    if window_start <= first {
        1.0
    } else if window_start >= end {
        0.0
    } else {
        (end - window_start) as f64 / (end - first) as f64
    }
}

/// True when a bucket can no longer count towards any window from `now_ms`
/// on.
pub fn expired(period: Period, bucket: u64, now_ms: u64) -> bool {
    period.bucket_of(now_ms) > bucket.saturating_add(period.buckets())
}

/// Offset of `now_ms` from the start of its bucket, for [`Cell`]s.
pub fn offset_in_bucket(period: Period, now_ms: u64) -> u32 {
    // A bucket is at most 36.5 days, which fits in a u32 of millis.
    (now_ms % period.bucket_millis()).min(u64::from(u32::MAX)) as u32
}

/// Weighted sum of cells for the window ending at `now_ms`.
pub fn estimate<I>(period: Period, cells: I, now_ms: u64) -> f64
where
    I: IntoIterator<Item = Cell>,
{
    // Buckets wholly inside the window are summed as integers; only the
    // one sliding out needs the fraction.
    let current = period.bucket_of(now_ms);
    let inside = period.buckets();
    let mut whole: u64 = 0;
    let mut part = 0.0;
    for (bucket, first, count) in cells {
        match current.checked_sub(bucket) {
            Some(age) if age < inside => whole = whole.saturating_add(count),
            Some(age) if age == inside => {
                part += weight(period, bucket, first, now_ms) * count as f64;
            }
            _ => {}
        }
    }
    whole as f64 + part
}

/// Milliseconds from `now_ms` until the estimate of the given cells has
/// fallen to `target` or below, assuming no new requests; zero when it
/// already is; `None` if it does not within a period and a bucket (only
/// possible with cells from a clock far ahead).
pub fn millis_until_at_most(
    period: Period,
    cells: &[Cell],
    now_ms: u64,
    target: f64,
) -> Option<u64> {
    let at = |t: u64| estimate(period, cells.iter().copied(), t);
    if at(now_ms) <= target {
        return Some(0);
    }
    let b = period.bucket_millis();
    // Without new requests the estimate only falls. Find the first bucket
    // boundary where it is low enough, then bisect the step before it.
    let mut lo = now_ms;
    let mut boundary = (now_ms / b).saturating_add(1).saturating_mul(b);
    for _ in 0..=period.buckets() + 1 {
        if at(boundary) <= target {
            let mut hi = boundary;
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if at(mid) <= target {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return Some(hi - now_ms);
        }
        lo = boundary;
        boundary = boundary.saturating_add(b);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_sizes() {
        assert_eq!(Period::Second.bucket_millis(), 20);
        assert_eq!(Period::Minute.bucket_millis(), 6_000);
        assert_eq!(Period::Month.millis(), 2_592_000_000);
        assert_eq!(Period::Year.bucket_millis(), 3_153_600_000);
        for p in Period::ALL {
            assert_eq!(Period::from_code(p.code()), Some(p));
            assert_eq!(Period::from_name(p.name()), Some(p));
            assert_eq!(p.millis() % p.buckets(), 0);
        }
        assert_eq!(Period::from_code(6), None);
    }

    #[test]
    fn limits_from_a_plugin_config() {
        let c =
            serde_json::json!({"second": null, "minute": 6, "hour": 100.7, "day": -1, "year": "x"});
        assert_eq!(
            limits_from_config(&c),
            vec![(Period::Minute, 6), (Period::Hour, 100)]
        );
        assert!(limits_from_config(&serde_json::json!(null)).is_empty());
    }

    #[test]
    fn weights_slide_out_linearly() {
        let p = Period::Second;
        // 20 ms buckets. now = 2_010: current bucket 100, buckets 51..=100
        // count in full, bucket 50 ([1_000, 1_020)) slides out, half gone.
        assert_eq!(weight(p, 100, 0, 2_010), 1.0);
        assert_eq!(weight(p, 51, 0, 2_010), 1.0);
        assert!((weight(p, 50, 0, 2_010) - 0.5).abs() < 1e-9);
        assert_eq!(weight(p, 49, 0, 2_010), 0.0);
        assert_eq!(weight(p, 101, 0, 2_010), 0.0);
        // At a boundary the sliding-out bucket still counts in full …
        assert_eq!(weight(p, 50, 0, 2_000), 1.0);
        // … and just before the next one it has almost gone.
        assert!((weight(p, 50, 0, 2_019) - 0.05).abs() < 1e-9);
        assert_eq!(weight(p, 50, 0, 2_020), 0.0);
        // A bucket whose first request came 12 ms in: nothing leaves before
        // 2_012, then the 8 ms left are spread over.
        assert_eq!(weight(p, 50, 12, 2_010), 1.0);
        assert_eq!(weight(p, 50, 12, 2_012), 1.0);
        assert!((weight(p, 50, 12, 2_014) - 0.75).abs() < 1e-9);
        assert!((weight(p, 50, 12, 2_018) - 0.25).abs() < 1e-9);
        // Offsets past the bucket's end are clamped, not trusted.
        assert!(weight(p, 50, u32::MAX, 2_019) <= 1.0);
        assert_eq!(offset_in_bucket(p, 2_013), 13);
        // A minute's 6 s buckets: bucket 0 half gone at 63 s.
        assert!((weight(Period::Minute, 0, 0, 63_000) - 0.5).abs() < 1e-9);
        assert_eq!(weight(Period::Minute, 1, 0, 63_000), 1.0);
    }

    #[test]
    fn rollover_estimate_matches_even_traffic() {
        // One request every 10 ms for 3 s: the window always holds 100.
        let p = Period::Second;
        for now in [1_000u64, 1_234, 1_999, 2_500, 2_990] {
            let mut counts = std::collections::BTreeMap::new();
            for t in (0..=now).step_by(10) {
                *counts.entry(p.bucket_of(t)).or_insert(0u64) += 1;
            }
            let est = estimate(p, counts.iter().map(|(b, c)| (*b, 0, *c)), now);
            // Requests in (now - 1000, now]: 100, ±1 at the edges.
            assert!((est - 100.0).abs() <= 1.0, "now={now} est={est}");
        }
        // Bucket 5 is [100, 120): counted until 1_120.
        assert!(expired(p, 5, 1_120));
        assert!(!expired(p, 5, 1_119));
    }

    #[test]
    fn time_until_room() {
        let p = Period::Second;
        // 10 requests in bucket 0, now = 500: they count fully until 1_000,
        // then slide out over [1_000, 1_020).
        let c = [(0u64, 0u32, 10u64)];
        assert_eq!(millis_until_at_most(p, &c, 500, 10.0), Some(0));
        assert_eq!(millis_until_at_most(p, &c, 500, 9.0), Some(502));
        assert_eq!(millis_until_at_most(p, &c, 500, 0.0), Some(520));
        // First request 10 ms in: nothing leaves before 1_010.
        let c = [(0u64, 10u32, 10u64)];
        assert_eq!(millis_until_at_most(p, &c, 500, 9.0), Some(511));
        // Nothing stored: no wait.
        assert_eq!(millis_until_at_most(p, &[], 500, 0.0), Some(0));
        // Extreme clocks do not panic.
        let _ = millis_until_at_most(Period::Year, &[(u64::MAX / 4, 7, 5)], u64::MAX, 0.0);
        let _ = millis_until_at_most(Period::Year, &[(u64::MAX, 7, 5)], 0, 0.0);
        let _ = weight(Period::Year, u64::MAX, u32::MAX, u64::MAX);
    }
}
