//! openraft's metrics, mirrored for std threads: a copy under a mutex, a condvar for waiters,
//! the vote term in an atomic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::sync::watch;

/// Who leads the cluster, as one node sees it.
///
/// During an election `leader` is `None` and `term` is the term being voted in; once a
/// candidate wins, `leader` names it and `term` is its term. `term` never decreases on a node,
/// across restarts too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leadership {
    /// This node's vote term (openraft's `current_term`).
    pub term: u64,
    /// The leader this node knows for `term`, if any.
    pub leader: Option<u64>,
    /// This node is that leader.
    pub is_self: bool,
}

#[derive(Debug)]
pub(crate) struct Observed {
    node_id: u64,
    now: Mutex<Leadership>,
    changed: Condvar,
    term: AtomicU64,
    /// openraft's server state is `Candidate` (this node campaigns).
    candidate: AtomicBool,
}

impl Observed {
    /// `term`: the vote term read from disk, so even the first reading is never below it.
    pub(crate) fn new(node_id: u64, term: u64) -> Self {
        let now = Leadership {
            term,
            leader: None,
            is_self: false,
        };
        Self {
            node_id,
            now: Mutex::new(now),
            changed: Condvar::new(),
            term: AtomicU64::new(term),
            candidate: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Leadership> {
        self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self) -> Leadership {
        *self.lock()
    }

    pub(crate) fn is_candidate(&self) -> bool {
        self.candidate.load(Ordering::Acquire)
    }

    pub(crate) fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// Publishes `next`; a term below one already seen (openraft's first, empty metrics) is
    /// raised to it, so no reader ever sees the term go back.
    fn publish(&self, mut next: Leadership) {
        let seen = self.term.fetch_max(next.term, Ordering::AcqRel);
        if next.term < seen {
            next = Leadership {
                term: seen,
                leader: None,
                is_self: false,
            };
        }
        let mut now = self.lock();
        if *now != next {
            *now = next;
            self.changed.notify_all();
        }
    }

    /// After shutdown: no leader known, the term kept.
    pub(crate) fn stopped(&self) {
        let term = self.term();
        self.publish(Leadership {
            term,
            leader: None,
            is_self: false,
        });
    }

    pub(crate) fn wait_for_change(&self, last_seen: &Leadership, timeout: Duration) -> Leadership {
        let deadline = Instant::now() + timeout;
        let mut now = self.lock();
        while *now == *last_seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            now = self
                .changed
                .wait_timeout(now, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *now
    }

    fn leadership_of(&self, m: &RaftMetrics<u64, BasicNode>) -> Leadership {
        let is_self = m.current_leader == Some(self.node_id) && m.state == ServerState::Leader;
        Leadership {
            term: m.current_term,
            leader: m.current_leader,
            is_self,
        }
    }
}

/// Copies every metrics change into `observed` until openraft stops.
pub(crate) async fn mirror(
    mut rx: watch::Receiver<RaftMetrics<u64, BasicNode>>,
    observed: std::sync::Arc<Observed>,
) {
    loop {
        let next = {
            let metrics = rx.borrow_and_update();
            let candidate = metrics.state == ServerState::Candidate;
            observed.candidate.store(candidate, Ordering::Release);
            observed.leadership_of(&metrics)
        };
        observed.publish(next);
        if rx.changed().await.is_err() {
            return;
        }
    }
}
