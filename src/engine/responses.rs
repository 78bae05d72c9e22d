//! The reading end of the output ring, for an embedding host.

use super::message::{Response, ResponseSlot};
use super::wake::{WakeHook, WakeHookAlreadySet, WakeSlot};
use crate::ring::{Consumer, Poll};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receives responses in sequence order: exactly one per submitted message.
///
/// Dropping it while the engine runs tells the engine nobody reads its responses: from then on
/// the business logic discards them (logged once at `warn`) instead of waiting for room in
/// the output ring, so `submit` never blocks on a reader that is gone.
///
/// A thread that parks in [`Self::poll`] is woken by the ring itself. A thread that sleeps
/// elsewhere (in `epoll`, say) sets a [`Self::set_wake_hook`] to be told when to look again.
///
/// Only an engine with one producer (`Producers::Single`, the default) has one. With
/// `Producers::Multi` each reply goes to the [`Client`](super::Client) that sent the message,
/// and `Engine::take_responses` returns `None`.
pub struct ResponseReceiver {
    consumer: Consumer<ResponseSlot>,
    wake: Arc<WakeSlot>,
    max_response_bytes: usize,
}

impl ResponseReceiver {
    /// Halts the output ring from any thread (`Engine::halt`): a business logic waiting for
    /// room returns at once.
    pub(crate) fn halt_handle(&self) -> Arc<dyn Fn() + Send + Sync> {
        self.consumer.halt_handle()
    }

    pub(crate) fn new(
        consumer: Consumer<ResponseSlot>,
        wake: Arc<WakeSlot>,
        max_response_bytes: usize,
    ) -> Self {
        ResponseReceiver {
            consumer,
            wake,
            max_response_bytes,
        }
    }

    /// Sets the hook the engine calls after responses become available to this receiver: the
    /// business logic after each batch it published, and in apply-ahead mode the stage that
    /// releases them once journaled (so no response waits for a timer). `hook` runs on the
    /// engine's threads: it must be cheap and must not block. Responses already available
    /// when it is set do not call it: poll once after setting it, then sleep.
    ///
    /// Set at most once (the network server sets its own when it takes the receiver):
    /// a second call fails.
    pub fn set_wake_hook(&self, hook: WakeHook) -> Result<(), WakeHookAlreadySet> {
        self.wake.set(hook)
    }

    /// Whether a wake hook is set.
    pub fn has_wake_hook(&self) -> bool {
        self.wake.is_set()
    }

    /// The largest response payload the engine may deliver (`Config::max_response_bytes`).
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
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

impl Drop for ResponseReceiver {
    fn drop(&mut self) {
        // Harmless once the engine closed the ring (its producer is gone).
        self.consumer.abandon();
    }
}
