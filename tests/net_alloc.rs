//! No heap allocation per message on the server's path (socket → frames → input ring → ... →
//! output ring → session buffer → socket), nor in the client's `queue`/`recv`: counted by a
//! global allocator after warm-up, over every thread but the journal's spare-segment preparer
//! and the snapshot writer (`alloc_support`), in a window that spans journal segment
//! rollovers and periodic snapshots.

mod alloc_support;
mod net_support;

use keel::net::ReplyStatus;
use net_support::*;

fn segment_files(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            })
            .count() as u64
    })
}

/// `n` pipelined adds of 1 (64 in flight), checked.
fn traffic(client: &mut keel::net::Client, n: u64) {
    let (mut sent, mut got) = (0u64, 0u64);
    while got < n {
        while sent < n && sent - got < 64 {
            sent += 1;
            client.queue(ADD, 1, &1u64.to_le_bytes()).unwrap();
        }
        let reply = client.recv().unwrap();
        got += 1;
        assert_eq!(reply.status, ReplyStatus::Accepted);
    }
}

#[test]
fn no_allocation_per_message_on_the_network_path() {
    no_allocation_per_message(false);
}

/// The same with an exactly-once client: the engine's deduplication table (check, record,
/// snapshot section) and the client's resend buffer allocate nothing per message either.
#[test]
fn no_allocation_per_message_with_exactly_once() {
    no_allocation_per_message(true);
}

fn no_allocation_per_message(exactly_once: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = engine_config(dir.path());
    config.segment_size_bytes = 128 << 10;
    config.snapshot_interval_messages = 1_000;
    let journal_dir = config.journal_dir.clone();
    let node = Node::start(config, net_config(), Counter::default());
    let metrics = node.engine.metrics();
    let snapshots_taken = || {
        let m = metrics.read();
        m.snapshots_written + m.snapshots_skipped
    };
    let mut client = if exactly_once {
        keel::net::Client::connect_exactly_once(&[node.addr], None, 11).unwrap()
    } else {
        node.client()
    };
    traffic(&mut client, 3_000);
    let (segments, snapshots) = (segment_files(&journal_dir), snapshots_taken());
    alloc_support::arm();
    traffic(&mut client, 20_000);
    let (allocations, by_thread) = alloc_support::disarm_by_thread();
    let rollovers = segment_files(&journal_dir) - segments;
    let snapshots = snapshots_taken() - snapshots;
    let (state, _) = node.stop();
    println!(
        "{allocations} allocations ({by_thread}), {rollovers} rollovers, {snapshots} snapshots"
    );
    assert_eq!(state.applied, 23_000);
    assert!(rollovers >= 5, "only {rollovers} rollovers in the window");
    assert!(snapshots >= 5, "only {snapshots} snapshots in the window");
    assert_eq!(
        allocations, 0,
        "allocations while serving 20 000 requests ({by_thread})"
    );
}
