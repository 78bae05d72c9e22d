//! The journal's chain value at a sequence: what binds a snapshot to the history it was
//! taken from (`docs/fault_model.md`, "Snapshots are bound to their journal").

use std::path::Path;

use super::error::JournalError;
use super::format::Chain;
use super::reader::JournalReader;

/// What a journal holds at one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainAt {
    /// The journal holds the sequence; this is its chain value: the CRC32C of that record
    /// (which the next record's `prev_crc` repeats), or the chain seed 0 for sequence 0.
    Holds(u32),
    /// The journal ends before the sequence.
    BeyondEnd {
        /// The journal's last sequence (0: empty).
        last_sequence: u64,
    },
    /// The journal starts after the sequence (older segments were removed), and the chain
    /// value there is not recorded anywhere it still holds.
    BeforeStart {
        /// The journal's first sequence.
        first_sequence: u64,
    },
}

impl std::fmt::Display for ChainAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainAt::Holds(chain) => write!(f, "holds it, chain value {chain:#010x}"),
            ChainAt::BeyondEnd { last_sequence } => {
                write!(f, "it ends at sequence {last_sequence}")
            }
            ChainAt::BeforeStart { first_sequence } => {
                write!(f, "it starts at sequence {first_sequence}")
            }
        }
    }
}

/// The chain value of the journal in `dir` at `sequence`. Read-only and lock-free, so it
/// works on a journal a live writer appends to (for sequences it has published). Records
/// before `sequence` in its segment are stepped over without hashing their payloads, and the
/// record at `sequence` is checked in full, as [`JournalReader::seek`] does.
pub fn chain_at(dir: &Path, sequence: u64) -> Result<ChainAt, JournalError> {
    let mut reader = JournalReader::open(dir)?;
    reader.seek(sequence)?;
    let Some(start) = reader.chain() else {
        return Ok(empty_journal(sequence));
    };
    if start.next_sequence > sequence {
        // The oldest segment starts after `sequence`: its header holds the chain value of the
        // record before it.
        return Ok(if start.next_sequence == sequence + 1 {
            ChainAt::Holds(start.prev_crc)
        } else {
            ChainAt::BeforeStart {
                first_sequence: start.next_sequence,
            }
        });
    }
    let found = reader.next()?.map(|record| record.sequence);
    match (found, reader.chain()) {
        (Some(at), Some(chain)) if at == sequence => Ok(ChainAt::Holds(chain.prev_crc)),
        _ => Ok(ChainAt::BeyondEnd {
            last_sequence: reader.chain().map_or(0, |c| c.next_sequence - 1),
        }),
    }
}

/// A journal without segments holds only sequence 0 (the chain seed).
fn empty_journal(sequence: u64) -> ChainAt {
    if sequence == 0 {
        ChainAt::Holds(Chain::GENESIS.prev_crc)
    } else {
        ChainAt::BeyondEnd { last_sequence: 0 }
    }
}
