//! The open-loop send schedule and coordinated-omission accounting.
//!
//! An open-loop load generator sends message `i` at a fixed *intended* time,
//! `start + i / rate`, whatever happened to earlier messages. Latency is measured from that
//! intended time to the response, not from when the producer actually managed to send: when
//! the system stalls, the producer falls behind and every message that should have been sent
//! during the stall is charged the time it waited (Gil Tene's "coordinated omission"). A
//! closed-loop or "measure from actual send" harness hides exactly those delays.

use std::time::{Duration, Instant};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// When each message of an open-loop run should be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Offered rate, messages per second (at least 1).
    rate_per_sec: u64,
}

impl Schedule {
    /// A schedule of `rate_per_sec` messages per second (0 is treated as 1).
    pub fn new(rate_per_sec: u64) -> Self {
        Schedule {
            rate_per_sec: rate_per_sec.max(1),
        }
    }

    /// The offered rate, messages per second.
    pub fn rate_per_sec(&self) -> u64 {
        self.rate_per_sec
    }

    /// Intended send time of message `i` (0-based), in nanoseconds after the start.
    #[inline]
    pub fn intended_ns(&self, i: u64) -> u64 {
        (u128::from(i) * NANOS_PER_SEC / u128::from(self.rate_per_sec)) as u64
    }

    /// How many messages are due by `elapsed_ns` after the start: every `i` with
    /// `intended_ns(i) <= elapsed_ns`.
    #[inline]
    pub fn due_by(&self, elapsed_ns: u64) -> u64 {
        // i is due iff floor(i * 1e9 / rate) <= t  <=>  i < (t + 1) * rate / 1e9.
        let bound = (u128::from(elapsed_ns) + 1) * u128::from(self.rate_per_sec);
        bound.div_ceil(NANOS_PER_SEC) as u64
    }

    /// Messages in a run of `duration` (at least 1).
    pub fn messages_in(&self, duration: Duration) -> u64 {
        let n = duration.as_nanos() * u128::from(self.rate_per_sec) / NANOS_PER_SEC;
        (n as u64).max(1)
    }
}

/// Latency of a response received at `received_ns` for a message intended at `intended_ns`
/// (both after the same start): the coordinated-omission-corrected latency. Never negative.
#[inline]
pub fn corrected_latency_ns(intended_ns: u64, received_ns: u64) -> u64 {
    received_ns.saturating_sub(intended_ns)
}

/// Nanoseconds since `start` (saturating at `u64::MAX`).
#[inline]
pub fn since_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Waits until `target_ns` after `start`: sleeps while far away, then yields or spins.
/// `spin` allows a busy-wait for the last microseconds (for `--wait spin` runs).
pub fn wait_until(start: Instant, target_ns: u64, spin: bool) {
    loop {
        let now = since_ns(start);
        if now >= target_ns {
            return;
        }
        let left = target_ns - now;
        if left > 200_000 {
            std::thread::sleep(Duration::from_nanos(left - 100_000));
        } else if spin {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The open-loop driver: calls `send(i..due)` with every message due by now, in order, and
/// waits for the next intended time when caught up. When behind, every due message is handed
/// over at once (their latency still counts from their intended times). Stops after `total`
/// messages or at the first error.
pub fn drive_open_loop<E>(
    schedule: Schedule,
    total: u64,
    start: Instant,
    spin: bool,
    mut send: impl FnMut(std::ops::Range<u64>) -> Result<(), E>,
) -> Result<(), E> {
    let mut i = 0;
    while i < total {
        let due = schedule.due_by(since_ns(start)).min(total);
        if i >= due {
            wait_until(start, schedule.intended_ns(i), spin);
            continue;
        }
        send(i..due)?;
        i = due;
    }
    Ok(())
}

/// Which messages count: those intended at or after the end of the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First recorded message index.
    pub first_recorded: u64,
    /// Messages in the whole run (warm-up included).
    pub total: u64,
}

impl Window {
    /// The window of a run of `warmup` then `duration` at `schedule`'s rate.
    pub fn new(schedule: &Schedule, warmup: Duration, duration: Duration) -> Self {
        let first_recorded = if warmup.is_zero() {
            0
        } else {
            schedule.messages_in(warmup)
        };
        Window {
            first_recorded,
            total: first_recorded + schedule.messages_in(duration),
        }
    }

    /// Whether message `i` is recorded (not warm-up).
    #[inline]
    pub fn records(&self, i: u64) -> bool {
        i >= self.first_recorded
    }

    /// Messages recorded.
    pub fn recorded(&self) -> u64 {
        self.total - self.first_recorded
    }
}
