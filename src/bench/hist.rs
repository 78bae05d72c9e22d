//! Latency recording: a fixed-range HdrHistogram (no allocation while recording) and the
//! percentile summary every latency report prints.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Smallest recordable latency, in nanoseconds.
pub const LOWEST_NS: u64 = 1;
/// Largest recordable latency: 10 s. Longer values are clamped to it, never dropped.
pub const HIGHEST_NS: u64 = 10_000_000_000;
/// Significant decimal digits kept (0.1% relative error).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in nanoseconds. All buckets are allocated by [`LatencyHistogram::new`];
/// [`LatencyHistogram::record`] never allocates.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram covering 1 ns ..= 10 s with 3 significant digits.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
            .expect("constant bounds are valid");
        LatencyHistogram(histogram)
    }

    /// Records one latency; values above 10 s are clamped to 10 s.
    #[inline]
    pub fn record(&mut self, nanos: u64) {
        self.0.saturating_record(nanos);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The percentile summary (all zero when empty).
    pub fn summary(&self) -> Percentiles {
        let h = &self.0;
        Percentiles {
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            p9999_ns: h.value_at_quantile(0.9999),
            max_ns: h.max(),
            mean_ns: h.mean(),
            count: h.len(),
        }
    }
}

/// Latency percentiles in nanoseconds (HdrHistogram values: within 0.1% of the true value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// 99.99th percentile.
    pub p9999_ns: u64,
    /// Largest value recorded.
    pub max_ns: u64,
    /// Arithmetic mean.
    pub mean_ns: f64,
    /// Number of values recorded.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = LatencyHistogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_ns, 500);
        assert_eq!(s.p99_ns, 990);
        assert_eq!(s.max_ns, 1000);
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = LatencyHistogram::new();
        h.record(u64::MAX);
        assert_eq!(h.count(), 1);
        assert!(h.summary().max_ns >= HIGHEST_NS);
    }
}
