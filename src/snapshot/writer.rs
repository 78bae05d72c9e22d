//! The snapshot thread: takes captured states from the business logic and writes them, so the
//! slow disk work never pauses the business-logic thread.
//!
//! A snapshot is bound to its journal: before its file is written, the thread waits until the
//! journal holds the snapshot's sequence durably ([`JournalBinding`]), under every flush
//! policy, and records the journal's chain value there in the header. No snapshot is ever
//! durable ahead of the journal, so one beyond the journal's end can only mean lost data.

use super::store::SnapshotStore;
use super::SnapshotError;
use crate::journal::{retire_before, JournalRetention, Retired};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender as Sender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// A captured state on its way to disk.
#[derive(Debug)]
pub struct SnapshotJob {
    /// Last applied sequence.
    pub sequence: u64,
    /// State schema version.
    pub schema_version: u32,
    /// State hash at capture.
    pub state_hash: u64,
    /// The encoded state, followed by the engine's exactly-once section.
    pub state: Vec<u8>,
    /// Bytes of `state` that are the processor's state (the rest is the exactly-once section).
    pub state_len: usize,
    /// Asked for (a snapshot control message): its outcome is recorded for the asker.
    pub requested: bool,
}

/// Counters about snapshots, readable from any thread.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    /// Snapshots written.
    pub written: AtomicU64,
    /// Sequence of the newest snapshot written.
    pub last_sequence: AtomicU64,
    /// Business-logic pause of the last capture, ns.
    pub last_pause_ns: AtomicU64,
    /// Longest business-logic pause of any capture, ns.
    pub max_pause_ns: AtomicU64,
    /// Time the snapshot replica's last capture took on its own thread, ns (no pause of the
    /// business logic).
    pub last_replica_capture_ns: AtomicU64,
    /// Time the last write took (file, fsync, rename, dir fsync), ns.
    pub last_write_ns: AtomicU64,
    /// Size of the last snapshot's state, bytes.
    pub last_state_bytes: AtomicU64,
    /// Captures skipped because the previous one was still being written.
    pub skipped: AtomicU64,
    /// Writes that failed (logged).
    pub failed: AtomicU64,
    /// The outcome of the newest requested snapshot: `sequence << 1 | written` (0: none yet).
    requested_outcome: AtomicU64,
    /// Journal segments retired (moved or deleted) by journal retention.
    pub segments_retired: AtomicU64,
    /// Retention passes that failed (logged; the segments stay and the next pass retries).
    pub retention_failed: AtomicU64,
}

impl SnapshotStats {
    /// Records how a requested snapshot ended (the newest sequence wins).
    pub(crate) fn record_requested(&self, sequence: u64, written: bool) {
        let outcome = (sequence << 1) | u64::from(written);
        self.requested_outcome.fetch_max(outcome, Ordering::Release);
    }

    /// How the requested snapshot at `sequence` ended: `Some(true)` written (durable),
    /// `Some(false)` failed, `None` not yet known. A later requested snapshot's outcome
    /// replaces it; then `Some(true)` if a snapshot at or after `sequence` was written.
    #[cfg(feature = "net")]
    pub(crate) fn requested_outcome(&self, sequence: u64) -> Option<bool> {
        let outcome = self.requested_outcome.load(Ordering::Acquire);
        match (outcome >> 1).cmp(&sequence) {
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Equal => Some(outcome & 1 == 1),
            std::cmp::Ordering::Greater => {
                Some(self.last_sequence.load(Ordering::Relaxed) >= sequence)
            }
        }
    }

    /// Records a capture pause.
    pub fn record_pause(&self, pause_ns: u64) {
        self.last_pause_ns.store(pause_ns, Ordering::Relaxed);
        self.max_pause_ns.fetch_max(pause_ns, Ordering::Relaxed);
    }

    /// Records a capture by the snapshot replica (its own thread; nothing live paused).
    pub(crate) fn record_replica_capture(&self, capture_ns: u64) {
        self.last_replica_capture_ns
            .store(capture_ns, Ordering::Relaxed);
    }
}

/// What the snapshot thread needs from the journal before it publishes a snapshot.
pub(crate) trait JournalBinding: Send + 'static {
    /// Waits until the journal holds `sequence` durably and returns its chain value there.
    /// An error means the snapshot must not be written.
    fn bind(&mut self, sequence: u64) -> Result<u32, SnapshotError>;
}

/// Journal retention as the snapshot thread applies it, after each snapshot is published
/// and old ones are pruned (`journal::retire_before`).
#[derive(Debug, Clone)]
pub(crate) struct Retention {
    /// The journal directory.
    pub(crate) journal_dir: PathBuf,
    /// The policy (`Keep` does nothing).
    pub(crate) policy: JournalRetention,
}

impl Retention {
    /// Retires the segments wholly before the oldest snapshot `store` retains.
    fn run(&self, store: &SnapshotStore, stats: &SnapshotStats) {
        if self.policy == JournalRetention::Keep {
            return;
        }
        let result =
            store
                .list()
                .map_err(|e| e.to_string())
                .and_then(|files| match files.first() {
                    Some(oldest) => retire_before(&self.journal_dir, &self.policy, oldest.sequence)
                        .map_err(|e| e.to_string()),
                    None => Ok(Retired::default()),
                });
        match result {
            Ok(retired) => {
                stats
                    .segments_retired
                    .fetch_add(retired.segments as u64, Ordering::Relaxed);
            }
            Err(error) => {
                stats.retention_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, policy = %self.policy,
                    "journal retention failed; the segments stay, the next snapshot retries");
            }
        }
    }
}

/// Captures the business logic may have handed over and not yet had back: one waiting, one
/// being written. As many capture buffers are kept for reuse.
const CAPTURE_BUFFERS: usize = 2;
/// Capacity each capture buffer starts with; one grows when a state outgrows it.
const INITIAL_CAPTURE_BYTES: usize = 4096;

/// The buffers states are captured into, reused: the business logic takes one to capture
/// into, and the snapshot thread gives it back once it is written. Made at start; the logic
/// thread allocates for a capture only when the state has outgrown the buffer (the state's
/// largest size so far), never per message. Up to [`CAPTURE_BUFFERS`] of them stay
/// allocated, each as large as the largest state captured into it.
#[derive(Debug)]
pub(crate) struct CaptureBuffers {
    free: Mutex<Vec<Vec<u8>>>,
}

impl CaptureBuffers {
    fn new() -> Self {
        let mut free = Vec::with_capacity(CAPTURE_BUFFERS);
        free.resize_with(CAPTURE_BUFFERS, || {
            Vec::with_capacity(INITIAL_CAPTURE_BYTES)
        });
        Self {
            free: Mutex::new(free),
        }
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // Pushes and pops only: a panic cannot leave the list half-changed.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free buffer, empty; `None` when every kept one is still handed over.
    fn take(&self) -> Option<Vec<u8>> {
        self.free().pop()
    }

    /// Gives a buffer back for reuse (dropped if as many as are kept are already free: one
    /// made for a requested snapshot while both kept ones were busy).
    fn give(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let mut free = self.free();
        if free.len() < CAPTURE_BUFFERS {
            free.push(buffer);
        }
    }
}

/// The running snapshot thread and the sending end used by the business logic.
pub struct SnapshotWriter {
    sender: Option<Sender<SnapshotJob>>,
    handle: Option<JoinHandle<()>>,
    stats: Arc<SnapshotStats>,
    buffers: Arc<CaptureBuffers>,
}

impl SnapshotWriter {
    /// Starts the snapshot thread writing into `store`, each snapshot once `journal` holds
    /// its sequence durably, then applying `retention`. At most one capture waits while
    /// another is being written; more are skipped (counted), never queued without bound.
    pub(crate) fn spawn(
        store: SnapshotStore,
        mut journal: impl JournalBinding,
        retention: Retention,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let stats = Arc::new(SnapshotStats::default());
        let buffers = Arc::new(CaptureBuffers::new());
        let (s2, b2) = (stats.clone(), buffers.clone());
        let handle = std::thread::Builder::new()
            .name("keel-snapshot".into())
            .spawn(move || {
                let stats = (&*s2, &*b2);
                write_loop(&store, &mut journal, &receiver, stats, &retention);
            })?;
        Ok(SnapshotWriter {
            sender: Some(sender),
            handle: Some(handle),
            stats,
            buffers,
        })
    }

    /// A handle for the business-logic thread.
    pub fn sender(&self) -> SnapshotSender {
        SnapshotSender {
            sender: self.sender.clone().expect("writer running"),
            stats: self.stats.clone(),
            buffers: self.buffers.clone(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Arc<SnapshotStats> {
        self.stats.clone()
    }

    /// Waits until every sent snapshot is written, then stops the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.sender = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(
    store: &SnapshotStore,
    journal: &mut impl JournalBinding,
    receiver: &Receiver<SnapshotJob>,
    (stats, buffers): (&SnapshotStats, &CaptureBuffers),
    retention: &Retention,
) {
    // A pass at start finishes one a crash interrupted, and applies a policy just chosen.
    retention.run(store, stats);
    for job in receiver {
        let start = Instant::now();
        let result = journal.bind(job.sequence).and_then(|chain| {
            let (state, dedup) = job.state.split_at(job.state_len);
            let path = store.write_with_dedup(
                job.sequence,
                chain,
                (job.schema_version, job.state_hash),
                state,
                dedup,
            )?;
            store.prune().map(|_| path)
        });
        let result_ok = result.is_ok();
        match result {
            Ok(path) => {
                let ns = start.elapsed().as_nanos() as u64;
                // Before the counters: a host that sees `last_sequence` sees the pass done.
                retention.run(store, stats);
                stats.written.fetch_add(1, Ordering::Relaxed);
                stats.last_sequence.store(job.sequence, Ordering::Relaxed);
                stats.last_write_ns.store(ns, Ordering::Relaxed);
                stats
                    .last_state_bytes
                    .store(job.state.len() as u64, Ordering::Relaxed);
                tracing::info!(path = %path.display(), bytes = job.state.len(), write_ms = ns / 1_000_000, "snapshot written");
            }
            Err(e) => log_failure(stats, job.sequence, &e),
        }
        if job.requested {
            stats.record_requested(job.sequence, result_ok);
        }
        buffers.give(job.state);
    }
}

fn log_failure(stats: &SnapshotStats, sequence: u64, error: &SnapshotError) {
    stats.failed.fetch_add(1, Ordering::Relaxed);
    tracing::error!(sequence, %error, "snapshot write failed; the journal still holds everything");
}

/// The business logic's end of the snapshot thread.
#[derive(Clone)]
pub struct SnapshotSender {
    sender: Sender<SnapshotJob>,
    stats: Arc<SnapshotStats>,
    buffers: Arc<CaptureBuffers>,
}

impl SnapshotSender {
    /// Hands a capture over without waiting; if the writer is still busy it is skipped
    /// (counted and logged). Returns whether it was handed over.
    pub fn offer(&self, job: SnapshotJob) -> bool {
        match self.sender.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(job)) => {
                self.skip(job.sequence);
                self.buffers.give(job.state);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Counts and logs a capture at `sequence` skipped because the writer is still busy with
    /// earlier ones.
    pub fn skip(&self, sequence: u64) {
        self.stats.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            sequence,
            "snapshot skipped: previous one still being written"
        );
    }

    /// A capture buffer to serialize a state into (empty, with the capacity of the largest
    /// state captured into it), or `None` while the writer still holds every kept buffer:
    /// one capture waiting and one being written.
    pub fn take_buffer(&self) -> Option<Vec<u8>> {
        self.buffers.take()
    }

    /// Gives back a capture buffer that was not handed over (a failed capture).
    pub fn give_buffer(&self, buffer: Vec<u8>) {
        self.buffers.give(buffer);
    }

    /// Hands a capture over, waiting for room (shutdown and explicit requests).
    pub fn send(&self, job: SnapshotJob) -> bool {
        self.sender.send(job).is_ok()
    }

    /// Counters.
    pub fn stats(&self) -> &SnapshotStats {
        &self.stats
    }
}
