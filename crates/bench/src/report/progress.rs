//! The progress bars' rate, rounded to whole messages per second with thousands separators
//! (`245,206/s`), where indicatif's `{per_sec}` prints four decimals.

use indicatif::{HumanCount, ProgressState, ProgressStyle};

/// `style` with a `{rate}` key: the bar's rate as `245,206/s`.
pub fn with_rate(style: ProgressStyle) -> ProgressStyle {
    style.with_key(
        "rate",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = std::fmt::Write::write_fmt(
                w,
                format_args!("{}/s", HumanCount(state.per_sec().round() as u64)),
            );
        },
    )
}
