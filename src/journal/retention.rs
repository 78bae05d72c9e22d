//! Journal retention: what happens to segments wholly before the oldest retained snapshot
//! (`docs/OPERATIONS.md`, "Retention"; marker byte map in `docs/journal_format.md`).
//!
//! A pass ([`retire_before`]) runs on the snapshot thread once a snapshot is durable and old
//! snapshots are pruned. It first records, durably, where the journal now starts (the
//! retention marker `journal.retired`: the first sequence kept, the chain value before it and
//! the archive directory), then moves or deletes the retired segments oldest first, syncing
//! the directories after each one. A crash at any point leaves a journal that is a contiguous
//! suffix of its history, starting at or before the marker's sequence; the next pass finishes
//! the work. Recovery reads the marker to tell history keel retired from history that is
//! missing, and to refuse a start that would need either.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::dir::{list_segments, SegmentFile};
use super::error::{file_io, JournalError};
use super::format::{SegmentHeader, SEGMENT_HEADER_SIZE};

/// What happens to journal segments no retained snapshot needs any more.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JournalRetention {
    /// Keep every segment (the default): the journal grows until an operator removes files.
    #[default]
    Keep,
    /// Move them into this directory (created if needed). `keel replay` reads them there.
    Archive(PathBuf),
    /// Delete them.
    Delete,
}

impl FromStr for JournalRetention {
    type Err = JournalError;

    /// `keep`, `delete` or `archive:DIR`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(Self::Keep),
            "delete" => Ok(Self::Delete),
            _ => match s.strip_prefix("archive:") {
                Some(dir) if !dir.is_empty() => Ok(Self::Archive(PathBuf::from(dir))),
                _ => Err(JournalError::InvalidConfig {
                    reason: format!(
                        "invalid journal retention {s:?}: expected keep, delete or archive:DIR"
                    ),
                }),
            },
        }
    }
}

impl fmt::Display for JournalRetention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keep => f.write_str("keep"),
            Self::Delete => f.write_str("delete"),
            Self::Archive(dir) => write!(f, "archive:{}", dir.display()),
        }
    }
}

/// The retention marker: the journal's history before `first_sequence` was retired by keel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredHistory {
    /// The first sequence the journal keeps; sequences `1..first_sequence` were retired.
    pub first_sequence: u64,
    /// The journal's chain value at `first_sequence - 1` (the CRC of that record), which the
    /// segment starting at `first_sequence` states as its chain-in value.
    pub chain_in: u32,
    /// Where the last retired segments were moved (`None`: they were deleted).
    pub archive: Option<PathBuf>,
}

/// Name of the retention marker in the journal directory.
pub(crate) const RETIRED_FILE_NAME: &str = "journal.retired";
const RETIRED_TMP_NAME: &str = "journal.retired.tmp";
const MARKER_MAGIC: &[u8; 8] = b"KEELRTRD";
const MARKER_VERSION: u16 = 1;
const M_VERSION: usize = 8;
const M_FLAGS: usize = 10;
const M_PATH_BYTES: usize = 12;
const M_FIRST_SEQUENCE: usize = 16;
const M_CHAIN_IN: usize = 24;
const M_CRC: usize = 28;
/// Bytes before the archive path.
pub(crate) const MARKER_HEADER_BYTES: usize = 32;
/// Longest archive path recorded.
const MAX_PATH_BYTES: usize = 4096;
const FLAG_ARCHIVED: u16 = 1;
const _: () = assert!(M_CRC + 4 == MARKER_HEADER_BYTES && M_CHAIN_IN + 4 == M_CRC);

impl RetiredHistory {
    /// The last sequence retired.
    pub fn last_retired(&self) -> u64 {
        self.first_sequence - 1
    }

    /// Encodes the marker: a 32-byte header, then the archive path.
    fn encode(&self) -> Vec<u8> {
        let path = self
            .archive
            .as_ref()
            .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
            .unwrap_or_default();
        let mut b = vec![0u8; MARKER_HEADER_BYTES];
        b[..8].copy_from_slice(MARKER_MAGIC);
        b[M_VERSION..M_VERSION + 2].copy_from_slice(&MARKER_VERSION.to_le_bytes());
        let flags = if self.archive.is_some() {
            FLAG_ARCHIVED
        } else {
            0
        };
        b[M_FLAGS..M_FLAGS + 2].copy_from_slice(&flags.to_le_bytes());
        b[M_PATH_BYTES..M_PATH_BYTES + 4].copy_from_slice(&(path.len() as u32).to_le_bytes());
        b[M_FIRST_SEQUENCE..M_FIRST_SEQUENCE + 8]
            .copy_from_slice(&self.first_sequence.to_le_bytes());
        b[M_CHAIN_IN..M_CHAIN_IN + 4].copy_from_slice(&self.chain_in.to_le_bytes());
        b.extend_from_slice(&path);
        let crc = marker_crc(&b);
        b[M_CRC..M_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a marker, checking magic, version, CRC and lengths.
    fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < MARKER_HEADER_BYTES || &b[..8] != MARKER_MAGIC {
            return Err("not a retention marker (bad magic or too short)".into());
        }
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let version = u16_at(M_VERSION);
        if version != MARKER_VERSION {
            return Err(format!(
                "retention marker version {version} is not supported"
            ));
        }
        let path_bytes = u32_at(M_PATH_BYTES) as usize;
        if path_bytes > MAX_PATH_BYTES || b.len() != MARKER_HEADER_BYTES + path_bytes {
            return Err(format!("retention marker length {} is wrong", b.len()));
        }
        if u32_at(M_CRC) != marker_crc(b) {
            return Err("retention marker checksum mismatch".into());
        }
        let first_sequence = u64::from_le_bytes(
            b[M_FIRST_SEQUENCE..M_FIRST_SEQUENCE + 8]
                .try_into()
                .expect("8 bytes"),
        );
        if first_sequence < 2 {
            return Err(format!("retention marker names sequence {first_sequence}"));
        }
        let archive = (u16_at(M_FLAGS) & FLAG_ARCHIVED != 0).then(|| {
            use std::os::unix::ffi::OsStrExt;
            PathBuf::from(std::ffi::OsStr::from_bytes(&b[MARKER_HEADER_BYTES..]))
        });
        Ok(Self {
            first_sequence,
            chain_in: u32_at(M_CHAIN_IN),
            archive,
        })
    }

    /// Reads the retention marker of the journal in `dir`: `None` when keel never retired
    /// any of it. A damaged marker is an error (it is written atomically, so it is never torn).
    pub fn read(dir: &Path) -> Result<Option<Self>, JournalError> {
        let path = dir.join(RETIRED_FILE_NAME);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut file) => file.read_to_end(&mut bytes).map_err(file_io(&path))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(file_io(&path)(err)),
        };
        Self::decode(&bytes)
            .map(Some)
            .map_err(|reason| JournalError::Retention { path, reason })
    }

    /// Writes the marker into `dir` atomically: temporary file, fsync, rename, directory fsync.
    pub(super) fn write(&self, dir: &Path) -> Result<(), JournalError> {
        let tmp = dir.join(RETIRED_TMP_NAME);
        let mut file = File::create(&tmp).map_err(file_io(&tmp))?;
        file.write_all(&self.encode()).map_err(file_io(&tmp))?;
        file.sync_all().map_err(file_io(&tmp))?;
        let path = dir.join(RETIRED_FILE_NAME);
        fs::rename(&tmp, &path).map_err(file_io(&path))?;
        sync_dir(dir)
    }
}

fn marker_crc(b: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&b[..M_CRC]);
    crc32c::crc32c_append(crc, &b[MARKER_HEADER_BYTES..])
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_io(dir))
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Retired {
    /// Segment files moved or deleted.
    pub(crate) segments: usize,
    /// Where the journal now starts (0: nothing was retired).
    pub(crate) first_sequence: u64,
}

/// Retires, under `policy`, every segment of the journal in `dir` whose records all lie
/// before `keep_from` (the oldest retained snapshot's sequence): a segment goes only if the
/// segment after it starts at or before `keep_from`, so the journal keeps the record at
/// `keep_from` (whose chain value binds that snapshot) and everything after it. The last
/// segment (the active one) always has no successor and stays. Writes the marker first, then
/// removes segments oldest first, syncing directories after each.
pub(crate) fn retire_before(
    dir: &Path,
    policy: &JournalRetention,
    keep_from: u64,
) -> Result<Retired, JournalError> {
    if *policy == JournalRetention::Keep {
        return Ok(Retired::default());
    }
    let segments = list_segments(dir)?;
    let count = segments
        .windows(2)
        .take_while(|pair| pair[1].first_sequence <= keep_from)
        .count();
    if count == 0 {
        return Ok(Retired::default());
    }
    let kept = &segments[count];
    let marker = RetiredHistory {
        first_sequence: kept.first_sequence,
        chain_in: chain_in_of(kept)?,
        archive: match policy {
            JournalRetention::Archive(to) => Some(absolute(to)),
            _ => None,
        },
    };
    let previous = RetiredHistory::read(dir)?;
    if previous.as_ref() != Some(&marker) {
        marker.write(dir)?;
    }
    for seg in &segments[..count] {
        match policy {
            JournalRetention::Archive(to) => archive_one(dir, seg, to)?,
            _ => {
                fs::remove_file(&seg.path).map_err(file_io(&seg.path))?;
                sync_dir(dir)?;
            }
        }
    }
    tracing::info!(dir = %dir.display(), %policy, segments = count,
        first_sequence = kept.first_sequence, "journal retention: segments retired");
    Ok(Retired {
        segments: count,
        first_sequence: kept.first_sequence,
    })
}

/// The chain-in value the header of `seg` states (it must decode and name its own sequence).
fn chain_in_of(seg: &SegmentFile) -> Result<u32, JournalError> {
    let mut bytes = [0u8; SEGMENT_HEADER_SIZE];
    File::open(&seg.path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(file_io(&seg.path))?;
    let header = SegmentHeader::decode(&bytes).map_err(|damage| JournalError::Retention {
        path: seg.path.clone(),
        reason: format!("the first kept segment's header does not decode ({damage})"),
    })?;
    if header.first_sequence != seg.first_sequence {
        return Err(JournalError::Retention {
            path: seg.path.clone(),
            reason: format!("its header names sequence {}", header.first_sequence),
        });
    }
    Ok(header.prev_crc)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Moves one segment into `archive`: a rename on the same file system; across file systems a
/// copy (temporary name, fsync, rename) and only then an unlink of the original. The archive
/// directory is synced before the journal directory, so a crash never leaves the segment in
/// neither place. A file of that name already in the archive is replaced only if it is this
/// same segment (same size and header: a copy a crash left before its unlink).
fn archive_one(dir: &Path, seg: &SegmentFile, archive: &Path) -> Result<(), JournalError> {
    fs::create_dir_all(archive).map_err(file_io(archive))?;
    if fs::canonicalize(archive).ok() == fs::canonicalize(dir).ok() {
        return Err(JournalError::Retention {
            path: archive.to_owned(),
            reason: "the archive directory is the journal directory; nothing was moved".into(),
        });
    }
    let name = seg.path.file_name().expect("a segment file has a name");
    let target = archive.join(name);
    check_replaceable(&seg.path, &target)?;
    match fs::rename(&seg.path, &target) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EXDEV) => copy_durably(&seg.path, &target)?,
        Err(err) => return Err(file_io(&target)(err)),
    }
    sync_dir(archive)?;
    if seg.path.exists() {
        fs::remove_file(&seg.path).map_err(file_io(&seg.path))?;
    }
    sync_dir(dir)
}

/// Refuses to replace a file in the archive that is not the same segment.
fn check_replaceable(source: &Path, target: &Path) -> Result<(), JournalError> {
    let Ok(existing) = fs::metadata(target) else {
        return Ok(());
    };
    let head = |path: &Path| -> io::Result<[u8; SEGMENT_HEADER_SIZE]> {
        let mut bytes = [0u8; SEGMENT_HEADER_SIZE];
        File::open(path)?.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    let same = fs::metadata(source).map_err(file_io(source))?.len() == existing.len()
        && head(source).ok() == head(target).ok();
    if same {
        return Ok(());
    }
    Err(JournalError::Retention {
        path: target.to_owned(),
        reason: "the archive already holds a different segment of this name (does another \
                 journal archive into the same directory?); nothing was moved"
            .into(),
    })
}

/// Copies `from` to `to` through a temporary file that is synced and then renamed.
fn copy_durably(from: &Path, to: &Path) -> Result<(), JournalError> {
    let mut tmp_name = to.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut source = File::open(from).map_err(file_io(from))?;
    let mut copy = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(file_io(&tmp))?;
    io::copy(&mut source, &mut copy).map_err(file_io(&tmp))?;
    copy.sync_all().map_err(file_io(&tmp))?;
    fs::rename(&tmp, to).map_err(file_io(to))
}

#[cfg(test)]
mod tests {
    use super::super::config::{FlushPolicy, JournalConfig, SegmentPrep};
    use super::super::format::Record;
    use super::super::reader::JournalReader;
    use super::super::recovery::verify;
    use super::super::writer::JournalWriter;
    use super::*;

    /// A journal of 16 KiB segments holding `records` records of 200 bytes (about 70 per
    /// segment); returns its segment files.
    fn journal(dir: &Path, records: u64) -> Vec<SegmentFile> {
        let mut cfg = JournalConfig::new(dir);
        cfg.segment_size_bytes = 16 << 10;
        cfg.max_payload_bytes = 1024;
        cfg.flush = FlushPolicy::Batch;
        cfg.segment_prep = SegmentPrep::Allocated;
        let mut writer = JournalWriter::open(&cfg).unwrap();
        let payload = [7u8; 200];
        for sequence in writer.last_sequence() + 1..=records {
            let record = Record {
                sequence,
                timestamp_ns: sequence,
                session_id: 1,
                correlation_id: sequence,
                kind: 1,
                version: 1,
                payload: &payload,
            };
            writer.append(&record).unwrap();
            writer.end_batch().unwrap();
        }
        writer.sync().unwrap();
        drop(writer);
        list_segments(dir).unwrap()
    }

    fn first_read(dir: &Path) -> u64 {
        let mut reader = JournalReader::open(dir).unwrap();
        reader.next().unwrap().expect("a record").sequence
    }

    #[test]
    fn delete_retires_whole_segments_before_the_sequence_and_keeps_the_one_holding_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let segments = journal(dir, 1000);
        assert!(segments.len() > 8, "{}", segments.len());
        let keep_from = segments[5].first_sequence + 3;
        let done = retire_before(dir, &JournalRetention::Delete, keep_from).unwrap();
        assert_eq!(done.segments, 5);
        assert_eq!(done.first_sequence, segments[5].first_sequence);
        let left = list_segments(dir).unwrap();
        assert_eq!(left[0].first_sequence, segments[5].first_sequence);
        let report = verify(dir).unwrap();
        assert_eq!(report.first_sequence, Some(segments[5].first_sequence));
        assert_eq!(report.last_sequence, 1000);
        let marker = report.retired.expect("a retention marker");
        assert_eq!(marker.first_sequence, segments[5].first_sequence);
        assert_eq!(marker.archive, None);
        assert_eq!(first_read(dir), segments[5].first_sequence);
        // Idempotent, and the active segment never goes.
        let again = retire_before(dir, &JournalRetention::Delete, keep_from).unwrap();
        assert_eq!(again.segments, 0);
        retire_before(dir, &JournalRetention::Delete, u64::MAX).unwrap();
        assert_eq!(list_segments(dir).unwrap().len(), 1);
        assert_eq!(verify(dir).unwrap().last_sequence, 1000);
        // Keep never touches anything.
        let kept = tempfile::tempdir().unwrap();
        let all = journal(kept.path(), 500);
        let none = retire_before(kept.path(), &JournalRetention::Keep, u64::MAX).unwrap();
        assert_eq!(none.segments, 0);
        assert_eq!(list_segments(kept.path()).unwrap(), all);
    }

    #[test]
    fn a_crash_at_any_step_of_a_pass_leaves_a_readable_journal_and_the_next_pass_finishes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let segments = journal(dir, 1000);
        let kept = &segments[6];
        // Crash right after the marker: nothing removed yet.
        let marker = RetiredHistory {
            first_sequence: kept.first_sequence,
            chain_in: chain_in_of(kept).unwrap(),
            archive: None,
        };
        marker.write(dir).unwrap();
        assert_eq!(verify(dir).unwrap().first_sequence, Some(1));
        assert_eq!(first_read(dir), 1);
        // Crash after half of the segments: the oldest ones went first.
        for seg in &segments[..3] {
            fs::remove_file(&seg.path).unwrap();
        }
        let report = verify(dir).unwrap();
        assert_eq!(report.first_sequence, Some(segments[3].first_sequence));
        assert_eq!(report.last_sequence, 1000);
        assert_eq!(first_read(dir), segments[3].first_sequence);
        // The writer opens on it, and the next pass finishes.
        let mut cfg = JournalConfig::new(dir);
        cfg.segment_size_bytes = 16 << 10;
        cfg.max_payload_bytes = 1024;
        drop(JournalWriter::open(&cfg).unwrap());
        let done = retire_before(dir, &JournalRetention::Delete, kept.first_sequence).unwrap();
        assert_eq!(done.segments, 3);
        assert_eq!(first_read(dir), kept.first_sequence);
    }

    #[test]
    fn archive_moves_segments_and_a_copy_left_by_a_crash_is_finished_not_duplicated() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let archive = tmp.path().join("archive");
        let segments = journal(&dir, 1000);
        // A cross-device move interrupted after the copy, before the unlink.
        fs::create_dir_all(&archive).unwrap();
        let name = segments[0].path.file_name().unwrap();
        fs::copy(&segments[0].path, archive.join(name)).unwrap();
        let policy = JournalRetention::Archive(archive.clone());
        let keep_from = segments[4].first_sequence;
        let done = retire_before(&dir, &policy, keep_from).unwrap();
        assert_eq!(done.segments, 4);
        let archived = list_segments(&archive).unwrap();
        let names =
            |s: &[SegmentFile]| -> Vec<u64> { s.iter().map(|s| s.first_sequence).collect() };
        assert_eq!(names(&archived), names(&segments[..4]));
        assert_eq!(list_segments(&dir).unwrap()[0].first_sequence, keep_from);
        let marker = RetiredHistory::read(&dir).unwrap().unwrap();
        assert_eq!(marker.archive.as_deref(), Some(archive.as_path()));
        // Archive and journal read as one chain.
        let mut reader = JournalReader::open_with_archive(&dir, &archive).unwrap();
        let mut expected = 1;
        while let Some(record) = reader.next().unwrap() {
            assert_eq!(record.sequence, expected);
            expected += 1;
        }
        assert_eq!(expected, 1001);
    }

    #[test]
    fn a_kept_journal_that_does_not_continue_the_retired_history_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let segments = journal(dir, 600);
        retire_before(dir, &JournalRetention::Delete, segments[3].first_sequence).unwrap();
        let mut marker = RetiredHistory::read(dir).unwrap().unwrap();
        marker.chain_in ^= 1;
        marker.write(dir).unwrap();
        let err = verify(dir).unwrap_err();
        assert!(
            matches!(
                &err,
                JournalError::Corrupted { segment, offset: 0, .. } if *segment == segments[3].path
            ),
            "{err}"
        );
    }

    #[test]
    fn archive_refuses_to_replace_another_journals_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, archive) = (tmp.path().join("journal"), tmp.path().join("archive"));
        let segments = journal(&dir, 600);
        fs::create_dir_all(&archive).unwrap();
        let name = segments[0].path.file_name().unwrap();
        fs::write(archive.join(name), b"another journal's segment").unwrap();
        let itself = JournalRetention::Archive(dir.clone());
        let err = retire_before(&dir, &itself, segments[2].first_sequence).unwrap_err();
        assert!(
            err.to_string().contains("is the journal directory"),
            "{err}"
        );
        let policy = JournalRetention::Archive(archive.clone());
        let err = retire_before(&dir, &policy, segments[2].first_sequence).unwrap_err();
        assert!(err.to_string().contains("different segment"), "{err}");
        assert_eq!(list_segments(&dir).unwrap(), segments);
        assert_eq!(
            fs::read(archive.join(name)).unwrap(),
            b"another journal's segment"
        );
    }

    #[test]
    fn an_emptied_journal_whose_history_was_retired_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let segments = journal(dir, 600);
        retire_before(dir, &JournalRetention::Delete, 600).unwrap();
        for seg in list_segments(dir).unwrap() {
            fs::remove_file(seg.path).unwrap();
        }
        let mut cfg = JournalConfig::new(dir);
        cfg.segment_size_bytes = 16 << 10;
        cfg.max_payload_bytes = 1024;
        let err = JournalWriter::open(&cfg).unwrap_err();
        let last = segments.last().unwrap().first_sequence - 1;
        assert!(
            matches!(err, JournalError::HistoryRetired { last_retired, .. } if last_retired == last),
            "{err}"
        );
        assert!(
            list_segments(dir).unwrap().is_empty(),
            "nothing was created"
        );
    }

    #[test]
    fn retention_parses_and_displays() {
        for text in ["keep", "delete", "archive:/a/b"] {
            let parsed: JournalRetention = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(
            "archive:x".parse::<JournalRetention>().unwrap(),
            JournalRetention::Archive("x".into())
        );
        for bad in ["", "Keep", "archive:", "archive", "del"] {
            assert!(bad.parse::<JournalRetention>().is_err(), "{bad}");
        }
    }

    #[test]
    fn marker_round_trips_and_damage_is_detected() {
        for archive in [None, Some(PathBuf::from("/var/keel/archive"))] {
            let marker = RetiredHistory {
                first_sequence: 4097,
                chain_in: 0xdead_beef,
                archive,
            };
            let mut bytes = marker.encode();
            assert_eq!(RetiredHistory::decode(&bytes), Ok(marker.clone()));
            assert_eq!(&bytes[..8], b"KEELRTRD");
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            assert!(RetiredHistory::decode(&bytes).is_err());
        }
    }
}
