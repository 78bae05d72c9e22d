//! Journal-reader findings of the `journal_reader` fuzz target, kept as regression tests.
//! Both need files the writer never produces (crafted or damaged with valid checksums); each
//! documents the behaviour now guaranteed. Reproducers: `fuzz/regressions/journal_reader/`
//! (replayed by `tests/fuzz_regressions.rs`).

use keel::journal::{
    verify, CorruptionReason, FlushPolicy, JournalConfig, JournalError, JournalReader,
    JournalWriter, SegmentHeader, TailState,
};
use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

const SEGMENT: usize = 16 * 1024;

fn segment_name(first_sequence: u64) -> String {
    format!("{first_sequence:020}.seg")
}

/// A segment with a valid header and an end marker right after it that names the next
/// sequence `next` (CRC and chain valid).
fn sealed_empty_segment(dir: &Path, first: u64, next: u64) {
    let mut seg = vec![0u8; SEGMENT];
    seg[..64].copy_from_slice(&SegmentHeader::new(first, SEGMENT as u64, 0).encode());
    seg[64..68].copy_from_slice(b"KEND");
    seg[80..88].copy_from_slice(&next.to_le_bytes());
    let crc = crc32c::crc32c(&seg[72..120]);
    seg[68..72].copy_from_slice(&crc.to_le_bytes());
    fs::write(dir.join(segment_name(first)), &seg).unwrap();
}

#[test]
fn an_end_marker_that_does_not_advance_is_an_error_not_an_endless_loop() {
    // Segment 1 holds no record and its end marker says "continue at 1": itself. The writer
    // never seals an empty segment, but a reader must not spin on such a file; `verify`
    // calls it a clean `Sealed` end, and the writer's recovery then renames a new segment 1
    // over it.
    let tmp = tempfile::tempdir().unwrap();
    sealed_empty_segment(tmp.path(), 1, 1);
    let dir = tmp.path().to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = JournalReader::open(&dir).unwrap();
        let _ = tx.send(reader.next().map(|r| r.map(|r| r.sequence)));
    });
    let read = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the reader returns (it used to loop re-entering the same segment)");
    let own = tmp.path().join(segment_name(1));
    let is_own_marker = |err: &JournalError| {
        matches!(err, JournalError::Corrupted {
            segment,
            offset: 64,
            reason: CorruptionReason::EndMarkerDoesNotAdvance { next_sequence: 1 },
            ..
        } if *segment == own)
    };
    let err = read.expect_err("a marker that names its own segment is corruption");
    assert!(is_own_marker(&err), "{err}");
    let err = verify(tmp.path()).expect_err("verify agrees");
    assert!(is_own_marker(&err), "{err}");
    // The writer's recovery refuses too, leaving the file as it was (it used to rename a new
    // segment 1 over it).
    let before = fs::read(&own).unwrap();
    let err = JournalWriter::open(&config(tmp.path())).expect_err("recovery refuses");
    assert!(is_own_marker(&err), "{err}");
    assert_eq!(fs::read(&own).unwrap(), before);
}

fn config(dir: &Path) -> JournalConfig {
    {
        let mut journal = JournalConfig::new(dir.to_owned());
        journal.segment_size_bytes = SEGMENT as u64;
        journal.flush = FlushPolicy::None;
        journal.max_payload_bytes = 1024;
        journal.segment_prep = keel::journal::SegmentPrep::Allocated;
        journal
    }
}

#[test]
fn end_markers_after_records_are_followed() {
    // The counterpart: a sealed segment holding records names the next one; the reader,
    // verify and a reopening writer all accept it.
    let tmp = tempfile::tempdir().unwrap();
    let mut writer = JournalWriter::open(&config(tmp.path())).unwrap();
    let payload = [7u8; 1000];
    let mut sequence = 0;
    let segments = |dir: &Path| {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("seg".as_ref()))
            .count()
    };
    while segments(tmp.path()) < 3 {
        sequence += 1;
        let record = keel::journal::Record {
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
    drop(writer);
    let report = verify(tmp.path()).unwrap();
    assert_eq!(report.last_sequence, sequence);
    let mut reader = JournalReader::open(tmp.path()).unwrap();
    let mut read = 0;
    while let Some(record) = reader.next().unwrap() {
        read += 1;
        assert_eq!(record.sequence, read);
    }
    assert_eq!(read, sequence);
    let writer = JournalWriter::open(&config(tmp.path())).unwrap();
    assert_eq!(writer.last_sequence(), sequence);
}

#[test]
fn verify_and_recovery_agree_on_a_torn_oldest_segment() {
    // The only segment starts at sequence 5 (older ones were removed) and its header is torn.
    // Recovery refuses (`ChainSeedLost`: the chain cannot be continued); `verify` reports a
    // torn tail that the writer would cut. The read-only check should predict the writer.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(segment_name(5)), vec![0u8; SEGMENT]).unwrap();
    let verified = verify(tmp.path());
    let opened = JournalWriter::open(&config(tmp.path())).map(|w| w.last_sequence());
    let seed_lost = |err: Option<&JournalError>| {
        matches!(
            err,
            Some(JournalError::Corrupted {
                offset: 0,
                reason: CorruptionReason::ChainSeedLost,
                ..
            })
        )
    };
    assert!(seed_lost(opened.as_ref().err()), "{opened:?}");
    assert!(
        seed_lost(verified.as_ref().err()),
        "verify said {verified:?}, open refused"
    );
    // The same torn header as the segment named 1 is a torn tail: both cut it.
    fs::rename(
        tmp.path().join(segment_name(5)),
        tmp.path().join(segment_name(1)),
    )
    .unwrap();
    assert!(matches!(
        verify(tmp.path()).unwrap().tail,
        TailState::Torn { offset: 0, .. }
    ));
    assert_eq!(
        JournalWriter::open(&config(tmp.path()))
            .unwrap()
            .last_sequence(),
        0
    );
}
