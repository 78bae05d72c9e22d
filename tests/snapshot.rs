//! Snapshots and restart: snapshot + tail equals full replay (state hash and outputs) for random
//! workloads at every snapshot point; corrupt snapshots fall back; retention; on-demand capture.

mod common;

use common::{kv_payload, Kv, KV_ADD, KV_DELETE, KV_PANIC, KV_PUT};
use keel::engine::{apply_message, message_of, CONTROL_SNAPSHOT};
use keel::journal::JournalReader;
use keel::ring::Poll;
use keel::snapshot::SnapshotStore;
use keel::{Config, Engine, FlushPolicy, Processor, Status, Submission, WaitStrategy};
use proptest::prelude::*;
use std::path::Path;

type Out = (u64, Status, u32, Vec<u8>);

fn config(dir: &Path, interval: u64) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 256;
    config.output_ring_capacity = 256;
    config.segment_size_bytes = 1 << 20;
    config.wait = WaitStrategy::Yield;
    config.flush = FlushPolicy::None;
    config.snapshot_interval_messages = interval;
    config.snapshot_retain = if interval == 0 { 3 } else { 10_000 };
    config
}

fn op_strategy() -> impl Strategy<Value = (u16, u32, u64)> {
    let kind = prop_oneof![
        6 => Just(KV_PUT),
        6 => Just(KV_ADD),
        3 => Just(KV_DELETE),
        1 => Just(KV_PANIC),
        1 => Just(CONTROL_SNAPSHOT),
    ];
    (kind, 0u32..16, prop_oneof![any::<u64>(), 0u64..100])
}

/// Runs `ops` live; returns the final state and every response.
fn run_live(dir: &Path, interval: u64, ops: &[(u16, u32, u64)]) -> (Kv, Vec<Out>) {
    let mut engine = Engine::start(config(dir, interval), Kv::default()).unwrap();
    let mut rx = engine.take_responses().unwrap();
    let reader = std::thread::spawn(move || {
        let mut outs = Vec::new();
        while !matches!(
            rx.poll(None, |r| outs.push((
                r.header.sequence,
                r.header.status,
                r.header.reason,
                r.payload.to_vec()
            ))),
            Poll::Closed | Poll::Halted
        ) {}
        outs
    });
    for (i, &(kind, key, value)) in ops.iter().enumerate() {
        let to = Submission {
            kind,
            version: 1,
            session_id: 1,
            correlation_id: i as u64,
        };
        engine
            .submitter()
            .submit(to, &kv_payload(key, value))
            .unwrap();
    }
    let state = engine.shutdown().unwrap();
    (state, reader.join().unwrap())
}

/// Replays the journal after `from` into `state`, returning its outputs (same code as recovery).
fn replay(dir: &Path, state: &mut Kv, from: u64) -> Vec<Out> {
    let mut reader = JournalReader::open(&dir.join("journal")).unwrap();
    reader.seek(from + 1).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut outs = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        let applied = apply_message(state, &message_of(&record), &mut buf);
        outs.push((
            record.sequence,
            applied.status,
            applied.reason,
            buf[..applied.len].to_vec(),
        ));
    }
    outs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        ops in proptest::collection::vec(op_strategy(), 1..300),
        interval in 1u64..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (live, live_outs) = run_live(dir.path(), interval, &ops);
        prop_assert_eq!(live_outs.len(), ops.len());

        let mut full = Kv::default();
        let full_outs = replay(dir.path(), &mut full, 0);
        prop_assert_eq!(full.state_hash(), live.state_hash());
        prop_assert_eq!(&full_outs, &live_outs);

        let store = SnapshotStore::open(&dir.path().join("snapshots"), 10_000).unwrap();
        let files = store.list().unwrap();
        prop_assert!(!files.is_empty(), "shutdown always leaves a snapshot");
        for file in files {
            let snapshot = store.load(&file).unwrap();
            let mut state = Kv::default();
            state.load_state(snapshot.header.schema_version, snapshot.state()).unwrap();
            prop_assert_eq!(state.state_hash(), snapshot.header.state_hash);
            let tail = replay(dir.path(), &mut state, file.sequence);
            prop_assert_eq!(state.state_hash(), live.state_hash(), "from snapshot {}", file.sequence);
            prop_assert_eq!(&tail[..], &live_outs[file.sequence as usize..]);
        }

        // And the engine's own restart agrees.
        let restarted = Engine::start(config(dir.path(), interval), Kv::default()).unwrap();
        let recovered = restarted.recovered();
        prop_assert_eq!(recovered.last_sequence, ops.len() as u64);
        prop_assert_eq!(restarted.shutdown().unwrap(), live);
    }
}

/// `n` messages with an on-demand snapshot after every `every` of them (deterministic, unlike
/// the interval snapshots, which are skipped while the writer is busy).
fn workload(dir: &Path, every: u32, n: u32) -> Kv {
    let ops: Vec<_> = (1..=n)
        .flat_map(|i| {
            let op = (
                if i % 3 == 0 { KV_PUT } else { KV_ADD },
                i % 50,
                u64::from(i),
            );
            let snap = (every != 0 && i % every == 0).then_some((CONTROL_SNAPSHOT, 0, 0));
            std::iter::once(op).chain(snap)
        })
        .collect();
    run_live(dir, 0, &ops).0
}

#[test]
fn a_corrupt_newest_snapshot_falls_back_to_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let live = workload(dir.path(), 100, 1_000);
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 100).unwrap();
    let files = store.list().unwrap();
    // One snapshot after every 100 messages, right after its control message; 3 retained.
    assert_eq!(
        files.iter().map(|f| f.sequence).collect::<Vec<_>>(),
        vec![808, 909, 1010]
    );
    // Flip a bit in the newest, truncate the second newest.
    let newest = &files[files.len() - 1].path;
    let mut bytes = std::fs::read(newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(newest, bytes).unwrap();
    let second = &files[files.len() - 2].path;
    let len = std::fs::metadata(second).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(second)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let engine = Engine::start(config(dir.path(), 0), Kv::default()).unwrap();
    assert_eq!(engine.recovered().snapshot_sequence, 808);
    assert_eq!(engine.recovered().replayed, 202);
    assert_eq!(engine.shutdown().unwrap(), live);
}

#[test]
fn with_every_snapshot_unusable_recovery_replays_everything() {
    let dir = tempfile::tempdir().unwrap();
    let live = workload(dir.path(), 250, 1_000);
    for entry in std::fs::read_dir(dir.path().join("snapshots")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let engine = Engine::start(config(dir.path(), 0), Kv::default()).unwrap();
    assert_eq!(
        (
            engine.recovered().snapshot_sequence,
            engine.recovered().replayed
        ),
        (0, 1_004)
    );
    assert_eq!(engine.shutdown().unwrap(), live);
}

/// A snapshot is written only once the journal is durable past it, so one beyond the
/// journal's end means journaled (possibly acknowledged) records are gone: refuse, name it.
#[test]
fn a_snapshot_beyond_the_journal_refuses_recovery() {
    let dir = tempfile::tempdir().unwrap();
    workload(dir.path(), 0, 100);
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 100).unwrap();
    let mut future = Kv::default();
    future.entries.insert(1, 1);
    let mut bytes = Vec::new();
    future.save_state(&mut bytes).unwrap();
    store
        .write(5_000, 0, 1, future.state_hash(), &bytes)
        .unwrap();
    let err = Engine::start(config(dir.path(), 0), Kv::default())
        .err()
        .expect("recovery refuses");
    match err {
        keel::Error::UnboundSnapshot(keel::snapshot::UnboundSnapshot::BeyondEnd {
            sequence,
            journal_end,
            ..
        }) => assert_eq!((sequence, journal_end), (5_000, 100)),
        other => panic!("expected a refusal, got {other}"),
    }
    let names: Vec<u64> = store.list().unwrap().iter().map(|f| f.sequence).collect();
    assert_eq!(names, vec![100, 5_000], "nothing was removed");
}

#[test]
fn retention_keeps_the_newest_k() {
    let dir = tempfile::tempdir().unwrap();
    workload(dir.path(), 10, 100);
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 3).unwrap();
    let files = store.list().unwrap();
    assert_eq!(
        files.iter().map(|f| f.sequence).collect::<Vec<_>>(),
        vec![88, 99, 110]
    );
}

#[test]
fn on_demand_snapshot_is_named_by_its_sequence_and_its_pause_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = {
        let mut config = config(dir.path(), 0);
        config.snapshot_on_shutdown = false;
        config.discard_responses = true;
        config
    };
    let mut engine = Engine::start(cfg, Kv::default()).unwrap();
    for i in 0..10u32 {
        let to = Submission {
            kind: KV_PUT,
            version: 1,
            session_id: 0,
            correlation_id: 0,
        };
        engine.submitter().submit(to, &kv_payload(i, 1)).unwrap();
    }
    let seq = engine.request_snapshot().unwrap();
    assert_eq!(seq, 11);
    let metrics = engine.metrics();
    engine.shutdown().unwrap();
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 3).unwrap();
    let files = store.list().unwrap();
    assert_eq!(
        files.iter().map(|f| f.sequence).collect::<Vec<_>>(),
        vec![11]
    );
    let stats = metrics.read();
    assert_eq!(stats.snapshots_written, 1);
    assert!(stats.snapshot_capture_max_ns > 0);
}
