//! The reading end of the output ring, for an embedding host.

use super::message::{Response, ResponseSlot};
use crate::ring::{Consumer, Poll};
use std::time::{Duration, Instant};

/// Receives responses in sequence order: exactly one per submitted message.
pub struct ResponseReceiver {
    consumer: Consumer<ResponseSlot>,
}

impl ResponseReceiver {
    pub(crate) fn new(consumer: Consumer<ResponseSlot>) -> Self {
        ResponseReceiver { consumer }
    }

    /// Waits until responses are available (or `deadline`), then hands every available one to
    /// `f` in order. `Poll::Closed` once the engine has stopped and all were delivered.
    #[inline]
    pub fn poll(&mut self, deadline: Option<Instant>, mut f: impl FnMut(Response<'_>)) -> Poll {
        let result = self.consumer.process_batch(deadline, |slot, _, _| {
            f(slot.response());
            Ok::<(), ()>(())
        });
        result.unwrap_or(Poll::Halted)
    }

    /// Hands every response available right now to `f`, without waiting. Returns how many
    /// (or `Poll::Closed`/`Poll::Halted` once the engine has stopped and all were delivered).
    #[inline]
    pub fn try_poll(&mut self, f: impl FnMut(Response<'_>)) -> Poll {
        self.poll(Some(Instant::now()), f)
    }

    /// Reads and drops responses until the output ring closes or halts.
    pub fn drain_until_closed(&mut self) {
        loop {
            let deadline = Some(Instant::now() + Duration::from_millis(50));
            if matches!(self.poll(deadline, |_| {}), Poll::Closed | Poll::Halted) {
                return;
            }
        }
    }

    /// The last sequence whose response was delivered.
    pub fn delivered_sequence(&self) -> u64 {
        self.consumer.sequence().load_acquire()
    }
}
