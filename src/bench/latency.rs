//! A latency recorder that can be merged, written as `.hgrm` and plotted: a fixed-range
//! HdrHistogram (created with `new_with_bounds`, so recording never allocates) with the same
//! bounds as [`super::hist::LatencyHistogram`].

use super::hist::{Percentiles, HIGHEST_NS, LOWEST_NS, SIGNIFICANT_DIGITS};
use hdrhistogram::Histogram;

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
