//! How a thread waits for a sequence to advance: `WaitStrategy`, and the `Signal` that wakes
//! parked waiters.
//!
//! Busy-spin gives the lowest latency but burns a core per waiting thread: use it only on
//! dedicated cores. `Yield` gives the core away between checks. `Park` blocks on a condition
//! variable with a timeout. `PhasedBackoff` (the default) spins, then yields, then parks, so an
//! idle pipeline costs nothing and a busy one never sleeps.

use super::sync::{fence, spin_loop, yield_now, AtomicU32, Condvar, Mutex};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How a waiting thread spends its time until the condition it waits for holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Spin on the sequence with a CPU pause hint. Needs a dedicated core per waiting thread.
    BusySpin,
    /// Call `thread::yield_now` between checks.
    Yield,
    /// Block on a condition variable; woken by the publisher, or after `timeout`.
    Park {
        /// Longest single sleep: bounds the delay of a lost wake-up.
        timeout: Duration,
    },
    /// Spin `spin_tries` times, then yield `yield_tries` times, then park.
    PhasedBackoff {
        /// Checks made with a pause hint before yielding.
        spin_tries: u32,
        /// Checks made with `yield_now` before parking.
        yield_tries: u32,
        /// Longest single sleep once parked.
        park_timeout: Duration,
    },
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::PhasedBackoff {
            spin_tries: 10_000,
            yield_tries: 100,
            park_timeout: Duration::from_millis(1),
        }
    }
}

impl WaitStrategy {
    /// Park with a 1 ms timeout.
    pub const PARK: WaitStrategy = WaitStrategy::Park {
        timeout: Duration::from_millis(1),
    };

    /// Whether a waiter using this strategy may block, so publishers must signal it.
    #[inline]
    pub fn may_park(&self) -> bool {
        matches!(
            self,
            WaitStrategy::Park { .. } | WaitStrategy::PhasedBackoff { .. }
        )
    }

    /// Name as accepted by `FromStr`.
    pub fn name(&self) -> &'static str {
        match self {
            WaitStrategy::BusySpin => "spin",
            WaitStrategy::Yield => "yield",
            WaitStrategy::Park { .. } => "park",
            WaitStrategy::PhasedBackoff { .. } => "phased",
        }
    }
}

impl fmt::Display for WaitStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WaitStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spin" | "busy-spin" => Ok(WaitStrategy::BusySpin),
            "yield" => Ok(WaitStrategy::Yield),
            "park" | "block" => Ok(WaitStrategy::PARK),
            "phased" | "backoff" => Ok(WaitStrategy::default()),
            other => Err(format!(
                "unknown wait strategy {other:?}: use spin|yield|park|phased"
            )),
        }
    }
}

/// Wakes threads parked by a [`WaitStrategy`]. One per ring, shared by everyone who waits on it.
///
/// Lost wake-ups are excluded by a Dekker-style handshake: a waiter increments `sleepers` and
/// then re-checks its condition under the lock; a publisher stores its sequence, issues a SeqCst
/// fence and then reads `sleepers`. At least one of the two sees the other's write.
#[derive(Debug, Default)]
pub struct Signal {
    sleepers: AtomicU32,
    lock: Mutex<()>,
    condvar: Condvar,
}

impl Signal {
    /// Wakes every parked waiter. Call after a Release store of a sequence that someone may be
    /// parked on. Costs one fence and one relaxed load when nobody sleeps.
    #[inline]
    pub fn notify_all(&self) {
        // Pairs with the SeqCst increment of `sleepers` in `park`.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.notify_slow();
        }
    }

    #[cold]
    fn notify_slow(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.condvar.notify_all();
    }

    /// Blocks until notified or `timeout`, unless `ready()` already holds. Returns `ready()`.
    fn park(&self, ready: &mut impl FnMut() -> bool, timeout: Duration) -> bool {
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let mut done = ready();
        if !done {
            drop(self.condvar.wait_timeout(guard, timeout));
            done = ready();
        } else {
            drop(guard);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        done
    }
}

/// Waits with `strategy` until `ready()` returns true or `deadline` passes.
/// Returns whether `ready()` held. The deadline is checked only once per yield/park step and
/// every 1024 spins, so spinning stays free of clock reads.
pub fn wait_until(
    strategy: WaitStrategy,
    signal: &Signal,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let (spins, yields, park) = match strategy {
        WaitStrategy::BusySpin => (u32::MAX, 0, None),
        WaitStrategy::Yield => (0, u32::MAX, None),
        WaitStrategy::Park { timeout } => (0, 0, Some(timeout)),
        WaitStrategy::PhasedBackoff {
            spin_tries,
            yield_tries,
            park_timeout,
        } => (spin_tries, yield_tries, Some(park_timeout)),
    };
    let expired = |d: Option<Instant>| d.is_some_and(|d| Instant::now() >= d);
    let mut counter: u32 = 0;
    loop {
        if ready() {
            return true;
        }
        if counter == 0 && expired(deadline) {
            // A deadline already in the past is a non-blocking check.
            return false;
        }
        if counter < spins {
            spin_loop();
            if counter & 1023 == 1023 && expired(deadline) {
                return false;
            }
        } else if counter - spins < yields {
            yield_now();
            if expired(deadline) {
                return false;
            }
        } else if let Some(timeout) = park {
            let timeout = deadline.map_or(timeout, |d| {
                timeout.min(d.saturating_duration_since(Instant::now()))
            });
            if signal.park(&mut ready, timeout) {
                return true;
            }
            if expired(deadline) {
                return false;
            }
        }
        // Spin and yield strategies cycle forever; a parking strategy stays parked.
        counter = if park.is_some() {
            counter.saturating_add(1)
        } else {
            counter.wrapping_add(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn parse_names() {
        for name in ["spin", "yield", "park", "phased"] {
            let s: WaitStrategy = name.parse().unwrap();
            assert_eq!(s.name(), name);
        }
        assert!("nope".parse::<WaitStrategy>().is_err());
    }

    #[test]
    fn deadline_expires_for_every_strategy() {
        let signal = Signal::default();
        for s in ["spin", "yield", "park", "phased"] {
            let d = Some(Instant::now() + Duration::from_millis(5));
            assert!(!wait_until(s.parse().unwrap(), &signal, d, || false));
        }
    }

    #[test]
    fn parked_waiter_is_woken_by_notify() {
        let signal = Arc::new(Signal::default());
        let flag = Arc::new(AtomicBool::new(false));
        let strategy = WaitStrategy::Park {
            timeout: Duration::from_secs(30),
        };
        let (s2, f2) = (signal.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            assert!(wait_until(strategy, &s2, None, || f2.load(Ordering::Acquire)));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::Release);
        signal.notify_all();
        // Woken by the signal, not by the 30 s timeout.
        assert!(t.join().unwrap() < Duration::from_secs(20));
    }
}
