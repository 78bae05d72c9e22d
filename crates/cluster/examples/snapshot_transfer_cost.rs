//! What a snapshot transfer costs on loopback, in one process: three nodes run the bookstore,
//! the leader deletes its retired journal segments (`JournalRetention::Delete`); node 3 starts
//! from an empty disk once the leader's journal no longer starts at 1, so it catches up through
//! the leader's newest snapshot. Prints the snapshot's size, the time from node 3's start
//! until the snapshot is installed (sent, checked, installed, restored), and until node 3 has
//! applied everything the leader holds.
//!
//! `cargo run --release -p keel-cluster --example snapshot_transfer_cost -- [orders]`

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::engine::Response;
use keel::journal::JournalRetention;
use keel::{Submission, Typed};
use keel_cluster::acceptor::{Acceptor, Route};
use keel_cluster::data::log;
use keel_cluster::node::DataAcceptor;
use keel_cluster::{AckPolicy, Leadership, Node, NodeConfig, Peer, Role};
use keel_services::bookstore::{workload, Bookstore};
use keel_services::App;

type Store = Typed<Bookstore>;
type Slot = Arc<Mutex<Option<DataAcceptor<Store>>>>;

const SEED: u64 = 7;
const LIMIT: Duration = Duration::from_secs(300);

/// Hands each data connection on `listener` to the node in `slot` now (the library's
/// acceptor; election connections are closed: these nodes are told who leads).
fn accept(listener: TcpListener, slot: Slot) -> Acceptor {
    let data: Route = Arc::new(move |stream| {
        if let Some(d) = slot.lock().expect("lock").clone() {
            d.accept(stream);
        }
    });
    Acceptor::start(listener, Arc::new(drop::<TcpStream>), data).expect("acceptor")
}

fn engine_config(dir: &Path, snapshot_interval_messages: u64) -> keel::Config {
    let mut engine = keel::Config::with_data_dir(dir);
    engine.ring_capacity = 4096;
    engine.output_ring_capacity = 4096;
    engine.segment_size_bytes = 4 << 20;
    engine.snapshot_interval_messages = snapshot_interval_messages;
    engine.snapshot_retain = 1;
    engine.journal_retention = JournalRetention::Delete;
    engine
}

fn start(
    id: u64,
    addresses: &[SocketAddr],
    dir: &Path,
    interval: u64,
    seen: &Arc<AtomicU64>,
) -> Node<Store> {
    let peers = (1..=addresses.len() as u64)
        .filter(|p| *p != id)
        .map(|p| Peer {
            id: p,
            address: addresses[p as usize - 1],
        })
        .collect();
    let mut config = NodeConfig::new(id, peers, engine_config(dir, interval));
    config.ack_policy = AckPolicy::Majority;
    let seen = seen.clone();
    let sink = Arc::new(move |r: Response<'_>| {
        if r.header.correlation_id > 0 {
            seen.fetch_add(1, Ordering::AcqRel);
        }
    });
    Node::start(config, Store::default, sink).expect("start")
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Times node 3's catch-up from its start: until it receives a snapshot, until it runs from
/// it, until it applied `last`.
fn watch(third: &Node<Store>, dir: &Path, last: u64) -> (Duration, Duration, Duration) {
    let t0 = Instant::now();
    let journal3 = dir.join("journal");
    let snapshots3 = dir.join("snapshots");
    wait("node 3 to receive a snapshot", || {
        std::fs::read_dir(&snapshots3).is_ok_and(|d| {
            d.filter_map(Result::ok).any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(".transfer.snap.tmp")
            })
        })
    });
    let receiving = t0.elapsed();
    wait("node 3 to install a snapshot", || {
        let first = log::first_sequence(&journal3).unwrap_or(1);
        first > 1 && third.status().applied >= first - 1
    });
    let installed = t0.elapsed();
    wait("node 3 to catch up", || third.status().applied >= last);
    let caught_up = t0.elapsed();
    (receiving, installed, caught_up)
}

/// Submits the setup and `messages` workload messages through the leader and waits for every
/// response; returns how many were submitted.
fn load(
    leader: &Node<Store>,
    seen: &AtomicU64,
    setup: &[keel_services::Command],
    messages: u64,
) -> u64 {
    let handle = leader.leader_handle();
    let mut correlation = 0u64;
    let mut buf = [0u8; workload::MAX_PAYLOAD_BYTES];
    for command in setup {
        correlation += 1;
        let to = Submission {
            kind: command.kind,
            version: command.version,
            correlation_id: correlation,
            ..Submission::default()
        };
        handle.submit(to, &command.payload).expect("leader accepts");
    }
    for i in 0..messages {
        let (kind, version, len) = workload::encode(SEED, i, &mut buf);
        correlation += 1;
        let to = Submission {
            kind: kind.number(),
            version,
            correlation_id: correlation,
            ..Submission::default()
        };
        handle.submit(to, &buf[..len]).expect("leader accepts");
    }
    wait("every response", || {
        seen.load(Ordering::Acquire) >= correlation
    });
    correlation
}

/// Prints the installed snapshot's size and the times `watch` measured.
fn report(dir: &Path, leader_journal: &Path, last: u64, times: (Duration, Duration, Duration)) {
    let (receiving, installed, caught_up) = times;
    let journal3 = dir.join("journal");
    let sequence = log::first_sequence(&journal3).expect("journal") - 1;
    let bytes = std::fs::metadata(
        dir.join("snapshots")
            .join(keel::snapshot::file_name(sequence)),
    )
    .expect("the installed snapshot")
    .len();
    let mb = bytes as f64 / (1 << 20) as f64;
    println!(
        "snapshot sent at sequence {sequence}: {bytes} bytes ({mb:.1} MiB); the leader's journal \
         starts at {}",
        log::first_sequence(leader_journal).unwrap_or(0)
    );
    let transfer = installed - receiving;
    println!(
        "node 3 from an empty disk: receiving began after {:.0} ms (connect, HELLO, probes); \
         sent, checked, installed and restored {:.0} ms later ({:.0} MiB/s); caught up to \
         {last} after {:.0} ms in all",
        receiving.as_secs_f64() * 1e3,
        transfer.as_secs_f64() * 1e3,
        mb / transfer.as_secs_f64(),
        caught_up.as_secs_f64() * 1e3
    );
}

fn main() {
    let orders: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("orders"));
    let messages = orders * workload::BLOCK / workload::ORDERS_PER_BLOCK;
    let root = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| root.path().join(format!("node{i}")))
        .collect();
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let addresses: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let slots: Vec<Slot> = (0..3).map(|_| Arc::new(Mutex::new(None))).collect();
    let _acceptors: Vec<Acceptor> = listeners
        .into_iter()
        .zip(&slots)
        .map(|(listener, slot)| accept(listener, slot.clone()))
        .collect();
    // A snapshot near the end of the load: the one node 3 receives covers almost all of it.
    let setup = Store::setup(SEED);
    let interval = (setup.len() as u64 + messages) / 2;
    let seen = Arc::new(AtomicU64::new(0));
    let mut nodes: Vec<Node<Store>> = (1..=2)
        .map(|id| start(id, &addresses, &dirs[id as usize - 1], interval, &seen))
        .collect();
    for (node, slot) in nodes.iter().zip(&slots) {
        *slot.lock().unwrap() = Some(node.data_acceptor());
    }
    for node in &nodes {
        node.on_leadership(Leadership {
            term: 1,
            leader: Some(1),
        });
    }
    wait("node 1 to lead", || nodes[0].role() == Role::Leader);
    let loading = Instant::now();
    let correlation = load(&nodes[0], &seen, &setup, messages);
    println!(
        "loaded {orders} orders ({} messages) into 2 of 3 nodes in {:.1} s",
        correlation,
        loading.elapsed().as_secs_f64()
    );
    let journal = dirs[0].join("journal");
    // Both snapshots written and the journal retired up to the second: the leader is quiet.
    wait(
        "the leader to retire its journal up to its second snapshot",
        || log::first_sequence(&journal).unwrap_or(1) > interval + 1,
    );
    let last = nodes[0].status().last_sequence;
    let third = start(3, &addresses, &dirs[2], interval, &seen);
    *slots[2].lock().unwrap() = Some(third.data_acceptor());
    third.on_leadership(Leadership {
        term: 1,
        leader: Some(1),
    });
    let (receiving, installed, caught_up) = watch(&third, &dirs[2], last);
    report(&dirs[2], &journal, last, (receiving, installed, caught_up));
    nodes.push(third);
    for node in nodes {
        let _ = node.shutdown();
    }
}
