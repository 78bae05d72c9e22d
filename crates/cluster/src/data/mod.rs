//! The data plane: journal shipping, following, acknowledgements, commit and promotion, on
//! std threads and std TCP (docs/REPLICATION.md, "Data plane").
//!
//! Module map: `frame` (the wire frames, pure), `wire` (frames over a TCP stream), `log`
//! (reading a node's journal for shipping, as journaled bytes, and probing), `terms` (the terms file), `commit` (ack policies), `local` (the node's engine as
//! the data plane drives it), `common` (finding the common prefix of two journals), `follower`
//! (a follower's side of a leader's connection), `shipper` (a leader's side, one per
//! follower), `leader` (the leader's commit and its shippers), `transfer` (a snapshot on the
//! wire, both sides), `install` (installing a received snapshot, crash safe).

pub mod commit;
pub(crate) mod common;
pub(crate) mod follower;
pub mod frame;
pub mod install;
pub(crate) mod leader;
pub(crate) mod local;
pub mod log;
pub(crate) mod shipper;
pub mod terms;
pub(crate) mod transfer;
pub mod wire;

pub use commit::{AckPolicy, ParseAckPolicyError};
pub use local::{
    decode_term_record, MakeProcessor, ResponseSink, TERM_RECORD_BYTES, TERM_RECORD_KIND,
};

/// Why a data-plane step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The engine failed to start, halt or take input.
    #[error(transparent)]
    Engine(#[from] keel::Error),
    /// The engine refused a record.
    #[error(transparent)]
    Submit(#[from] keel::engine::SubmitError),
    /// Truncating the journal failed.
    #[error(transparent)]
    Journal(#[from] keel::journal::JournalError),
    /// Quarantining snapshots failed.
    #[error(transparent)]
    Snapshot(#[from] keel::snapshot::SnapshotError),
    /// Reading the journal failed.
    #[error(transparent)]
    Log(#[from] log::LogError),
    /// The terms file could not be read or written.
    #[error("terms file: {0}")]
    Io(#[from] std::io::Error),
    /// The connection failed.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// A received record is malformed.
    #[error(transparent)]
    Record(#[from] keel::journal::Damage),
    /// A received record does not continue this journal.
    #[error("record {sequence} does not continue the journal (next {next}, chain {chain:#010x}, record's prev_crc {prev_crc:#010x})")]
    Discontinuous {
        /// The record's sequence.
        sequence: u64,
        /// The sequence expected.
        next: u64,
        /// This journal's chain value.
        chain: u32,
        /// The record's `prev_crc`.
        prev_crc: u32,
    },
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The peer's term is stale (it leads no more) or this node's is.
    #[error("stale term {term} (fence {fence})")]
    StaleTerm {
        /// The term presented.
        term: u64,
        /// The fence it failed.
        fence: u64,
    },
    /// Asked to remove committed records.
    #[error("truncation after {after} is below the commit {commit}")]
    BelowCommit {
        /// The requested truncation point.
        after: u64,
        /// The known commit.
        commit: u64,
    },
    /// The peer needs records this journal no longer holds: a snapshot transfer follows.
    #[error("the journal starts at {first_sequence}: records before it need a snapshot transfer")]
    NeedsSnapshot {
        /// The journal's first sequence.
        first_sequence: u64,
    },
    /// A peer needs a snapshot and none can be sent yet.
    #[error("no snapshot to send: {reason}")]
    NoSnapshot {
        /// Why.
        reason: String,
    },
    /// A received snapshot is refused (damaged in transit, or not one this node can start
    /// from); nothing was changed.
    #[error("received snapshot refused: {0}")]
    BadSnapshot(String),
    /// Asked to install a snapshot that would drop records this node knows are committed.
    #[error("snapshot {sequence} is below the commit {commit} this node holds")]
    SnapshotBelowCommit {
        /// The snapshot's sequence.
        sequence: u64,
        /// The commit this node holds records up to.
        commit: u64,
    },
    /// A bounded wait ran out.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The engine is not running (halted between restarts).
    #[error("engine stopped")]
    EngineStopped,
    /// Superseded: a newer term or a shutdown ended this step.
    #[error("superseded")]
    Superseded,
}
