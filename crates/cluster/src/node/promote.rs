//! Promotion: elected leader of term T, a node asks every peer for its POSITION under T,
//! waits for a majority (itself included), catches up from the most complete journal among
//! the answers (truncating its own divergent suffix first), appends its term record, and only
//! then serves and ships. Any failure leaves it a follower until the election reports again.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use keel::Processor;

use super::{lock, Role, Shared};
use crate::data::common::common_prefix;
use crate::data::follower::{append_checked, REPLY_TIMEOUT};
use crate::data::frame::Frame;
use crate::data::leader::LeaderRun;
use crate::data::shipper::{connect, expect, probe};
use crate::data::wire::{FrameReader, FrameWriter};
use crate::data::DataError;

/// A peer's answer to HELLO under the new term.
struct Answer {
    reader: FrameReader,
    writer: FrameWriter,
    last_term: u64,
    last_sequence: u64,
    chain: u32,
}

/// Runs a promotion to leader of `term` (on the control thread).
pub(super) fn promote<P: Processor>(node: &Arc<Shared<P>>, term: u64) {
    {
        let mut state = lock(&node.state);
        if term < state.term || node.fence() > term {
            return;
        }
        node.cut_follow(&mut state);
        state.role = Role::Promoting;
        state.term = term;
        state.leader = Some(node.id);
    }
    match catch_up(node, term) {
        Ok(()) => tracing::info!(term, "promoted: leading"),
        Err(e) => {
            tracing::warn!(term, error = %e, "promotion abandoned");
            let mut state = lock(&node.state);
            if state.role == Role::Promoting && state.term == term {
                state.role = Role::Follower;
                state.leader = None;
            }
        }
    }
}

fn superseded<P: Processor>(node: &Shared<P>, term: u64) -> bool {
    let state = lock(&node.state);
    node.fence() > term
        || node.stopping.load(Ordering::Acquire)
        || state.role != Role::Promoting
        || state.term != term
}

fn catch_up<P: Processor>(node: &Arc<Shared<P>>, term: u64) -> Result<(), DataError> {
    let answers = gather(node, term);
    let cluster = node.peers.len() + 1;
    if answers.len() + 1 < cluster / 2 + 1 {
        return Err(DataError::Timeout("positions from a majority"));
    }
    let own = {
        let mut local = node.local();
        local.settle(REPLY_TIMEOUT)?;
        (local.last_term(), local.end().0)
    };
    let best = answers
        .into_iter()
        .filter(|a| (a.last_term, a.last_sequence) > own)
        .max_by_key(|a| (a.last_term, a.last_sequence));
    if let Some(source) = best {
        tracing::info!(
            term,
            source_last = source.last_sequence,
            "catching up before serving"
        );
        pull(node, term, source)?;
    }
    let mut state = lock(&node.state);
    let still = state.role == Role::Promoting && state.term == term;
    if !still || node.fence() > term || node.stopping.load(Ordering::Acquire) {
        return Err(DataError::Superseded);
    }
    let (term_start, gate) = {
        let mut local = node.local();
        let start = local.append_term_record(term, node.id)?;
        node.set_fed(start);
        (start, local.gate_handle())
    };
    state.role = Role::Leader;
    state.run = Some(LeaderRun::start(node, term, term_start, gate));
    node.answers_after.store(term_start, Ordering::Release);
    node.leading_term.store(term, Ordering::Release);
    Ok(())
}

/// Asks every peer for its POSITION under `term`, in parallel, each bounded by the connect
/// and reply timeouts; returns the answers that came.
fn gather<P: Processor>(node: &Arc<Shared<P>>, term: u64) -> Vec<Answer> {
    std::thread::scope(|scope| {
        let asks: Vec<_> = node
            .peers
            .iter()
            .map(|peer| scope.spawn(move || connect(node, peer.address, (term, 0))))
            .collect();
        asks.into_iter()
            .filter_map(|ask| ask.join().ok()?.ok())
            .filter_map(|(reader, writer, position)| match position {
                Frame::Position {
                    last_term,
                    last_sequence,
                    chain,
                    ..
                } => Some(Answer {
                    reader,
                    writer,
                    last_term,
                    last_sequence,
                    chain,
                }),
                _ => None,
            })
            .collect()
    })
}

/// Makes this node's journal the source's: truncates its own divergent suffix, then pulls
/// and appends the source's records after the common prefix.
fn pull<P: Processor>(
    node: &Arc<Shared<P>>,
    term: u64,
    mut source: Answer,
) -> Result<(), DataError> {
    let (dir, own_last) = {
        let local = node.local();
        (local.journal_dir().to_owned(), local.end().0)
    };
    let (reader, writer) = (&mut source.reader, &mut source.writer);
    let common = common_prefix(&dir, own_last, (source.last_sequence, source.chain), |s| {
        probe(reader, writer, s)
    })?;
    if common < own_last {
        tracing::warn!(
            common,
            own_last,
            "promotion: truncating this node's divergent suffix"
        );
        let mut local = node.local();
        local.truncate_after(common)?;
        node.engine_restarted(&local);
    }
    writer.send(&Frame::Pull {
        from_sequence: common + 1,
    })?;
    loop {
        if superseded(node, term) {
            return Err(DataError::Superseded);
        }
        let done = expect(reader, |frame| match frame {
            Frame::Records {
                term: t,
                count,
                records,
                ..
            } if t == term => {
                let mut local = node.local();
                // Earlier terms' history from the most complete node: applied as held (this
                // node's ring must drain; see the follower's floor).
                local.advance_gate(local.end().0 + u64::from(count));
                Some(append_checked(&mut local, count, records).map(|()| {
                    node.set_fed(local.end().0);
                    None
                }))
            }
            Frame::PullEnd { last_sequence } => Some(Ok(Some(last_sequence))),
            _ => None,
        })??;
        if let Some(last) = done {
            let own = node.local().end().0;
            if own != last {
                return Err(DataError::Protocol(
                    "the pull ended short of the source's end",
                ));
            }
            return Ok(());
        }
    }
}
