//! The files `keel replay` reads, opened read-only: segment headers and snapshot files.
//!
//! Snapshots are listed and decoded here rather than through `SnapshotStore`, because
//! `SnapshotStore::open` creates the directory and deletes `*.snap.tmp` files — a live writer's
//! snapshot in progress among them. The decoder mirrors the byte map in
//! `src/snapshot/format.rs` and checks everything `SnapshotStore::load` checks.

use std::fs::{self, File};
use std::io::{self, Read};
use std::mem::size_of;
use std::path::{Path, PathBuf};

use super::error::{io_at, ReplayError};
use crate::apps::App;
use crate::codec::CODEC_ID;
use crate::engine::DEFAULT_SNAPSHOT_MAX_STATE_BYTES;
use crate::journal::{SegmentHeader, SEGMENT_HEADER_SIZE};
use crate::snapshot::{SnapshotHeader, FORMAT_VERSION, HEADER_BYTES, MAGIC};

/// One segment file of a journal and what its header says.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    /// The file.
    pub(crate) path: PathBuf,
    /// The first sequence its name declares.
    pub(crate) first_sequence: u64,
    /// File size.
    pub(crate) size_bytes: u64,
    /// The decoded header, or why it does not decode.
    pub(crate) header: Result<SegmentHeader, String>,
}

/// Segment files of `dir` (named by 20 digits + `.seg`), oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>, ReplayError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let path = entry.map_err(io_at(dir))?.path();
        let Some(first_sequence) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .filter(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
        else {
            continue;
        };
        let size_bytes = fs::metadata(&path).map_err(io_at(&path))?.len();
        let header = read_segment_header(&path);
        out.push(SegmentInfo {
            path,
            first_sequence,
            size_bytes,
            header,
        });
    }
    out.sort_by_key(|s| s.first_sequence);
    Ok(out)
}

fn read_segment_header(path: &Path) -> Result<SegmentHeader, String> {
    let mut bytes = [0u8; SEGMENT_HEADER_SIZE];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| e.to_string())?;
    SegmentHeader::decode(&bytes).map_err(|d| d.to_string())
}

/// A snapshot file, by the sequence in its name (not yet validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapFile {
    /// Last applied sequence, from the file name.
    pub(crate) sequence: u64,
    /// The file.
    pub(crate) path: PathBuf,
    /// File size.
    pub(crate) size_bytes: u64,
}

/// A validated snapshot: header and state bytes.
pub(crate) struct SnapData {
    pub(crate) header: SnapshotHeader,
    bytes: Vec<u8>,
}

impl SnapData {
    /// The encoded state.
    pub(crate) fn state(&self) -> &[u8] {
        &self.bytes[HEADER_BYTES..]
    }
}

/// Snapshot files of `dir`, oldest first; none when `dir` does not exist.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<SnapFile>, ReplayError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_at(dir))?.path();
        let sequence = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".snap"))
            .and_then(|d| d.parse().ok());
        if let Some(sequence) = sequence {
            let size_bytes = fs::metadata(&path).map_err(io_at(&path))?.len();
            out.push(SnapFile {
                sequence,
                path,
                size_bytes,
            });
        }
    }
    out.sort_by_key(|f| f.sequence);
    Ok(out)
}

// ---- Snapshot header byte map (mirror of src/snapshot/format.rs) ----
const S_MAGIC: usize = 0;
const S_FORMAT: usize = S_MAGIC + MAGIC.len();
const S_CODEC: usize = S_FORMAT + size_of::<u16>();
const S_SCHEMA: usize = S_CODEC + size_of::<u16>();
const S_SEQUENCE: usize = S_SCHEMA + size_of::<u32>();
const S_HASH: usize = S_SEQUENCE + size_of::<u64>();
const S_LEN: usize = S_HASH + size_of::<u64>();
const S_STATE_CRC: usize = S_LEN + size_of::<u64>();
const S_HEADER_CRC: usize = S_STATE_CRC + size_of::<u32>();
// Why: the mirror must end exactly where the snapshot module says the header ends.
const _: () = assert!(S_HEADER_CRC + size_of::<u32>() == HEADER_BYTES);

fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("inside the header")
}

/// Decodes and checks a snapshot header (magic, header CRC, format, codec).
fn decode_header(b: &[u8]) -> Result<SnapshotHeader, String> {
    if b.len() < HEADER_BYTES {
        return Err(format!(
            "file of {} bytes is shorter than the header",
            b.len()
        ));
    }
    if b[S_MAGIC..S_FORMAT] != MAGIC {
        return Err("bad magic".into());
    }
    let stored = u32::from_le_bytes(le(b, S_HEADER_CRC));
    if crc32c::crc32c(&b[..S_HEADER_CRC]) != stored {
        return Err("header checksum mismatch".into());
    }
    let format = u16::from_le_bytes(le(b, S_FORMAT));
    if format != FORMAT_VERSION {
        return Err(format!(
            "format version {format}, this build reads {FORMAT_VERSION}"
        ));
    }
    let header = SnapshotHeader {
        codec_id: u16::from_le_bytes(le(b, S_CODEC)),
        schema_version: u32::from_le_bytes(le(b, S_SCHEMA)),
        sequence: u64::from_le_bytes(le(b, S_SEQUENCE)),
        state_hash: u64::from_le_bytes(le(b, S_HASH)),
        state_len: u64::from_le_bytes(le(b, S_LEN)),
        state_crc: u32::from_le_bytes(le(b, S_STATE_CRC)),
    };
    if header.codec_id != CODEC_ID {
        return Err(format!(
            "codec {}, this build reads {CODEC_ID}",
            header.codec_id
        ));
    }
    Ok(header)
}

/// Reads and checks only the header of `file` (cheap: no state checksum).
pub(crate) fn read_snapshot_header(file: &SnapFile) -> Result<SnapshotHeader, String> {
    let mut bytes = [0u8; HEADER_BYTES];
    let read = File::open(&file.path).and_then(|mut f| f.read_exact(&mut bytes));
    if let Err(e) = read {
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
            format!(
                "file of {} bytes is shorter than the header",
                file.size_bytes
            )
        } else {
            e.to_string()
        });
    }
    let header = decode_header(&bytes)?;
    check_name(file, &header)?;
    Ok(header)
}

fn check_name(file: &SnapFile, header: &SnapshotHeader) -> Result<(), String> {
    if header.sequence == file.sequence {
        Ok(())
    } else {
        Err(format!(
            "holds sequence {} but is named {}",
            header.sequence, file.sequence
        ))
    }
}

/// Reads and validates a whole snapshot file: header, length, state checksum, name.
/// A state over `DEFAULT_SNAPSHOT_MAX_STATE_BYTES` is refused unread, as at engine startup.
pub(crate) fn read_snapshot(file: &SnapFile) -> Result<SnapData, String> {
    let len_bytes = fs::metadata(&file.path).map_err(|e| e.to_string())?.len();
    let state_bytes = len_bytes.saturating_sub(HEADER_BYTES as u64);
    if state_bytes > DEFAULT_SNAPSHOT_MAX_STATE_BYTES {
        return Err(format!(
            "state of {state_bytes} bytes is over the {DEFAULT_SNAPSHOT_MAX_STATE_BYTES}-byte limit"
        ));
    }
    let bytes = fs::read(&file.path).map_err(|e| e.to_string())?;
    let header = decode_header(&bytes)?;
    let state_len = (bytes.len() - HEADER_BYTES) as u64;
    if state_len != header.state_len {
        return Err(format!(
            "state is {state_len} bytes, header says {}",
            header.state_len
        ));
    }
    if crc32c::crc32c(&bytes[HEADER_BYTES..]) != header.state_crc {
        return Err("state checksum mismatch".into());
    }
    check_name(file, &header)?;
    Ok(SnapData { header, bytes })
}

/// Loads `file` into a fresh application state and checks its hash against the header (when
/// the schema is the current one). Returns the state and the header, or why it is unusable.
pub(crate) fn restore<A: App>(file: &SnapFile) -> Result<(A, SnapshotHeader), String> {
    let data = read_snapshot(file)?;
    let header = data.header;
    let mut app = A::default();
    // A panic while restoring (a crafted state) makes the snapshot unusable, as at startup.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        app.load_state(header.schema_version, data.state())
    }));
    match loaded {
        Ok(result) => result.map_err(|e| format!("state does not load: {e}"))?,
        Err(_) => return Err("load_state panicked".into()),
    }
    if header.schema_version == app.schema_version() && app.state_hash() != header.state_hash {
        return Err(format!(
            "restored state hash {:#018x} differs from the recorded {:#018x}",
            app.state_hash(),
            header.state_hash
        ));
    }
    Ok((app, header))
}
