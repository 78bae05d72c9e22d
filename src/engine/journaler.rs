//! The journaler stage: appends each batch from the input ring, applies the flush policy once
//! per batch (group commit), then advances its sequence, which gates the business logic.

use super::message::Envelope;
use super::metrics::JournalCounters;
use super::wake::WakeSlot;
use crate::journal::{
    DurableWaker, FlushPolicy, JournalError, JournalSyncHandle, JournalWriter, Record,
};
use crate::ring::{Consumer, Poll, Sequence};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the journaler stage writes. [`JournalWriter`] is the real one; tests can substitute a
/// sink that fails on demand.
pub trait JournalSink: Send + 'static {
    /// Appends one record (no sync).
    fn append(&mut self, record: &Record<'_>) -> Result<(), JournalError>;
    /// End of a batch: apply the flush policy.
    fn end_batch(&mut self) -> Result<(), JournalError>;
    /// Idle: sync if the interval policy says it is due.
    fn tick(&mut self) -> Result<(), JournalError>;
    /// Unconditional durable sync (shutdown).
    fn sync(&mut self) -> Result<(), JournalError>;
    /// The durable sequence when it advances on its own after `end_batch` returns (group
    /// commit on another thread); the business logic is then gated on it. `None` (the
    /// default): a batch is durable per the policy when `end_batch` returns.
    fn durable(&self) -> Option<Arc<Sequence>> {
        None
    }
    /// Whom to wake when [`Self::durable`] advances: called once at start when `durable`
    /// is `Some`. A sink with a durable sequence must call [`DurableWaker::wake`] after each
    /// advance (forwarding to [`JournalWriter::set_durable_waker`] does), or threads gated on
    /// it, and in apply-ahead mode the responses it releases, wait.
    fn set_durable_waker(&mut self, _waker: DurableWaker) {}
    /// A handle the snapshot thread uses to make the journal durable up to a snapshot's
    /// sequence under a policy that does not sync every batch (`none`, `interval:MS`), so no
    /// snapshot is durable ahead of the journal. `None` (the default): such a snapshot waits
    /// for the journaler's final sync at shutdown.
    fn sync_handle(&self) -> Option<JournalSyncHandle> {
        None
    }
}

/// How often an idle journaler must call `tick` under `policy` (`None`: never): for
/// `interval:MS`, to sync; for `batch`, to notice a failed group commit while no batch comes.
pub(crate) fn tick_interval(policy: FlushPolicy) -> Option<Duration> {
    match policy {
        FlushPolicy::IntervalMs(ms) => Some(Duration::from_millis(u64::from(ms))),
        FlushPolicy::Batch => Some(Duration::from_millis(10)),
        FlushPolicy::None => None,
    }
}

impl JournalSink for JournalWriter {
    #[inline]
    fn append(&mut self, record: &Record<'_>) -> Result<(), JournalError> {
        JournalWriter::append(self, record)
    }
    fn end_batch(&mut self) -> Result<(), JournalError> {
        JournalWriter::end_batch(self)
    }
    fn tick(&mut self) -> Result<(), JournalError> {
        JournalWriter::tick(self)
    }
    fn sync(&mut self) -> Result<(), JournalError> {
        JournalWriter::sync(self)
    }
    fn durable(&self) -> Option<Arc<Sequence>> {
        self.durable_sequence()
    }
    fn set_durable_waker(&mut self, waker: DurableWaker) {
        JournalWriter::set_durable_waker(self, waker);
    }
    fn sync_handle(&self) -> Option<JournalSyncHandle> {
        Some(JournalWriter::sync_handle(self))
    }
}

/// The record that journals `envelope`.
#[inline]
pub(crate) fn record_of(envelope: &Envelope) -> Record<'_> {
    let h = &envelope.header;
    Record {
        sequence: h.sequence,
        timestamp_ns: h.timestamp_ns,
        session_id: h.session_id,
        correlation_id: h.correlation_id,
        kind: h.kind,
        version: h.version,
        payload: &envelope.payload[..envelope.len as usize],
    }
}

/// How the journaler ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The ring closed; everything appended was synced.
    Synced,
    /// Another stage halted the ring.
    Halted,
}

/// Runs the journaler until the ring closes or halts (then syncs). On a journal error the
/// ring is halted and the error returned: nothing after the last good batch is ever applied.
/// `releases` is set when this stage's sequence gates the responses (apply-ahead without a
/// group-commit syncer): it is woken after each batch, once the sequence has advanced. The
/// size of each batch goes to `counters`.
pub(crate) fn run<J: JournalSink>(
    mut journal: J,
    mut input: Consumer<Envelope>,
    interval: Option<Duration>,
    releases: Option<Arc<WakeSlot>>,
    counters: &JournalCounters,
) -> Result<Ended, JournalError> {
    loop {
        let deadline = interval.map(|i| Instant::now() + i);
        let poll = input.process_batch(deadline, |envelope, sequence, end_of_batch| {
            debug_assert_eq!(envelope.header.sequence, sequence);
            journal.append(&record_of(envelope))?;
            if end_of_batch {
                journal.end_batch()?;
            }
            Ok(())
        });
        match poll {
            // `process_batch` stored our sequence (Release) before returning: the responses
            // up to it are releasable now.
            Ok(Poll::Batch(records)) => {
                counters.batch_records.record_owned(records);
                if let Some(responses) = &releases {
                    responses.wake();
                }
            }
            Ok(Poll::Timeout) => journal.tick().inspect_err(|_| input.halt())?,
            Ok(Poll::Closed) => {
                journal.sync().inspect_err(|_| input.halt())?;
                return Ok(Ended::Synced);
            }
            // What was appended stays: make it durable (`Engine::halt`).
            Ok(Poll::Halted) => {
                journal.sync()?;
                return Ok(Ended::Halted);
            }
            Err(e) => {
                input.halt();
                return Err(e);
            }
        }
    }
}
