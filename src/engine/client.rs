//! In-process clients: cloneable handles that submit from any thread and get their own reply.
//!
//! A [`Client`] publishes into the input ring with the multi-producer claim and reserves a
//! reply slot on the engine's reply board first (`reply_board.rs`); the business logic writes
//! the response into that slot, and the caller reads it in place. No dispatcher, no queue in
//! front, no allocation per message.

use super::message::{Envelope, Response, ResponseHeader, ResponseSlot, Status};
use super::reply_board::{NoReply, ReplyBoard};
use super::submit::{fill, now_ns, Submission};
use crate::codec;
use crate::ring::{Halted, MultiProducer, TryPublishError};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a client call, submit or wait did not give a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The engine was started with `Producers::Single` (the default), which has no clients.
    #[error(
        "the engine has a single producer: set Config::producers = Producers::Multi to use clients"
    )]
    SingleProducer,
    /// The payload is larger than `Config::max_message_bytes`.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// The input ring is full right now (only from [`Client::try_submit`]).
    #[error("input ring full")]
    Full,
    /// Every reply slot is held by a [`Ticket`] or [`Reply`] not yet read or dropped; read or
    /// drop some. Nothing was submitted.
    #[error("all {limit} reply slots are held by tickets or replies not yet read or dropped")]
    TooManyOutstanding {
        /// Reply slots (`2 * Config::ring_capacity`).
        limit: usize,
    },
    /// The engine stopped (shut down, or halted by a fatal error) before it accepted the
    /// message or released its reply. A message whose reply was not released is not
    /// acknowledged: it may be missing after a restart.
    #[error("engine stopped")]
    Stopped,
    /// This ticket's reply was already taken.
    #[error("the reply was already taken from this ticket")]
    ReplyTaken,
    /// The command could not be encoded with keel's codec (a serde error, such as a sequence
    /// of unknown length). Nothing was submitted.
    #[error("the command could not be encoded")]
    Unencodable,
}

/// A handle for submitting messages to the engine from any thread and getting each one's
/// reply (from [`Engine::client`](crate::Engine::client), on an engine with
/// `Config::producers = Producers::Multi`).
///
/// Clone it for each thread (or share one: every method takes `&self`). [`Client::call`]
/// blocks until the reply; [`Client::submit`] returns a [`Ticket`] at once, to wait on or
/// poll later. A reply is released under the engine's durability policy, like the
/// `ResponseReceiver`'s: in durable mode after its message was journaled and applied, in
/// apply-ahead mode once the journal also holds it.
///
/// At most `2 * Config::ring_capacity` replies are outstanding at once: a ticket or reply
/// holds its slot until it is read or dropped, a ticket dropped before its reply came until
/// the reply comes (beyond that, `TooManyOutstanding`, never a wait).
/// After the engine stops, every call returns [`ClientError::Stopped`].
#[derive(Clone)]
pub struct Client {
    producer: MultiProducer<Envelope>,
    board: Arc<ReplyBoard>,
    max_message_bytes: usize,
}

impl Client {
    pub(crate) fn new(
        producer: MultiProducer<Envelope>,
        board: Arc<ReplyBoard>,
        max_message_bytes: usize,
    ) -> Self {
        Client {
            producer,
            board,
            max_message_bytes,
        }
    }

    /// Submits one message and waits for its reply (waiting for room first while the input
    /// ring is full).
    pub fn call(&self, to: Submission, payload: &[u8]) -> Result<Reply<'_>, ClientError> {
        self.submit(to, payload)?.wait()
    }

    /// Submits one message, waiting while the input ring is full (back-pressure), and returns
    /// its ticket without waiting for the reply.
    pub fn submit(&self, to: Submission, payload: &[u8]) -> Result<Ticket<'_>, ClientError> {
        self.submit_with(to, payload, true)
    }

    /// Submits one message only if the input ring has room now (else `Full`).
    pub fn try_submit(&self, to: Submission, payload: &[u8]) -> Result<Ticket<'_>, ClientError> {
        self.submit_with(to, payload, false)
    }

    /// Largest payload accepted.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Closes the input ring for every producer (engine shutdown).
    pub(crate) fn close_input(&self) {
        self.producer.close();
    }

    /// Checks, reserves a reply slot, then publishes (waiting for room if `wait`); gives the
    /// slot back if the message was not published.
    #[inline]
    fn submit_with(
        &self,
        to: Submission,
        payload: &[u8],
        wait: bool,
    ) -> Result<Ticket<'_>, ClientError> {
        self.check_len(payload.len())?;
        self.publish(wait, |slot, sequence, timestamp_ns, index| {
            fill(slot, sequence, timestamp_ns, to, payload, index);
        })
    }

    /// Encodes `value` straight into its ring slot (its length is measured first, so nothing
    /// is published that does not fit); see [`Client::submit_with`].
    #[inline]
    pub(crate) fn submit_encoded<T: Serialize>(
        &self,
        to: Submission,
        value: &T,
        wait: bool,
    ) -> Result<Ticket<'_>, ClientError> {
        let len = codec::encoded_len(value).map_err(|_| ClientError::Unencodable)?;
        self.check_len(len)?;
        self.publish(wait, |slot, sequence, timestamp_ns, index| {
            fill(slot, sequence, timestamp_ns, to, &[], index);
            let written = codec::encode_into(value, &mut slot.payload[..len]);
            debug_assert_eq!(written.ok(), Some(len), "measured length");
            slot.len = len as u32;
        })
    }

    fn check_len(&self, len: usize) -> Result<(), ClientError> {
        if len > self.max_message_bytes {
            let max = self.max_message_bytes;
            return Err(ClientError::TooLarge { len, max });
        }
        if self.producer.is_halted() || self.producer.is_closed() {
            return Err(ClientError::Stopped);
        }
        Ok(())
    }

    /// Reserves a reply slot, then claims a ring slot and lets `write` fill it (slot, sequence,
    /// timestamp, reply slot); gives the reply slot back if nothing was published.
    #[inline]
    fn publish(
        &self,
        wait: bool,
        write: impl Fn(&mut Envelope, u64, u64, u32),
    ) -> Result<Ticket<'_>, ClientError> {
        let limit = self.board.capacity();
        let index = self
            .board
            .reserve()
            .ok_or(ClientError::TooManyOutstanding { limit })?;
        let timestamp_ns = now_ns();
        let write = |slot: &mut Envelope, sequence| write(slot, sequence, timestamp_ns, index);
        let published = if wait {
            self.producer
                .publish(write)
                .map_err(|Halted| ClientError::Stopped)
        } else {
            self.producer
                .try_publish_batch(1, write)
                .map_err(|e| match e {
                    TryPublishError::Full => ClientError::Full,
                    TryPublishError::Halted => ClientError::Stopped,
                })
        };
        match published {
            Ok(sequence) => Ok(Ticket {
                board: &self.board,
                index,
                sequence,
                taken: false,
            }),
            Err(e) => {
                self.board.release(index);
                Err(e)
            }
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

/// A submitted message's claim on its reply (from [`Client::submit`]).
///
/// Wait for the reply with [`Ticket::wait`] or [`Ticket::wait_timeout`], or poll with
/// [`Ticket::try_take`]. A ticket dropped unread gives its reply slot back (now, or when the
/// reply comes): nobody waits for it, and the message itself is processed as usual.
pub struct Ticket<'c> {
    board: &'c ReplyBoard,
    index: u32,
    sequence: u64,
    taken: bool,
}

impl<'c> Ticket<'c> {
    /// The message's sequence number (its position in the journal).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The reply if it is released now (`Ok(None)` if not yet).
    pub fn try_take(&mut self) -> Result<Option<Reply<'c>>, ClientError> {
        self.wait_until(Some(Instant::now()))
    }

    /// Waits at most `timeout` for the reply (`Ok(None)` if it has not come by then; the
    /// ticket stays valid).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<Reply<'c>>, ClientError> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Waits for the reply.
    pub fn wait(mut self) -> Result<Reply<'c>, ClientError> {
        Ok(self.wait_until(None)?.expect("no deadline"))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<Option<Reply<'c>>, ClientError> {
        if self.taken {
            return Err(ClientError::ReplyTaken);
        }
        match self.board.wait(self.index, self.sequence, deadline) {
            Ok(()) => {
                self.taken = true;
                Ok(Some(Reply {
                    board: self.board,
                    index: self.index,
                }))
            }
            Err(NoReply::Timeout) => Ok(None),
            Err(NoReply::Stopped) => Err(ClientError::Stopped),
        }
    }
}

impl std::fmt::Debug for Ticket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("sequence", &self.sequence)
            .field("taken", &self.taken)
            .finish()
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.taken {
            self.board.abandon(self.index);
        }
    }
}

/// One message's reply, read in place on the reply board; dropping it frees the slot.
pub struct Reply<'c> {
    board: &'c ReplyBoard,
    index: u32,
}

impl Reply<'_> {
    /// Header and payload.
    pub fn response(&self) -> Response<'_> {
        self.slot().response()
    }

    /// Sequence, routing, status, reason and response kind.
    pub fn header(&self) -> ResponseHeader {
        self.slot().header
    }

    /// Accepted, rejected or failed.
    pub fn status(&self) -> Status {
        self.slot().header.status
    }

    /// The response payload written by the processor.
    pub fn payload(&self) -> &[u8] {
        self.slot().response().payload
    }

    fn slot(&self) -> &ResponseSlot {
        // SAFETY: a `Reply` exists only for a released slot, and owns it until dropped.
        unsafe { self.board.response(self.index) }
    }
}

impl Drop for Reply<'_> {
    fn drop(&mut self) {
        self.board.release(self.index);
    }
}

impl std::fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("header", &self.header())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}
