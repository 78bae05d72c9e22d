//! `Sequence`: a cache-padded, monotonically increasing counter shared between threads.
//!
//! Every cross-thread position in keel (the producer's published cursor, each consumer's
//! processed position) is a `Sequence`. Methods name their memory ordering, as LMAX's
//! `Sequence.get/set` do. Padding follows crossbeam's [`CachePadded`] (128 bytes on x86_64,
//! because adjacent-line prefetch pulls lines in pairs; see crossbeam-utils' docs).

use super::sync::AtomicU64;
use crossbeam_utils::CachePadded;
use std::sync::atomic::Ordering;

/// A position in the message stream. Sequence numbers start at 1; 0 means "nothing yet".
#[derive(Debug)]
pub struct Sequence(CachePadded<AtomicU64>);

impl Sequence {
    /// A new sequence holding `value`.
    #[cfg(not(loom))]
    pub const fn new(value: u64) -> Self {
        Sequence(CachePadded::new(AtomicU64::new(value)))
    }

    /// A new sequence holding `value` (loom's atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new(value: u64) -> Self {
        Sequence(CachePadded::new(AtomicU64::new(value)))
    }

    /// Acquire load: everything written before the matching `store_release` is visible after it.
    #[inline]
    pub fn load_acquire(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Relaxed load: only for the owning thread reading its own value, or for statistics.
    #[inline]
    pub fn load_relaxed(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Release store: publishes every write made before it to threads that `load_acquire` it.
    #[inline]
    pub fn store_release(&self, value: u64) {
        debug_assert!(value >= self.load_relaxed(), "sequences never go backwards");
        self.0.store(value, Ordering::Release);
    }

    /// Compare-and-swap, AcqRel on success and Acquire on failure (which returns the value
    /// seen): the multi-producer claim (`multi_producer.rs`). May fail spuriously.
    #[inline]
    pub(crate) fn compare_exchange_acq_rel(&self, current: u64, new: u64) -> Result<u64, u64> {
        self.0
            .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Atomic OR, AcqRel: sets `bits` and returns the value before (the multi-producer close).
    #[inline]
    pub(crate) fn fetch_or_acq_rel(&self, bits: u64) -> u64 {
        self.0.fetch_or(bits, Ordering::AcqRel)
    }
}

/// The smallest value among `sequences` (Acquire loads), or `default` if there are none.
#[inline]
pub fn minimum(sequences: &[std::sync::Arc<Sequence>], default: u64) -> u64 {
    sequences
        .iter()
        .map(|s| s.load_acquire())
        .fold(default, u64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_to_a_cache_line_pair() {
        assert!(std::mem::align_of::<Sequence>() >= 64);
        assert!(std::mem::size_of::<Sequence>() >= 64);
    }

    #[test]
    fn minimum_of_several() {
        let a = std::sync::Arc::new(Sequence::new(5));
        let b = std::sync::Arc::new(Sequence::new(3));
        assert_eq!(minimum(&[a.clone(), b.clone()], u64::MAX), 3);
        b.store_release(9);
        assert_eq!(minimum(&[a, b], u64::MAX), 5);
        assert_eq!(minimum(&[], 7), 7);
    }
}
