//! Record timestamps (nanoseconds since the Unix epoch, UTC) to and from RFC 3339 text.
//!
//! Civil-date conversions after Howard Hinnant's `days_from_civil` / `civil_from_days`
//! (proleptic Gregorian calendar, no leap seconds, as Unix time itself).

const NS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_DAY: u64 = 86_400;

/// `2025-01-31T12:00:00.500000000Z` for a timestamp in nanoseconds.
pub(crate) fn format_ns(ns: u64) -> String {
    let seconds = ns / NS_PER_SECOND;
    let fraction = ns % NS_PER_SECOND;
    let days = (seconds / SECONDS_PER_DAY) as i64;
    let of_day = seconds % SECONDS_PER_DAY;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{fraction:09}Z")
}

/// Parses nanoseconds (`1735689600000000000`) or RFC 3339 (`2025-01-01T00:00:00Z`,
/// `2025-01-01 00:00:00.25+01:00`; a missing offset means UTC).
pub(crate) fn parse_time(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("{text:?}: {e}"));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!("{text:?} is neither nanoseconds nor RFC 3339 (e.g. 2025-01-31T12:00:00.5Z)")
    })
}

fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = text.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let date_ok = b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[13] == b':' && b[16] == b':';
    if !date_ok || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hh, mm, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let (fraction_ns, rest) = parse_fraction(&text[19..])?;
    let offset_s = parse_offset(rest)?;
    let day_s = days_from_civil(y, mo, d) * SECONDS_PER_DAY as i64;
    let seconds = day_s + hh * 3600 + mm * 60 + ss - offset_s;
    let seconds = u64::try_from(seconds).ok()?;
    seconds.checked_mul(NS_PER_SECOND)?.checked_add(fraction_ns)
}

/// `.123` → (123_000_000 ns, rest of the text).
fn parse_fraction(text: &str) -> Option<(u64, &str)> {
    let Some(digits) = text.strip_prefix('.') else {
        return Some((0, text));
    };
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 || len > 9 {
        return None;
    }
    let value: u64 = digits[..len].parse().ok()?;
    Some((value * 10u64.pow(9 - len as u32), &digits[len..]))
}

/// `Z`, `+01:00`, `-05:30` or nothing (UTC) → seconds east of UTC.
fn parse_offset(text: &str) -> Option<i64> {
    match text {
        "" | "Z" | "z" => Some(0),
        _ => {
            let b = text.as_bytes();
            if b.len() != 6 || b[3] != b':' {
                return None;
            }
            let sign = match b[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hh: i64 = text[1..3].parse().ok()?;
            let mm: i64 = text[4..6].parse().ok()?;
            Some(sign * (hh * 3600 + mm * 60))
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format_ns(0), "1970-01-01T00:00:00.000000000Z");
        let ns = 1_735_689_600 * NS_PER_SECOND + 5;
        assert_eq!(format_ns(ns), "2025-01-01T00:00:00.000000005Z");
        assert_eq!(parse_time("2025-01-01T00:00:00.000000005Z"), Ok(ns));
        assert_eq!(parse_time("2025-01-01 01:00:00+01:00"), Ok(ns - 5));
        assert_eq!(
            parse_time("2024-02-29T12:30:00.5"),
            Ok(1_709_209_800_500_000_000)
        );
        assert_eq!(parse_time("1735689600000000005"), Ok(ns));
        assert!(parse_time("2025-13-01T00:00:00Z").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn round_trip_over_centuries() {
        for days in (-1000..200_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        for ns in [1u64, 951_782_400_123_456_789, 4_102_444_800_000_000_000] {
            assert_eq!(parse_time(&format_ns(ns)), Ok(ns));
        }
    }
}
