//! How a thread waits for a sequence to advance: `WaitStrategy`, and the `Signal` that wakes
//! parked waiters.
//!
//! Busy-spin gives the lowest latency but burns a core per waiting thread: use it only on
//! dedicated cores. `Yield` gives the core away between checks. `Park` blocks on a condition
//! variable with a timeout. `PhasedBackoff` (the default) spins, then yields, then parks, so an
//! idle pipeline costs nothing and a busy one never sleeps.

use super::sequence::Sequence;
use super::sync::{
    current, fence, park_timeout, spin_loop, yield_now, AtomicU32, AtomicUsize, SlotCell, Thread,
};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How a waiting thread spends its time until the condition it waits for holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Spin on the sequence: a few checks back to back, then a CPU pause hint between checks
    /// (see `TIGHT_POLLS`). Needs a dedicated core per waiting thread.
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

/// Checks a spinning waiter makes back to back before it puts a pause hint between checks.
///
/// A waiter that is only nanoseconds early (a consumer keeping up with one-at-a-time
/// publishes) sees the change at once: with a pause after every check, `keel bench ring
/// --burst 1` ran at 0.8-0.95x the `disruptor` crate (whose busy spin has no hint), with 16
/// tight checks 1.04-1.23x. A longer wait pauses, which lets the writer take the line back
/// sooner: with no pause at all, `keel bench pingpong` round trips were ~20% slower. Under
/// loom a spin is a yield to the model's scheduler, so every check yields.
pub const TIGHT_POLLS: u32 = if cfg!(loom) { 0 } else { 16 };

/// What a blocked waiter needs to move before it can go on: one [`Sequence`] (by address), or
/// anything at all ([`WaitKey::ANY`]). A parked waiter is woken only by a notification for its
/// key, so a publish wakes the stage that waits for it and not every thread on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitKey(usize);

// States of `ParkedWaiter::key` below every real key. Sequence addresses are cache-line
// aligned, so none of them is a small number.

/// An entry nobody holds.
const FREE: usize = 0;
/// A waiter took the entry and is storing its thread handle.
const CLAIMED: usize = 1;
/// A notifier holds the entry's thread handle and is unparking it.
const WAKING: usize = 2;
/// Unparked; the waiter frees the entry when it leaves.
const WOKEN: usize = 3;
/// Registered for every notification.
const ANY: usize = 4;

impl WaitKey {
    /// Woken by every notification (the key of `wait_until`'s opaque conditions).
    pub const ANY: WaitKey = WaitKey(ANY);

    /// The key of a waiter blocked until `sequence` advances.
    #[inline]
    pub fn of(sequence: &Sequence) -> WaitKey {
        WaitKey(std::ptr::from_ref(sequence) as usize)
    }
}

/// A waiter's view of its condition, checked before every spin, yield and park.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The condition holds (or the wait is over for another reason, like a halt).
    Ready,
    /// Not yet; it cannot hold before the sequence behind this key advances.
    BlockedOn(WaitKey),
}

/// Most threads that can be parked on one [`Signal`] at a time. A waiter that finds every
/// entry taken sleeps unregistered, woken only by its park timeout (correct, but slow).
#[cfg(not(loom))]
pub const MAX_PARKED_WAITERS: usize = 32;
/// Most threads that can be parked on one [`Signal`] at a time (small under loom: every entry
/// is a modelled object).
#[cfg(loom)]
pub const MAX_PARKED_WAITERS: usize = 4;

/// One parked thread: its key (or one of the states above) and the handle that unparks it.
/// Whoever moves `key` out of a registered key owns `thread` until it moves `key` on: the
/// waiter from `CLAIMED` to its key, a notifier from `WAKING` to `WOKEN`. So the handle is
/// never read while written, and a thread is unparked only while it is registered (std
/// tolerates stray unparks; loom's model, which checks this code, does not).
#[derive(Debug)]
struct ParkedWaiter {
    key: AtomicUsize,
    thread: SlotCell<Option<Thread>>,
}

/// Wakes threads parked by a [`WaitStrategy`]. One per ring (or shared by rings gated on each
/// other's sequences), shared by everyone who waits on it.
///
/// Each parked thread registers itself with the key it waits on; [`Signal::notify`] unparks
/// only the threads registered for that sequence (or for anything). Lost wake-ups are excluded
/// by a Dekker-style handshake: a waiter publishes its registration, issues a SeqCst fence and
/// then re-checks its condition before sleeping; a publisher stores its sequence, issues a
/// SeqCst fence and then reads the registrations. At least one of the two sees the other's
/// write. Costs a publisher one fence and one relaxed load while nobody sleeps.
#[derive(Debug)]
pub struct Signal {
    parked: AtomicU32,
    waiters: [ParkedWaiter; MAX_PARKED_WAITERS],
}

// SAFETY: the only non-Sync field is each entry's thread handle, which the `key` protocol
// above hands to one thread at a time (see `ParkedWaiter`).
unsafe impl Sync for Signal {}

impl Default for Signal {
    fn default() -> Self {
        Signal {
            parked: AtomicU32::new(0),
            waiters: std::array::from_fn(|_| ParkedWaiter {
                key: AtomicUsize::new(FREE),
                thread: SlotCell::new(None),
            }),
        }
    }
}

impl Signal {
    /// Wakes the threads parked until `sequence` advances. Call after a Release store to it.
    #[inline]
    pub fn notify(&self, sequence: &Sequence) {
        self.notify_key(WaitKey::of(sequence));
    }

    /// Wakes every parked waiter (on close, halt, or a change no key describes).
    #[inline]
    pub fn notify_all(&self) {
        self.notify_key(WaitKey::ANY);
    }

    #[inline]
    fn notify_key(&self, key: WaitKey) {
        // Pairs with the fence after a waiter's registration in `park`.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) != 0 {
            self.wake(key);
        }
    }

    #[cold]
    fn wake(&self, key: WaitKey) {
        for waiter in &self.waiters {
            let parked_on = waiter.key.load(Ordering::Relaxed);
            let wanted =
                parked_on >= ANY && (key.0 == ANY || parked_on == ANY || parked_on == key.0);
            // Losing the race means the waiter left, or another notifier is waking it.
            if wanted
                && waiter
                    .key
                    .compare_exchange(parked_on, WAKING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                Self::unpark(waiter);
            }
        }
    }

    /// Unparks the thread registered in `waiter`, which this notifier holds in `WAKING`, and
    /// moves the entry on to `WOKEN`. The handle is cloned (a reference count, no allocation)
    /// and the entry handed back before the `unpark` system call, so a woken thread that
    /// preempts its waker never waits for it in `leave`. The unpark may then reach a thread
    /// that has already left: std's parking tolerates that (a later park returns early and
    /// re-checks). Loom's model does not, so under loom the entry is held across the unpark.
    fn unpark(waiter: &ParkedWaiter) {
        #[cfg(not(loom))]
        {
            let thread = Self::registered(waiter).clone();
            waiter.key.store(WOKEN, Ordering::Release);
            if let Some(thread) = thread {
                thread.unpark();
            }
        }
        #[cfg(loom)]
        {
            if let Some(thread) = Self::registered(waiter) {
                thread.unpark();
            }
            waiter.key.store(WOKEN, Ordering::Release);
        }
    }

    /// The handle in an entry this notifier holds in `WAKING`.
    fn registered(waiter: &ParkedWaiter) -> &Option<Thread> {
        // SAFETY: `WAKING` gives this thread the handle: the waiter stored it before its key
        // (the Acquire CAS in `wake` pairs with that store) and waits for `WOKEN` before it
        // leaves the entry or writes the handle again; the reference ends before `WOKEN`.
        waiter.thread.with(|thread| unsafe { &*thread })
    }

    /// Registers the calling thread under `key`, re-checks, and sleeps (at most `timeout`)
    /// only if it is still blocked on that same key.
    fn park(&self, check: &mut impl FnMut() -> Check, key: WaitKey, timeout: Duration) {
        let Some(waiter) = self.claim() else {
            park_timeout(timeout);
            return;
        };
        // SAFETY: the entry is `CLAIMED` by this thread; no notifier reads the handle before
        // the key below is stored.
        waiter
            .thread
            .with_mut(|thread| unsafe { *thread = Some(current()) });
        waiter.key.store(key.0, Ordering::SeqCst);
        self.parked.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `notify_key`.
        fence(Ordering::SeqCst);
        if check() == Check::BlockedOn(key) {
            park_timeout(timeout);
        }
        self.parked.fetch_sub(1, Ordering::SeqCst);
        Self::leave(waiter, key);
    }

    /// A free registration entry, now `CLAIMED` by the caller.
    fn claim(&self) -> Option<&ParkedWaiter> {
        self.waiters.iter().find(|w| {
            w.key.load(Ordering::Relaxed) == FREE
                && w.key
                    .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Frees the caller's entry, first waiting out a notifier that is unparking it.
    fn leave(waiter: &ParkedWaiter, key: WaitKey) {
        loop {
            match waiter
                .key
                .compare_exchange(key.0, FREE, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(WOKEN) => {
                    waiter.key.store(FREE, Ordering::Release);
                    return;
                }
                // `WAKING`: a notifier is a few instructions from `WOKEN`, unless it was
                // preempted there (perhaps by this very thread): give it the core.
                Err(_) => yield_now(),
            }
        }
    }
}

/// Waits with `strategy` until `ready()` returns true or `deadline` passes; a parked waiter is
/// woken by any notification of `signal`. Returns whether `ready()` held.
pub(crate) fn wait_until(
    strategy: WaitStrategy,
    signal: &Signal,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
) -> bool {
    wait_for(strategy, signal, deadline, || {
        if ready() {
            Check::Ready
        } else {
            Check::BlockedOn(WaitKey::ANY)
        }
    })
}

/// Waits with `strategy` until `check()` says [`Check::Ready`] or `deadline` passes; once
/// parked, the waiter sleeps until the sequence it is blocked on is notified. Returns whether
/// `check()` said ready. The deadline is checked only once per yield/park step and every 1024
/// spins, so spinning stays free of clock reads.
pub fn wait_for(
    strategy: WaitStrategy,
    signal: &Signal,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Check,
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
        let Check::BlockedOn(key) = check() else {
            return true;
        };
        if counter == 0 && expired(deadline) {
            // A deadline already in the past is a non-blocking check.
            return false;
        }
        if counter < spins {
            if counter >= TIGHT_POLLS {
                spin_loop();
            }
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
            signal.park(&mut check, key, timeout);
            if expired(deadline) {
                return check() == Check::Ready;
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
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    /// Parks for up to 30 s: a waiter that returns sooner was woken by a notification.
    const LONG: WaitStrategy = WaitStrategy::Park {
        timeout: Duration::from_secs(30),
    };

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
        let (s2, f2) = (signal.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            assert!(wait_until(LONG, &s2, None, || f2.load(Ordering::Acquire)));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::Release);
        signal.notify_all();
        // Woken by the signal, not by the 30 s timeout.
        assert!(t.join().unwrap() < Duration::from_secs(20));
    }

    /// A thread parked until `target` moves, counting how often it checks.
    fn parked_on(
        signal: &Arc<Signal>,
        target: &Arc<Sequence>,
        checks: &Arc<AtomicU64>,
    ) -> std::thread::JoinHandle<Duration> {
        let (signal, target, checks) = (signal.clone(), target.clone(), checks.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            assert!(wait_for(LONG, &signal, None, || {
                checks.fetch_add(1, Ordering::Relaxed);
                if target.load_acquire() > 0 {
                    Check::Ready
                } else {
                    Check::BlockedOn(WaitKey::of(&target))
                }
            }));
            start.elapsed()
        })
    }

    fn until_parked(signal: &Signal) {
        while signal.parked.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_notify_wakes_only_the_waiters_of_its_sequence() {
        let signal = Arc::new(Signal::default());
        let (a, b) = (Arc::new(Sequence::new(0)), Arc::new(Sequence::new(0)));
        let checks = Arc::new(AtomicU64::new(0));
        let waiter = parked_on(&signal, &a, &checks);
        until_parked(&signal);
        std::thread::sleep(Duration::from_millis(20));
        let before = checks.load(Ordering::Relaxed);
        for value in 1..=20 {
            b.store_release(value);
            signal.notify(&b);
            std::thread::sleep(Duration::from_millis(1));
        }
        // Another sequence's notifications leave it asleep (one spurious wake-up tolerated).
        assert!(checks.load(Ordering::Relaxed) <= before + 2);
        a.store_release(1);
        signal.notify(&a);
        // Woken by the notification, not by the 30 s timeout.
        assert!(waiter.join().unwrap() < Duration::from_secs(20));
    }

    #[test]
    fn notify_all_wakes_keyed_waiters_and_notify_wakes_any_waiters() {
        let signal = Arc::new(Signal::default());
        let a = Arc::new(Sequence::new(0));
        let checks = Arc::new(AtomicU64::new(0));
        let keyed = parked_on(&signal, &a, &checks);
        let flag = Arc::new(AtomicBool::new(false));
        let (s2, f2) = (signal.clone(), flag.clone());
        let opaque = std::thread::spawn(move || {
            let start = Instant::now();
            assert!(wait_until(LONG, &s2, None, || f2.load(Ordering::Acquire)));
            start.elapsed()
        });
        while signal.parked.load(Ordering::SeqCst) < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // An opaque condition is woken by any sequence's notification.
        flag.store(true, Ordering::Release);
        signal.notify(&Sequence::new(0));
        assert!(opaque.join().unwrap() < Duration::from_secs(20));
        a.store_release(1);
        signal.notify_all();
        assert!(keyed.join().unwrap() < Duration::from_secs(20));
    }

    #[test]
    fn waiters_beyond_the_table_fall_back_to_their_timeout() {
        let signal = Arc::new(Signal::default());
        let flag = Arc::new(AtomicBool::new(false));
        let short = WaitStrategy::Park {
            timeout: Duration::from_millis(5),
        };
        let waiters: Vec<_> = (0..MAX_PARKED_WAITERS + 4)
            .map(|_| {
                let (signal, flag) = (signal.clone(), flag.clone());
                std::thread::spawn(move || {
                    wait_until(short, &signal, None, || flag.load(Ordering::Acquire))
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        flag.store(true, Ordering::Release);
        signal.notify_all();
        for waiter in waiters {
            assert!(waiter.join().unwrap());
        }
        assert_eq!(signal.parked.load(Ordering::SeqCst), 0);
        assert!(signal
            .waiters
            .iter()
            .all(|w| w.key.load(Ordering::SeqCst) == FREE));
    }
}
