//! The top-level error: one enum that every area's error converts into.

use crate::journal::JournalError;
use crate::snapshot::{SnapshotError, UnboundSnapshot};

/// A `Config` that cannot work: which setting, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A ring capacity that is not a power of two.
    #[error("invalid config: {field} {value} is not a power of two")]
    NotPowerOfTwo {
        /// The `Config` field.
        field: &'static str,
        /// Its value.
        value: usize,
    },
    /// A limit outside the range the engine supports.
    #[error("invalid config: {field} {value} out of range {min}..={max}")]
    OutOfRange {
        /// The `Config` field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Journal segments too small to hold a message of the largest size.
    #[error(
        "invalid config: segment_size_bytes {segment_size_bytes} too small for \
         max_message_bytes {max_message_bytes} (needs at least {needed_bytes})"
    )]
    SegmentTooSmall {
        /// The configured segment size.
        segment_size_bytes: u64,
        /// The configured message limit.
        max_message_bytes: usize,
        /// The smallest segment size that works.
        needed_bytes: u64,
    },
    /// Built with `panic = "abort"` and the host did not accept that a processor panic aborts.
    #[error(
        "invalid config: built with panic = \"abort\": a processor panic would abort the \
         process instead of being answered Status::Failed; build with panic = \"unwind\" or \
         set Config::abort_on_processor_panic = true to accept that"
    )]
    PanicAborts,
    /// Two settings that cannot be combined.
    #[error("invalid config: {settings}: {reason}")]
    Incompatible {
        /// The settings in conflict.
        settings: &'static str,
        /// Why they cannot be combined.
        reason: &'static str,
    },
}

/// Recovery found the data directory inconsistent with itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A snapshot decoded, but to a state whose hash is not the one it recorded: the
    /// processor's `state_hash` is not stable, or `save_state`/`load_state` lose information.
    #[error("{path}: restored state hash {restored:#x} != recorded {recorded:#x}")]
    StateHashMismatch {
        /// The snapshot file.
        path: std::path::PathBuf,
        /// Hash of the state as loaded.
        restored: u64,
        /// Hash the snapshot recorded.
        recorded: u64,
    },
    /// `load_state` panicked, and resetting the processor to its initial state failed too.
    #[error("load_state panicked ({panic}) and the processor could not be reset")]
    ResetFailed {
        /// The panic's message.
        panic: String,
    },
    /// The journal ends before the sequence the writer recovered.
    #[error("journal ends at {journal_end} but the writer recovered up to {recovered}")]
    JournalShort {
        /// Last sequence the reader found.
        journal_end: u64,
        /// Last sequence the writer recovered.
        recovered: u64,
    },
    /// The journal starts after the sequence recovery needs, and no usable snapshot covers the
    /// records before its start (they were retired by journal retention, or removed): the
    /// journal alone no longer rebuilds the state, so nothing is replayed from the middle.
    #[error(
        "refusing to start: recovery needs sequence {needed} (no usable snapshot covers the \
         records before it), but the journal in {} starts at {found}: {history}. The journal \
         alone no longer rebuilds the state, and nothing was replayed. Restore a snapshot \
         taken at sequence {} or later into the snapshot directory, or put the segments \
         holding sequences {needed}..{found} back into the journal directory",
        journal_dir.display(), found.saturating_sub(1)
    )]
    JournalGap {
        /// The sequence recovery needs next.
        needed: u64,
        /// The sequence the journal has there (its first).
        found: u64,
        /// The journal directory.
        journal_dir: std::path::PathBuf,
        /// What happened to the records before `found`, from the retention marker.
        history: String,
    },
}

/// Anything that can stop the engine. Business rejections are never errors (see
/// [`crate::Outcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Journal I/O failed or the journal is corrupt.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A snapshot could not be written or read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A snapshot the journal cannot vouch for: acknowledged data is gone, so recovery refuses
    /// to start (the error names the snapshot, its sequence, the journal's end and what the
    /// operator can do).
    #[error(transparent)]
    UnboundSnapshot(#[from] UnboundSnapshot),
    /// Other I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Recovery found the data directory inconsistent with itself.
    #[error("recovery: {0}")]
    Recovery(#[from] RecoveryError),
    /// The engine was already shut down.
    #[error("engine already stopped")]
    Stopped,
    /// An engine thread died.
    #[error("engine thread {0} panicked")]
    ThreadPanicked(&'static str),
}
