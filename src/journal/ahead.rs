//! Checksums ahead of the reader: a helper thread computes the CRCs of a segment's entries
//! ahead of a [`JournalReader`](super::JournalReader) that is reading many records, so the
//! thread applying them does not hash them too. The reader still checks every entry's magic,
//! length, sequence and `prev_crc` link itself; only the CRC it takes from here, and only for
//! entries the helper has published as checked. Where the helper is behind, stopped (at the
//! end of the written data or at a fault) or absent, the reader checks the CRC itself, so
//! nothing is ever applied unchecked and the helper can never make reading wait.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::format::{
    check_crc, entry_size_bytes, magic_of, END_MAGIC, END_MARKER_SIZE, RECORD_HEADER_SIZE,
};
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
    stop: AtomicBool,
}

impl ChecksumsAhead {
    /// Starts checking the entries of `view` from `offset`, an entry boundary. `None` if no
    /// thread could be started (the reader then checks everything itself).
    pub(crate) fn spawn(view: Arc<SegmentView>, offset: usize) -> Option<Self> {
        let shared = Arc::new(Shared {
            checked_to: AtomicUsize::new(offset),
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
