//! The election on loopback: several nodes in one process, each with its own runtime.
//! Every wait is bounded (a leader within 10 s, ...); nothing asserts on speed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use keel_cluster::election::{Election, ElectionConfig, Leadership, CHANNEL_DATA, CHANNEL_RAFT};

const AGREE_WITHIN: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

struct Node {
    id: u64,
    dir: PathBuf,
    election: Option<Election>,
}

impl Node {
    fn election(&self) -> &Election {
        self.election.as_ref().expect("node is running")
    }
}

/// Reserves one loopback address per node (bound, then released for the node to bind).
fn addresses(n: u64) -> BTreeMap<u64, SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    (1..=n)
        .zip(listeners.iter())
        .map(|(id, l)| (id, l.local_addr().unwrap()))
        .collect()
}

/// Binds `addr`, retrying a little (the previous owner of the port may still be closing).
fn bind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr) {
            return l;
        }
        thread::sleep(POLL);
    }
    panic!("cannot bind {addr}");
}

fn start(id: u64, peers: &BTreeMap<u64, SocketAddr>, dir: &Path) -> Election {
    let election = Election::start(ElectionConfig::new(id, peers.clone(), dir)).unwrap();
    election.serve(bind(peers[&id]), Box::new(|_| {})).unwrap();
    election
}

fn cluster(n: u64, root: &Path) -> (BTreeMap<u64, SocketAddr>, Vec<Node>) {
    let peers = addresses(n);
    let nodes = (1..=n)
        .map(|id| {
            let dir = root.join(format!("node{id}"));
            let election = Some(start(id, &peers, &dir));
            Node { id, dir, election }
        })
        .collect();
    (peers, nodes)
}

/// Waits (parked, bounded by `within`) until every running node names the same leader in the
/// same term and exactly one of them is that leader; returns (term, leader).
fn agreement(nodes: &[&Node], within: Duration) -> Option<(u64, u64)> {
    let deadline = Instant::now() + within;
    let max_rounds = within.as_millis() / POLL.as_millis() + 1;
    for _ in 0..max_rounds {
        let seen: Vec<Leadership> = nodes.iter().map(|n| n.election().leadership()).collect();
        let first = seen[0];
        let same = seen
            .iter()
            .all(|l| l.term == first.term && l.leader == first.leader);
        let leaders = seen.iter().filter(|l| l.is_self).count();
        if let (true, 1, Some(leader)) = (same, leaders, first.leader) {
            return Some((first.term, leader));
        }
        if Instant::now() >= deadline {
            return None;
        }
        nodes[0].election().wait_for_change(&first, POLL);
    }
    None
}

/// Waits (parked, bounded) until a node reports a term above `term`: an election began.
fn first_campaign(nodes: &[&Node], term: u64, within: Duration) -> Option<u64> {
    let deadline = Instant::now() + within;
    let max_rounds = within.as_millis() / 5 + 1;
    for _ in 0..max_rounds {
        let seen: Vec<Leadership> = nodes.iter().map(|n| n.election().leadership()).collect();
        if let Some(l) = seen.iter().find(|l| l.term > term) {
            return Some(l.term);
        }
        if Instant::now() >= deadline {
            return None;
        }
        nodes[0]
            .election()
            .wait_for_change(&seen[0], Duration::from_millis(5));
    }
    None
}

fn running(nodes: &[Node]) -> Vec<&Node> {
    nodes.iter().filter(|n| n.election.is_some()).collect()
}

#[test]
fn three_nodes_elect_exactly_one_leader() {
    let root = tempfile::tempdir().unwrap();
    let (_, nodes) = cluster(3, root.path());
    let started = Instant::now();
    let (term, leader) = agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    eprintln!(
        "first election: leader {leader} term {term} after {:?}",
        started.elapsed()
    );
    assert!(term >= 1);
    assert!(nodes.iter().any(|n| n.id == leader));
    for n in &nodes {
        assert_eq!(n.election().current_term(), term);
    }
    for n in nodes {
        n.election.unwrap().shutdown();
    }
}

#[test]
fn failover_then_old_leader_rejoins_as_follower() {
    let root = tempfile::tempdir().unwrap();
    let (peers, mut nodes) = cluster(3, root.path());
    let (term, leader) = agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    let old = nodes.iter().position(|n| n.id == leader).unwrap();

    let stopped = Instant::now();
    nodes[old].election.take().unwrap().shutdown();
    let campaign = first_campaign(&running(&nodes), term, AGREE_WITHIN);
    let detected = stopped.elapsed();
    let (new_term, new_leader) =
        agreement(&running(&nodes), AGREE_WITHIN).expect("a new leader within 10 s");
    eprintln!(
        "failover: leader {leader} (term {term}) shut down; a vote for term {campaign:?} after \
         {detected:?}; leader {new_leader} (term {new_term}) agreed after {:?}",
        stopped.elapsed()
    );
    assert_ne!(new_leader, leader);
    assert!(new_term > term);

    let restarted = start(leader, &peers, &nodes[old].dir);
    assert!(
        restarted.current_term() >= term,
        "the persisted vote survived the restart"
    );
    nodes[old].election = Some(restarted);
    let (term_after, leader_after) =
        agreement(&running(&nodes), AGREE_WITHIN).expect("agreement within 10 s");
    assert_eq!(
        (term_after, leader_after),
        (new_term, new_leader),
        "the old leader follows, no new election"
    );
    assert!(!nodes[old].election().leadership().is_self);
    for n in nodes {
        n.election.unwrap().shutdown();
    }
}

#[test]
fn a_leader_restarted_at_once_leads_only_in_a_new_term() {
    let root = tempfile::tempdir().unwrap();
    let (peers, mut nodes) = cluster(3, root.path());
    let (term, leader) = agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    let old = nodes.iter().position(|n| n.id == leader).unwrap();
    nodes[old].election.take().unwrap().shutdown();
    nodes[old].election = Some(start(leader, &peers, &nodes[old].dir));
    let (term_after, _) = agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    assert!(
        term_after > term,
        "leadership after a restart begins a new term"
    );
    for n in nodes {
        n.election.unwrap().shutdown();
    }
}

#[test]
fn single_node_cluster_elects_itself_and_again_after_restart() {
    let root = tempfile::tempdir().unwrap();
    let (peers, mut nodes) = cluster(1, root.path());
    let (term, leader) = agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    assert_eq!(leader, 1);
    nodes[0].election.take().unwrap().shutdown();

    nodes[0].election = Some(start(1, &peers, &nodes[0].dir));
    let (term_after, leader_after) =
        agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    assert_eq!(leader_after, 1);
    assert!(
        term_after > term,
        "a restarted single node leads in a new term"
    );
}

#[test]
fn vote_term_never_goes_back_across_restarts() {
    let root = tempfile::tempdir().unwrap();
    let (peers, mut nodes) = cluster(3, root.path());
    agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    let before: Vec<u64> = nodes.iter().map(|n| n.election().current_term()).collect();
    for n in &mut nodes {
        n.election.take().unwrap().shutdown();
    }
    // One node alone cannot win: it campaigns, raising its term; each restart starts at or
    // above what the previous run had seen.
    let mut last = before[1];
    for _ in 0..3 {
        let alone = Election::start(ElectionConfig::new(2, peers.clone(), &nodes[1].dir)).unwrap();
        let first = alone.leadership();
        assert!(
            first.term >= last,
            "term {} after restart, {last} before",
            first.term
        );
        assert!(alone.current_term() >= last);
        let later = alone.wait_for_change(&first, Duration::from_secs(2));
        assert!(later.term >= first.term);
        assert!(!later.is_self, "a lone node of three never leads");
        last = alone.current_term();
        alone.shutdown();
    }
    // The whole cluster restarted: it agrees again, in a term above every term seen before.
    for n in &mut nodes {
        n.election = Some(start(n.id, &peers, &n.dir));
    }
    let (term, _) = agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    assert!(term > *before.iter().max().unwrap());
    assert!(term >= last);
}

#[test]
fn a_node_refuses_a_cluster_other_than_the_one_it_was_formed_with() {
    let root = tempfile::tempdir().unwrap();
    let (peers, mut nodes) = cluster(1, root.path());
    agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
    nodes[0].election.take().unwrap().shutdown();
    let mut other = peers.clone();
    other.insert(2, addresses(1)[&1]);
    let refused = Election::start(ElectionConfig::new(1, other, &nodes[0].dir));
    assert!(matches!(
        refused,
        Err(keel_cluster::election::ElectionError::MembershipMismatch { .. })
    ));
    // With the cluster it was formed with, it starts again.
    nodes[0].election = Some(start(1, &peers, &nodes[0].dir));
    agreement(&running(&nodes), AGREE_WITHIN).expect("a leader within 10 s");
}

/// The cluster address carries both planes: `serve` hands `b'D'` connections to the data
/// plane's callback, and an acceptor owned by the caller can route `b'E'` connections itself.
#[test]
fn channel_bytes_route_connections() {
    let root = tempfile::tempdir().unwrap();
    let peers = addresses(2);
    // Node 1: the election accepts and routes.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(tx);
    let one = Election::start(ElectionConfig::new(
        1,
        peers.clone(),
        root.path().join("node1"),
    ))
    .unwrap();
    let handler = move |mut s: TcpStream| {
        let mut buf = [0u8; 5];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.read_exact(&mut buf).is_ok() {
            let _ = tx.lock().unwrap().send(buf.to_vec());
        }
    };
    one.serve(bind(peers[&1]), Box::new(handler)).unwrap();
    // Node 2: the test's own acceptor thread reads the channel byte.
    let two = Arc::new(
        Election::start(ElectionConfig::new(
            2,
            peers.clone(),
            root.path().join("node2"),
        ))
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let (two, stop, listener) = (Arc::clone(&two), Arc::clone(&stop), bind(peers[&2]));
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || accept_until(&listener, &two, &stop))
    };

    let mut data = TcpStream::connect(peers[&1]).unwrap();
    data.write_all(&[CHANNEL_DATA]).unwrap();
    data.write_all(b"hello").unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"hello");

    let nodes_seen = [&one, &*two];
    let deadline = Instant::now() + AGREE_WITHIN;
    let agreed = loop {
        let l: Vec<Leadership> = nodes_seen.iter().map(|e| e.leadership()).collect();
        if l[0].leader.is_some() && l[0].leader == l[1].leader && l[0].term == l[1].term {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        one.wait_for_change(&l[0], POLL);
    };
    assert!(agreed, "both nodes agree on a leader within 10 s");
    stop.store(true, Ordering::Release);
    acceptor.join().unwrap();
    one.shutdown();
    Arc::try_unwrap(two).expect("acceptor joined").shutdown();
}

/// A caller-owned acceptor: reads the channel byte and hands `b'E'` streams to the election.
fn accept_until(listener: &TcpListener, election: &Election, stop: &AtomicBool) {
    let max_rounds = AGREE_WITHIN.as_millis() * 3 / 10 + 1;
    for _ in 0..max_rounds {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match listener.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut channel = [0u8; 1];
                if s.read_exact(&mut channel).is_ok() && channel[0] == CHANNEL_RAFT {
                    s.set_read_timeout(None).unwrap();
                    election.handle_connection(s);
                }
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}
