//! Replication's cost on loopback, in one process: one node alone (ack policy `leader`)
//! against three nodes (`majority`), same run, same processor, same engine settings.
//!
//! Two measurements per setup: throughput (N messages submitted as fast as back-pressure
//! allows; messages/s until the last response) and acknowledgement latency (one message at a
//! time: submit to response, p50 and p99).
//!
//! `cargo run --release -p keel-cluster --example replication_cost -- [messages] [pings]`

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::engine::{Message, Response};
use keel::snapshot::StateError;
use keel::{Outcome, Output, Processor, Submission};
use keel_cluster::acceptor::{Acceptor, Route};
use keel_cluster::node::DataAcceptor;
use keel_cluster::{AckPolicy, Leadership, Node, NodeConfig, Peer, Role};

#[derive(Default)]
struct Tally(u64);

impl Processor for Tally {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        self.0 = self.0.wrapping_add(message.payload.len() as u64 + 1);
        let _ = out.write(&self.0.to_le_bytes());
        Outcome::Accepted
    }
    fn state_hash(&self) -> u64 {
        self.0
    }
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), keel::codec::CodecError> {
        out.extend_from_slice(&self.0.to_le_bytes());
        Ok(())
    }
    fn load_state(&mut self, _: u32, bytes: &[u8]) -> Result<(), StateError> {
        let b: [u8; 8] = bytes
            .try_into()
            .map_err(|_| StateError::Invalid("8 bytes".into()))?;
        self.0 = u64::from_le_bytes(b);
        Ok(())
    }
}

/// Responses seen (correlation ids > 0) and when the last one came.
#[derive(Default)]
struct Seen {
    count: AtomicU64,
}

struct Setup {
    nodes: Vec<Node<Tally>>,
    seen: Arc<Seen>,
    _acceptors: Vec<Acceptor>,
    _root: tempfile::TempDir,
}

/// Hands each data connection on `listener` to `node` (the library's acceptor; election
/// connections are closed: these nodes are told who leads).
fn accept(listener: TcpListener, node: DataAcceptor<Tally>) -> Acceptor {
    let data: Route = Arc::new(move |stream| node.accept(stream));
    Acceptor::start(listener, Arc::new(drop::<TcpStream>), data).expect("acceptor")
}

fn setup(n: usize, policy: AckPolicy) -> Setup {
    let root = tempfile::tempdir().expect("tempdir");
    let mut acceptors = Vec::new();
    let seen = Arc::new(Seen::default());
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let addresses: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let peers = (0..n)
            .filter(|j| *j != i)
            .map(|j| Peer {
                id: j as u64 + 1,
                address: addresses[j],
            })
            .collect();
        let mut engine = keel::Config::with_data_dir(root.path().join(format!("node{id}")));
        engine.ring_capacity = 4096;
        engine.output_ring_capacity = 4096;
        let mut config = NodeConfig::new(id, peers, engine);
        config.ack_policy = policy;
        let seen = seen.clone();
        let sink = Arc::new(move |r: Response<'_>| {
            if r.header.correlation_id > 0 {
                seen.count.fetch_add(1, Ordering::AcqRel);
            }
        });
        let node = Node::start(config, Tally::default, sink).expect("start");
        acceptors.push(accept(listener, node.data_acceptor()));
        nodes.push(node);
    }
    for node in &nodes {
        node.on_leadership(Leadership {
            term: 1,
            leader: Some(1),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[0].role() != Role::Leader && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(nodes[0].role(), Role::Leader, "node 1 leads");
    Setup {
        nodes,
        seen,
        _acceptors: acceptors,
        _root: root,
    }
}

fn wait_seen(seen: &Seen, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.count.load(Ordering::Acquire) < count {
        assert!(
            Instant::now() < deadline,
            "responses stopped at {}",
            seen.count.load(Ordering::Acquire)
        );
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}

fn run(label: &str, n: usize, policy: AckPolicy, messages: u64, pings: u64) {
    let s = setup(n, policy);
    let handle = s.nodes[0].leader_handle();
    let payload = [7u8; 64];
    let mut correlation = 0u64;
    let mut submit = || {
        correlation += 1;
        let to = Submission {
            kind: 1,
            correlation_id: correlation,
            ..Submission::default()
        };
        handle.submit(to, &payload).expect("leader accepts");
    };
    // Warm-up.
    for _ in 0..1000 {
        submit();
    }
    wait_seen(&s.seen, 1000);
    let started = Instant::now();
    for _ in 0..messages {
        submit();
    }
    wait_seen(&s.seen, 1000 + messages);
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(pings as usize);
    for i in 0..pings {
        let t = Instant::now();
        submit();
        wait_seen(&s.seen, 1000 + messages + i + 1);
        latencies.push(t.elapsed().as_nanos() as u64);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)] as f64 / 1000.0
    };
    println!(
        "{label:<28} {:>10.0} msg/s   ack p50 {:>7.1} us   p99 {:>7.1} us",
        messages as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    for node in s.nodes {
        let _ = node.shutdown();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let pings: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    println!("{messages} messages (64-byte payloads) for throughput, {pings} one at a time for latency; flush batch (fdatasync per group commit)");
    run("1 node, ack leader", 1, AckPolicy::Leader, messages, pings);
    run(
        "3 nodes, ack majority",
        3,
        AckPolicy::Majority,
        messages,
        pings,
    );
    run("3 nodes, ack all", 3, AckPolicy::All, messages, pings);
}
