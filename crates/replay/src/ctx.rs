//! What every command needs: where the files are, how to print, progress bars, warnings.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::args::ReplayArgs;
use super::error::ReplayError;
use keel::engine::{Config, ExactlyOnce};

/// The settings and output of one `keel replay` command.
pub(crate) struct Ctx<'o> {
    /// Journal directory.
    pub(crate) journal: PathBuf,
    /// Snapshot directory (may not exist).
    pub(crate) snapshots: PathBuf,
    /// JSON output instead of text.
    pub(crate) json: bool,
    /// Progress bars allowed (not `--json`, not `--no-progress`, standard error a terminal).
    pub(crate) progress: bool,
    /// Response buffer size for each replayed message.
    pub(crate) max_response_bytes: usize,
    /// The exactly-once limits (`--dedup-*`; only the `dedup_*` fields are set).
    pub(crate) dedup: Config,
    /// Where results go (standard output in the `keel` command).
    pub(crate) out: &'o mut dyn Write,
    /// Warnings printed so far (also on standard error).
    pub(crate) warnings: Vec<String>,
}

impl<'o> Ctx<'o> {
    pub(crate) fn new(args: &ReplayArgs, out: &'o mut dyn Write) -> Self {
        Ctx {
            journal: args.data.journal_dir(),
            snapshots: args.data.snapshot_dir(),
            json: args.json,
            progress: !args.json && !args.no_progress && std::io::stderr().is_terminal(),
            max_response_bytes: args.max_response_bytes,
            dedup: dedup_limits(args),
            out,
            warnings: Vec::new(),
        }
    }

    /// An empty exactly-once table with the limits of `--dedup-*`, checked as the engine
    /// checks them.
    pub(crate) fn exactly_once(&self) -> Result<ExactlyOnce, ReplayError> {
        ExactlyOnce::new(&self.dedup)
            .map_err(|e| ReplayError::Usage(format!("exactly-once limits (--dedup-*): {e}")))
    }

    /// Prints a warning on standard error and remembers it (for JSON documents).
    pub(crate) fn warn(&mut self, text: String) {
        eprintln!("keel replay: warning: {text}");
        self.warnings.push(text);
    }

    /// Writes one JSON document, pretty-printed.
    pub(crate) fn document(&mut self, value: &Value) -> Result<(), ReplayError> {
        serde_json::to_writer_pretty(&mut *self.out, value).map_err(std::io::Error::from)?;
        writeln!(self.out)?;
        Ok(())
    }

    /// Writes one JSON line.
    pub(crate) fn json_line(&mut self, value: &Value) -> Result<(), ReplayError> {
        serde_json::to_writer(&mut *self.out, value).map_err(std::io::Error::from)?;
        writeln!(self.out)?;
        Ok(())
    }

    /// A progress bar over sequences `start..=end` (a spinner when `end` is unknown); hidden
    /// unless progress bars are allowed.
    pub(crate) fn progress_bar(&self, label: &str, start: u64, end: Option<u64>) -> Progress {
        if !self.progress {
            return Progress { bar: None, start };
        }
        let bar = match end {
            Some(end) => {
                let bar = ProgressBar::with_draw_target(
                    Some(end.saturating_sub(start)),
                    ProgressDrawTarget::stderr(),
                );
                let style = ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} messages, {rate}, eta {eta}",
                );
                bar.set_style(style.map_or_else(|_| ProgressStyle::default_bar(), with_rate));
                bar
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template("{spinner} {msg} {pos} messages, {rate}");
                bar.set_style(style.map_or_else(|_| ProgressStyle::default_spinner(), with_rate));
                bar
            }
        };
        bar.set_message(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            start,
        }
    }
}

/// The engine's configuration with the exactly-once limits of `args`.
fn dedup_limits(args: &ReplayArgs) -> Config {
    let mut config = Config::default();
    config.dedup_clients = args.dedup_clients;
    config.dedup_window = args.dedup_window;
    config.dedup_reply_bytes = usize::try_from(args.dedup_reply_bytes).unwrap_or(usize::MAX);
    config
}

/// `style` with a `{rate}` key: messages per second rounded, `245,206/s` (indicatif's
/// `{per_sec}` prints four decimals).
fn with_rate(style: ProgressStyle) -> ProgressStyle {
    style.with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let rate = indicatif::HumanCount(state.per_sec().round() as u64);
            let _ = write!(w, "{rate}/s");
        },
    )
}

/// A progress bar (or nothing). Update it every few thousand messages, not every one.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    start: u64,
}

impl Progress {
    /// No bar.
    pub(crate) fn none() -> Self {
        Progress {
            bar: None,
            start: 0,
        }
    }

    /// Messages between two updates: rare enough to cost nothing per message.
    pub(crate) const EVERY: u64 = 1 << 14;

    /// Shows that sequence `at` was reached.
    pub(crate) fn set(&self, at: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(at.saturating_sub(self.start));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
