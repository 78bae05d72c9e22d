//! Benchmarks of keel's ring against its peers, run side by side in one process.
//!
//! - [`ring`]: one producer → one consumer handoff of `u64` (throughput, verified sum).
//! - [`pingpong`]: round trips over two rings (latency percentiles from an HdrHistogram).
//! - [`peers`]: the same workloads through the `disruptor` crate and crossbeam.
//! - [`affinity`]: thread pinning that warns instead of panicking.
//! - [`latency`], [`report`]: latency recording, hardware description, tables and JSON.
//!
//! Like the LMAX perftests, every run checks its result (sum and count, or every echoed value)
//! and fails with [`BenchError`] when it is wrong: a fast wrong answer is not a result.

pub mod affinity;
pub mod peers;
pub mod pingpong;
pub mod report;
pub mod ring;

// The engine-level harness (issue 7): open-loop load, coordinated omission, reports.
pub mod commands;
pub use commands::AppName;
pub mod compare;
mod completion_clock;
pub mod compare_open;
pub mod disk;
pub mod failover;
pub mod hgrm;
pub mod journal;
pub mod latency;
pub mod net_load;
pub mod output;
pub mod pipeline;
mod reach;
pub mod recovery;
pub mod rig;
pub mod schedule;
pub mod sysinfo;

use affinity::{pin_current_thread, CoreSet};
use keel::ring::WaitStrategy;
use serde::Serialize;
use std::time::Duration;

/// A benchmark produced a wrong result or lost a thread.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The consumer's sum or count differs from what the producer sent.
    #[error(
        "{name}: WRONG RESULT: consumed {got_count} messages summing to {got_sum}, \
         expected {expected_count} summing to {expected_sum}"
    )]
    WrongResult {
        /// Which implementation.
        name: &'static str,
        /// Sum the consumer computed (wrapping).
        got_sum: u64,
        /// Messages the consumer saw.
        got_count: u64,
        /// Sum of the values sent (wrapping).
        expected_sum: u64,
        /// Messages sent.
        expected_count: u64,
    },
    /// A round trip came back with a different value than was sent.
    #[error("{name}: WRONG ECHO: round trip {iteration} returned {got}, expected {expected}")]
    WrongEcho {
        /// Which implementation.
        name: &'static str,
        /// Round trip index (negative during warm-up).
        iteration: i64,
        /// Value received.
        got: u64,
        /// Value sent.
        expected: u64,
    },
    /// The ring closed or halted before the workload finished.
    #[error("{name}: stopped early: {reason}")]
    Stopped {
        /// Which implementation.
        name: &'static str,
        /// What happened.
        reason: &'static str,
    },
    /// A benchmark thread panicked.
    #[error("{name}: the {thread} thread panicked")]
    Panicked {
        /// Which implementation.
        name: &'static str,
        /// Which thread.
        thread: &'static str,
    },
}

/// Which cores the two benchmark threads should use, as asked on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinRequest {
    /// Core for the producer (ring) or ping (ping-pong) thread.
    pub producer: Option<usize>,
    /// Core for the consumer (ring) or echo (ping-pong) thread.
    pub consumer: Option<usize>,
    /// Pin nothing, whatever else is set.
    pub disabled: bool,
}

/// The cores actually used, after checking the request against the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pins {
    /// Core of the producer / ping thread, or `None` if unpinned.
    pub producer: Option<usize>,
    /// Core of the consumer / echo thread, or `None` if unpinned.
    pub consumer: Option<usize>,
}

impl Pins {
    /// Resolves a request. Without explicit cores, busy-spinning threads are pinned to the
    /// first two usable cores when there are at least two (two spinners sharing a core would
    /// measure the scheduler, not the ring); other wait strategies stay unpinned.
    pub fn resolve(request: PinRequest, wait: WaitStrategy, cores: &CoreSet) -> Pins {
        if request.disabled {
            return Pins::default();
        }
        let (producer, consumer) = match (request.producer, request.consumer) {
            (None, None) if wait == WaitStrategy::BusySpin && cores.len() >= 2 => {
                (Some(cores.ids()[0]), Some(cores.ids()[1]))
            }
            explicit => explicit,
        };
        let plan = cores.plan(&[("producer", producer), ("consumer", consumer)]);
        Pins {
            producer: plan[0],
            consumer: plan[1],
        }
    }

    /// Pins the calling thread as the producer.
    pub fn pin_producer(&self) -> bool {
        pin_current_thread(self.producer, "producer")
    }

    /// Pins the calling thread as the consumer.
    pub fn pin_consumer(&self) -> bool {
        pin_current_thread(self.consumer, "consumer")
    }
}

/// How a peer's thread waits on an empty or full queue, chosen to match keel's
/// [`WaitStrategy`]. Peers have no wake-up signal, so `park` sleeps [`Idle::SLEEP`] per failed
/// check, and `phased` spins, then yields, then sleeps.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    strategy: WaitStrategy,
    tries: u32,
}

impl Idle {
    /// The sleep of one back-off step for `park`/`phased` peers.
    pub const SLEEP: Duration = Duration::from_micros(50);

    /// An idle policy matching `strategy`.
    pub fn new(strategy: WaitStrategy) -> Self {
        Idle { strategy, tries: 0 }
    }

    /// One failed check: wait a little according to the strategy.
    #[inline]
    pub fn step(&mut self) {
        match self.strategy {
            WaitStrategy::BusySpin => std::hint::spin_loop(),
            WaitStrategy::Yield => std::thread::yield_now(),
            WaitStrategy::Park { .. } => std::thread::sleep(Self::SLEEP),
            WaitStrategy::PhasedBackoff { .. } => self.back_off(),
        }
    }

    /// A successful check: the next wait starts the back-off again.
    #[inline]
    pub fn reset(&mut self) {
        self.tries = 0;
    }

    #[cold]
    fn back_off(&mut self) {
        self.tries = self.tries.saturating_add(1);
        if self.tries < 100 {
            std::hint::spin_loop();
        } else if self.tries < 200 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Self::SLEEP);
        }
    }

    /// How this policy waits, for reports.
    pub fn describe(strategy: WaitStrategy) -> &'static str {
        match strategy {
            WaitStrategy::BusySpin => "spin_loop",
            WaitStrategy::Yield => "yield_now",
            WaitStrategy::Park { .. } => "sleep 50us",
            WaitStrategy::PhasedBackoff { .. } => "spin, yield, then sleep 50us",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_pins_the_first_two_cores_by_default() {
        let cores = CoreSet::from_ids(vec![4, 5, 6]);
        let pins = Pins::resolve(PinRequest::default(), WaitStrategy::BusySpin, &cores);
        assert_eq!(
            pins,
            Pins {
                producer: Some(4),
                consumer: Some(5)
            }
        );
    }

    #[test]
    fn other_strategies_and_no_pin_stay_unpinned() {
        let cores = CoreSet::from_ids(vec![0, 1]);
        let yield_pins = Pins::resolve(PinRequest::default(), WaitStrategy::Yield, &cores);
        assert_eq!(yield_pins, Pins::default());
        let off = PinRequest {
            producer: Some(0),
            consumer: Some(1),
            disabled: true,
        };
        assert_eq!(
            Pins::resolve(off, WaitStrategy::BusySpin, &cores),
            Pins::default()
        );
    }

    #[test]
    fn one_core_machine_pins_nothing() {
        let cores = CoreSet::from_ids(vec![0]);
        let pins = Pins::resolve(PinRequest::default(), WaitStrategy::BusySpin, &cores);
        assert_eq!(pins, Pins::default());
        let asked = PinRequest {
            producer: Some(0),
            consumer: Some(1),
            disabled: false,
        };
        assert_eq!(
            Pins::resolve(asked, WaitStrategy::BusySpin, &cores),
            Pins::default()
        );
    }
}
