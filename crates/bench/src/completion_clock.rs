//! The open-loop completion clock of a peer's logic stage (the `disruptor` crate's and
//! crossbeam's pipelines in `keel bench compare --rate R`): records `now − intended(i)` for
//! each workload message `i` as it is applied, with no allocation.

use super::latency::LatencyRecorder;
use super::rig::Failure;
use super::schedule::{corrected_latency_ns, since_ns, Schedule, Window};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a peer may take to apply its setup messages before the run is abandoned.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The open-loop completion clock of a peer's logic stage: records `now − intended(i)` for
/// each recorded workload message `i` as it is applied.
pub(super) struct CompletionClock {
    schedule: Schedule,
    window: Window,
    /// Sequence of workload message 0 (setup messages come before it and are not timed).
    first_workload_sequence: u64,
    /// Set by the producer when the schedule starts.
    start_cell: Arc<OnceLock<Instant>>,
    start: Option<Instant>,
    /// Last sequence applied, for the producer's wait on the setup.
    applied: Arc<AtomicU64>,
    pub(super) recorder: LatencyRecorder,
    /// Completion time of the last workload message, ns after the start.
    pub(super) last_ns: u64,
}

/// The producer's side of a [`CompletionClock`].
pub(super) struct ClockHandle {
    start_cell: Arc<OnceLock<Instant>>,
    applied: Arc<AtomicU64>,
}

impl CompletionClock {
    /// A clock for a run on `schedule`, recording `window`, whose workload starts at
    /// `first_workload_sequence`.
    pub(super) fn new(
        schedule: Schedule,
        window: Window,
        first_workload_sequence: u64,
    ) -> (Self, ClockHandle) {
        let handle = ClockHandle {
            start_cell: Arc::new(OnceLock::new()),
            applied: Arc::new(AtomicU64::new(0)),
        };
        let clock = CompletionClock {
            schedule,
            window,
            first_workload_sequence,
            start_cell: handle.start_cell.clone(),
            start: None,
            applied: handle.applied.clone(),
            recorder: LatencyRecorder::new(),
            last_ns: 0,
        };
        (clock, handle)
    }

    /// Message `sequence` was just applied. No allocation: a clock read and a histogram
    /// increment (the recorder's buckets were allocated up front).
    #[inline]
    pub(super) fn complete(&mut self, sequence: u64) {
        self.applied.store(sequence, Ordering::Release);
        let Some(i) = sequence.checked_sub(self.first_workload_sequence) else {
            return;
        };
        let start = match self.start {
            Some(start) => start,
            None => match self.start_cell.get() {
                Some(&start) => *self.start.insert(start),
                None => return,
            },
        };
        let now = since_ns(start);
        if self.window.records(i) {
            let intended = self.schedule.intended_ns(i);
            self.recorder.record(corrected_latency_ns(intended, now));
        }
        self.last_ns = now;
    }
}

impl ClockHandle {
    /// Waits until the logic has applied `sequence` (the setup), then starts the schedule.
    pub(super) fn start_after(&self, sequence: u64) -> Result<Instant, Failure> {
        let give_up = Instant::now() + SETUP_TIMEOUT;
        while self.applied.load(Ordering::Acquire) < sequence {
            if Instant::now() > give_up {
                return Err(Failure::new("peer did not apply its setup in time"));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let start = Instant::now();
        self.start_cell
            .set(start)
            .map_err(|_| Failure::new("schedule started twice"))?;
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_completion_clock_records_only_the_window_after_the_start() {
        let (mut clock, handle) = CompletionClock::new(
            Schedule::new(1_000),
            Window::new(
                &Schedule::new(1_000),
                Duration::from_millis(50),
                Duration::from_millis(100),
            ),
            11,
        );
        clock.complete(3); // setup: not timed
        clock.complete(11); // workload 0 before the start: not timed
        assert_eq!(handle.applied.load(Ordering::Acquire), 11);
        assert_eq!(clock.recorder.count(), 0);
        handle.start_after(11).unwrap();
        for sequence in 11..11 + 150 {
            clock.complete(sequence);
        }
        assert_eq!(
            clock.recorder.count(),
            100,
            "warm-up messages are not recorded"
        );
        assert!(clock.last_ns > 0);
    }
}
