//! Segment headers name the service that wrote them (format version 2): the writer stamps
//! every new segment, refuses a journal another service wrote, and still reads segments of
//! format version 1, which name no service.

mod journal_support;

use std::fs;
use std::path::Path;

use journal_support::*;
use keel::journal::{
    FlushPolicy, JournalConfig, JournalError, JournalWriter, SegmentHeader, FORMAT_VERSION,
    SEGMENT_HEADER_SIZE,
};

const SEG: u64 = TINY_SEGMENT_BYTES;

fn named(dir: &Path, service: &str, schema_version: u32) -> JournalConfig {
    let mut config = cfg(dir, SEG, FlushPolicy::None);
    config.service_name = service.to_owned();
    config.service_schema_version = schema_version;
    config
}

fn header_of(segment: &Path) -> SegmentHeader {
    let bytes = fs::read(segment).unwrap();
    SegmentHeader::decode(&bytes[..SEGMENT_HEADER_SIZE]).unwrap()
}

#[test]
fn every_segment_names_the_service_and_its_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = JournalWriter::open(&named(dir.path(), "bookstore", 2)).unwrap();
    write(&mut w, 1, 400, 10);
    drop(w);
    let segments = segment_files(dir.path());
    assert!(segments.len() > 2, "the records span several segments");
    for segment in &segments {
        let header = header_of(segment);
        assert_eq!(header.format_version, FORMAT_VERSION);
        assert_eq!(header.service_name(), "bookstore");
        assert_eq!(header.service_schema_version, 2);
    }
}

#[test]
fn a_journal_of_another_service_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = JournalWriter::open(&named(dir.path(), "bookstore", 1)).unwrap();
    write(&mut w, 1, 50, 10);
    drop(w);
    let before = fs::read(&segment_files(dir.path())[0]).unwrap();
    match JournalWriter::open(&named(dir.path(), "exchange", 1)) {
        Err(JournalError::WrongService {
            found, expected, ..
        }) => assert_eq!(
            (found.as_str(), expected.as_str()),
            ("bookstore", "exchange")
        ),
        other => panic!("expected WrongService, got {other:?}"),
    }
    assert_eq!(fs::read(&segment_files(dir.path())[0]).unwrap(), before);
    // The same service, and an unnamed writer, open it.
    drop(JournalWriter::open(&named(dir.path(), "bookstore", 2)).unwrap());
    let w = JournalWriter::open(&named(dir.path(), "", 0)).unwrap();
    assert_eq!(w.last_sequence(), 50);
}

#[test]
fn segments_of_format_version_1_are_read_and_continued() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = JournalWriter::open(&named(dir.path(), "", 0)).unwrap();
    write(&mut w, 1, 60, 10);
    drop(w);
    // Rewrite every header as format version 1 wrote it: same layout, service fields zero.
    for segment in segment_files(dir.path()) {
        let mut header = header_of(&segment);
        header.format_version = 1;
        let mut bytes = fs::read(&segment).unwrap();
        bytes[..SEGMENT_HEADER_SIZE].copy_from_slice(&header.encode());
        fs::write(&segment, bytes).unwrap();
        assert_eq!(header_of(&segment).service_name(), "");
    }
    let old_segments = segment_files(dir.path());
    let mut w = JournalWriter::open(&named(dir.path(), "exchange", 3)).unwrap();
    assert_eq!(w.last_sequence(), 60);
    write(&mut w, 61, 400, 10);
    drop(w);
    assert_eq!(read_all(dir.path()), 400);
    let new_segment = segment_files(dir.path())
        .into_iter()
        .find(|s| !old_segments.contains(s))
        .expect("a segment created after the upgrade");
    let header = header_of(&new_segment);
    assert_eq!(
        (header.service_name(), header.format_version),
        ("exchange", 2)
    );
    // From now on the journal names its service.
    assert!(matches!(
        JournalWriter::open(&named(dir.path(), "bookstore", 1)),
        Err(JournalError::WrongService { .. })
    ));
}

#[test]
fn a_version_1_header_with_service_bytes_is_not_a_valid_header() {
    let header = SegmentHeader::new(1, SEG, 0).with_service("bookstore", 1);
    let mut bytes = header.encode();
    bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
    let crc = crc32c_of(&bytes[..60]);
    bytes[60..].copy_from_slice(&crc.to_le_bytes());
    assert!(SegmentHeader::decode(&bytes).is_err());
}

#[test]
fn service_names_longer_than_the_field_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = named(dir.path(), "a-service-name-of-21b", 1);
    assert!(matches!(
        JournalWriter::open(&config),
        Err(JournalError::InvalidConfig { .. })
    ));
}

/// CRC32C (Castagnoli), bitwise: the header checksum, computed independently of the crate.
fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
