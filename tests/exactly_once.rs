//! Exactly-once across reconnects, restarts and leader redirects: a client id in `HELLO`,
//! request ids as correlation ids, the engine's deduplication table (journaled, snapshotted),
//! `NOT_LEADER` redirects, and `Client::connect_exactly_once` resending what was not answered.

mod net_support;

use keel::net::frame::{self, Frame};
use keel::net::{Client, ErrorCode, OwnedReply, ReplyStatus};
use net_support::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn exactly_once(addrs: &[SocketAddr], client_id: u64) -> Client {
    let client = Client::connect_exactly_once(addrs, None, client_id).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    client
}

fn declared(addr: SocketAddr, client_id: u64) -> Client {
    let client = Client::connect_as(addr, None, client_id).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
}

/// Sends ADD `value` as request `id` and waits for its answer.
fn add_as(client: &mut Client, id: u64, value: u64) -> OwnedReply {
    client
        .queue_with_id(id, ADD, 1, &value.to_le_bytes())
        .unwrap();
    let reply = client.recv().expect("answer").owned();
    assert_eq!(reply.correlation_id, id);
    reply
}

fn total_of(reply: &OwnedReply) -> u64 {
    u64::from_le_bytes(reply.payload[..8].try_into().unwrap())
}

/// The same node again: its journal and snapshots, on the same port.
fn restart(dir: &Path, addr: SocketAddr, config: impl Fn(&Path) -> keel::Config) -> Node {
    let mut net = net_config();
    net.listen_addr = addr;
    Node::start(config(dir), net, Counter::default())
}

/// A window covering the client's whole pipeline: every resent request finds its reply.
fn wide_window(dir: &Path) -> keel::Config {
    let mut config = engine_config(dir);
    (config.dedup_clients, config.dedup_window) = (16, 512);
    config
}

#[test]
fn requests_resent_after_a_replaced_connection_and_a_restart_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    // The business logic waits before the 51st message until the client's connection has
    // been replaced: the answers it gives then go elsewhere, and the client must resend.
    let pause = Pause::at(51);
    let paused = Counter {
        pause: Some(pause.clone()),
        ..Counter::default()
    };
    let node = Node::start(wide_window(dir.path()), net_config(), paused);
    let addr = node.addr;
    let mut client = exactly_once(&[addr], 77);
    const N: u64 = 300;
    let mut ids = Vec::new();
    for value in 1..=N {
        ids.push(client.queue(ADD, 1, &value.to_le_bytes()).unwrap());
    }
    client.flush().unwrap();
    eventually("the business logic at its pause", || pause.reached());
    // Another connection with the same client id replaces the client's (REPLACED): answers
    // leaving the engine from now on go to it, and are lost to the client.
    let intruder = declared(addr, 77);
    pause.open();
    let take = |client: &mut Client, n: usize, replies: &mut Vec<OwnedReply>| {
        for _ in 0..n {
            replies.push(client.recv().expect("answer").owned());
        }
    };
    let mut replies = Vec::new();
    take(&mut client, 150, &mut replies);
    intruder.close();
    // Stop the node mid-stream and start it again on the same journal and port.
    node.stop();
    let node = restart(dir.path(), addr, wide_window);
    take(&mut client, (N - 150) as usize, &mut replies);
    let mut total = 0;
    let mut last_sequence = 0;
    for (i, reply) in replies.iter().enumerate() {
        total += i as u64 + 1;
        assert_eq!(reply.correlation_id, ids[i], "answers in request order");
        assert_eq!(reply.status, ReplyStatus::Accepted);
        assert_eq!(total_of(reply), total, "applied once, in order");
        assert!(reply.sequence > last_sequence);
        last_sequence = reply.sequence;
    }
    // Requests were resent and journaled again, and none applied twice.
    let journaled = node.engine.journaled_sequence();
    let (state, _) = node.stop();
    assert_eq!((state.total, state.applied), (N * (N + 1) / 2, N));
    assert!(journaled > N, "resent requests journaled: {journaled}");
}

#[test]
fn deduplication_survives_restart_from_a_snapshot_and_from_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine_config(dir.path()), net_config(), Counter::default());
    let addr = node.addr;
    let mut client = declared(addr, 5);
    assert_eq!(client.session_id(), 1 << 63 | 5);
    let first = add_as(&mut client, 10, 5);
    let second = add_as(&mut client, 11, 7);
    assert_eq!(
        add_as(&mut client, 10, 5),
        first,
        "a duplicate on the same connection"
    );
    client.close();
    let (state, _) = node.stop(); // takes a snapshot on shutdown
    assert_eq!(state.total, 12);
    // Restart from the snapshot: nothing to replay, the table comes from the snapshot.
    let node = restart(dir.path(), addr, engine_config);
    let recovered = node.engine.recovered();
    // The duplicate was journaled too (sequence 3), and answered without an apply.
    assert_eq!((recovered.replayed, recovered.snapshot_sequence), (0, 3));
    assert_eq!(second.sequence, 2);
    let mut client = declared(addr, 5);
    assert_eq!(add_as(&mut client, 10, 5), first, "the original reply");
    assert_eq!(add_as(&mut client, 11, 7), second);
    let third = add_as(&mut client, 12, 1);
    assert_eq!(total_of(&third), 13);
    client.close();
    let (state, _) = node.stop();
    assert_eq!((state.total, state.applied), (13, 3));
    // Restart without snapshots: the journal's replay rebuilds the same table.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let node = restart(dir.path(), addr, engine_config);
    assert_eq!(node.engine.recovered().snapshot_sequence, 0);
    let mut client = declared(addr, 5);
    assert_eq!(add_as(&mut client, 10, 5), first);
    assert_eq!(add_as(&mut client, 12, 1), third);
    client.close();
    let (state, _) = node.stop();
    assert_eq!((state.total, state.applied), (13, 3));
}

#[test]
fn a_duplicate_beyond_the_window_is_refused_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let config = |dir: &Path| {
        let mut config = engine_config(dir);
        (config.dedup_window, config.dedup_reply_bytes) = (2, 64);
        config
    };
    let node = Node::start(config(dir.path()), net_config(), Counter::default());
    let mut client = declared(node.addr, 9);
    for id in 1..=4 {
        add_as(&mut client, id, id);
    }
    let refused = add_as(&mut client, 1, 1);
    assert_eq!(
        refused.status,
        ReplyStatus::Refused(ErrorCode::ALREADY_ANSWERED)
    );
    assert_eq!(total_of(&add_as(&mut client, 4, 4)), 10, "still held");
    // A reply larger than dedup_reply_bytes is not held: its duplicate is refused too.
    client
        .queue_with_id(5, BIG, 1, &100u32.to_le_bytes())
        .unwrap();
    assert_eq!(client.recv().unwrap().payload.len(), 100);
    client
        .queue_with_id(5, BIG, 1, &100u32.to_le_bytes())
        .unwrap();
    let reply = client.recv().unwrap();
    assert_eq!(
        reply.status,
        ReplyStatus::Refused(ErrorCode::ALREADY_ANSWERED)
    );
    client.close();
    let (state, _) = node.stop();
    assert_eq!(
        (state.total, state.applied),
        (10, 5),
        "nothing applied twice"
    );
}

#[test]
fn a_follower_redirects_and_the_client_follows() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(
        engine_config(dir_a.path()),
        net_config(),
        Counter::default(),
    );
    let b = Node::start(
        engine_config(dir_b.path()),
        net_config(),
        Counter::default(),
    );
    let gate = a.server.leadership();
    assert!(gate.is_leader(), "a server alone leads");
    gate.set_leader(Some(b.addr));
    // A plain client sees the refusal and the leader's address.
    let mut plain = a.client();
    let reply = plain.request(ADD, 1, &1u64.to_le_bytes()).unwrap();
    assert_eq!(reply.status, ReplyStatus::Refused(ErrorCode::NOT_LEADER));
    let text = String::from_utf8(reply.payload).unwrap();
    assert!(text.contains(&format!("leader={}", b.addr)), "{text}");
    // An exactly-once client given both addresses follows the redirect to B.
    let mut client = exactly_once(&[a.addr, b.addr], 3);
    for value in 1..=5u64 {
        client.queue(ADD, 1, &value.to_le_bytes()).unwrap();
    }
    let totals: Vec<u64> = (0..5)
        .map(|_| total_of(&client.recv().unwrap().owned()))
        .collect();
    assert_eq!(totals, [1, 3, 6, 10, 15]);
    // Leadership moves back to A (B now redirects to A): the client follows again.
    b.server.leadership().set_leader(Some(a.addr));
    gate.set_self_leader();
    client.queue(ADD, 1, &100u64.to_le_bytes()).unwrap();
    assert_eq!(total_of(&client.recv().unwrap().owned()), 100);
    assert_eq!(add(&mut plain, 1), 101);
    client.close();
    plain.close();
    let (state_a, _) = a.stop();
    let (state_b, _) = b.stop();
    assert_eq!((state_a.total, state_b.total), (101, 15));
}

#[test]
fn a_version_1_client_is_served_without_a_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine_config(dir.path()), net_config(), Counter::default());
    let mut s = raw(node.addr);
    send_hello(&mut s, 1, b"");
    let body = read_frame(&mut s).expect("welcome");
    let Ok(Frame::Welcome(welcome)) = frame::decode(&body) else {
        panic!("{body:?}");
    };
    assert_eq!(welcome.protocol_version, 1);
    assert_eq!(welcome.session_id >> 63, 0);
    use std::io::Write;
    s.write_all(&request_bytes(1, ADD, 1, &4u64.to_le_bytes()))
        .unwrap();
    let body = read_frame(&mut s).expect("response");
    assert!(matches!(frame::decode(&body), Ok(Frame::Response(r)) if r.correlation_id == 1));
    drop(s);
    let (state, _) = node.stop();
    assert_eq!(state.total, 4);
}

/// The snapshot replica applies through the same table: its shutdown snapshot carries it, and
/// an engine restarted from that snapshot answers an old request id without applying it.
#[test]
fn the_snapshot_replica_snapshots_the_table() {
    use keel::engine::{Engine, Submission};
    let dir = tempfile::tempdir().unwrap();
    let mut config = engine_config(dir.path());
    config.discard_responses = true;
    let submit = |engine: &mut Engine<Counter>, request_id: u64, value: u64| {
        let to = Submission {
            kind: ADD,
            version: 1,
            session_id: 1 << 63 | 9,
            correlation_id: request_id,
        };
        engine.submitter().submit(to, &value.to_le_bytes()).unwrap()
    };
    let mut engine =
        Engine::start_with_replica(config.clone(), Counter::default(), Counter::default).unwrap();
    submit(&mut engine, 1, 10);
    submit(&mut engine, 2, 20);
    submit(&mut engine, 1, 10); // a duplicate: not applied
    let state = engine.shutdown().unwrap();
    assert_eq!((state.total, state.applied), (30, 2));
    let mut engine = Engine::start(config, Counter::default()).unwrap();
    let recovered = engine.recovered();
    assert_eq!((recovered.snapshot_sequence, recovered.replayed), (3, 0));
    submit(&mut engine, 2, 20); // still a duplicate after the restart
    submit(&mut engine, 3, 5);
    let state = engine.shutdown().unwrap();
    assert_eq!((state.total, state.applied), (35, 3));
}
