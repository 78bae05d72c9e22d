//! The rings' slots and their payload buffers, allocated before the rings are built.
//!
//! Each ring's payload bytes are one anonymous mapping, pre-faulted for writing in one call
//! (`MAP_POPULATE` on a private writable mapping), cut into fixed windows, one per slot: the
//! production rings (64 Ki input slots of 1 KiB, 64 Ki output slots of 4 KiB, 320 MB) cost two
//! system calls instead of 131,072 `malloc`s, whose chunk headers also faulted every page one
//! trap at a time (0.2–0.5 s in a fresh process). Slots of one ring are contiguous, and
//! nothing is faulted on the hot path. [`Engine::start`](super::Engine::start) still
//! allocates them on a helper thread while it opens the journal and recovers.

use super::config::{Config, Producers};
use super::message::{Envelope, ResponseSlot};
use crate::error::Error;
use crate::ring::slots_allocated;
use memmap2::{MmapOptions, MmapRaw};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::thread::JoinHandle;

/// One slot's payload buffer: a fixed window of its ring's mapping.
pub struct SlotBuffer {
    start: NonNull<u8>,
    len: usize,
    /// Keeps the mapping alive as long as any window of it (`None` for empty windows).
    _arena: Option<Arc<MmapRaw>>,
}

// SAFETY: a `SlotBuffer` owns its window exclusively (windows are disjoint, and it is not
// `Clone`), exactly like a `Box<[u8]>`; the mapping it points into is kept alive by the `Arc`.
unsafe impl Send for SlotBuffer {}
// SAFETY: shared access hands out only `&[u8]` to the window (via `&self`), as `Box<[u8]>` does.
unsafe impl Sync for SlotBuffer {}

impl Deref for SlotBuffer {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `[start, start + len)` lies inside the live mapping (built by `windows`), or
        // is empty with a dangling, aligned pointer, and belongs to this buffer alone; `&self`
        // guarantees no `&mut` to it exists.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl DerefMut for SlotBuffer {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access to the window.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for SlotBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotBuffer({} bytes)", self.len)
    }
}

/// `count` zeroed windows of `bytes_each`, cut from one pre-faulted mapping.
fn windows(count: usize, bytes_each: usize) -> std::io::Result<Vec<SlotBuffer>> {
    let total = count.checked_mul(bytes_each).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "ring bytes overflow")
    })?;
    if total == 0 {
        // A zero-length mapping is refused by the OS; windows of nothing need no memory.
        let empty = || SlotBuffer {
            start: NonNull::dangling(),
            len: 0,
            _arena: None,
        };
        return Ok((0..count).map(|_| empty()).collect());
    }
    let arena: Arc<MmapRaw> = Arc::new(MmapOptions::new().len(total).populate().map_anon()?.into());
    let base = NonNull::new(arena.as_mut_ptr()).expect("a mapping is never at address 0");
    Ok((0..count)
        .map(|i| SlotBuffer {
            // SAFETY: `i * bytes_each < total`: the offset stays inside the mapping.
            start: unsafe { base.add(i * bytes_each) },
            len: bytes_each,
            _arena: Some(Arc::clone(&arena)),
        })
        .collect())
}

/// One slot per entry of each ring.
pub(crate) struct Slots {
    input: Vec<Envelope>,
    /// The output ring's slots; with several producers the reply board's instead; empty when
    /// responses are discarded.
    output: Vec<ResponseSlot>,
}

impl Slots {
    /// Allocates every slot of both rings, on this thread.
    pub(crate) fn allocate(config: &Config) -> std::io::Result<Slots> {
        // The ring may ask for a few padding slots beyond its capacity (never used).
        let input_slots = slots_allocated::<Envelope>(config.ring_capacity);
        let input = windows(input_slots, config.max_message_bytes)?
            .into_iter()
            .map(Envelope::new)
            .collect();
        let output_slots = output_slots(config);
        let output = windows(output_slots, config.max_response_bytes)?
            .into_iter()
            .map(ResponseSlot::new)
            .collect();
        Ok(Slots { input, output })
    }

    /// Starts allocating them on a helper thread.
    pub(crate) fn allocate_in_background(config: &Config) -> Result<PendingSlots, Error> {
        let config = config.clone();
        let handle = std::thread::Builder::new()
            .name("keel-slots".into())
            .spawn(move || Slots::allocate(&config))?;
        Ok(PendingSlots(handle))
    }

    /// Factories handing out the input and output slots one by one, for `RingBuilder::build`.
    pub(crate) fn into_parts(self) -> (SlotSource<Envelope>, SlotSource<ResponseSlot>) {
        (
            SlotSource(self.input.into_iter()),
            SlotSource(self.output.into_iter()),
        )
    }
}

/// How many response slots `config` needs: the output ring's, or the reply board's.
pub(crate) fn output_slots(config: &Config) -> usize {
    match config.producers {
        _ if config.discard_responses => 0,
        Producers::Single => slots_allocated::<ResponseSlot>(config.output_ring_capacity),
        Producers::Multi => super::reply_board::slots_for(config.ring_capacity),
    }
}

/// `count` response slots of `bytes_each`, for unit tests.
#[cfg(test)]
pub(crate) fn windows_for_tests(count: usize, bytes_each: usize) -> SlotSource<ResponseSlot> {
    let slots: Vec<ResponseSlot> = windows(count, bytes_each)
        .expect("map")
        .into_iter()
        .map(ResponseSlot::new)
        .collect();
    SlotSource(slots.into_iter())
}

/// Slots being allocated by [`Slots::allocate_in_background`].
pub(crate) struct PendingSlots(JoinHandle<std::io::Result<Slots>>);

impl PendingSlots {
    /// Waits for them. A panic on the helper thread is resumed here.
    pub(crate) fn wait(self) -> std::io::Result<Slots> {
        self.0
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Pre-allocated slots, taken one per ring entry.
pub(crate) struct SlotSource<T>(std::vec::IntoIter<T>);

impl<T> SlotSource<T> {
    /// The next slot; the ring asks for exactly as many as were allocated for it
    /// ([`slots_allocated`]).
    pub(crate) fn take(&mut self) -> T {
        self.0
            .next()
            .expect("one pre-allocated slot per ring entry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_disjoint_zeroed_and_outlive_each_other() {
        let mut w = windows(4, 100).unwrap();
        assert!(w
            .iter()
            .all(|b| b.len() == 100 && b.iter().all(|&x| x == 0)));
        for (i, b) in w.iter_mut().enumerate() {
            b.fill(i as u8 + 1);
        }
        let last = w.pop().unwrap();
        drop(w);
        assert!(
            last.iter().all(|&x| x == 4),
            "the mapping lives while a window does"
        );
        assert_eq!(windows(3, 0).unwrap().len(), 3);
    }
}
