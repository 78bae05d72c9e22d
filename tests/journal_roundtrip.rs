//! Journal round trips: many rollovers, seek, reopen-and-append, argument errors.

mod journal_support;

use std::fs;

use journal_support::*;
use keel::journal::{
    verify, FlushPolicy, JournalError, JournalReader, JournalWriter, SegmentPrep, TailState,
};

#[test]
fn round_trip_across_many_rollovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let mut w = JournalWriter::open(&cfg(&dir, 64 * 1024, FlushPolicy::None)).unwrap();
    assert_eq!(w.last_sequence(), 0);
    write(&mut w, 1, 30_000, 97);
    assert_eq!(w.last_sequence(), 30_000);
    w.sync().unwrap();

    // A reader works while the writer is open; after it is dropped too.
    assert_eq!(read_all(&dir), 30_000);
    drop(w);
    assert_eq!(read_all(&dir), 30_000);

    let segments = segment_files(&dir);
    assert!(segments.len() > 50, "{} segments", segments.len());
    // Every segment is named by its first record, and every record sits in order.
    let entries = layout(&dir);
    let mut expected = 1;
    for e in &entries {
        match e.sequence {
            Some(seq) => {
                if e.offset == 64 {
                    let name = format!("{seq:020}.seg");
                    assert_eq!(e.file.file_name().unwrap().to_str().unwrap(), name);
                }
                assert_eq!(seq, expected);
                expected += 1;
            }
            None => assert!(e.offset + e.size + 500 > 64 * 1024, "marker only when full"),
        }
    }
    assert_eq!(expected, 30_001);
    // Every segment but the last is sealed; all files have the full size (allocated).
    let sealed = entries.iter().filter(|e| e.sequence.is_none()).count();
    assert_eq!(sealed, segments.len() - 1);
    for s in &segments {
        assert_eq!(fs::metadata(s).unwrap().len(), 64 * 1024);
    }
    let report = verify(&dir).unwrap();
    assert_eq!(
        (report.record_count, report.last_sequence),
        (30_000, 30_000)
    );
    assert_eq!(report.segment_count, segments.len());
    assert!(matches!(report.tail, TailState::Clean { .. }), "{report}");
}

#[test]
fn every_segment_preparation_round_trips_under_group_commit() {
    // `HugePages` maps each new segment with 2 MiB pages where the kernel allows (the segments
    // here are big enough for two); `Zeroed` writes zeros over it first. The records, the end
    // markers and the zero fill after them must come out exactly as with `Allocated`.
    for prep in [
        SegmentPrep::HugePages,
        SegmentPrep::Zeroed,
        SegmentPrep::Adaptive,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let segment_bytes = 4 << 20;
        let config = {
            let mut journal = cfg(&dir, segment_bytes, FlushPolicy::Batch);
            journal.segment_prep = prep;
            journal
        };
        let mut w = JournalWriter::open(&config).unwrap();
        write(&mut w, 1, 40_000, 61);
        w.sync().unwrap();
        let durable = w.durable_sequence().expect("batch has a durable sequence");
        assert_eq!(durable.load_acquire(), 40_000, "{prep}");
        drop(w);
        let segments = segment_files(&dir);
        assert!(segments.len() >= 2, "{prep}: {} segments", segments.len());
        for s in &segments {
            assert_eq!(fs::metadata(s).unwrap().len(), segment_bytes);
        }
        assert_eq!(read_all(&dir), 40_000, "{prep}");
        let report = verify(&dir).unwrap();
        assert_eq!(report.last_sequence, 40_000, "{prep}");
        assert!(matches!(report.tail, TailState::Clean { .. }), "{report}");
        // Reopened, it continues the sequence in segments prepared the same way.
        let mut w = JournalWriter::open(&config).unwrap();
        write(&mut w, 40_001, 60_000, 61);
        w.sync().unwrap();
        drop(w);
        assert_eq!(read_all(&dir), 60_000, "{prep}");
        assert!(segment_files(&dir).len() > segments.len(), "{prep}");
    }
}

#[test]
fn an_adaptive_writer_that_overtakes_its_lead_and_reopens_keeps_every_record() {
    // `Adaptive` prepares a segment in steps a few MiB ahead of the writer, nudged at batch
    // ends. One batch far longer than that lead makes the writer take the rest of the segment
    // from the preparer; small batches then let the preparer lead again in the next segments;
    // a reopen continues mid-segment with a new lead. Every record must come back.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let segment_bytes = 24 << 20;
    let config = {
        let mut journal = cfg(&dir, segment_bytes, FlushPolicy::Batch);
        journal.segment_prep = SegmentPrep::Adaptive;
        journal
    };
    let mut w = JournalWriter::open(&config).unwrap();
    let records_per_batch = 200_000; // about 19 MiB in one batch
    write(&mut w, 1, 200_000, records_per_batch);
    write(&mut w, 200_001, 500_000, 64);
    w.sync().unwrap();
    drop(w);
    assert!(segment_files(&dir).len() >= 2);
    assert_eq!(read_all(&dir), 500_000);
    let mut w = JournalWriter::open(&config).unwrap();
    write(&mut w, 500_001, 700_000, 64);
    w.sync().unwrap();
    drop(w);
    assert_eq!(read_all(&dir), 700_000);
    let report = verify(&dir).unwrap();
    assert_eq!(report.last_sequence, 700_000);
    assert!(matches!(report.tail, TailState::Clean { .. }), "{report}");
}

#[test]
fn seek_positions_at_first_record_at_or_after() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = JournalWriter::open(&cfg(dir, TINY_SEGMENT_BYTES, FlushPolicy::None)).unwrap();
    write(&mut w, 1, 2_000, 50);
    let firsts: Vec<u64> = layout(dir)
        .iter()
        .filter(|e| e.offset == 64)
        .filter_map(|e| e.sequence)
        .collect();
    assert!(firsts.len() > 5);
    let mut reader = JournalReader::open(dir).unwrap();
    let mut targets = vec![0, 1, 2, 999, 1_999, 2_000];
    for f in &firsts {
        targets.extend([f - 1, *f, f + 1]);
    }
    for target in targets {
        reader.seek(target).unwrap();
        let r = reader.next().unwrap().unwrap();
        check(&r, target.max(1));
    }
    // Past the end: nothing yet, then exactly the first record at or after the target.
    reader.seek(2_010).unwrap();
    assert!(reader.next().unwrap().is_none());
    write(&mut w, 2_001, 2_020, 4);
    let r = reader.next().unwrap().unwrap();
    check(&r, 2_010);
    let mut last = 2_010;
    while let Some(r) = reader.next().unwrap() {
        last += 1;
        check(&r, last);
    }
    assert_eq!(last, 2_020);
}

#[test]
fn seek_steps_over_records_but_fully_checks_every_record_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = JournalWriter::open(&cfg(dir, TINY_SEGMENT_BYTES, FlushPolicy::None)).unwrap();
    write(&mut w, 1, 300, 10);
    drop(w);
    // Damage the payload (not the framing) of record 100.
    let entry = layout(dir)
        .into_iter()
        .find(|e| e.sequence == Some(100))
        .unwrap();
    flip_bit(&entry.file, entry.offset + 56, 3); // first payload byte
    let mut reader = JournalReader::open(dir).unwrap();
    // Seeking past it steps over it without hashing its payload (it is never returned)...
    reader.seek(150).unwrap();
    check(&reader.next().unwrap().unwrap(), 150);
    // ...but a record that is returned is checked in full, wherever the seek started.
    for target in [1, 50, 100] {
        reader.seek(target).unwrap();
        let outcome = loop {
            match reader.next() {
                Ok(Some(_)) => continue,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert!(
            matches!(outcome, Err(JournalError::Corrupted { .. })),
            "seek({target}) then reading: {outcome:?}"
        );
    }
}

#[test]
fn reopen_and_append_continues_the_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = cfg(dir, TINY_SEGMENT_BYTES, FlushPolicy::Batch);
    let mut w = JournalWriter::open(&config).unwrap();
    write(&mut w, 1, 700, 10);
    drop(w);
    for round in 1..=5u64 {
        let mut w = JournalWriter::open(&config).unwrap();
        let last = w.last_sequence();
        assert_eq!(last, 700 + (round - 1) * 123);
        let p = payload(last + 2);
        let err = w.append(&rec(last + 2, &p)).unwrap_err();
        assert!(
            matches!(err, JournalError::SequenceMismatch { expected, got } if expected == last + 1 && got == last + 2)
        );
        write(&mut w, last + 1, last + 123, 9);
    }
    assert_eq!(read_all(dir), 700 + 5 * 123);
    assert!(matches!(verify(dir).unwrap().tail, TailState::Clean { .. }));
}

#[test]
fn empty_journal_and_argument_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("j");
    let config = cfg(&dir, TINY_SEGMENT_BYTES, FlushPolicy::Batch);
    let mut w = JournalWriter::open(&config).unwrap();
    assert_eq!(w.last_sequence(), 0);
    w.end_batch().unwrap();
    w.tick().unwrap();
    let big = vec![1u8; 2049];
    let err = w.append(&rec(1, &big)).unwrap_err();
    assert!(matches!(
        err,
        JournalError::RecordTooLarge {
            payload_bytes: 2049,
            max_payload_bytes: 2048
        }
    ));
    // Argument errors do not poison the writer.
    w.append(&rec(1, &[])).unwrap();
    w.sync().unwrap();
    drop(w);
    let mut reader = JournalReader::open(&dir).unwrap();
    assert_eq!(reader.next().unwrap().unwrap(), rec(1, &[]));
    assert!(reader.next().unwrap().is_none());

    let bad = {
        let mut journal = config.clone();
        journal.segment_size_bytes = 10_000;
        journal
    };
    assert!(matches!(
        JournalWriter::open(&bad),
        Err(JournalError::InvalidConfig { .. })
    ));
    let too_big = {
        let mut journal = config;
        journal.max_payload_bytes = 1 << 20;
        journal
    };
    assert!(matches!(
        JournalWriter::open(&too_big),
        Err(JournalError::InvalidConfig { .. })
    ));
    assert!(JournalReader::open(&tmp.path().join("missing")).is_err());
}

#[test]
fn reader_on_empty_directory_sees_the_first_records_later() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut reader = JournalReader::open(dir).unwrap();
    assert!(reader.next().unwrap().is_none());
    let mut w = JournalWriter::open(&cfg(dir, TINY_SEGMENT_BYTES, FlushPolicy::None)).unwrap();
    assert!(reader.next().unwrap().is_none());
    write(&mut w, 1, 3, 1);
    for seq in 1..=3 {
        check(&reader.next().unwrap().unwrap(), seq);
    }
    assert!(reader.next().unwrap().is_none());
}

/// A reader reading many records of one segment has their CRCs checked ahead on a helper
/// thread: the records come back the same, and a record whose payload is damaged far past the
/// point where the helper starts is still refused, never returned.
#[test]
fn checksums_ahead_return_the_same_records_and_catch_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let mut w = JournalWriter::open(&cfg(&dir, 16 << 20, FlushPolicy::None)).unwrap();
    write(&mut w, 1, 20_000, 512);
    w.sync().unwrap();
    drop(w);
    assert_eq!(read_all(&dir), 20_000);

    // Damage one payload byte of record 15 000 (payloads start 56 bytes into a record).
    let entries = layout(&dir);
    let damaged = entries.iter().find(|e| e.sequence == Some(15_000)).unwrap();
    assert!(damaged.size > 56, "record 15000 has a payload");
    flip_bit(&damaged.file, damaged.offset + 56, 3);
    let mut reader = JournalReader::open(&dir).unwrap();
    let mut last = 0;
    let err = loop {
        match reader.next() {
            Ok(Some(r)) => {
                check(&r, last + 1);
                last += 1;
            }
            Ok(None) => panic!("damage before valid data read as the end"),
            Err(err) => break err,
        }
    };
    assert_eq!(last, 14_999);
    assert!(matches!(err, JournalError::Corrupted { .. }), "{err}");
}

/// Resident page-cache pages of `[0, len)` of `file` (`mincore` on a mapping of it).
fn resident_pages(file: &std::path::Path, len: usize) -> usize {
    let f = fs::File::open(file).unwrap();
    // SAFETY: a read-only mapping nobody truncates while the test holds it; only its address
    // is used, by mincore, which reads no byte.
    let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    let pages = len / 4096;
    let mut vec = vec![0u8; pages];
    // SAFETY: `vec` has one byte per page of the range, which lies inside the mapping.
    let rc = unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&v| v & 1 != 0).count()
}

#[test]
fn an_adaptive_writer_lets_go_of_the_pages_far_behind_it_and_every_record_reads_back() {
    // Under `Adaptive` the preparer lets go of the active segment's pages well behind the
    // writer (64 MiB, in chunks of 16 MiB), so the memory turns over; the bytes stay the file's.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let mut config = cfg(&dir, 128 << 20, FlushPolicy::Batch);
    config.segment_prep = SegmentPrep::Adaptive;
    let mut w = JournalWriter::open(&config).unwrap();
    // About 100 MiB of records.
    const N: u64 = 600_000;
    // About 1 MiB at a time, each made durable before the next: a page let go of behind the
    // writer is then clean, so the page cache drops it.
    const CHUNK: u64 = 6_000;
    for from in (1..=N).step_by(CHUNK as usize) {
        write(&mut w, from, from + CHUNK - 1, 512);
        w.sync().unwrap();
    }
    let first = segment_files(&dir)[0].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while resident_pages(&first, 16 << 20) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first 16 MiB stayed cached"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(w);
    assert_eq!(segment_files(&dir).len(), 1, "one segment");
    assert_eq!(read_all(&dir), N);
}
