//! The pre-allocated ring: fixed slots, one producer, a graph of batch consumers.
//!
//! Slots are created once by a factory (LMAX's `EventFactory`) and reused forever; the producer
//! writes into a claimed slot in place and publishes by advancing the cursor. Consumers take
//! every available sequence as one batch and advance their own [`Sequence`] once per batch. The
//! producer never overwrites a slot until *every* consumer has passed it, so the gating set is
//! complete by construction. This file holds all of the ring's `unsafe`.

use super::sequence::{minimum, Sequence};
use super::sync::{AtomicBool, SlotCell};
use super::wait::{wait_until, Signal, WaitStrategy};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Identifies a consumer while the ring is being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerId(usize);

/// Why a wait ended without events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// A batch of this many events was handled.
    Batch(u64),
    /// The deadline passed with nothing new.
    Timeout,
    /// The producer closed the ring and this consumer has handled everything published.
    Closed,
    /// The ring was halted (a fatal error elsewhere); stop now.
    Halted,
}

/// The ring was halted while the producer waited for space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ring halted")]
pub struct Halted;

/// Why a non-blocking publish did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryPublishError {
    /// Not enough free slots right now (back-pressure).
    #[error("ring full")]
    Full,
    /// The ring was halted.
    #[error("ring halted")]
    Halted,
}

struct Shared<T> {
    slots: Box<[SlotCell<T>]>,
    mask: u64,
    cursor: Arc<Sequence>,
    consumers: Box<[Arc<Sequence>]>,
    strategy: WaitStrategy,
    signal: Arc<Signal>,
    closed: AtomicBool,
    halted: AtomicBool,
}

// SAFETY: slots are only reached through `Producer` (one, `&mut self`, slots no consumer can
// see) and `Consumer` (shared reads of published slots); T crosses threads, so T: Send + Sync.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}
// SAFETY: as above; moving the ring moves owned T values between threads.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Shared<T> {
    /// The slots of sequences `first..first + n` as at most two contiguous runs: from
    /// `first`'s slot towards the end of the array, then from the array's start. Iterating
    /// runs instead of masking every sequence lets the compiler keep the loops tight (and
    /// vectorize simple ones). Panics unless `n <= capacity`.
    #[inline]
    fn runs(&self, first: u64, n: u64) -> (&[SlotCell<T>], &[SlotCell<T>]) {
        let slots = &self.slots[..];
        let start = (first & self.mask) as usize;
        let n = n as usize;
        let (tail, head) = slots.split_at(start);
        if n <= head.len() {
            (&head[..n], &[])
        } else {
            (head, &tail[..n - head.len()])
        }
    }
}

/// Builds a ring and its consumer graph. Capacity must be a power of two.
pub struct RingBuilder {
    capacity: usize,
    strategy: WaitStrategy,
    start_after: u64,
    signal: Arc<Signal>,
    dependencies: Vec<(Vec<ConsumerId>, Vec<Arc<Sequence>>)>,
}

impl RingBuilder {
    /// A ring of `capacity` slots (a power of two, at least 1).
    pub fn new(capacity: usize) -> Self {
        assert!(
            capacity.is_power_of_two(),
            "ring capacity {capacity} is not a power of two"
        );
        RingBuilder {
            capacity,
            strategy: WaitStrategy::default(),
            start_after: 0,
            signal: Arc::new(Signal::default()),
            dependencies: Vec::new(),
        }
    }

    /// The wait strategy of every thread that waits on this ring.
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The first published sequence will be `sequence + 1` (resume after a recovered journal).
    pub fn start_after(mut self, sequence: u64) -> Self {
        self.start_after = sequence;
        self
    }

    /// Shares `signal` with other rings, so one notification wakes waiters on any of them
    /// (needed when a consumer is gated on another ring's sequence).
    pub fn signal(mut self, signal: Arc<Signal>) -> Self {
        self.signal = signal;
        self
    }

    /// Adds a consumer that sees a sequence only after every consumer in `after` has handled it
    /// (or, with `after` empty, as soon as the producer publishes it).
    pub fn add_consumer(&mut self, after: &[ConsumerId]) -> ConsumerId {
        self.add_consumer_gated(after, &[])
    }

    /// Like [`RingBuilder::add_consumer`], and also gated on `external` sequences that belong
    /// to other stages (for example another ring's consumer). Their owners must notify the
    /// signal this ring uses (see [`RingBuilder::signal`]).
    pub fn add_consumer_gated(
        &mut self,
        after: &[ConsumerId],
        external: &[Arc<Sequence>],
    ) -> ConsumerId {
        assert!(
            after.iter().all(|id| id.0 < self.dependencies.len()),
            "unknown consumer"
        );
        self.dependencies.push((after.to_vec(), external.to_vec()));
        ConsumerId(self.dependencies.len() - 1)
    }

    /// Allocates every slot with `factory` and returns the producer and the consumers, in the
    /// order they were added.
    pub fn build<T>(self, mut factory: impl FnMut() -> T) -> (Producer<T>, Vec<Consumer<T>>) {
        let start = self.start_after;
        let own: Vec<Arc<Sequence>> = self
            .dependencies
            .iter()
            .map(|_| Arc::new(Sequence::new(start)))
            .collect();
        let shared = Arc::new(Shared {
            slots: (0..self.capacity)
                .map(|_| SlotCell::new(factory()))
                .collect(),
            mask: self.capacity as u64 - 1,
            cursor: Arc::new(Sequence::new(start)),
            consumers: own.clone().into_boxed_slice(),
            strategy: self.strategy,
            signal: self.signal,
            closed: AtomicBool::new(false),
            halted: AtomicBool::new(false),
        });
        let consumers = self
            .dependencies
            .iter()
            .enumerate()
            .map(|(i, (after, external))| {
                let mut gates: Vec<Arc<Sequence>> = if after.is_empty() {
                    vec![shared.cursor.clone()]
                } else {
                    after.iter().map(|id| own[id.0].clone()).collect()
                };
                gates.extend(external.iter().cloned());
                Consumer::new(shared.clone(), own[i].clone(), gates)
            })
            .collect();
        (Producer::new(shared, start), consumers)
    }
}

/// The single writer of a ring. Dropping it closes the ring.
///
/// Everything the hot path needs is a field of its own (a plain copy where the value never
/// changes), so publishing touches only the slots and the cursor's cache line, and the
/// consumers' lines only when the cached gate says the ring may be full.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// The published cursor (the same `Sequence` as `shared.cursor`, one pointer closer).
    cursor: Arc<Sequence>,
    /// Number of slots.
    capacity: u64,
    /// Whether waiters may park, so that each publication must signal them.
    may_park: bool,
    /// Next sequence to publish.
    next: u64,
    /// Last seen minimum of all consumer sequences (refreshed only when it looks full).
    cached_gate: u64,
    /// Last sequence stored to the cursor (a local copy: the cursor's line is never read here).
    published: u64,
}

impl<T> Producer<T> {
    fn new(shared: Arc<Shared<T>>, start: u64) -> Self {
        Producer {
            cursor: shared.cursor.clone(),
            capacity: shared.slots.len() as u64,
            may_park: shared.strategy.may_park(),
            shared,
            next: start + 1,
            cached_gate: start,
            published: start,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// The last published sequence.
    pub fn published(&self) -> u64 {
        self.next - 1
    }

    /// A read-only view of positions and fill level, usable from any thread.
    pub fn gauge(&self) -> Gauge {
        Gauge {
            cursor: self.shared.cursor.clone(),
            consumers: self.shared.consumers.clone(),
            capacity: self.capacity,
        }
    }

    /// Whether `n` more slots are free, by the cached gate or else by re-reading it.
    #[inline]
    fn has_room(&mut self, n: u64) -> bool {
        let last = self.next + n - 1;
        last <= self.cached_gate + self.capacity || self.refresh_gate(last)
    }

    /// Re-reads every consumer's position (once per lap of the ring at most, while they keep
    /// up); whether `last` fits now.
    #[inline(never)]
    fn refresh_gate(&mut self, last: u64) -> bool {
        self.cached_gate = minimum(&self.shared.consumers, self.next - 1);
        last <= self.cached_gate + self.capacity
    }

    /// `n` as a sequence count; panics unless `1 <= n <= capacity`.
    #[inline]
    fn batch_len(&self, n: usize) -> u64 {
        assert!(
            n >= 1 && n as u64 <= self.capacity,
            "batch of {n} does not fit the ring"
        );
        n as u64
    }

    /// Waits (with the ring's strategy) for `n` free slots, fills each in sequence order, then
    /// publishes all `n` with one Release store. Returns the last sequence published.
    #[inline]
    pub fn publish_batch(
        &mut self,
        n: usize,
        fill: impl FnMut(&mut T, u64),
    ) -> Result<u64, Halted> {
        let n = self.batch_len(n);
        if !self.has_room(n) {
            self.wait_for_room(n)?;
        }
        self.fill(n, fill);
        self.flush();
        Ok(self.next - 1)
    }

    /// Publishes one event; see [`Producer::publish_batch`].
    #[inline]
    pub fn publish(&mut self, fill: impl FnOnce(&mut T, u64)) -> Result<u64, Halted> {
        let sequence = self.write(fill)?;
        self.flush();
        Ok(sequence)
    }

    /// Publishes `n` events only if there is room now; never waits.
    #[inline]
    pub fn try_publish_batch(
        &mut self,
        n: usize,
        fill: impl FnMut(&mut T, u64),
    ) -> Result<u64, TryPublishError> {
        let n = self.batch_len(n);
        if self.shared.halted.load(Ordering::Relaxed) {
            return Err(TryPublishError::Halted);
        }
        if !self.has_room(n) {
            return Err(TryPublishError::Full);
        }
        self.fill(n, fill);
        self.flush();
        Ok(self.next - 1)
    }

    #[cold]
    #[inline(never)]
    fn wait_for_room(&mut self, n: u64) -> Result<(), Halted> {
        // Written-but-unpublished slots must become visible, or consumers could never free the
        // room we wait for.
        self.flush();
        let shared = &*self.shared;
        let last = self.next + n - 1;
        let capacity = self.capacity;
        let mut gate = self.cached_gate;
        wait_until(shared.strategy, &shared.signal, None, || {
            gate = minimum(&shared.consumers, last);
            last <= gate + capacity || shared.halted.load(Ordering::Relaxed)
        });
        self.cached_gate = gate;
        if last <= gate + capacity {
            Ok(())
        } else {
            Err(Halted)
        }
    }

    /// Fills the `n` slots from `next` on (room must have been checked) and moves `next`.
    #[inline]
    fn fill(&mut self, n: u64, mut fill: impl FnMut(&mut T, u64)) {
        let first = self.next;
        debug_assert!(first + n - 1 <= self.cached_gate + self.capacity);
        let (run, wrapped) = self.shared.runs(first, n);
        fill_run(run, first, &mut fill);
        fill_run(wrapped, first + run.len() as u64, &mut fill);
        self.next = first + n;
    }

    /// Fills the next slot but does not publish it yet: consumers see it after the next
    /// [`Producer::flush`] (or any publish). Lets a stage publish a whole batch of outputs with
    /// one Release store. Waits for room like `publish`. Returns the slot's sequence.
    #[inline]
    pub fn write(&mut self, fill: impl FnOnce(&mut T, u64)) -> Result<u64, Halted> {
        if !self.has_room(1) {
            self.wait_for_room(1)?;
        }
        let sequence = self.next;
        let cell = &self.shared.slots[(sequence & self.shared.mask) as usize];
        // SAFETY: every consumer has passed `sequence - capacity` (has_room/wait_for_room),
        // and `sequence` is not yet published, so no other reference to this slot exists.
        cell.with_mut(|slot| fill(unsafe { &mut *slot }, sequence));
        self.next = sequence + 1;
        Ok(sequence)
    }

    /// Publishes everything written so far (one Release store and one wake-up), if anything.
    #[inline]
    pub fn flush(&mut self) {
        let last = self.next - 1;
        if self.published != last {
            self.published = last;
            // Pairs with the Acquire loads of the cursor in `Consumer::process_batch`.
            self.cursor.store_release(last);
            if self.may_park {
                self.shared.signal.notify_all();
            }
        }
    }

    /// Halts the ring: every waiter (producer and consumers) returns at once.
    pub fn halt(&self) {
        halt(&self.shared);
    }
}

/// Calls `fill(slot, sequence)` for each slot of `run`, numbered from `first`.
/// The caller owns these slots: claimed (every consumer has passed them a lap ago) and not yet
/// published.
#[inline(always)]
fn fill_run<T>(run: &[SlotCell<T>], first: u64, fill: &mut impl FnMut(&mut T, u64)) {
    for (cell, sequence) in run.iter().zip(first..) {
        // SAFETY: the slot is claimed by the only producer and unpublished (see above), so no
        // other reference to it exists while `fill` holds this one.
        cell.with_mut(|slot| fill(unsafe { &mut *slot }, sequence));
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.flush();
        // Pairs with the Acquire load of `closed` in `Consumer::process_batch`: the final
        // cursor is visible to whoever sees `closed`.
        self.shared.closed.store(true, Ordering::Release);
        self.shared.signal.notify_all();
    }
}

fn halt<T>(shared: &Shared<T>) {
    shared.halted.store(true, Ordering::Release);
    shared.signal.notify_all();
}

/// One stage of the consumer graph: handles published events in batches.
///
/// The hot path reads its own position from a private copy, the gate it waits on (usually the
/// producer's cursor) once per batch, and the slots; it writes its shared `Sequence` once per
/// batch.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// This consumer's published position, read by the producer and downstream stages.
    sequence: Arc<Sequence>,
    /// A private copy of `sequence` (only this consumer writes it).
    processed: u64,
    /// The sequence this consumer may not pass: the cursor, or its first upstream consumer.
    gate: Arc<Sequence>,
    /// Further sequences it may not pass (more upstream consumers, external stages).
    more_gates: Box<[Arc<Sequence>]>,
    /// Whether waiters may park, so that each batch must signal them.
    may_park: bool,
}

impl<T> Consumer<T> {
    fn new(shared: Arc<Shared<T>>, sequence: Arc<Sequence>, mut gates: Vec<Arc<Sequence>>) -> Self {
        let gate = gates.remove(0);
        Consumer {
            processed: sequence.load_relaxed(),
            may_park: shared.strategy.may_park(),
            shared,
            sequence,
            gate,
            more_gates: gates.into_boxed_slice(),
        }
    }

    /// This consumer's position: the last sequence it has fully handled.
    pub fn sequence(&self) -> Arc<Sequence> {
        self.sequence.clone()
    }

    /// Halts the ring: every waiter returns at once (used on fatal errors).
    pub fn halt(&self) {
        halt(&self.shared);
    }

    /// Waits until events are available (or `deadline`, or close/halt), then hands every
    /// available event to `handler(event, sequence, end_of_batch)` in order and advances this
    /// consumer's sequence once. If `handler` fails, the sequence is not advanced.
    #[inline]
    pub fn process_batch<E>(
        &mut self,
        deadline: Option<Instant>,
        mut handler: impl FnMut(&T, u64, bool) -> Result<(), E>,
    ) -> Result<Poll, E> {
        let current = self.processed;
        let mut available = self.available();
        if available <= current {
            available = match self.wait_slow(current, deadline) {
                Ok(available) => available,
                Err(poll) => return Ok(poll),
            };
        }
        let (run, wrapped) = self.shared.runs(current + 1, available - current);
        handle_run(run, current + 1, available, &mut handler)?;
        handle_run(
            wrapped,
            current + 1 + run.len() as u64,
            available,
            &mut handler,
        )?;
        self.processed = available;
        // Pairs with the Acquire loads in `Producer::has_room` and downstream consumers.
        self.sequence.store_release(available);
        if self.may_park {
            self.shared.signal.notify_all();
        }
        Ok(Poll::Batch(available - current))
    }

    /// The highest sequence every gate has passed (Acquire loads).
    #[inline]
    fn available(&self) -> u64 {
        let first = self.gate.load_acquire();
        minimum(&self.more_gates, first)
    }

    #[cold]
    #[inline(never)]
    fn wait_slow(&self, current: u64, deadline: Option<Instant>) -> Result<u64, Poll> {
        let shared = &*self.shared;
        let mut available = current;
        let mut closed = false;
        wait_until(shared.strategy, &shared.signal, deadline, || {
            available = self.available();
            if available > current {
                return true;
            }
            // Read `closed` before the cursor: a close implies the cursor is final.
            closed =
                shared.closed.load(Ordering::Acquire) && current == shared.cursor.load_acquire();
            closed || shared.halted.load(Ordering::Relaxed)
        });
        if shared.halted.load(Ordering::Acquire) {
            Err(Poll::Halted)
        } else if available > current {
            Ok(available)
        } else if closed {
            Err(Poll::Closed)
        } else {
            Err(Poll::Timeout)
        }
    }
}

/// Calls `handler(event, sequence, sequence == last)` for each slot of `run`, numbered from
/// `first`, stopping at the first error. The slots must be published and passed by every gate.
#[inline(always)]
fn handle_run<T, E>(
    run: &[SlotCell<T>],
    first: u64,
    last: u64,
    handler: &mut impl FnMut(&T, u64, bool) -> Result<(), E>,
) -> Result<(), E> {
    for (cell, sequence) in run.iter().zip(first..) {
        // SAFETY: the slot is published and handled by every upstream stage (see above); the
        // producer cannot reuse it until this consumer's sequence passes it, so only shared
        // references to it exist.
        cell.with(|event| handler(unsafe { &*event }, sequence, sequence == last))?;
    }
    Ok(())
}

/// Read-only positions of a ring, for monitoring from any thread.
#[derive(Clone)]
pub struct Gauge {
    cursor: Arc<Sequence>,
    consumers: Box<[Arc<Sequence>]>,
    capacity: u64,
}

impl Gauge {
    /// Last published sequence.
    pub fn published(&self) -> u64 {
        self.cursor.load_acquire()
    }

    /// Events published but not yet handled by every consumer.
    pub fn fill(&self) -> u64 {
        let slowest = minimum(&self.consumers, u64::MAX);
        self.published()
            .saturating_sub(slowest.min(self.published()))
    }

    /// Number of slots.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}
