//! Group commit off the append path: under `batch`, a syncer thread makes appended bytes
//! durable while the writer goes on appending the next batch.
//!
//! A synchronous commit costs append + sync per batch; here the two overlap, so the journal
//! runs at the slower of the two rates instead of their sum, and every sync covers whatever
//! batches were appended while the previous one ran (the group grows with the load). The
//! durable sequence is published through [`Committer::durable`] (a ring [`Sequence`]); the
//! business logic is gated on it, so nothing is applied or answered before it is durable.
//!
//! Order is kept: one syncer, ranges of one segment synced in order, and at a rollover the
//! writer drains the syncer and syncs the old segment's records before it makes the new
//! segment durable, so the old segment's records are durable before anything in the new one
//! can be (`docs/journal_format.md`, "Writing and rollover").

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use super::io::SegmentIo;
use super::segment::SegmentSync;
use crate::ring::{Sequence, Signal};

/// Whom the syncer wakes each time the durable sequence advances: the ring [`Signal`] that
/// threads gated on it park on, plus an optional hook for a thread that sleeps elsewhere (the
/// engine's response wake hook in apply-ahead mode, where durability releases responses).
#[derive(Clone)]
pub struct DurableWaker {
    signal: Arc<Signal>,
    hook: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl DurableWaker {
    /// Wakes the threads parked on `signal`.
    pub fn new(signal: Arc<Signal>) -> Self {
        DurableWaker { signal, hook: None }
    }

    /// Also calls `hook` (after the signal). It runs on the syncer thread once per group
    /// commit: it must be cheap and must not block.
    pub fn with_hook(self, hook: Arc<dyn Fn() + Send + Sync>) -> Self {
        DurableWaker {
            hook: Some(hook),
            ..self
        }
    }

    /// Wakes everyone after `durable` advanced (call after its Release store).
    #[inline]
    pub fn wake(&self, durable: &Sequence) {
        self.signal.notify(durable);
        if let Some(hook) = &self.hook {
            hook();
        }
    }
}

impl DurableWaker {
    /// Advances the commit `gate` to `to` (never backwards: a smaller `to` changes nothing),
    /// then wakes everyone gated on it. Returns whether the gate moved. For the holder of an
    /// engine's `Config::commit_gate`, with the waker from `Engine::commit_gate_waker`.
    pub fn advance(&self, gate: &Sequence, to: u64) -> bool {
        let mut current = gate.load_acquire();
        while current < to {
            match gate.compare_exchange_acq_rel(current, to) {
                Ok(_) => {
                    self.wake(gate);
                    return true;
                }
                Err(seen) => current = seen,
            }
        }
        false
    }
}

impl From<Arc<Signal>> for DurableWaker {
    fn from(signal: Arc<Signal>) -> Self {
        DurableWaker::new(signal)
    }
}

impl std::fmt::Debug for DurableWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableWaker")
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

/// The syncer thread and what it shares with the writer.
#[derive(Debug)]
pub(crate) struct Committer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    io: Arc<dyn SegmentIo>,
    state: Mutex<State>,
    /// The syncer waits here for work.
    work: Condvar,
    /// The writer waits here for the syncer to catch up (`drain`).
    caught_up: Condvar,
    durable: Arc<Sequence>,
    /// Woken whenever `durable` advances (the ring the business logic parks on, and in
    /// apply-ahead mode the owner of the responses it releases).
    waker: OnceLock<DurableWaker>,
}

#[derive(Debug)]
struct State {
    /// The segment being appended to.
    segment: SegmentSync,
    /// Everything before this offset of `segment` is durable.
    synced_to: usize,
    /// The writer asked for everything before this offset to be made durable...
    requested_to: usize,
    /// ...which holds every record up to this sequence.
    requested_sequence: u64,
    /// A sync is running (outside the lock).
    busy: bool,
    /// The first sync failure; the writer turns it into a poisoned journal.
    failed: Option<(io::ErrorKind, String)>,
    stop: bool,
}

impl Committer {
    /// Starts the syncer for `segment`, durable up to `synced_to` (sequence `durable_sequence`).
    pub(crate) fn start(
        io: Arc<dyn SegmentIo>,
        segment: SegmentSync,
        synced_to: usize,
        durable_sequence: u64,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            io,
            state: Mutex::new(State {
                segment,
                synced_to,
                requested_to: synced_to,
                requested_sequence: durable_sequence,
                busy: false,
                failed: None,
                stop: false,
            }),
            work: Condvar::new(),
            caught_up: Condvar::new(),
            durable: Arc::new(Sequence::new(durable_sequence)),
            waker: OnceLock::new(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("keel-journal-sync".into())
            .spawn(move || for_thread.run())?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The last durable sequence.
    pub(crate) fn durable(&self) -> &Arc<Sequence> {
        &self.shared.durable
    }

    /// Whom to wake when the durable sequence advances (set once).
    pub(crate) fn set_waker(&self, waker: DurableWaker) {
        let _ = self.shared.waker.set(waker);
    }

    /// Asks for everything before `to` in the current segment, up to `sequence`, to be made
    /// durable. Returns at once (no allocation, one uncontended lock); an earlier sync failure
    /// is returned instead. Wakes the syncer only if it is not syncing: a busy one takes the
    /// request under the lock when its sync ends (a wake-up is a `futex` call even with
    /// nobody waiting: at 100 k records/s, one per batch cost ~79 k calls a second, of which
    /// ~50 found the syncer waiting).
    pub(crate) fn request(&self, to: usize, sequence: u64) -> io::Result<()> {
        let mut state = self.shared.lock();
        failure(&state)?;
        state.requested_to = to;
        state.requested_sequence = sequence;
        let idle = !state.busy;
        drop(state);
        if idle {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// The first sync failure, if any (cheap; for an idle writer's periodic check).
    pub(crate) fn check(&self) -> io::Result<()> {
        failure(&self.shared.lock())
    }

    /// Waits until everything requested is durable. Returns how far the current segment is.
    pub(crate) fn drain(&self) -> io::Result<usize> {
        let mut state = self.shared.lock();
        while state.failed.is_none() && (state.busy || state.synced_to < state.requested_to) {
            state = self
                .shared
                .caught_up
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        failure(&state)?;
        Ok(state.synced_to)
    }

    /// After a rollover (the syncer drained, the old segment sealed and synced by the writer):
    /// continue in `segment`, whose bytes before `synced_to` are durable, as is every record
    /// up to `durable_sequence`.
    pub(crate) fn switch(&self, segment: SegmentSync, synced_to: usize, durable_sequence: u64) {
        let mut state = self.shared.lock();
        debug_assert!(!state.busy && state.synced_to >= state.requested_to);
        state.segment = segment;
        state.synced_to = synced_to;
        state.requested_to = synced_to;
        state.requested_sequence = durable_sequence;
        drop(state);
        self.shared.publish(durable_sequence);
    }

    /// Records that the writer itself made everything up to `sequence` durable (a synchronous
    /// sync at rollover or shutdown), so the durable sequence reflects it.
    pub(crate) fn synced_by_writer(&self, synced_to: usize, sequence: u64) {
        let mut state = self.shared.lock();
        state.synced_to = state.synced_to.max(synced_to);
        state.requested_to = state.requested_to.max(synced_to);
        state.requested_sequence = state.requested_sequence.max(sequence);
        drop(state);
        self.shared.publish(sequence);
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn failure(state: &State) -> io::Result<()> {
    match &state.failed {
        None => Ok(()),
        Some((kind, text)) => Err(io::Error::new(*kind, text.clone())),
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, sequence: u64) {
        if sequence > self.durable.load_acquire() {
            // Pairs with the Acquire loads of whoever is gated on the durable sequence.
            self.durable.store_release(sequence);
            if let Some(waker) = self.waker.get() {
                waker.wake(&self.durable);
            }
        }
    }

    /// The syncer: takes everything requested so far, syncs it in one call, publishes.
    fn run(&self) {
        let mut state = self.lock();
        loop {
            if state.failed.is_none() && state.requested_to > state.synced_to {
                let (from, to) = (state.synced_to, state.requested_to);
                let sequence = state.requested_sequence;
                let segment = state.segment.clone();
                state.busy = true;
                drop(state);
                let result = self.io.sync_range(&segment, from, to - from);
                drop(segment);
                state = self.lock();
                state.busy = false;
                match result {
                    Ok(()) => {
                        state.synced_to = state.synced_to.max(to);
                        self.publish(sequence);
                    }
                    Err(err) => {
                        tracing::error!("journal: group-commit sync failed: {err}");
                        state.failed = Some((err.kind(), err.to_string()));
                    }
                }
                self.caught_up.notify_all();
            } else if state.stop {
                return;
            } else {
                self.caught_up.notify_all();
                state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}
