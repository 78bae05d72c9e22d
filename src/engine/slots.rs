//! The rings' slots, allocated before the rings are built. The default rings hold 64 Ki
//! input slots of 1 KiB and 64 Ki output slots of 4 KiB, 320 MB that take 0.1–0.2 s to
//! allocate in a fresh process, so [`Engine::start`](super::Engine::start) allocates them on a
//! helper thread while it opens the journal and recovers.

use super::config::Config;
use super::message::{Envelope, ResponseSlot};
use crate::error::Error;
use std::thread::JoinHandle;

/// One slot per entry of each ring.
pub(crate) struct Slots {
    input: Vec<Envelope>,
    /// Empty when responses are discarded (no output ring).
    output: Vec<ResponseSlot>,
}

impl Slots {
    /// Allocates every slot of both rings, on this thread.
    pub(crate) fn allocate(config: &Config) -> Slots {
        let max_message_bytes = config.max_message_bytes;
        let input = (0..config.ring_capacity)
            .map(|_| Envelope::with_capacity(max_message_bytes))
            .collect();
        let output_slots = if config.discard_responses {
            0
        } else {
            config.output_ring_capacity
        };
        let max_response_bytes = config.max_response_bytes;
        let output = (0..output_slots)
            .map(|_| ResponseSlot::with_capacity(max_response_bytes))
            .collect();
        Slots { input, output }
    }

    /// Starts allocating them on a helper thread.
    pub(crate) fn allocate_in_background(config: &Config) -> Result<PendingSlots, Error> {
        let config = config.clone();
        let handle = std::thread::Builder::new()
            .name("keel-slots".into())
            .spawn(move || Slots::allocate(&config))?;
        Ok(PendingSlots(handle))
    }

    /// A factory handing out the input slots one by one, for `RingBuilder::build`.
    pub(crate) fn into_parts(self) -> (SlotSource<Envelope>, SlotSource<ResponseSlot>) {
        (
            SlotSource(self.input.into_iter()),
            SlotSource(self.output.into_iter()),
        )
    }
}

/// Slots being allocated by [`Slots::allocate_in_background`].
pub(crate) struct PendingSlots(JoinHandle<Slots>);

impl PendingSlots {
    /// Waits for them. A panic on the helper thread (allocation failure) is resumed here.
    pub(crate) fn wait(self) -> Slots {
        self.0
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Pre-allocated slots, taken one per ring entry.
pub(crate) struct SlotSource<T>(std::vec::IntoIter<T>);

impl<T> SlotSource<T> {
    /// The next slot; the ring asks for exactly as many as were allocated for it.
    pub(crate) fn take(&mut self) -> T {
        self.0
            .next()
            .expect("one pre-allocated slot per ring entry")
    }
}
