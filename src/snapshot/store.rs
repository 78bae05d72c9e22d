//! `SnapshotStore`: snapshot files in one directory, written atomically, pruned to a count.

use super::format::{
    decode, decode_header, dedup_section, encode_header, SnapshotHeader, FORMAT_VERSION,
    HEADER_BYTES,
};
use super::SnapshotError;
use crate::codec::CODEC_ID;
use memmap2::{Mmap, MmapOptions};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".snap.tmp";
/// Sub-directory of the snapshot directory where snapshots the journal cannot vouch for are
/// moved by an operator's explicit decision (never listed, never restored, never deleted).
pub const QUARANTINE_DIR: &str = "quarantine";

/// One snapshot as found on disk (not yet validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Last applied sequence, from the file name.
    pub sequence: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// A validated snapshot read back from disk: the file mapped read-only, so a state of
/// hundreds of megabytes is neither copied nor faulted into fresh memory before it decodes.
#[derive(Debug)]
pub struct LoadedSnapshot {
    /// Its header.
    pub header: SnapshotHeader,
    /// Where it came from.
    pub path: PathBuf,
    map: Mmap,
}

impl LoadedSnapshot {
    /// The encoded state (checksummed against the header).
    pub fn state(&self) -> &[u8] {
        let start = self.header.header_bytes();
        &self.map[start..start + self.header.state_len as usize]
    }

    /// The engine's exactly-once section (format 3; empty when there is none), checked against
    /// its CRC32C.
    pub fn dedup(&self) -> &[u8] {
        dedup_section(&self.header, &self.map)
    }
}

/// Default of the largest snapshot state restored (`Config::snapshot_max_state_bytes`): far
/// above any state the bundled applications reach at their configured limits, far below what
/// would exhaust the address space.
pub const DEFAULT_SNAPSHOT_MAX_STATE_BYTES: u64 = 16 << 30;

/// The directory of snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    retain: usize,
    max_state_bytes: u64,
}

/// File name of the snapshot after `sequence`: zero-padded so `ls` sorts by sequence.
pub fn file_name(sequence: u64) -> String {
    format!("{sequence:020}{SUFFIX}")
}

/// How much of a snapshot is written before it is synced. The journal shares the disk: a
/// snapshot written whole and synced once puts all of it in the device's queue ahead of the
/// journal's next `fdatasync`, which then waits for every byte of it (tens of milliseconds
/// for tens of MB). Synced in slices, a journal sync waits at most for one slice.
const PACE_BYTES: usize = 2 << 20;

/// Writes `bytes` to `file` a slice of [`PACE_BYTES`] at a time, each synced before the next.
fn write_paced(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    for slice in bytes.chunks(PACE_BYTES) {
        file.write_all(slice)?;
        if slice.len() == PACE_BYTES {
            file.sync_data()?;
        }
    }
    Ok(())
}

impl SnapshotStore {
    /// Opens (creating if needed) `dir`, keeping the newest `retain` snapshots on prune.
    /// Leftover temporary files from an interrupted write are removed.
    pub fn open(dir: &Path, retain: usize) -> Result<Self, SnapshotError> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(TEMP_SUFFIX) {
                fs::remove_file(&path)?;
            }
        }
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            retain: retain.max(1),
            max_state_bytes: DEFAULT_SNAPSHOT_MAX_STATE_BYTES,
        })
    }

    /// Sets the largest state [`SnapshotStore::load`] reads (default
    /// [`DEFAULT_SNAPSHOT_MAX_STATE_BYTES`]); the engine passes
    /// `Config::snapshot_max_state_bytes`.
    pub fn with_max_state_bytes(mut self, max_state_bytes: u64) -> Self {
        self.max_state_bytes = max_state_bytes;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a snapshot: temporary file, fsync, rename, fsync of the directory. A crash at
    /// any point leaves either the complete new file or none. `journal_chain` is the journal's
    /// chain value at `sequence` (`keel::journal::chain_at`), which binds the snapshot to that
    /// history; the caller must have made the journal durable up to `sequence` first.
    pub fn write(
        &self,
        sequence: u64,
        journal_chain: u32,
        schema_version: u32,
        state_hash: u64,
        state: &[u8],
    ) -> Result<PathBuf, SnapshotError> {
        self.write_with_dedup(
            sequence,
            journal_chain,
            (schema_version, state_hash),
            state,
            &[],
        )
    }

    /// Like [`SnapshotStore::write`], with the engine's exactly-once section after the state
    /// (`dedup`, as the engine encodes it; empty: none).
    pub fn write_with_dedup(
        &self,
        sequence: u64,
        journal_chain: u32,
        (schema_version, state_hash): (u32, u64),
        state: &[u8],
        dedup: &[u8],
    ) -> Result<PathBuf, SnapshotError> {
        let dedup_len = u32::try_from(dedup.len()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "exactly-once section over 4 GiB",
            )
        })?;
        let header = SnapshotHeader {
            format_version: FORMAT_VERSION,
            codec_id: CODEC_ID,
            schema_version,
            sequence,
            state_hash,
            state_len: state.len() as u64,
            state_crc: crc32c::crc32c(state),
            journal_chain: Some(journal_chain),
            dedup_len,
        };
        let final_path = self.dir.join(file_name(sequence));
        let temp_path = self.dir.join(format!("{sequence:020}{TEMP_SUFFIX}"));
        let mut file = File::create(&temp_path)?;
        file.write_all(&encode_header(&header))?;
        write_paced(&mut file, state)?;
        file.write_all(dedup)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp_path, &final_path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(final_path)
    }

    /// Moves `file` into the quarantine folder (`snapshots/quarantine/`, created if needed),
    /// durably: no later [`SnapshotStore::list`] sees it, and nothing deletes it. Returns
    /// where it went. For an operator's explicit decision to accept a loss.
    pub fn quarantine(&self, file: &SnapshotFile) -> Result<PathBuf, SnapshotError> {
        let folder = self.dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&folder)?;
        File::open(&self.dir)?.sync_all()?;
        let name = file.path.file_name().unwrap_or_default();
        let mut target = folder.join(name);
        let mut n = 1;
        while target.symlink_metadata().is_ok() {
            target = folder.join(format!("{}.{n}", name.to_string_lossy()));
            n += 1;
        }
        fs::rename(&file.path, &target)?;
        File::open(&folder)?.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        Ok(target)
    }

    /// Quarantines (see [`SnapshotStore::quarantine`]) every snapshot taken after `sequence`:
    /// after `keel::journal::JournalWriter::truncate_after(dir, sequence)` they describe a
    /// history the journal no longer holds. Nothing is deleted. Returns where they went,
    /// oldest first.
    pub fn quarantine_after(&self, sequence: u64) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut moved = Vec::new();
        for file in self.list()?.iter().filter(|f| f.sequence > sequence) {
            moved.push(self.quarantine(file)?);
        }
        Ok(moved)
    }

    /// Every snapshot file, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotFile>, SnapshotError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(sequence) = name.strip_suffix(SUFFIX).and_then(|s| s.parse().ok()) {
                found.push(SnapshotFile { sequence, path });
            }
        }
        found.sort_by_key(|f| f.sequence);
        Ok(found)
    }

    /// Reads and validates one snapshot file (see [`load_file`]). A file whose state would
    /// exceed the store's limit is refused with `TooLarge` before it is read.
    pub fn load(&self, file: &SnapshotFile) -> Result<LoadedSnapshot, SnapshotError> {
        load_file(file, self.max_state_bytes)
    }

    /// Deletes all but the newest `retain` snapshots.
    pub fn prune(&self) -> Result<usize, SnapshotError> {
        let files = self.list()?;
        let excess = files.len().saturating_sub(self.retain);
        for file in &files[..excess] {
            fs::remove_file(&file.path)?;
        }
        Ok(excess)
    }
}

/// Maps `file` read-only and validates it: size within `max_state_bytes` (checked from the
/// header before mapping), header, length, state checksum, and that it holds the sequence its
/// name says. Snapshot files are immutable once renamed into place (keel only ever writes a
/// temp file and renames it; pruning unlinks, which keeps the mapping).
pub fn load_file(
    file: &SnapshotFile,
    max_state_bytes: u64,
) -> Result<LoadedSnapshot, SnapshotError> {
    let corrupted = |reason: String| SnapshotError::Corrupted {
        path: file.path.clone(),
        reason,
    };
    let handle = File::open(&file.path)?;
    let len = handle.metadata()?.len();
    let header = read_header(&handle, len).map_err(corrupted)?;
    let state_bytes = len - header.header_bytes() as u64;
    if state_bytes > max_state_bytes {
        return Err(SnapshotError::TooLarge {
            path: file.path.clone(),
            state_bytes,
            max_state_bytes,
        });
    }
    // SAFETY: the mapping is read-only and private to this value; snapshot files are never
    // written or truncated after the rename that publishes them (see `write`), so the bytes
    // cannot change or vanish under the `&[u8]` views handed out.
    let map = unsafe { MmapOptions::new().populate().map(&handle)? };
    let (header, _) = decode(&map).map_err(corrupted)?;
    if header.sequence != file.sequence {
        return Err(corrupted(format!(
            "holds sequence {} but is named {}",
            header.sequence, file.sequence
        )));
    }
    Ok(LoadedSnapshot {
        header,
        path: file.path.clone(),
        map,
    })
}

/// Reads and checks the header of the snapshot file at `path`, without its state.
pub fn read_header_of(path: &Path) -> Result<SnapshotHeader, String> {
    let handle = File::open(path).map_err(|e| format!("unreadable: {e}"))?;
    let len = handle
        .metadata()
        .map_err(|e| format!("unreadable: {e}"))?
        .len();
    read_header(&handle, len)
}

/// Reads and checks the header of a snapshot file of `len` bytes, without its state.
fn read_header(handle: &File, len: u64) -> Result<SnapshotHeader, String> {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0u8; HEADER_BYTES];
    let n = (len as usize).min(HEADER_BYTES);
    handle
        .read_exact_at(&mut bytes[..n], 0)
        .map_err(|e| format!("header unreadable: {e}"))?;
    decode_header(&bytes[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_larger_than_a_paced_slice_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 2).unwrap();
        let state: Vec<u8> = (0..2 * PACE_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        store.write(9, 0, 1, 5, &state).unwrap();
        let files = store.list().unwrap();
        let loaded = store.load(&files[0]).unwrap();
        assert_eq!(loaded.state(), &state[..]);
    }

    #[test]
    fn write_list_load_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 2).unwrap();
        for seq in [10u64, 30, 20] {
            store
                .write(seq, 0, 1, seq * 7, format!("state {seq}").as_bytes())
                .unwrap();
        }
        let files = store.list().unwrap();
        assert_eq!(
            files.iter().map(|f| f.sequence).collect::<Vec<_>>(),
            vec![10, 20, 30]
        );
        let loaded = store.load(&files[2]).unwrap();
        assert_eq!(
            (loaded.header.state_hash, loaded.state()),
            (210, &b"state 30"[..])
        );
        assert_eq!(store.prune().unwrap(), 1);
        assert_eq!(store.list().unwrap().len(), 2);
    }

    #[test]
    fn a_renamed_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 2).unwrap();
        let path = store.write(5, 0, 1, 0, b"x").unwrap();
        fs::rename(&path, dir.path().join(file_name(6))).unwrap();
        let files = store.list().unwrap();
        assert!(matches!(
            store.load(&files[0]),
            Err(SnapshotError::Corrupted { .. })
        ));
    }

    #[test]
    fn a_state_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 2)
            .unwrap()
            .with_max_state_bytes(4);
        store.write(1, 0, 1, 0, b"four").unwrap();
        store.write(2, 0, 1, 0, b"five!").unwrap();
        let files = store.list().unwrap();
        assert_eq!(&store.load(&files[0]).unwrap().state(), b"four");
        assert!(matches!(
            store.load(&files[1]),
            Err(SnapshotError::TooLarge {
                state_bytes: 5,
                max_state_bytes: 4,
                ..
            })
        ));
    }
}
