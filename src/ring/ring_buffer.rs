//! The pre-allocated ring: fixed slots, one producer (or several: [`MultiProducer`]), a graph
//! of batch consumers.
//!
//! Slots are created once by a factory (LMAX's `EventFactory`) and reused forever; the producer
//! writes into a claimed slot in place and publishes by advancing the cursor. Consumers take
//! every available sequence as one batch and advance their own [`Sequence`] once per batch. The
//! producer never overwrites a slot until *every* consumer has passed it, so the gating set is
//! complete by construction. This file holds the ring's `unsafe`, but for the slot writes of
//! the multi-producer claim (`multi_producer.rs`).

use super::multi_producer::{self, MultiProducer, Published, CLOSED};
use super::sequence::{minimum, Sequence};
use super::sync::{prefetch_read, AtomicBool, AtomicUsize, SlotCell};
use super::wait::{wait_for, Check, Signal, WaitKey, WaitStrategy};
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

pub(super) struct Shared<T> {
    /// The ring's `mask + 1` slots from `slots[first_slot]` on, after a few never-used padding
    /// slots that put `slots[first_slot]` on a cache-line boundary (see [`allocate_slots`]).
    slots: Box<[SlotCell<T>]>,
    /// Index in `slots` of the slot that holds sequence `origin`.
    first_slot: usize,
    /// The first sequence the ring publishes (`start_after + 1`).
    origin: u64,
    mask: u64,
    /// One producer: the last published sequence. Several: the last claimed one, with
    /// [`CLOSED`] set once the ring is closed (see `multi_producer.rs`).
    pub(super) cursor: Arc<Sequence>,
    pub(super) consumers: Box<[Arc<Sequence>]>,
    strategy: WaitStrategy,
    signal: Arc<Signal>,
    pub(super) closed: AtomicBool,
    halted: AtomicBool,
    /// A consumer gave up reading (see [`Consumer::abandon`]): the producer stops waiting.
    abandoned: AtomicBool,
    /// Several producers: which claimed sequences are published (empty with one producer).
    pub(super) published: Published,
    /// Several producers: live [`MultiProducer`] handles (the last one closes the ring).
    pub(super) producers: AtomicUsize,
}

// SAFETY: slots are only reached through `Producer` (one, `&mut self`, slots no consumer can
// see), `MultiProducer` (slots its claim made its own, which no consumer can see yet) and
// `Consumer` (shared reads of published slots); T crosses threads, so T: Send + Sync.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}
// SAFETY: as above; moving the ring moves owned T values between threads.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Shared<T> {
    /// Number of slots in the ring (not counting padding).
    #[inline]
    pub(super) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The slot geometry copied out, for loops over many slots: held in locals, it is not
    /// reloaded after every slot write (a write through `*mut T` could alias `Shared`'s fields
    /// as far as the compiler knows).
    #[inline]
    pub(super) fn view(&self) -> Slots<'_, T> {
        Slots {
            slots: &self.slots,
            first_slot: self.first_slot,
            origin: self.origin,
            mask: self.mask,
        }
    }

    /// Wakes whoever is parked until `sequence` (just stored) advances.
    #[inline]
    pub(super) fn notify(&self, sequence: &Sequence) {
        if self.strategy.may_park() {
            self.signal.notify(sequence);
        }
    }

    /// Wakes every parked waiter (close, halt).
    pub(super) fn notify_all(&self) {
        self.signal.notify_all();
    }

    /// Whether the ring was halted (Acquire; pairs with the Release store in `halt`).
    #[inline]
    pub(super) fn is_halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    /// Whether a consumer abandoned the ring (Acquire; pairs with the store in `abandon`).
    #[inline]
    pub(super) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// A read-only view of positions and fill level.
    pub(super) fn gauge(&self) -> Gauge {
        Gauge {
            cursor: self.cursor.clone(),
            consumers: self.consumers.clone(),
            capacity: self.capacity(),
        }
    }

    /// Whether the ring is closed and `current` is its last sequence: nothing more will come.
    /// Reads `closed` before the cursor: a close implies the cursor is final.
    fn closed_at(&self, current: u64) -> bool {
        self.closed.load(Ordering::Acquire) && current == self.cursor.load_acquire() & !CLOSED
    }
}

/// Where each sequence's slot is: `Shared`'s slot geometry, by value.
pub(super) struct Slots<'a, T> {
    slots: &'a [SlotCell<T>],
    first_slot: usize,
    origin: u64,
    mask: u64,
}

impl<T> Clone for Slots<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Slots<'_, T> {}

impl<'a, T> Slots<'a, T> {
    /// Starts loading the cache lines of `first..=last` after the first one, up to
    /// [`PREFETCH_LINES`] lines into the batch (the handler's own load asks for the first).
    ///
    /// Without it a consumer fetched a batch's lines one after another: a burst of 10 `u64`s,
    /// which spans two lines, cost a whole cache-line transfer more than a burst of 8, while
    /// the `disruptor` crate's consumer paid nothing for the second line (`benches/ring.rs`,
    /// `spsc/keel/10`: 135 ns against the crate's 103 ns; with the prefetch, 84 ns).
    #[inline]
    fn prefetch(self, first: u64, last: u64) {
        self.each_line_after_the_first(first, last, |cell| prefetch_read(cell));
    }

    /// Calls `visit` with one slot in each cache line that `first..=last` reaches after the
    /// line of `first`, up to [`PREFETCH_LINES`] lines from `first`.
    #[inline]
    fn each_line_after_the_first(self, first: u64, last: u64, mut visit: impl FnMut(&SlotCell<T>)) {
        let line_of = |sequence| std::ptr::from_ref(self.slot(sequence)) as usize / CACHE_LINE;
        let per_line = (CACHE_LINE / std::mem::size_of::<SlotCell<T>>().max(1)).max(1) as u64;
        let end = last.min(first.saturating_add(per_line * PREFETCH_LINES - 1));
        let mut sequence = first.saturating_add(per_line);
        while sequence <= end {
            visit(self.slot(sequence));
            sequence += per_line;
        }
        // Stepping a line at a time from the middle of a line can skip the last one.
        if line_of(end) != line_of(first) {
            visit(self.slot(end));
        }
    }

    /// The slot of `sequence`: the ring starts with `origin` in `slots[first_slot]`, so a batch
    /// that starts a lap starts a cache line. Always in bounds:
    /// `first_slot + mask < slots.len()` (see [`allocate_slots`]).
    #[inline]
    pub(super) fn slot(self, sequence: u64) -> &'a SlotCell<T> {
        let index = self.first_slot + (sequence.wrapping_sub(self.origin) & self.mask) as usize;
        debug_assert!(index < self.slots.len());
        // SAFETY: index <= first_slot + mask < slots.len(), by construction in
        // `allocate_slots` and checked by the assert above.
        unsafe { self.slots.get_unchecked(index) }
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
    pub fn build<T>(self, factory: impl FnMut() -> T) -> (Producer<T>, Vec<Consumer<T>>) {
        let start = self.start_after;
        let (shared, consumers) = self.build_shared(factory, false);
        let producer = Producer {
            shared,
            next: start + 1,
            cached_gate: start,
        };
        (producer, consumers)
    }

    /// Like [`RingBuilder::build`], for several producers: returns the first
    /// [`MultiProducer`] handle (clone it for each producer thread) and the consumers. Each
    /// publish claims its sequences with a compare-and-swap and marks each slot published
    /// (the Disruptor's multi-producer sequencer); consumers read up to the highest sequence
    /// published without a gap. The ring closes when every handle is dropped, or at once with
    /// [`MultiProducer::close`].
    pub fn build_multi<T>(
        self,
        factory: impl FnMut() -> T,
    ) -> (MultiProducer<T>, Vec<Consumer<T>>) {
        let start = self.start_after;
        let (shared, consumers) = self.build_shared(factory, true);
        (MultiProducer::new(shared, start), consumers)
    }

    /// The slots, the shared state and the consumers of a ring with one producer or several.
    /// A first-stage consumer of a multi-producer ring does not wait on the cursor (the last
    /// claimed sequence) but on the slots' availability markers, up to it.
    fn build_shared<T>(
        self,
        mut factory: impl FnMut() -> T,
        multi: bool,
    ) -> (Arc<Shared<T>>, Vec<Consumer<T>>) {
        let start = self.start_after;
        let own: Vec<Arc<Sequence>> = self
            .dependencies
            .iter()
            .map(|_| Arc::new(Sequence::new(start)))
            .collect();
        let (slots, first_slot) = allocate_slots(self.capacity, &mut factory);
        let published = if multi {
            Published::new(self.capacity, start + 1)
        } else {
            Published::none()
        };
        let shared = Arc::new(Shared {
            slots,
            first_slot,
            origin: start + 1,
            mask: self.capacity as u64 - 1,
            cursor: Arc::new(Sequence::new(start)),
            consumers: own.clone().into_boxed_slice(),
            strategy: self.strategy,
            signal: self.signal,
            closed: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            published,
            producers: AtomicUsize::new(1),
        });
        let consumers = self
            .dependencies
            .iter()
            .enumerate()
            .map(|(i, (after, external))| {
                let reads_claims = multi && after.is_empty();
                let mut deps: Vec<Arc<Sequence>> = match (after.is_empty(), reads_claims) {
                    (true, true) => Vec::new(),
                    (true, false) => vec![shared.cursor.clone()],
                    (false, _) => after.iter().map(|id| own[id.0].clone()).collect(),
                };
                deps.extend(external.iter().cloned());
                Consumer {
                    shared: shared.clone(),
                    sequence: own[i].clone(),
                    dependencies: deps.into_boxed_slice(),
                    reads_claims,
                    max_batch: u64::MAX,
                }
            })
            .collect();
        (shared, consumers)
    }
}

/// Cache line size assumed for slot alignment.
const CACHE_LINE: usize = 64;

/// Most cache lines a consumer prefetches when it takes a batch (1 KiB): enough for bursts of
/// 128 `u64`s; past that the hardware's stream prefetcher has the pattern.
const PREFETCH_LINES: u64 = 16;

/// How many slots a ring of `capacity` asks its factory for: `capacity`, plus the padding
/// slots of `allocate_slots` (up to a cache line's worth). A caller that pre-allocates slot
/// resources must provide this many.
pub fn slots_allocated<T>(capacity: usize) -> usize {
    let size = std::mem::size_of::<SlotCell<T>>();
    let padding = if size == 0 || size >= CACHE_LINE {
        0
    } else {
        CACHE_LINE / size
    };
    capacity + padding
}

/// Creates `capacity` slots with `factory`, plus up to a cache line of padding slots in front,
/// and returns them with the index of the first ring slot: the first whose address is on a
/// cache-line boundary when the slot size allows one (else 0). A ring that starts on a line
/// puts every burst whose length and start are multiples of the slots per line on whole lines,
/// so producer and consumer share fewer lines at burst boundaries. The padding slots are made
/// by `factory` too but never used.
fn allocate_slots<T>(
    capacity: usize,
    factory: &mut impl FnMut() -> T,
) -> (Box<[SlotCell<T>]>, usize) {
    let size = std::mem::size_of::<SlotCell<T>>();
    let padding = slots_allocated::<T>(capacity) - capacity;
    let slots: Box<[SlotCell<T>]> = (0..capacity + padding)
        .map(|_| SlotCell::new(factory()))
        .collect();
    let to_boundary = (slots.as_ptr() as usize).wrapping_neg() % CACHE_LINE;
    let first_slot = if padding > 0 && to_boundary.is_multiple_of(size) {
        to_boundary / size
    } else {
        0
    };
    // `slot()` relies on this (to_boundary < CACHE_LINE, so first_slot <= padding).
    assert!(first_slot + capacity <= slots.len());
    (slots, first_slot)
}

/// The single writer of a ring. Dropping it closes the ring.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Next sequence to publish.
    next: u64,
    /// Last seen minimum of all consumer sequences (refreshed only when it looks full).
    cached_gate: u64,
}

impl<T> Producer<T> {
    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.capacity() as usize
    }

    /// The last published sequence.
    pub fn published(&self) -> u64 {
        self.next - 1
    }

    /// A read-only view of positions and fill level, usable from any thread.
    pub fn gauge(&self) -> Gauge {
        self.shared.gauge()
    }

    #[inline]
    fn has_room(&mut self, n: u64) -> bool {
        let capacity = self.shared.capacity();
        let last = self.next + n - 1;
        if last <= self.cached_gate + capacity {
            return true;
        }
        self.cached_gate = minimum(&self.shared.consumers, self.next - 1);
        last <= self.cached_gate + capacity
    }

    /// Waits (with the ring's strategy) for `n` free slots, fills each in sequence order, then
    /// publishes all `n` with one Release store. Returns the last sequence published.
    #[inline]
    pub fn publish_batch(
        &mut self,
        n: usize,
        fill: impl FnMut(&mut T, u64),
    ) -> Result<u64, Halted> {
        self.check_batch(n);
        if !self.has_room(n as u64) {
            self.wait_for_room(n as u64)?;
        }
        Ok(self.fill_and_publish(n as u64, fill))
    }

    /// Publishes one event; see [`Producer::publish_batch`].
    #[inline]
    pub fn publish(&mut self, fill: impl FnOnce(&mut T, u64)) -> Result<u64, Halted> {
        let mut fill = Some(fill);
        self.publish_batch(1, |slot, seq| {
            (fill.take().expect("called once"))(slot, seq)
        })
    }

    /// Publishes `n` events only if there is room now; never waits.
    #[inline]
    pub fn try_publish_batch(
        &mut self,
        n: usize,
        fill: impl FnMut(&mut T, u64),
    ) -> Result<u64, TryPublishError> {
        self.check_batch(n);
        if self.shared.halted.load(Ordering::Relaxed) {
            return Err(TryPublishError::Halted);
        }
        if !self.has_room(n as u64) {
            return Err(TryPublishError::Full);
        }
        Ok(self.fill_and_publish(n as u64, fill))
    }

    /// Panics unless `1 <= n <= capacity`. The panic is out of line and takes `n` by value: a
    /// formatted `assert!` takes `n`'s address, which kept the caller's `n` on the stack, one
    /// more store per publish.
    #[inline]
    fn check_batch(&self, n: usize) {
        if n == 0 || n > self.capacity() {
            batch_does_not_fit(n, self.capacity());
        }
    }

    /// Publishes what was written, then waits (with the ring's strategy) for room for `n`.
    #[inline]
    fn wait_for_room(&mut self, n: u64) -> Result<(), Halted> {
        // Written-but-unpublished slots must become visible, or consumers could never free the
        // room we wait for.
        self.flush();
        self.cached_gate = wait_for_gate(&self.shared, self.next + n - 1, self.cached_gate)?;
        Ok(())
    }

    #[inline]
    fn fill_and_publish(&mut self, n: u64, fill: impl FnMut(&mut T, u64)) -> u64 {
        self.fill(n, fill);
        let last = self.next - 1;
        self.publish_through(last);
        last
    }

    #[inline]
    fn fill(&mut self, n: u64, mut fill: impl FnMut(&mut T, u64)) {
        let first = self.next;
        let slots = self.shared.view();
        for sequence in first..first + n {
            debug_assert!(sequence <= self.cached_gate + self.shared.capacity());
            let cell = slots.slot(sequence);
            // SAFETY: every consumer has passed `sequence - capacity` (has_room/wait_for_room),
            // and `sequence` is not yet published, so no other reference to this slot exists.
            cell.with_mut(|slot| fill(unsafe { &mut *slot }, sequence));
        }
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
        let mut fill = Some(fill);
        self.fill(1, |slot, seq| {
            (fill.take().expect("called once"))(slot, seq)
        });
        Ok(self.next - 1)
    }

    /// Publishes everything written so far (one Release store and one wake-up), if anything.
    #[inline]
    pub fn flush(&mut self) {
        let last = self.next - 1;
        // Only this thread stores the cursor, so a Relaxed load reads back its own last store
        // (from its own cache: consumers only read the line). Comparing with it, rather than
        // with a copy kept in `self`, saves a store per publish: see `publish_through`.
        if self.shared.cursor.load_relaxed() != last {
            self.publish_through(last);
        }
    }

    /// Stores `last` to the cursor and wakes whoever is parked on it.
    ///
    /// The producer keeps no copy of what it published. Its fields live in memory, not in
    /// registers, because a panic on the publish path unwinds into `Drop`, which reads them;
    /// so each field written per publish is one more store queued behind the slot writes,
    /// which wait for their cache lines to come back from the consumer. Dropping that copy,
    /// and keeping `n` out of the batch-size panic, took `keel bench ring --burst 10` from
    /// 0.91x to parity with the `disruptor` crate (the README has the figures).
    #[inline]
    fn publish_through(&self, last: u64) {
        // Pairs with the Acquire loads of the cursor in `Consumer::process_batch`.
        self.shared.cursor.store_release(last);
        self.shared.notify(&self.shared.cursor);
    }

    /// Halts the ring: every waiter (producer and consumers) returns at once.
    pub fn halt(&self) {
        halt(&self.shared);
    }

    /// Whether the ring was halted. One Acquire load (pairs with the Release store in
    /// `halt`); cheap enough to call before every publish.
    #[inline]
    pub fn is_halted(&self) -> bool {
        self.shared.halted.load(Ordering::Acquire)
    }

    /// Whether a consumer abandoned the ring ([`Consumer::abandon`]). Once it has, a publish
    /// that would wait for room returns `Err(Halted)` instead of waiting, and the producer
    /// should stop publishing. One Acquire load (pairs with the Release store in `abandon`).
    #[inline]
    pub fn is_abandoned(&self) -> bool {
        self.shared.abandoned.load(Ordering::Acquire)
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

pub(super) fn halt<T>(shared: &Shared<T>) {
    shared.halted.store(true, Ordering::Release);
    shared.signal.notify_all();
}

#[cold]
#[inline(never)]
fn batch_does_not_fit(n: usize, capacity: usize) -> ! {
    panic!("batch of {n} does not fit the ring of {capacity}")
}

/// Waits until every consumer has passed `last - capacity` (so `last` may be written) and
/// returns the gate seen then, or `Halted` (also when a consumer abandoned the ring, or a
/// multi-producer ring was closed). Out of line, and given only the shared state and values,
/// not the producer.
#[cold]
#[inline(never)]
pub(super) fn wait_for_gate<T>(
    shared: &Shared<T>,
    last: u64,
    cached_gate: u64,
) -> Result<u64, Halted> {
    let capacity = shared.capacity();
    let mut gate = cached_gate;
    wait_for(shared.strategy, &shared.signal, None, || {
        let (slowest, key) = binding(&shared.consumers);
        gate = slowest.min(last);
        if last <= gate + capacity
            || shared.halted.load(Ordering::Relaxed)
            || shared.abandoned.load(Ordering::Relaxed)
            || shared.closed.load(Ordering::Relaxed)
        {
            Check::Ready
        } else {
            Check::BlockedOn(key)
        }
    });
    if last <= gate + capacity {
        Ok(gate)
    } else {
        Err(Halted)
    }
}

/// One stage of the consumer graph: handles published events in batches.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    sequence: Arc<Sequence>,
    dependencies: Box<[Arc<Sequence>]>,
    /// A first stage of a multi-producer ring: it reads the slots' availability markers
    /// (fixed at build time; `false` on every single-producer ring, which skips them).
    reads_claims: bool,
    /// The most events one [`Consumer::process_batch`] hands over before it advances this
    /// consumer's sequence (see [`Consumer::set_max_batch`]).
    max_batch: u64,
}

impl<T> Consumer<T> {
    /// This consumer's position: the last sequence it has fully handled.
    pub fn sequence(&self) -> Arc<Sequence> {
        self.sequence.clone()
    }

    /// Halts the ring: every waiter returns at once (used on fatal errors).
    pub fn halt(&self) {
        halt(&self.shared);
    }

    /// Caps the events one [`Consumer::process_batch`] hands over (unlimited by default), so
    /// that a stage far behind frees its slots, and lets the stages after it start, every
    /// `events` instead of once at the end of a backlog: the Disruptor's batch size limit.
    /// Panics if `events` is 0.
    pub fn set_max_batch(&mut self, events: usize) {
        assert!(events > 0, "a batch holds at least one event");
        self.max_batch = events as u64;
    }

    /// A handle that halts this ring from any thread (like [`Consumer::halt`]), for a stage
    /// whose consumer lives on another thread.
    pub(crate) fn halt_handle(&self) -> Arc<dyn Fn() + Send + Sync>
    where
        T: Send + Sync + 'static,
    {
        let shared = self.shared.clone();
        Arc::new(move || halt(&shared))
    }

    /// Tells the producer this consumer will read no more (its owner is going away): from now
    /// on the producer never waits for room, so it cannot block on a reader that is gone
    /// (rtrb's "abandoned"). Its waits return `Err(Halted)` and [`Producer::is_abandoned`]
    /// turns true; consumers are not woken or stopped.
    pub fn abandon(&self) {
        // Pairs with the Acquire load in `Producer::is_abandoned`.
        self.shared.abandoned.store(true, Ordering::Release);
        self.shared.signal.notify_all();
    }

    /// Waits until events are available (or `deadline`, or close/halt), then hands every
    /// available event (at most [`Consumer::set_max_batch`]'s cap) to
    /// `handler(event, sequence, end_of_batch)` in order and advances this consumer's sequence
    /// once. If `handler` fails, the sequence is not advanced.
    #[inline]
    pub fn process_batch<E>(
        &mut self,
        deadline: Option<Instant>,
        mut handler: impl FnMut(&T, u64, bool) -> Result<(), E>,
    ) -> Result<Poll, E> {
        let current = self.sequence.load_relaxed();
        let available = match self.wait(current, deadline) {
            Ok(available) => available.min(current.saturating_add(self.max_batch)),
            Err(poll) => return Ok(poll),
        };
        let slots = self.shared.view();
        if available > current + 1 {
            // A batch of one has no second line.
            slots.prefetch(current + 1, available);
        }
        for sequence in current + 1..=available {
            let cell = slots.slot(sequence);
            // SAFETY: current < sequence <= available, so the slot is published and handled by
            // every upstream stage; the producer cannot reuse it until our sequence passes it.
            cell.with(|event| handler(unsafe { &*event }, sequence, sequence == available))?;
        }
        // Pairs with the Acquire loads in `Producer::has_room` and downstream consumers.
        self.sequence.store_release(available);
        self.shared.notify(&self.sequence);
        Ok(Poll::Batch(available - current))
    }

    #[inline]
    fn wait(&self, current: u64, deadline: Option<Instant>) -> Result<u64, Poll> {
        let (available, _) = self.available(current);
        if available > current {
            return Ok(available);
        }
        self.wait_slow(current, deadline)
    }

    /// The last sequence this consumer may handle now and the key to park on until it moves:
    /// the binding dependency, and on a multi-producer ring's first stage the highest sequence
    /// published without a gap after `current`.
    #[inline]
    fn available(&self, current: u64) -> (u64, WaitKey) {
        let (available, key) = binding(&self.dependencies);
        if !self.reads_claims {
            return (available, key);
        }
        multi_producer::published_through(&self.shared, current, (available, key))
    }

    #[cold]
    fn wait_slow(&self, current: u64, deadline: Option<Instant>) -> Result<u64, Poll> {
        let shared = &*self.shared;
        let mut available = current;
        let mut closed = false;
        wait_for(shared.strategy, &shared.signal, deadline, || {
            let key;
            (available, key) = self.available(current);
            if available > current {
                return Check::Ready;
            }
            closed = shared.closed_at(current);
            if closed || shared.halted.load(Ordering::Relaxed) {
                Check::Ready
            } else {
                Check::BlockedOn(key)
            }
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

/// The smallest of `sequences` (Acquire loads) and the key to park on until it moves: of equal
/// values the last one, the most downstream (a durable gate trails its journaler). Like
/// [`minimum`] with the key added; `(u64::MAX, WaitKey::ANY)` when `sequences` is empty.
fn binding(sequences: &[Arc<Sequence>]) -> (u64, WaitKey) {
    // Most stages wait on one sequence: read it without the loop.
    if let [only] = sequences {
        return (only.load_acquire(), WaitKey::of(only));
    }
    let mut least = (u64::MAX, WaitKey::ANY);
    for sequence in sequences {
        let value = sequence.load_acquire();
        if value <= least.0 {
            least = (value, WaitKey::of(sequence));
        }
    }
    least
}

/// Read-only positions of a ring, for monitoring from any thread.
#[derive(Clone)]
pub struct Gauge {
    cursor: Arc<Sequence>,
    consumers: Box<[Arc<Sequence>]>,
    capacity: u64,
}

impl Gauge {
    /// Last published sequence (on a multi-producer ring: the last claimed one, which its
    /// producer may still be writing).
    pub fn published(&self) -> u64 {
        self.cursor.load_acquire() & !CLOSED
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sequence_starts_a_cache_line() {
        for start in [0, 41] {
            let mut builder = RingBuilder::new(64).start_after(start);
            builder.add_consumer(&[]);
            let (producer, _consumers) = builder.build(|| 0u64);
            let shared = producer.shared.view();
            let first = std::ptr::from_ref(shared.slot(start + 1)) as usize;
            assert_eq!(first % CACHE_LINE, 0);
            // A lap later the same slot again; the slots in between are distinct and in order.
            assert!(std::ptr::eq(
                shared.slot(start + 1),
                shared.slot(start + 65)
            ));
            let last = std::ptr::from_ref(shared.slot(start + 64)) as usize;
            assert_eq!(last - first, 63 * std::mem::size_of::<SlotCell<u64>>());
        }
    }

    #[test]
    fn a_capped_consumer_hands_over_at_most_its_cap_and_advances_after_each_batch() {
        let mut builder = RingBuilder::new(16);
        let first = builder.add_consumer(&[]);
        builder.add_consumer(&[first]);
        let (mut producer, mut consumers) = builder.build(|| 0u64);
        let mut next_stage = consumers.pop().expect("second stage");
        let mut capped = consumers.pop().expect("first stage");
        capped.set_max_batch(3);
        for value in 1..=10u64 {
            producer.publish(|slot, _| *slot = value).unwrap();
        }
        let mut batches = Vec::new();
        for _ in 0..4 {
            let mut seen = Vec::new();
            let poll = capped.process_batch(None, |value, sequence, end| {
                assert_eq!(*value, sequence);
                seen.push((sequence, end));
                Ok::<(), ()>(())
            });
            assert_eq!(poll, Ok(Poll::Batch(seen.len() as u64)));
            batches.push(seen);
            // The next stage may take what the capped one handed over, no more.
            let mut after = 0;
            next_stage
                .process_batch(None, |_, sequence, _| {
                    after = sequence;
                    Ok::<(), ()>(())
                })
                .unwrap();
            assert_eq!(after, capped.sequence().load_acquire());
        }
        let want: Vec<Vec<(u64, bool)>> = vec![
            vec![(1, false), (2, false), (3, true)],
            vec![(4, false), (5, false), (6, true)],
            vec![(7, false), (8, false), (9, true)],
            vec![(10, true)],
        ];
        assert_eq!(batches, want);
    }

    #[test]
    fn a_batch_prefetches_every_line_after_its_first_up_to_the_cap() {
        let mut builder = RingBuilder::new(256);
        builder.add_consumer(&[]);
        let (producer, _consumers) = builder.build(|| 0u64);
        let slots = producer.shared.view();
        let line = |cell: &SlotCell<u64>| std::ptr::from_ref(cell) as usize / CACHE_LINE;
        // Batches that start and end anywhere in a line, cross the ring's end, or pass the cap.
        for (first, last) in [
            (1, 1),
            (1, 8),
            (1, 9),
            (4, 13),
            (6, 17),
            (8, 9),
            (250, 262),
            (3, 300),
        ] {
            let mut seen = std::collections::BTreeSet::new();
            slots.each_line_after_the_first(first, last, |cell| {
                seen.insert(line(cell));
            });
            let capped = last.min(first + 8 * PREFETCH_LINES - 1);
            let want: std::collections::BTreeSet<usize> = (first..=capped)
                .map(|sequence| line(slots.slot(sequence)))
                .filter(|&l| l != line(slots.slot(first)))
                .collect();
            assert_eq!(seen, want, "batch {first}..={last}");
        }
    }

    #[test]
    fn slots_of_any_size_stay_in_bounds() {
        let mut builder = RingBuilder::new(8);
        builder.add_consumer(&[]);
        let (producer, _consumers) = builder.build(|| [0u8; 24]);
        let shared = &producer.shared;
        assert!(shared.first_slot + 8 <= shared.slots.len());
        let (producer, _consumers) = {
            let mut builder = RingBuilder::new(2);
            builder.add_consumer(&[]);
            builder.build(|| ())
        };
        assert_eq!(producer.shared.slots.len(), 2);
    }
}
