//! Snapshots: the processor's whole state at a message boundary, so restart replays only the
//! journal after it.
//!
//! The business-logic thread only *captures* (serializes) the state; a snapshot thread writes
//! it (temporary file, fsync, rename, directory fsync) and prunes old ones. At startup the
//! newest valid snapshot at or before the journal's end is restored; a corrupt one falls back
//! to an older one, or to a full replay, with a warning — never to data loss.

mod binding;
mod format;
mod store;
mod writer;

pub use binding::UnboundSnapshot;
pub use binding::{judge, Judged, Vouch};
pub use format::{SnapshotHeader, HEADER_BYTES};
pub use store::read_header_of;
pub use store::{
    file_name, load_file, LoadedSnapshot, SnapshotFile, SnapshotStore,
    DEFAULT_SNAPSHOT_MAX_STATE_BYTES, QUARANTINE_DIR,
};
pub(crate) use writer::SnapshotStats;
pub(crate) use writer::{JournalBinding, Retention};
pub(crate) use writer::{SnapshotJob, SnapshotSender, SnapshotWriter};

use crate::codec::{self, CodecError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;

/// Snapshot failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// File system error.
    #[error("snapshot i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The file is unusable (bad checksum, truncated, wrong format).
    #[error("snapshot {path} is corrupt: {reason}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state is larger than the configured limit (`Config::snapshot_max_state_bytes`);
    /// the file was not read.
    #[error(
        "snapshot {path} holds {state_bytes} bytes of state, over the {max_state_bytes}-byte limit"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Bytes of state the file holds (its size less the header).
        state_bytes: u64,
        /// The limit.
        max_state_bytes: u64,
    },
    /// The journal does not hold the snapshot's sequence durably (the journal stopped first, or
    /// lost it): the snapshot is not published, since recovery could not vouch for it.
    #[error("snapshot at sequence {sequence} not written: {reason}")]
    NotJournaled {
        /// The snapshot's sequence.
        sequence: u64,
        /// Why.
        reason: String,
    },
    /// Making the journal durable or reading its chain value failed.
    #[error("snapshot: {0}")]
    Journal(#[from] crate::journal::JournalError),
    /// The state could not be decoded or upgraded by the processor.
    #[error("snapshot state rejected: {0}")]
    State(#[from] StateError),
}

/// A processor could not restore a saved state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The schema version is newer than this build, or has no registered upgrade.
    #[error("state schema version {found} is not supported (this build: {current})")]
    UnsupportedSchema {
        /// Version in the snapshot.
        found: u32,
        /// Version this build writes.
        current: u32,
    },
    /// The bytes do not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The bytes decode, but not to a state this processor could hold: inconsistent, or
    /// beyond its limits.
    #[error("invalid state: {0}")]
    Invalid(String),
    /// `Processor::load_state` panicked (caught by recovery, which then skips the snapshot).
    #[error("load_state panicked: {0}")]
    Panicked(String),
}

/// Saves a serde state with keel's codec: the usual body of `Processor::save_state`.
pub fn save_serde<T: Serialize>(state: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    codec::encode_to_vec(state, out).map(|_| ())
}

/// Loads a serde state saved by [`save_serde`].
pub fn load_serde<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    Ok(codec::decode_state(bytes)?)
}
