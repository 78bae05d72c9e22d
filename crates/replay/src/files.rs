//! The files `keel replay` reads, opened read-only: segment headers and snapshot files.
//!
//! Snapshots are listed and decoded here rather than through `SnapshotStore`, because
//! `SnapshotStore::open` creates the directory and deletes `*.snap.tmp` files — a live writer's
//! snapshot in progress among them. Decoding and validation are the snapshot module's own
//! (`read_header_of`, `load_file`).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::error::{io_at, ReplayError};
use keel::engine::{Config, ExactlyOnce};
use keel::journal::{JournalReader, RetiredHistory, SegmentHeader, SEGMENT_HEADER_SIZE};
use keel::snapshot::DEFAULT_SNAPSHOT_MAX_STATE_BYTES;
use keel::snapshot::{
    load_file, read_header_of, LoadedSnapshot, SnapshotError, SnapshotFile, SnapshotHeader, Vouch,
};
use keel_services::App;

/// Opens a reader on the journal in `dir` that also reads, transparently, the segments journal
/// retention moved to the archive directory its retention marker names (when that directory
/// exists): the archived history and the journal are then one validated chain.
pub(crate) fn open_reader(dir: &Path) -> Result<JournalReader, ReplayError> {
    let reader = match archive_of(dir)? {
        Some(archive) => JournalReader::open_with_archive(dir, &archive)?,
        None => JournalReader::open(dir)?,
    };
    Ok(reader)
}

/// The archive directory the retention marker of the journal in `dir` names, if it exists.
pub(crate) fn archive_of(dir: &Path) -> Result<Option<PathBuf>, ReplayError> {
    Ok(RetiredHistory::read(dir)?
        .and_then(|retired| retired.archive)
        .filter(|archive| archive.is_dir()))
}

/// What journal retention retired before the journal in `dir` starts, as JSON: the range, the
/// policy, and the archive with the segments it holds (`None` when nothing was retired).
pub(crate) fn retired_json(dir: &Path) -> Result<Option<serde_json::Value>, ReplayError> {
    let Some(retired) = RetiredHistory::read(dir)? else {
        return Ok(None);
    };
    let archived = match archive_of(dir)? {
        Some(archive) => list_segments(&archive)?.len(),
        None => 0,
    };
    Ok(Some(serde_json::json!({
        "first_retained": retired.first_sequence,
        "last_retired": retired.last_retired(),
        "policy": if retired.archive.is_some() { "archive" } else { "delete" },
        "archive": retired.archive.as_ref().map(|a| a.display().to_string()),
        "archived_segments": archived,
    })))
}

/// One line about a retired range (from [`retired_json`]).
pub(crate) fn retired_text(retired: &serde_json::Value) -> String {
    let last = &retired["last_retired"];
    match retired["archive"].as_str() {
        Some(archive) => format!(
            "sequences 1..={last} retired by journal retention, archived to {archive} \
             ({} segment files there, read transparently)",
            retired["archived_segments"]
        ),
        None => format!("sequences 1..={last} retired by journal retention (deleted)"),
    }
}

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

/// The service the journal in `dir` names: from the newest segment header naming one; `None`
/// when no segment does (written before format version 2, by an unnamed service, or no
/// journal at all).
pub(crate) fn journal_service(dir: &Path) -> Result<Option<String>, ReplayError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(list_segments(dir)?
        .iter()
        .rev()
        .filter_map(|s| s.header.as_ref().ok())
        .map(|h| h.service_name().to_owned())
        .find(|name| !name.is_empty()))
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
    loaded: LoadedSnapshot,
}

impl SnapData {
    /// The encoded state.
    pub(crate) fn state(&self) -> &[u8] {
        self.loaded.state()
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

/// Reads and checks only the header of `file` (cheap: no state checksum).
pub(crate) fn read_snapshot_header(file: &SnapFile) -> Result<SnapshotHeader, String> {
    let header = read_header_of(&file.path)?;
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

/// Maps and validates a whole snapshot file: header, length, state checksum, name (the same
/// checks as recovery: [`keel::snapshot::load_file`]; mapping is read-only). A state over
/// `DEFAULT_SNAPSHOT_MAX_STATE_BYTES` is refused unread, as at engine startup.
pub(crate) fn read_snapshot(file: &SnapFile) -> Result<SnapData, String> {
    let found = SnapshotFile {
        sequence: file.sequence,
        path: file.path.clone(),
    };
    let loaded = load_file(&found, DEFAULT_SNAPSHOT_MAX_STATE_BYTES).map_err(|e| match e {
        SnapshotError::Corrupted { reason, .. } => reason,
        other => other.to_string(),
    })?;
    Ok(SnapData {
        header: loaded.header,
        loaded,
    })
}

/// A state restored from a snapshot: the application, the engine's exactly-once table that
/// goes with it, and the snapshot's header.
pub(crate) struct Restored<A> {
    pub(crate) app: A,
    pub(crate) once: ExactlyOnce,
    pub(crate) header: SnapshotHeader,
}

/// [`restore`], only if recovery would use the snapshot: the journal in `journal` holds its
/// sequence with the chain value it recorded (or it is a format 1 snapshot at or before the
/// journal's end, restored unverified as recovery does).
pub(crate) fn restore_bound<A: App>(
    file: &SnapFile,
    journal: &Path,
    dedup: &Config,
) -> Result<Restored<A>, String> {
    let listed = SnapshotFile {
        sequence: file.sequence,
        path: file.path.clone(),
    };
    let judged = keel::snapshot::judge(&[listed], journal, u64::MAX)
        .map_err(|e| format!("the journal cannot be read at its sequence: {e}"))?;
    match &judged[0].vouch {
        vouch if vouch.is_usable() => restore(file, dedup),
        Vouch::Unreadable(reason) => Err(reason.clone()),
        other => Err(format!("the journal does not vouch for it ({other})")),
    }
}

/// Loads `file` into a fresh application state, as recovery does: its exactly-once section
/// into a table with the limits of `dedup` (empty before format 3), then the state, whose hash
/// is checked against the header (when the schema is the current one). Returns the restored
/// state, or why it is unusable.
pub(crate) fn restore<A: App>(file: &SnapFile, dedup: &Config) -> Result<Restored<A>, String> {
    let data = read_snapshot(file)?;
    let header = data.header;
    let mut once = ExactlyOnce::new(dedup).map_err(|e| e.to_string())?;
    once.restore(&data.loaded).map_err(|e| match e {
        SnapshotError::Corrupted { reason, .. } => reason,
        other => other.to_string(),
    })?;
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
    Ok(Restored { app, once, header })
}
