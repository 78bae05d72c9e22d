//! The data plane on loopback, three nodes in one process, leadership driven by hand.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use keel::Processor;
use keel_cluster::data::frame::{self, ChainStatus, Frame};
use keel_cluster::data::wire::{FrameReader, FrameWriter};
use keel_cluster::node::CHANNEL_DATA;
use keel_cluster::{AckPolicy, Role};
use support::{wait_until, Cluster, LONG};

/// How long a test watches for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

fn last_of(c: &Cluster, id: u64) -> u64 {
    c.node(id).status().last_sequence
}

/// Waits (bounded) until the journals of `ids` hold the same records, byte for byte.
fn assert_same_journals(c: &Cluster, ids: &[u64]) {
    let last = last_of(c, ids[0]);
    let same = wait_until(LONG, || {
        let first = c.journal_bytes(ids[0]);
        ids[1..].iter().all(|id| c.journal_bytes(*id) == first)
    });
    let sizes: Vec<usize> = ids.iter().map(|id| c.journal_bytes(*id).len()).collect();
    assert!(same, "journals of {ids:?} differ: {sizes:?} bytes");
    for id in &ids[1..] {
        assert_eq!(c.chain_at(*id, last), c.chain_at(ids[0], last));
    }
}

fn statuses(c: &Cluster) -> String {
    c.nodes
        .iter()
        .filter(|n| n.node.is_some())
        .map(|n| format!("{}: {:?}\n", n.id, c.node(n.id).status()))
        .collect()
}

#[test]
fn leader_and_two_followers_end_byte_identical() {
    let mut c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    c.submit(1, 0, 10_000);
    let answered = wait_until(LONG, || c.responses(1) == 10_000);
    assert!(
        answered,
        "every message answered: {} {:?} {:?} {:?}",
        c.responses(1),
        c.node(1).status(),
        c.node(2).status(),
        c.node(3).status()
    );
    let last = last_of(&c, 1);
    assert_eq!(last, 10_001, "one term record and 10k messages");
    c.wait_applied(&[1, 2, 3], last);
    assert_same_journals(&c, &[1, 2, 3]);
    assert!(matches!(c.chain_at(2, last), ChainStatus::Holds(_)));
    let states: Vec<_> = (1..=3).map(|id| c.stop(id).expect("a processor")).collect();
    assert!(states.iter().all(|s| s.count == 10_000));
    assert!(states
        .iter()
        .all(|s| s.state_hash() == states[0].state_hash()));
    assert_eq!(
        c.responses(2) + c.responses(3),
        0,
        "followers answer no one"
    );
}

#[test]
fn majority_acknowledges_with_one_follower_down_and_not_with_two() {
    let mut c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    c.submit(1, 0, 10);
    assert!(wait_until(LONG, || c.responses(1) == 10));
    c.stop(3);
    c.submit(1, 10, 10);
    assert!(
        wait_until(LONG, || c.responses(1) == 20),
        "one follower suffices"
    );
    c.stop(2);
    c.submit(1, 20, 10);
    assert!(
        !wait_until(QUIET, || c.responses(1) > 20),
        "no majority: nothing acknowledged"
    );
    assert_eq!(c.node(1).status().commit, 21);
    c.start(2);
    assert!(
        wait_until(LONG, || c.responses(1) == 30),
        "a returning follower completes the majority"
    );
}

#[test]
fn all_needs_every_follower() {
    let mut c = Cluster::new(3, AckPolicy::All);
    c.elect(1, 1);
    c.submit(1, 0, 5);
    assert!(wait_until(LONG, || c.responses(1) == 5));
    c.stop(3);
    c.submit(1, 5, 5);
    assert!(
        !wait_until(QUIET, || c.responses(1) > 5),
        "one follower down: nothing acknowledged"
    );
    c.start(3);
    assert!(wait_until(LONG, || c.responses(1) == 10));
}

#[test]
fn leader_policy_needs_no_follower() {
    let mut c = Cluster::new(3, AckPolicy::Leader);
    c.elect(1, 1);
    c.stop(2);
    c.stop(3);
    c.submit(1, 0, 5);
    assert!(wait_until(LONG, || c.responses(1) == 5));
}

/// Opens a data connection to `c`'s node `id` and says HELLO as `leader_id` of `term`.
fn hello(c: &Cluster, id: u64, term: u64, leader_id: u64) -> (FrameReader, FrameWriter) {
    let address = c.nodes[id as usize - 1].address;
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.write_all(&[CHANNEL_DATA]).expect("channel");
    let reader = FrameReader::new(stream.try_clone().expect("clone"), Some(LONG)).expect("reader");
    let mut writer = FrameWriter::new(stream).expect("writer");
    let hello = Frame::Hello {
        term,
        leader_id,
        term_start: 0,
        client_address: "",
    };
    writer.send(&hello).expect("hello");
    (reader, writer)
}

fn next_frame(reader: &mut FrameReader) -> String {
    loop {
        match reader.read_frame().expect("a frame") {
            Some(Frame::Ack { .. }) => {}
            Some(frame) => return format!("{frame:?}"),
            None => panic!("no frame"),
        }
    }
}

#[test]
fn stale_term_is_rejected_and_the_old_leader_steps_down() {
    let c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    c.submit(1, 0, 5);
    assert!(wait_until(LONG, || c.responses(1) == 5));
    // Node 2 learns of term 2 (led by node 3): term 1's records are refused from now on.
    c.report(2, 3, &[2]);
    assert!(wait_until(LONG, || c.node(2).status().fence == 2));
    let (mut reader, _writer) = hello(&c, 2, 1, 1);
    assert_eq!(next_frame(&mut reader), "Reject { fence_term: 2 }");
    // Node 1's next batch or heartbeat to node 2 is rejected: it stops leading.
    assert!(
        wait_until(LONG, || c.node(1).role() == Role::Follower),
        "the stale leader steps down"
    );
    let handle = c.node(1).leader_handle();
    assert!(handle.submit(Default::default(), b"late").is_err());
    // A session accepted under term 2 is cut when term 3 arrives: its RECORDS are refused.
    let (mut reader, mut writer) = hello(&c, 2, 2, 3);
    assert!(next_frame(&mut reader).starts_with("Position"));
    c.report(3, 3, &[2]);
    assert!(wait_until(LONG, || c.node(2).status().fence == 3));
    let mut records = Vec::new();
    frame::begin_records(&mut records, 2, 0);
    frame::finish_records(&mut records, 0);
    writer.send_raw(&records).expect("send");
    assert_eq!(next_frame(&mut reader), "Reject { fence_term: 3 }");
    assert_eq!(c.node(2).status().last_sequence, 6);
}

#[test]
fn a_hello_naming_another_leader_of_a_known_term_is_refused() {
    let c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    // Node 2 learns that node 3 leads term 2.
    c.report(2, 3, &[2]);
    assert!(wait_until(LONG, || c.node(2).status().fence == 2));
    let (mut reader, _writer) = hello(&c, 2, 2, 1);
    assert_eq!(next_frame(&mut reader), "Reject { fence_term: 2 }");
    // The leader it knows is followed.
    let (mut reader, _writer) = hello(&c, 2, 2, 3);
    assert!(next_frame(&mut reader).starts_with("Position"));
}

#[test]
fn follower_restarted_with_an_empty_journal_catches_up() {
    let mut c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    c.submit(1, 0, 2_000);
    assert!(wait_until(LONG, || c.responses(1) == 2_000));
    c.stop(3);
    std::fs::remove_dir_all(&c.nodes[2].dir).expect("wipe node 3");
    c.start(3);
    c.submit(1, 2_000, 100);
    let last = 2_101;
    c.wait_applied(&[1, 2, 3], last);
    assert_same_journals(&c, &[1, 2, 3]);
}

#[test]
fn divergent_suffix_is_truncated_to_the_common_prefix() {
    let mut c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    c.submit(1, 0, 100);
    assert!(wait_until(LONG, || c.responses(1) == 100));
    c.wait_applied(&[1, 2, 3], 101);
    c.stop(2);
    c.stop(3);
    // Node 1 journals 50 messages nobody else gets: never acknowledged.
    c.submit(1, 100, 50);
    assert!(wait_until(LONG, || c.node(1).status().durable == 151));
    assert_eq!(c.responses(1), 100);
    c.stop(1);
    c.start(2);
    c.start(3);
    c.report(2, 2, &[2, 3]);
    assert!(wait_until(LONG, || c.node(2).role() == Role::Leader));
    c.submit(2, 1_000, 20);
    assert!(wait_until(LONG, || c.responses(2) == 20));
    // The old leader returns: its suffix after 101 goes, node 2's history replaces it.
    c.start(1);
    let last = last_of(&c, 2);
    assert_eq!(last, 122);
    assert_same_journals(&c, &[2, 1, 3]);
    // Node 1 applied its old suffix at recovery; after the truncation it replays and applies
    // node 2's history.
    c.wait_applied(&[1, 2, 3], last);
    let states: Vec<_> = (1..=3).map(|id| c.stop(id).expect("a processor")).collect();
    assert!(states.iter().all(|s| s.count == 120));
    assert!(states
        .iter()
        .all(|s| s.state_hash() == states[0].state_hash()));
}

#[test]
fn promotion_catches_up_from_the_most_complete_follower() {
    let mut c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    c.submit(1, 0, 100);
    assert!(wait_until(LONG, || c.responses(1) == 100));
    c.stop(3);
    c.submit(1, 100, 100);
    assert!(
        wait_until(LONG, || c.responses(1) == 200),
        "node 2 completes the majority"
    );
    c.wait_applied(&[2], 201);
    c.stop(1);
    c.start(3);
    // Node 3 (101 records) is elected; node 2 holds 201: node 3 must take them first.
    c.report(2, 3, &[2, 3]);
    assert!(wait_until(LONG, || c.node(3).role() == Role::Leader));
    assert_eq!(
        last_of(&c, 3),
        202,
        "caught up to 201, then its term record"
    );
    c.submit(3, 1_000, 10);
    let answered = wait_until(LONG, || c.responses(3) == 10);
    assert!(answered, "{}", statuses(&c));
    c.wait_applied(&[2, 3], 212);
    assert_same_journals(&c, &[3, 2]);
    let states: Vec<_> = [2, 3]
        .iter()
        .map(|id| c.stop(*id).expect("a processor"))
        .collect();
    assert_eq!(states[0].count, 210);
    assert_eq!(states[0].state_hash(), states[1].state_hash());
}

#[test]
fn deposed_leader_releases_nothing_more() {
    let mut c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    c.submit(1, 0, 10);
    assert!(wait_until(LONG, || c.responses(1) == 10));
    c.stop(2);
    c.stop(3);
    // Journaled on node 1 alone: withheld.
    c.submit(1, 10, 10);
    assert!(wait_until(LONG, || c.node(1).status().durable == 21));
    // The election moves on without node 1: it stops at once and takes nothing more.
    c.report(2, 2, &[1]);
    assert!(wait_until(LONG, || c.node(1).role() == Role::Follower));
    let refused = c
        .node(1)
        .leader_handle()
        .submit(Default::default(), b"late");
    assert!(matches!(
        refused,
        Err(keel_cluster::NodeError::NotLeader { .. })
    ));
    // Its followers return under the new leader; node 1's withheld messages are never answered.
    c.start(2);
    c.start(3);
    c.report(2, 2, &[2, 3]);
    assert!(wait_until(LONG, || c.node(2).role() == Role::Leader));
    c.submit(2, 100, 5);
    assert!(wait_until(LONG, || c.responses(2) == 5));
    let last = last_of(&c, 2);
    assert_same_journals(&c, &[2, 1, 3]);
    c.wait_applied(&[1, 2, 3], last);
    assert!(
        !wait_until(QUIET, || c.responses(1) > 10),
        "nothing more from node 1"
    );
    // Node 2's promotion heard node 1 (most complete) and took its 10 withheld messages into
    // the new history: they are committed now, and still answered by no one (the client
    // resends; deduplication is the request ids' job).
    assert_eq!(c.responses(2), 5);
    let states: Vec<_> = (1..=3).map(|id| c.stop(id).expect("a processor")).collect();
    assert!(states.iter().all(|s| s.count == 25));
    assert!(states
        .iter()
        .all(|s| s.state_hash() == states[0].state_hash()));
}

/// RECORDS holding `record`, encoded after `prev_crc`, with one byte flipped at `flip`.
fn records_frame(term: u64, sequence: u64, prev_crc: u32, flip: Option<usize>) -> Vec<u8> {
    let record = keel::journal::Record {
        sequence,
        timestamp_ns: 1,
        session_id: 0,
        correlation_id: 77,
        kind: 1,
        version: 1,
        payload: b"checked",
    };
    let mut frame_bytes = Vec::new();
    frame::begin_records(&mut frame_bytes, term, 0);
    let at = frame_bytes.len();
    record.encode_to(&mut frame_bytes, prev_crc);
    if let Some(flip) = flip {
        frame_bytes[at + flip] ^= 1;
    }
    frame::finish_records(&mut frame_bytes, 1);
    frame_bytes
}

#[test]
fn follower_checks_every_record_before_feeding_it() {
    let c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    c.submit(1, 0, 5);
    assert!(wait_until(LONG, || c.responses(1) == 5));
    c.wait_applied(&[2], 6);
    let ChainStatus::Holds(chain) = c.chain_at(2, 6) else {
        panic!("node 2 holds 6")
    };
    // Each refused: a flipped payload byte (CRC), a broken chain, a sequence gap.
    for (sequence, prev_crc, flip) in [(7, chain, Some(60)), (7, chain ^ 1, None), (8, chain, None)]
    {
        let (mut reader, mut writer) = hello(&c, 2, 5, 9);
        assert!(next_frame(&mut reader).starts_with("Position"));
        writer
            .send_raw(&records_frame(5, sequence, prev_crc, flip))
            .expect("send");
        let ended = wait_until(LONG, || {
            !matches!(reader.read_frame(), Ok(None) | Ok(Some(Frame::Ack { .. })))
        });
        assert!(ended, "the session ends");
        assert_eq!(c.node(2).status().last_sequence, 6);
    }
    // The same record, intact, continues the journal.
    let (mut reader, mut writer) = hello(&c, 2, 5, 9);
    assert!(next_frame(&mut reader).starts_with("Position"));
    writer
        .send_raw(&records_frame(5, 7, chain, None))
        .expect("send");
    assert!(wait_until(LONG, || c.node(2).status().durable == 7));
}
