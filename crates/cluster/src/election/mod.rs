//! Leader election with openraft 0.9 on a runtime of its own.
//!
//! [`Election::start`] opens the node's election files (`vote`, `log`, `state` in
//! [`ElectionConfig::data_dir`]), starts a tokio runtime on threads named `keel-raft-*` and an
//! openraft node on it, and forms the cluster from [`ElectionConfig::peers`]. Everything else in
//! keel stays on std threads: they read [`Election::leadership`], park in
//! [`Election::wait_for_change`], and fence with [`Election::current_term`].
//!
//! openraft's own log holds only its blank (new leader) and membership entries: the messages
//! are replicated by keel's data plane, which takes the term and the leader from here.
//!
//! Connections: the cluster address serves both planes; each connection opens with one channel
//! byte ([`CHANNEL_RAFT`] or [`CHANNEL_DATA`]). [`Election::serve`] accepts and routes them;
//! an acceptor owned elsewhere hands `b'E'` connections to [`Election::handle_connection`].

mod atomic_file;
mod frame;
mod log_store;
mod network;
mod observe;
mod server;
mod state_machine;
#[cfg(test)]
mod tests;
mod types;

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};

pub use frame::{CHANNEL_DATA, CHANNEL_RAFT, CHANNEL_RAFT_BEFORE_ONE_LEADER_PER_TERM};
pub use observe::Leadership;

use log_store::LogStore;
use network::Network;
use observe::Observed;
use state_machine::StateMachine;
use types::Raft;

/// What the node does with a data plane connection ([`CHANNEL_DATA`], channel byte already
/// read, blocking mode) accepted by [`Election::serve`]. Each call runs on a new thread
/// (`keel-data-conn`) that is the data plane's: it may serve the connection until it ends.
/// [`Election::shutdown`] does not wait for these threads.
pub type DataHandler = Box<dyn Fn(TcpStream) + Send + Sync>;

/// Worker threads of the election runtime (openraft's tasks are light; file writes go to the
/// blocking pool).
const WORKER_THREADS: usize = 2;
/// Threads of the runtime's blocking pool (the election files' writes and fsyncs).
const MAX_BLOCKING_THREADS: usize = 4;
/// Openraft builds a snapshot (two log ids) after this many log entries and then purges the
/// log up to [`LOG_KEPT_AFTER_SNAPSHOT`] entries behind it: the log file stays small.
const SNAPSHOT_EVERY_ENTRIES: u64 = 256;
const LOG_KEPT_AFTER_SNAPSHOT: u64 = 32;
/// Bound on each step of [`Election::shutdown`].
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of [`Election::start`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ElectionConfig {
    /// This node's id; must be a key of `peers`.
    pub node_id: u64,
    /// Every node of the cluster, this one included, with its cluster address.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Directory of the election's files (e.g. `<journal dir>/raft`), created if missing.
    pub data_dir: PathBuf,
    /// Interval of the leader's heartbeats.
    pub heartbeat_ms: u64,
    /// The election timeout range, shared out among the nodes: in node id order, each node
    /// takes the first quarter of its own slot of `[election_timeout_min_ms,
    /// election_timeout_max_ms)`. A follower that has heard no leader for its slot's end
    /// (openraft's leader lease: until then it also refuses other candidates) plus a time
    /// drawn once in its part starts an election (3 nodes, 150–300 ms: after about 315, 415
    /// or 515 ms). A vote request (including the voter's fsync) and a connect get
    /// `election_timeout_min_ms` to finish.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// Log entries after which openraft snapshots (fixed; lowered by this crate's tests).
    snapshot_every_entries: u64,
    /// Entries kept behind a snapshot when the log is purged.
    log_kept_after_snapshot: u64,
}

impl ElectionConfig {
    /// Defaults: heartbeat every 50 ms, election timeout range 150–300 ms, so a follower of a
    /// three-node cluster starts an election about 315, 415 or 515 ms (by its slot) after its
    /// leader's last heartbeat (see `election_timeout_min_ms`).
    pub fn new(
        node_id: u64,
        peers: BTreeMap<u64, SocketAddr>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            node_id,
            peers,
            data_dir: data_dir.into(),
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES,
            log_kept_after_snapshot: LOG_KEPT_AFTER_SNAPSHOT,
        }
    }

    /// This node's part of the election timeout range, as openraft gets it: the range cut
    /// into one slot per node (in node id order), and the first quarter of this node's slot.
    /// openraft draws a node's timeout once, at start; with one leader per term, two
    /// candidates whose timeouts lie within a vote's round trip of each other split the vote
    /// round after round (seconds without a leader were seen). Slots keep any two nodes'
    /// timeouts at least three quarters of a slot apart. openraft's leader lease is the
    /// slot's end, so a node campaigns after `slot end + its timeout` of silence. A range
    /// too narrow to share is given whole to every node.
    fn timeout_slot(&self) -> (u64, u64) {
        let (min, max) = (self.election_timeout_min_ms, self.election_timeout_max_ms);
        let nodes = self.peers.len() as u64;
        let width = (max - min) / nodes.max(1);
        let Some(slot) = self.peers.keys().position(|id| *id == self.node_id) else {
            return (min, max);
        };
        if width < 4 {
            return (min, max);
        }
        let start = min + slot as u64 * width;
        (start, start + width / 4)
    }

    fn validate(&self) -> Result<openraft::Config, ElectionError> {
        if !self.peers.contains_key(&self.node_id) {
            return Err(ElectionError::NotAPeer {
                node_id: self.node_id,
            });
        }
        let (hb, min, max) = (
            self.heartbeat_ms,
            self.election_timeout_min_ms,
            self.election_timeout_max_ms,
        );
        if hb == 0 || hb >= min || min >= max {
            return Err(ElectionError::Timeouts {
                heartbeat_ms: hb,
                min_ms: min,
                max_ms: max,
            });
        }
        let (min, max) = self.timeout_slot();
        let config = openraft::Config {
            cluster_name: "keel".to_string(),
            heartbeat_interval: hb,
            election_timeout_min: min,
            election_timeout_max: max,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.log_kept_after_snapshot,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ElectionError::Openraft(e.to_string()))
    }
}

/// Why the election could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElectionError {
    /// `node_id` is not one of `peers`.
    #[error("node {node_id} is not one of the cluster's nodes")]
    NotAPeer {
        /// The node id given.
        node_id: u64,
    },
    /// The timeouts need `0 < heartbeat < election min < election max`.
    #[error("timeouts need 0 < heartbeat ({heartbeat_ms} ms) < election min ({min_ms} ms) < max ({max_ms} ms)")]
    Timeouts {
        /// Heartbeat interval given.
        heartbeat_ms: u64,
        /// Election timeout minimum given.
        min_ms: u64,
        /// Election timeout maximum given.
        max_ms: u64,
    },
    /// The data directory could not be created.
    #[error("election directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The election's files could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The runtime's threads could not be started.
    #[error("election runtime: {0}")]
    Runtime(io::Error),
    /// openraft refused to start or to form the cluster.
    #[error("openraft: {0}")]
    Openraft(String),
    /// The election's files hold a different cluster than `peers` (membership changes are not
    /// supported: every node must be started with the cluster it was formed with).
    #[error("the election directory holds the cluster {stored}, started with {configured}")]
    MembershipMismatch {
        /// The stored membership, as `id=address,...`.
        stored: String,
        /// The configured one.
        configured: String,
    },
    /// The listener given to [`Election::serve`] could not be used.
    #[error("cluster listener: {0}")]
    Listener(io::Error),
}

/// A failure of the election's files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Reading, writing or syncing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file's header or checksum is wrong: it is not used (the vote it holds cannot be
    /// trusted, and forgetting it could grant two votes in one term).
    #[error("{path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value could not be encoded.
    #[error("{path}: cannot encode: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A write on the blocking pool did not complete (the runtime is shutting down).
    #[error("file write interrupted: {0}")]
    Interrupted(String),
}

/// A running election node. Dropping it shuts it down like [`Election::shutdown`].
pub struct Election {
    node_id: u64,
    runtime: Option<tokio::runtime::Runtime>,
    raft: Raft,
    observed: Arc<Observed>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("node_id", &self.node_id)
            .field("leadership", &self.leadership())
            .finish()
    }
}

impl Election {
    /// Opens the election's files, starts the runtime and openraft, and forms the cluster.
    ///
    /// Every node asks openraft to initialize the cluster with all of `peers`; on a node that
    /// already holds a log or a vote openraft refuses (`NotAllowed`), which is ignored. openraft
    /// documents that several nodes initializing with the same membership is safe: each writes
    /// the same membership entry at log index 0. Unlike "the lowest id initializes", no node's
    /// absence at first start blocks the others.
    pub fn start(config: ElectionConfig) -> Result<Election, ElectionError> {
        let raft_config = config.validate()?;
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| ElectionError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let log = LogStore::open(dir, config.node_id)?;
        let stored_term = log.vote().map_or(0, |v| v.leader_id().term);
        let state = StateMachine::open(dir)?;
        let runtime = build_runtime(config.node_id)?;
        // Connects are bounded by the shortest election timeout; an unreachable peer is tried
        // again every heartbeat: a restarted peer (whose vote may carry no leader lease) should
        // hear its leader before its own election timeout.
        let connect_timeout = Duration::from_millis(config.election_timeout_min_ms);
        let backoff = Duration::from_millis(config.heartbeat_ms);
        let network = Network::new(connect_timeout, backoff);
        let node_id = config.node_id;
        let raft = runtime
            .block_on(Raft::new(
                node_id,
                Arc::new(raft_config),
                network,
                log,
                state,
            ))
            .map_err(|e| ElectionError::Openraft(e.to_string()))?;
        let members: BTreeMap<u64, BasicNode> = config
            .peers
            .iter()
            .map(|(id, addr)| {
                (
                    *id,
                    BasicNode {
                        addr: addr.to_string(),
                    },
                )
            })
            .collect();
        let formed = match runtime.block_on(raft.initialize(members.clone())) {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                same_membership(&runtime, &raft, &members, raft_wait(&config))
            }
            Err(e) => Err(ElectionError::Openraft(e.to_string())),
        };
        if let Err(e) = formed {
            let _ = runtime
                .block_on(async { tokio::time::timeout(SHUTDOWN_TIMEOUT, raft.shutdown()).await });
            runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
            return Err(e);
        }
        let observed = Arc::new(Observed::new(node_id, stored_term));
        runtime.spawn(observe::mirror(raft.metrics(), Arc::clone(&observed)));
        Ok(Election {
            node_id,
            runtime: Some(runtime),
            raft,
            observed,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Who leads, in which term, as this node sees it now (a copy; no waiting).
    pub fn leadership(&self) -> Leadership {
        self.observed.get()
    }

    /// Parks until [`Election::leadership`] differs from `last_seen` or `timeout` passes;
    /// returns the leadership then.
    pub fn wait_for_change(&self, last_seen: &Leadership, timeout: Duration) -> Leadership {
        self.observed.wait_for_change(last_seen, timeout)
    }

    /// Whether this node campaigns now (openraft's candidate state); one atomic load.
    pub fn is_candidate(&self) -> bool {
        self.observed.is_candidate()
    }

    /// [`Election::is_candidate`] as a function that does not keep the election from shutting
    /// down (for a metrics scrape).
    pub fn candidate_probe(&self) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let observed = self.observed.clone();
        Arc::new(move || observed.is_candidate())
    }

    /// This node's vote term: the highest term it has seen (never lower after a restart). A
    /// data plane message of a lower term comes from a deposed leader.
    pub fn current_term(&self) -> u64 {
        self.observed.term()
    }

    /// Serves an election connection accepted elsewhere, its channel byte ([`CHANNEL_RAFT`])
    /// already read. Returns at once; the connection is served on the election runtime.
    pub fn handle_connection(&self, stream: TcpStream) {
        if let Some(rt) = &self.runtime {
            rt.spawn(server::serve_std(self.raft.clone(), stream));
        }
    }

    /// Accepts connections on `listener` (the node's cluster address) until shutdown: election
    /// connections are served here, data plane connections go to `data`, others are closed.
    pub fn serve(&self, listener: TcpListener, data: DataHandler) -> Result<(), ElectionError> {
        let Some(rt) = &self.runtime else {
            return Err(ElectionError::Listener(io::ErrorKind::NotConnected.into()));
        };
        listener
            .set_nonblocking(true)
            .map_err(ElectionError::Listener)?;
        let listener = {
            let _entered = rt.enter();
            tokio::net::TcpListener::from_std(listener).map_err(ElectionError::Listener)?
        };
        rt.spawn(server::accept_loop(
            listener,
            self.raft.clone(),
            Arc::new(data),
        ));
        Ok(())
    }

    /// Stops openraft and the runtime and joins its threads; each step is bounded in time.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(rt) = self.runtime.take() else {
            return;
        };
        let raft = self.raft.clone();
        let _ = rt
            .block_on(async move { tokio::time::timeout(SHUTDOWN_TIMEOUT, raft.shutdown()).await });
        rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
        self.observed.stopped();
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long [`Election::start`] waits for openraft to report the membership it holds.
fn raft_wait(config: &ElectionConfig) -> Duration {
    Duration::from_millis(config.election_timeout_max_ms)
}

/// Refuses to run when the membership openraft holds (from this node's log) is not `peers`:
/// openraft would follow its stored membership and ignore the configured one. A node that holds
/// no membership yet (it will learn it from the leader) passes.
fn same_membership(
    runtime: &tokio::runtime::Runtime,
    raft: &Raft,
    configured: &BTreeMap<u64, BasicNode>,
    wait: Duration,
) -> Result<(), ElectionError> {
    let has_members =
        |m: &openraft::RaftMetrics<u64, BasicNode>| m.membership_config.nodes().next().is_some();
    let Ok(metrics) = runtime.block_on(raft.wait(Some(wait)).metrics(has_members, "membership"))
    else {
        return Ok(());
    };
    let stored: BTreeMap<u64, BasicNode> = metrics
        .membership_config
        .nodes()
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    if stored == *configured {
        return Ok(());
    }
    let show = |m: &BTreeMap<u64, BasicNode>| {
        m.iter()
            .map(|(id, n)| format!("{id}={}", n.addr))
            .collect::<Vec<_>>()
            .join(",")
    };
    Err(ElectionError::MembershipMismatch {
        stored: show(&stored),
        configured: show(configured),
    })
}

fn build_runtime(node_id: u64) -> Result<tokio::runtime::Runtime, ElectionError> {
    let counter = AtomicUsize::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name_fn(move || {
            format!(
                "keel-raft-{node_id}-{}",
                counter.fetch_add(1, Ordering::Relaxed)
            )
        })
        .enable_all()
        .build()
        .map_err(ElectionError::Runtime)
}

#[cfg(test)]
mod timeout_slot_tests {
    use super::ElectionConfig;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    fn config(node_id: u64, ids: &[u64], min: u64, max: u64) -> ElectionConfig {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let peers: BTreeMap<u64, SocketAddr> = ids.iter().map(|id| (*id, addr)).collect();
        let mut config = ElectionConfig::new(node_id, peers, "unused");
        config.election_timeout_min_ms = min;
        config.election_timeout_max_ms = max;
        config
    }

    #[test]
    fn each_node_takes_its_own_part_of_the_timeout_range() {
        let slots: Vec<(u64, u64)> = [7, 3, 9]
            .iter()
            .map(|id| config(*id, &[3, 7, 9], 150, 300).timeout_slot())
            .collect();
        assert_eq!(slots, vec![(200, 212), (150, 162), (250, 262)]);
        let validated = config(9, &[3, 7, 9], 150, 300).validate().unwrap();
        assert_eq!(
            (
                validated.election_timeout_min,
                validated.election_timeout_max
            ),
            (250, 262)
        );
    }

    #[test]
    fn a_range_too_narrow_to_share_is_given_whole() {
        assert_eq!(config(2, &[1, 2, 3], 100, 110).timeout_slot(), (100, 110));
    }
}
