//! A cluster node: its engine, the data plane's roles (follower, promoting, leader) and the
//! transitions between them, driven by leadership reports from whoever observes the
//! election ([`Node::on_leadership`]). The CLI starts one per process.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use keel::engine::{Metrics, SubmitError};
use keel::{Processor, Submission};

use crate::data::leader::LeaderRun;
use crate::data::local::{Local, MakeProcessor, ResponseSink};
use crate::data::{follower, AckPolicy, DataError};

mod promote;

/// The channel byte that opens a data-plane connection (`b'E'`: the election's RPCs).
pub const CHANNEL_DATA: u8 = b'D';

/// Another node of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its node id.
    pub id: u64,
    /// Its cluster address (election and data).
    pub address: SocketAddr,
}

/// What a node is started with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// This node's id (unique in the cluster).
    pub id: u64,
    /// The other nodes.
    pub peers: Vec<Peer>,
    /// When a message counts as committed.
    pub ack_policy: AckPolicy,
    /// The engine's configuration (journal and snapshot directories, limits).
    pub engine: keel::Config,
    /// The client address sent to followers in HELLO (for redirects).
    pub client_address: String,
}

impl NodeConfig {
    /// A node `id` with `peers`, the default ack policy (`majority`) and `engine`.
    pub fn new(id: u64, peers: Vec<Peer>, engine: keel::Config) -> Self {
        NodeConfig {
            id,
            peers,
            ack_policy: AckPolicy::default(),
            engine,
            client_address: String::new(),
        }
    }
}

/// Who leads, in which term: the election's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// The term.
    pub term: u64,
    /// The leader's node id, if one is known.
    pub leader: Option<u64>,
}

/// A node's part in the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Elected, catching up from the most complete node before serving.
    Promoting,
    /// Serves clients and ships its journal.
    Leader,
}

/// A node's positions, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatus {
    /// Its role.
    pub role: Role,
    /// The term it knows.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// The highest term it accepts records from.
    pub fence: u64,
    /// Last sequence fed to its engine.
    pub last_sequence: u64,
    /// Last sequence durable in its journal.
    pub durable: u64,
    /// Last sequence its processor applied.
    pub applied: u64,
    /// The commit it knows (its own as leader, the leader's as follower).
    pub commit: u64,
}

/// Where a node that does not serve clients sends them (`NOT_LEADER`'s text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// Another node leads, at this client address.
    Leader(SocketAddr),
    /// This node was elected and serves once it has caught up: come back here.
    ThisNode,
    /// No leader known (an election is under way, or the leader's address was not learned).
    Unknown,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerStatus {
    /// Its node id.
    pub id: u64,
    /// The last sequence it holds durably that matches the leader's journal (this term).
    pub matched: u64,
}

/// What a metrics scrape reads of a node: its status, its followers (while it leads) and its
/// running engine's counters. Read from atomics and short locks; nothing on the hot path.
#[derive(Debug, Clone)]
pub struct NodeGauges {
    /// Role, term and positions.
    pub status: NodeStatus,
    /// Each follower's matched durable sequence, while this node leads (else empty).
    pub followers: Vec<FollowerStatus>,
    /// The running engine's counters (a new set after each engine restart).
    pub metrics: Metrics,
    /// The election reports this node campaigning (only from [`crate::Cluster::observer`];
    /// `false` from [`Node::observer`], which does not see the election).
    pub candidate: bool,
}

/// A cheap, cloneable handle that reads a node's [`NodeGauges`] (for a metrics endpoint); it
/// does not keep the node from stopping.
#[derive(Clone)]
pub struct NodeObserver(Arc<dyn Fn() -> NodeGauges + Send + Sync>);

impl NodeObserver {
    /// An observer reading `read` (to compose one from another).
    pub fn new(read: Arc<dyn Fn() -> NodeGauges + Send + Sync>) -> Self {
        NodeObserver(read)
    }

    /// The gauges now.
    pub fn read(&self) -> NodeGauges {
        (self.0)()
    }
}

impl std::fmt::Debug for NodeObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeObserver")
    }
}

/// Why a node could not start, submit or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The data plane failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// This node does not lead now (the leader, if known).
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's node id, if known.
        leader: Option<u64>,
    },
    /// The engine refused the message.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// Clients may not submit the engine's control kinds (term records among them).
    #[error("kind {0:#06x} is reserved for control messages")]
    ControlKind(u16),
    /// A node thread panicked.
    #[error("a node thread panicked")]
    Panicked,
    /// The engine configuration cannot run a cluster node.
    #[error("a cluster node needs {0}")]
    Unsupported(&'static str),
}

/// Events for the node's control thread.
enum Event {
    Leadership(Leadership),
    HigherTerm(u64),
    Stop,
}

struct State {
    role: Role,
    term: u64,
    leader: Option<u64>,
    follow_stream: Option<TcpStream>,
    run: Option<Arc<LeaderRun>>,
}

/// What every node thread shares.
pub(crate) struct Shared<P: Processor> {
    pub(crate) id: u64,
    pub(crate) peers: Vec<Peer>,
    pub(crate) policy: AckPolicy,
    pub(crate) client_address: String,
    /// Other nodes' client addresses, learned from their HELLOs (for redirects).
    client_addresses: Mutex<BTreeMap<u64, SocketAddr>>,
    /// The engine's journal directory (shippers read it without the engine's lock).
    pub(crate) journal_dir: std::path::PathBuf,
    /// The engine's snapshot directory (a shipper sends a snapshot from it).
    pub(crate) snapshot_dir: std::path::PathBuf,
    /// Records a follower is sent beyond what it may apply (half its ring).
    pub(crate) window: u64,
    local: Mutex<Local<P>>,
    metrics: Mutex<Metrics>,
    state: Mutex<State>,
    fence: AtomicU64,
    follow_generation: AtomicU64,
    /// The term this node leads (0: it does not).
    leading_term: Arc<AtomicU64>,
    /// Responses to messages after this sequence go out (`u64::MAX` unless leading: the
    /// leader's term record).
    answers_after: Arc<AtomicU64>,
    fed: AtomicU64,
    commit: AtomicU64,
    stopping: AtomicBool,
    events: Mutex<Sender<Event>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<P: Processor> Shared<P> {
    /// The engine (lock order: `state` before `local`).
    pub(crate) fn local(&self) -> MutexGuard<'_, Local<P>> {
        lock(&self.local)
    }

    /// The running engine's counters.
    pub(crate) fn metrics(&self) -> Metrics {
        lock(&self.metrics).clone()
    }

    /// The engine was restarted: its counters are new.
    pub(crate) fn engine_restarted(&self, local: &Local<P>) {
        *lock(&self.metrics) = local.metrics().clone();
        self.fed.store(local.end().0, Ordering::Release);
    }

    fn redirect(&self) -> Redirect {
        let state = lock(&self.state);
        match (state.role, state.leader) {
            (Role::Promoting | Role::Leader, _) => Redirect::ThisNode,
            (Role::Follower, Some(id)) if id != self.id => lock(&self.client_addresses)
                .get(&id)
                .map_or(Redirect::Unknown, |a| Redirect::Leader(*a)),
            (Role::Follower, _) => Redirect::Unknown,
        }
    }

    /// Status, followers and counters, read at once (short locks, no engine lock).
    fn gauges(&self) -> NodeGauges {
        let (role, term, leader, run) = {
            let state = lock(&self.state);
            (state.role, state.term, state.leader, state.run.clone())
        };
        let followers = run.map_or_else(Vec::new, |run| {
            self.peers
                .iter()
                .zip(&run.matched)
                .map(|(peer, matched)| FollowerStatus {
                    id: peer.id,
                    matched: matched.load(Ordering::Acquire),
                })
                .collect()
        });
        let metrics = self.metrics();
        let status = NodeStatus {
            role,
            term,
            leader,
            fence: self.fence(),
            last_sequence: self.fed(),
            durable: metrics.durable_sequence(),
            applied: metrics.applied_sequence(),
            commit: self.commit(),
        };
        NodeGauges {
            status,
            followers,
            metrics,
            candidate: false,
        }
    }

    pub(crate) fn fence(&self) -> u64 {
        self.fence.load(Ordering::Acquire)
    }

    pub(crate) fn set_fed(&self, sequence: u64) {
        self.fed.store(sequence, Ordering::Release);
    }

    pub(crate) fn fed(&self) -> u64 {
        self.fed.load(Ordering::Acquire)
    }

    pub(crate) fn note_commit(&self, commit: u64) {
        self.commit.fetch_max(commit, Ordering::AcqRel);
    }

    pub(crate) fn commit(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }

    /// A peer answered with a higher term: this node's leadership (if any) is over.
    pub(crate) fn higher_term(&self, term: u64) {
        self.fence.fetch_max(term, Ordering::AcqRel);
        let _ = lock(&self.events).send(Event::HigherTerm(term));
    }

    pub(crate) fn is_following(&self, generation: u64) -> bool {
        !self.stopping.load(Ordering::Acquire)
            && self.follow_generation.load(Ordering::Acquire) == generation
    }

    /// A leader of `term` says HELLO: accept it (stepping down if this node led an earlier
    /// term) and return the session's generation, or refuse with the fence term. A HELLO
    /// naming another leader than the one this node knows for `term` is refused too: a term
    /// has one leader, so one of the two is not it.
    pub(crate) fn begin_follow(
        &self,
        term: u64,
        leader: u64,
        stream: &TcpStream,
    ) -> Result<u64, u64> {
        let mut state = lock(&self.state);
        let fence = self.fence();
        let leads_it = state.role != Role::Follower && state.term >= term;
        let another_leader = (state.term == term)
            .then_some(state.leader)
            .flatten()
            .filter(|known| *known != leader);
        if let Some(known) = another_leader {
            tracing::warn!(
                term,
                leader,
                known,
                "cluster: refusing a HELLO: another node leads this term"
            );
        }
        let refused = term < fence || leads_it || another_leader.is_some();
        if refused || self.stopping.load(Ordering::Acquire) {
            return Err(fence.max(state.term));
        }
        let deposed = self.take_leadership(&mut state);
        self.fence.fetch_max(term, Ordering::AcqRel);
        state.term = term;
        state.leader = Some(leader);
        let generation = self.follow_generation.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(old) = state
            .follow_stream
            .replace(stream.try_clone().map_err(|_| fence)?)
        {
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
        drop(state);
        if let Some(run) = deposed {
            self.finish_step_down(&run);
        }
        Ok(generation)
    }

    /// A node's HELLO named its client address: remember it for redirects. An unspecified IP
    /// (a leader listening on `0.0.0.0`) is replaced by the IP the HELLO came from.
    pub(crate) fn learn_client_address(&self, node: u64, address: &str, from: Option<SocketAddr>) {
        let Ok(mut address) = address.parse::<SocketAddr>() else {
            return;
        };
        if address.ip().is_unspecified() {
            match from {
                Some(from) => address.set_ip(from.ip()),
                None => return,
            }
        }
        lock(&self.client_addresses).insert(node, address);
    }

    /// A follow session ended.
    pub(crate) fn end_follow(&self, generation: u64) {
        let mut state = lock(&self.state);
        if self.follow_generation.load(Ordering::Acquire) == generation {
            state.follow_stream = None;
        }
    }

    /// Under the state lock: ends this node's leadership (or promotion) at once; the gate
    /// stops before it returns. Returns the term's run to join outside the lock.
    fn take_leadership(&self, state: &mut State) -> Option<Arc<LeaderRun>> {
        if state.role == Role::Follower {
            return None;
        }
        self.leading_term.store(0, Ordering::Release);
        self.answers_after.store(u64::MAX, Ordering::Release);
        state.role = Role::Follower;
        let run = state.run.take();
        if let Some(run) = &run {
            run.stop();
            tracing::warn!(term = run.term, "deposed: leadership ended");
        }
        run
    }

    /// Joins the ended term's threads and restarts the engine as a follower's (a halt drops
    /// what the gate never released; recovery replays the journal).
    fn finish_step_down(&self, run: &LeaderRun) {
        run.join();
        let mut local = self.local();
        if let Err(e) = local.restart() {
            tracing::error!(error = %e, "restarting the engine after deposition failed");
        }
        self.engine_restarted(&local);
    }

    /// Ends the current follow session (a promotion, a shutdown).
    fn cut_follow(&self, state: &mut State) {
        self.follow_generation.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = state.follow_stream.take() {
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A handle the client-facing server submits through: it accepts messages only while this
/// node leads.
pub struct LeaderHandle<P: Processor> {
    shared: Arc<Shared<P>>,
}

impl<P: Processor> Clone for LeaderHandle<P> {
    fn clone(&self) -> Self {
        LeaderHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<P: Processor> LeaderHandle<P> {
    /// Submits a client's message if this node leads; returns its sequence. Its response
    /// reaches the node's response sink once the ack policy holds.
    pub fn submit(&self, to: Submission, payload: &[u8]) -> Result<u64, NodeError> {
        if to.kind >= keel::engine::CONTROL_KIND_MIN {
            return Err(NodeError::ControlKind(to.kind));
        }
        let run = {
            let state = lock(&self.shared.state);
            match (&state.role, &state.run) {
                (Role::Leader, Some(run)) if run.running() => run.clone(),
                _ => {
                    return Err(NodeError::NotLeader {
                        leader: state.leader,
                    })
                }
            }
        };
        // Never block holding the engine's lock: a full ring waits on the gate, and a
        // deposition needs the lock to halt the engine.
        let mut backoff = Duration::from_micros(10);
        loop {
            if !run.running() {
                return Err(NodeError::NotLeader { leader: None });
            }
            match self.shared.local().try_submit(to, payload) {
                Ok(sequence) => {
                    self.shared.set_fed(sequence);
                    run.published.fetch_max(sequence, Ordering::AcqRel);
                    run.poke_all();
                    return Ok(sequence);
                }
                Err(SubmitError::Full) => {
                    run.poke();
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        self.shared.leading_term.load(Ordering::Acquire) != 0
    }
}

/// A handle the cluster's acceptor hands data connections to (clone it freely).
pub struct DataAcceptor<P: Processor> {
    shared: Arc<Shared<P>>,
    sessions: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl<P: Processor> Clone for DataAcceptor<P> {
    fn clone(&self) -> Self {
        DataAcceptor {
            shared: self.shared.clone(),
            sessions: self.sessions.clone(),
        }
    }
}

impl<P: Processor> DataAcceptor<P> {
    /// Serves a connection whose channel byte was `b'D'` (already read) on the calling
    /// thread, until the session ends (for an acceptor that gives each connection a thread,
    /// like the election's `DataHandler`).
    pub fn serve(&self, stream: TcpStream) {
        if let Err(e) = follower::serve(&self.shared, stream) {
            tracing::debug!(error = %e, "data session ended");
        }
    }

    /// Serves a connection whose channel byte was `b'D'` (already read), on a thread of its
    /// own.
    pub fn accept(&self, stream: TcpStream) {
        let shared = self.shared.clone();
        let session = std::thread::Builder::new()
            .name("keel-data-follow".into())
            .spawn(move || {
                if let Err(e) = follower::serve(&shared, stream) {
                    tracing::debug!(error = %e, "data session ended");
                }
            });
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| !s.is_finished());
        if let Ok(session) = session {
            sessions.push(session);
        }
    }
}

/// A running cluster node.
pub struct Node<P: Processor> {
    shared: Arc<Shared<P>>,
    control: Option<JoinHandle<()>>,
    sessions: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl<P: Processor> Node<P> {
    /// Starts the node's engine (recovering its journal) as a follower waiting for a leader.
    /// `make` builds each engine start's processor; `responses` receives the engine's
    /// responses (a leader's are the clients' replies; a follower's engine answers no one).
    /// The engine must have `Producers::Single` and keep its responses.
    pub fn start(
        config: NodeConfig,
        make: impl Fn() -> P + Send + Sync + 'static,
        responses: ResponseSink,
    ) -> Result<Self, NodeError> {
        if config.engine.producers != keel::Producers::Single || config.engine.discard_responses {
            // The node feeds the engine through its one submitter and reads its responses.
            return Err(NodeError::Unsupported(
                "Producers::Single and responses not discarded",
            ));
        }
        let make: MakeProcessor<P> = Arc::new(make);
        let leading_term = Arc::new(AtomicU64::new(0));
        let answers_after = Arc::new(AtomicU64::new(u64::MAX));
        let after = answers_after.clone();
        // A follower's engine answers no one, and a leader answers only the messages it
        // took from clients (after its term record), not the history it caught up on.
        let filtered: ResponseSink = Arc::new(move |response| {
            if response.header.sequence > after.load(Ordering::Acquire) {
                responses(response);
            }
        });
        let local = Local::start(config.engine.clone(), make, filtered)?;
        let (events, rx) = channel();
        let shared = Arc::new(Shared {
            id: config.id,
            peers: config.peers,
            policy: config.ack_policy,
            client_address: config.client_address,
            client_addresses: Mutex::default(),
            journal_dir: config.engine.journal_dir.clone(),
            snapshot_dir: config.engine.snapshot_dir.clone(),
            window: (config.engine.ring_capacity / 2) as u64,
            metrics: Mutex::new(local.metrics().clone()),
            fence: AtomicU64::new(local.last_term()),
            fed: AtomicU64::new(local.end().0),
            local: Mutex::new(local),
            state: Mutex::new(State {
                role: Role::Follower,
                term: 0,
                leader: None,
                follow_stream: None,
                run: None,
            }),
            follow_generation: AtomicU64::new(0),
            leading_term,
            answers_after,
            commit: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            events: Mutex::new(events),
        });
        let control = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("keel-data-control".into())
                .spawn(move || control(&shared, &rx))
                .map_err(DataError::Io)?
        };
        Ok(Node {
            shared,
            control: Some(control),
            sessions: Arc::default(),
        })
    }

    /// The handle the cluster's acceptor gives `b'D'` connections to.
    pub fn data_acceptor(&self) -> DataAcceptor<P> {
        DataAcceptor {
            shared: self.shared.clone(),
            sessions: self.sessions.clone(),
        }
    }

    /// Reports who leads in which term (from the election). Acted on by the node's control
    /// thread, in order: this node promotes itself, steps down, or waits for the leader.
    pub fn on_leadership(&self, leadership: Leadership) {
        let _ = lock(&self.shared.events).send(Event::Leadership(leadership));
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        lock(&self.shared.state).role
    }

    /// Role, term and positions now.
    pub fn status(&self) -> NodeStatus {
        self.shared.gauges().status
    }

    /// Where this node sends clients while it does not serve them.
    pub fn redirect(&self) -> Redirect {
        self.shared.redirect()
    }

    /// [`Node::redirect`] as a function that does not keep the node from stopping (for the
    /// client address's redirector).
    pub fn redirect_target(&self) -> Arc<dyn Fn() -> Redirect + Send + Sync> {
        let shared = self.shared.clone();
        Arc::new(move || shared.redirect())
    }

    /// A handle that reads this node's gauges at any time (a metrics scrape).
    pub fn observer(&self) -> NodeObserver {
        let shared = self.shared.clone();
        NodeObserver(Arc::new(move || shared.gauges()))
    }

    /// For a client-facing server: the engine's submitter and response receiver, while this
    /// node leads `term` (checked under the role's lock, so a step-down cannot slip between).
    /// The server then submits clients' messages itself; the commit gate still holds their
    /// responses until the ack policy holds. `None` if this node does not lead `term` (or the
    /// parts were taken already). A step-down halts the engine, which ends that server's
    /// input and output; the follower's engine started next has its own parts.
    pub fn take_client_parts(
        &self,
        term: u64,
    ) -> Option<(keel::Submitter, keel::engine::ResponseReceiver)> {
        let state = lock(&self.shared.state);
        let leads = state.role == Role::Leader
            && state.term == term
            && state.run.as_ref().is_some_and(|run| run.running());
        if !leads {
            return None;
        }
        let parts = self.shared.local().take_client_parts();
        drop(state);
        parts
    }

    /// What a client-facing server calls after it submitted messages itself (see
    /// [`Node::take_client_parts`]): wakes this term's committer and shippers, as
    /// [`LeaderHandle::submit`] does. Holds the node's shared state, not the node.
    pub fn submit_waker(&self) -> std::sync::Arc<dyn Fn() + Send + Sync> {
        let shared = self.shared.clone();
        std::sync::Arc::new(move || {
            let run = lock(&shared.state).run.clone();
            if let Some(run) = run {
                run.poke_all();
            }
        })
    }

    /// The handle that submits while this node leads.
    pub fn leader_handle(&self) -> LeaderHandle<P> {
        LeaderHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops everything; returns the processor with the state it applied (committed
    /// messages only), or `None` if the engine was down.
    pub fn shutdown(mut self) -> Result<Option<P>, NodeError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<Option<P>, NodeError> {
        self.shared.stopping.store(true, Ordering::Release);
        let _ = lock(&self.shared.events).send(Event::Stop);
        if let Some(control) = self.control.take() {
            control.join().map_err(|_| NodeError::Panicked)?;
        }
        let run = {
            let mut state = lock(&self.shared.state);
            self.shared.cut_follow(&mut state);
            self.shared.take_leadership(&mut state)
        };
        if let Some(run) = run {
            run.join();
        }
        let sessions = std::mem::take(&mut *lock(&self.sessions));
        for s in sessions {
            let _ = s.join();
        }
        Ok(self.shared.local().halt()?)
    }
}

impl<P: Processor> Drop for Node<P> {
    fn drop(&mut self) {
        if self.control.is_some() {
            let _ = self.stop();
        }
    }
}

/// The node's control thread: leadership reports and higher terms, in order.
fn control<P: Processor>(node: &Arc<Shared<P>>, events: &Receiver<Event>) {
    while let Ok(event) = events.recv() {
        match event {
            Event::Stop => return,
            Event::Leadership(l) => on_leadership(node, l),
            Event::HigherTerm(term) => {
                if node.leading_term.load(Ordering::Acquire) < term {
                    step_down(node, term, None);
                }
            }
        }
    }
}

fn on_leadership<P: Processor>(node: &Arc<Shared<P>>, l: Leadership) {
    node.fence.fetch_max(l.term, Ordering::AcqRel);
    if l.leader == Some(node.id) {
        if node.leading_term.load(Ordering::Acquire) != l.term {
            promote::promote(node, l.term);
        }
        return;
    }
    step_down(node, l.term, l.leader);
}

/// Ends this node's leadership if it has one; records who leads `term`.
fn step_down<P: Processor>(node: &Shared<P>, term: u64, leader: Option<u64>) {
    let run = {
        let mut state = lock(&node.state);
        if term < state.term {
            return;
        }
        let run = node.take_leadership(&mut state);
        if term > state.term || leader.is_some() {
            state.term = term;
            state.leader = leader;
        }
        run
    };
    if let Some(run) = run {
        node.finish_step_down(&run);
    }
}

/// Accepts connections on a cluster address and hands each data connection (first byte
/// `b'D'`) to `data`; others are closed. For tests and until the shared acceptor (election
/// and data) takes over. Ends when `stop` is set (within ~10 ms).
pub fn serve_data_only<P: Processor>(
    listener: TcpListener,
    data: DataAcceptor<P>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("keel-cluster-accept".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => dispatch(stream, &data),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
}

fn dispatch<P: Processor>(mut stream: TcpStream, data: &DataAcceptor<P>) {
    use std::io::Read;
    let mut channel = [0u8; 1];
    let ok = stream.set_nonblocking(false).is_ok()
        && stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .is_ok()
        && stream.read_exact(&mut channel).is_ok();
    if ok && channel[0] == CHANNEL_DATA {
        data.accept(stream);
    }
}
