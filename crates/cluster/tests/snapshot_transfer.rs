//! Catch-up through a snapshot transfer: a follower that needs records its leader's journal
//! no longer holds (retention deleted them) receives the leader's snapshot, installs it in
//! place of its journal (moved aside, never deleted) and follows from there.

mod support;

use std::path::{Path, PathBuf};

use keel::journal::JournalRetention;
use keel::Processor;
use keel_cluster::data::frame::ChainStatus;
use keel_cluster::data::install::{self, Plan, INTENT_FILE};
use keel_cluster::data::log;
use keel_cluster::data::terms::Terms;
use keel_cluster::AckPolicy;
use support::{engine_config, wait_until, Cluster, LONG};

/// Small segments, a snapshot every 500 messages, two kept, older segments deleted.
fn retaining(c: &mut keel::Config) {
    c.segment_size_bytes = 128 << 10;
    c.snapshot_interval_messages = 500;
    c.snapshot_retain = 2;
    c.journal_retention = JournalRetention::Delete;
}

fn journal_dir(c: &Cluster, id: u64) -> PathBuf {
    c.nodes[id as usize - 1].dir.join("journal")
}

/// Writes `count` messages through node 1 from `first` and waits until all are answered.
fn write(c: &Cluster, first: u64, count: u64) {
    let before = c.responses(1);
    c.submit(1, first, count);
    assert!(
        wait_until(LONG, || c.responses(1) == before + count),
        "answered: {} of {}",
        c.responses(1) - before,
        count
    );
}

/// Writes until node 1's journal starts after `after` (retention retired its early segments).
fn write_until_retired(c: &Cluster, after: u64) -> u64 {
    let mut written = 0;
    for _ in 0..40 {
        write(c, written, 1_000);
        written += 1_000;
        let retired = wait_until(std::time::Duration::from_millis(500), || {
            log::first_sequence(&journal_dir(c, 1)).expect("first") > after + 1
        });
        if retired {
            return written;
        }
    }
    panic!("node 1 never retired its journal's start");
}

/// Waits until every node in `ids` applied node 1's last sequence and holds its chain there,
/// then compares their state hashes (each node stopped).
fn converge(c: &mut Cluster, ids: &[u64]) {
    let last = c.node(1).status().last_sequence;
    c.wait_applied(ids, last);
    for id in ids {
        assert_eq!(c.chain_at(*id, last), c.chain_at(1, last), "node {id}");
        assert!(matches!(c.chain_at(*id, last), ChainStatus::Holds(_)));
    }
    let hashes: Vec<u64> = ids
        .iter()
        .map(|id| c.stop(*id).expect("a processor").state_hash())
        .collect();
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "state hashes {hashes:?}"
    );
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn a_follower_started_from_an_empty_disk_catches_up_through_a_snapshot() {
    let mut c = Cluster::with_config(3, AckPolicy::Majority, retaining);
    c.stop(3);
    c.elect(1, 1);
    let mut written = write_until_retired(&c, 0);
    let first = log::first_sequence(&journal_dir(&c, 1)).expect("first");
    c.start(3);
    let last = c.node(1).status().last_sequence;
    c.wait_applied(&[3], last);
    let started = log::first_sequence(&journal_dir(&c, 3)).expect("first");
    assert!(
        started > 1 && started >= first - 1,
        "node 3's journal starts after the snapshot it installed: {started} (leader's {first})"
    );
    // And it keeps following.
    write(&c, written, 2_000);
    written += 2_000;
    assert!(written > 0);
    converge(&mut c, &[1, 2, 3]);
}

/// Three retaining nodes led by node 1; node 3 stopped holding the first 100 writes (its
/// term record too), then the leader retired its journal's start. Returns the cluster and
/// how many writes followed the first 100.
fn node_3_left_behind() -> (Cluster, u64) {
    let mut c = Cluster::with_config(3, AckPolicy::Majority, retaining);
    c.elect(1, 1);
    write(&c, 0, 100);
    let old_last = c.node(1).status().last_sequence;
    c.wait_applied(&[3], old_last);
    c.stop(3);
    let written = write_until_retired(&c, old_last);
    (c, written)
}

#[test]
fn a_follower_with_an_old_journal_moves_it_aside_and_installs_the_snapshot() {
    let (mut c, written) = node_3_left_behind();
    c.start(3);
    let last = c.node(1).status().last_sequence;
    c.wait_applied(&[3], last);
    let quarantine = journal_dir(&c, 3).join(install::JOURNAL_QUARANTINE_DIR);
    let moved: Vec<_> = std::fs::read_dir(&quarantine)
        .expect("a quarantine folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(files_in(&moved[0]) >= 2, "segments and terms moved aside");
    write(&c, written, 500);
    converge(&mut c, &[1, 2, 3]);
}

/// The newest snapshot file of node `id`: its path, sequence and chain value.
fn newest_snapshot(c: &Cluster, id: u64) -> (PathBuf, u64, u32) {
    let dir = c.nodes[id as usize - 1].dir.join("snapshots");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("snapshots")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    let path = files.pop().expect("a snapshot");
    let header = keel::snapshot::read_header_of(&path).expect("header");
    (path, header.sequence, header.journal_chain.expect("bound"))
}

#[test]
fn an_install_interrupted_by_a_crash_is_completed_at_the_next_start() {
    let (mut c, written) = node_3_left_behind();
    // The crash: the snapshot staged and the intent written, one segment moved aside.
    let (snapshot, sequence, chain) = newest_snapshot(&c, 1);
    let config = engine_config(&c.nodes[2].dir);
    std::fs::create_dir_all(&config.snapshot_dir).expect("snapshot dir");
    std::fs::copy(&snapshot, install::staged_path(&config, sequence)).expect("stage");
    let plan = Plan {
        sequence,
        chain,
        history: Terms::term_at(&journal_dir(&c, 1), sequence).expect("terms"),
        attempt: 0,
    };
    install::write_intent(&config.journal_dir, &plan).expect("intent");
    let quarantine = install::quarantine_dir(&config, &plan);
    std::fs::create_dir_all(&quarantine).expect("quarantine");
    let segment = std::fs::read_dir(&config.journal_dir)
        .expect("journal")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    std::fs::rename(
        &segment,
        quarantine.join(segment.file_name().expect("name")),
    )
    .expect("move");
    // The next start finishes the install, then follows the leader from the snapshot on.
    c.start(3);
    assert!(!config.journal_dir.join(INTENT_FILE).exists());
    assert_eq!(
        log::first_sequence(&config.journal_dir).expect("first"),
        sequence + 1
    );
    // The old journal is kept: the segment the crash had moved, and the rest the restart
    // moved (into this folder; or a later one if the leader retired more meanwhile and sent a
    // newer snapshot, which moves what this install left).
    let kept: Vec<_> = std::fs::read_dir(quarantine.parent().expect("quarantine folder"))
        .expect("quarantines")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("q"))
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    let moved = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        kept.contains(&moved) && kept.iter().any(|n| n.starts_with("terms")),
        "the old journal is kept: {kept:?}"
    );
    let last = c.node(1).status().last_sequence;
    c.wait_applied(&[3], last);
    write(&c, written, 500);
    converge(&mut c, &[1, 2, 3]);
}

#[test]
fn a_snapshot_below_the_commit_a_follower_holds_is_refused() {
    use keel_cluster::data::frame::Frame;
    use keel_cluster::data::wire::{FrameReader, FrameWriter, WireError};
    use keel_cluster::node::CHANNEL_DATA;
    use std::io::Write;
    let c = Cluster::new(3, AckPolicy::Majority);
    c.elect(1, 1);
    write(&c, 0, 10);
    let last = c.node(1).status().last_sequence;
    c.wait_applied(&[2], last);
    assert!(wait_until(LONG, || c.node(2).status().commit >= last));
    // A leader of a later term offers node 2 a snapshot of sequence 1: installing it would
    // drop records node 2 holds and knows are committed.
    let mut stream = std::net::TcpStream::connect(c.nodes[1].address).expect("connect");
    stream.write_all(&[CHANNEL_DATA]).expect("channel");
    let mut reader =
        FrameReader::new(stream.try_clone().expect("clone"), Some(LONG)).expect("reader");
    let mut writer = FrameWriter::new(stream).expect("writer");
    let hello = Frame::Hello {
        term: 2,
        leader_id: 3,
        term_start: 0,
        client_address: "",
    };
    writer.send(&hello).expect("hello");
    let begin = Frame::SnapshotBegin {
        term: 2,
        sequence: 1,
        total_bytes: 10,
        history_term: 1,
        history_term_start: 1,
        chain: 0,
    };
    writer.send(&begin).expect("begin");
    let mut closed = false;
    for _ in 0..1_000 {
        match reader.read_frame() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(WireError::Closed | WireError::Io(_)) => {
                closed = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(closed, "node 2 ends the session");
    assert_eq!(
        c.node(2).status().last_sequence,
        last,
        "nothing was changed"
    );
    let journal = journal_dir(&c, 2);
    assert_eq!(log::first_sequence(&journal).expect("first"), 1);
    assert!(!journal.join(install::JOURNAL_QUARANTINE_DIR).exists());
}
