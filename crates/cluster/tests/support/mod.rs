//! A cluster of data-plane nodes in one test process, on loopback, with leadership driven by
//! hand. Every wait is bounded in time and parks or sleeps; nothing is timed as an assertion.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::engine::{Message, Response};
use keel::snapshot::StateError;
use keel::{Outcome, Output, Processor, Submission};
use keel_cluster::acceptor::{Acceptor, Route};
use keel_cluster::data::log::LogCursor;
use keel_cluster::node::DataAcceptor;
use keel_cluster::{AckPolicy, Leadership, Node, NodeConfig, Peer, Role};

/// A small processor: counts messages and folds their payloads into a digest.
#[derive(Default)]
pub struct Tally {
    pub count: u64,
    pub digest: u64,
}

impl Processor for Tally {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        self.count += 1;
        for b in message.payload {
            self.digest = (self.digest ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        let _ = out.write(&self.count.to_le_bytes());
        Outcome::Accepted
    }
    fn state_hash(&self) -> u64 {
        self.digest ^ self.count.rotate_left(32)
    }
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), keel::codec::CodecError> {
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.digest.to_le_bytes());
        Ok(())
    }
    fn load_state(&mut self, _: u32, bytes: &[u8]) -> Result<(), StateError> {
        if bytes.len() != 16 {
            return Err(StateError::Invalid("16 bytes".into()));
        }
        self.count = u64::from_le_bytes(bytes[..8].try_into().expect("8"));
        self.digest = u64::from_le_bytes(bytes[8..].try_into().expect("8"));
        Ok(())
    }
}

/// Responses a node's engine released (correlation ids > 0 only: client messages).
#[derive(Default)]
pub struct Responses {
    pub count: AtomicU64,
}

/// Waits (parking in short sleeps) until `done` holds or `timeout` passes; returns `done()`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

pub const LONG: Duration = Duration::from_secs(60);

pub struct TestNode {
    pub id: u64,
    pub dir: PathBuf,
    pub address: SocketAddr,
    pub node: Option<Node<Tally>>,
    pub responses: Arc<Responses>,
    current: Arc<Mutex<Option<DataAcceptor<Tally>>>>,
}

pub struct Cluster {
    pub nodes: Vec<TestNode>,
    pub policy: AckPolicy,
    /// Applied to every node's engine configuration at each start.
    pub tweak: fn(&mut keel::Config),
    _root: tempfile::TempDir,
    acceptors: Vec<Acceptor>,
}

pub fn engine_config(dir: &Path) -> keel::Config {
    let mut c = keel::Config::with_data_dir(dir);
    c.ring_capacity = 1024;
    c.output_ring_capacity = 1024;
    c.segment_size_bytes = 256 << 10;
    c.wait = keel::WaitStrategy::default();
    c
}

/// Accepts on `listener` for the whole test (the library's acceptor), handing data
/// connections to whichever node runs on it now (none: the connection is closed); election
/// connections are closed: these nodes are told who leads.
fn acceptor(listener: TcpListener, current: Arc<Mutex<Option<DataAcceptor<Tally>>>>) -> Acceptor {
    let data: Route = Arc::new(move |stream| {
        let target = current.lock().expect("lock").clone();
        if let Some(data) = target {
            data.accept(stream);
        }
    });
    Acceptor::start(listener, Arc::new(drop::<TcpStream>), data).expect("acceptor")
}

impl Cluster {
    pub fn new(n: u64, policy: AckPolicy) -> Cluster {
        Cluster::with_config(n, policy, |_| {})
    }

    /// A cluster whose engines' configurations pass through `tweak`.
    pub fn with_config(n: u64, policy: AckPolicy, tweak: fn(&mut keel::Config)) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let mut nodes = Vec::new();
        let mut acceptors = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let current = Arc::new(Mutex::new(None));
            let address = listener.local_addr().expect("addr");
            acceptors.push(acceptor(listener, current.clone()));
            nodes.push(TestNode {
                id: i as u64 + 1,
                dir: root.path().join(format!("node{}", i + 1)),
                address,
                node: None,
                responses: Arc::default(),
                current,
            });
        }
        let mut cluster = Cluster {
            nodes,
            policy,
            tweak,
            _root: root,
            acceptors,
        };
        for id in 1..=n {
            cluster.start(id);
        }
        cluster
    }

    pub fn peers_of(&self, id: u64) -> Vec<Peer> {
        self.nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| Peer {
                id: n.id,
                address: n.address,
            })
            .collect()
    }

    pub fn start(&mut self, id: u64) {
        let peers = self.peers_of(id);
        let (policy, tweak) = (self.policy, self.tweak);
        let n = &mut self.nodes[id as usize - 1];
        let mut engine = engine_config(&n.dir);
        tweak(&mut engine);
        let mut config = NodeConfig::new(id, peers, engine);
        config.ack_policy = policy;
        let responses = n.responses.clone();
        let sink = Arc::new(move |r: Response<'_>| {
            if r.header.correlation_id > 0 {
                responses.count.fetch_add(1, Ordering::AcqRel);
            }
        });
        let node = Node::start(config, Tally::default, sink).expect("node starts");
        *n.current.lock().expect("lock") = Some(node.data_acceptor());
        n.node = Some(node);
    }

    /// Stops node `id`; returns its processor.
    pub fn stop(&mut self, id: u64) -> Option<Tally> {
        let n = &mut self.nodes[id as usize - 1];
        *n.current.lock().expect("lock") = None;
        n.node
            .take()
            .and_then(|node| node.shutdown().expect("clean stop"))
    }

    pub fn node(&self, id: u64) -> &Node<Tally> {
        self.nodes[id as usize - 1].node.as_ref().expect("running")
    }

    pub fn responses(&self, id: u64) -> u64 {
        self.nodes[id as usize - 1]
            .responses
            .count
            .load(Ordering::Acquire)
    }

    /// Tells every running node in `to` that `leader` leads `term`.
    pub fn report(&self, term: u64, leader: u64, to: &[u64]) {
        for id in to {
            self.node(*id).on_leadership(Leadership {
                term,
                leader: Some(leader),
            });
        }
    }

    /// Reports `leader` of `term` to every running node and waits until it leads.
    pub fn elect(&self, term: u64, leader: u64) {
        let running: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| n.node.is_some())
            .map(|n| n.id)
            .collect();
        self.report(term, leader, &running);
        assert!(
            wait_until(LONG, || self.node(leader).role() == Role::Leader),
            "node {leader} leads term {term}"
        );
    }

    /// Submits `count` messages through `leader` (distinct payloads from `first`).
    pub fn submit(&self, leader: u64, first: u64, count: u64) {
        let handle = self.node(leader).leader_handle();
        for i in first..first + count {
            let to = Submission {
                kind: 1,
                correlation_id: i + 1,
                ..Submission::default()
            };
            handle
                .submit(to, &i.to_le_bytes())
                .expect("the leader accepts");
        }
    }

    /// Waits until every node in `ids` applied up to `sequence`.
    pub fn wait_applied(&self, ids: &[u64], sequence: u64) {
        for id in ids {
            let node = self.node(*id);
            let ok = wait_until(LONG, || node.status().applied >= sequence);
            assert!(
                ok,
                "node {id} applies up to {sequence}: {:?}",
                node.status()
            );
        }
    }

    /// Every record of node `id`'s journal, as journaled bytes.
    pub fn journal_bytes(&self, id: u64) -> Vec<u8> {
        let dir = self.nodes[id as usize - 1].dir.join("journal");
        let mut cursor = LogCursor::open(&dir, 1).expect("open");
        let mut out = Vec::new();
        while cursor.next_into(&mut out).expect("read").is_some() {}
        out
    }

    pub fn chain_at(&self, id: u64, sequence: u64) -> keel_cluster::data::frame::ChainStatus {
        let dir = self.nodes[id as usize - 1].dir.join("journal");
        keel_cluster::data::log::chain_at(&dir, sequence).expect("chain")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            *n.current.lock().expect("lock") = None;
            if let Some(node) = n.node.take() {
                let _ = node.shutdown();
            }
        }
        for mut a in self.acceptors.drain(..) {
            a.stop();
        }
    }
}
