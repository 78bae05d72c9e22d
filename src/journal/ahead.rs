//! Checksums ahead of the reader: a helper thread computes the CRCs of a segment's entries
//! ahead of a [`JournalReader`](super::JournalReader) that is reading many records, so the
//! thread applying them does not hash them too. The reader still checks every entry's magic,
//! length, sequence and `prev_crc` link itself; only the CRC it takes from here, and only for
//! entries the helper has published as checked. Where the helper is behind, stopped (at the
//! end of the written data or at a fault) or absent, the reader checks the CRC itself, so
//! nothing is ever applied unchecked and the helper can never make reading wait.
//!
//! Where its walk stops at an entry that is not valid (the end of the written data, most
//! often), the helper also looks for valid data in the rest of the segment, the scan a reader
//! runs there to tell the journal's end from damage, and publishes when it found none: a
//! reader that stops at that same offset then only checks the later segment files.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::format::{
    check_crc, entry_size_bytes, magic_of, END_MAGIC, END_MARKER_SIZE, RECORD_HEADER_SIZE,
};
use super::recovery::valid_data_after;
use super::segment::SegmentView;

/// Entries the helper checks between two publications of its progress.
const PUBLISH_EVERY_ENTRIES: usize = 64;

/// A helper thread checking the CRCs of one segment's entries; stopped when dropped.
#[derive(Debug)]
pub(crate) struct ChecksumsAhead {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Every entry the helper walked from its start offset and that starts before this offset
    /// has a valid CRC. It walks entry boundaries exactly as the reader does (from the same
    /// offset, by the same lengths), so this is always one of the reader's entry offsets.
    checked_to: AtomicUsize,
    /// The offset where the walk stopped at an entry that is not valid, once the rest of the
    /// segment after it was found to hold no valid data; `usize::MAX` until then.
    clear_from: AtomicUsize,
    stop: AtomicBool,
}

impl ChecksumsAhead {
    /// Starts checking the entries of `view` from `offset`, an entry boundary. `None` if no
    /// thread could be started (the reader then checks everything itself).
    pub(crate) fn spawn(view: Arc<SegmentView>, offset: usize) -> Option<Self> {
        let shared = Arc::new(Shared {
            checked_to: AtomicUsize::new(offset),
            clear_from: AtomicUsize::new(usize::MAX),
            stop: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("keel-crc-ahead".into())
            .spawn(move || run(&view, offset, &theirs))
            .ok()?;
        Some(Self { shared })
    }

    /// Every entry boundary at or after the start offset and before the returned offset has
    /// been checked. Pairs with the helper's `Release` store; it only grows.
    #[inline]
    pub(crate) fn checked_to(&self) -> usize {
        self.shared.checked_to.load(Ordering::Acquire)
    }

    /// Whether the helper stopped at `offset` and found no valid data after it in the segment
    /// (as of its look; a writer only writes forward). Pairs with the helper's `Release`.
    pub(crate) fn found_clear_from(&self, offset: usize) -> bool {
        self.shared.clear_from.load(Ordering::Acquire) == offset
    }
}

impl Drop for ChecksumsAhead {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// Walks and checks entries from `offset` until an entry fails, the written data ends, an end
/// marker is passed, or the reader goes away; publishes progress every few entries.
fn run(view: &SegmentView, mut offset: usize, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        for _ in 0..PUBLISH_EVERY_ENTRIES {
            match check_one(view, offset) {
                Some((size, last)) => {
                    offset += size;
                    if last {
                        shared.checked_to.store(offset, Ordering::Release);
                        return;
                    }
                }
                None => {
                    shared.checked_to.store(offset, Ordering::Release);
                    if !shared.stop.load(Ordering::Relaxed) && !valid_data_after(view, offset) {
                        shared.clear_from.store(offset, Ordering::Release);
                    }
                    return;
                }
            }
        }
        shared.checked_to.store(offset, Ordering::Release);
    }
}

/// Checks the entry at `offset`: its size and whether it is an end marker, when its CRC is
/// valid; `None` when it is unwritten, malformed or fails its CRC. Views the entry's bytes only
/// once its magic word is published, as the reader does.
fn check_one(view: &SegmentView, offset: usize) -> Option<(usize, bool)> {
    let available = view.len().saturating_sub(offset);
    if available < END_MARKER_SIZE || view.magic_acquire(offset) == 0 {
        return None;
    }
    let header = view.bytes(offset, RECORD_HEADER_SIZE);
    let size = entry_size_bytes(header, available).ok()?;
    let bytes = view.bytes(offset, size);
    check_crc(bytes).ok()?;
    Some((size, magic_of(bytes) == END_MAGIC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::SEGMENT_HEADER_SIZE;
    use crate::journal::{verify, FlushPolicy, JournalConfig, JournalWriter, Record, TailState};

    #[test]
    fn the_helper_finds_the_rest_of_the_segment_clear_after_the_last_record() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = JournalConfig::new(tmp.path());
        cfg.segment_size_bytes = 1 << 20;
        cfg.flush = FlushPolicy::None;
        let mut writer = JournalWriter::open(&cfg).unwrap();
        for sequence in 1..=100 {
            let payload = [sequence as u8; 40];
            let record = Record {
                sequence,
                timestamp_ns: 0,
                session_id: 0,
                correlation_id: 0,
                kind: 1,
                version: 1,
                payload: &payload,
            };
            writer.append(&record).unwrap();
        }
        writer.sync().unwrap();
        drop(writer);
        let TailState::Clean { segment, offset } = verify(tmp.path()).unwrap().tail else {
            panic!("a clean end");
        };
        let end = offset as usize;
        let view = Arc::new(SegmentView::open(&segment).unwrap());
        let ahead = ChecksumsAhead::spawn(view, SEGMENT_HEADER_SIZE).unwrap();
        // Bounded: 100 records and 1 MiB of zeros.
        for _ in 0..10_000 {
            if ahead.found_clear_from(end) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(ahead.checked_to(), end, "every record checked");
        assert!(ahead.found_clear_from(end), "nothing valid after the end");
        assert!(
            !ahead.found_clear_from(SEGMENT_HEADER_SIZE),
            "only from where it stopped"
        );
    }
}
