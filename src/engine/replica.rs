//! The snapshot replica: a second processor that follows the journal on its own thread and
//! takes every snapshot, so the business-logic thread never pauses to capture one
//! (`Engine::start_with_replica`, docs/SNAPSHOTS.md).
//!
//! The replica starts from the snapshot startup recovery restored (none: the initial state),
//! then applies every journaled record after it with the same `apply_once` (exactly-once table, then `apply_message`) as live apply
//! and recovery: the same journal gives the same state, so its snapshot at sequence S is the
//! live state at S, byte for byte. It captures at the same sequences the business logic would
//! (every `snapshot_interval_messages`, on a snapshot request, at shutdown) and hands each
//! capture to the same snapshot writer, so the journal binding, the fsync order, pruning and
//! retention are unchanged. It reads the journal's files, never its rings: a replica that
//! falls behind delays its own snapshots, never the live path.

use super::dedup::{apply_once, DedupLimits, DedupTable};
use super::journal_gate::JournalerExit;
use super::logic::Snapshots;
use super::processor::Processor;
use super::recovery::{message_of, restore_snapshot};
use crate::journal::{JournalError, JournalReader};
use crate::ring::Sequence;
use crate::snapshot::{Judged, SnapshotStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Builds the replica's processor, on the replica's thread, in its initial state.
pub(crate) type MakeReplica<P> = Box<dyn FnOnce() -> P + Send>;

/// How long the replica sleeps when it has read everything the journal holds. Its snapshots
/// are at most this much later; the live path never waits for it.
const IDLE: Duration = Duration::from_millis(1);

/// Where the replica starts: the snapshot recovery restored (`None`: a full replay).
pub(crate) struct ReplicaStart {
    pub(crate) store: SnapshotStore,
    pub(crate) snapshot: Option<Judged>,
    pub(crate) journal_dir: PathBuf,
    pub(crate) max_response_bytes: usize,
    pub(crate) prefault: bool,
    pub(crate) dedup: DedupLimits,
}

/// Why the replica stopped taking snapshots before the journal ended.
#[derive(Debug, thiserror::Error)]
enum ReplicaError {
    #[error("cannot restore the snapshot at {expected} recovery restored (got {restored})")]
    Restore { expected: u64, restored: u64 },
    #[error("restoring its snapshot failed: {0}")]
    Recovery(#[from] crate::error::Error),
    #[error("reading the journal failed: {0}")]
    Journal(#[from] JournalError),
    #[error("the journal holds {found} where {expected} was expected")]
    Gap { expected: u64, found: u64 },
}

/// Runs the replica until the journaler has ended and every record it appended is applied,
/// then takes the shutdown snapshot if the journaler ended cleanly. `position` is the last
/// sequence the replica applied (metrics). A failure is logged and counted as a failed
/// snapshot; the engine runs on without snapshots.
pub(crate) fn run<P: Processor>(
    make: MakeReplica<P>,
    start: ReplicaStart,
    mut snapshots: Snapshots,
    exit: Arc<JournalerExit>,
    position: Arc<Sequence>,
) {
    lower_priority();
    let mut processor = make();
    if start.prefault {
        processor.prefault();
    }
    let mut dedup = DedupTable::new(start.dedup);
    let state = (&mut processor, &mut dedup);
    if let Err(error) = follow(state, &start, &mut snapshots, &exit, &position) {
        let stats = snapshots.sender.stats();
        stats
            .failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(%error, applied = position.load_acquire(),
            "snapshot replica stopped: no more snapshots until restart (the journal holds everything)");
        return;
    }
    let last = position.load_acquire();
    if exit.ended() == Some(true) && snapshots.on_shutdown && snapshots.last_sequence < last {
        snapshots.capture((&processor, &dedup), last, true, false);
    }
}

/// Restores the start snapshot, then applies the journal after it until the journaler ended
/// and the journal is read to its end.
fn follow<P: Processor>(
    (processor, dedup): (&mut P, &mut DedupTable),
    start: &ReplicaStart,
    snapshots: &mut Snapshots,
    exit: &JournalerExit,
    position: &Sequence,
) -> Result<(), ReplicaError> {
    let from = restore((processor, dedup), start)?;
    position.store_release(from);
    let mut reader = JournalReader::open(&start.journal_dir)?;
    reader.seek(from + 1)?;
    let mut scratch = vec![0u8; start.max_response_bytes];
    let mut expected = from + 1;
    loop {
        // Read before draining: once it says ended, the drain sees every appended record.
        let ended = exit.ended().is_some();
        while let Some(record) = reader.next()? {
            if record.sequence != expected {
                return Err(ReplicaError::Gap {
                    expected,
                    found: record.sequence,
                });
            }
            let message = message_of(&record);
            apply_once(processor, dedup, &message, &mut scratch);
            position.store_release(expected);
            snapshots.after((processor, dedup), expected, message.header.kind);
            expected += 1;
        }
        if ended {
            return Ok(());
        }
        std::thread::sleep(IDLE);
    }
}

/// Restores the snapshot recovery restored; returns its sequence (0: none).
fn restore<P: Processor>(
    state: (&mut P, &mut DedupTable),
    start: &ReplicaStart,
) -> Result<u64, ReplicaError> {
    let Some(judged) = &start.snapshot else {
        return Ok(0);
    };
    let expected = judged.file.sequence;
    let restored = restore_snapshot(&start.store, std::slice::from_ref(judged), state)?;
    if restored != expected {
        return Err(ReplicaError::Restore { expected, restored });
    }
    Ok(restored)
}

/// The replica's thread's scheduling priority (`nice`): where cores are shared, the live
/// threads win them and the replica takes what they leave (it falls behind, and only its
/// snapshots are later).
const REPLICA_NICE: i32 = 10;

/// Lowers this thread's priority to [`REPLICA_NICE`] (Linux: per thread). Best effort: a
/// refusal is logged and the replica runs at the normal priority.
fn lower_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours; on
    // Linux PRIO_PROCESS with a thread id sets that thread's nice value only.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, REPLICA_NICE)
    };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "snapshot replica: priority not lowered");
    }
}
