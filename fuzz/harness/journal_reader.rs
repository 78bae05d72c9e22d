//! The journal record reader and recovery scan (`JournalReader`, `verify`, and the writer's
//! recovery on open) over a journal directory built from the fuzz input. Nothing may panic;
//! the three must agree:
//! - `verify` Ok ⇒ the reader returns exactly its records, contiguous, without error;
//! - the reader reports corruption ⇒ `verify` does too;
//! - the writer's recovery accepts exactly what `verify` accepts, at the same last sequence,
//!   and after it the journal verifies clean at that sequence.
//!
//! Input: byte 0 is a set of flags, the rest is segment content (see `build`). Flags let the
//! fuzzer get past the checksums: the harness can write a valid header and re-seal every
//! record's CRC and hash chain, so mutations reach the sequence, length and marker logic.
//!
//! Shared by the fuzz target `journal_reader` and `tests/fuzz_regressions.rs`, which replays
//! every input in `fuzz/regressions/journal_reader/`.

use keel::journal::{
    verify, FlushPolicy, JournalConfig, JournalError, JournalReader, JournalWriter, SegmentHeader,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SEGMENT: usize = 16 * 1024;
const HEADER: usize = 64;
const RECORD_HEADER: usize = 56;
const KREC: &[u8; 4] = b"KREC";
const KEND: &[u8; 4] = b"KEND";

const VALID_HEADER: u8 = 1;
const SEAL_RECORDS: u8 = 2;
const TWO_SEGMENTS: u8 = 4;
const RECOVER: u8 = 8;

/// The scratch directory this process uses (under `/dev/shm` when there is one).
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    crate::scratch::dir(&DIR, "journal")
}

/// One fuzz input: see the module docs.
pub fn run(data: &[u8]) {
    let Some((&flags, content)) = data.split_first() else {
        return;
    };
    let dir = dir();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.ends_with("journal.lock") {
            fs::remove_file(path).unwrap();
        }
    }
    build(dir, flags, content);
    check(dir, flags & RECOVER != 0);
}

/// Writes one or two 16 KiB segments from `content`.
fn build(dir: &Path, flags: u8, content: &[u8]) {
    let (first, second) = if flags & TWO_SEGMENTS != 0 {
        content.split_at(content.len() / 2)
    } else {
        (content, &[][..])
    };
    let mut chain = (1u64, 0u32);
    let mut seg = vec![0u8; SEGMENT];
    let next = fill(&mut seg, flags, first, &mut chain);
    fs::write(dir.join(format!("{:020}.seg", 1)), &seg).unwrap();
    if flags & TWO_SEGMENTS != 0 {
        let start = next.unwrap_or(chain.0);
        let mut seg = vec![0u8; SEGMENT];
        chain.0 = start;
        fill(&mut seg, flags, second, &mut chain);
        fs::write(dir.join(format!("{start:020}.seg")), &seg).unwrap();
    }
}

/// Fills a segment; returns the next sequence named by an end marker, if it has one.
fn fill(seg: &mut [u8], flags: u8, content: &[u8], chain: &mut (u64, u32)) -> Option<u64> {
    let body_at = if flags & VALID_HEADER != 0 {
        let header = SegmentHeader::new(chain.0, SEGMENT as u64, chain.1).encode();
        seg[..HEADER].copy_from_slice(&header);
        HEADER
    } else {
        0
    };
    let n = content.len().min(SEGMENT - body_at);
    seg[body_at..body_at + n].copy_from_slice(&content[..n]);
    if flags & SEAL_RECORDS != 0 {
        seal(seg, chain)
    } else {
        None
    }
}

/// Re-computes every entry's chain link and CRC (the fuzzer keeps the rest).
fn seal(seg: &mut [u8], chain: &mut (u64, u32)) -> Option<u64> {
    let mut at = HEADER;
    while at + RECORD_HEADER <= seg.len() {
        let magic = &seg[at..at + 4];
        let is_end = magic == KEND;
        if magic != KREC && !is_end {
            return None;
        }
        let payload = u32::from_le_bytes(seg[at + 8..at + 12].try_into().unwrap()) as usize;
        let size = if is_end {
            RECORD_HEADER
        } else {
            (RECORD_HEADER + payload).next_multiple_of(8)
        };
        if size > seg.len() - at {
            return None;
        }
        seg[at + 12..at + 16].copy_from_slice(&chain.1.to_le_bytes());
        let crc = crc32c::crc32c(&seg[at + 8..at + size]);
        seg[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        let sequence = u64::from_le_bytes(seg[at + 16..at + 24].try_into().unwrap());
        if is_end {
            return Some(sequence);
        }
        *chain = (sequence.wrapping_add(1), crc);
        at += size;
    }
    None
}

fn check(dir: &Path, recover: bool) {
    let verified = verify(dir);
    let read = read_all(dir);
    match (&verified, &read) {
        (Ok(report), Ok(records)) => {
            assert_eq!(report.record_count, records.len() as u64, "{report:?}");
            if let Some(&last) = records.last() {
                assert_eq!(report.last_sequence, last);
            }
        }
        (Ok(report), Err(err)) => panic!("verify accepted {report:?}, reader failed: {err}"),
        (Err(_), _) => {}
    }
    if !recover {
        return;
    }
    let config = {
        let mut journal = JournalConfig::new(dir.to_owned());
        journal.segment_size_bytes = SEGMENT as u64;
        journal.flush = FlushPolicy::None;
        journal.max_payload_bytes = 1024;
        journal.segment_prep = keel::journal::SegmentPrep::Allocated;
        journal
    };
    match (JournalWriter::open(&config), &verified) {
        (Ok(writer), Ok(report)) => {
            assert_eq!(writer.last_sequence(), report.last_sequence);
            drop(writer);
            let again = verify(dir).expect("a recovered journal verifies");
            assert_eq!(again.last_sequence, report.last_sequence);
        }
        (Err(JournalError::Corrupted { .. }), Err(_)) => {}
        (Err(err), Ok(report)) => panic!("verify accepted {report:?}, recovery refused: {err}"),
        (Ok(writer), Err(err)) => {
            panic!(
                "verify refused ({err}), recovery accepted at {}",
                writer.last_sequence()
            )
        }
        (Err(_), Err(_)) => {}
    }
}

/// Every record's sequence, checking contiguity; or the first error.
fn read_all(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut reader = JournalReader::open(dir)?;
    let mut out = Vec::new();
    while let Some(record) = reader.next()? {
        if let Some(&prev) = out.last() {
            assert_eq!(record.sequence, prev + 1, "reader returned a gap");
        }
        assert!(record.payload.len() <= SEGMENT);
        out.push(record.sequence);
    }
    Ok(out)
}
