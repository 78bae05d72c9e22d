//! Recovery: torn tails are cut to exactly the complete prefix; corruption before the tail is
//! refused with its location, without modifying anything.

mod journal_support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use journal_support::*;
use keel::journal::{
    verify, CorruptionReason, Damage, FlushPolicy, JournalError, JournalWriter, TailState,
};

const SEG: u64 = TINY_SEGMENT_BYTES;

/// A journal of `n` records in batches of `batch`, 16 KiB segments, writer closed.
fn journal(dir: &Path, n: u64, batch: u64) {
    let mut w = JournalWriter::open(&cfg(dir, SEG, FlushPolicy::Batch)).unwrap();
    write(&mut w, 1, n, batch);
}

fn open(dir: &Path) -> Result<JournalWriter, JournalError> {
    JournalWriter::open_with_io(&cfg(dir, SEG, FlushPolicy::Batch), Arc::new(NoSyncIo))
}

/// The error must be `Corrupted` in `file` at `offset`; returns the reason.
fn expect_corrupted(err: JournalError, file: &Path, offset: usize) -> CorruptionReason {
    match err {
        JournalError::Corrupted {
            segment,
            offset: at,
            reason,
            ..
        } => {
            assert_eq!((segment.as_path(), at), (file, offset as u64), "{reason}");
            reason
        }
        other => panic!(
            "expected Corrupted at {}:{offset}, got {other}",
            file.display()
        ),
    }
}

/// Simulates a crash that persisted the journal only up to global position (`file`, `cut`):
/// zero the rest of that file, delete later segment files.
fn cut_at(dir: &Path, file: &Path, cut: usize) {
    let mut bytes = fs::read(file).unwrap();
    bytes[cut..].fill(0);
    fs::write(file, bytes).unwrap();
    for later in segment_files(dir)
        .into_iter()
        .filter(|f| f.as_path() > file)
    {
        fs::remove_file(later).unwrap();
    }
}

/// Records that survive zeroing from `cut` in `file` unchanged (their bytes past `cut` were
/// zero), and whether `file`'s end marker survives too (the cut then leaves a sealed last
/// segment: its successor was deleted).
fn complete_prefix(entries: &[Entry], file: &Path, cut: usize) -> (u64, bool) {
    let bytes = fs::read(file).unwrap();
    let (mut count, mut sealed) = (0, false);
    for e in entries {
        if e.file.as_path() > file {
            break;
        }
        // Intact if every byte at or after the cut was zero anyway (padding, zero fields).
        let intact = e.file.as_path() < file
            || (e.offset < cut
                && bytes[cut.clamp(e.offset, e.offset + e.size)..e.offset + e.size]
                    .iter()
                    .all(|&b| b == 0));
        if !intact {
            break;
        }
        count += u64::from(e.sequence.is_some());
        sealed = e.file.as_path() == file && e.sequence.is_none();
    }
    (count, sealed)
}

#[test]
fn truncation_at_every_byte_of_the_last_batches_recovers_the_complete_prefix() {
    let tmp = scratch_dir();
    let src = tmp.path().join("src");
    // Batches of 5, ending 7 records after the second rollover: the last 3 batches cross it.
    let probe = tmp.path().join("probe");
    journal(&probe, 400, 5);
    let ends: Vec<usize> = layout(&probe)
        .iter()
        .enumerate()
        .filter(|(_, e)| e.sequence.is_none())
        .map(|(i, _)| i)
        .collect();
    let n = layout(&probe)[ends[1] - 1].sequence.unwrap() + 7;
    journal(&src, n, 5);
    let entries = layout(&src);
    let tail = &entries[entries.len() - (3 * 5 + 1)..];
    assert!(
        tail.iter().any(|e| e.sequence.is_none()),
        "the cut range crosses a rollover"
    );
    let work = tmp.path().join("work");
    let mut checked = 0;
    for e in tail {
        for at in e.offset..e.offset + e.size {
            let (want, sealed) = complete_prefix(&entries, &e.file, at);
            let _ = fs::remove_dir_all(&work);
            copy_dir(&src, &work);
            let file = work.join(e.file.file_name().unwrap());
            cut_at(&work, &file, at);
            let place = format!("cut at {}:{at}", file.display());
            if sealed {
                // The whole end marker survives but its successor is gone: no crash leaves
                // that (a successor is durable before its predecessor is sealed).
                let missing = |err: &JournalError| {
                    matches!(err, JournalError::Corrupted {
                        segment, offset, reason: CorruptionReason::SuccessorMissing { .. }, ..
                    } if *segment == file && *offset == e.offset as u64)
                };
                let err = verify(&work).unwrap_err();
                assert!(missing(&err), "verify, {place}: {err}");
                let err = open(&work).unwrap_err();
                assert!(missing(&err), "open, {place}: {err}");
                checked += 1;
                continue;
            }
            let report = verify(&work).unwrap_or_else(|err| panic!("{place}: {err}"));
            assert_eq!(report.last_sequence, want, "verify, {place}");
            let mut w = open(&work).unwrap_or_else(|err| panic!("{place}: {err}"));
            assert_eq!(w.last_sequence(), want, "{place}");
            // Appending after the cut, and reading it all back, every 8th position (cost).
            if at % 8 == 0 {
                write(&mut w, want + 1, want + 2, 2);
                drop(w);
                assert_eq!(read_all(&work), want + 2, "{place}");
            }
            checked += 1;
        }
    }
    assert!(checked > 2000, "{checked} cut positions");
}

#[test]
fn unpublished_last_record_and_garbage_tail_are_cut_and_zeroed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    journal(dir, 100, 10);
    let entries = layout(dir);
    let last = entries.last().unwrap().clone();
    // A crash between encoding the record and publishing its magic word.
    let mut bytes = fs::read(&last.file).unwrap();
    bytes[last.offset..last.offset + 4].fill(0);
    // Plus garbage further on that is not a valid record.
    for (i, b) in bytes[last.offset + 1000..last.offset + 1300]
        .iter_mut()
        .enumerate()
    {
        *b = (i as u8).wrapping_mul(7) | 0x80;
    }
    fs::write(&last.file, &bytes).unwrap();
    let report = verify(dir).unwrap();
    match &report.tail {
        TailState::Torn {
            offset,
            damage,
            torn_bytes,
            ..
        } => {
            assert_eq!(*offset, last.offset as u64);
            assert_eq!(*damage, Damage::Unwritten);
            assert!(*torn_bytes >= 1300);
        }
        other => panic!("{other:?}"),
    }
    let w = open(dir).unwrap();
    assert_eq!(w.last_sequence(), 99);
    drop(w);
    let bytes = fs::read(&last.file).unwrap();
    assert!(
        bytes[last.offset..].iter().all(|&b| b == 0),
        "torn tail zeroed"
    );
}

#[test]
fn flipped_bit_anywhere_before_the_tail_is_refused_with_its_location() {
    let tmp = scratch_dir();
    let src = tmp.path().join("src");
    journal(&src, 200, 8);
    let entries = layout(&src);
    let last = entries.last().unwrap().clone();
    let files = segment_files(&src);
    assert!(files.len() >= 3);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let work = tmp.path().join("work");
    for _ in 0..1500 {
        // Any byte of a sealed segment, or of the last segment before its last record.
        let fi = rng.below(files.len() as u64) as usize;
        let limit = if files[fi] == last.file {
            last.offset
        } else {
            SEG as usize
        };
        let at = rng.below(limit as u64) as usize;
        let bit = rng.below(8) as u8;
        let _ = fs::remove_dir_all(&work);
        copy_dir(&src, &work);
        let file = work.join(files[fi].file_name().unwrap());
        flip_bit(&file, at, bit);
        let before = snapshot(&work);
        let err = verify(&work).unwrap_err();
        let where_ = containing_entry(&entries, &files[fi], at);
        let reason = expect_corrupted(err, &file, where_);
        if let CorruptionReason::NonZeroAfterEndMarker { offset } = reason {
            assert_eq!(offset, at as u64);
        }
        let err = open(&work).unwrap_err();
        expect_corrupted(err, &file, where_);
        assert!(
            before == snapshot(&work),
            "a refused open modified files (flip at {at})"
        );
        // A reader stops at the same place instead of returning wrong data or ending early
        // (it validates entries, not the unused zero space after an end marker).
        if matches!(reason, CorruptionReason::NonZeroAfterEndMarker { .. }) {
            continue;
        }
        match keel::journal::JournalReader::open(&work) {
            Err(err) => {
                expect_corrupted(err, &file, where_);
            }
            Ok(mut reader) => loop {
                match reader.next() {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("reader ended early, flip at {}:{at}", file.display()),
                    Err(err) => {
                        expect_corrupted(err, &file, where_);
                        break;
                    }
                }
            },
        }
    }
}

/// Offset of the entry holding byte `at` of `file`: 0 for the header, the marker for anything
/// after it.
fn containing_entry(entries: &[Entry], file: &Path, at: usize) -> usize {
    if at < 64 {
        return 0;
    }
    let mut found = 0;
    for e in entries.iter().filter(|e| e.file == file) {
        if e.offset <= at {
            found = e.offset;
        }
    }
    found
}

/// A closed 120-record journal in `tmp/src`, a fresh copy of it in `tmp/work`, and its layout.
fn wrong_place_fixture(tmp: &Path) -> (std::path::PathBuf, Vec<Entry>) {
    let src = tmp.join("src");
    journal(&src, 120, 10);
    let work = tmp.join("work");
    copy_dir(&src, &work);
    (work, layout(&src))
}

/// Bytes of `entry` (in the source journal).
fn entry_bytes(e: &Entry) -> Vec<u8> {
    fs::read(&e.file).unwrap()[e.offset..e.offset + e.size].to_vec()
}

/// Writes `image` at `offset` of the file in `work` named like `like`.
fn overwrite(work: &Path, like: &Path, offset: usize, image: &[u8]) -> std::path::PathBuf {
    let file = work.join(like.file_name().unwrap());
    let mut bytes = fs::read(&file).unwrap();
    bytes[offset..offset + image.len()].copy_from_slice(image);
    fs::write(&file, bytes).unwrap();
    file
}

#[test]
fn valid_record_copied_over_another_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, entries) = wrong_place_fixture(tmp.path());
    let records: Vec<&Entry> = entries.iter().filter(|e| e.sequence.is_some()).collect();
    let (k, j) = same_size_pair(&records);
    let file = overwrite(
        &work,
        &records[j].file,
        records[j].offset,
        &entry_bytes(records[k]),
    );
    let reason = expect_corrupted(open(&work).unwrap_err(), &file, records[j].offset);
    assert!(
        matches!(reason, CorruptionReason::SequenceGap { .. }),
        "{reason}"
    );
}

#[test]
fn valid_record_copied_to_the_tail_is_not_mistaken_for_a_torn_write() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, entries) = wrong_place_fixture(tmp.path());
    let last = entries.last().unwrap();
    let at = last.offset + last.size;
    let file = overwrite(&work, &last.file, at, &entry_bytes(&entries[3]));
    let reason = expect_corrupted(open(&work).unwrap_err(), &file, at);
    let want = CorruptionReason::SequenceGap {
        expected: 121,
        found: 4,
    };
    assert_eq!(reason, want);
}

#[test]
fn segment_from_another_history_breaks_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, _) = wrong_place_fixture(tmp.path());
    // Same sequences, different payloads: same segment names, different CRCs.
    let other = tmp.path().join("other");
    let mut w = JournalWriter::open(&cfg(&other, SEG, FlushPolicy::None)).unwrap();
    for seq in 1..=120 {
        let p = payload(seq).iter().map(|b| b ^ 0x40).collect::<Vec<u8>>();
        w.append(&rec(seq, &p)).unwrap();
    }
    drop(w);
    let ours = segment_files(&work);
    let name = ours[1].file_name().unwrap();
    fs::copy(other.join(name), &ours[1]).unwrap();
    let reason = expect_corrupted(open(&work).unwrap_err(), &ours[1], 0);
    assert!(
        matches!(reason, CorruptionReason::ChainBreak { .. }),
        "{reason}"
    );
}

#[test]
fn segment_under_the_wrong_name_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, _) = wrong_place_fixture(tmp.path());
    let ours = segment_files(&work);
    // A stray valid segment after the open end: the end is not the tail.
    let bogus = work.join(format!("{:020}.seg", 1_000_000));
    fs::copy(&ours[0], &bogus).unwrap();
    match open(&work).unwrap_err() {
        JournalError::Corrupted {
            reason: CorruptionReason::DamagedBeforeValidData { evidence, .. },
            ..
        } => assert_eq!(evidence.segment_first_sequence, 1_000_000),
        other => panic!("{other}"),
    }
    fs::remove_file(&bogus).unwrap();
    let renamed = work.join(format!("{:020}.seg", 2));
    fs::rename(&ours[0], &renamed).unwrap();
    let reason = expect_corrupted(open(&work).unwrap_err(), &renamed, 0);
    let want = CorruptionReason::NameMismatch {
        name_sequence: 2,
        header_sequence: 1,
    };
    assert_eq!(reason, want);
}

/// Two records (k < j, not adjacent) of the same size.
fn same_size_pair(records: &[&Entry]) -> (usize, usize) {
    for j in (10..records.len() - 5).rev() {
        for k in 0..j - 2 {
            if records[k].size == records[j].size {
                return (k, j);
            }
        }
    }
    panic!("no same-size pair");
}

#[test]
fn torn_header_of_an_empty_last_segment_is_cut_but_not_one_with_records() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    journal(&src, 200, 10);
    let files = segment_files(&src);
    let last_file = files.last().unwrap().clone();
    let entries = layout(&src);
    let in_last = entries.iter().filter(|e| e.file == last_file).count() as u64;
    let work = tmp.path().join("work");

    // Header and records of the last segment lost (never written back): torn.
    copy_dir(&src, &work);
    let file = work.join(last_file.file_name().unwrap());
    cut_at(&work, &file, 0);
    let w = open(&work).unwrap();
    assert_eq!(w.last_sequence(), 200 - in_last);
    drop(w);
    assert_eq!(read_all(&work), 200 - in_last);

    // Header lost but records persisted: corruption, nothing removed.
    let _ = fs::remove_dir_all(&work);
    copy_dir(&src, &work);
    let mut bytes = fs::read(&file).unwrap();
    bytes[..64].fill(0);
    fs::write(&file, bytes).unwrap();
    let reason = expect_corrupted(open(&work).unwrap_err(), &file, 0);
    assert!(matches!(
        reason,
        CorruptionReason::DamagedBeforeValidData {
            damage: Damage::BadSegmentHeader,
            ..
        }
    ));
    assert!(file.exists());
}

#[test]
fn crash_at_every_sync_point_recovers_exactly_the_durable_sequence() {
    // Copies taken right after each durable sync are what a power cut leaves at that instant.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let mut w = JournalWriter::open(&cfg(&dir, SEG, FlushPolicy::Batch)).unwrap();
    let mut images = Vec::new();
    let mut seq = 0;
    for batch in 1..=40u64 {
        let n = batch % 13 + 1;
        write(&mut w, seq + 1, seq + n, n);
        seq += n;
        let image = tmp.path().join(format!("image{batch}"));
        copy_dir(&dir, &image);
        images.push((image, seq));
    }
    drop(w);
    for (image, durable) in images {
        fs::remove_file(image.join("journal.lock")).ok();
        let w = open(&image).unwrap();
        assert_eq!(w.last_sequence(), durable, "{}", image.display());
        drop(w);
        assert_eq!(read_all(&image), durable);
    }
}

// ------------------------------------------------- a sealed segment always has its successor

/// A journal of `n` records across several rollovers, writer closed. Returns its segment
/// files and the layout.
fn rolled_over(dir: &Path, n: u64) -> (Vec<std::path::PathBuf>, Vec<Entry>) {
    journal(dir, n, 10);
    let files = segment_files(dir);
    assert!(files.len() >= 3, "{} segments", files.len());
    (files, layout(dir))
}

/// The end marker of `file`, from the layout.
fn end_marker(entries: &[Entry], file: &Path) -> Entry {
    entries
        .iter()
        .find(|e| e.file == file && e.sequence.is_none())
        .cloned()
        .expect("a sealed segment")
}

/// The last record sequence in `file`, from the layout.
fn last_in(entries: &[Entry], file: &Path) -> u64 {
    entries
        .iter()
        .filter(|e| e.file == file)
        .filter_map(|e| e.sequence)
        .max()
        .unwrap()
}

fn is_successor_missing(err: &JournalError, sealed: &Path, marker: usize, next: u64) -> bool {
    matches!(err, JournalError::Corrupted {
        segment,
        offset,
        expected_sequence,
        reason: CorruptionReason::SuccessorMissing { next_sequence },
    } if segment == sealed && *offset == marker as u64 && *expected_sequence == next
        && *next_sequence == next)
}

#[test]
fn a_deleted_last_segment_is_refused_until_the_loss_is_accepted() {
    // The last segment file deleted after a rollover: the one before it is sealed and names
    // it. That used to pass as a clean end, silently dropping the deleted file's records.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (files, entries) = rolled_over(dir, 300);
    let (sealed, deleted) = (&files[files.len() - 2], &files[files.len() - 1]);
    let kept = last_in(&entries, sealed);
    let marker = end_marker(&entries, sealed).offset;
    fs::remove_file(deleted).unwrap();
    let before = snapshot(dir);

    let err = verify(dir).unwrap_err();
    assert!(
        is_successor_missing(&err, sealed, marker, kept + 1),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("{:020}.seg is missing", kept + 1)),
        "{text}"
    );
    assert!(text.contains("accept-loss"), "{text}");
    let err = open(dir).unwrap_err();
    assert!(
        is_successor_missing(&err, sealed, marker, kept + 1),
        "{err}"
    );
    // A reader following the marker agrees.
    let mut reader = keel::journal::JournalReader::open(dir).unwrap();
    let err = loop {
        match reader.next() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the reader ended at the sealed segment"),
            Err(err) => break err,
        }
    };
    assert!(
        is_successor_missing(&err, sealed, marker, kept + 1),
        "{err}"
    );
    assert_eq!(snapshot(dir), before, "refusals modify nothing");

    // The two-phase open tells the caller before anything changes; `finish` refuses too.
    let config = cfg(dir, SEG, FlushPolicy::Batch);
    let opening = JournalWriter::begin_open(&config).unwrap();
    assert_eq!(opening.missing_successor(), Some(sealed.as_path()));
    assert_eq!(opening.last_sequence(), kept);
    assert_eq!(opening.first_sequence(), Some(1));
    let err = opening.finish().unwrap_err();
    assert!(
        is_successor_missing(&err, sealed, marker, kept + 1),
        "{err}"
    );
    assert_eq!(snapshot(dir), before);

    // The operator accepts the loss: the journal continues at the sealed segment's end.
    let opening = JournalWriter::begin_open(&config).unwrap();
    let mut w = opening.finish_accepting_loss().unwrap();
    assert_eq!(w.last_sequence(), kept);
    write(&mut w, kept + 1, kept + 50, 7);
    drop(w);
    assert_eq!(segment_files(dir).last(), Some(deleted), "same name again");
    assert_eq!(read_all(dir), kept + 50);
    assert_eq!(verify(dir).unwrap().last_sequence, kept + 50);
    let opening = JournalWriter::begin_open(&config).unwrap();
    assert_eq!(opening.missing_successor(), None);
    assert_eq!(opening.finish().unwrap().last_sequence(), kept + 50);
}

#[test]
fn the_last_chain_of_an_opening_is_the_last_record_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = cfg(dir, SEG, FlushPolicy::Batch);
    let opening = JournalWriter::begin_open(&config).unwrap();
    assert_eq!(
        (opening.last_sequence(), opening.first_sequence()),
        (0, None)
    );
    assert_eq!(opening.last_chain(), 0);
    drop(opening);
    journal(dir, 40, 10);
    let entries = layout(dir);
    let last = entries.iter().rfind(|e| e.sequence == Some(40)).unwrap();
    let bytes = fs::read(&last.file).unwrap();
    let crc = u32::from_le_bytes(bytes[last.offset + 4..last.offset + 8].try_into().unwrap());
    let opening = JournalWriter::begin_open(&config).unwrap();
    assert_eq!((opening.last_sequence(), opening.last_chain()), (40, crc));
}

/// Zeroes the end marker of `file` (a crash after the successor was made durable, before the
/// marker was): returns the marker's offset.
fn unseal(entries: &[Entry], file: &Path) -> usize {
    unseal_bytes(entries, file, 0..56)
}

/// Zeroes bytes `range` of the end marker of `file`; returns the marker's offset.
fn unseal_bytes(entries: &[Entry], file: &Path, range: std::ops::Range<usize>) -> usize {
    let marker = end_marker(entries, file);
    let mut bytes = fs::read(file).unwrap();
    bytes[marker.offset + range.start..marker.offset + range.end].fill(0);
    fs::write(file, bytes).unwrap();
    marker.offset
}

#[test]
fn a_partly_written_end_marker_before_a_continuing_successor_is_a_boundary() {
    // What a crash while sealing leaves: the marker unpublished (zero magic) over some of its
    // bytes (a process crash mid-encode), or published with only some of its bytes persisted
    // (a power cut). A bit flipped in a whole marker stays corruption (see the flipped-bit
    // test); so does a marker magic over bytes that are not the marker's.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (files, entries) = rolled_over(&src, 300);
    let last = entries.iter().filter_map(|e| e.sequence).max().unwrap();
    let name = files[files.len() - 2].file_name().unwrap().to_owned();
    // (bytes of the marker zeroed, byte whose bit 0 is then flipped, accepted)
    let cases = [
        (0..4, None, true),   // unpublished, the rest written
        (0..20, None, true),  // unpublished, partly written
        (24..56, None, true), // published, the end lost
        (4..8, None, true),   // published, its CRC lost
        (4..8, Some(16), false),
    ];
    for (i, (range, flip, accepted)) in cases.into_iter().enumerate() {
        let work = tmp.path().join(format!("work{i}"));
        copy_dir(&src, &work);
        let file = work.join(&name);
        let offset = unseal_bytes(&layout(&work), &file, range.clone());
        if let Some(at) = flip {
            flip_bit(&file, offset + at, 0);
        }
        match verify(&work) {
            Ok(report) => {
                assert!(accepted, "case {i} accepted");
                assert_eq!(report.last_sequence, last, "case {i}");
                assert_eq!(read_all(&work), last, "case {i}");
                assert_eq!(open(&work).unwrap().last_sequence(), last, "case {i}");
                assert_eq!(verify(&work).unwrap().last_sequence, last, "case {i}");
            }
            Err(err) => {
                assert!(!accepted, "case {i} refused: {err}");
                expect_corrupted(err, &file, offset);
                expect_corrupted(open(&work).unwrap_err(), &file, offset);
            }
        }
    }
}

#[test]
fn an_unsealed_segment_continued_by_its_successor_is_a_boundary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (files, entries) = rolled_over(dir, 300);
    let last = entries.iter().filter_map(|e| e.sequence).max().unwrap();
    let unsealed = &files[files.len() - 2];
    let offset = unseal(&entries, unsealed);
    let successor_first = last_in(&entries, unsealed) + 1;

    // verify accepts it as it is, at the same last sequence, and modifies nothing.
    let before = snapshot(dir);
    let report = verify(dir).unwrap();
    assert_eq!(report.last_sequence, last);
    assert!(matches!(report.tail, TailState::Clean { .. }), "{report}");
    assert_eq!(snapshot(dir), before);
    // Readers move on to the successor: from the start, and seeking across the boundary and
    // into the successor.
    assert_eq!(read_all(dir), last);
    for target in [successor_first - 1, successor_first, successor_first + 1] {
        let mut reader = keel::journal::JournalReader::open(dir).unwrap();
        reader.seek(target).unwrap();
        for seq in target..=last {
            check(&reader.next().unwrap().unwrap(), seq);
        }
        assert!(reader.next().unwrap().is_none());
    }

    // The writer's open accepts it too (and seals it), then appends on.
    let mut w = open(dir).unwrap();
    assert_eq!(w.last_sequence(), last);
    write(&mut w, last + 1, last + 20, 5);
    drop(w);
    let resealed = layout(dir);
    assert_eq!(
        end_marker(&resealed, unsealed).offset,
        offset,
        "sealed again"
    );
    assert_eq!(read_all(dir), last + 20);
    assert_eq!(verify(dir).unwrap().last_sequence, last + 20);
}

#[test]
fn an_unsealed_segment_whose_successor_does_not_continue_exactly_is_corruption() {
    // Unseal a segment and drop its last record as well: the successor's header then names
    // a sequence and CRC the unsealed segment does not end with.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (files, entries) = rolled_over(dir, 300);
    let unsealed = &files[files.len() - 2];
    unseal(&entries, unsealed);
    let last = entries
        .iter()
        .rfind(|e| &e.file == unsealed && e.sequence.is_some())
        .unwrap();
    let mut bytes = fs::read(unsealed).unwrap();
    bytes[last.offset..last.offset + last.size].fill(0);
    fs::write(unsealed, bytes).unwrap();
    let before = snapshot(dir);

    let err = verify(dir).unwrap_err();
    let reason = expect_corrupted(err, unsealed, last.offset);
    assert!(
        matches!(reason, CorruptionReason::DamagedBeforeValidData { .. }),
        "{reason}"
    );
    let err = open(dir).unwrap_err();
    expect_corrupted(err, unsealed, last.offset);
    let mut reader = keel::journal::JournalReader::open(dir).unwrap();
    let err = loop {
        match reader.next() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the reader ended before the successor"),
            Err(err) => break err,
        }
    };
    expect_corrupted(err, unsealed, last.offset);
    assert_eq!(snapshot(dir), before, "nothing modified");
}

/// A reader of enough records of one segment checks their CRCs ahead on a helper thread, which
/// also scans the rest of the segment after the last record: a clean end is the end, and a
/// valid record planted far after it (zeros between) is still caught as damage.
#[test]
fn a_reader_checking_ahead_tells_the_end_from_damage() {
    const N: u64 = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut w = JournalWriter::open(&cfg(&src, 16 << 20, FlushPolicy::None)).unwrap();
    write(&mut w, 1, N, 100);
    drop(w);
    assert_eq!(read_all(&src), N, "a clean end");

    let entries = layout(&src);
    let last = entries.last().unwrap();
    assert_eq!(last.sequence, Some(N), "one segment, not sealed");
    let end = last.offset + last.size;
    let at = end + (1 << 20);
    let work = tmp.path().join("work");
    copy_dir(&src, &work);
    let file = overwrite(&work, &last.file, at, &entry_bytes(&entries[3]));
    let mut reader = keel::journal::JournalReader::open(&work).unwrap();
    let mut read = 0;
    let err = loop {
        match reader.next() {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("the record planted after the end was missed"),
            Err(err) => break err,
        }
    };
    assert_eq!(read, N);
    let reason = expect_corrupted(err, &file, end);
    assert!(
        matches!(reason, CorruptionReason::DamagedBeforeValidData { .. }),
        "{reason}"
    );
}
