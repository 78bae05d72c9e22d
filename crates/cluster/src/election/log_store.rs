//! openraft's log and vote, persisted in two atomically replaced files (`vote`, `log`).
//!
//! The log holds openraft's own entries only: a blank entry per new leader and the membership
//! entries, and a snapshot every few hundred entries purges it: it stays a few KiB and each
//! change rewrites it whole. The vote is
//! fsynced before `save_vote` returns, which is before openraft answers the vote request: a
//! node never grants two votes in one term, even across a crash.
//!
//! A vote this node won (committed, for itself) is loaded back as a vote for itself that is not
//! committed: openraft would otherwise resume leadership in the same term at once after a
//! restart. Loaded this way the node still refuses every other candidate of that term, starts
//! as a follower, and its next leadership (if any) begins a new term, so every leadership in
//! keel starts with an election and a new term record.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogId, LogState, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use super::atomic_file::AtomicFile;
use super::types::{Entry, RaftStorageError, Types, Vote};
use super::StorageError;

/// Magic of the `vote` file.
pub(crate) const VOTE_MAGIC: [u8; 8] = *b"KEELVOTE";
/// Magic of the `log` file.
pub(crate) const LOG_MAGIC: [u8; 8] = *b"KEELRLOG";

/// Body of the `log` file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LogFile {
    last_purged: Option<LogId<u64>>,
    entries: Vec<Entry>,
}

#[derive(Debug, Default)]
struct LogMem {
    vote: Option<Vote>,
    last_purged: Option<LogId<u64>>,
    entries: BTreeMap<u64, Entry>,
}

/// openraft's log store; clones share the same log (the clone handed out as the log reader
/// only reads).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    mem: Arc<Mutex<LogMem>>,
    vote_file: AtomicFile,
    log_file: AtomicFile,
}

impl LogStore {
    /// Loads the vote and the log from `dir` (empty when the files do not exist yet).
    pub(crate) fn open(dir: &Path, node_id: u64) -> Result<Self, StorageError> {
        let vote_file = AtomicFile::new(dir, "vote", VOTE_MAGIC);
        let log_file = AtomicFile::new(dir, "log", LOG_MAGIC);
        let vote = vote_file
            .read::<Vote>()?
            .map(|v| match v.leader_id().voted_for() {
                Some(id) if id == node_id && v.is_committed() => Vote::new(v.leader_id().term, id),
                _ => v,
            });
        let log = log_file.read::<LogFile>()?.unwrap_or_default();
        let entries = log
            .entries
            .into_iter()
            .map(|e| (e.log_id.index, e))
            .collect();
        let mem = LogMem {
            vote,
            last_purged: log.last_purged,
            entries,
        };
        Ok(Self {
            mem: Arc::new(Mutex::new(mem)),
            vote_file,
            log_file,
        })
    }

    /// The vote persisted (or being persisted) by this store.
    pub(crate) fn vote(&self) -> Option<Vote> {
        self.lock().vote
    }

    fn lock(&self) -> MutexGuard<'_, LogMem> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes of the `log` file for the log as it is in memory now.
    fn encode_log(&self) -> Result<Vec<u8>, StorageError> {
        let mem = self.lock();
        let body = LogFile {
            last_purged: mem.last_purged,
            entries: mem.entries.values().cloned().collect(),
        };
        self.log_file.encode(&body)
    }

    async fn write_log(&self) -> Result<(), RaftStorageError> {
        self.log_file
            .replace_with(|| self.encode_log())
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

impl RaftLogReader<Types> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<Types> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<Types>, RaftStorageError> {
        let mem = self.lock();
        let last = mem
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(mem.last_purged);
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), RaftStorageError> {
        self.lock().vote = Some(*vote);
        self.vote_file
            .replace_with(|| self.vote_file.encode(vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, RaftStorageError> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Types>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        {
            let mut mem = self.lock();
            for e in entries {
                mem.entries.insert(e.log_id.index, e);
            }
        }
        let result = self.write_log().await;
        let flushed = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        callback.log_io_completed(flushed);
        result
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        self.lock().entries.retain(|&index, _| index < log_id.index);
        self.write_log().await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        {
            let mut mem = self.lock();
            if mem.last_purged < Some(log_id) {
                mem.last_purged = Some(log_id);
            }
            mem.entries.retain(|&index, _| index > log_id.index);
        }
        self.write_log().await
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorage;

    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_granted_vote_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path(), 1).unwrap();
        block_on(store.save_vote(&Vote::new(7, 2))).unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path(), 1).unwrap();
        assert_eq!(block_on(store.read_vote()).unwrap(), Some(Vote::new(7, 2)));
    }

    #[test]
    fn a_won_vote_comes_back_uncommitted_and_others_stay_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path(), 1).unwrap();
        block_on(store.save_vote(&Vote::new_committed(5, 1))).unwrap();
        assert_eq!(
            LogStore::open(dir.path(), 1).unwrap().vote(),
            Some(Vote::new(5, 1))
        );
        assert_eq!(
            LogStore::open(dir.path(), 2).unwrap().vote(),
            Some(Vote::new_committed(5, 1))
        );
    }
}
