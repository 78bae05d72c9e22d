//! What a running engine has done, for monitoring: read at any time from counters the stages
//! keep off their hot paths.
//!
//! Each stage records only what it already knows, into its own relaxed atomics (no lock, no
//! allocation): the journaler stage the size of each batch, the journal's I/O the duration of
//! each sync and of each segment preparation, the business logic its rejections by reason,
//! its failures and the apply time of every 64th message (by sequence). The ring positions,
//! the snapshot counters and the network's counters are read where they already are.
//! [`Metrics::read`] gathers them into a [`MetricsSnapshot`].

mod histogram;
mod timed_io;

pub(crate) use histogram::Log2Counts;
pub use histogram::Log2Histogram;
pub(crate) use timed_io::TimedIo;

use super::message::Status;
use crate::ring::{Gauge, Sequence};
use crate::snapshot::SnapshotStats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
#[cfg(feature = "net")]
use std::sync::OnceLock;
use std::time::Instant;

/// One message in this many (by sequence) has its apply time measured (two clock reads).
pub(crate) const APPLY_SAMPLE_EVERY: u64 = 64;
const _: () = assert!(
    APPLY_SAMPLE_EVERY.is_power_of_two(),
    "a mask picks the samples"
);

/// Rejection reasons counted one by one; larger codes are counted together.
const REASONS: usize = 256;

/// What the journal and its stage record.
#[derive(Debug, Default)]
pub(crate) struct JournalCounters {
    /// Records per batch taken by the journaler stage (its only writer).
    pub(crate) batch_records: Log2Counts,
    /// Duration of each journal sync (msync of appended records), ns.
    pub(crate) sync_ns: Log2Counts,
    /// Duration of each spare segment's preparation (allocate, fill, map, pre-fault), ns.
    pub(crate) segment_prep_ns: Log2Counts,
}

/// What the business-logic thread records (it is the only writer: plain load + store).
#[derive(Debug)]
pub(crate) struct LogicCounters {
    rejected: [AtomicU64; REASONS],
    rejected_other: AtomicU64,
    failed: AtomicU64,
    /// Apply time of the sampled messages, ns (the business logic is its only writer).
    pub(crate) apply_ns: Log2Counts,
}

impl Default for LogicCounters {
    fn default() -> Self {
        LogicCounters {
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            rejected_other: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            apply_ns: Log2Counts::default(),
        }
    }
}

/// Adds one to a counter only its owner thread writes (no read-modify-write instruction).
#[inline]
fn bump(cell: &AtomicU64) {
    cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl LogicCounters {
    /// Counts one outcome (nothing for an accepted message: accepted = applied − the rest).
    #[inline]
    pub(crate) fn record(&self, status: Status, reason: u32) {
        match status {
            Status::Accepted => {}
            Status::Rejected => match self.rejected.get(reason as usize) {
                Some(cell) => bump(cell),
                None => bump(&self.rejected_other),
            },
            Status::Failed => bump(&self.failed),
            // A duplicate refused by the exactly-once table: nothing was applied.
            Status::AlreadyAnswered => {}
        }
    }
}

/// What the stages record, shared with them from the start.
#[derive(Debug, Default)]
pub(crate) struct Recorders {
    pub(crate) journal: JournalCounters,
    pub(crate) logic: LogicCounters,
}

/// Where the pipeline's positions are read.
pub(crate) struct Positions {
    pub(crate) input: Gauge,
    pub(crate) journaled: Arc<Sequence>,
    pub(crate) durable: Arc<Sequence>,
    pub(crate) applied: Arc<Sequence>,
    pub(crate) output: Option<Gauge>,
    /// The snapshot replica's last applied sequence, when the engine has one.
    pub(crate) replica: Option<Arc<Sequence>>,
}

struct Inner {
    recorders: Arc<Recorders>,
    positions: Positions,
    snapshots: Arc<SnapshotStats>,
    #[cfg(feature = "net")]
    net: OnceLock<Arc<crate::net::Counters>>,
    started: Instant,
}

/// A read-only handle on a running engine's counters ([`Engine::metrics`](super::Engine::metrics)):
/// cheap to clone, usable from any thread, valid after the engine stopped (it then reads the
/// final values). Reading never disturbs the engine's threads.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The engine's figures at one moment ([`Metrics::read`]). Sequences are journal positions;
/// durations are in nanoseconds. An engine over its own [`JournalSink`](super::JournalSink)
/// (`Engine::start_with_sink`) leaves the journal's sync and preparation times empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Time since the engine started, ns.
    pub uptime_ns: u64,
    /// Last sequence published into the input ring.
    pub published: u64,
    /// Last sequence the journaler stage appended.
    pub journaled: u64,
    /// Last sequence durable under the flush policy (the group-commit syncer's under `batch`;
    /// the journaler stage's otherwise).
    pub durable: u64,
    /// Last sequence the business logic applied.
    pub applied: u64,
    /// Input ring slots.
    pub input_capacity: u64,
    /// Input ring slots in use (published, not yet applied).
    pub input_fill: u64,
    /// Output ring slots (0 with `Producers::Multi` or `discard_responses`: no output ring).
    pub output_capacity: u64,
    /// Output ring slots in use (responses not yet taken by their reader).
    pub output_fill: u64,
    /// Records per journal batch.
    pub journal_batch_records: Log2Histogram,
    /// Duration of each journal sync (the snapshot thread's included), ns.
    pub journal_sync_ns: Log2Histogram,
    /// Duration of each spare segment's preparation, ns.
    pub segment_prep_ns: Log2Histogram,
    /// Apply time of every 64th message (sequence a multiple of 64), ns.
    pub apply_ns: Log2Histogram,
    /// Messages rejected, by reason code (`(reason, count)`, codes below 256, counts above 0).
    pub rejected_by_reason: Vec<(u32, u64)>,
    /// Messages rejected with a reason code of 256 or more.
    pub rejected_other: u64,
    /// Messages whose apply panicked.
    pub failed: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
    /// Snapshot writes that failed.
    pub snapshots_failed: u64,
    /// Snapshots skipped (the previous one was still being written).
    pub snapshots_skipped: u64,
    /// Sequence of the newest snapshot written.
    pub snapshot_sequence: u64,
    /// Last sequence the snapshot replica applied (0 without a replica; see
    /// [`Engine::start_with_replica`](super::Engine::start_with_replica)). `applied` less this
    /// is how far it is behind.
    pub replica_applied: u64,
    /// Time the snapshot replica's last capture took on its own thread, ns (it pauses nothing
    /// live; 0 without a replica).
    pub replica_capture_ns: u64,
    /// Business-logic pause of the last snapshot capture, ns (0 with a snapshot replica).
    pub snapshot_capture_ns: u64,
    /// Longest business-logic pause of any snapshot capture, ns.
    pub snapshot_capture_max_ns: u64,
    /// Duration of the last snapshot write (file, fsync, rename, directory fsync), ns.
    pub snapshot_write_ns: u64,
    /// Size of the last snapshot's state, bytes.
    pub snapshot_state_bytes: u64,
    /// Journal segments retired (archived or deleted) by journal retention.
    pub segments_retired: u64,
    /// Journal retention passes that failed (logged; the next pass retries).
    pub retention_failed: u64,
    /// The network server's counters, once a server serves the engine.
    #[cfg(feature = "net")]
    pub net: Option<crate::net::NetStats>,
}

impl MetricsSnapshot {
    /// Messages rejected since the engine started, whatever the reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_by_reason.iter().map(|(_, n)| n).sum::<u64>() + self.rejected_other
    }
}

impl Metrics {
    pub(crate) fn new(
        recorders: Arc<Recorders>,
        positions: Positions,
        snapshots: Arc<SnapshotStats>,
    ) -> Self {
        Metrics(Arc::new(Inner {
            recorders,
            positions,
            snapshots,
            #[cfg(feature = "net")]
            net: OnceLock::new(),
            started: Instant::now(),
        }))
    }

    /// The network server's counters, shown from now on (the first server only).
    #[cfg(feature = "net")]
    pub(crate) fn attach_net(&self, counters: Arc<crate::net::Counters>) {
        let _ = self.0.net.set(counters);
    }

    /// The snapshot counters (the network thread answers snapshot requests from them).
    #[cfg(feature = "net")]
    pub(crate) fn snapshot_stats(&self) -> &Arc<SnapshotStats> {
        &self.0.snapshots
    }

    /// The last sequence the local journal holds durably (under the flush policy), now: one
    /// Acquire load, no allocation (a replication thread polls it to compute its commit).
    /// Never held back by a commit gate.
    pub fn durable_sequence(&self) -> u64 {
        self.0.positions.durable.load_acquire()
    }

    /// The last sequence the business logic applied, now: one Acquire load.
    pub fn applied_sequence(&self) -> u64 {
        self.0.positions.applied.load_acquire()
    }

    /// Every figure, now. Allocates the returned value (call it from a monitoring thread).
    pub fn read(&self) -> MetricsSnapshot {
        let inner = &*self.0;
        let p = &inner.positions;
        let applied = p.applied.load_acquire();
        let published = p.input.published();
        let journal = &inner.recorders.journal;
        let logic = &inner.recorders.logic;
        let load = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let s = &inner.snapshots;
        MetricsSnapshot {
            uptime_ns: inner.started.elapsed().as_nanos() as u64,
            published,
            journaled: p.journaled.load_acquire(),
            durable: p.durable.load_acquire(),
            applied,
            input_capacity: p.input.capacity(),
            input_fill: published.saturating_sub(applied),
            output_capacity: p.output.as_ref().map_or(0, Gauge::capacity),
            output_fill: p.output.as_ref().map_or(0, Gauge::fill),
            journal_batch_records: journal.batch_records.read(),
            journal_sync_ns: journal.sync_ns.read(),
            segment_prep_ns: journal.segment_prep_ns.read(),
            apply_ns: logic.apply_ns.read(),
            rejected_by_reason: (0..REASONS)
                .map(|r| (r as u32, load(&logic.rejected[r])))
                .filter(|&(_, n)| n > 0)
                .collect(),
            rejected_other: load(&logic.rejected_other),
            failed: load(&logic.failed),
            snapshots_written: load(&s.written),
            snapshots_failed: load(&s.failed),
            snapshots_skipped: load(&s.skipped),
            snapshot_sequence: load(&s.last_sequence),
            replica_applied: p.replica.as_ref().map_or(0, |r| r.load_acquire()),
            replica_capture_ns: load(&s.last_replica_capture_ns),
            snapshot_capture_ns: load(&s.last_pause_ns),
            snapshot_capture_max_ns: load(&s.max_pause_ns),
            snapshot_write_ns: load(&s.last_write_ns),
            snapshot_state_bytes: load(&s.last_state_bytes),
            segments_retired: load(&s.segments_retired),
            retention_failed: load(&s.retention_failed),
            #[cfg(feature = "net")]
            net: inner.net.get().map(|c| c.snapshot()),
        }
    }
}
