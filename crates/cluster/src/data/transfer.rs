//! Snapshot transfer on the wire (docs/REPLICATION.md, "Snapshot transfer"): the leader picks
//! its newest committed snapshot that its journal continues and streams the file in
//! SNAPSHOT_BEGIN, SNAPSHOT_CHUNK and SNAPSHOT_END frames, from its shipper thread; the
//! follower writes the bytes to a temporary file in its snapshot directory, checks the length
//! and the whole file's CRC32C, and syncs it. Installing it is `install`'s.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use keel::snapshot::{file_name, read_header_of};

use super::frame::{ChainStatus, Frame, SNAPSHOT_CHUNK_BYTES};
use super::log;
use super::terms::{TermStart, Terms};
use super::wire::FrameWriter;
use super::DataError;

/// Suffix of a snapshot being received (`SnapshotStore::open` removes `*.snap.tmp` leftovers).
const RECEIVING_SUFFIX: &str = ".transfer.snap.tmp";

/// A snapshot the leader can send.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    /// The file.
    pub(crate) path: PathBuf,
    /// Its sequence.
    pub(crate) sequence: u64,
    /// The journal's chain value there (from the snapshot's header, checked against the
    /// journal).
    pub(crate) chain: u32,
    /// The last term record at or before it.
    pub(crate) history: Option<TermStart>,
}

/// Snapshot files in `dir` by sequence, newest first (read-only: the engine's snapshot
/// thread may be writing a temporary file there).
fn snapshots_newest_first(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(sequence) = name
            .strip_suffix(".snap")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if name == file_name(sequence) {
                found.push((sequence, path));
            }
        }
    }
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

/// The newest snapshot in `snapshot_dir` at or before `commit` whose header records a chain
/// value that the journal in `journal_dir` holds at its sequence (so the journal continues it
/// from the next sequence on). `NoSnapshot` says why none qualifies.
pub(crate) fn pick(
    snapshot_dir: &Path,
    journal_dir: &Path,
    commit: u64,
) -> Result<Offer, DataError> {
    let mut seen = 0usize;
    for (sequence, path) in snapshots_newest_first(snapshot_dir)? {
        seen += 1;
        if sequence > commit || sequence == 0 {
            continue;
        }
        let Ok(header) = read_header_of(&path) else {
            continue;
        };
        let Some(chain) = header.journal_chain else {
            continue;
        };
        if log::chain_at(journal_dir, sequence)? != ChainStatus::Holds(chain) {
            continue;
        }
        let history = Terms::term_at(journal_dir, sequence)?;
        return Ok(Offer {
            path,
            sequence,
            chain,
            history,
        });
    }
    Err(DataError::NoSnapshot {
        reason: format!(
            "none of the {seen} snapshots in {} is committed (commit {commit}) and continued by \
             the journal",
            snapshot_dir.display()
        ),
    })
}

/// Streams `offer`'s file to the follower: SNAPSHOT_BEGIN, chunks, SNAPSHOT_END. Stops with
/// `Superseded` when `running` turns false between chunks.
pub(crate) fn send(
    writer: &mut FrameWriter,
    term: u64,
    offer: &Offer,
    running: impl Fn() -> bool,
) -> Result<u64, DataError> {
    let mut file = File::open(&offer.path)?;
    let total_bytes = file.metadata()?.len();
    let history = offer.history.unwrap_or(TermStart {
        term: 0,
        first_sequence: 0,
    });
    writer.send(&Frame::SnapshotBegin {
        term,
        sequence: offer.sequence,
        total_bytes,
        history_term: history.term,
        history_term_start: history.first_sequence,
        chain: offer.chain,
    })?;
    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
    let (mut offset, mut crc) = (0u64, 0u32);
    while offset < total_bytes {
        if !running() {
            return Err(DataError::Superseded);
        }
        let want = (total_bytes - offset).min(SNAPSHOT_CHUNK_BYTES as u64) as usize;
        file.read_exact(&mut buf[..want])?;
        crc = crc32c::crc32c_append(crc, &buf[..want]);
        writer.send(&Frame::SnapshotChunk {
            offset,
            bytes: &buf[..want],
        })?;
        offset += want as u64;
    }
    writer.send(&Frame::SnapshotEnd {
        sequence: offer.sequence,
        crc,
    })?;
    Ok(total_bytes)
}

/// What SNAPSHOT_BEGIN announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Announced {
    /// The snapshot's sequence.
    pub(crate) sequence: u64,
    /// The chain value there.
    pub(crate) chain: u32,
    /// The last term record at or before it (`None`: none).
    pub(crate) history: Option<TermStart>,
    /// Bytes of the file.
    pub(crate) total_bytes: u64,
}

/// A snapshot being received into a temporary file.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) announced: Announced,
    path: PathBuf,
    file: File,
    received: u64,
    crc: u32,
}

/// A received snapshot, complete and synced, not yet checked by the snapshot loader.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) announced: Announced,
    pub(crate) path: PathBuf,
}

impl Incoming {
    /// Starts receiving into `snapshot_dir` (created if needed).
    pub(crate) fn begin(snapshot_dir: &Path, announced: Announced) -> Result<Self, DataError> {
        std::fs::create_dir_all(snapshot_dir)?;
        let path = snapshot_dir.join(format!("{:020}{RECEIVING_SUFFIX}", announced.sequence));
        let file = File::create(&path)?;
        Ok(Incoming {
            announced,
            path,
            file,
            received: 0,
            crc: 0,
        })
    }

    /// Appends one chunk, which must continue the file.
    pub(crate) fn chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<(), DataError> {
        let end = self.received + bytes.len() as u64;
        if offset != self.received || end > self.announced.total_bytes {
            return Err(DataError::Protocol("a snapshot chunk out of place"));
        }
        self.file.write_all(bytes)?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.received = end;
        Ok(())
    }

    /// Checks the end (sequence, length, CRC) and syncs the file.
    pub(crate) fn end(self, sequence: u64, crc: u32) -> Result<Received, DataError> {
        if sequence != self.announced.sequence
            || self.received != self.announced.total_bytes
            || crc != self.crc
        {
            let _ = std::fs::remove_file(&self.path);
            return Err(DataError::BadSnapshot(format!(
                "snapshot {sequence} arrived damaged: {} of {} bytes, CRC32C {:#010x}, sent \
                 {crc:#010x}",
                self.received, self.announced.total_bytes, self.crc
            )));
        }
        self.file.sync_all()?;
        Ok(Received {
            announced: self.announced,
            path: self.path,
        })
    }

    /// Gives up: the temporary file is removed.
    pub(crate) fn abandon(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
