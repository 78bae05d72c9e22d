//! A whole cluster node as `keel serve --cluster` runs it: the election, the data plane's
//! [`Node`], one [`Acceptor`] on the cluster address, and the client address, bound once for
//! the life of the process: the network server answers on it while this node leads, the
//! [`Redirector`] (`NOT_LEADER` naming the leader) the rest of the time.
//!
//! Composition:
//! - a watcher thread parks in [`Election::wait_for_change`] and reports every change to
//!   [`Node::on_leadership`] (term and leader), so the data plane's fence follows the
//!   election's term;
//! - the node's engine is the same engine in every role: following, the data plane feeds it the
//!   leader's records ([`keel::Submitter::submit_record`]) and drops its responses; once the
//!   node has caught up and journaled its term record, a server thread pauses the redirector,
//!   takes the engine's submitter and response receiver ([`Node::take_client_parts`]) and
//!   starts the network server on a clone of the client listener
//!   ([`keel::net::Server::start_on`]); the engine's commit gate keeps every response until
//!   the ack policy holds;
//! - on a step-down the node halts its engine (which ends that server's input and output) and
//!   restarts it as a follower; the server thread sees the role change, points the server's
//!   gate at the new leader, stops the server, resumes the redirector and waits for the server
//!   to end. Clients connected to the deposed leader's server are told `SERVER_STOPPING` (or
//!   `NOT_LEADER`) and reconnect; new connections meet the redirector.
//! - role changes are appended as JSON lines to an events file (see [`ClusterEvent`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keel::net::{NetConfig, NetStats, Server};
use keel::service::Invalid;
use keel::Processor;

use crate::acceptor::{Acceptor, Route};
use crate::data::local::ResponseSink;
use crate::data::AckPolicy;
use crate::election::{Election, ElectionConfig, ElectionError};
use crate::node::{Leadership, Node, NodeConfig, NodeError, NodeObserver, Peer, Redirect, Role};
use crate::redirect::Redirector;

/// How often the server thread looks at the node's role.
const ROLE_POLL: Duration = Duration::from_millis(1);
/// How long the watcher parks before looking at the stop flag again.
const WATCH_PARK: Duration = Duration::from_millis(100);
/// Longest wait for a stopped server's thread to end.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Cluster::start`] needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// This node's id.
    pub node_id: u64,
    /// Every node of the cluster, this one included: id and cluster address.
    pub members: BTreeMap<u64, SocketAddr>,
    /// When a message counts as committed.
    pub ack_policy: AckPolicy,
    /// The engine's configuration (journal and snapshot directories, limits).
    pub engine: keel::Config,
    /// The client-facing server's settings (`listen_addr`: the client address).
    pub net: NetConfig,
    /// Directory of the election's files (default: `<journal dir>/raft`).
    pub election_dir: PathBuf,
    /// File the role events are appended to, one JSON line each (`None`: not written).
    pub events_path: Option<PathBuf>,
    /// Leader heartbeat of the election, ms.
    pub heartbeat_ms: u64,
    /// Election timeout range, ms (a follower that hears no leader for a random time in it
    /// starts an election).
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
}

impl ClusterConfig {
    /// Node `node_id` of `members`, the `majority` ack policy, the election's default
    /// heartbeat and timeouts ([`ElectionConfig::new`]).
    pub fn new(
        node_id: u64,
        members: BTreeMap<u64, SocketAddr>,
        engine: keel::Config,
        net: NetConfig,
    ) -> Self {
        let election_dir = engine.journal_dir.join("raft");
        let defaults = ElectionConfig::new(node_id, members.clone(), &election_dir);
        ClusterConfig {
            node_id,
            members,
            ack_policy: AckPolicy::default(),
            engine,
            net,
            election_dir,
            events_path: None,
            heartbeat_ms: defaults.heartbeat_ms,
            election_timeout_min_ms: defaults.election_timeout_min_ms,
            election_timeout_max_ms: defaults.election_timeout_max_ms,
        }
    }
}

/// Why a cluster node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// `node_id` is not one of `members`.
    #[error("node {0} is not one of the cluster's nodes")]
    NotAMember(u64),
    /// The cluster address could not be bound.
    #[error("cluster address {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The client address could not be bound (or its redirector started).
    #[error("client address {address}: {source}")]
    ClientBind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The events file could not be opened.
    #[error("events file {path}: {source}")]
    Events {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The election failed to start.
    #[error(transparent)]
    Election(#[from] ElectionError),
    /// The data plane's node failed to start or stop.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A thread could not be started.
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
}

/// A role event, as written to the events file: `{"unix_ns":..,"event":"..","term":..,
/// "leader":..}` (`leader` is `null` when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    /// The leader this node knew is gone (an election began).
    LeaderLost,
    /// The election made this node the leader.
    Elected,
    /// This node caught up, journaled its term record and serves clients.
    Serving,
    /// Another node leads; this node follows it.
    Following,
    /// This node stopped serving clients (deposed, or stopping).
    StoppedServing,
}

impl ClusterEvent {
    /// The event's name in the events file.
    pub fn name(self) -> &'static str {
        match self {
            ClusterEvent::LeaderLost => "leader-lost",
            ClusterEvent::Elected => "elected",
            ClusterEvent::Serving => "serving",
            ClusterEvent::Following => "following",
            ClusterEvent::StoppedServing => "stopped-serving",
        }
    }
}

/// Appends role events to a file (shared by the watcher and the server thread).
struct EventLog(Option<Mutex<File>>);

impl EventLog {
    fn record(&self, event: ClusterEvent, term: u64, leader: Option<u64>) {
        tracing::info!(event = event.name(), term, ?leader, "cluster");
        let Some(file) = &self.0 else { return };
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let leader = leader.map_or_else(|| "null".to_owned(), |l| l.to_string());
        let line = format!(
            "{{\"unix_ns\":{unix_ns},\"event\":\"{}\",\"term\":{term},\"leader\":{leader}}}\n",
            event.name()
        );
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = file.write_all(line.as_bytes());
    }
}

/// What the server thread hands back when it ends: the server of the term it still led (asked
/// to stop; it ends once the engine halts) and the counters of the servers it ran.
type Served = (Option<(u64, Server)>, NetStats);

/// The request check of the client-facing server.
pub type Validate = Arc<dyn Fn(u16, u16, &[u8]) -> Result<(), Invalid> + Send + Sync>;

/// A running cluster node.
pub struct Cluster<P: Processor> {
    node: Option<Arc<Node<P>>>,
    election: Option<Arc<Election>>,
    acceptor: Option<Acceptor>,
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
    serving: Option<JoinHandle<Served>>,
    client_addr: SocketAddr,
}

impl<P: Processor> Cluster<P> {
    /// Binds the cluster address and the client address, starts the node's engine
    /// (recovering its journal) as a follower, the election, the acceptor, the watcher and the
    /// server thread (which redirects clients until this node leads).
    pub fn start(
        config: ClusterConfig,
        make: impl Fn() -> P + Send + Sync + 'static,
        validate: Validate,
    ) -> Result<Self, ClusterError> {
        let id = config.node_id;
        let address = *config
            .members
            .get(&id)
            .ok_or(ClusterError::NotAMember(id))?;
        let listener =
            TcpListener::bind(address).map_err(|source| ClusterError::Bind { address, source })?;
        let client_bind = |source| ClusterError::ClientBind {
            address: config.net.listen_addr,
            source,
        };
        let clients = TcpListener::bind(config.net.listen_addr).map_err(client_bind)?;
        let client_addr = clients.local_addr().map_err(client_bind)?;
        let events = Arc::new(open_events(config.events_path.as_ref())?);
        let node = Arc::new(Node::start(
            node_config(&config, client_addr),
            make,
            discard(),
        )?);
        let sizes = (
            config.engine.max_message_bytes,
            config.engine.max_response_bytes,
        );
        let redirector = Redirector::start(clients, &config.net, sizes, node.redirect_target())
            .map_err(client_bind)?;
        let election = Arc::new(Election::start(election_config(&config))?);
        let raft: Route = {
            let election = election.clone();
            Arc::new(move |stream| election.handle_connection(stream))
        };
        let data: Route = {
            let data = node.data_acceptor();
            Arc::new(move |stream| data.accept(stream))
        };
        let acceptor = Acceptor::start(listener, raft, data).map_err(ClusterError::Thread)?;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (node, election, events, stop) =
                (node.clone(), election.clone(), events.clone(), stop.clone());
            spawn("keel-cluster-watch", move || {
                watch(id, &election, &node, &events, &stop)
            })?
        };
        let serving = {
            let (node, stop, net) = (node.clone(), stop.clone(), config.net.clone());
            spawn("keel-cluster-serve", move || {
                serve_clients(&node, redirector, &net, &validate, &events, &stop)
            })?
        };
        Ok(Cluster {
            node: Some(node),
            election: Some(election),
            acceptor: Some(acceptor),
            stop,
            watcher: Some(watcher),
            serving: Some(serving),
            client_addr,
        })
    }

    /// The client address (bound for the life of the node).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// A handle that reads the node's gauges, the election's candidate state included (for
    /// a metrics endpoint). It does not keep the node or the election from stopping.
    pub fn observer(&self) -> NodeObserver {
        let node = self.node().observer();
        let candidate = self.election().candidate_probe();
        NodeObserver::new(Arc::new(move || {
            let mut gauges = node.read();
            gauges.candidate = candidate();
            gauges
        }))
    }

    /// The data plane's node (role, status).
    pub fn node(&self) -> &Node<P> {
        self.node.as_ref().expect("running")
    }

    /// The election (who leads in which term).
    pub fn election(&self) -> &Election {
        self.election.as_ref().expect("running")
    }

    /// The acceptor's address (the cluster address).
    pub fn cluster_addr(&self) -> SocketAddr {
        self.acceptor
            .as_ref()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), Acceptor::local_addr)
    }

    /// Stops serving, the watcher, the acceptor, the node (its engine halts: the state is
    /// every committed message it applied) and the election. Returns the processor (`None`
    /// if the engine was down) and the client-facing servers' last counters.
    pub fn shutdown(mut self) -> Result<(Option<P>, NetStats), ClusterError> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<(Option<P>, NetStats), ClusterError> {
        self.stop.store(true, Ordering::Release);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        // The server thread asks its server to stop and hands it back; the server drains and
        // ends once the node's engine halts (below).
        let (server, mut stats) = self
            .serving
            .take()
            .and_then(|s| s.join().ok())
            .unwrap_or((None, NetStats::default()));
        let processor = match self.node.take().and_then(wait_unwrap) {
            Some(node) => node.shutdown()?,
            None => None,
        };
        if let Some((term, server)) = server {
            stats = wait_server(server);
            tracing::info!(term, "stopped serving");
        }
        if let Some(mut acceptor) = self.acceptor.take() {
            acceptor.stop();
        }
        if let Some(election) = self.election.take() {
            if let Ok(election) = Arc::try_unwrap(election) {
                election.shutdown();
            }
        }
        Ok((processor, stats))
    }
}

impl<P: Processor> Drop for Cluster<P> {
    fn drop(&mut self) {
        if self.node.is_some() {
            let _ = self.stop_all();
        }
    }
}

/// The node back from its `Arc` once the other threads let go of it (bounded wait).
fn wait_unwrap<P: Processor>(mut node: Arc<Node<P>>) -> Option<Node<P>> {
    for _ in 0..1000 {
        match Arc::try_unwrap(node) {
            Ok(node) => return Some(node),
            Err(shared) => node = shared,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::error!("the cluster node is still in use at shutdown");
    None
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, ClusterError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(ClusterError::Thread)
}

fn discard() -> ResponseSink {
    Arc::new(|_| {})
}

fn open_events(path: Option<&PathBuf>) -> Result<EventLog, ClusterError> {
    let Some(path) = path else {
        return Ok(EventLog(None));
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ClusterError::Events {
            path: path.clone(),
            source,
        })?;
    Ok(EventLog(Some(Mutex::new(file))))
}

fn node_config(config: &ClusterConfig, client_addr: SocketAddr) -> NodeConfig {
    let peers = config
        .members
        .iter()
        .filter(|(id, _)| **id != config.node_id)
        .map(|(id, address)| Peer {
            id: *id,
            address: *address,
        })
        .collect();
    let mut node = NodeConfig::new(config.node_id, peers, config.engine.clone());
    node.ack_policy = config.ack_policy;
    node.client_address = client_addr.to_string();
    node
}

fn election_config(config: &ClusterConfig) -> ElectionConfig {
    let mut election =
        ElectionConfig::new(config.node_id, config.members.clone(), &config.election_dir);
    election.heartbeat_ms = config.heartbeat_ms;
    election.election_timeout_min_ms = config.election_timeout_min_ms;
    election.election_timeout_max_ms = config.election_timeout_max_ms;
    election
}

/// Reports every leadership change to the node (and the events file) until stopped.
fn watch<P: Processor>(
    id: u64,
    election: &Election,
    node: &Node<P>,
    events: &EventLog,
    stop: &AtomicBool,
) {
    let mut last = crate::election::Leadership::default();
    while !stop.load(Ordering::Acquire) {
        let now = election.wait_for_change(&last, WATCH_PARK);
        if now == last {
            continue;
        }
        // A leader id of this node counts only once openraft says it leads.
        let leader = now.leader.filter(|l| *l != id || now.is_self);
        if last.leader.is_some() && leader.is_none() {
            events.record(ClusterEvent::LeaderLost, now.term, None);
        }
        match leader {
            Some(l) if l == id => events.record(ClusterEvent::Elected, now.term, leader),
            Some(_) => events.record(ClusterEvent::Following, now.term, leader),
            None => {}
        }
        node.on_leadership(Leadership {
            term: now.term,
            leader,
        });
        last = now;
    }
}

/// Serves the client address for the life of the node: the redirector while the node does
/// not lead; a network server per term of leadership, started once the node has caught up and
/// journaled its term record, stopped when the term ends. Stops the redirector when it ends.
fn serve_clients<P: Processor>(
    node: &Node<P>,
    mut redirector: Redirector,
    net: &NetConfig,
    validate: &Validate,
    events: &EventLog,
    stop: &AtomicBool,
) -> Served {
    let mut total = NetStats::default();
    let mut current: Option<(u64, Server)> = None;
    while !stop.load(Ordering::Acquire) {
        let status = node.status();
        let leads = status.role == Role::Leader;
        match &current {
            Some((term, _)) if leads && status.term == *term => {}
            Some(_) => {
                let (term, server) = current.take().expect("checked");
                total = stop_server(server, node.redirect(), &redirector);
                events.record(ClusterEvent::StoppedServing, term, status.leader);
            }
            None if leads => {
                redirector.pause();
                match start_server(node, status.term, net, validate, &redirector) {
                    Some(server) => {
                        events.record(ClusterEvent::Serving, status.term, status.leader);
                        current = Some((status.term, server));
                    }
                    None => redirector.resume(),
                }
            }
            None => {}
        }
        std::thread::sleep(ROLE_POLL);
    }
    if let Some((_, server)) = &current {
        // The node halts its engine next (shutdown), which lets this server drain and end.
        server.leadership().set_leader(None);
        server.stop_handle().stop();
    }
    redirector.stop();
    (current, total)
}

/// The network server of `term` on a clone of the redirector's listener, with the engine's
/// parts; `None` if the node no longer leads `term` or the server cannot start.
fn start_server<P: Processor>(
    node: &Node<P>,
    term: u64,
    net: &NetConfig,
    validate: &Validate,
    redirector: &Redirector,
) -> Option<Server> {
    // Cloned first: the parts are lost if the server cannot start.
    let listener = match redirector.listener() {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, term, "cannot share the client listener");
            return None;
        }
    };
    let (submitter, responses) = node.take_client_parts(term)?;
    let mut net = net.clone();
    net.leadership = keel::net::LeaderGate::default();
    net.leadership.on_submitted(node.submit_waker());
    let validate = validate.clone();
    let check = move |k, v, p: &[u8]| validate(k, v, p);
    match Server::start_on(listener, net, submitter, responses, check) {
        Ok(server) => Some(server),
        Err(e) => {
            // The parts are dropped: the engine's input closes; the node stays leader but
            // serves nobody until the next term (the redirector sends its clients back here
            // until then; an exactly-once client gives up after its attempts).
            tracing::error!(error = %e, term, "the client-facing server failed to start");
            None
        }
    }
}

/// A server whose node stepped down: refuses requests at once (`NOT_LEADER` naming the new
/// leader when known) and stops accepting; the redirector takes the new connections; the
/// server ends once the node's engine has halted.
fn stop_server(server: Server, redirect: Redirect, redirector: &Redirector) -> NetStats {
    let leader = match redirect {
        Redirect::Leader(address) => Some(address),
        Redirect::ThisNode | Redirect::Unknown => None,
    };
    server.leadership().set_leader(leader);
    server.stop_handle().stop();
    redirector.resume();
    wait_server(server)
}

fn wait_server(server: Server) -> NetStats {
    let deadline = Instant::now() + SERVER_STOP_TIMEOUT;
    while !server.is_finished() && Instant::now() < deadline {
        std::thread::sleep(ROLE_POLL);
    }
    if !server.is_finished() {
        tracing::error!("the client-facing server did not stop; leaving it");
        let stats = server.stats();
        std::mem::forget(server);
        return stats;
    }
    server.wait().unwrap_or_default()
}
