//! The HdrHistogram percentile-distribution text format (`.hgrm`), as printed by Java's
//! `Histogram.outputPercentileDistribution` and read by the HdrHistogram plotter
//! (<https://hdrhistogram.github.io/HdrHistogram/plotFiles.html>). Written and parsed here.
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.500 0.000000000000          1           1.00
//!        ...
//!     1024.000 1.000000000000      10000
//! #[Mean    =        1.234, StdDeviation   =        0.456]
//! #[Max     =     1024.000, Total count    =        10000]
//! #[Buckets =           24, SubBuckets     =         2048]
//! ```

use hdrhistogram::Histogram;
use std::fmt::Write as _;

/// Percentile steps per halving of the remaining distance to 100% (the plotter's default).
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// One line of the distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmPoint {
    /// Value, in the file's unit (microseconds for keel's files).
    pub value: f64,
    /// Quantile in 0..=1.
    pub percentile: f64,
    /// Values at or below `value`.
    pub total_count: u64,
}

/// A parsed `.hgrm` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hgrm {
    /// Every line, in increasing percentile.
    pub points: Vec<HgrmPoint>,
    /// Mean from the footer.
    pub mean: f64,
    /// Max from the footer.
    pub max: f64,
    /// Total count from the footer.
    pub total_count: u64,
}

/// Writes `hist` (values in nanoseconds) as `.hgrm` text with values divided by
/// `unit_ns` (1000: microseconds).
pub fn write(hist: &Histogram<u64>, unit_ns: f64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / unit_ns;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    write_footer(&mut out, hist, unit_ns);
    out
}

fn write_footer(out: &mut String, hist: &Histogram<u64>, unit_ns: f64) {
    let sub_buckets = (2 * 10u64.pow(u32::from(hist.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        hist.mean() / unit_ns,
        hist.stdev() / unit_ns
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        hist.max() as f64 / unit_ns,
        hist.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        sub_buckets
    );
}

/// Parses `.hgrm` text (as written by [`write()`] or by Java's HdrHistogram).
pub fn parse(text: &str) -> Result<Hgrm, String> {
    let mut hgrm = Hgrm::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(footer) = line.strip_prefix("#[") {
            parse_footer(footer, &mut hgrm).map_err(|e| format!("line {}: {e}", n + 1))?;
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 3 || words[0] == "Value" {
            continue;
        }
        let num = |w: &str| w.parse::<f64>().map_err(|e| format!("line {}: {e}", n + 1));
        hgrm.points.push(HgrmPoint {
            value: num(words[0])?,
            percentile: num(words[1])?,
            total_count: words[2]
                .parse()
                .map_err(|e| format!("line {}: {e}", n + 1))?,
        });
    }
    if hgrm.points.is_empty() {
        return Err("no percentile lines".into());
    }
    Ok(hgrm)
}

fn parse_footer(footer: &str, hgrm: &mut Hgrm) -> Result<(), String> {
    for pair in footer.trim_end_matches(']').split(',') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", key.trim());
        match key.trim() {
            "Mean" => hgrm.mean = value.parse().map_err(|e| bad(&e))?,
            "Max" => hgrm.max = value.parse().map_err(|e| bad(&e))?,
            "Total count" => hgrm.total_count = value.parse().map_err(|e| bad(&e))?,
            _ => {}
        }
    }
    Ok(())
}
