//! A histogram of powers of two, recorded with relaxed atomics: cheap enough for a stage thread
//! to record into once per batch or per sync, read by anyone.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets of a [`Log2Histogram`]: bucket `i` counts values in `(2^(i-1), 2^i]` (bucket 0: the
/// values 0 and 1), so 64 buckets cover every `u64` up to `2^63` and the last one the rest.
pub(crate) const BUCKETS: usize = 64;

/// The bucket `value` falls in: the least `i` with `value <= 2^i`.
#[inline]
fn bucket_of(value: u64) -> usize {
    if value <= 1 {
        return 0;
    }
    ((u64::BITS - (value - 1).leading_zeros()) as usize).min(BUCKETS - 1)
}

/// The recording side: written by one or a few threads (`fetch_add`, relaxed), read at scrape
/// time. No allocation, no lock.
#[derive(Debug)]
pub(crate) struct Log2Counts {
    buckets: [AtomicU64; BUCKETS],
    sum: AtomicU64,
}

impl Default for Log2Counts {
    fn default() -> Self {
        Log2Counts {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl Log2Counts {
    /// Counts one value.
    #[inline]
    pub(crate) fn record(&self, value: u64) {
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Counts one value, from the only thread that records into this histogram: a load and a
    /// store per cell, no read-modify-write instruction.
    #[inline]
    pub(crate) fn record_owned(&self, value: u64) {
        let add = |cell: &AtomicU64, n: u64| {
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        };
        add(&self.buckets[bucket_of(value)], 1);
        add(&self.sum, value);
    }

    /// The counts now (each bucket read once; a value recorded meanwhile may be missing from
    /// `sum` or from its bucket, never counted twice).
    pub(crate) fn read(&self) -> Log2Histogram {
        Log2Histogram {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// Counts of values by power of two, read from a running engine (see [`super::Metrics`]).
/// Bucket `i` counts the values `v` with `2^(i-1) < v <= 2^i` (bucket 0: 0 and 1); the last
/// bucket also counts everything larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log2Histogram {
    /// Count per bucket.
    pub buckets: [u64; BUCKETS],
    /// Sum of every value counted.
    pub sum: u64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram {
            buckets: [0; BUCKETS],
            sum: 0,
        }
    }
}

impl Log2Histogram {
    /// The largest value bucket `index` counts: `2^index` (saturating).
    pub fn upper_bound(index: usize) -> u64 {
        1u64.checked_shl(index as u32).unwrap_or(u64::MAX)
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound of the bucket holding the `q`-quantile (`0.0..=1.0`), 0 when empty:
    /// an over-estimate by less than a factor of two.
    pub fn quantile(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper_bound(index);
            }
        }
        u64::MAX
    }

    /// What was counted since `earlier` (a reading of the same histogram).
    pub fn since(&self, earlier: &Log2Histogram) -> Log2Histogram {
        Log2Histogram {
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum: self.sum.saturating_sub(earlier.sum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bucket_of_their_power_of_two() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 2);
        assert_eq!(bucket_of(5), 3);
        assert_eq!(bucket_of(1 << 20), 20);
        assert_eq!(bucket_of((1 << 20) + 1), 21);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for v in [0, 1, 2, 3, 7, 8, 9, 1000, 1 << 40] {
            assert!(v <= Log2Histogram::upper_bound(bucket_of(v)));
        }
    }

    #[test]
    fn quantiles_are_bucket_upper_bounds() {
        let counts = Log2Counts::default();
        for v in 1..=100 {
            counts.record(v);
        }
        let h = counts.read();
        assert_eq!(h.count(), 100);
        assert_eq!(h.sum, 5050);
        assert_eq!(h.quantile(0.5), 64);
        assert_eq!(h.quantile(0.99), 128);
        assert_eq!(h.quantile(0.0), 1);
        assert_eq!(Log2Histogram::default().quantile(0.99), 0);
        let later = {
            counts.record(1000);
            counts.read()
        };
        let delta = later.since(&h);
        assert_eq!((delta.count(), delta.sum), (1, 1000));
    }
}
