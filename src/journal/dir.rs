//! The journal directory: segment file names, listing, the spare file, the lock.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::error::{file_io, JournalError};
use super::io::SegmentIo;

/// Suffix of segment files.
const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of files that are never part of the journal (the spare segment being prepared).
const TMP_SUFFIX: &str = ".seg.tmp";
/// Name of the spare segment prepared ahead of rollover.
pub(crate) const SPARE_FILE_NAME: &str = "next.seg.tmp";
/// Name of the lock file (never deleted).
pub(crate) const LOCK_FILE_NAME: &str = "journal.lock";
/// Digits in a segment file name: enough for `u64::MAX`.
const NAME_DIGITS: usize = 20;

/// A segment file and the first sequence its name declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub(crate) first_sequence: u64,
    pub(crate) path: PathBuf,
}

/// `00000000000000000001.seg` for sequence 1.
pub(crate) fn segment_file_name(first_sequence: u64) -> String {
    format!("{first_sequence:0NAME_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The first sequence declared by a segment file name, if it is one.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// All segment files of `dir`, oldest first. A `.seg` file with another name is an error.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(file_io(dir))? {
        let path = entry.map_err(file_io(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        match parse_segment_name(name) {
            Some(first_sequence) => out.push(SegmentFile {
                first_sequence,
                path,
            }),
            None => return Err(JournalError::BadFileName { path }),
        }
    }
    out.sort_by_key(|s| s.first_sequence);
    Ok(out)
}

/// Removes leftover `*.seg.tmp` files (spares from an earlier run). Returns whether any was.
pub(crate) fn remove_spares(dir: &Path, io: &dyn SegmentIo) -> Result<bool, JournalError> {
    let mut removed = false;
    for entry in fs::read_dir(dir).map_err(file_io(dir))? {
        let path = entry.map_err(file_io(dir))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(TMP_SUFFIX))
        {
            io.remove(&path).map_err(file_io(&path))?;
            removed = true;
        }
    }
    Ok(removed)
}

/// A held `flock` on `dir/journal.lock`, released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// The one writer's lock. Fails with `Locked` if anyone else holds any lock on it.
    pub(crate) fn exclusive(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(file_io(&path))?;
        let locked = fs4::fs_std::FileExt::try_lock_exclusive(&file).map_err(file_io(&path))?;
        Self::held(locked, file, dir)
    }

    /// A shared lock for a read-only `verify`: keeps a writer (and its recovery) out meanwhile.
    /// Without a lock file (nobody ever wrote here) there is nothing to lock: `None`.
    pub(crate) fn shared(dir: &Path) -> Result<Option<Self>, JournalError> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(file_io(&path)(err)),
        };
        let locked = fs4::fs_std::FileExt::try_lock_shared(&file).map_err(file_io(&path))?;
        Self::held(locked, file, dir).map(Some)
    }

    fn held(locked: bool, file: File, dir: &Path) -> Result<Self, JournalError> {
        if locked {
            Ok(Self { _file: file })
        } else {
            Err(JournalError::Locked {
                dir: dir.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(
            parse_segment_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_name("1.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_segment_name(SPARE_FILE_NAME), None);
    }
}
