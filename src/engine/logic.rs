//! The business-logic stage: applies each message to the processor on one thread, contains
//! panics, publishes exactly one response per message into the output ring, and captures
//! snapshots at message boundaries.
//!
//! Because every input sequence yields exactly one response, the output ring's sequence of a
//! response equals its message's sequence; apply-ahead mode relies on this to hold responses
//! until the journaler has passed them.

use super::dedup::{apply_once, DedupTable};
use super::message::{
    Envelope, Message, ResponseHeader, ResponseSlot, Status, CONTROL_KIND_MIN, CONTROL_SNAPSHOT,
    NO_REPLY_SLOT,
};
use super::metrics::{LogicCounters, APPLY_SAMPLE_EVERY};
use super::processor::{Outcome, Output, Processor};
use super::reply_board::ReplyBoard;
use super::wake::WakeSlot;
use crate::ring::{Consumer, Gauge, Halted, Poll, Producer};
use crate::snapshot::{SnapshotJob, SnapshotSender};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// Result of applying one message: status, reason, response kind, payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Accepted, rejected or failed (panicked).
    pub status: Status,
    /// Rejection reason (0 unless rejected).
    pub reason: u32,
    /// Response kind chosen by the processor.
    pub kind: u16,
    /// Bytes of response payload written.
    pub len: usize,
}

/// Applies `message` to `processor`, writing the response payload into `buf`. A panic inside
/// `apply` is caught and reported as `Status::Failed` with the panic message as payload; the
/// same journal therefore gives the same outcome on replay. Control messages (kinds from
/// [`CONTROL_KIND_MIN`]) are accepted without reaching the processor. Used live and in
/// recovery and replay alike.
pub fn apply_message<P: Processor>(
    processor: &mut P,
    message: &Message<'_>,
    buf: &mut [u8],
) -> Applied {
    if message.header.kind >= CONTROL_KIND_MIN {
        return Applied {
            status: Status::Accepted,
            reason: 0,
            kind: message.header.kind,
            len: 0,
        };
    }
    let mut out = Output::new(buf);
    let result = catch_unwind(AssertUnwindSafe(|| processor.apply(message, &mut out)));
    let (status, reason) = match result {
        Ok(Outcome::Accepted) => (Status::Accepted, 0),
        Ok(Outcome::Rejected(reason)) => (Status::Rejected, reason),
        Err(panic) => {
            out.replace_with_text(panic_text(&*panic));
            (Status::Failed, 0)
        }
    };
    Applied {
        status,
        reason,
        kind: out.kind(),
        len: out.len(),
    }
}

/// The message of a caught panic (`panic!` with a literal or a formatted string).
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("processor panicked")
}

fn fill_response<P: Processor>(
    (processor, dedup): (&mut P, &mut DedupTable),
    envelope: &Envelope,
    slot: &mut ResponseSlot,
) -> Applied {
    let message = envelope.message();
    let answer = apply_once(processor, dedup, &message, &mut slot.payload);
    let applied = answer.applied;
    slot.len = applied.len as u32;
    slot.header = ResponseHeader {
        sequence: answer.sequence,
        session_id: message.header.session_id,
        correlation_id: message.header.correlation_id,
        status: applied.status,
        reason: applied.reason,
        kind: applied.kind,
    };
    applied
}

/// Where responses go.
pub(crate) enum Responses {
    /// Published to the output ring; the `usize` is `max_response_bytes`, the size of the
    /// scratch buffer if its reader goes away (see [`Responses::abandoned`]).
    Ring(Producer<ResponseSlot>, usize),
    /// Dropped after apply; the buffer is scratch space for the processor.
    Discard(Box<[u8]>),
    /// Left on the reply board for the client that sent the message (`Producers::Multi`);
    /// a message without a reply slot (from the `Submitter`) is applied into the scratch
    /// buffer and its response dropped.
    Board(Arc<ReplyBoard>, Box<[u8]>),
}

impl Responses {
    /// The output ring's fill gauge (none without an output ring).
    pub(crate) fn output_gauge(&self) -> Option<Gauge> {
        match self {
            Responses::Ring(output, _) => Some(output.gauge()),
            _ => None,
        }
    }

    /// The response receiver was dropped unread: nobody will ever free room in the output
    /// ring, so from now on responses are discarded (and the ring is closed). Allocates the
    /// scratch buffer once, here, not per message.
    #[cold]
    #[inline(never)]
    fn abandoned(&mut self, sequence: u64) {
        if let Responses::Ring(_, max_response_bytes) = self {
            tracing::warn!(
                sequence,
                "the response receiver was dropped unread: responses are discarded from now on"
            );
            *self = Responses::Discard(vec![0; *max_response_bytes].into());
        }
    }
}

/// When and where snapshots are captured: by the business logic, or by the snapshot replica
/// (`replica`), whose captures pause nothing live and so are not recorded as pauses.
pub(crate) struct Snapshots {
    pub(crate) sender: SnapshotSender,
    pub(crate) interval_messages: u64,
    pub(crate) on_shutdown: bool,
    pub(crate) last_sequence: u64,
    pub(crate) size_hint_bytes: usize,
    pub(crate) replica: bool,
}

impl Snapshots {
    /// Serializes the state (the only snapshot work on this thread) into a reused capture
    /// buffer and hands it over;
    /// `wait`: for room (a requested snapshot, or the last one at shutdown), and the
    /// outcome of a `requested` one is recorded for whoever asked.
    pub(crate) fn capture<P: Processor>(
        &mut self,
        (processor, dedup): (&P, &DedupTable),
        sequence: u64,
        wait: bool,
        requested: bool,
    ) {
        let start = Instant::now();
        // A reused buffer: no allocation unless the state outgrew it (or, for a snapshot that
        // waits, while the writer still holds both kept buffers).
        let mut state = match self.sender.take_buffer() {
            Some(buffer) => buffer,
            None if !wait => return self.sender.skip(sequence),
            None => Vec::new(),
        };
        state.reserve(self.size_hint_bytes);
        if let Err(error) = processor.save_state(&mut state) {
            tracing::error!(sequence, %error, "snapshot capture failed");
            self.sender.give_buffer(state);
            if requested {
                self.sender.stats().record_requested(sequence, false);
            }
            return;
        }
        let state_len = state.len();
        dedup.encode(&mut state);
        self.size_hint_bytes = state.len() + state.len() / 8;
        let job = SnapshotJob {
            sequence,
            schema_version: processor.schema_version(),
            state_hash: processor.state_hash(),
            state,
            state_len,
            requested,
        };
        let capture_ns = start.elapsed().as_nanos() as u64;
        if self.replica {
            self.sender.stats().record_replica_capture(capture_ns);
        } else {
            self.sender.stats().record_pause(capture_ns);
        }
        let handed_over = if wait {
            self.sender.send(job)
        } else {
            self.sender.offer(job)
        };
        if handed_over {
            self.last_sequence = sequence;
        } else if requested {
            self.sender.stats().record_requested(sequence, false);
        }
    }

    /// After `sequence` was applied: capture if it asked for one or the interval is due.
    #[inline]
    pub(crate) fn after<P: Processor>(
        &mut self,
        state: (&P, &DedupTable),
        sequence: u64,
        kind: u16,
    ) {
        if kind == CONTROL_SNAPSHOT {
            self.capture(state, sequence, true, true);
        } else if self.interval_messages != 0 && sequence.is_multiple_of(self.interval_messages) {
            self.capture(state, sequence, false, false);
        }
    }
}

/// Applies one envelope and routes its response; returns how it went.
#[inline]
fn handle<P: Processor>(
    (processor, dedup): (&mut P, &mut DedupTable),
    responses: &mut Responses,
    envelope: &Envelope,
    sequence: u64,
    end_of_batch: bool,
) -> Result<Applied, Halted> {
    debug_assert_eq!(envelope.header.sequence, sequence);
    if let Responses::Board(board, scratch) = responses {
        return Ok(match envelope.reply_slot {
            NO_REPLY_SLOT => apply_once(processor, dedup, &envelope.message(), scratch).applied,
            index => {
                let mut applied = NOT_APPLIED;
                board.answer(index, |slot| {
                    applied = fill_response((processor, dedup), envelope, slot)
                });
                applied
            }
        });
    }
    let mut applied = NOT_APPLIED;
    if let Responses::Ring(output, _) = responses {
        // Written now, published at the end of the batch (one Release store per batch).
        let state = (&mut *processor, &mut *dedup);
        match output.write(|slot, _| applied = fill_response(state, envelope, slot)) {
            Ok(written) => {
                debug_assert_eq!(written, sequence, "one response per message");
                if end_of_batch {
                    output.flush();
                }
                return Ok(applied);
            }
            // Only a full ring checks this (one load), never the path of a message with room.
            Err(Halted) if output.is_abandoned() => responses.abandoned(sequence),
            Err(halted) => return Err(halted),
        }
    }
    if let Responses::Discard(scratch) = responses {
        applied = apply_once(processor, dedup, &envelope.message(), scratch).applied;
    }
    Ok(applied)
}

/// What [`handle`] reports before the message is applied (and for one never applied: the
/// output ring halted).
const NOT_APPLIED: Applied = Applied {
    status: Status::Accepted,
    reason: 0,
    kind: 0,
    len: 0,
};

/// Runs the business logic until the input ring closes or halts; returns the processor.
/// Dropping the output producer on return closes the output ring. `published` is woken after
/// each batch: its responses are out (in apply-ahead mode they may still wait for the journal,
/// whose stage then wakes it again; waking here too covers a journal that got there first).
/// Outcomes and the sampled apply times go to `counters`.
pub(crate) fn run<P: Processor>(
    (mut processor, mut dedup): (P, DedupTable),
    mut input: Consumer<Envelope>,
    mut responses: Responses,
    mut snapshots: Option<Snapshots>,
    (published, counters): (Arc<WakeSlot>, &LogicCounters),
) -> P {
    let owner = std::thread::current().id();
    loop {
        let poll = input.process_batch(None, |envelope, sequence, end_of_batch| {
            // The single-writer principle, checked: only this thread touches the state.
            debug_assert_eq!(std::thread::current().id(), owner);
            let sampled = (sequence & (APPLY_SAMPLE_EVERY - 1) == 0).then(Instant::now);
            let applied = handle(
                (&mut processor, &mut dedup),
                &mut responses,
                envelope,
                sequence,
                end_of_batch,
            )?;
            if let Some(started) = sampled {
                let ns = started.elapsed().as_nanos() as u64;
                counters.apply_ns.record_owned(ns);
            }
            counters.record(applied.status, applied.reason);
            if let Some(snapshots) = snapshots.as_mut() {
                snapshots.after((&processor, &dedup), sequence, envelope.header.kind);
            }
            if end_of_batch {
                published.wake();
            }
            Ok::<(), Halted>(())
        });
        match poll {
            Ok(Poll::Batch(_) | Poll::Timeout) => {}
            Ok(Poll::Closed) => break,
            Ok(Poll::Halted) => return processor,
            Err(Halted) => {
                input.halt();
                return processor;
            }
        }
    }
    let applied = input.sequence().load_acquire();
    if let Some(s) = snapshots
        .as_mut()
        .filter(|s| s.on_shutdown && s.last_sequence < applied)
    {
        s.capture((&processor, &dedup), applied, true, false);
    }
    processor
}
