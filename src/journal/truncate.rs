//! Truncation for replication: removing every record after a sequence, offline, so a node can
//! drop a suffix its cluster never committed (`docs/journal_format.md`, "Truncation
//! (replication)").
//!
//! The journal keeps its shape: segments wholly after the cut are deleted, and the segment
//! that holds the sequence after which it cuts (or whose header starts right after it) keeps
//! its header and its records up to the cut, with every byte after them zeroed. Recovery then
//! sees a clean end (the same state a crash leaves in the active segment), and the next writer
//! appends right after the cut, continuing the chain there.
//!
//! A crash in the middle must not leave a state recovery refuses (a sealed segment without its
//! successor, or valid records after zeros). So the cut is first recorded durably in an intent
//! file (`journal.truncating`: 8 bytes sequence, 4 bytes CRC32C of them, little-endian); the
//! work is idempotent, and a writer that opens the journal, or the next truncation, finishes a
//! recorded cut before anything else. The file is removed once the cut is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::dir::{list_segments, DirLock, SegmentFile};
use super::error::{file_io, JournalError};
use super::format::{Chain, Entry, SegmentHeader, SEGMENT_HEADER_SIZE};
use super::recovery::{last_nonzero_from, read_entry, scan};
use super::segment::SegmentView;

/// Name of the truncation intent file in the journal directory.
pub(crate) const INTENT_FILE_NAME: &str = "journal.truncating";
const INTENT_TMP_NAME: &str = "journal.truncating.tmp";
const INTENT_FILE_BYTES: usize = 12;

// Why: an 8-byte sequence and its 4-byte CRC, nothing else (docs/journal_format.md).
const _: () = assert!(INTENT_FILE_BYTES == size_of::<u64>() + size_of::<u32>());

/// Zeroes are written in chunks of this size.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// Removes every record after `sequence` from the journal in `dir`; returns how many it
/// removed. Takes the writer's lock (`Locked` while a writer or a `verify` holds it). Refuses
/// with `TruncateBeforeStart` when `sequence + 1` is before the journal's first sequence
/// (segments or retention marker). A `sequence` at or after the journal's end removes nothing.
pub(crate) fn truncate_after(dir: &Path, sequence: u64) -> Result<u64, JournalError> {
    let _lock = DirLock::exclusive(dir)?;
    finish_pending(dir)?;
    let scan = scan(dir)?;
    scan.refuse_missing_successor()?;
    let last = scan.chain.next_sequence - 1;
    if sequence >= last {
        return Ok(0);
    }
    let first = scan.segments.first().map_or(1, |s| s.first_sequence);
    let retired = scan.retired.as_ref().map_or(1, |r| r.first_sequence);
    let first_sequence = first.max(retired);
    if sequence + 1 < first_sequence {
        return Err(JournalError::TruncateBeforeStart {
            sequence,
            first_sequence,
        });
    }
    write_intent(dir, sequence)?;
    cut(dir, sequence)?;
    remove_intent(dir)?;
    tracing::info!(sequence, removed = last - sequence, "journal truncated");
    Ok(last - sequence)
}

/// Finishes a truncation an earlier run recorded but may not have completed. Call with the
/// writer's lock held, before scanning.
pub(crate) fn finish_pending(dir: &Path) -> Result<(), JournalError> {
    let Some(sequence) = read_intent(dir)? else {
        return Ok(());
    };
    tracing::warn!(sequence, "finishing an interrupted journal truncation");
    cut(dir, sequence)?;
    remove_intent(dir)
}

/// The cut itself, idempotent: deletes the segments after the one that continues at
/// `sequence + 1` (newest first), then zeroes that segment after its record `sequence`.
fn cut(dir: &Path, sequence: u64) -> Result<(), JournalError> {
    let segments = list_segments(dir)?;
    let keep = segments
        .iter()
        .rposition(|s| s.first_sequence <= sequence + 1);
    let later = keep.map_or(0, |k| k + 1);
    for segment in segments[later..].iter().rev() {
        fs::remove_file(&segment.path).map_err(file_io(&segment.path))?;
    }
    sync_dir(dir)?;
    match keep {
        Some(k) => zero_after(&segments[k], sequence),
        None => Ok(()),
    }
}

/// Zeroes `segment` from the end of its record `sequence` (its header's end when it starts at
/// `sequence + 1`) to the end of the file, and syncs it.
fn zero_after(segment: &SegmentFile, sequence: u64) -> Result<(), JournalError> {
    let path = &segment.path;
    let view = SegmentView::open(path).map_err(file_io(path))?;
    let from = end_of(&view, segment, sequence)?;
    let Some(last) = last_nonzero_from(&view, from) else {
        return Ok(()); // already clean (a repeated cut)
    };
    let until = last + 1;
    drop(view);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(file_io(path))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(until - from)];
    let mut at = from;
    while at < until {
        let n = zeros.len().min(until - at);
        file.write_all_at(&zeros[..n], at as u64)
            .map_err(file_io(path))?;
        at += n;
    }
    file.sync_all().map_err(file_io(path))
}

/// The offset right after record `sequence` in `segment`, walking its records from the header.
fn end_of(view: &SegmentView, segment: &SegmentFile, sequence: u64) -> Result<usize, JournalError> {
    let header = SegmentHeader::decode(view.bytes(0, view.len().min(SEGMENT_HEADER_SIZE)));
    let refuse = |reason: &str| JournalError::Truncation {
        segment: segment.path.clone(),
        sequence,
        reason: reason.to_owned(),
    };
    let header = header.map_err(|_| refuse("its segment header is damaged"))?;
    let mut chain = Chain {
        next_sequence: header.first_sequence,
        prev_crc: header.prev_crc,
    };
    let mut offset = SEGMENT_HEADER_SIZE;
    while chain.next_sequence <= sequence {
        match read_entry(view, offset, chain) {
            Ok(Entry::Record {
                sequence: at,
                crc,
                size_bytes,
            }) => {
                chain = Chain {
                    next_sequence: at + 1,
                    prev_crc: crc,
                };
                offset += size_bytes;
            }
            _ => return Err(refuse("the segment does not hold that record")),
        }
    }
    Ok(offset)
}

/// Records the cut durably: temporary file, sync, rename, directory sync.
fn write_intent(dir: &Path, sequence: u64) -> Result<(), JournalError> {
    let path = dir.join(INTENT_FILE_NAME);
    let tmp = dir.join(INTENT_TMP_NAME);
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&encode(sequence))?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(file_io(&path))
}

/// The recorded cut, if any. A damaged intent file is an error: the cut it names is unknown.
fn read_intent(dir: &Path) -> Result<Option<u64>, JournalError> {
    let path = dir.join(INTENT_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => decode(&bytes).map(Some).ok_or_else(|| {
            file_io(&path)(io::Error::new(
                io::ErrorKind::InvalidData,
                "the truncation intent file is damaged (expected 12 bytes with a valid CRC)",
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_io(&path)(e)),
    }
}

fn remove_intent(dir: &Path) -> Result<(), JournalError> {
    let path = dir.join(INTENT_FILE_NAME);
    fs::remove_file(&path).map_err(file_io(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_io(dir))
}

fn encode(sequence: u64) -> [u8; INTENT_FILE_BYTES] {
    let mut bytes = [0u8; INTENT_FILE_BYTES];
    bytes[..8].copy_from_slice(&sequence.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..8]);
    bytes[8..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != INTENT_FILE_BYTES {
        return None;
    }
    let sequence: [u8; 8] = bytes[..8].try_into().ok()?;
    let crc = u32::from_le_bytes(bytes[8..].try_into().ok()?);
    (crc32c::crc32c(&sequence) == crc).then_some(u64::from_le_bytes(sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intent_round_trips_and_a_damaged_one_is_refused() {
        let bytes = encode(42);
        assert_eq!(decode(&bytes), Some(42));
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&bytes[..11]), None);
    }

    fn record(sequence: u64) -> super::super::Record<'static> {
        super::super::Record {
            sequence,
            timestamp_ns: sequence,
            session_id: 1,
            correlation_id: sequence,
            kind: 1,
            version: 1,
            payload: &[7; 200],
        }
    }

    #[test]
    fn a_cut_interrupted_after_deleting_segments_is_finished_by_the_next_open() {
        use super::super::{JournalConfig, JournalWriter};
        let tmp = tempfile::tempdir().unwrap();
        let mut config = JournalConfig::new(tmp.path());
        config.segment_size_bytes = 16 * 1024;
        config.max_payload_bytes = 256;
        let mut w = JournalWriter::open(&config).unwrap();
        for sequence in 1..=300 {
            w.append(&record(sequence)).unwrap();
            w.end_batch().unwrap();
        }
        drop(w);
        // The crash: intent recorded, the newest segment deleted, nothing zeroed. Its
        // predecessor is sealed with its successor gone, which recovery alone would refuse.
        write_intent(tmp.path(), 10).unwrap();
        let segments = list_segments(tmp.path()).unwrap();
        assert!(segments.len() > 2);
        fs::remove_file(&segments.last().unwrap().path).unwrap();
        let mut w = JournalWriter::open(&config).unwrap();
        assert_eq!(w.last_sequence(), 10);
        assert!(!tmp.path().join(INTENT_FILE_NAME).exists());
        w.append(&record(11)).unwrap();
        w.end_batch().unwrap();
        drop(w);
        assert_eq!(super::super::verify(tmp.path()).unwrap().last_sequence, 11);
    }
}
