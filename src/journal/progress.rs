//! How far an open-time scan has validated the journal, published as it goes, so that a full
//! replay can apply each record as soon as the scan has validated it instead of after the
//! whole scan (the engine's recovery: `engine::recovery`). The scan walks the segments in
//! order and publishes, every few records, the sequence through which every record is valid
//! (magic, length, CRC, sequence, chain from its segment's header, and that header continuing
//! the previous segment). Nothing beyond the published sequence may be applied; the scan's
//! final result still decides whether the journal opens at all.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Records a scan walks between two publications of its progress.
pub(crate) const PUBLISH_EVERY_RECORDS: u64 = 256;

/// Yields before a waiting follower starts sleeping between looks.
const YIELDS_BEFORE_SLEEP: u32 = 64;
/// A waiting follower's sleep between looks, once yielding has not been enough.
const SLEEP_BETWEEN_LOOKS_US: u64 = 50;

/// The published progress of one open-time scan.
#[derive(Debug)]
pub(crate) struct ScanProgress {
    /// The service the journal is opened for: records of segments naming another one are not
    /// published (the scan refuses such a journal at its end).
    service_name: String,
    /// Every record with a sequence up to this one is valid (0: none yet).
    validated_through: AtomicU64,
    /// The scan has ended, successfully or not: `validated_through` is final.
    finished: AtomicBool,
}

impl ScanProgress {
    /// Progress of a scan for `service_name` (empty: any service), nothing validated yet.
    pub(crate) fn new(service_name: &str) -> Self {
        Self {
            service_name: service_name.to_owned(),
            validated_through: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        }
    }

    /// Whether records of a segment whose header names `service_name` may be published.
    pub(crate) fn publishes_for(&self, service_name: &str) -> bool {
        self.service_name.is_empty() || service_name.is_empty() || service_name == self.service_name
    }

    /// Every record up to `sequence` is valid. Pairs with the `Acquire` in `wait_beyond`.
    pub(crate) fn publish(&self, sequence: u64) {
        self.validated_through.store(sequence, Ordering::Release);
    }

    /// The scan has ended: nothing more will be published.
    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// Waits until a record after `applied` is validated or the scan has ended; returns the
    /// sequence validated through (final once the scan has ended). Yields, then sleeps: the
    /// scan is faster than applying, so a follower waits only for the first records.
    pub(crate) fn wait_beyond(&self, applied: u64) -> u64 {
        let mut looks = 0u32;
        loop {
            // `finished` first: once it reads true, the progress read after it is final.
            let finished = self.finished.load(Ordering::Acquire);
            let through = self.validated_through.load(Ordering::Acquire);
            if through > applied || finished {
                return through;
            }
            looks = looks.saturating_add(1);
            if looks < YIELDS_BEFORE_SLEEP {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(SLEEP_BETWEEN_LOOKS_US));
            }
        }
    }
}

/// Marks its scan finished when dropped, panics included, so a follower never waits forever.
#[derive(Debug)]
pub(crate) struct FinishOnDrop<'a>(pub(crate) &'a ScanProgress);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}
