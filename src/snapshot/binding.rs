//! Whether the journal vouches for a snapshot: a snapshot is used only when the journal holds
//! its sequence with the chain value it recorded (`docs/fault_model.md`, "Snapshots are bound
//! to their journal"). One judgement for recovery, `keel replay verify` and accepting a loss.

use std::path::{Path, PathBuf};

use super::format::SnapshotHeader;
use super::store::{read_header_of, SnapshotFile};
use crate::journal::{chain_at, ChainAt, JournalError};

/// What the journal says about one snapshot.
///
/// Exhaustive on purpose: a tool that reports on snapshots must decide about every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vouch {
    /// The journal holds the snapshot's sequence with its chain value: usable.
    Bound,
    /// The header does not decode (corrupt, truncated, foreign): skipped for an older
    /// snapshot, unless its name lies beyond the journal's end ([`Vouch::BeyondEnd`]).
    Unreadable(String),
    /// A format 1 snapshot (written before the binding), which records no chain value. At or
    /// before the journal's end it is restored as it was before, unverified, with a warning:
    /// ignoring it could itself change the state of an application whose schema upgrades are
    /// not equivalent to a replay. Beyond the end it is [`Vouch::BeyondEnd`] like any other.
    NoChainValue,
    /// The journal starts after the snapshot's sequence and no longer holds its chain value:
    /// unusable (replay would need records before the journal's start), but no evidence of loss.
    BeforeStart {
        /// The journal's first sequence.
        first_sequence: u64,
    },
    /// The snapshot covers sequences the journal no longer holds: evidence that acknowledged
    /// data is gone (snapshots are published only once the journal is durable past them).
    BeyondEnd {
        /// The journal's last sequence (0: empty).
        journal_end: u64,
    },
    /// The journal holds the sequence with another chain value: the snapshot is of a different
    /// history. Evidence that the history it saw was lost or replaced.
    Forked {
        /// The chain value the snapshot recorded.
        recorded: u32,
        /// The chain value the journal holds there.
        journal: u32,
    },
}

impl Vouch {
    /// Whether recovery may restore the snapshot (bound, or format 1 at or before the end).
    pub fn is_usable(&self) -> bool {
        matches!(self, Vouch::Bound | Vouch::NoChainValue)
    }

    /// Whether this is evidence that acknowledged data is gone: recovery refuses to start.
    pub fn is_evidence_of_loss(&self) -> bool {
        matches!(self, Vouch::BeyondEnd { .. } | Vouch::Forked { .. })
    }
}

impl std::fmt::Display for Vouch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Vouch::Bound => f.write_str("bound to the journal"),
            Vouch::Unreadable(reason) => write!(f, "unreadable: {reason}"),
            Vouch::NoChainValue => f.write_str("written before snapshots recorded a chain value"),
            Vouch::BeforeStart { first_sequence } => {
                write!(f, "before the journal's start at {first_sequence}")
            }
            Vouch::BeyondEnd { journal_end } => {
                write!(f, "beyond the journal's end at {journal_end}")
            }
            Vouch::Forked { recorded, journal } => write!(
                f,
                "of another history (recorded chain value {recorded:#010x}, journal {journal:#010x})"
            ),
        }
    }
}

/// A snapshot file and what the journal says about it.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The file.
    pub file: SnapshotFile,
    /// The verdict.
    pub vouch: Vouch,
}

/// Judges each of `files` against the journal in `journal_dir`, which ends at `journal_end`
/// (its last valid record, as a scan found it). Reads only snapshot headers and, for each
/// snapshot at or before the end, the journal at its sequence (`chain_at`).
pub fn judge(
    files: &[SnapshotFile],
    journal_dir: &Path,
    journal_end: u64,
) -> Result<Vec<Judged>, JournalError> {
    files
        .iter()
        .map(|file| {
            let header = read_header_of(&file.path);
            let vouch = match &header {
                _ if file.sequence > journal_end => Vouch::BeyondEnd { journal_end },
                Err(reason) => Vouch::Unreadable(reason.clone()),
                Ok(header) => vouch_for(header, journal_dir)?,
            };
            Ok(Judged {
                file: file.clone(),
                vouch,
            })
        })
        .collect()
}

/// The verdict on a decoded header at or before the journal's end.
fn vouch_for(header: &SnapshotHeader, journal_dir: &Path) -> Result<Vouch, JournalError> {
    let Some(recorded) = header.journal_chain else {
        return Ok(Vouch::NoChainValue);
    };
    Ok(match chain_at(journal_dir, header.sequence)? {
        ChainAt::Holds(journal) if journal == recorded => Vouch::Bound,
        ChainAt::Holds(journal) => Vouch::Forked { recorded, journal },
        ChainAt::BeyondEnd { last_sequence } => Vouch::BeyondEnd {
            journal_end: last_sequence,
        },
        ChainAt::BeforeStart { first_sequence } => Vouch::BeforeStart { first_sequence },
    })
}

/// Recovery's refusal: a snapshot the journal cannot vouch for is evidence that acknowledged
/// data is gone, so the engine does not start (`docs/fault_model.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnboundSnapshot {
    /// The snapshot lies beyond the journal's end.
    #[error(
        "refusing to start: snapshot {} covers sequence {sequence}, but the journal in {} ends \
         at {journal_end}; records up to {sequence} were journaled durably before that snapshot \
         was written, and are gone. Restore the missing journal files, or accept the loss with \
         `keel admin accept-loss` (it moves the snapshots the journal cannot vouch for into \
         the snapshot directory's quarantine/ folder)",
        path.display(), journal_dir.display()
    )]
    BeyondEnd {
        /// The snapshot file.
        path: PathBuf,
        /// Its sequence.
        sequence: u64,
        /// The journal directory.
        journal_dir: PathBuf,
        /// The journal's last sequence.
        journal_end: u64,
    },
    /// The snapshot was taken from another history than the journal holds.
    #[error(
        "refusing to start: snapshot {} was taken at sequence {sequence} of another history: \
         it recorded the journal's chain value {recorded:#010x} there, the journal in {} holds \
         {journal:#010x} (it ends at {journal_end}); the history the snapshot saw, which may \
         have been acknowledged, was lost or replaced. Restore the journal it belongs to, or \
         accept the loss with `keel admin accept-loss` (it moves the snapshots the journal \
         cannot vouch for into the snapshot directory's quarantine/ folder)",
        path.display(), journal_dir.display()
    )]
    Forked {
        /// The snapshot file.
        path: PathBuf,
        /// Its sequence.
        sequence: u64,
        /// The journal directory.
        journal_dir: PathBuf,
        /// The journal's last sequence.
        journal_end: u64,
        /// The chain value the snapshot recorded.
        recorded: u32,
        /// The chain value the journal holds there.
        journal: u32,
    },
}

impl UnboundSnapshot {
    /// The refusal for `judged`, when its verdict is evidence of loss.
    pub(crate) fn of(judged: &Judged, journal_dir: &Path, journal_end: u64) -> Option<Self> {
        let (path, sequence) = (judged.file.path.clone(), judged.file.sequence);
        let journal_dir = journal_dir.to_owned();
        match judged.vouch {
            Vouch::BeyondEnd { journal_end } => Some(UnboundSnapshot::BeyondEnd {
                path,
                sequence,
                journal_dir,
                journal_end,
            }),
            Vouch::Forked { recorded, journal } => Some(UnboundSnapshot::Forked {
                path,
                sequence,
                journal_dir,
                journal_end,
                recorded,
                journal,
            }),
            _ => None,
        }
    }
}
