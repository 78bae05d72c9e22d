//! A leader's side of one follower: connect, HELLO, find the common prefix (PROBE), TRUNCATE a
//! divergent suffix or, when the follower needs records the journal no longer holds, send a
//! snapshot (`transfer`) and wait for its install; then ship the journal's records as the
//! writer appends them (read from the files, never from the rings), with the commit, and a
//! COMMIT heartbeat when idle. ACKs are read on a second thread and move the follower's
//! matched position.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel::Processor;

use super::common::common_prefix;
use super::follower::{POLL, REPLY_TIMEOUT};
use super::frame::{self, ChainStatus, Frame};
use super::leader::LeaderRun;
use super::log::{self, LogCursor};
use super::transfer;
use super::wire::{FrameReader, FrameWriter, BATCH_BYTES};
use super::DataError;
use crate::node::{Shared, CHANNEL_DATA};

/// A COMMIT goes out when nothing was sent for this long.
const HEARTBEAT: Duration = Duration::from_millis(20);
/// Longest wait for new records between looks at the journal.
const IDLE_MAX: Duration = Duration::from_millis(1);
/// Connection attempts to an absent follower: this long apart at most.
const RETRY_MAX: Duration = Duration::from_millis(200);
/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait for a follower's POSITION after a snapshot was sent: it checks, installs and
/// restores it first.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// A follower that needs a snapshot none can serve is reported this often at most.
const NO_SNAPSHOT_REPORT: Duration = Duration::from_secs(10);

/// Ships to peer `index` for as long as `run` leads, reconnecting after failures.
pub(crate) fn run<P: Processor>(node: &Arc<Shared<P>>, run: &Arc<LeaderRun>, index: usize) {
    let mut retry = Duration::from_millis(5);
    let mut reported: Option<Instant> = None;
    while run.running() {
        match session(node, run, index) {
            Ok(()) => retry = Duration::from_millis(5),
            Err(e @ DataError::NoSnapshot { .. }) => {
                if reported.is_none_or(|at| at.elapsed() >= NO_SNAPSHOT_REPORT) {
                    tracing::warn!(peer = node.peers[index].id, error = %e,
                        "the follower needs records the journal no longer holds; retrying");
                    reported = Some(Instant::now());
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
            Err(e) => {
                tracing::debug!(peer = node.peers[index].id, error = %e, "shipping stopped");
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
        let until = Instant::now() + retry;
        while run.running() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Opens a data connection to `address` under `term` and reads the follower's answer to HELLO:
/// its POSITION, or a REJECT (then its fence term comes back as the error).
pub(crate) fn connect<P: Processor>(
    node: &Shared<P>,
    address: std::net::SocketAddr,
    (term, term_start): (u64, u64),
) -> Result<(FrameReader, FrameWriter, Frame<'static>), DataError> {
    let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
    crate::refuse_self_connect(stream.local_addr(), stream.peer_addr())?;
    stream.write_all(&[CHANNEL_DATA])?;
    let mut reader = FrameReader::new(stream.try_clone()?, Some(POLL))?;
    let mut writer = FrameWriter::new(stream)?;
    writer.send(&Frame::Hello {
        term,
        leader_id: node.id,
        term_start,
        client_address: &node.client_address,
    })?;
    let answer = expect(&mut reader, |f| match f {
        Frame::Position { .. } => Some(owned(f)),
        Frame::Reject { .. } => Some(owned(f)),
        _ => None,
    })?;
    if let Frame::Reject { fence_term } = answer {
        node.higher_term(fence_term);
        return Err(DataError::StaleTerm {
            term,
            fence: fence_term,
        });
    }
    Ok((reader, writer, answer))
}

/// The POSITION and REJECT frames borrow nothing: a `'static` copy.
fn owned(frame: Frame<'_>) -> Frame<'static> {
    match frame {
        Frame::Position {
            last_term,
            last_sequence,
            chain,
            durable,
        } => Frame::Position {
            last_term,
            last_sequence,
            chain,
            durable,
        },
        Frame::Reject { fence_term } => Frame::Reject { fence_term },
        Frame::Chain { sequence, status } => Frame::Chain { sequence, status },
        Frame::PullEnd { last_sequence } => Frame::PullEnd { last_sequence },
        _ => unreachable!("only fixed frames are copied"),
    }
}

/// Reads frames until `pick` takes one (bounded by [`REPLY_TIMEOUT`]).
pub(crate) fn expect<T>(
    reader: &mut FrameReader,
    pick: impl FnMut(Frame<'_>) -> Option<T>,
) -> Result<T, DataError> {
    expect_within(reader, REPLY_TIMEOUT, pick)
}

/// Reads frames until `pick` takes one, for at most `timeout`.
fn expect_within<T>(
    reader: &mut FrameReader,
    timeout: Duration,
    mut pick: impl FnMut(Frame<'_>) -> Option<T>,
) -> Result<T, DataError> {
    let deadline = Instant::now() + timeout;
    loop {
        match reader.read_frame()? {
            Some(Frame::Ack { .. }) => {}
            Some(frame) => return pick(frame).ok_or(DataError::Protocol("unexpected frame")),
            None if Instant::now() >= deadline => return Err(DataError::Timeout("a peer's reply")),
            None => {}
        }
    }
}

/// Asks the peer what it holds at `sequence`.
pub(crate) fn probe(
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    sequence: u64,
) -> Result<ChainStatus, DataError> {
    writer.send(&Frame::Probe { sequence })?;
    expect(reader, |f| match f {
        Frame::Chain {
            sequence: s,
            status,
        } if s == sequence => Some(status),
        _ => None,
    })
}

fn session<P: Processor>(
    node: &Arc<Shared<P>>,
    run: &Arc<LeaderRun>,
    index: usize,
) -> Result<(), DataError> {
    let peer = &node.peers[index];
    let (mut reader, mut writer, position) =
        connect(node, peer.address, (run.term, run.term_start))?;
    let Frame::Position {
        last_sequence,
        chain,
        durable,
        ..
    } = position
    else {
        unreachable!("connect returns a POSITION")
    };
    let dir = node.journal_dir.clone();
    let (local_last, _) = log::end_of(&dir)?;
    let found = common_prefix(&dir, local_last, (last_sequence, chain), |s| {
        probe(&mut reader, &mut writer, s)
    });
    let (mut last_sequence, mut durable, mut cursor) = (last_sequence, durable, None);
    let common = match found {
        Err(DataError::NeedsSnapshot { first_sequence }) => {
            let (sequence, now_durable, after) =
                send_snapshot(node, run, index, (&mut reader, &mut writer), first_sequence)?;
            (last_sequence, durable, cursor) = (sequence, now_durable, Some(after));
            sequence
        }
        other => other?,
    };
    if common < last_sequence {
        tracing::info!(
            peer = peer.id,
            common,
            last_sequence,
            "follower diverges: truncating it"
        );
        writer.send(&Frame::Truncate {
            after_sequence: common,
        })?;
        let (last, now_durable) = expect(&mut reader, |f| match f {
            Frame::Position {
                last_sequence,
                durable,
                ..
            } => Some((last_sequence, durable)),
            _ => None,
        })?;
        if last != common {
            return Err(DataError::Protocol("the follower did not truncate"));
        }
        durable = now_durable;
    }
    run.matched[index].store(durable.min(common), Ordering::Release);
    run.poke();
    let cursor = match cursor {
        Some(cursor) => cursor,
        None => LogCursor::open(&dir, common + 1)?,
    };
    ship(node, run, index, (reader, writer), cursor)
}

/// Sends the follower the newest committed snapshot the journal continues and waits for its
/// POSITION after the install; returns the snapshot's sequence, the follower's durable
/// sequence and a cursor at the record after the snapshot, opened before the transfer (an
/// open segment stays readable if retention retires it meanwhile).
fn send_snapshot<P: Processor>(
    node: &Arc<Shared<P>>,
    run: &Arc<LeaderRun>,
    index: usize,
    (reader, writer): (&mut FrameReader, &mut FrameWriter),
    first_sequence: u64,
) -> Result<(u64, u64, LogCursor), DataError> {
    let commit = run.commit.load(Ordering::Acquire);
    let offer = transfer::pick(&node.snapshot_dir, &node.journal_dir, commit)?;
    let after = LogCursor::open(&node.journal_dir, offer.sequence + 1)?;
    let peer = node.peers[index].id;
    tracing::info!(
        peer,
        first_sequence,
        snapshot = offer.sequence,
        "the follower needs records before the journal's start: sending a snapshot"
    );
    let started = Instant::now();
    let bytes = transfer::send(writer, run.term, &offer, || run.running())?;
    let (last, chain, durable) = expect_within(reader, INSTALL_TIMEOUT, |f| match f {
        Frame::Position {
            last_sequence,
            chain,
            durable,
            ..
        } => Some((last_sequence, chain, durable)),
        _ => None,
    })?;
    if (last, chain) != (offer.sequence, offer.chain) {
        return Err(DataError::Protocol(
            "the follower did not install the snapshot",
        ));
    }
    tracing::info!(
        peer,
        snapshot = offer.sequence,
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot installed on the follower"
    );
    Ok((last, durable, after))
}

/// Ships records from `cursor` on until the term ends or the connection breaks.
fn ship<P: Processor>(
    node: &Arc<Shared<P>>,
    run: &Arc<LeaderRun>,
    index: usize,
    (reader, mut writer): (FrameReader, FrameWriter),
    mut cursor: LogCursor,
) -> Result<(), DataError> {
    let common = cursor.next_sequence() - 1;
    let shipped = Arc::new(std::sync::atomic::AtomicU64::new(common));
    let broken = Arc::new(AtomicBool::new(false));
    let acks = spawn_ack_reader(
        node.clone(),
        run.clone(),
        index,
        reader,
        (shipped.clone(), broken.clone()),
    );
    let mut buf = Vec::with_capacity(2 * BATCH_BYTES);
    let (mut sent_commit, mut last_send, mut idle) = (0u64, Instant::now(), Duration::ZERO);
    let mut seen_submissions = run.submissions.load(Ordering::Acquire);
    let result = loop {
        if !run.running() || broken.load(Ordering::Acquire) {
            break Ok(());
        }
        let commit = run.commit.load(Ordering::Acquire);
        frame::begin_records(&mut buf, run.term, commit);
        // The follower's ring must drain: ship no further than it may apply plus a window.
        let limit = commit.max(run.term_start - 1) + node.window;
        let mut count = 0u32;
        let read = loop {
            if buf.len() >= BATCH_BYTES || cursor.next_sequence() > limit {
                break Ok(());
            }
            match cursor.next_into(&mut buf) {
                Ok(Some(_)) => count += 1,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = read {
            break Err(e.into());
        }
        let sent = if count > 0 {
            frame::finish_records(&mut buf, count);
            shipped.store(cursor.next_sequence() - 1, Ordering::Release);
            writer.send_raw(&buf)
        } else if commit != sent_commit || last_send.elapsed() >= HEARTBEAT {
            writer.send(&Frame::Commit {
                term: run.term,
                commit,
            })
        } else {
            // Submissions unpark this thread; the timeout covers records that come otherwise.
            let submissions = run.submissions.load(Ordering::Acquire);
            if submissions != seen_submissions {
                // Woken by a submission: its records come within microseconds.
                (seen_submissions, idle) = (submissions, Duration::ZERO);
            }
            idle = (idle * 2).clamp(Duration::from_micros(20), IDLE_MAX);
            std::thread::park_timeout(idle);
            continue;
        };
        if let Err(e) = sent {
            break Err(e.into());
        }
        (sent_commit, last_send, idle) = (commit, Instant::now(), Duration::ZERO);
    };
    writer.shutdown();
    let _ = acks.join();
    result
}

fn spawn_ack_reader<P: Processor>(
    node: Arc<Shared<P>>,
    run: Arc<LeaderRun>,
    index: usize,
    mut reader: FrameReader,
    (shipped, broken): (Arc<std::sync::atomic::AtomicU64>, Arc<AtomicBool>),
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("keel-data-acks".into())
        .spawn(move || {
            while run.running() {
                match reader.read_frame() {
                    Ok(Some(Frame::Ack { durable, .. })) => {
                        let matched = durable.min(shipped.load(Ordering::Acquire));
                        run.matched[index].fetch_max(matched, Ordering::AcqRel);
                        run.poke();
                    }
                    Ok(Some(Frame::Reject { fence_term })) => {
                        node.higher_term(fence_term);
                        break;
                    }
                    Ok(Some(_)) => break,
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            broken.store(true, Ordering::Release);
        })
        .expect("spawn the ack reader")
}
