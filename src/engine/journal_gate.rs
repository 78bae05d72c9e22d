//! The engine's side of a snapshot's binding to the journal: the snapshot thread waits here
//! until the journal holds a snapshot's sequence durably, whatever the flush policy and apply
//! mode, then reads the journal's chain value there.
//!
//! - Under `batch` with group commit, the journal's durable sequence says so.
//! - Under `batch` without it (a sink whose `end_batch` syncs), the journaler's own sequence.
//! - Under `none` and `interval:MS`, once the journaler has appended the sequence, the
//!   journal's [`JournalSyncHandle`] makes it durable from this thread.
//! - When the journaler has ended after its final sync (shutdown), everything it appended.
//!
//! In apply-ahead mode a snapshot may be captured before the journaler appended its sequence;
//! the wait covers that. With a commit gate (replication), a snapshot also waits for the gate
//! to reach its sequence (the snapshot replica and apply-ahead mode apply beyond it). If the journaler stops without the sequence, the snapshot is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::journal::{chain_at, ChainAt, FlushPolicy, JournalSyncHandle};
use crate::ring::Sequence;
use crate::snapshot::JournalBinding;
use crate::snapshot::SnapshotError;

/// How the journaler thread ended, for the snapshot thread.
#[derive(Debug, Default)]
pub(crate) struct JournalerExit(AtomicU8);

const RUNNING: u8 = 0;
const SYNCED: u8 = 1;
const STOPPED: u8 = 2;

impl JournalerExit {
    /// The journaler ended after a final sync of everything it appended.
    pub(crate) fn synced(&self) {
        self.0.store(SYNCED, Ordering::Release);
    }

    /// The journaler ended without it (failure or halt).
    pub(crate) fn stopped(&self) {
        self.0.store(STOPPED, Ordering::Release);
    }

    /// A guard for the journaler thread: if the thread ends without saying how (a panic),
    /// dropping it records `stopped`, so a snapshot waiting on the journal never waits forever.
    pub(crate) fn guard(self: &Arc<Self>) -> ExitGuard {
        ExitGuard(Arc::clone(self))
    }

    fn get(&self) -> u8 {
        // Pairs with the Release stores above: what the journaler did before is visible.
        self.0.load(Ordering::Acquire)
    }

    /// How the journaler ended: `None` while it runs, `Some(true)` after its final sync of
    /// everything it appended, `Some(false)` without it. Everything it appended before is
    /// visible to the caller once this returns `Some`.
    pub(crate) fn ended(&self) -> Option<bool> {
        match self.get() {
            RUNNING => None,
            state => Some(state == SYNCED),
        }
    }
}

/// Records `stopped` on drop unless the journaler recorded its end first.
pub(crate) struct ExitGuard(Arc<JournalerExit>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self
            .0
             .0
            .compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// How long the snapshot thread sleeps between checks while the journal catches up.
const POLL: Duration = Duration::from_millis(1);

/// The journal as the snapshot thread sees it.
pub(crate) struct JournalGate {
    /// The journaler stage's sequence: appended and `end_batch`ed.
    pub(crate) appended: Arc<Sequence>,
    /// The journal's group-commit durable sequence, when it has one.
    pub(crate) durable: Option<Arc<Sequence>>,
    /// The engine's commit gate (`Config::commit_gate`): a snapshot is bound only once the
    /// gate has released its sequence, so no snapshot holds an uncommitted message.
    pub(crate) commit: Option<Arc<Sequence>>,
    pub(crate) flush: FlushPolicy,
    pub(crate) sync: Option<JournalSyncHandle>,
    pub(crate) journal_dir: PathBuf,
    pub(crate) exit: Arc<JournalerExit>,
}

impl JournalGate {
    /// Whether `sequence` is durable now, making it so through the sync handle if it was
    /// appended under a policy that does not sync it.
    fn durable_now(&self, sequence: u64, exit: u8) -> Result<bool, SnapshotError> {
        if self
            .commit
            .as_ref()
            .is_some_and(|gate| gate.load_acquire() < sequence)
        {
            return Ok(false);
        }
        if self
            .durable
            .as_ref()
            .is_some_and(|d| d.load_acquire() >= sequence)
        {
            return Ok(true);
        }
        if self.appended.load_acquire() < sequence {
            return Ok(false);
        }
        if exit == SYNCED || (self.flush == FlushPolicy::Batch && self.durable.is_none()) {
            return Ok(true);
        }
        match (&self.sync, self.flush) {
            (_, FlushPolicy::Batch) | (None, _) => Ok(false),
            (Some(handle), _) => handle
                .sync_through(sequence)
                .map(|()| true)
                .map_err(Into::into),
        }
    }
}

impl JournalBinding for JournalGate {
    fn bind(&mut self, sequence: u64) -> Result<u32, SnapshotError> {
        loop {
            let exit = self.exit.get();
            if self.durable_now(sequence, exit)? {
                break;
            }
            if exit != RUNNING {
                return Err(SnapshotError::NotJournaled {
                    sequence,
                    reason: "the journaler stopped before it was durable".into(),
                });
            }
            std::thread::sleep(POLL);
        }
        match chain_at(&self.journal_dir, sequence)? {
            ChainAt::Holds(chain) => Ok(chain),
            other => Err(SnapshotError::NotJournaled {
                sequence,
                reason: format!("the journal does not hold it ({other})"),
            }),
        }
    }
}
