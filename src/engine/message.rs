//! What travels through the rings: input messages and their responses.
//!
//! Slots are allocated once at start with room for the largest message (or response) the
//! `Config` allows; the producer copies bytes into a slot in place, so nothing is allocated per
//! message.

use super::slots::SlotBuffer;
use serde::Serialize;

/// Message kinds at or above this value are reserved for the engine's own control messages.
pub const CONTROL_KIND_MIN: u16 = 0xFF00;

/// Control message: take a snapshot right after this message (journaled like any other, so its
/// position is part of the recorded history; the processor never sees it).
pub const CONTROL_SNAPSHOT: u16 = 0xFF01;

/// Everything about a message except its payload. `Copy`, fixed size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageHeader {
    /// Position in the journal, assigned by the ring; contiguous from 1.
    pub sequence: u64,
    /// Nanoseconds since the Unix epoch, stamped when the message was published. The only
    /// clock the business logic may read.
    pub timestamp_ns: u64,
    /// The client session that sent it (0 for the embedding host).
    pub session_id: u64,
    /// Chosen by the client; returned unchanged in the response.
    pub correlation_id: u64,
    /// Application message kind.
    pub kind: u16,
    /// Version of that kind's payload encoding (old versions are upcast by the processor).
    pub version: u16,
}

/// A message as handed to the business logic: header plus borrowed payload.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Sequence, time, origin, kind and version.
    pub header: MessageHeader,
    /// The encoded payload (bincode with `keel::codec`, by convention).
    pub payload: &'a [u8],
}

/// `Envelope::reply_slot` of a message whose sender waits for no reply on the reply board.
pub(crate) const NO_REPLY_SLOT: u32 = u32::MAX;

/// One input-ring slot: header, then a pre-allocated payload buffer.
pub struct Envelope {
    pub(crate) header: MessageHeader,
    pub(crate) len: u32,
    /// The reply-board slot of the [`Client`](super::Client) that sent it, or
    /// [`NO_REPLY_SLOT`]. Routing only: not journaled, not shown to the processor.
    pub(crate) reply_slot: u32,
    pub(crate) payload: SlotBuffer,
}

impl Envelope {
    pub(crate) fn new(payload: SlotBuffer) -> Self {
        Envelope {
            header: MessageHeader::default(),
            len: 0,
            reply_slot: NO_REPLY_SLOT,
            payload,
        }
    }

    /// The message this slot holds.
    #[inline]
    pub fn message(&self) -> Message<'_> {
        Message {
            header: self.header,
            payload: &self.payload[..self.len as usize],
        }
    }
}

/// The result of applying a message, as reported to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[repr(u8)]
pub enum Status {
    /// Applied; state may have changed.
    Accepted = 0,
    /// Refused by the business logic with an application reason code; state is unchanged.
    Rejected = 1,
    /// The processor panicked while applying it. Replay reproduces the same outcome.
    Failed = 2,
    /// Not applied: an exactly-once client's request id that was applied before, whose reply
    /// the engine no longer holds (docs/engine.md, "Exactly once"). State is unchanged.
    AlreadyAnswered = 3,
}

/// Everything about a response except its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResponseHeader {
    /// Sequence of the message this answers.
    pub sequence: u64,
    /// Session to send it to.
    pub session_id: u64,
    /// The correlation id of the message this answers.
    pub correlation_id: u64,
    /// Accepted, rejected or failed.
    pub status: Status,
    /// Application reason code when rejected; 0 otherwise.
    pub reason: u32,
    /// Application response kind (free for the processor to use).
    pub kind: u16,
}

impl Default for ResponseHeader {
    fn default() -> Self {
        ResponseHeader {
            sequence: 0,
            session_id: 0,
            correlation_id: 0,
            status: Status::Accepted,
            reason: 0,
            kind: 0,
        }
    }
}

/// A response as handed to whoever reads the output ring.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status, reason, routing.
    pub header: ResponseHeader,
    /// Response payload written by the processor (or the panic message when `Failed`).
    pub payload: &'a [u8],
}

/// One output-ring slot.
pub struct ResponseSlot {
    pub(crate) header: ResponseHeader,
    pub(crate) len: u32,
    pub(crate) payload: SlotBuffer,
}

impl ResponseSlot {
    pub(crate) fn new(payload: SlotBuffer) -> Self {
        ResponseSlot {
            header: ResponseHeader::default(),
            len: 0,
            payload,
        }
    }

    /// The response this slot holds.
    #[inline]
    pub fn response(&self) -> Response<'_> {
        Response {
            header: self.header,
            payload: &self.payload[..self.len as usize],
        }
    }
}
