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

/// Bytes in a segment file name.
const NAME_BYTES: usize = NAME_DIGITS + SEGMENT_SUFFIX.len();

/// `00000000000000000001.seg` for sequence 1.
pub(crate) fn segment_file_name(first_sequence: u64) -> String {
    segment_name_bytes(first_sequence).as_str().to_owned()
}

/// A segment file name formatted on the stack (no allocation).
struct NameBytes([u8; NAME_BYTES]);

impl NameBytes {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("digits and an ASCII suffix")
    }
}

fn segment_name_bytes(first_sequence: u64) -> NameBytes {
    let mut name = [0u8; NAME_BYTES];
    let mut rest = first_sequence;
    for digit in name[..NAME_DIGITS].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    name[NAME_DIGITS..].copy_from_slice(SEGMENT_SUFFIX.as_bytes());
    NameBytes(name)
}

/// The path of a segment in one directory, in a buffer sized once: naming the next segment
/// at a rollover does not allocate.
#[derive(Debug)]
pub(crate) struct SegmentPath {
    path: PathBuf,
}

impl SegmentPath {
    /// A buffer for the segment paths of `dir` (allocated here, once).
    pub(crate) fn new(dir: &Path) -> Self {
        let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + NAME_BYTES);
        path.push(dir);
        path.push(segment_name_bytes(0).as_str());
        Self { path }
    }

    /// The path of the segment whose first sequence is `first_sequence`.
    pub(crate) fn of(&mut self, first_sequence: u64) -> &Path {
        // Same length as the name it replaces: within the capacity reserved in `new`.
        self.path
            .set_file_name(segment_name_bytes(first_sequence).as_str());
        &self.path
    }
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
        let locked = retry_contended(|| fs4::fs_std::FileExt::try_lock_exclusive(&file))
            .map_err(file_io(&path))?;
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
        let locked = retry_contended(|| fs4::fs_std::FileExt::try_lock_shared(&file))
            .map_err(file_io(&path))?;
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

/// Tries a lock again for a short while when someone else holds it. A lock this process held
/// and released can look held for a moment: a child another thread of this process just
/// forked shares the lock's open file until it `exec`s. Bounded: a lock really held by
/// another writer is reported after `LOCK_RETRIES` tries, about 50 ms.
fn retry_contended(mut try_lock: impl FnMut() -> io::Result<bool>) -> io::Result<bool> {
    for _ in 1..LOCK_RETRIES {
        if try_lock()? {
            return Ok(true);
        }
        std::thread::sleep(LOCK_RETRY_PAUSE);
    }
    try_lock()
}

const LOCK_RETRIES: u32 = 10;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_freed_while_retrying_is_taken_and_a_held_one_is_refused() {
        let mut tries = 0;
        assert!(retry_contended(|| {
            tries += 1;
            Ok(tries == 3)
        })
        .unwrap());
        let mut tries = 0;
        assert!(!retry_contended(|| {
            tries += 1;
            Ok(false)
        })
        .unwrap());
        assert_eq!(tries, LOCK_RETRIES);
    }

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        let mut path = SegmentPath::new(Path::new("/j"));
        let capacity = path.path.capacity();
        assert_eq!(path.of(7), Path::new("/j/00000000000000000007.seg"));
        assert_eq!(path.path.capacity(), capacity, "named in place");
        assert_eq!(
            path.of(u64::MAX).file_name().unwrap(),
            format!("{}.seg", u64::MAX).as_str()
        );
        assert_eq!(
            parse_segment_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_name("1.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_segment_name(SPARE_FILE_NAME), None);
    }
}
