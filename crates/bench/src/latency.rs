//! Latency recording for every benchmark: a fixed-range HdrHistogram (created with
//! `new_with_bounds`, so recording never allocates) that can be merged, written as `.hgrm` and
//! plotted, and the percentile summary every latency report prints.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Smallest recordable latency, in nanoseconds.
pub const LOWEST_NS: u64 = 1;
/// Largest recordable latency: 10 s. Longer values are clamped to it, never dropped.
pub const HIGHEST_NS: u64 = 10_000_000_000;
/// Significant decimal digits kept (0.1% relative error).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies in nanoseconds, 1 ns ..= 10 s, 3 significant digits; larger values are clamped.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    hist: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder; every bucket is allocated here.
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
            .expect("constant bounds are valid");
        LatencyRecorder { hist }
    }

    /// Records one latency (clamped into range; never allocates).
    #[inline]
    pub fn record(&mut self, nanos: u64) {
        self.hist.saturating_record(nanos.max(LOWEST_NS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        self.hist.add(&other.hist).expect("same bounds");
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The underlying histogram.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// The percentiles, or `None` when nothing was recorded (a figure never measured is not
    /// reported as 0).
    pub fn measured(&self) -> Option<Percentiles> {
        (self.count() > 0).then(|| self.summary())
    }

    /// p50 .. max, mean and count (all zero when empty).
    pub fn summary(&self) -> Percentiles {
        let h = &self.hist;
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

/// Table headers of [`percentile_cells`], in its order.
pub const PERCENTILE_HEADERS: [&str; 6] = [
    "p50 us",
    "p90 us",
    "p99 us",
    "p99.9 us",
    "p99.99 us",
    "max us",
];

/// The p50 … max columns of a table row, in microseconds (see [`PERCENTILE_HEADERS`]).
pub fn percentile_cells(l: &Percentiles) -> [String; 6] {
    [
        l.p50_ns, l.p90_ns, l.p99_ns, l.p999_ns, l.p9999_ns, l.max_ns,
    ]
    .map(micros)
}

/// [`percentile_cells`], or `-` in every column when nothing was measured.
pub fn percentile_cells_or_dash(l: Option<&Percentiles>) -> [String; 6] {
    l.map_or_else(
        || std::array::from_fn(|_| "-".to_string()),
        percentile_cells,
    )
}

/// `ns` as microseconds with 1–3 decimals, for tables.
pub fn micros(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us >= 1000.0 {
        format!("{us:.0}")
    } else if us >= 10.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = LatencyRecorder::new();
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
        let mut h = LatencyRecorder::new();
        h.record(u64::MAX);
        assert_eq!(h.count(), 1);
        assert!(h.summary().max_ns >= HIGHEST_NS);
    }
}
