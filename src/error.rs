//! The top-level error: one enum that every area's error converts into.

use crate::journal::JournalError;
use crate::snapshot::{SnapshotError, UnboundSnapshot};

/// A `Config` that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {0}")]
pub struct ConfigError(pub String);

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
    /// Recovery found the journal inconsistent with what the engine expected.
    #[error("recovery: {0}")]
    Recovery(String),
    /// An engine thread died.
    #[error("engine thread {0} panicked")]
    ThreadPanicked(&'static str),
}
