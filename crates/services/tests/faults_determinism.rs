//! Determinism soak for both applications: random seeded workloads (streams of several seeds
//! interleaved, so states and rejections vary beyond the canonical stream) run live through
//! the engine with snapshots at random points; then the journal is replayed twice from
//! scratch and once from every snapshot. Every replay must give the live run's state hash,
//! and the same outputs (status, reason, response kind and bytes) for every message.
//!
//! The short variants run in CI; the long one is `#[ignore]`:
//! `KEEL_SOAK_SEEDS=20 KEEL_SOAK_MESSAGES=200000 cargo test --release --test
//! faults_determinism -- --ignored --nocapture`

#[path = "../../../tests/rng/mod.rs"]
mod rng;

use keel::engine::{apply_message, message_of};
use keel::journal::JournalReader;
use keel::ring::Poll;
use keel::snapshot::SnapshotStore;
use keel::Typed;
use keel::{Config, Engine, FlushPolicy, Status, Submission, WaitStrategy};
use keel_services::bookstore::Bookstore;
use keel_services::exchange::Exchange;
use keel_services::App;
use rng::Rng;
use std::path::Path;
use std::time::Instant;

/// One output: sequence, status, reason, response kind, payload.
type Out = (u64, Status, u32, u16, Vec<u8>);

fn config(dir: &Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 4096;
    config.output_ring_capacity = 4096;
    config.segment_size_bytes = 4 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::None;
    config.snapshot_interval_messages = 0;
    config.snapshot_retain = 1_000;
    config.snapshot_on_shutdown = false;
    config
}

/// The run's messages: `A::setup(seed)`, then `n` messages drawn from the workloads of four
/// seeds, each stream advancing independently.
fn workload<A: App>(seed: u64, n: u64) -> Vec<keel_services::Command> {
    let seeds = [seed, seed ^ 0xa5a5, seed.rotate_left(17), seed + 1];
    let mut next = [0u64; 4];
    let mut rng = Rng(seed | 1);
    let mut out = A::setup(seed);
    for _ in 0..n {
        let k = rng.below(4) as usize;
        out.push(A::workload(seeds[k], next[k]));
        next[k] += 1;
    }
    out
}

/// Runs `commands` live with about `snapshots` on-demand snapshots at random points;
/// returns the final state and every output.
fn live<A: App>(
    dir: &Path,
    commands: &[keel_services::Command],
    seed: u64,
    snapshots: u64,
) -> (A, Vec<Out>) {
    let mut engine = Engine::start(config(dir), A::default()).unwrap();
    let mut rx = engine.take_responses().unwrap();
    let reader = std::thread::spawn(move || {
        let mut outs = Vec::new();
        while !matches!(
            rx.poll(None, |r| {
                let h = r.header;
                outs.push((h.sequence, h.status, h.reason, h.kind, r.payload.to_vec()))
            }),
            Poll::Closed | Poll::Halted
        ) {}
        outs
    });
    let mut rng = Rng(seed ^ 0x51ab);
    let points: std::collections::BTreeSet<u64> = (0..snapshots)
        .map(|_| rng.below(commands.len() as u64))
        .collect();
    for (i, c) in commands.iter().enumerate() {
        let to = Submission {
            kind: c.kind,
            version: c.version,
            session_id: 1 + i as u64 % 5,
            correlation_id: i as u64,
        };
        engine.submitter().submit(to, &c.payload).unwrap();
        if points.contains(&(i as u64)) {
            engine.request_snapshot().unwrap();
        }
    }
    let state = engine.shutdown().unwrap();
    (state, reader.join().unwrap())
}

/// Replays the journal after `from` into `state` with the engine's own apply path.
fn replay<A: App>(dir: &Path, state: &mut A, from: u64) -> Vec<Out> {
    let mut reader = JournalReader::open(&dir.join("journal")).unwrap();
    reader.seek(from + 1).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut outs = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        let a = apply_message(state, &message_of(&record), &mut buf);
        let payload = buf[..a.len].to_vec();
        outs.push((record.sequence, a.status, a.reason, a.kind, payload));
    }
    outs
}

/// The whole soak for one app and seed; returns (messages, snapshots checked).
fn soak<A: App>(seed: u64, n: u64, snapshots: u64) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let commands = workload::<A>(seed, n);
    let (live_state, live_outs) = live::<A>(dir, &commands, seed, snapshots);
    let hash = live_state.state_hash();
    let responses: Vec<&Out> = live_outs.iter().collect();
    for round in 0..2 {
        let mut state = A::default();
        let outs = replay(dir, &mut state, 0);
        assert_eq!(
            state.state_hash(),
            hash,
            "{} seed {seed}: replay {round}",
            A::NAME
        );
        // The live side also saw control messages' (empty) responses: compare all.
        assert_eq!(
            outs.iter().collect::<Vec<_>>(),
            responses,
            "{} seed {seed}",
            A::NAME
        );
    }
    let store = SnapshotStore::open(&dir.join("snapshots"), 1_000).unwrap();
    let files = store.list().unwrap();
    for file in &files {
        let snapshot = store.load(file).unwrap();
        let mut state = A::default();
        state
            .load_state(snapshot.header.schema_version, snapshot.state())
            .unwrap();
        assert_eq!(state.state_hash(), snapshot.header.state_hash);
        let tail = replay(dir, &mut state, file.sequence);
        let what = format!("{} seed {seed} from snapshot {}", A::NAME, file.sequence);
        assert_eq!(state.state_hash(), hash, "{what}");
        assert_eq!(&tail[..], &live_outs[file.sequence as usize..], "{what}");
    }
    let restarted = Engine::start(config(dir), A::default()).unwrap();
    assert_eq!(
        restarted.shutdown().unwrap().state_hash(),
        hash,
        "{} restart",
        A::NAME
    );
    (commands.len(), files.len())
}

fn soak_both(seeds: impl Iterator<Item = u64>, n: u64) {
    for seed in seeds {
        let started = Instant::now();
        let (b, bs) = soak::<Typed<Bookstore>>(seed, n, 6);
        let (x, xs) = soak::<Typed<Exchange>>(seed, n, 6);
        eprintln!(
            "seed {seed}: bookstore {b} messages / {bs} snapshots, exchange {x} / {xs}, {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn replays_and_snapshot_restores_agree_with_the_live_run() {
    soak_both([0x00c0_ffee].into_iter(), 4_000);
}

#[test]
#[ignore = "long soak: run by hand (see the module docs)"]
fn long_determinism_soak() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seeds = var("KEEL_SOAK_SEEDS", 20);
    let n = var("KEEL_SOAK_MESSAGES", 200_000);
    soak_both(
        (1..=seeds).map(|s| s.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        n,
    );
}
