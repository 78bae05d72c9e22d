//! The session table: a fixed number of slots allocated at start, each with its own receive and
//! send buffers. A session id is `epoch << 48 | serial << slot_bits | slot` ([`SessionIds`]):
//! the serial counts the sessions this run opened, so when a slot is reused its id changes
//! and a response addressed to the slot's previous session is recognised and dropped; the
//! engine's restart epoch (advanced durably each time it opens the journal) keeps the ids of
//! one run apart from every earlier run's, so the journal never holds one id for two sessions.

use super::config::Limits;
use super::frame::{self, ErrorCode};
use crate::engine::CLIENT_SESSION_FLAG;
use mio::net::TcpStream;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// A byte buffer of fixed capacity used as a queue: bytes are appended at `end` and consumed
/// from `start`; the live bytes are moved to the front only when the tail runs out of room.
#[derive(Debug)]
pub(crate) struct ByteBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ByteBuf {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        ByteBuf {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The bytes not consumed yet.
    #[inline]
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` pending bytes as consumed.
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Free space after the pending bytes, moving them to the front first if the tail is
    /// smaller than `want`.
    #[inline]
    pub(crate) fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.buf.len() - self.end < want && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes written into [`ByteBuf::spare`] as pending.
    #[inline]
    pub(crate) fn commit(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.buf.len());
        self.end += n;
    }

    /// Appends an encoded frame of at most `max_bytes` if the pending bytes stay within
    /// `limit`. Returns whether it was appended.
    #[inline]
    pub(crate) fn append(
        &mut self,
        limit: usize,
        max_bytes: usize,
        encode: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let room = limit.saturating_sub(self.len());
        let spare = self.spare(max_bytes.min(room));
        let window = spare.len().min(room);
        match encode(&mut spare[..window]) {
            Some(n) => {
                self.commit(n);
                true
            }
            None => false,
        }
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The slot is unused.
    Free,
    /// Connected, waiting for `HELLO`.
    Handshake,
    /// Handshaken: requests flow.
    Open,
    /// A fatal error was queued: flushing it, reading nothing more, then closing.
    Closing,
}

/// Everything about one connection except its receive buffer (kept apart so a frame borrowed
/// from the receive buffer can be handled while the rest of the session is changed).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Option<TcpStream>,
    pub(crate) id: u64,
    /// The exactly-once client id it declared (0: none): its requests are journaled under
    /// `CLIENT_SESSION_FLAG | client`, and their responses come back to whichever connection
    /// holds the client id then.
    pub(crate) client: u64,
    pub(crate) phase: Phase,
    pub(crate) output: ByteBuf,
    pub(crate) opened_at: Instant,
    pub(crate) last_activity: Instant,
    /// When the incomplete frame at the end of the receive buffer started arriving.
    pub(crate) partial_since: Option<Instant>,
    pub(crate) close_deadline: Instant,
    pub(crate) write_shut: bool,
    /// The peer ended its side (seen while closing).
    pub(crate) peer_closed: bool,
    /// In the ready queue (may have input to process).
    pub(crate) queued: bool,
    /// In the flush list (may have output to write).
    pub(crate) dirty: bool,
}

impl Conn {
    /// The session id its requests are journaled under.
    #[inline]
    pub(crate) fn journal_id(&self) -> u64 {
        if self.client != 0 {
            CLIENT_SESSION_FLAG | self.client
        } else {
            self.id
        }
    }

    /// Queues an `ERROR` frame; `false` if it does not fit the output limit (fatal errors
    /// use the reserve beyond it).
    pub(crate) fn push_error(
        &mut self,
        limits: &Limits,
        code: ErrorCode,
        correlation: u64,
        text: &str,
    ) -> bool {
        let limit = if code.is_fatal() {
            limits.output_capacity_bytes()
        } else {
            limits.output_limit_bytes
        };
        self.output
            .append(limit, frame::MAX_ERROR_FRAME_BYTES, |b| {
                frame::encode_error(b, code, correlation, text)
            })
    }
}

/// One slot of the session table.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) input: ByteBuf,
    pub(crate) conn: Conn,
}

/// Where this run's session ids come from: `epoch << 48 | serial << slot_bits | slot`, with
/// `slot_bits` just enough for `max_connections` and the serial counting from 1 (so no id is 0,
/// the embedding host's), wrapping after `2^(48 - slot_bits) - 1` sessions within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionIds {
    base: u64,
    slot_bits: u32,
    serial: u64,
    max_serial: u64,
}

/// Bits above which a session id holds the restart epoch (its low 15 bits; bit 63 is never
/// set in a connection's id).
const EPOCH_SHIFT: u32 = 48;

impl SessionIds {
    /// The ids of a run with restart `epoch` and `slots` session slots (at most 2^20).
    pub(crate) fn new(epoch: u64, slots: usize) -> Self {
        let slot_bits = u64::BITS - (slots.max(1) as u64 - 1).leading_zeros();
        debug_assert!(slot_bits <= 20);
        SessionIds {
            // 15 bits: bit 63 marks an exactly-once client's id (`CLIENT_SESSION_FLAG`).
            base: (epoch & 0x7FFF) << EPOCH_SHIFT,
            slot_bits,
            serial: 0,
            max_serial: (1 << (EPOCH_SHIFT - slot_bits)) - 1,
        }
    }

    /// The id of the next session, opened in `slot`.
    pub(crate) fn next(&mut self, slot: u32) -> u64 {
        self.serial = if self.serial >= self.max_serial {
            1
        } else {
            self.serial + 1
        };
        self.base | (self.serial << self.slot_bits) | u64::from(slot)
    }

    /// The slot session `id` was opened in.
    pub(crate) fn slot_of(&self, id: u64) -> usize {
        (id & ((1 << self.slot_bits) - 1)) as usize
    }
}

/// All session slots, the free list, the ready queue (sessions that may have input to read or
/// process) and the flush list (sessions with output to write). All allocated at start.
#[derive(Debug)]
pub(crate) struct Sessions {
    pub(crate) slots: Vec<Session>,
    free: Vec<u32>,
    pub(crate) ready: VecDeque<u32>,
    pub(crate) dirty: Vec<u32>,
    ids: SessionIds,
    /// Exactly-once client id → the slot of the connection that holds it (capacity reserved
    /// at start: twice the slots, so inserting never allocates).
    clients: HashMap<u64, u32>,
}

impl Sessions {
    /// The table for `limits`, handing out ids of restart epoch `epoch`.
    pub(crate) fn new(limits: &Limits, now: Instant, epoch: u64) -> Self {
        let n = limits.max_connections;
        let slots = (0..n)
            .map(|_| Session {
                input: ByteBuf::with_capacity(limits.read_buffer_bytes),
                conn: Conn {
                    stream: None,
                    id: 0,
                    client: 0,
                    phase: Phase::Free,
                    output: ByteBuf::with_capacity(limits.output_capacity_bytes()),
                    opened_at: now,
                    last_activity: now,
                    partial_since: None,
                    close_deadline: now,
                    write_shut: false,
                    peer_closed: false,
                    queued: false,
                    dirty: false,
                },
            })
            .collect();
        Sessions {
            slots,
            free: (0..n as u32).rev().collect(),
            ready: VecDeque::with_capacity(n),
            dirty: Vec::with_capacity(n),
            ids: SessionIds::new(epoch, n),
            clients: HashMap::with_capacity(2 * n),
        }
    }

    /// Sessions in use.
    pub(crate) fn active(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes a free slot for `stream`; `None` (and the stream back) when all are in use.
    pub(crate) fn open(&mut self, stream: TcpStream, now: Instant) -> Result<u32, TcpStream> {
        let Some(slot) = self.free.pop() else {
            return Err(stream);
        };
        let id = self.ids.next(slot);
        let session = &mut self.slots[slot as usize];
        debug_assert_eq!(session.conn.phase, Phase::Free);
        let c = &mut session.conn;
        c.id = id;
        c.client = 0;
        c.stream = Some(stream);
        c.phase = Phase::Handshake;
        (c.opened_at, c.last_activity, c.partial_since) = (now, now, None);
        (c.write_shut, c.peer_closed) = (false, false);
        session.input.clear();
        c.output.clear();
        Ok(slot)
    }

    /// Frees `slot`, returning its stream to be closed. Its queue flags stay as they are: stale
    /// queue entries are skipped (or serve the slot's next session, harmlessly).
    pub(crate) fn release(&mut self, slot: u32) -> Option<TcpStream> {
        let c = &mut self.slots[slot as usize].conn;
        if c.phase == Phase::Free {
            return None;
        }
        c.phase = Phase::Free;
        c.id = 0;
        if c.client != 0 && self.clients.get(&c.client) == Some(&slot) {
            self.clients.remove(&c.client);
        }
        c.client = 0;
        self.free.push(slot);
        c.stream.take()
    }

    /// The slot of the open session `id` (a connection's id, or an exactly-once client's
    /// journaled one), if it still exists.
    #[inline]
    pub(crate) fn lookup_open(&self, id: u64) -> Option<usize> {
        if id & CLIENT_SESSION_FLAG != 0 {
            let slot = *self.clients.get(&(id & !CLIENT_SESSION_FLAG))? as usize;
            let c = &self.slots[slot].conn;
            return (c.phase == Phase::Open).then_some(slot);
        }
        let slot = self.ids.slot_of(id);
        let c = &self.slots.get(slot)?.conn;
        (c.id == id && c.phase == Phase::Open).then_some(slot)
    }

    /// `slot`, just handshaken with client id `client`, now holds it; a connection that held
    /// it before is closed with `REPLACED` (its client reconnected).
    pub(crate) fn claim(&mut self, slot: u32, client: u64, limits: &Limits, now: Instant) {
        let Some(old) = self.clients.insert(client, slot) else {
            return;
        };
        if old != slot {
            let text = "the same client id connected again; this connection is replaced";
            self.close_with(old, limits, ErrorCode::REPLACED, text, now);
        }
    }

    /// Puts `slot` on the ready queue unless it is there.
    #[inline]
    pub(crate) fn mark_ready(&mut self, slot: u32) {
        let c = &mut self.slots[slot as usize].conn;
        if !c.queued {
            c.queued = true;
            self.ready.push_back(slot);
        }
    }

    /// Puts `slot` on the flush list unless it is there.
    #[inline]
    pub(crate) fn mark_dirty(&mut self, slot: u32) {
        let c = &mut self.slots[slot as usize].conn;
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Queues a fatal `ERROR` for `slot` and starts closing it: nothing more is read or routed
    /// to it; the error is flushed, the write side shut, then the slot freed.
    pub(crate) fn close_with(
        &mut self,
        slot: u32,
        limits: &Limits,
        code: ErrorCode,
        text: &str,
        now: Instant,
    ) {
        debug_assert!(code.is_fatal());
        let c = &mut self.slots[slot as usize].conn;
        if matches!(c.phase, Phase::Free | Phase::Closing) {
            return;
        }
        c.push_error(limits, code, 0, text);
        c.phase = Phase::Closing;
        c.close_deadline = now + limits.close_linger;
        self.mark_dirty(slot);
    }

    /// Like [`Sessions::close_with`], but queues `bytes` as they are instead of an `ERROR`
    /// frame: the plain-text notice for a client that speaks another protocol.
    pub(crate) fn close_with_bytes(
        &mut self,
        slot: u32,
        limits: &Limits,
        bytes: &[u8],
        now: Instant,
    ) {
        let c = &mut self.slots[slot as usize].conn;
        if matches!(c.phase, Phase::Free | Phase::Closing) {
            return;
        }
        c.output
            .append(limits.output_capacity_bytes(), bytes.len(), |b| {
                b.get_mut(..bytes.len())?.copy_from_slice(bytes);
                Some(bytes.len())
            });
        c.phase = Phase::Closing;
        c.close_deadline = now + limits.close_linger;
        self.mark_dirty(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_buf_queues_and_compacts() {
        let mut b = ByteBuf::with_capacity(8);
        b.spare(8)[..6].copy_from_slice(b"abcdef");
        b.commit(6);
        b.consume(4);
        assert_eq!(b.pending(), b"ef");
        // 2 bytes of tail left; asking for 5 moves "ef" to the front.
        assert_eq!(b.spare(5).len(), 6);
        assert!(b.append(8, 8, |w| {
            w[..3].copy_from_slice(b"ghi");
            Some(3)
        }));
        assert_eq!(b.pending(), b"efghi");
        // The limit counts pending bytes: 5 + 4 > 8.
        assert!(!b.append(8, 4, |w| (w.len() >= 4).then_some(4)));
        b.consume(5);
        assert!(b.is_empty());
    }

    #[test]
    fn session_ids_name_their_slot_and_differ_across_epochs() {
        let mut ids = SessionIds::new(5, 256);
        let first = ids.next(7);
        let second = ids.next(7);
        assert_ne!(first, second);
        assert_eq!((ids.slot_of(first), ids.slot_of(second)), (7, 7));
        assert_eq!(first >> EPOCH_SHIFT, 5);
        let mut next_run = SessionIds::new(6, 256);
        assert_ne!(next_run.next(7), first);
        let mut one = SessionIds::new(0, 1);
        assert_ne!(one.next(0), 0);
        assert_eq!(SessionIds::new(1, 1 << 20).slot_bits, 20);
    }

    #[test]
    fn the_serial_wraps_to_one_not_zero() {
        let mut ids = SessionIds::new(0, 1 << 20);
        ids.serial = ids.max_serial;
        assert_eq!(ids.next(0), 1 << 20);
    }
}
