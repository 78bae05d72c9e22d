//! Several producers into one ring: the LMAX Disruptor's multi-producer sequencer.
//!
//! Producers claim sequences with a compare-and-swap on the shared cursor and mark each slot
//! published; consumers read up to the highest sequence published without a gap. A ring built
//! with [`RingBuilder::build_multi`](super::RingBuilder::build_multi) works this way; one built
//! with `build` keeps the single producer's plain Release store, and its consumers never look
//! at a marker.
//!
//! # Protocol
//!
//! State: the cursor `C` (the last claimed sequence; bit 63, [`CLOSED`], once the ring is
//! closed), one availability marker `A[i]` per slot, and each consumer's sequence `S_k`. The
//! marker holds the round (lap) the slot was last published in, as LMAX's `availableBuffer`
//! does, in one byte: `round(s) = ((s - origin) / capacity + 1) mod 256`, so 0 is "never".
//!
//! Claim `n` sequences (a producer):
//! 1. `c = C.load(Acquire)`. If `CLOSED` is set, fail.
//! 2. Gate: `c + n <= min_k(S_k) + capacity`, with `S_k` loaded Acquire (pairs with each
//!    consumer's Release store after its batch: the slots about to be reused were read
//!    completely). Each handle caches the minimum it saw; while the ring looks full it waits
//!    with the ring's strategy, parked on the slowest consumer's key, then starts over.
//! 3. `CAS(C, c, c + n)`, AcqRel. On success `c + 1 ..= c + n` are this producer's alone: no
//!    other CAS can succeed from `c`, and `C` never goes back, so there is no ABA. On failure,
//!    start over at 1.
//!
//! Publish them:
//! 4. Write the slots (plain writes, through the slot cells).
//! 5. For each `s`: `A[s & mask].store(round(s), Release)`. Pairs with the consumer's Acquire
//!    load in 7: the slot writes happen before the consumer's reads.
//! 6. Notify the cursor's key (a SeqCst fence, then a look for parked waiters): with the
//!    waiter's fence after registering (`wait.rs`), a parked consumer cannot miss step 5.
//!
//! Consume (a first-stage consumer that has handled `current`):
//! 7. For `s` from `current + 1` while `A[s & mask].load(Acquire) == round(s)`: the batch ends
//!    before the first `s` not yet published. Handle the batch, then `S.store(last,
//!    Release)` (step 2's pairing). The consumer never reads `C`, the line every claim
//!    contends for (only to tell that a closed ring is finished). Later stages wait on
//!    earlier stages' sequences as with one producer: nothing changes for them.
//!
//! While a consumer that has handled `current` looks at `s` (`current < s <= current +
//! capacity`), `s`'s marker holds `round(s)` or the round before: `s` itself cannot be claimed
//! before every consumer has passed `s - capacity`, so `s - capacity` was published (or is
//! before the ring's first sequence: marker 0, the round before the first); the lap after `s`
//! cannot be claimed before every consumer, this one included, has passed `s`. Two adjacent
//! rounds differ in a byte, so a marker needs no reset, and 64 of them share a cache line (a
//! batch of 100 writes and reads two lines, not thirteen). The scan in step 7 stops within one
//! lap: `current + capacity + 1` shares its slot with `current + 1`, not yet passed.
//!
//! Close: `C.fetch_or(CLOSED)` (AcqRel), then `closed.store(true, Release)`, then wake every
//! waiter. After the OR no claim succeeds (its CAS expects a value without the bit), so
//! `C & !CLOSED` is final: a consumer that sees `closed` (Acquire) and has handled everything
//! up to it reports `Closed`. Claims made before the close are published as usual. The ring
//! closes on [`MultiProducer::close`] or when the last handle is dropped.
//!
//! A producer that failed between 3 and 5 (a panic in its `fill`) would leave a claimed
//! sequence that is never published, and every consumer waiting before it: the ring is
//! halted instead.

use super::ring_buffer::{halt, wait_for_gate, Gauge, Halted, Shared, TryPublishError};
use super::sequence::minimum;
use super::sync::{AtomicU64, AtomicU8};
use super::wait::WaitKey;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bit 63 of a multi-producer ring's cursor: the ring is closed (no sequence gets near it).
pub(super) const CLOSED: u64 = 1 << 63;

/// The slots' availability markers (LMAX's `availableBuffer`): the round each slot was last
/// published in, in one byte (module docs). Empty on a single-producer ring.
pub(super) struct Published {
    markers: Box<[AtomicU8]>,
    /// The first sequence of the ring (its marker is `markers[0]`).
    origin: u64,
    mask: u64,
    /// `log2(capacity)`: `(s - origin) >> shift` is `s`'s lap.
    shift: u32,
}

impl Published {
    /// No markers: a single-producer ring.
    pub(super) fn none() -> Self {
        Published {
            markers: Box::new([]),
            origin: 0,
            mask: 0,
            shift: 0,
        }
    }

    /// A marker per slot of a ring of `capacity` whose first sequence is `origin`.
    pub(super) fn new(capacity: usize, origin: u64) -> Self {
        debug_assert!(capacity.is_power_of_two() && origin >= 1);
        Published {
            markers: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            origin,
            mask: capacity as u64 - 1,
            shift: capacity.trailing_zeros(),
        }
    }

    /// `sequence`'s marker and the value it holds once `sequence` is published.
    #[inline]
    fn marker(&self, sequence: u64) -> (&AtomicU8, u8) {
        debug_assert!(sequence >= self.origin);
        let offset = sequence.wrapping_sub(self.origin);
        let round = ((offset >> self.shift) as u8).wrapping_add(1);
        (&self.markers[(offset & self.mask) as usize], round)
    }

    /// Step 5: marks `first..=last` published (Release stores, after the slot writes).
    #[inline]
    fn mark(&self, first: u64, last: u64) {
        for sequence in first..=last {
            let (marker, round) = self.marker(sequence);
            marker.store(round, Ordering::Release);
        }
    }

    /// Step 7: the highest `h <= upper` such that every sequence in `after + 1 ..= h` is
    /// published (`after` itself if the next one is not). Acquire loads. `upper` is at most a
    /// lap past `after` (the markers tell only adjacent rounds apart).
    #[inline]
    fn highest(&self, after: u64, upper: u64) -> u64 {
        debug_assert!(upper <= after + self.mask + 1);
        let mut sequence = after;
        while sequence < upper {
            let (marker, round) = self.marker(sequence + 1);
            if marker.load(Ordering::Acquire) != round {
                break;
            }
            sequence += 1;
        }
        sequence
    }
}

/// Step 7, for a first-stage consumer of a multi-producer ring: of `(available, key)` (its
/// other dependencies' bound and key), how far it may read after `current`, and what to park
/// on. Blocked by a sequence not yet published (claimed or not), it parks on the cursor's key,
/// which every publish notifies.
#[inline]
pub(super) fn published_through<T>(
    shared: &Shared<T>,
    current: u64,
    (available, key): (u64, WaitKey),
) -> (u64, WaitKey) {
    // One lap at most (see the module docs); the bound only makes that explicit.
    let lap = current + shared.capacity();
    let published = shared.published.highest(current, available.min(lap));
    if published < available {
        (published, WaitKey::of(&shared.cursor))
    } else {
        (available, key)
    }
}

/// One of several producers of a ring (built by
/// [`RingBuilder::build_multi`](super::RingBuilder::build_multi)). Clone it for each
/// producing thread; every method takes `&self`, so one handle may also be shared.
///
/// The ring closes when the last handle is dropped, or for every handle at once with
/// [`MultiProducer::close`]; after that a publish returns `Err(Halted)` (or
/// `TryPublishError::Halted`), and consumers report `Closed` once they have handled
/// everything published before.
pub struct MultiProducer<T> {
    shared: Arc<Shared<T>>,
    /// The smallest consumer sequence this handle last saw, a lower bound of the current one:
    /// a claim within `cached_gate + capacity` needs no look at the consumers. Relaxed: any
    /// value stored was true once, and consumer sequences only grow.
    cached_gate: AtomicU64,
}

impl<T> MultiProducer<T> {
    pub(super) fn new(shared: Arc<Shared<T>>, start: u64) -> Self {
        MultiProducer {
            shared,
            cached_gate: AtomicU64::new(start),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.capacity() as usize
    }

    /// A read-only view of positions and fill level, usable from any thread.
    pub fn gauge(&self) -> Gauge {
        self.shared.gauge()
    }

    /// Claims `n` sequences (waiting for room with the ring's strategy), fills each slot in
    /// sequence order, then marks all `n` published. Returns the last sequence. The `n`
    /// sequences are contiguous; other producers' sequences come before or after them.
    /// `Err(Halted)` when the ring is closed, halted or abandoned.
    ///
    /// # Panics
    /// Unless `1 <= n <= capacity`. A panic in `fill` halts the ring (the sequences it
    /// claimed could never be published).
    #[inline]
    pub fn publish_batch(&self, n: usize, fill: impl FnMut(&mut T, u64)) -> Result<u64, Halted> {
        self.check_batch(n);
        let first = self.claim(n as u64, true).map_err(|_| Halted)?;
        Ok(self.fill_and_publish(first, n as u64, fill))
    }

    /// Publishes one event; see [`MultiProducer::publish_batch`].
    #[inline]
    pub fn publish(&self, fill: impl FnOnce(&mut T, u64)) -> Result<u64, Halted> {
        let mut fill = Some(fill);
        self.publish_batch(1, |slot, sequence| {
            (fill.take().expect("called once"))(slot, sequence)
        })
    }

    /// Publishes `n` events only if there is room now; never waits for consumers (it may
    /// retry its compare-and-swap while other producers claim).
    #[inline]
    pub fn try_publish_batch(
        &self,
        n: usize,
        fill: impl FnMut(&mut T, u64),
    ) -> Result<u64, TryPublishError> {
        self.check_batch(n);
        if self.is_halted() {
            return Err(TryPublishError::Halted);
        }
        let first = self.claim(n as u64, false)?;
        Ok(self.fill_and_publish(first, n as u64, fill))
    }

    /// Closes the ring for every handle (idempotent): claims fail from now on, and consumers
    /// stop once they have handled every sequence claimed before.
    pub fn close(&self) {
        // Pairs with the Acquire loads of `closed` and the cursor in `Shared::closed_at`.
        self.shared.cursor.fetch_or_acq_rel(CLOSED);
        self.shared.closed.store(true, Ordering::Release);
        self.shared.notify_all();
    }

    /// Whether the ring was closed (by [`MultiProducer::close`] or its last handle).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Halts the ring: every waiter (producers and consumers) returns at once.
    pub fn halt(&self) {
        halt(&self.shared);
    }

    /// Whether the ring was halted.
    #[inline]
    pub fn is_halted(&self) -> bool {
        self.shared.is_halted()
    }

    /// Whether a consumer abandoned the ring (see `Consumer::abandon`).
    pub fn is_abandoned(&self) -> bool {
        self.shared.is_abandoned()
    }

    /// Panics unless `1 <= n <= capacity`.
    #[inline]
    fn check_batch(&self, n: usize) {
        assert!(
            n >= 1 && n <= self.capacity(),
            "batch does not fit the ring"
        );
    }

    /// Steps 1–3: claims `n` sequences and returns the first. Waits for room if `wait`, else
    /// fails with `Full`; fails with `Halted` once closed (or, waiting, halted or abandoned).
    #[inline]
    fn claim(&self, n: u64, wait: bool) -> Result<u64, TryPublishError> {
        let cursor = &self.shared.cursor;
        let mut current = cursor.load_acquire();
        loop {
            if current & CLOSED != 0 {
                return Err(TryPublishError::Halted);
            }
            let last = current + n;
            if !self.has_room(current, last) {
                if !wait {
                    return Err(TryPublishError::Full);
                }
                let cached = self.cached_gate.load(Ordering::Relaxed);
                let gate = wait_for_gate(&self.shared, last, cached)
                    .map_err(|Halted| TryPublishError::Halted)?;
                self.cached_gate.store(gate, Ordering::Relaxed);
                current = cursor.load_acquire();
                continue;
            }
            match cursor.compare_exchange_acq_rel(current, last) {
                Ok(_) => return Ok(current + 1),
                Err(seen) => current = seen,
            }
        }
    }

    /// Step 2: whether `last` may be claimed with the cursor at `current`.
    #[inline]
    fn has_room(&self, current: u64, last: u64) -> bool {
        let capacity = self.shared.capacity();
        if last <= self.cached_gate.load(Ordering::Relaxed) + capacity {
            return true;
        }
        let gate = minimum(&self.shared.consumers, current);
        self.cached_gate.store(gate, Ordering::Relaxed);
        last <= gate + capacity
    }

    /// Steps 4–6 for the claimed `first .. first + n`; returns the last sequence.
    #[inline]
    fn fill_and_publish(&self, first: u64, n: u64, mut fill: impl FnMut(&mut T, u64)) -> u64 {
        let last = first + n - 1;
        let halt_on_unwind = HaltOnUnwind(&self.shared);
        let slots = self.shared.view();
        for sequence in first..=last {
            let cell = slots.slot(sequence);
            // SAFETY: this handle's CAS claimed `sequence` (no other producer writes it), every
            // consumer has passed `sequence - capacity` (the gate checked before the CAS), and
            // its marker is not set yet, so no consumer reads it: this is the only reference.
            cell.with_mut(|slot| fill(unsafe { &mut *slot }, sequence));
        }
        std::mem::forget(halt_on_unwind);
        self.shared.published.mark(first, last);
        self.shared.notify(&self.shared.cursor);
        last
    }
}

impl<T> Clone for MultiProducer<T> {
    fn clone(&self) -> Self {
        self.shared.producers.fetch_add(1, Ordering::Relaxed);
        MultiProducer {
            shared: self.shared.clone(),
            cached_gate: AtomicU64::new(self.cached_gate.load(Ordering::Relaxed)),
        }
    }
}

impl<T> Drop for MultiProducer<T> {
    fn drop(&mut self) {
        // AcqRel: the last handle's close comes after every other handle's publishes.
        if self.shared.producers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }
}

/// Halts the ring if a `fill` panics between claim and publish (forgotten on success).
struct HaltOnUnwind<'a, T>(&'a Shared<T>);

impl<T> Drop for HaltOnUnwind<'_, T> {
    fn drop(&mut self) {
        halt(self.0);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_published_only_for_its_own_lap() {
        let published = Published::new(4, 1);
        assert_eq!(published.highest(0, 4), 0);
        published.mark(1, 2);
        assert_eq!(published.highest(0, 4), 2);
        published.mark(4, 4);
        assert_eq!(published.highest(0, 4), 2, "a gap at 3 stops the batch");
        published.mark(3, 3);
        assert_eq!(published.highest(2, 4), 4);
        assert_eq!(published.highest(2, 3), 3, "never past the upper bound");
        // The next lap: 5 shares a slot with 1, whose marker says round 1, not 2.
        assert_eq!(published.highest(4, 8), 4);
        published.mark(5, 5);
        assert_eq!(published.highest(4, 8), 5);
    }

    #[test]
    fn rounds_wrap_around_a_byte() {
        // A two-slot ring through 600 laps: the round byte wraps twice.
        let published = Published::new(2, 1);
        for first in (1..1200).step_by(2) {
            assert_eq!(published.highest(first - 1, first + 1), first - 1);
            published.mark(first, first);
            assert_eq!(published.highest(first - 1, first + 1), first);
            published.mark(first + 1, first + 1);
            assert_eq!(published.highest(first - 1, first + 1), first + 1);
        }
    }
}
