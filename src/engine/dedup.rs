//! Exactly-once: the deduplication table of the business-logic thread (docs/engine.md,
//! "Exactly once").
//!
//! A message whose `session_id` has [`CLIENT_SESSION_FLAG`] set comes from an exactly-once
//! client: the low 63 bits are the client's id, `correlation_id` its request id, strictly
//! increasing per client from 1. For each client the table keeps the highest request id applied
//! and its last `window` replies (status, reason, kind, sequence, and the payload when it fits
//! `reply_bytes`). A request id at or below the highest is never applied again: it is answered
//! with the reply it got, or, when that reply is no longer held, refused with
//! [`Status::AlreadyAnswered`].
//!
//! The table changes only in [`apply_once`], in journal order, so live apply, recovery and the
//! snapshot replica build the same table from the same journal; it is saved in every snapshot
//! (format 3) next to the processor's state. Everything is allocated once, in
//! [`DedupTable::new`]: a full table evicts its least recently active client (the one whose
//! last message has the lowest sequence), tracked by an intrusive list, so nothing depends on
//! hashing order or the clock.

use super::logic::{apply_message, Applied};
use super::message::{Message, Status, CONTROL_KIND_MIN};
use super::processor::Processor;

/// The bit of a journaled `session_id` that marks an exactly-once client; the other 63 bits
/// are its client id. Session ids the network server hands out per connection never set it.
pub(crate) const CLIENT_SESSION_FLAG: u64 = 1 << 63;

/// No entry (index slots, list links).
const NONE: u32 = u32::MAX;
/// `Reply::len` of a reply whose payload did not fit `reply_bytes`: its outcome is known, its
/// bytes are not.
const NOT_HELD: u32 = u32::MAX;

/// The limits of a table, set once at start (`Config::dedup_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DedupLimits {
    /// Clients tracked at once (0: exactly-once off, every message applied).
    pub(crate) clients: usize,
    /// Replies kept per client.
    pub(crate) window: usize,
    /// Largest reply payload kept.
    pub(crate) reply_bytes: usize,
}

/// One remembered reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reply {
    request_id: u64,
    sequence: u64,
    status: u8,
    kind: u16,
    reason: u32,
    len: u32,
}

/// One tracked client: its progress, its window (a ring of `window` replies) and its place in
/// the recency list.
#[derive(Debug, Clone, Copy)]
struct Entry {
    client_id: u64,
    highest: u64,
    last_active: u64,
    /// Ring position of the next reply, and replies held.
    head: u32,
    count: u32,
    /// Recency list: towards the most recent (`newer`) and the least recent (`older`).
    newer: u32,
    older: u32,
}

const EMPTY_ENTRY: Entry = Entry {
    client_id: 0,
    highest: 0,
    last_active: 0,
    head: 0,
    count: 0,
    newer: NONE,
    older: NONE,
};

/// What the table says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not seen: apply it (the client's entry is `usize`).
    Fresh(usize),
    /// Applied before; its reply is at this reply index.
    Replay(usize),
    /// Applied before; its reply is no longer held.
    Answered,
}

/// The deduplication table (see the module documentation).
#[derive(Debug)]
pub(crate) struct DedupTable {
    limits: DedupLimits,
    entries: Vec<Entry>,
    replies: Vec<Reply>,
    payloads: Box<[u8]>,
    /// Open addressing, linear probing: entry numbers, `NONE` when empty.
    index: Vec<u32>,
    /// `64 - log2(index.len())`: the hash's top bits pick the home slot.
    shift: u32,
    used: u32,
    most_recent: u32,
    least_recent: u32,
}

/// The answer of [`apply_once`]: how the message went, and the sequence the reply names (the
/// original message's for a replayed reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) applied: Applied,
    pub(crate) sequence: u64,
}

/// Applies `message` at most once per (client, request id): through [`apply_message`] when it
/// is new (or not from an exactly-once client), else answered from `table` into `buf`.
#[inline]
pub(crate) fn apply_once<P: Processor>(
    processor: &mut P,
    table: &mut DedupTable,
    message: &Message<'_>,
    buf: &mut [u8],
) -> Answer {
    let h = &message.header;
    let own = Answer {
        applied: NOT_APPLIED,
        sequence: h.sequence,
    };
    if h.session_id & CLIENT_SESSION_FLAG == 0 || h.kind >= CONTROL_KIND_MIN || table.is_off() {
        let applied = apply_message(processor, message, buf);
        return Answer { applied, ..own };
    }
    let client_id = h.session_id & !CLIENT_SESSION_FLAG;
    match table.check(client_id, h.correlation_id, h.sequence) {
        Verdict::Fresh(entry) => {
            let applied = apply_message(processor, message, buf);
            table.record(entry, h.correlation_id, h.sequence, &applied, buf);
            Answer { applied, ..own }
        }
        Verdict::Replay(at) => table.replay(at, buf),
        Verdict::Answered => Answer {
            applied: Applied {
                status: Status::AlreadyAnswered,
                ..NOT_APPLIED
            },
            ..own
        },
    }
}

/// The engine's exactly-once table, for code that applies journaled messages outside an
/// engine, such as `keel replay`: the same table, changed by the same code in the same journal
/// order, so a journal with resent requests rebuilds the state the engine had (docs/engine.md,
/// "Exactly once").
///
/// Start it empty for a replay from the first message, or [`ExactlyOnce::restore`] it from the
/// snapshot the replay starts from, then feed it every journaled message in order through
/// [`ExactlyOnce::apply`]. Its limits should be the ones the journal was served with: other
/// limits give the same result until a client is evicted or a reply leaves its window.
#[derive(Debug)]
pub struct ExactlyOnce {
    table: DedupTable,
}

impl ExactlyOnce {
    /// An empty table with `config`'s limits (`dedup_clients`, `dedup_window`,
    /// `dedup_reply_bytes`; `dedup_clients` 0 turns it off), every byte allocated now. Errors
    /// when a limit is outside the range [`Config::validate`] accepts.
    ///
    /// [`Config::validate`]: super::Config::validate
    pub fn new(config: &super::Config) -> Result<Self, crate::error::ConfigError> {
        config.validate_dedup()?;
        Ok(ExactlyOnce {
            table: DedupTable::new(config.dedup_limits()),
        })
    }

    /// Replaces the table with the one `snapshot` carries, as recovery does: empty for a
    /// snapshot from before format 3 or one taken with nothing tracked; fitted to this table's
    /// limits when taken under others (the most recently active clients and newest replies
    /// kept). A section that does not decode is [`SnapshotError::Corrupted`] and leaves the
    /// table empty.
    ///
    /// [`SnapshotError::Corrupted`]: crate::snapshot::SnapshotError::Corrupted
    pub fn restore(
        &mut self,
        snapshot: &crate::snapshot::LoadedSnapshot,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        self.table.decode(snapshot.dedup()).map_err(|reason| {
            crate::snapshot::SnapshotError::Corrupted {
                path: snapshot.path.clone(),
                reason,
            }
        })
    }

    /// Applies `message` at most once per (client, request id), exactly as the engine's
    /// business logic does: a message not from an exactly-once client, a control message or a
    /// new request goes through [`apply_message`]; a resent one is answered from the table
    /// into `buf` without reaching `processor`. Returns what happened and the sequence the
    /// reply names: the message's own, or for a resent request the original's (its
    /// [`Applied`] then repeats the original reply, or is [`Status::AlreadyAnswered`] when that
    /// reply is no longer held).
    #[inline]
    pub fn apply<P: Processor>(
        &mut self,
        processor: &mut P,
        message: &Message<'_>,
        buf: &mut [u8],
    ) -> (Applied, u64) {
        let answer = apply_once(processor, &mut self.table, message, buf);
        (answer.applied, answer.sequence)
    }
}

const NOT_APPLIED: Applied = Applied {
    status: Status::Accepted,
    reason: 0,
    kind: 0,
    len: 0,
};

fn status_of(byte: u8) -> Option<Status> {
    match byte {
        0 => Some(Status::Accepted),
        1 => Some(Status::Rejected),
        2 => Some(Status::Failed),
        _ => None,
    }
}

impl DedupTable {
    /// A table of `limits`, every byte allocated now.
    pub(crate) fn new(limits: DedupLimits) -> Self {
        let window = limits.window.max(1);
        let limits = DedupLimits { window, ..limits };
        let index_slots = if limits.clients == 0 {
            0
        } else {
            (2 * limits.clients).next_power_of_two()
        };
        DedupTable {
            limits,
            entries: vec![EMPTY_ENTRY; limits.clients],
            replies: vec![Reply::default(); limits.clients * window],
            payloads: vec![0; limits.clients * window * limits.reply_bytes].into(),
            index: vec![NONE; index_slots],
            shift: 64 - index_slots.max(1).trailing_zeros(),
            used: 0,
            most_recent: NONE,
            least_recent: NONE,
        }
    }

    #[inline]
    fn is_off(&self) -> bool {
        self.limits.clients == 0
    }

    /// Clients tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.used as usize
    }

    #[inline]
    fn home(&self, client_id: u64) -> usize {
        let mixed = client_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> self.shift) as usize
    }

    /// The index slot holding `client_id`, or the empty slot where it would go.
    #[inline]
    fn probe(&self, client_id: u64) -> (usize, bool) {
        let mask = self.index.len() - 1;
        let mut at = self.home(client_id);
        loop {
            match self.index[at] {
                NONE => return (at, false),
                e if self.entries[e as usize].client_id == client_id => return (at, true),
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// Removes index slot `at` (backward-shift deletion: no tombstones).
    fn unindex(&mut self, mut at: usize) {
        let mask = self.index.len() - 1;
        self.index[at] = NONE;
        let mut next = (at + 1) & mask;
        while self.index[next] != NONE {
            let e = self.index[next];
            let home = self.home(self.entries[e as usize].client_id);
            // Move `e` back into the hole unless its home lies cyclically in (at, next].
            let stays = if at <= next {
                at < home && home <= next
            } else {
                at < home || home <= next
            };
            if !stays {
                self.index[at] = e;
                self.index[next] = NONE;
                at = next;
            }
            next = (next + 1) & mask;
        }
    }

    fn unlink(&mut self, e: u32) {
        let Entry { newer, older, .. } = self.entries[e as usize];
        match newer {
            NONE => self.most_recent = older,
            n => self.entries[n as usize].older = older,
        }
        match older {
            NONE => self.least_recent = newer,
            o => self.entries[o as usize].newer = newer,
        }
    }

    fn link_most_recent(&mut self, e: u32) {
        let entry = &mut self.entries[e as usize];
        (entry.newer, entry.older) = (NONE, self.most_recent);
        match self.most_recent {
            NONE => self.least_recent = e,
            m => self.entries[m as usize].newer = e,
        }
        self.most_recent = e;
    }

    /// The entry of `client_id`, made the most recently active at `sequence`; a new one
    /// (evicting the least recently active client when full) if it is not tracked.
    fn touch(&mut self, client_id: u64, sequence: u64) -> usize {
        let recent = self.most_recent;
        if recent != NONE && self.entries[recent as usize].client_id == client_id {
            // The same client again (a pipeline): already first in the recency list.
            self.entries[recent as usize].last_active = sequence;
            return recent as usize;
        }
        let (at, found) = self.probe(client_id);
        let e = if found {
            let e = self.index[at];
            self.unlink(e);
            e
        } else {
            self.admit(client_id, at)
        };
        self.entries[e as usize].last_active = sequence;
        self.link_most_recent(e);
        e as usize
    }

    /// A fresh entry for `client_id`, whose empty index slot is `at`.
    fn admit(&mut self, client_id: u64, at: usize) -> u32 {
        let e = if (self.used as usize) < self.entries.len() {
            self.used += 1;
            self.index[at] = self.used - 1;
            return self.reset(self.used - 1, client_id);
        } else {
            self.least_recent
        };
        self.unlink(e);
        let (old_at, _) = self.probe(self.entries[e as usize].client_id);
        self.unindex(old_at);
        let (at, _) = self.probe(client_id);
        self.index[at] = e;
        self.reset(e, client_id)
    }

    fn reset(&mut self, e: u32, client_id: u64) -> u32 {
        self.entries[e as usize] = Entry {
            client_id,
            ..EMPTY_ENTRY
        };
        e
    }

    /// What to do with request `request_id` of `client_id`, the message at `sequence`.
    fn check(&mut self, client_id: u64, request_id: u64, sequence: u64) -> Verdict {
        let e = self.touch(client_id, sequence);
        let entry = self.entries[e];
        if request_id > entry.highest {
            return Verdict::Fresh(e);
        }
        let window = self.limits.window;
        (0..entry.count as usize)
            .map(|back| e * window + (entry.head as usize + window - 1 - back) % window)
            .find(|&at| self.replies[at].request_id == request_id)
            .filter(|&at| self.replies[at].len != NOT_HELD)
            .map_or(Verdict::Answered, Verdict::Replay)
    }

    /// Remembers the reply to the request just applied for entry `e`.
    fn record(&mut self, e: usize, request_id: u64, sequence: u64, applied: &Applied, buf: &[u8]) {
        let window = self.limits.window;
        let entry = &mut self.entries[e];
        let at = e * window + entry.head as usize;
        entry.highest = request_id;
        entry.head = if entry.head as usize + 1 == window {
            0
        } else {
            entry.head + 1
        };
        entry.count = (entry.count + 1).min(window as u32);
        let held = applied.len <= self.limits.reply_bytes;
        self.replies[at] = Reply {
            request_id,
            sequence,
            status: applied.status as u8,
            kind: applied.kind,
            reason: applied.reason,
            len: if held { applied.len as u32 } else { NOT_HELD },
        };
        if held {
            let start = at * self.limits.reply_bytes;
            self.payloads[start..start + applied.len].copy_from_slice(&buf[..applied.len]);
        }
    }

    /// The remembered reply at `at`, its payload copied into `buf`.
    fn replay(&self, at: usize, buf: &mut [u8]) -> Answer {
        let reply = self.replies[at];
        let len = (reply.len as usize).min(buf.len());
        let start = at * self.limits.reply_bytes;
        buf[..len].copy_from_slice(&self.payloads[start..start + len]);
        Answer {
            applied: Applied {
                status: status_of(reply.status).unwrap_or(Status::Failed),
                reason: reply.reason,
                kind: reply.kind,
                len,
            },
            sequence: reply.sequence,
        }
    }
}

// ---- the snapshot section (docs/SNAPSHOTS.md, "The exactly-once section") ----

/// Bytes of the section's fixed start: window u32, clients u32.
const SECTION_HEADER_BYTES: usize = 8;
/// Bytes of one client before its replies: client_id, highest, last_active u64, replies u32.
const CLIENT_BYTES: usize = 28;
/// Bytes of one reply before its payload: request_id, sequence u64, status u8, held u8,
/// kind u16, reason u32, payload_len u32.
const REPLY_BYTES: usize = 28;
/// The CRC32C that ends the section.
const CRC_BYTES: usize = 4;
const _: () = assert!(SECTION_HEADER_BYTES == 4 + 4 && CRC_BYTES == 4);
const _: () = assert!(CLIENT_BYTES == 8 + 8 + 8 + 4 && REPLY_BYTES == 8 + 8 + 1 + 1 + 2 + 4 + 4);

impl DedupTable {
    /// Appends the table to `out` (empty when nothing is tracked): clients from the least to
    /// the most recently active, each reply from the oldest, then a CRC32C of it all. The same
    /// table always gives the same bytes.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        if self.used == 0 {
            return;
        }
        let start = out.len();
        out.extend_from_slice(&(self.limits.window as u32).to_le_bytes());
        out.extend_from_slice(&self.used.to_le_bytes());
        let mut e = self.least_recent;
        while e != NONE {
            self.encode_client(e as usize, out);
            e = self.entries[e as usize].newer;
        }
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    fn encode_client(&self, e: usize, out: &mut Vec<u8>) {
        let entry = &self.entries[e];
        out.extend_from_slice(&entry.client_id.to_le_bytes());
        out.extend_from_slice(&entry.highest.to_le_bytes());
        out.extend_from_slice(&entry.last_active.to_le_bytes());
        out.extend_from_slice(&entry.count.to_le_bytes());
        let window = self.limits.window;
        for i in 0..entry.count as usize {
            let at =
                e * window + (entry.head as usize + window - entry.count as usize + i) % window;
            let r = self.replies[at];
            out.extend_from_slice(&r.request_id.to_le_bytes());
            out.extend_from_slice(&r.sequence.to_le_bytes());
            out.extend_from_slice(&[r.status, u8::from(r.len != NOT_HELD)]);
            out.extend_from_slice(&r.kind.to_le_bytes());
            out.extend_from_slice(&r.reason.to_le_bytes());
            let len = if r.len == NOT_HELD { 0 } else { r.len };
            out.extend_from_slice(&len.to_le_bytes());
            let from = at * self.limits.reply_bytes;
            out.extend_from_slice(&self.payloads[from..from + len as usize]);
        }
    }

    /// Replaces the table with the one `bytes` holds ([`DedupTable::encode`]; empty: an empty
    /// table). A section written under other limits is fitted to this table's: the most
    /// recently active clients and the newest replies are kept, and a payload over
    /// `reply_bytes` keeps its outcome without its bytes. On error the table is left empty.
    pub(crate) fn decode(&mut self, bytes: &[u8]) -> Result<(), String> {
        *self = DedupTable::new(self.limits);
        if bytes.is_empty() || self.is_off() {
            return Ok(());
        }
        let result = self.decode_section(bytes);
        if result.is_err() {
            *self = DedupTable::new(self.limits);
        }
        result
    }

    fn decode_section(&mut self, bytes: &[u8]) -> Result<(), String> {
        let body_len = bytes
            .len()
            .checked_sub(CRC_BYTES)
            .ok_or("exactly-once section shorter than its checksum")?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("exactly-once section checksum mismatch".into());
        }
        let mut r = Reader { bytes: body };
        let _window = r.u32()?;
        let clients = r.u32()? as usize;
        // Least recent first: skip those the table has no room for.
        let skip = clients.saturating_sub(self.limits.clients);
        for n in 0..clients {
            self.decode_client(&mut r, n >= skip)?;
        }
        if !r.bytes.is_empty() {
            return Err("exactly-once section has trailing bytes".into());
        }
        Ok(())
    }

    fn decode_client(&mut self, r: &mut Reader<'_>, keep: bool) -> Result<(), String> {
        let (client_id, highest, last_active) = (r.u64()?, r.u64()?, r.u64()?);
        let count = r.u32()? as usize;
        if keep && (client_id == 0 || self.probe(client_id).1) {
            return Err(format!(
                "exactly-once section: client {client_id} invalid or repeated"
            ));
        }
        let e = if keep {
            self.touch(client_id, last_active)
        } else {
            0
        };
        for _ in 0..count {
            let (request_id, sequence) = (r.u64()?, r.u64()?);
            let (status, held) = (r.u8()?, r.u8()?);
            let (kind, reason, len) = (r.u16()?, r.u32()?, r.u32()? as usize);
            let payload = r.take(len)?;
            status_of(status).ok_or("exactly-once section: bad status")?;
            if keep {
                let applied = Applied {
                    status: status_of(status).expect("checked"),
                    reason,
                    kind,
                    len: if held == 1 { len } else { usize::MAX },
                };
                self.record(e, request_id, sequence, &applied, payload);
            }
        }
        if keep {
            self.entries[e].highest = highest;
        }
        Ok(())
    }
}

/// A cursor over the section's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("exactly-once section truncated".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{MessageHeader, Outcome, Output};
    use crate::snapshot::StateError;

    /// Adds each message's first payload byte; replies with the running total.
    #[derive(Default)]
    struct Sum(u64);

    impl Processor for Sum {
        fn apply(&mut self, m: &Message<'_>, out: &mut Output<'_>) -> Outcome {
            self.0 += u64::from(m.payload[0]);
            out.write(&self.0.to_le_bytes()).unwrap();
            Outcome::Accepted
        }
        fn state_hash(&self) -> u64 {
            self.0
        }
        fn save_state(&self, _: &mut Vec<u8>) -> Result<(), crate::codec::CodecError> {
            Ok(())
        }
        fn load_state(&mut self, _: u32, _: &[u8]) -> Result<(), StateError> {
            Ok(())
        }
    }

    fn send(p: &mut Sum, t: &mut DedupTable, seq: u64, client: u64, req: u64) -> (Answer, u64) {
        let header = MessageHeader {
            sequence: seq,
            session_id: CLIENT_SESSION_FLAG | client,
            correlation_id: req,
            ..MessageHeader::default()
        };
        let mut buf = [0u8; 16];
        let answer = apply_once(
            p,
            t,
            &Message {
                header,
                payload: &[1],
            },
            &mut buf,
        );
        let total = u64::from_le_bytes(buf[..8].try_into().unwrap());
        (answer, total)
    }

    fn limits(clients: usize, window: usize) -> DedupLimits {
        DedupLimits {
            clients,
            window,
            reply_bytes: 8,
        }
    }

    #[test]
    fn a_duplicate_gets_its_reply_or_a_refusal_never_a_second_apply() {
        let (mut p, mut t) = (Sum::default(), DedupTable::new(limits(4, 2)));
        let (first, total) = send(&mut p, &mut t, 1, 7, 1);
        assert_eq!((first.sequence, total), (1, 1));
        send(&mut p, &mut t, 2, 7, 2);
        let (again, total) = send(&mut p, &mut t, 3, 7, 1);
        assert_eq!(
            (again.sequence, again.applied.status, total),
            (1, Status::Accepted, 1)
        );
        send(&mut p, &mut t, 4, 7, 3);
        // Request 1 is out of the window of 2 now.
        let (gone, _) = send(&mut p, &mut t, 5, 7, 1);
        assert_eq!(
            (gone.sequence, gone.applied.status),
            (5, Status::AlreadyAnswered)
        );
        assert_eq!(p.0, 3, "three requests applied once each");
    }

    #[test]
    fn the_least_recently_active_client_is_evicted() {
        let (mut p, mut t) = (Sum::default(), DedupTable::new(limits(2, 2)));
        send(&mut p, &mut t, 1, 10, 1);
        send(&mut p, &mut t, 2, 20, 1);
        send(&mut p, &mut t, 3, 10, 2); // 20 is now the least recent
        send(&mut p, &mut t, 4, 30, 1); // evicts 20
        assert_eq!(t.len(), 2);
        let (again, _) = send(&mut p, &mut t, 5, 10, 2);
        assert_eq!(again.sequence, 3, "10 is still tracked");
        let (forgotten, _) = send(&mut p, &mut t, 6, 20, 1);
        assert_eq!(forgotten.sequence, 6, "20 was forgotten: applied again");
    }

    #[test]
    fn the_section_round_trips_and_fits_smaller_limits() {
        let (mut p, mut t) = (Sum::default(), DedupTable::new(limits(8, 4)));
        for (seq, client) in (1..=40).zip((1..=5).cycle()) {
            send(&mut p, &mut t, seq, client, seq);
        }
        let mut bytes = Vec::new();
        t.encode(&mut bytes);
        let mut same = DedupTable::new(limits(8, 4));
        same.decode(&bytes).unwrap();
        let mut again = Vec::new();
        same.encode(&mut again);
        assert_eq!(bytes, again);
        let (mut q, mut small) = (Sum::default(), DedupTable::new(limits(2, 1)));
        small.decode(&bytes).unwrap();
        assert_eq!(small.len(), 2);
        // Client 5 sent 40 last: still known, with its newest reply.
        assert_eq!(send(&mut q, &mut small, 41, 5, 40).0.sequence, 40);
        assert_eq!(
            send(&mut q, &mut small, 42, 5, 35).0.applied.status,
            Status::AlreadyAnswered
        );
        let mut bad = bytes.clone();
        bad[9] ^= 1;
        assert!(same.decode(&bad).is_err());
        assert_eq!(same.len(), 0);
    }

    #[test]
    fn index_survives_churn() {
        let (mut p, mut t) = (Sum::default(), DedupTable::new(limits(16, 1)));
        for seq in 1..=2000u64 {
            let client = (seq * 7919) % 61 + 1;
            send(&mut p, &mut t, seq, client, seq);
            assert!(t.probe(client).1);
        }
        assert_eq!(t.len(), 16);
        let mut e = t.most_recent;
        let mut n = 0;
        while e != NONE {
            assert!(t.probe(t.entries[e as usize].client_id).1);
            e = t.entries[e as usize].older;
            n += 1;
        }
        assert_eq!(n, 16);
    }

    #[test]
    fn exactly_once_checks_its_limits_and_answers_a_resend_with_the_original() {
        let mut config = crate::engine::Config {
            dedup_window: 0,
            ..crate::engine::Config::default()
        };
        assert!(ExactlyOnce::new(&config).is_err());
        config.dedup_window = 2;
        let (mut p, mut once) = (Sum::default(), ExactlyOnce::new(&config).unwrap());
        let mut buf = [0u8; 16];
        let mut send = |p: &mut Sum, sequence, correlation_id| {
            let header = MessageHeader {
                sequence,
                session_id: CLIENT_SESSION_FLAG | 9,
                correlation_id,
                ..MessageHeader::default()
            };
            let message = Message {
                header,
                payload: &[5],
            };
            once.apply(p, &message, &mut buf)
        };
        assert_eq!(send(&mut p, 1, 1).1, 1);
        let (again, named) = send(&mut p, 2, 1);
        assert_eq!((again.status, again.len, named), (Status::Accepted, 8, 1));
        assert_eq!(p.0, 5, "applied once");
    }

    /// Instructions per message of the table, under cachegrind (docs/engine.md, "What it
    /// costs"): `KEEL_DEDUP_COST=MODE,N` with MODE `plain` (no client id: `apply_message`
    /// only), `fresh` (a new request of one of 64 clients), `one` (a new request of a single
    /// client) or `replay` (a duplicate answered
    /// from the window); run with N and 2N, the difference over N is one message.
    #[test]
    #[ignore = "a cachegrind probe, run by hand"]
    fn cost_probe() {
        let spec = std::env::var("KEEL_DEDUP_COST").unwrap_or_else(|_| "fresh,1000".into());
        let (mode, n) = spec.split_once(',').expect("MODE,N");
        let n: u64 = n.parse().expect("N");
        let (mut p, mut t) = (
            Sum::default(),
            DedupTable::new(DedupLimits {
                clients: 1024,
                window: 8,
                reply_bytes: 256,
            }),
        );
        let mut buf = [0u8; 64];
        for seq in 1..=n {
            let (session_id, correlation_id) = match mode {
                "plain" => (seq, seq),
                "fresh" => (CLIENT_SESSION_FLAG | (seq % 64 + 1), seq),
                "one" => (CLIENT_SESSION_FLAG | 1, seq),
                _ => (CLIENT_SESSION_FLAG | 1, 1),
            };
            let header = MessageHeader {
                sequence: seq,
                session_id,
                correlation_id,
                ..MessageHeader::default()
            };
            let message = Message {
                header,
                payload: &[1],
            };
            std::hint::black_box(apply_once(&mut p, &mut t, &message, &mut buf));
        }
    }
}
