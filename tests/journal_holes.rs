//! The scans after a journal's end skip what the filesystem reports as holes (an allocated but
//! unwritten segment tail) without reading it, and still find everything written after one.

mod journal_support;

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use journal_support::*;
use keel::journal::{
    verify, CorruptionReason, Damage, Evidence, EvidenceKind, FlushPolicy, JournalError,
    JournalReader, JournalWriter, TailState,
};

/// Big enough for a tail of many pages after the records.
const SEG: u64 = 1 << 20;
const PAGE: usize = 4096;
const RECORDS: u64 = 100;

/// A closed journal of `RECORDS` records in one segment in `dir`: the segment file and where
/// its records end.
fn journal(dir: &Path) -> (PathBuf, usize) {
    let mut w = JournalWriter::open(&cfg(dir, SEG, FlushPolicy::Batch)).unwrap();
    write(&mut w, 1, RECORDS, 10);
    drop(w);
    let entries = layout(dir);
    let last = entries.last().unwrap();
    (last.file.clone(), last.offset + last.size)
}

/// Replaces `file` by a copy whose bytes `[0, keep)` and `extra` are written and whose rest is
/// allocated but never written (`fallocate`), as a segment preparation that leaves the rest of
/// a segment unwritten leaves it.
fn unwritten_after(file: &Path, keep: usize, extra: &[(usize, &[u8])]) {
    let bytes = fs::read(file).unwrap();
    let copy = file.parent().unwrap().parent().unwrap().join("copy");
    let out = File::create(&copy).unwrap();
    // SAFETY: a plain syscall on a descriptor `out` keeps open.
    let rc = unsafe { libc::fallocate(out.as_raw_fd(), 0, 0, bytes.len() as libc::off_t) };
    assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
    out.write_all_at(&bytes[..keep], 0).unwrap();
    for (at, image) in extra {
        out.write_all_at(image, *at as u64).unwrap();
    }
    drop(out);
    fs::rename(&copy, file).unwrap();
}

/// Where the filesystem reports the next data at or after `at` (`SEEK_DATA`); `None` for a
/// hole to the end of the file. `Some(at)` where the filesystem has no holes to report.
fn next_data(file: &Path, at: usize) -> Option<usize> {
    let f = OpenOptions::new().read(true).open(file).unwrap();
    // SAFETY: a plain syscall on a descriptor `f` keeps open.
    let found = unsafe { libc::lseek(f.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
    if found >= 0 {
        return Some(found as usize);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENXIO) => None,
        _ => Some(at), // no such seek here: all data
    }
}

fn reader_error(dir: &Path) -> JournalError {
    let mut reader = JournalReader::open(dir).unwrap();
    for seq in 1..=RECORDS {
        check(&reader.next().unwrap().unwrap(), seq);
    }
    reader.next().map(|_| ()).unwrap_err()
}

#[test]
fn an_unwritten_tail_is_skipped_without_being_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let (file, end) = journal(&dir);
    let keep = end.next_multiple_of(PAGE);
    unwritten_after(&file, keep, &[]);
    // Where the filesystem reports unwritten extents as holes (ext4, xfs), the tail is one.
    let holed = next_data(&file, keep).is_none();
    if !holed {
        eprintln!("this filesystem reports no holes: the tail is read as before");
    }

    // Reading a page of an unwritten extent through a mapping puts a zero-filled page into
    // the page cache, which the filesystem reports as data from then on: while the tail stays
    // a hole, nothing read it.
    let still_a_hole = |what: &str| {
        if holed {
            assert_eq!(
                next_data(&file, keep),
                None,
                "{what} read the unwritten tail"
            );
        }
    };
    let report = verify(&dir).unwrap();
    let clean = TailState::Clean {
        segment: file.clone(),
        offset: end as u64,
    };
    assert_eq!((report.tail, report.record_count), (clean, RECORDS));
    still_a_hole("the open-time scan");
    assert_eq!(read_all(&dir), RECORDS);
    still_a_hole("the reader's end-of-read scan");

    let mut w = JournalWriter::open(&cfg(&dir, SEG, FlushPolicy::Batch)).unwrap();
    write(&mut w, RECORDS + 1, RECORDS + 50, 10);
    drop(w);
    assert_eq!(read_all(&dir), RECORDS + 50);
}

#[test]
fn a_valid_record_after_a_hole_is_still_evidence_of_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    // Mid-page in the middle of the tail, and in the segment's last page.
    for (round, at) in [SEG as usize / 2 + 1000, SEG as usize - 512]
        .into_iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("journal-{round}"));
        let (file, end) = journal(&dir);
        let third = &layout(&dir)[2];
        assert_eq!(third.sequence, Some(3));
        let image = fs::read(&file).unwrap()[third.offset..third.offset + third.size].to_vec();
        let keep = end.next_multiple_of(PAGE);
        unwritten_after(&file, keep, &[(at, &image)]);
        let data = next_data(&file, keep);
        assert!(data.is_some_and(|d| d <= at), "{data:?}");

        let want = CorruptionReason::DamagedBeforeValidData {
            damage: Damage::Unwritten,
            evidence: Evidence {
                segment_first_sequence: 1,
                offset: at as u64,
                kind: EvidenceKind::Record { sequence: 3 },
            },
        };
        let corrupted_here = |err: JournalError| match err {
            JournalError::Corrupted {
                segment,
                offset,
                reason,
                ..
            } => assert_eq!((segment, offset, reason), (file.clone(), end as u64, want)),
            other => panic!("expected corruption, got {other}"),
        };
        corrupted_here(verify(&dir).unwrap_err());
        corrupted_here(reader_error(&dir));
        corrupted_here(JournalWriter::open(&cfg(&dir, SEG, FlushPolicy::Batch)).unwrap_err());
    }
}

#[test]
fn garbage_after_a_hole_is_a_torn_tail_cut_to_its_last_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let (file, end) = journal(&dir);
    let keep = end.next_multiple_of(PAGE);
    let (first, last) = (SEG as usize / 4 + 24, SEG as usize / 2 + 100);
    unwritten_after(&file, keep, &[(first, &[0xAB; 3]), (last, &[0xCD; 5])]);

    let report = verify(&dir).unwrap();
    match report.tail {
        TailState::Torn {
            segment,
            offset,
            damage: Damage::Unwritten,
            torn_bytes,
            ..
        } => {
            // Up to the last non-zero byte, rounded up to a record boundary.
            let torn_end = (last + 5).next_multiple_of(8);
            assert_eq!(
                (segment, offset, torn_bytes),
                (file.clone(), end as u64, (torn_end - end) as u64)
            );
        }
        other => panic!("expected a torn tail, got {other:?}"),
    }
    let mut w = JournalWriter::open(&cfg(&dir, SEG, FlushPolicy::Batch)).unwrap();
    write(&mut w, RECORDS + 1, RECORDS + 10, 10);
    drop(w);
    assert_eq!(read_all(&dir), RECORDS + 10);
    assert_eq!(
        fs::read(&file).unwrap()[last],
        0,
        "the torn bytes are zeroed"
    );
}
