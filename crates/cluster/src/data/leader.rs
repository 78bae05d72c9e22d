//! A leader's term: its commit (the ack policy over the local durable sequence and each
//! follower's matched durable sequence, never before this term's term record) advancing the
//! engine's commit gate, and one shipper per follower. Stopping it stops the gate at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use keel::journal::DurableWaker;
use keel::ring::Sequence;
use keel::Processor;

use super::commit::commit_of;
use super::shipper;
use crate::node::Shared;

/// Longest idle park of the committer (acks and submissions wake it sooner).
const COMMITTER_PARK: Duration = Duration::from_millis(5);

/// One term of leadership.
#[derive(Debug)]
pub(crate) struct LeaderRun {
    pub(crate) term: u64,
    /// Sequence of this term's term record.
    pub(crate) term_start: u64,
    running: AtomicBool,
    /// Held while the gate advances, and by `stop`: once `stop` returns it never moves.
    advancing: Mutex<()>,
    /// Per peer (in `Shared::peers` order): the last sequence it holds durably that matches
    /// this leader's journal.
    pub(crate) matched: Vec<AtomicU64>,
    /// This term's commit.
    pub(crate) commit: AtomicU64,
    /// The last sequence clients submitted (wakes the committer's short waits).
    pub(crate) published: AtomicU64,
    committer: OnceLock<Thread>,
    /// The shippers' threads, woken when a message is submitted.
    shippers: OnceLock<Vec<Thread>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl LeaderRun {
    /// Starts the committer and one shipper per peer.
    pub(crate) fn start<P: Processor>(
        node: &Arc<Shared<P>>,
        term: u64,
        term_start: u64,
        gate: (Arc<Sequence>, Option<DurableWaker>),
    ) -> Arc<LeaderRun> {
        let run = Arc::new(LeaderRun {
            term,
            term_start,
            running: AtomicBool::new(true),
            advancing: Mutex::new(()),
            matched: node.peers.iter().map(|_| AtomicU64::new(0)).collect(),
            commit: AtomicU64::new(0),
            published: AtomicU64::new(term_start),
            committer: OnceLock::new(),
            shippers: OnceLock::new(),
            threads: Mutex::new(Vec::new()),
        });
        let committer = {
            let (node, run) = (node.clone(), run.clone());
            spawn("keel-data-commit", move || run.commit_loop(&node, gate))
        };
        let _ = run.committer.set(committer.thread().clone());
        let mut threads = vec![committer];
        for index in 0..node.peers.len() {
            let (node, r) = (node.clone(), run.clone());
            threads.push(spawn("keel-data-ship", move || {
                shipper::run(&node, &r, index)
            }));
        }
        let _ = run
            .shippers
            .set(threads[1..].iter().map(|t| t.thread().clone()).collect());
        *run.threads.lock().expect("fresh") = threads;
        run
    }

    /// Whether this term still leads.
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Stops the term: the gate does not move after this returns. Threads end on their own
    /// (join them with [`LeaderRun::join`]).
    pub(crate) fn stop(&self) {
        let _held = self.advancing.lock().unwrap_or_else(|p| p.into_inner());
        self.running.store(false, Ordering::Release);
        drop(_held);
        self.poke_all();
    }

    /// Waits for the committer and the shippers to end.
    pub(crate) fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Wakes the committer (an ack arrived, a message was submitted).
    pub(crate) fn poke(&self) {
        if let Some(t) = self.committer.get() {
            t.unpark();
        }
    }

    /// Wakes the shippers and the committer (a message was submitted).
    pub(crate) fn poke_all(&self) {
        self.poke();
        for t in self.shippers.get().into_iter().flatten() {
            t.unpark();
        }
    }

    fn commit_loop<P: Processor>(
        &self,
        node: &Shared<P>,
        (gate, waker): (Arc<Sequence>, Option<DurableWaker>),
    ) {
        let metrics = node.metrics();
        let mut matched = vec![0u64; self.matched.len()];
        while self.running() {
            let durable = metrics.durable_sequence();
            for (m, a) in matched.iter_mut().zip(&self.matched) {
                *m = a.load(Ordering::Acquire);
            }
            let commit = self.commit.load(Ordering::Relaxed);
            if let Some(c) = commit_of(node.policy, durable, &matched, self.term_start) {
                if c > commit {
                    let _held = self.advancing.lock().unwrap_or_else(|p| p.into_inner());
                    if !self.running() {
                        return;
                    }
                    if let Some(waker) = &waker {
                        waker.advance(&gate, c);
                    }
                    self.commit.store(c, Ordering::Release);
                    node.note_commit(c);
                    continue;
                }
            }
            if durable < self.published.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_micros(20));
            } else {
                std::thread::park_timeout(COMMITTER_PARK);
            }
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn a data-plane thread")
}
