//! `keel serve --stats-interval`: one info-level line every interval with the rates, lags and
//! sync latency of the last interval, read from the engine's metrics (the same counters
//! `/metrics` shows).

use keel::engine::{Metrics, MetricsSnapshot};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The logging thread; stops when dropped.
pub struct StatusLog {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StatusLog {
    /// Logs a line every `interval` (`None`: never; then no thread is started).
    pub fn start(metrics: Metrics, interval: Option<Duration>) -> std::io::Result<Self> {
        let Some(interval) = interval.filter(|i| !i.is_zero()) else {
            return Ok(StatusLog {
                stop: None,
                thread: None,
            });
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("keel-status".into())
            .spawn(move || {
                let mut last = (Instant::now(), metrics.read());
                // Ends when the sender is dropped (or sends).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let now = (Instant::now(), metrics.read());
                    log_line(&last, &now);
                    last = now;
                }
            })?;
        Ok(StatusLog {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for StatusLog {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line about what happened between `before` and `after`.
fn log_line((t0, before): &(Instant, MetricsSnapshot), (t1, after): &(Instant, MetricsSnapshot)) {
    let secs = t1.duration_since(*t0).as_secs_f64().max(1e-9);
    let rate = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs).round() as u64;
    let requests = |m: &MetricsSnapshot| m.net.map_or(0, |n| n.requests);
    let sync = after.journal_sync_ns.since(&before.journal_sync_ns);
    let batches = after
        .journal_batch_records
        .since(&before.journal_batch_records);
    tracing::info!(
        target: "keel::stats",
        applied_per_s = rate(before.applied, after.applied),
        requests_per_s = rate(requests(before), requests(after)),
        rejected_per_s = rate(before.rejected(), after.rejected()),
        journal_lag = after.published.saturating_sub(after.journaled),
        sync_lag = after.journaled.saturating_sub(after.durable),
        apply_lag = after.published.saturating_sub(after.applied),
        batch_mean = batches.sum.checked_div(batches.count()).unwrap_or(0),
        fsync_p99_us = sync.quantile(0.99) / 1000,
        syncs = sync.count(),
        sessions = after.net.map_or(0, |n| n.active),
        applied = after.applied,
        "stats"
    );
}

/// Parses an interval: a number with a unit (`500ms`, `10s`, `2m`), or `0` for never.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s or m (e.g. 10s; 0: never)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number with a unit (e.g. 10s)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("unknown unit {unit:?} in {text:?}: use ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_have_units_and_zero_means_never() {
        assert_eq!(parse_interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert!(parse_interval("10").is_err());
        assert!(parse_interval("10h").is_err());
    }
}
