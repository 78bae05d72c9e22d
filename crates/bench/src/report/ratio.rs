//! Ratios between contenders, always stated as keel's figure ÷ the other's, with the
//! direction that favours keel in the column header.

/// Which way a keel ÷ peer ratio favours keel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput: keel ÷ peer above 1 means keel moved more.
    Higher,
    /// Latency: keel ÷ peer below 1 means keel answered sooner.
    Lower,
}

impl Better {
    fn words(self) -> &'static str {
        match self {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        }
    }
}

/// `base ÷ this`: how `base` (normally keel) compares with `this`; infinite when `this` is 0.
pub fn over(base: f64, this: f64) -> f64 {
    if this == 0.0 {
        f64::INFINITY
    } else {
        base / this
    }
}

/// A column header such as `keel÷this p50 (lower is better)`.
pub fn header(base: &str, what: &str, better: Better) -> String {
    format!("{base}÷this {what} ({})", better.words())
}

/// A ratio cell: `1.23x`, or `-` when it could not be computed.
pub fn cell(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keel_over_peer_and_its_header() {
        assert_eq!(over(200.0, 100.0), 2.0);
        assert_eq!(cell(over(1.0, 0.0)), "-");
        assert_eq!(cell(0.5), "0.50x");
        assert_eq!(
            header("keel", "msgs/s", Better::Higher),
            "keel÷this msgs/s (higher is better)"
        );
    }
}
