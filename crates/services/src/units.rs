//! Sizes and durations on the command line, with units: `64MiB`, `4M`, `16KiB`, `500ms`,
//! `10s`, `2m`. The parsers are clap value parsers shared by `keel`, its benchmarks and the
//! replay tool; the formatters write help defaults in the form the parsers read back.
//!
//! - Sizes: a number with an optional unit, no space needed. K, M, G, T (and KB/KiB, MB/MiB, …)
//!   are powers of 1024, as in `head -c 4M`; `B` or no unit is bytes. Parsed by `parse-size`.
//! - Durations: a number with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, combinations such as
//!   `1m30s`), parsed by `humantime`; a bare number is seconds (so `--duration 5` keeps working).

use keel::journal::FlushPolicy;
use std::time::Duration;

/// Parses a size such as `64MiB`, `4M`, `16 KiB`, `4096`: bytes.
pub fn bytes(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("{s:?} is not a size ({e}); write e.g. 4096, 64KiB, 16MiB or 1G"))
}

/// [`bytes`] as a `usize`.
pub fn bytes_usize(s: &str) -> Result<usize, String> {
    let n = bytes(s)?;
    usize::try_from(n).map_err(|_| format!("{s} is too large for this machine"))
}

/// Parses a duration such as `500ms`, `10s`, `1m30s`; a bare number (`2.5`) is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(seconds) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{s:?} is not a duration (negative or too large)"));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("{s:?} is not a duration ({e}); write e.g. 500ms, 10s, 1m30s, or seconds: 2.5")
    })
}

/// [`duration`] in seconds, as an `f64` (for flags whose value is seconds).
pub fn seconds_f64(s: &str) -> Result<f64, String> {
    duration(s).map(|d| d.as_secs_f64())
}

/// [`duration`] in whole seconds; a fraction of a second is an error.
pub fn whole_seconds(s: &str) -> Result<u64, String> {
    let d = duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{s:?}: give whole seconds (e.g. 30s, 2m)"));
    }
    Ok(d.as_secs())
}

/// [`duration`] in microseconds, as an `f64`; a bare number is microseconds here (flags that
/// used to take µs).
pub fn micros_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(us) if us >= 0.0 => Ok(us),
        Ok(_) => Err(format!("{s:?} is negative")),
        Err(_) => duration(s).map(|d| d.as_secs_f64() * 1e6),
    }
}

/// Parses a journal flush policy: `none`, `batch`, or `interval:DURATION` (`interval:5ms`,
/// `interval:1s`; a bare number is milliseconds, as before).
pub fn flush_policy(s: &str) -> Result<FlushPolicy, String> {
    let bad = || format!("{s:?} is not a flush policy; write none, batch or interval:5ms");
    let Some(interval) = s.strip_prefix("interval:") else {
        return s.parse().map_err(|_| bad());
    };
    let ms = match interval.parse::<u32>() {
        Ok(ms) => ms,
        Err(_) => {
            let d = humantime::parse_duration(interval).map_err(|_| bad())?;
            u32::try_from(d.as_millis()).map_err(|_| bad())?
        }
    };
    format!("interval:{ms}").parse().map_err(|_| bad())
}

/// Writes a byte count the way [`bytes`] reads it: `256MiB`, `4KiB`, or plain bytes.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if n >= 1 << shift && n.trailing_zeros() >= shift {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Writes a duration the way [`duration`] reads it: `500ms`, `5s`, `1m 30s`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units_and_powers_of_1024() {
        assert_eq!(bytes("4096"), Ok(4096));
        assert_eq!(bytes("64MiB"), Ok(64 << 20));
        assert_eq!(bytes("4M"), Ok(4 << 20));
        assert_eq!(bytes("4MB"), Ok(4 << 20));
        assert_eq!(bytes("16 KiB"), Ok(16 << 10));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        assert_eq!(bytes("512B"), Ok(512));
        assert!(bytes("lots").unwrap_err().contains("64KiB"));
    }

    #[test]
    fn size_defaults_read_back() {
        for n in [
            0,
            1,
            1000,
            1024,
            4096,
            256 << 10,
            16 << 20,
            256 << 20,
            3 << 30,
            1 << 40,
        ] {
            assert_eq!(bytes(&format_bytes(n)), Ok(n), "{}", format_bytes(n));
        }
        assert_eq!(format_bytes(256 << 20), "256MiB");
        assert_eq!(format_bytes(1536), "1536");
    }

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(duration("-1").is_err());
        assert!(duration("soon").unwrap_err().contains("500ms"));
        assert_eq!(whole_seconds("2m"), Ok(120));
        assert!(whole_seconds("1500ms").is_err());
        assert_eq!(micros_f64("1ms"), Ok(1000.0));
        assert_eq!(micros_f64("250"), Ok(250.0));
        for d in [
            Duration::from_millis(500),
            Duration::from_secs(5),
            Duration::from_secs(60),
        ] {
            assert_eq!(duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn flush_intervals_take_units() {
        assert_eq!(flush_policy("batch"), Ok(FlushPolicy::Batch));
        assert_eq!(flush_policy("interval:5"), Ok(FlushPolicy::IntervalMs(5)));
        assert_eq!(flush_policy("interval:5ms"), Ok(FlushPolicy::IntervalMs(5)));
        assert_eq!(
            flush_policy("interval:1s"),
            Ok(FlushPolicy::IntervalMs(1000))
        );
        assert!(flush_policy("sometimes").is_err());
    }
}
