//! Helpers shared by the journal integration tests. The layout parser re-implements the byte
//! map from docs/journal_format.md independently of the crate, so it also checks the document.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use keel::journal::{
    FlushPolicy, JournalConfig, JournalReader, JournalWriter, Record, SegmentPrep,
};

/// Small segments: many rollovers, cheap copies.
pub const TINY_SEGMENT_BYTES: u64 = 16 * 1024;

pub fn cfg(dir: &Path, segment_size_bytes: u64, flush: FlushPolicy) -> JournalConfig {
    let mut journal = JournalConfig::new(dir);
    journal.segment_size_bytes = segment_size_bytes;
    journal.flush = flush;
    journal.max_payload_bytes = 2048;
    journal.segment_prep = SegmentPrep::Allocated;
    journal
}

/// Deterministic payload of 0..=300 bytes for a sequence.
pub fn payload(seq: u64) -> Vec<u8> {
    let len = (seq.wrapping_mul(37) % 301) as usize;
    (0..len)
        .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8) | 1)
        .collect()
}

pub fn rec(seq: u64, payload: &[u8]) -> Record<'_> {
    Record {
        sequence: seq,
        timestamp_ns: seq * 10,
        session_id: seq % 7,
        correlation_id: seq * 3,
        kind: (seq % 5) as u16,
        version: 1,
        payload,
    }
}

/// Appends `from..=to` with `end_batch` after every `batch` records (and at the end).
pub fn write(w: &mut JournalWriter, from: u64, to: u64, batch: u64) {
    for seq in from..=to {
        let p = payload(seq);
        w.append(&rec(seq, &p)).unwrap();
        if (seq - from + 1).is_multiple_of(batch) || seq == to {
            w.end_batch().unwrap();
        }
    }
}

pub fn check(r: &Record<'_>, seq: u64) {
    let p = payload(seq);
    assert_eq!(*r, rec(seq, &p), "record {seq}");
}

/// Reads the whole journal, checking every record; returns the last sequence (0 if none).
pub fn read_all(dir: &Path) -> u64 {
    let mut reader = JournalReader::open(dir).unwrap();
    let mut last = 0;
    while let Some(r) = reader.next().unwrap() {
        check(&r, last + 1);
        last += 1;
    }
    last
}

pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
    }
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// One entry found by the independent layout parser.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: PathBuf,
    pub offset: usize,
    pub size: usize,
    /// `None` for an end marker.
    pub sequence: Option<u64>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Every entry of every segment, in journal order (byte map of docs/journal_format.md).
pub fn layout(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for file in segment_files(dir) {
        let bytes = fs::read(&file).unwrap();
        assert_eq!(&bytes[..8], b"KEELJNL\0");
        let mut offset = 64;
        loop {
            let magic = &bytes[offset..offset + 4];
            let payload = u32_at(&bytes, offset + 8) as usize;
            let sequence = u64::from_le_bytes(bytes[offset + 16..offset + 24].try_into().unwrap());
            let (size, seq) = match magic {
                b"KREC" => ((56 + payload).next_multiple_of(8), Some(sequence)),
                b"KEND" => (56, None),
                _ => break,
            };
            out.push(Entry {
                file: file.clone(),
                offset,
                size,
                sequence: seq,
            });
            if seq.is_none() {
                break;
            }
            offset += size;
        }
    }
    out
}

/// Flips bit `bit` of byte `at` in `file`.
pub fn flip_bit(file: &Path, at: usize, bit: u8) {
    let mut bytes = fs::read(file).unwrap();
    bytes[at] ^= 1 << bit;
    fs::write(file, bytes).unwrap();
}

/// Contents of every file in `dir`, for "nothing was modified" checks.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("journal.lock"))
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

#[path = "../rng/mod.rs"]
mod rng;
#[allow(unused_imports)] // not every journal test draws random numbers
pub use rng::Rng;

/// An I/O seam without syncs, for tests that reopen journals thousands of times. Durability is
/// not under test there; recovery logic is.
#[derive(Debug, Default)]
pub struct NoSyncIo;

impl keel::journal::SegmentIo for NoSyncIo {
    fn create_allocated(&self, path: &Path, len_bytes: u64) -> std::io::Result<fs::File> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(len_bytes)?;
        Ok(file)
    }
    fn sync_range(
        &self,
        _segment: &keel::journal::SegmentSync,
        _offset: usize,
        _len: usize,
    ) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_file(&self, _file: &fs::File) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> std::io::Result<()> {
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        fs::remove_file(path)
    }
}

/// A scratch directory for tests that copy and reopen journals thousands of times: on tmpfs
/// (`/dev/shm`) when available, so they test recovery logic without waiting on a busy disk.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}
