//! Truncation for replication (`JournalWriter::truncate_after`): cut in the middle of a
//! segment, at a segment boundary and at 0, then reopen and append: the journal verifies
//! clean, holds exactly the prefix, and continues the chain as if the cut suffix had never
//! been written (the chain value after re-appending equals a journal written straight through).

mod journal_support;

use std::fs;
use std::path::Path;

use journal_support::{cfg, copy_dir, read_all, segment_files, write, TINY_SEGMENT_BYTES};
use keel::journal::{verify, FlushPolicy, JournalError, JournalWriter, TailState};
use keel::snapshot::{SnapshotStore, QUARANTINE_DIR};

const LAST: u64 = 400;

fn open(dir: &Path) -> JournalWriter {
    JournalWriter::open(&cfg(dir, TINY_SEGMENT_BYTES, FlushPolicy::Batch)).unwrap()
}

/// A journal of `1..=n` over tiny segments (many rollovers).
fn journal(dir: &Path, n: u64) {
    let mut w = open(dir);
    write(&mut w, 1, n, 16);
    w.sync().unwrap();
}

/// The chain value after `n` records written straight through.
fn chain_after(tmp: &Path, n: u64) -> u32 {
    let dir = tmp.join(format!("reference-{n}"));
    let mut w = open(&dir);
    write(&mut w, 1, n, 16);
    w.last_chain()
}

/// The first sequence of each segment file, from its name.
fn segment_starts(dir: &Path) -> Vec<u64> {
    segment_files(dir)
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap();
            name.parse().unwrap()
        })
        .collect()
}

/// Truncates a copy of `original` after `cut`, checks the result, appends up to `cut + 50`
/// and checks the chain against a journal written straight through.
fn cut_and_continue(tmp: &Path, original: &Path, cut: u64) {
    let dir = tmp.join(format!("cut-{cut}"));
    copy_dir(original, &dir);
    let removed = JournalWriter::truncate_after(&dir, cut).unwrap();
    assert_eq!(removed, LAST - cut, "cut after {cut}");
    let report = verify(&dir).unwrap();
    assert_eq!(report.last_sequence, cut);
    assert!(
        matches!(report.tail, TailState::Clean { .. }),
        "a clean end after the cut at {cut}: {:?}",
        report.tail
    );
    assert!(!dir.join("journal.truncating").exists(), "intent removed");
    assert_eq!(read_all(&dir), cut);
    let mut w = open(&dir);
    assert_eq!(w.last_sequence(), cut);
    write(&mut w, cut + 1, cut + 50, 16);
    w.sync().unwrap();
    assert_eq!(w.last_chain(), chain_after(tmp, cut + 50), "cut at {cut}");
    drop(w);
    let report = verify(&dir).unwrap();
    assert_eq!(report.last_sequence, cut + 50);
    assert_eq!(read_all(&dir), cut + 50);
}

#[test]
fn a_cut_in_a_segment_at_a_boundary_and_at_zero_leaves_a_journal_that_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    journal(&original, LAST);
    let starts = segment_starts(&original);
    assert!(starts.len() >= 4, "enough rollovers: {starts:?}");
    let boundary = starts[2] - 1; // the last record of the third segment's predecessor
    let middle = (starts[1] + starts[2]) / 2;
    for cut in [middle, boundary, starts[2], 0, 1, LAST - 1] {
        cut_and_continue(tmp.path(), &original, cut);
    }
}

#[test]
fn a_cut_at_or_after_the_end_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    journal(tmp.path(), 20);
    assert_eq!(JournalWriter::truncate_after(tmp.path(), 20).unwrap(), 0);
    assert_eq!(JournalWriter::truncate_after(tmp.path(), 99).unwrap(), 0);
    assert_eq!(read_all(tmp.path()), 20);
}

#[test]
fn a_cut_is_refused_while_a_writer_holds_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = open(tmp.path());
    write(&mut w, 1, 10, 4);
    let err = JournalWriter::truncate_after(tmp.path(), 5).unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    drop(w);
    assert_eq!(read_all(tmp.path()), 10, "nothing was modified");
}

#[test]
fn a_cut_before_the_journals_first_sequence_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    journal(tmp.path(), LAST);
    let starts = segment_starts(tmp.path());
    // Older segments removed (as retention does): the journal starts at the second segment.
    fs::remove_file(&segment_files(tmp.path())[0]).unwrap();
    let first = starts[1];
    let err = JournalWriter::truncate_after(tmp.path(), first - 2).unwrap_err();
    assert!(
        matches!(err, JournalError::TruncateBeforeStart { sequence, first_sequence }
            if sequence == first - 2 && first_sequence == first),
        "{err}"
    );
    assert_eq!(verify(tmp.path()).unwrap().last_sequence, LAST, "untouched");
    // Right before the first sequence: the oldest segment keeps only its header (and the
    // chain value it states), and the journal continues from there.
    let removed = JournalWriter::truncate_after(tmp.path(), first - 1).unwrap();
    assert_eq!(removed, LAST - first + 1);
    let mut w = open(tmp.path());
    assert_eq!(w.last_sequence(), first - 1);
    write(&mut w, first, first + 9, 4);
    assert_eq!(w.last_chain(), chain_after(tmp.path(), first + 9));
}

#[test]
fn snapshots_after_the_cut_are_quarantined_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(tmp.path(), 10).unwrap();
    for sequence in [10, 50, 90, 120] {
        store.write(sequence, 7, 1, 0, b"state").unwrap();
    }
    let moved = store.quarantine_after(50).unwrap();
    assert_eq!(moved.len(), 2);
    let kept: Vec<u64> = store.list().unwrap().iter().map(|f| f.sequence).collect();
    assert_eq!(kept, [10, 50]);
    let quarantined = fs::read_dir(tmp.path().join(QUARANTINE_DIR))
        .unwrap()
        .count();
    assert_eq!(quarantined, 2);
}
