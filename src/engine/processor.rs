//! The business logic's side of the engine: the `Processor` trait and its `Output`.

use super::message::Message;
use crate::codec::{self, CodecError};
use crate::snapshot::StateError;
use serde::Serialize;

/// What applying a message decided. Rejections are values, not errors: the processor leaves its
/// state unchanged and the sender gets the reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Accepted,
    /// Refused with an application reason code (a stable `#[repr(u32)]` number).
    Rejected(u32),
}

/// The application's business logic. Runs on exactly one thread and owns all state.
///
/// This is the byte-level interface, for zero-copy services. Most services implement the typed
/// [`Service`](crate::Service) instead (Rust types for commands, replies, rejections and
/// state) and run it as a processor through [`Typed`](crate::Typed).
///
/// Determinism rules: `apply` may depend only on the current state and the message (including
/// its `timestamp_ns`). No wall clock, randomness, I/O, or `HashMap` iteration order. The same
/// journal then always rebuilds the same state and the same outputs.
pub trait Processor: Send + 'static {
    /// Applies one journaled message. Writes the response payload, if any, into `out`.
    /// A panic here is caught: the sender gets a `Failed` response and the engine continues.
    /// (Catching needs `panic = "unwind"`; see `Config::abort_on_processor_panic`.)
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome;

    /// A stable digest of the whole state: equal states give equal hashes on every machine.
    fn state_hash(&self) -> u64;

    /// The schema version of the state `save_state` writes. Bump it when the state's shape
    /// changes, and teach `load_state` to upgrade the older versions.
    fn schema_version(&self) -> u32 {
        1
    }

    /// A short name of the service (at most 20 bytes, e.g. `bookstore`), recorded in every
    /// journal segment it writes together with [`Processor::schema_version`]. The engine
    /// refuses to start on a journal that names another service, and tools read the name to
    /// know how to decode the journal. Default: empty, an unnamed service (nothing recorded or
    /// checked).
    fn name(&self) -> &'static str {
        ""
    }

    /// Encodes the whole state for a snapshot (usually [`crate::snapshot::save_serde`]).
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Replaces the state with one written by `save_state` under `schema_version`, upgrading
    /// older schema versions. On error `self` must be left unchanged (decode into a new value,
    /// then assign), so the engine can fall back to an older snapshot or a full replay.
    fn load_state(&mut self, schema_version: u32, bytes: &[u8]) -> Result<(), StateError>;

    /// Makes the memory the state reserved for its limits resident now, so that no message
    /// later stops for a first-touch page fault. The engine calls it once, on the
    /// business-logic thread before the first message, when `Config::prefault_state` is set:
    /// after recovery (a loaded snapshot's state is what gets touched) and on the thread that
    /// will use the pages. Costs resident memory up to the limits. Default: nothing reserved.
    fn prefault(&mut self) {}
}

/// The response payload being written for one message, in a buffer allocated at start.
#[derive(Debug)]
pub struct Output<'a> {
    buf: &'a mut [u8],
    len: usize,
    kind: u16,
}

/// The response payload did not fit in `Config::max_response_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("response of {needed} bytes exceeds the {capacity}-byte limit")]
pub struct OutputFull {
    /// Bytes the write needed in total.
    pub needed: usize,
    /// The configured limit.
    pub capacity: usize,
}

impl<'a> Output<'a> {
    /// An empty output writing into `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Output {
            buf,
            len: 0,
            kind: 0,
        }
    }

    /// Appends raw bytes to the payload.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), OutputFull> {
        let end = self.len + bytes.len();
        if end > self.buf.len() {
            return Err(OutputFull {
                needed: end,
                capacity: self.buf.len(),
            });
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Appends `value` encoded with keel's codec. Does not allocate.
    pub fn encode<T: Serialize>(&mut self, value: &T) -> Result<(), CodecError> {
        let n = codec::encode_into(value, &mut self.buf[self.len..])?;
        self.len += n;
        Ok(())
    }

    /// Sets the application response kind.
    pub fn set_kind(&mut self, kind: u16) {
        self.kind = kind;
    }

    /// Discards everything written so far.
    pub fn clear(&mut self) {
        self.len = 0;
        self.kind = 0;
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The response kind set so far.
    pub fn kind(&self) -> u16 {
        self.kind
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Replaces the payload with as much of `text` as fits (used for panic reports).
    pub(crate) fn replace_with_text(&mut self, text: &str) {
        self.clear();
        let n = text.len().min(self.buf.len());
        self.buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        self.len = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_writes() {
        let mut buf = [0u8; 8];
        let mut out = Output::new(&mut buf);
        out.write(b"abcd").unwrap();
        out.encode(&7u32).unwrap();
        assert_eq!(out.len(), 8);
        assert_eq!(
            out.write(b"x"),
            Err(OutputFull {
                needed: 9,
                capacity: 8
            })
        );
        assert!(out.encode(&1u8).is_err());
        out.replace_with_text("panicked at something long");
        assert_eq!(out.as_bytes(), b"panicked");
    }
}
