//! A node's journal read as the data plane needs it: records as journaled bytes from any
//! sequence on (following a live writer), the chain value at a sequence, the journal's end.
//! Read-only and lock-free, through `keel::journal::JournalReader`; the chain is carried along
//! from the header of the segment holding the start, so every record's CRC is known.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use keel::journal::{JournalError, JournalReader, SegmentHeader, SEGMENT_HEADER_SIZE};

use super::frame::ChainStatus;

const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_NAME_DIGITS: usize = 20;

/// Why the journal could not be read for the data plane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// keel's reader refused the journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A segment's header could not be read.
    #[error("segment header of {path}: {reason}")]
    Header {
        /// The segment.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The journal starts after the wanted sequence (its older segments were retired).
    #[error("the journal starts at sequence {first_sequence}, after {wanted}")]
    BeforeStart {
        /// The journal's first sequence.
        first_sequence: u64,
        /// The sequence wanted.
        wanted: u64,
    },
    /// Listing the directory failed.
    #[error("listing {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Segment files of `dir` by first sequence, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let io = |source| LogError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(digits) = name.strip_suffix(SEGMENT_SUFFIX) else {
            continue;
        };
        if digits.len() == SEGMENT_NAME_DIGITS {
            if let Ok(first) = digits.parse::<u64>() {
                out.push((first, path));
            }
        }
    }
    out.sort_unstable_by_key(|(first, _)| *first);
    Ok(out)
}

/// The `prev_crc` a segment's header states (the chain before its first record).
fn header_prev_crc(path: &Path) -> Result<u32, LogError> {
    let fail = |reason: String| LogError::Header {
        path: path.to_owned(),
        reason,
    };
    let mut bytes = [0u8; SEGMENT_HEADER_SIZE];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| fail(e.to_string()))?;
    SegmentHeader::decode(&bytes)
        .map(|h| h.prev_crc)
        .map_err(|e| fail(e.to_string()))
}

/// Reads records as journaled, in order, from a chosen sequence; follows a live writer.
#[derive(Debug)]
pub struct LogCursor {
    reader: Option<JournalReader>,
    dir: PathBuf,
    /// Sequence the next record has.
    next_sequence: u64,
    /// CRC of the record before it (0 before sequence 1).
    prev_crc: u32,
    scratch: Vec<u8>,
}

impl LogCursor {
    /// A cursor whose next record is `from` (>= 1), in the journal in `dir` (which may be
    /// empty or absent: records appear as a writer appends them).
    pub fn open(dir: &Path, from: u64) -> Result<LogCursor, LogError> {
        let from = from.max(1);
        let segs = segments(dir)?;
        let mut cursor = LogCursor {
            reader: None,
            dir: dir.to_owned(),
            next_sequence: 1,
            prev_crc: 0,
            scratch: Vec::new(),
        };
        let Some((first, path)) = segs.iter().rev().find(|(first, _)| *first <= from) else {
            return match segs.first() {
                Some((first, _)) if *first > 1 => Err(LogError::BeforeStart {
                    first_sequence: *first,
                    wanted: from,
                }),
                _ => Ok(cursor),
            };
        };
        cursor.prev_crc = header_prev_crc(path)?;
        cursor.next_sequence = *first;
        let mut reader = JournalReader::open(dir)?;
        reader.seek(*first)?;
        cursor.reader = Some(reader);
        cursor.skip_to(from)?;
        Ok(cursor)
    }

    fn skip_to(&mut self, from: u64) -> Result<(), LogError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        while self.next_sequence < from {
            scratch.clear();
            if self.next_into(&mut scratch)?.is_none() {
                break;
            }
        }
        self.scratch = scratch;
        Ok(())
    }

    /// Sequence of the next record.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The chain value after the last record read (0 at the start of the journal).
    pub fn chain(&self) -> u32 {
        self.prev_crc
    }

    /// Appends the next record's journaled bytes to `out` and returns its sequence, or `None`
    /// at the journal's current end.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Result<Option<u64>, LogError> {
        if self.reader.is_none() {
            if segments(&self.dir)?.is_empty() {
                return Ok(None);
            }
            let mut reader = JournalReader::open(&self.dir)?;
            reader.seek(self.next_sequence)?;
            self.reader = Some(reader);
        }
        let reader = self.reader.as_mut().expect("opened above");
        let Some(rec) = reader.next()? else {
            return Ok(None);
        };
        debug_assert_eq!(rec.sequence, self.next_sequence);
        self.prev_crc = rec.encode_to(out, self.prev_crc);
        self.next_sequence = rec.sequence + 1;
        Ok(Some(rec.sequence))
    }
}

/// What the journal in `dir` holds at `sequence`. The sequence right before the journal's first
/// (after retention, or a snapshot install) is held too: its chain value is the one the first
/// segment's header states.
pub fn chain_at(dir: &Path, sequence: u64) -> Result<ChainStatus, LogError> {
    if let Some((first, path)) = segments(dir)?.first() {
        if *first == sequence + 1 {
            return Ok(ChainStatus::Holds(header_prev_crc(path)?));
        }
        if *first > sequence + 1 {
            return Ok(ChainStatus::BeforeStart(*first));
        }
    }
    if sequence == 0 {
        return Ok(ChainStatus::Holds(0));
    }
    let mut cursor = match LogCursor::open(dir, sequence) {
        Ok(cursor) => cursor,
        Err(LogError::BeforeStart { first_sequence, .. }) => {
            return Ok(ChainStatus::BeforeStart(first_sequence))
        }
        Err(e) => return Err(e),
    };
    let mut scratch = Vec::new();
    match cursor.next_into(&mut scratch)? {
        Some(found) if found == sequence => Ok(ChainStatus::Holds(cursor.chain())),
        _ => Ok(ChainStatus::BeyondEnd(cursor.next_sequence() - 1)),
    }
}

/// The first sequence the journal in `dir` holds, or would hold (1 when it has no segments).
pub fn first_sequence(dir: &Path) -> Result<u64, LogError> {
    Ok(segments(dir)?.first().map_or(1, |(first, _)| *first))
}

/// The journal's last sequence and the chain value there (0 and 0 when empty).
pub fn end_of(dir: &Path) -> Result<(u64, u32), LogError> {
    let from = segments(dir)?.last().map_or(1, |(first, _)| *first);
    let mut cursor = LogCursor::open(dir, from)?;
    let mut scratch = Vec::new();
    loop {
        scratch.clear();
        if cursor.next_into(&mut scratch)?.is_none() {
            return Ok((cursor.next_sequence() - 1, cursor.chain()));
        }
    }
}
