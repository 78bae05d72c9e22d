//! The producer side of the engine: `Submitter` publishes messages into the input ring and
//! stamps each with the time (the only clock the business logic ever sees).

use super::message::{Envelope, NO_REPLY_SLOT};
use crate::codec::{self, CodecError};
use crate::journal::Record;
use crate::ring::{Gauge, Halted, MultiProducer, Producer, TryPublishError};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a message was not accepted for publishing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The payload is larger than `Config::max_message_bytes`.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// The ring is full right now (only from the `try_` methods).
    #[error("input ring full")]
    Full,
    /// The engine has stopped (after a fatal error); nothing more is accepted.
    #[error("engine stopped")]
    Stopped,
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] CodecError),
    /// [`Submitter::submit_record`]: the record's sequence is not the one the ring assigns
    /// next (a gap or a repeat in replicated input); nothing was published.
    #[error("record {sequence} is out of sequence: the next sequence is {expected}")]
    OutOfSequence {
        /// The record's sequence.
        sequence: u64,
        /// The sequence the ring assigns next.
        expected: u64,
    },
}

/// Routing and typing of one submitted message.
///
/// `Submission::default()` is valid as it stands: kind 0, **version 1** (every kind's
/// versions start at 1), session 0 (the embedding host), correlation 0. Set `kind` and
/// `correlation_id` with struct-update syntax: `Submission { kind, ..Submission::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submission {
    /// Application message kind.
    pub kind: u16,
    /// Version of the kind's encoding.
    pub version: u16,
    /// Sender session (0 for the embedding host).
    pub session_id: u64,
    /// Sender's correlation id, echoed in the response.
    pub correlation_id: u64,
}

/// The first version of every message kind.
const FIRST_VERSION: u16 = 1;

impl Default for Submission {
    fn default() -> Self {
        Submission {
            kind: 0,
            version: FIRST_VERSION,
            session_id: 0,
            correlation_id: 0,
        }
    }
}

/// Nanoseconds since the Unix epoch, from the wall clock.
#[inline]
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The input ring's producer end a [`Submitter`] publishes through.
pub(crate) enum Input {
    /// The ring's only producer (`Producers::Single`): a plain Release store per publish.
    Single(Producer<Envelope>),
    /// One handle of a multi-producer ring (`Producers::Multi`), and the last sequence it
    /// published.
    Multi(MultiProducer<Envelope>, u64),
}

impl Input {
    #[inline]
    fn publish_batch(
        &mut self,
        n: usize,
        fill: impl FnMut(&mut Envelope, u64),
    ) -> Result<u64, Halted> {
        match self {
            Input::Single(producer) => producer.publish_batch(n, fill),
            Input::Multi(producer, last) => {
                *last = producer.publish_batch(n, fill)?;
                Ok(*last)
            }
        }
    }

    #[inline]
    fn publish(&mut self, fill: impl FnOnce(&mut Envelope, u64)) -> Result<u64, Halted> {
        let mut fill = Some(fill);
        self.publish_batch(1, |slot, sequence| {
            (fill.take().expect("called once"))(slot, sequence)
        })
    }

    #[inline]
    fn try_publish(
        &mut self,
        fill: impl FnMut(&mut Envelope, u64),
    ) -> Result<u64, TryPublishError> {
        match self {
            Input::Single(producer) => producer.try_publish_batch(1, fill),
            Input::Multi(producer, last) => {
                *last = producer.try_publish_batch(1, fill)?;
                Ok(*last)
            }
        }
    }

    /// The sequence the next publish gets: exact with one producer; with several, as of now
    /// (another producer may claim it first), and it reads the ring's cursor through a gauge.
    fn next_sequence(&self) -> u64 {
        match self {
            Input::Single(producer) => producer.published() + 1,
            Input::Multi(producer, _) => producer.gauge().published() + 1,
        }
    }

    fn published(&self) -> u64 {
        match self {
            Input::Single(producer) => producer.published(),
            Input::Multi(_, last) => *last,
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Input::Single(producer) => producer.capacity(),
            Input::Multi(producer, _) => producer.capacity(),
        }
    }

    pub(crate) fn gauge(&self) -> Gauge {
        match self {
            Input::Single(producer) => producer.gauge(),
            Input::Multi(producer, _) => producer.gauge(),
        }
    }

    #[inline]
    fn is_halted(&self) -> bool {
        match self {
            Input::Single(producer) => producer.is_halted(),
            Input::Multi(producer, _) => producer.is_halted() || producer.is_closed(),
        }
    }
}

/// The engine's own producer of the input ring. With `Producers::Single` it is the only one,
/// and dropping it closes the ring, which lets the engine drain and stop. With
/// `Producers::Multi` it is one producer among the clients: its messages get no reply (use a
/// [`Client`](super::Client) for replies), and the engine closes the ring at shutdown.
pub struct Submitter {
    producer: Input,
    max_message_bytes: usize,
    scratch: Box<[u8]>,
    /// The engine's restart epoch (0 when it has none), for the session ids a server hands out.
    session_epoch: u64,
    /// The engine's metrics, for a server that takes this submitter (it adds its own).
    #[cfg_attr(not(feature = "net"), allow(dead_code))]
    metrics: Option<super::Metrics>,
}

impl Submitter {
    pub(crate) fn new(producer: Input, max_message_bytes: usize) -> Self {
        Submitter {
            producer,
            max_message_bytes,
            scratch: vec![0; max_message_bytes].into(),
            session_epoch: 0,
            metrics: None,
        }
    }

    /// Sets the restart epoch session ids are derived from.
    pub(crate) fn set_session_epoch(&mut self, epoch: u64) {
        self.session_epoch = epoch;
    }

    /// The restart epoch, advanced durably each time an engine opens its journal
    /// (0 for an engine over another journal sink).
    #[cfg(feature = "net")]
    pub(crate) fn session_epoch(&self) -> u64 {
        self.session_epoch
    }

    /// The same, carrying the engine's metrics.
    pub(crate) fn with_metrics(self, metrics: super::Metrics) -> Self {
        Submitter {
            metrics: Some(metrics),
            ..self
        }
    }

    /// The engine's metrics (`None` for a submitter not made by an engine).
    #[cfg(feature = "net")]
    pub(crate) fn metrics(&self) -> Option<&super::Metrics> {
        self.metrics.as_ref()
    }

    /// Publishes one message, waiting while the ring is full (back-pressure). Returns its
    /// sequence number, or `Stopped` as soon as the engine has halted (room or not).
    #[inline]
    pub fn submit(&mut self, to: Submission, payload: &[u8]) -> Result<u64, SubmitError> {
        self.check(payload.len())?;
        self.check_running()?;
        let timestamp_ns = now_ns();
        self.producer
            .publish(|slot, sequence| {
                fill(slot, sequence, timestamp_ns, to, payload, NO_REPLY_SLOT)
            })
            .map_err(|_| SubmitError::Stopped)
    }

    /// Publishes one message only if the ring has room now.
    #[inline]
    pub fn try_submit(&mut self, to: Submission, payload: &[u8]) -> Result<u64, SubmitError> {
        self.check(payload.len())?;
        let timestamp_ns = now_ns();
        self.producer
            .try_publish(|slot, sequence| {
                fill(slot, sequence, timestamp_ns, to, payload, NO_REPLY_SLOT)
            })
            .map_err(|e| match e {
                TryPublishError::Full => SubmitError::Full,
                TryPublishError::Halted => SubmitError::Stopped,
            })
    }

    /// Encodes `value` with keel's codec (no allocation) and submits it.
    pub fn submit_encoded<T: Serialize>(
        &mut self,
        to: Submission,
        value: &T,
    ) -> Result<u64, SubmitError> {
        let max = self.max_message_bytes;
        let len = codec::encode_into(value, &mut self.scratch).map_err(|e| match e {
            CodecError::Encode(_) => SubmitError::TooLarge { len: max + 1, max },
            other => SubmitError::Encode(other),
        })?;
        self.check_running()?;
        let (payload, timestamp_ns) = (&self.scratch[..len], now_ns());
        self.producer
            .publish(|slot, sequence| {
                fill(slot, sequence, timestamp_ns, to, payload, NO_REPLY_SLOT)
            })
            .map_err(|_| SubmitError::Stopped)
    }

    /// Publishes all `messages` with a single ring publish (one Release store) and one
    /// timestamp, waiting for room. Every payload is checked first: all or nothing.
    /// Returns the last sequence.
    pub fn submit_batch(&mut self, messages: &[(Submission, &[u8])]) -> Result<u64, SubmitError> {
        if let Some((_, p)) = messages
            .iter()
            .find(|(_, p)| p.len() > self.max_message_bytes)
        {
            return Err(SubmitError::TooLarge {
                len: p.len(),
                max: self.max_message_bytes,
            });
        }
        self.check_running()?;
        let timestamp_ns = now_ns();
        let mut last = self.producer.published();
        for chunk in messages.chunks(self.producer.capacity()) {
            let mut next = chunk.iter();
            last = self
                .producer
                .publish_batch(chunk.len(), |slot, sequence| {
                    let (to, payload) = next.next().expect("one message per slot");
                    fill(slot, sequence, timestamp_ns, *to, payload, NO_REPLY_SLOT);
                })
                .map_err(|_| SubmitError::Stopped)?;
        }
        Ok(last)
    }

    /// Publishes a record received from a replication leader, keeping its `timestamp_ns`,
    /// `session_id`, `correlation_id`, `kind`, `version` and payload, so this engine journals
    /// it byte for byte as the leader did (same CRC, same chain) and applies it the same way.
    /// Control kinds (from [`CONTROL_KIND_MIN`](super::CONTROL_KIND_MIN)) pass through like
    /// any other. Waits for room like [`Submitter::submit`]. Refuses with
    /// [`SubmitError::OutOfSequence`] unless `record.sequence` is the sequence the ring
    /// assigns next (with `Producers::Multi` that check holds only while no [`Client`]
    /// submits). The message gets no reply of its own with `Producers::Multi`.
    ///
    /// [`Client`]: super::Client
    pub fn submit_record(&mut self, record: &Record<'_>) -> Result<u64, SubmitError> {
        self.check(record.payload.len())?;
        self.check_running()?;
        let expected = self.producer.next_sequence();
        if record.sequence != expected {
            return Err(SubmitError::OutOfSequence {
                sequence: record.sequence,
                expected,
            });
        }
        let to = Submission {
            kind: record.kind,
            version: record.version,
            session_id: record.session_id,
            correlation_id: record.correlation_id,
        };
        let (payload, timestamp_ns) = (record.payload, record.timestamp_ns);
        self.producer
            .publish(|slot, sequence| {
                debug_assert_eq!(sequence, expected);
                fill(slot, sequence, timestamp_ns, to, payload, NO_REPLY_SLOT)
            })
            .map_err(|_| SubmitError::Stopped)
    }

    /// Publishes a control message asking the business logic to snapshot right after it.
    pub fn request_snapshot(&mut self) -> Result<u64, SubmitError> {
        let to = Submission {
            kind: super::message::CONTROL_SNAPSHOT,
            ..Submission::default()
        };
        self.submit(to, &[])
    }

    /// Last published sequence.
    pub fn published(&self) -> u64 {
        self.producer.published()
    }

    /// Fill level and positions of the input ring.
    pub fn gauge(&self) -> Gauge {
        self.producer.gauge()
    }

    /// Largest payload accepted.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// `Stopped` once the ring is halted (a journal failure or another fatal error), even
    /// while it still has room: nothing published after the halt would be journaled or
    /// answered (or closed, with several producers). One Acquire load, no allocation.
    #[inline]
    fn check_running(&self) -> Result<(), SubmitError> {
        if self.producer.is_halted() {
            return Err(SubmitError::Stopped);
        }
        Ok(())
    }

    #[inline]
    fn check(&self, len: usize) -> Result<(), SubmitError> {
        if len > self.max_message_bytes {
            return Err(SubmitError::TooLarge {
                len,
                max: self.max_message_bytes,
            });
        }
        Ok(())
    }
}

/// Writes one message into its input-ring slot; `reply_slot` routes its reply (a client's
/// reply-board slot, or [`NO_REPLY_SLOT`]).
#[inline]
pub(crate) fn fill(
    slot: &mut Envelope,
    sequence: u64,
    timestamp_ns: u64,
    to: Submission,
    payload: &[u8],
    reply_slot: u32,
) {
    slot.header.sequence = sequence;
    slot.header.timestamp_ns = timestamp_ns;
    slot.header.session_id = to.session_id;
    slot.header.correlation_id = to.correlation_id;
    slot.header.kind = to.kind;
    slot.header.version = to.version;
    slot.payload[..payload.len()].copy_from_slice(payload);
    slot.len = payload.len() as u32;
    slot.reply_slot = reply_slot;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_submission_has_a_valid_version() {
        let to = Submission::default();
        assert_eq!(to.version, 1, "every kind's versions start at 1");
        assert_eq!((to.kind, to.session_id, to.correlation_id), (0, 0, 0));
    }
}
