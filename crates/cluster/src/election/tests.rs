//! The snapshot path, which the default settings reach only after hundreds of leaderships:
//! here a snapshot every few entries, and entries written by hand (`client_write(())`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Election, ElectionConfig};

const WITHIN: Duration = Duration::from_secs(10);

fn start(
    id: u64,
    peers: &BTreeMap<u64, SocketAddr>,
    dir: &Path,
    listener: TcpListener,
) -> Election {
    let mut config = ElectionConfig::new(id, peers.clone(), dir);
    config.snapshot_every_entries = 3;
    config.log_kept_after_snapshot = 0;
    let election = Election::start(config).unwrap();
    election.serve(listener, Box::new(|_| {})).unwrap();
    election
}

/// The leader all running nodes agree on (same term, same leader), waiting at most 10 s.
fn agreed_leader(nodes: &[&Election]) -> Option<usize> {
    let deadline = Instant::now() + WITHIN;
    for _ in 0..1000 {
        let seen: Vec<_> = nodes.iter().map(|e| e.leadership()).collect();
        let same = seen
            .iter()
            .all(|l| l.term == seen[0].term && l.leader == seen[0].leader);
        if let (true, Some(i)) = (same, seen.iter().position(|l| l.is_self)) {
            return Some(i);
        }
        if Instant::now() >= deadline {
            return None;
        }
        nodes[0].wait_for_change(&seen[0], Duration::from_millis(20));
    }
    None
}

/// Waits (bounded) until `pred` holds for `e`'s openraft metrics.
fn wait_metrics(
    e: &Election,
    what: &str,
    pred: impl Fn(&openraft::RaftMetrics<u64, openraft::BasicNode>) -> bool + Send,
) {
    let rt = e.runtime.as_ref().unwrap();
    rt.block_on(e.raft.wait(Some(WITHIN)).metrics(pred, what))
        .unwrap_or_else(|err| panic!("{what}: {err}"));
}

#[test]
fn a_follower_behind_the_purged_log_catches_up_by_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: BTreeMap<u64, SocketAddr> = (1..=3)
        .zip(&listeners)
        .map(|(id, l)| (id, l.local_addr().unwrap()))
        .collect();
    let mut nodes: Vec<Option<Election>> = (1..=3)
        .zip(listeners)
        .map(|(id, l)| Some(start(id, &peers, &root.path().join(format!("n{id}")), l)))
        .collect();
    let running: Vec<&Election> = nodes.iter().flatten().collect();
    let leader = agreed_leader(&running).expect("a leader within 10 s");
    let lagging = (leader + 1) % 3;
    nodes[lagging].take().unwrap().shutdown();

    let l = nodes[leader].as_ref().unwrap();
    for _ in 0..8 {
        l.runtime
            .as_ref()
            .unwrap()
            .block_on(l.raft.client_write(()))
            .unwrap_or_else(|e| panic!("client_write on the leader: {e}"));
    }
    wait_metrics(l, "leader snapshots and purges", |m| {
        m.snapshot.is_some() && m.purged.is_some()
    });
    let applied = l.raft.metrics().borrow().last_applied;

    let id = lagging as u64 + 1;
    let dir = root.path().join(format!("n{id}"));
    nodes[lagging] = Some(start(
        id,
        &peers,
        &dir,
        TcpListener::bind(peers[&id]).unwrap(),
    ));
    let f = nodes[lagging].as_ref().unwrap();
    wait_metrics(f, "follower installs the snapshot", |m| {
        m.snapshot.is_some() && m.last_applied >= applied
    });
    nodes[lagging].take().unwrap().shutdown();
    // The installed snapshot is on disk: the follower starts from it again.
    let again = start(id, &peers, &dir, TcpListener::bind(peers[&id]).unwrap());
    wait_metrics(&again, "the snapshot after a restart", |m| {
        m.snapshot.is_some()
    });
    again.shutdown();
    for n in nodes.into_iter().flatten() {
        n.shutdown();
    }
}
