//! The reply board: where the business logic leaves each in-process client's reply, and where
//! the client's thread waits for it (see [`super::Client`]).
//!
//! The board has two reply slots per input-ring slot ([`slots_for`]), each with a payload
//! buffer of `max_response_bytes`, allocated at start. A client takes a free slot from a
//! lock-free pool
//! before it publishes its message and names it in the message's envelope; the business
//! logic writes the response there (instead of into an output ring) and marks it ready; the
//! ticket holder reads it in place and gives the slot back. No allocation per message, and
//! no dispatcher: each reply is written where its caller looks.
//!
//! # A slot's states
//!
//! ```text
//!  FREE ──client takes it──▶ PENDING ──logic wrote the reply──▶ READY ──read, or ticket dropped──▶ FREE
//!                               │                                            (back in the pool)
//!                               └──ticket dropped──▶ ABANDONED ──logic wrote the reply──▶ FREE
//! ```
//!
//! Exactly one party owns a slot at a time: the pool (FREE), the business logic (PENDING and
//! ABANDONED: it alone touches the response), the ticket and then its `Reply` (READY). The
//! only race, the logic finishing while the ticket is dropped, is settled by one
//! compare-and-swap from PENDING. The logic's Release store of READY pairs with the reader's
//! Acquire load, so the response is visible before READY is; a slot goes back to the pool
//! only after its last reader is done (the pool's push and pop order the next writer after).
//!
//! A reply is released to its caller under the engine's durability policy: in durable mode
//! when it is written (its message was journaled before it was applied), in apply-ahead mode
//! once the journal also holds its message (`release_gate`). Waiting callers park on the
//! board's own [`Signal`], woken through the engine's wake hook (the business logic after each
//! batch; in apply-ahead mode also the stage that advances the journal's sequence) and when
//! the engine stops.

use super::message::ResponseSlot;
use super::slots::SlotSource;
use crate::ring::{wait_until, Sequence, Signal, WaitStrategy};
use crossbeam_queue::ArrayQueue;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// In the pool.
const FREE: u32 = 0;
/// Owned by a live ticket; the business logic has not written the reply yet.
const PENDING: u32 = 1;
/// The reply is written; the ticket (then its `Reply`) reads it.
const READY: u32 = 2;
/// The ticket was dropped before the reply came; the business logic frees the slot.
const ABANDONED: u32 = 3;

/// How a caller waits for its reply: a short spin and a few yields (a reply that is
/// microseconds away), then park until the engine's wake-up. The park timeout only bounds a
/// lost wake-up, which the signal's handshake excludes.
const CALLER_WAIT: WaitStrategy = WaitStrategy::PhasedBackoff {
    spin_tries: 100,
    yield_tries: 10,
    park_timeout: Duration::from_millis(10),
};

/// Reply slots of the board of an input ring of `ring_capacity`: one for each message the
/// ring can hold (a slot is taken before the message is published), and as many again for
/// replies written but not yet read. So callers that read their replies run out of slots only
/// if more of them wait at once than the ring has slots; tickets held unread take slots too.
pub(crate) fn slots_for(ring_capacity: usize) -> usize {
    2 * ring_capacity
}

/// One reply slot.
struct ReplyCell {
    state: AtomicU32,
    response: UnsafeCell<ResponseSlot>,
}

/// Why a wait for a reply ended without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoReply {
    /// The deadline passed.
    Timeout,
    /// The engine stopped without releasing it.
    Stopped,
}

/// Every reply slot, the pool of free ones, and the signal callers park on.
pub(crate) struct ReplyBoard {
    cells: Box<[ReplyCell]>,
    free: ArrayQueue<u32>,
    signal: Signal,
    /// Apply-ahead mode: a reply is released once these sequences (the journal's, and the
    /// commit gate when there is one) all reach its message. Empty in durable mode: released
    /// when written.
    release_gates: Box<[Arc<Sequence>]>,
    /// Engine stages still running that may write or release replies (business logic and
    /// journaler); 0 once both ended: a reply not released by then never will be.
    running_stages: AtomicU32,
}

// SAFETY: each cell's response is accessed by one owner at a time, handed over through its
// `state` (module docs): the business logic while PENDING/ABANDONED, the reader while READY.
unsafe impl Sync for ReplyBoard {}

impl ReplyBoard {
    /// A board of `count` slots taken from `slots`; `release_gates` as on the field.
    pub(crate) fn new(
        count: usize,
        mut slots: SlotSource<ResponseSlot>,
        release_gates: Vec<Arc<Sequence>>,
    ) -> Self {
        let free = ArrayQueue::new(count.max(1));
        for index in 0..count {
            free.push(index as u32).expect("room for every slot");
        }
        ReplyBoard {
            cells: (0..count)
                .map(|_| ReplyCell {
                    state: AtomicU32::new(FREE),
                    response: UnsafeCell::new(slots.take()),
                })
                .collect(),
            free,
            signal: Signal::default(),
            release_gates: release_gates.into(),
            running_stages: AtomicU32::new(2),
        }
    }

    /// Number of reply slots: the most replies outstanding at once.
    pub(crate) fn capacity(&self) -> usize {
        self.cells.len()
    }

    /// Takes a free slot for a message about to be published (PENDING), or `None` if every
    /// slot is held by a ticket or a reply not yet read or dropped.
    pub(crate) fn reserve(&self) -> Option<u32> {
        let index = self.free.pop()?;
        // Relaxed: the message's publication (a Release the logic acquires) carries it.
        self.cells[index as usize]
            .state
            .store(PENDING, Ordering::Relaxed);
        Some(index)
    }

    /// Gives a slot back to the pool: its reply was read, or its message never published.
    pub(crate) fn release(&self, index: u32) {
        self.cells[index as usize]
            .state
            .store(FREE, Ordering::Relaxed);
        // The push is a Release the next `reserve`'s pop acquires.
        let _ = self.free.push(index);
    }

    /// The business logic: writes the reply of the message that reserved `index` with
    /// `fill`, then hands it to its ticket, or frees the slot if the ticket is gone.
    #[inline]
    pub(crate) fn answer(&self, index: u32, fill: impl FnOnce(&mut ResponseSlot)) {
        let cell = &self.cells[index as usize];
        // SAFETY: the slot is PENDING or ABANDONED, so the business logic (this thread) owns
        // its response: the ticket reads it only after seeing READY, stored below.
        fill(unsafe { &mut *cell.response.get() });
        // Release: pairs with the Acquire load in `state_of`.
        let ready =
            cell.state
                .compare_exchange(PENDING, READY, Ordering::Release, Ordering::Relaxed);
        if ready.is_err() {
            self.release(index);
        }
    }

    /// A ticket dropped unread: the slot goes back to the pool now if its reply is there,
    /// else when the business logic has written it. Nobody waits.
    pub(crate) fn abandon(&self, index: u32) {
        let cell = &self.cells[index as usize];
        let abandoned =
            cell.state
                .compare_exchange(PENDING, ABANDONED, Ordering::Acquire, Ordering::Acquire);
        if abandoned == Err(READY) {
            self.release(index);
        }
    }

    /// Whether the reply to `sequence` in `index` is written and released.
    #[inline]
    pub(crate) fn is_released(&self, index: u32, sequence: u64) -> bool {
        // Acquire: pairs with the Release in `answer`.
        let written = self.cells[index as usize].state.load(Ordering::Acquire) == READY;
        written
            && self
                .release_gates
                .iter()
                .all(|gate| gate.load_acquire() >= sequence)
    }

    /// The released reply in `index`.
    ///
    /// # Safety
    /// `is_released(index, _)` returned true, and the caller owns the ticket of `index` until
    /// it stops using the reference (it then calls `release`).
    pub(crate) unsafe fn response(&self, index: u32) -> &ResponseSlot {
        // SAFETY: READY (seen with Acquire): the business logic's writes are visible and it
        // does not touch the slot again until it is reserved anew, after `release`.
        unsafe { &*self.cells[index as usize].response.get() }
    }

    /// Waits until the reply to `sequence` in `index` is released, `deadline` passes, or the
    /// engine stops without releasing it.
    pub(crate) fn wait(
        &self,
        index: u32,
        sequence: u64,
        deadline: Option<Instant>,
    ) -> Result<(), NoReply> {
        let done = || self.is_released(index, sequence) || self.is_stopped();
        wait_until(CALLER_WAIT, &self.signal, deadline, done);
        if self.is_released(index, sequence) {
            Ok(())
        } else if self.is_stopped() {
            Err(NoReply::Stopped)
        } else {
            Err(NoReply::Timeout)
        }
    }

    /// Wakes parked callers (the engine's wake hook): replies were written or released.
    #[inline]
    pub(crate) fn notify(&self) {
        self.signal.notify_all();
    }

    /// Whether every stage that writes or releases replies has ended.
    pub(crate) fn is_stopped(&self) -> bool {
        // Acquire: pairs with the AcqRel decrement in `stage_ended`; whatever the stages
        // wrote before ending is visible.
        self.running_stages.load(Ordering::Acquire) == 0
    }

    /// A stage (business logic or journaler) ended; the last one wakes every caller.
    fn stage_ended(&self) {
        if self.running_stages.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.signal.notify_all();
        }
    }
}

/// Held by the business-logic and journaler threads of a multi-producer engine: dropped when
/// the thread ends (a panic included), it tells the board (see `ReplyBoard::is_stopped`).
pub(crate) struct StageExit(pub(crate) Option<Arc<ReplyBoard>>);

impl Drop for StageExit {
    fn drop(&mut self) {
        if let Some(board) = &self.0 {
            board.stage_ended();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::slots::windows_for_tests;
    use super::*;

    fn board(count: usize) -> ReplyBoard {
        ReplyBoard::new(count, windows_for_tests(count, 8), Vec::new())
    }

    #[test]
    fn a_slot_cycles_through_the_pool() {
        let board = board(2);
        let (a, b) = (board.reserve().unwrap(), board.reserve().unwrap());
        assert_eq!(board.reserve(), None, "every slot is held");
        board.answer(a, |slot| slot.len = 3);
        assert!(board.is_released(a, 1));
        // SAFETY: released, and this test holds its ticket.
        assert_eq!(unsafe { board.response(a) }.len, 3);
        board.release(a);
        // A ticket dropped before its reply: the logic frees the slot when it answers.
        board.abandon(b);
        assert!(!board.is_released(b, 2));
        board.answer(b, |slot| slot.len = 1);
        assert_eq!(board.free.len(), 2);
    }

    #[test]
    fn stopped_once_both_stages_ended() {
        let board = Arc::new(board(1));
        let index = board.reserve().unwrap();
        drop(StageExit(Some(board.clone())));
        assert_eq!(
            board.wait(index, 1, Some(Instant::now())),
            Err(NoReply::Timeout)
        );
        drop(StageExit(Some(board.clone())));
        assert_eq!(board.wait(index, 1, None), Err(NoReply::Stopped));
    }
}
