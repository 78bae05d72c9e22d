//! A follower's side of a leader's data connection: the term fence on HELLO, POSITION, PROBE
//! answers, TRUNCATE, a snapshot received and installed (SNAPSHOT_BEGIN, SNAPSHOT_CHUNK,
//! SNAPSHOT_END: `transfer`, `install`), and RECORDS checked record by record (magic, CRC,
//! sequence, chain) before they reach the engine; an acker thread reports durable and applied
//! positions. A promoting leader uses the same connection to PULL this node's records.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel::journal::Record;
use keel::Processor;

use super::frame::{self, Frame};
use super::install;
use super::local::Local;
use super::log::{self, LogCursor};
use super::terms::TermStart;
use super::transfer::{Announced, Incoming};
use super::wire::{FrameReader, FrameWriter, BATCH_BYTES};
use super::DataError;
use crate::node::Shared;

/// How often a blocked read looks at its stop conditions.
pub(crate) const POLL: Duration = Duration::from_millis(20);
/// Longest wait for the frame a peer owes.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// An ACK goes out at least this often (the leader sees the follower alive).
const ACK_HEARTBEAT: Duration = Duration::from_millis(50);

/// Serves one data connection a leader opened (its channel byte already read).
pub(crate) fn serve<P: Processor>(
    node: &Arc<Shared<P>>,
    stream: TcpStream,
) -> Result<(), DataError> {
    let mut reader = FrameReader::new(stream.try_clone()?, Some(POLL))?;
    let writer = Arc::new(Mutex::new(FrameWriter::new(stream.try_clone()?)?));
    let (term, leader_id, term_start) = read_hello(node, &mut reader, stream.peer_addr().ok())?;
    let generation = match node.begin_follow(term, leader_id, &stream) {
        Ok(generation) => generation,
        Err(fence) => {
            let reject = Frame::Reject { fence_term: fence };
            lock(&writer).send(&reject)?;
            return Err(DataError::StaleTerm { term, fence });
        }
    };
    send_position(node, &writer)?;
    let stop = Arc::new(AtomicBool::new(false));
    let acker = spawn_acker(node.clone(), writer.clone(), term, stop.clone());
    let mut session = Session {
        node,
        writer: &writer,
        term,
        generation,
        acker: acker.thread().clone(),
        floor: term_start.saturating_sub(1),
        known_commit: 0,
        incoming: None,
    };
    let result = session.run(&mut reader);
    if let Some(incoming) = session.incoming.take() {
        incoming.abandon();
    }
    stop.store(true, Ordering::Release);
    acker.thread().unpark();
    let _ = acker.join();
    node.end_follow(generation);
    lock(&writer).shutdown();
    result
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads the opener's HELLO (term, leader id, term start) and remembers its client address.
fn read_hello<P: Processor>(
    node: &Shared<P>,
    reader: &mut FrameReader,
    from: Option<std::net::SocketAddr>,
) -> Result<(u64, u64, u64), DataError> {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        match reader.read_frame()? {
            Some(Frame::Hello {
                term,
                leader_id,
                term_start,
                client_address,
            }) => {
                node.learn_client_address(leader_id, client_address, from);
                return Ok((term, leader_id, term_start));
            }
            Some(_) => return Err(DataError::Protocol("the first frame must be HELLO")),
            None if Instant::now() >= deadline => return Err(DataError::Timeout("HELLO")),
            None => {}
        }
    }
}

/// Answers with where the journal ends, once it holds everything fed.
fn send_position<P: Processor>(
    node: &Shared<P>,
    writer: &Mutex<FrameWriter>,
) -> Result<(), DataError> {
    let position = {
        let mut local = node.local();
        local.settle(REPLY_TIMEOUT)?;
        position_of(&local)
    };
    lock(writer).send(&position)?;
    Ok(())
}

/// The POSITION frame describing `local`.
pub(crate) fn position_of<P: Processor>(local: &Local<P>) -> Frame<'static> {
    let (last_sequence, chain) = local.end();
    Frame::Position {
        last_term: local.last_term(),
        last_sequence,
        chain,
        durable: local.metrics().durable_sequence(),
    }
}

struct Session<'a, P: Processor> {
    node: &'a Arc<Shared<P>>,
    writer: &'a Mutex<FrameWriter>,
    term: u64,
    generation: u64,
    acker: std::thread::Thread,
    /// Records up to here are earlier terms' history in the leader's journal: applied as
    /// soon as held (the ring must drain for the leader's term record to arrive; a node
    /// whose history later diverges is reset by TRUNCATE).
    floor: u64,
    /// The leader's commit, as last received.
    known_commit: u64,
    /// A snapshot being received.
    incoming: Option<Incoming>,
}

impl<P: Processor> Session<'_, P> {
    fn run(&mut self, reader: &mut FrameReader) -> Result<(), DataError> {
        loop {
            if !self.node.is_following(self.generation) {
                return Err(DataError::Superseded);
            }
            let Some(frame) = reader.read_frame()? else {
                continue;
            };
            match frame {
                Frame::Records {
                    term,
                    commit,
                    count,
                    records,
                } => self.on_records(term, commit, count, records)?,
                Frame::Commit { term, commit } => self.on_commit(term, commit)?,
                Frame::Probe { sequence } => self.on_probe(sequence)?,
                Frame::Truncate { after_sequence } => self.on_truncate(after_sequence)?,
                Frame::Pull { from_sequence } => self.on_pull(from_sequence)?,
                Frame::SnapshotBegin {
                    term,
                    sequence,
                    total_bytes,
                    history_term,
                    history_term_start,
                    chain,
                } => {
                    let history = (history_term > 0).then_some(TermStart {
                        term: history_term,
                        first_sequence: history_term_start,
                    });
                    let announced = Announced {
                        sequence,
                        chain,
                        history,
                        total_bytes,
                    };
                    self.on_snapshot_begin(term, announced)?
                }
                Frame::SnapshotChunk { offset, bytes } => match self.incoming.as_mut() {
                    Some(incoming) => incoming.chunk(offset, bytes)?,
                    None => return Err(DataError::Protocol("a snapshot chunk without a begin")),
                },
                Frame::SnapshotEnd { sequence, crc } => self.on_snapshot_end(sequence, crc)?,
                _ => return Err(DataError::Protocol("unexpected frame from the leader")),
            }
        }
    }

    /// Rejects (and ends the session) when the fence moved past this session's term.
    fn check_term(&self, term: u64) -> Result<(), DataError> {
        let fence = self.node.fence();
        if term != self.term || term < fence {
            lock(self.writer).send(&Frame::Reject { fence_term: fence })?;
            return Err(DataError::StaleTerm { term, fence });
        }
        Ok(())
    }

    fn on_records(
        &mut self,
        term: u64,
        commit: u64,
        count: u32,
        records: &[u8],
    ) -> Result<(), DataError> {
        self.check_term(term)?;
        let mut local = self.node.local();
        if !self.node.is_following(self.generation) {
            return Err(DataError::Superseded);
        }
        local.advance_gate(commit.max(self.floor));
        append_checked(&mut local, count, records)?;
        self.node.set_fed(local.end().0);
        drop(local);
        self.known_commit = self.known_commit.max(commit);
        self.node.note_commit(commit);
        self.acker.unpark();
        Ok(())
    }

    fn on_commit(&mut self, term: u64, commit: u64) -> Result<(), DataError> {
        self.check_term(term)?;
        self.node.local().advance_gate(commit.max(self.floor));
        self.known_commit = self.known_commit.max(commit);
        self.node.note_commit(commit);
        Ok(())
    }

    fn on_probe(&mut self, sequence: u64) -> Result<(), DataError> {
        let dir = {
            let mut local = self.node.local();
            local.settle(REPLY_TIMEOUT)?;
            local.journal_dir().to_owned()
        };
        let status = log::chain_at(&dir, sequence)?;
        lock(self.writer).send(&Frame::Chain { sequence, status })?;
        Ok(())
    }

    fn on_truncate(&mut self, after: u64) -> Result<(), DataError> {
        {
            let mut local = self.node.local();
            let commit = self.known_commit.min(local.end().0);
            if after < commit {
                return Err(DataError::BelowCommit { after, commit });
            }
            tracing::warn!(after, "truncating the journal's divergent suffix");
            local.truncate_after(after)?;
            self.node.engine_restarted(&local);
        }
        send_position(self.node, self.writer)
    }

    /// Refuses a snapshot that would drop records this node holds and knows are committed
    /// (told by this leader or an earlier one): the install replaces the journal, and those
    /// records may count towards a commit.
    fn refuse_below_commit(&self, local: &Local<P>, sequence: u64) -> Result<(), DataError> {
        let commit = self.known_commit.max(self.node.commit()).min(local.end().0);
        if sequence < commit {
            return Err(DataError::SnapshotBelowCommit { sequence, commit });
        }
        Ok(())
    }

    fn on_snapshot_begin(&mut self, term: u64, announced: Announced) -> Result<(), DataError> {
        self.check_term(term)?;
        if let Some(old) = self.incoming.take() {
            old.abandon();
        }
        let dir = {
            let local = self.node.local();
            self.refuse_below_commit(&local, announced.sequence)?;
            local.snapshot_dir().to_owned()
        };
        tracing::info!(
            sequence = announced.sequence,
            bytes = announced.total_bytes,
            "receiving a snapshot from the leader"
        );
        self.incoming = Some(Incoming::begin(&dir, announced)?);
        Ok(())
    }

    fn on_snapshot_end(&mut self, sequence: u64, crc: u32) -> Result<(), DataError> {
        let incoming = self
            .incoming
            .take()
            .ok_or(DataError::Protocol("SNAPSHOT_END without SNAPSHOT_BEGIN"))?;
        let received = incoming.end(sequence, crc)?;
        let path = received.path.clone();
        // Checked with the engine still running: a refused snapshot changes nothing.
        let (limit, make) = {
            let local = self.node.local();
            (local.max_state_bytes(), local.make())
        };
        let result = install::check(&received, limit, &*make).and_then(|()| {
            let mut local = self.node.local();
            if !self.node.is_following(self.generation) {
                return Err(DataError::Superseded);
            }
            self.refuse_below_commit(&local, sequence)?;
            tracing::warn!(
                sequence,
                "installing the leader's snapshot in place of the journal"
            );
            let installed = local.install_snapshot(received);
            self.node.engine_restarted(&local);
            installed
        });
        if result.is_err() {
            // Gone already if the install began (it renamed the file first).
            let _ = std::fs::remove_file(&path);
        }
        result?;
        send_position(self.node, self.writer)
    }

    fn on_pull(&mut self, from: u64) -> Result<(), DataError> {
        let dir = {
            let mut local = self.node.local();
            local.settle(REPLY_TIMEOUT)?;
            local.journal_dir().to_owned()
        };
        let last = ship_all(&dir, from, self.term, &mut lock(self.writer))?;
        lock(self.writer).send(&Frame::PullEnd {
            last_sequence: last,
        })?;
        Ok(())
    }
}

/// Checks each of `count` records in `records` against `local`'s chain and feeds it.
pub(crate) fn append_checked<P: Processor>(
    local: &mut Local<P>,
    count: u32,
    mut records: &[u8],
) -> Result<(), DataError> {
    for _ in 0..count {
        let (record, prev_crc, crc, rest) = Record::split_checked(records)?;
        let (last, chain) = local.end();
        if record.sequence != last + 1 || prev_crc != chain {
            return Err(DataError::Discontinuous {
                sequence: record.sequence,
                next: last + 1,
                chain,
                prev_crc,
            });
        }
        local.append_record(&record, crc)?;
        records = rest;
    }
    if records.is_empty() {
        Ok(())
    } else {
        Err(DataError::Protocol(
            "RECORDS holds more bytes than its count",
        ))
    }
}

/// Sends every record of the journal in `dir` from `from` to its current end in RECORDS
/// frames (commit 0); returns the last sequence sent (or `from - 1`).
pub(crate) fn ship_all(
    dir: &std::path::Path,
    from: u64,
    term: u64,
    writer: &mut FrameWriter,
) -> Result<u64, DataError> {
    let mut cursor = LogCursor::open(dir, from)?;
    let mut buf = Vec::with_capacity(BATCH_BYTES * 2);
    loop {
        frame::begin_records(&mut buf, term, 0);
        let mut count = 0u32;
        while buf.len() < BATCH_BYTES && cursor.next_into(&mut buf)?.is_some() {
            count += 1;
        }
        if count == 0 {
            return Ok(cursor.next_sequence() - 1);
        }
        frame::finish_records(&mut buf, count);
        writer.send_raw(&buf)?;
    }
}

/// Reports durable and applied positions: at once when they move (the session unparks it
/// after feeding records), and as a heartbeat.
fn spawn_acker<P: Processor>(
    node: Arc<Shared<P>>,
    writer: Arc<Mutex<FrameWriter>>,
    term: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("keel-data-ack".into())
        .spawn(move || {
            let mut sent = (u64::MAX, u64::MAX);
            let mut last_sent = Instant::now();
            while !stop.load(Ordering::Acquire) {
                let metrics = node.metrics();
                let now = (metrics.durable_sequence(), metrics.applied_sequence());
                if now != sent || last_sent.elapsed() >= ACK_HEARTBEAT {
                    let ack = Frame::Ack {
                        term,
                        durable: now.0,
                        applied: now.1,
                    };
                    if lock(&writer).send(&ack).is_err() {
                        return;
                    }
                    sent = now;
                    last_sent = Instant::now();
                }
                if now.0 < node.fed() || now.1 < now.0.min(node.commit()) {
                    std::thread::sleep(Duration::from_micros(20));
                } else {
                    std::thread::park_timeout(ACK_HEARTBEAT);
                }
            }
        })
        .expect("spawn the acker")
}
