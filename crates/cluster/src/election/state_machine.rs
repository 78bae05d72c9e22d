//! openraft's state machine: the last applied log id and the last membership, persisted in the
//! atomically replaced `state` file with the newest snapshot's description. A snapshot is that
//! same pair, so it needs no file of its own.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::atomic_file::AtomicFile;
use super::types::{Entry, RaftStorageError, SmState, Snapshot, SnapshotMeta, Types};
use super::StorageError;

/// Magic of the `state` file.
pub(crate) const STATE_MAGIC: [u8; 8] = *b"KEELRSTA";

/// Body of the `state` file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateFile {
    applied: SmState,
    snapshot: Option<SnapshotMeta>,
    snapshots_built: u64,
}

/// The state machine; clones share it (one clone builds snapshots).
#[derive(Debug, Clone)]
pub(crate) struct StateMachine {
    mem: Arc<Mutex<StateFile>>,
    file: AtomicFile,
}

impl StateMachine {
    /// Loads the state from `dir` (empty when the file does not exist yet).
    pub(crate) fn open(dir: &Path) -> Result<Self, StorageError> {
        let file = AtomicFile::new(dir, "state", STATE_MAGIC);
        let state = file.read::<StateFile>()?.unwrap_or_default();
        Ok(Self {
            mem: Arc::new(Mutex::new(state)),
            file,
        })
    }

    fn lock(&self) -> MutexGuard<'_, StateFile> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn persist(&self) -> Result<(), RaftStorageError> {
        self.file
            .replace_with(|| self.file.encode(&*self.lock()))
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e).into())
    }
}

fn snapshot_of(meta: &SnapshotMeta) -> Snapshot {
    let data = SmState {
        last_applied: meta.last_log_id,
        last_membership: meta.last_membership.clone(),
    };
    Snapshot {
        meta: meta.clone(),
        snapshot: Box::new(data),
    }
}

impl RaftSnapshotBuilder<Types> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, RaftStorageError> {
        let meta = {
            let mut state = self.lock();
            state.snapshots_built += 1;
            let id = match state.applied.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, state.snapshots_built),
                None => format!("--{}", state.snapshots_built),
            };
            let meta = SnapshotMeta {
                last_log_id: state.applied.last_applied,
                last_membership: state.applied.last_membership.clone(),
                snapshot_id: id,
            };
            state.snapshot = Some(meta.clone());
            meta
        };
        self.persist().await?;
        Ok(snapshot_of(&meta))
    }
}

impl RaftStateMachine<Types> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), RaftStorageError> {
        let state = self.lock();
        Ok((
            state.applied.last_applied,
            state.applied.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        {
            let mut state = self.lock();
            for entry in entries {
                state.applied.last_applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = entry.payload {
                    state.applied.last_membership = StoredMembership::new(Some(entry.log_id), m);
                }
                replies.push(());
            }
        }
        self.persist().await?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SmState>, RaftStorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SmState>,
    ) -> Result<(), RaftStorageError> {
        {
            let mut state = self.lock();
            state.applied = *snapshot;
            state.snapshot = Some(meta.clone());
        }
        self.persist().await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, RaftStorageError> {
        Ok(self.lock().snapshot.as_ref().map(snapshot_of))
    }
}
