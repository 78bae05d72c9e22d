//! Snapshots taken by a replica that follows the journal (`Engine::start_with_replica`): the
//! same bytes and state hash as the live state at each snapshot's sequence, recovery from
//! them, no capture on the business-logic thread, a clean shutdown, and a replica that falls
//! behind never holds up the live path.

mod common;

use common::{kv_payload, Kv, KV_ADD, KV_DELETE, KV_PANIC, KV_PUT};
use keel::codec::CodecError;
use keel::engine::{apply_message, message_of, ApplyMode, Message, Outcome, Output};
use keel::journal::JournalReader;
use keel::ring::Poll;
use keel::snapshot::{SnapshotStore, StateError};
use keel::{Config, Engine, FlushPolicy, Processor, Submission, WaitStrategy};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// `Kv`, which on the live side records its saved state after every sequence a multiple of
/// `every` (what the live thread would have captured there), and on the replica side may be
/// held at a gate before each apply.
#[derive(Default)]
struct Tracked {
    kv: Kv,
    every: u64,
    live_states: Option<States>,
    gate: Option<Arc<Gate>>,
}

/// The live processor's saved states: (sequence, bytes).
type States = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// A gate the replica waits at while closed.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn wait_open(&self) {
        let open = self.open.lock().unwrap();
        let (open, timeout) = self
            .changed
            .wait_timeout_while(open, Duration::from_secs(60), |open| !*open)
            .unwrap();
        assert!(*open && !timeout.timed_out(), "the gate stayed closed");
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

/// Opens the gate when dropped (a failing test must not leave the replica waiting).
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

impl Processor for Tracked {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        if let Some(gate) = &self.gate {
            gate.wait_open();
        }
        let sequence = message.header.sequence;
        let outcome = self.kv.apply(message, out);
        if let Some(states) = self.live_states.as_ref() {
            if self.every != 0 && sequence.is_multiple_of(self.every) {
                let mut bytes = Vec::new();
                self.kv.save_state(&mut bytes).unwrap();
                states.lock().unwrap().push((sequence, bytes));
            }
        }
        outcome
    }
    fn state_hash(&self) -> u64 {
        self.kv.state_hash()
    }
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.kv.save_state(out)
    }
    fn load_state(&mut self, schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        self.kv.load_state(schema_version, bytes)
    }
}

fn config(dir: &Path, interval: u64, mode: ApplyMode, flush: FlushPolicy) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 256;
    config.output_ring_capacity = 256;
    config.segment_size_bytes = 1 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = flush;
    config.mode = mode;
    config.snapshot_interval_messages = interval;
    config.snapshot_retain = 10_000;
    config
}

/// Message `i` of a deterministic workload over 32 keys, with a panicking apply now and then.
fn op(i: u64) -> (u16, [u8; 12]) {
    let kind = match i % 17 {
        0 => KV_DELETE,
        5 => KV_PANIC,
        1 | 7 | 11 => KV_ADD,
        _ => KV_PUT,
    };
    (kind, kv_payload((i * 7 % 32) as u32, i * 1_000_003))
}

/// Reads every response on another thread until the output closes; returns how many came.
fn read_responses(engine: &mut Engine<Tracked>) -> std::thread::JoinHandle<u64> {
    let mut rx = engine.take_responses().unwrap();
    std::thread::spawn(move || {
        let mut count = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let poll = rx.poll(Some(Instant::now() + Duration::from_millis(50)), |_| {
                count += 1
            });
            if matches!(poll, Poll::Closed | Poll::Halted) {
                break;
            }
        }
        count
    })
}

/// Submits messages `from..to` of the workload.
fn submit(engine: &mut Engine<Tracked>, from: u64, to: u64) {
    for i in from..to {
        let (kind, payload) = op(i);
        let to = Submission {
            kind,
            version: 1,
            session_id: 1,
            correlation_id: i,
        };
        engine.submitter().submit(to, &payload).unwrap();
    }
}

/// Every snapshot in the store: (sequence, state hash, state bytes).
fn snapshots(dir: &Path) -> Vec<(u64, u64, Vec<u8>)> {
    let store = SnapshotStore::open(&dir.join("snapshots"), 10_000).unwrap();
    store
        .list()
        .unwrap()
        .iter()
        .map(|file| {
            let loaded = store.load(file).unwrap();
            (
                file.sequence,
                loaded.header.state_hash,
                loaded.state().to_vec(),
            )
        })
        .collect()
}

/// The state a full replay of the journal reaches at `sequence`.
fn replayed_to(dir: &Path, sequence: u64) -> Kv {
    let mut state = Kv::default();
    let mut reader = JournalReader::open(&dir.join("journal")).unwrap();
    let mut scratch = vec![0u8; 4096];
    while let Some(record) = reader.next().unwrap() {
        if record.sequence > sequence {
            break;
        }
        apply_message(&mut state, &message_of(&record), &mut scratch);
    }
    state
}

fn live(every: u64) -> (Tracked, States) {
    let states = Arc::new(Mutex::new(Vec::new()));
    let tracked = Tracked {
        every,
        live_states: Some(states.clone()),
        ..Tracked::default()
    };
    (tracked, states)
}

#[test]
fn replica_snapshots_are_the_live_state_at_their_sequence_and_pause_nothing() {
    const N: u64 = 3_000;
    const EVERY: u64 = 250;
    let modes = [
        (ApplyMode::Durable, FlushPolicy::None),
        (ApplyMode::Durable, FlushPolicy::Batch),
        (ApplyMode::ApplyAhead, FlushPolicy::Batch),
        (ApplyMode::ApplyAhead, FlushPolicy::IntervalMs(2)),
    ];
    for (mode, flush) in modes {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (processor, live_states) = live(EVERY);
        let cfg = config(dir, EVERY, mode, flush);
        let mut engine = Engine::start_with_replica(cfg, processor, Tracked::default).unwrap();
        let metrics = engine.metrics();
        let reader = read_responses(&mut engine);
        submit(&mut engine, 0, N / 2);
        let requested = engine.request_snapshot().unwrap();
        submit(&mut engine, N / 2, N);
        let state = engine.shutdown().unwrap();
        assert_eq!(reader.join().unwrap(), N + 1, "every message answered");
        let m = metrics.read();
        assert_eq!(
            m.snapshot_capture_ns, 0,
            "{mode:?} {flush}: the live thread captured"
        );
        assert_eq!(m.snapshot_capture_max_ns, 0);
        assert_eq!(m.snapshots_failed, 0);
        assert_eq!(m.replica_applied, m.applied, "{mode:?} {flush}");
        let snaps = snapshots(dir);
        let live_states = live_states.lock().unwrap();
        let last = m.applied;
        let mut matched = 0;
        for (sequence, bytes) in live_states.iter() {
            let snap = snaps.iter().find(|s| s.0 == *sequence);
            // An interval capture is skipped (counted) while the previous one is being written.
            let Some((_, hash, state)) = snap else {
                continue;
            };
            assert_eq!(state, bytes, "{mode:?} {flush}: snapshot at {sequence}");
            let mut kv = Kv::default();
            kv.load_state(1, bytes).unwrap();
            assert_eq!(*hash, kv.state_hash());
            matched += 1;
        }
        let unmatched = (live_states.len() - matched) as u64;
        assert!(
            matched >= 1 && unmatched <= m.snapshots_skipped,
            "{mode:?} {flush}"
        );
        for s in [requested, last] {
            let (_, hash, _) = snaps.iter().find(|x| x.0 == s).expect("snapshot taken");
            assert_eq!(*hash, replayed_to(dir, s).state_hash(), "at {s}");
        }
        assert_eq!(snaps.last().unwrap().1, state.state_hash());
    }
}

#[test]
fn recovery_starts_from_a_replica_snapshot_and_so_does_the_next_replica() {
    const EVERY: u64 = 400;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = config(dir, EVERY, ApplyMode::Durable, FlushPolicy::Batch);
    let mut engine =
        Engine::start_with_replica(cfg.clone(), Tracked::default(), Tracked::default).unwrap();
    let reader = read_responses(&mut engine);
    submit(&mut engine, 0, 1_000);
    let first = engine.shutdown().unwrap();
    assert_eq!(reader.join().unwrap(), 1_000);
    // The shutdown snapshot at 1000, from the replica.
    assert_eq!(snapshots(dir).last().unwrap().0, 1_000);

    // A plain engine recovers from it.
    let engine = Engine::start(cfg.clone(), Tracked::default()).unwrap();
    assert_eq!(engine.recovered().snapshot_sequence, 1_000);
    assert_eq!(engine.recovered().replayed, 0);
    assert_eq!(engine.shutdown().unwrap().kv, first.kv);

    // Messages after the snapshot, then a kill: no shutdown snapshot (interval ones only).
    let mut no_shutdown = cfg.clone();
    no_shutdown.snapshot_on_shutdown = false;
    let mut engine =
        Engine::start_with_replica(no_shutdown, Tracked::default(), Tracked::default).unwrap();
    let reader = read_responses(&mut engine);
    submit(&mut engine, 1_000, 1_500);
    engine.shutdown().unwrap();
    assert_eq!(reader.join().unwrap(), 500);
    assert_eq!(snapshots(dir).last().unwrap().0, 1_200);

    // The next replica starts from the snapshot at 1200 and replays 1201..=1500 with the live
    // thread; its own snapshots match a full replay.
    let mut engine = Engine::start_with_replica(cfg, Tracked::default(), Tracked::default).unwrap();
    assert_eq!(engine.recovered().snapshot_sequence, 1_200);
    assert_eq!(engine.recovered().replayed, 300);
    let metrics = engine.metrics();
    let reader = read_responses(&mut engine);
    submit(&mut engine, 1_500, 2_100);
    let state = engine.shutdown().unwrap();
    assert_eq!(reader.join().unwrap(), 600);
    assert_eq!(metrics.read().snapshot_capture_max_ns, 0);
    let snaps = snapshots(dir);
    assert_eq!(snaps.last().unwrap().0, 2_100);
    for (s, hash, _) in snaps.iter().filter(|x| x.0 > 1_500) {
        assert_eq!(*hash, replayed_to(dir, *s).state_hash(), "at {s}");
    }
    assert_eq!(replayed_to(dir, 2_100), state.kv);
}

#[test]
fn a_replica_that_falls_behind_never_holds_up_the_live_path() {
    // Four times the ring's capacity: the live path would stall if it waited for the replica.
    const N: u64 = 1_024;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let gate = Arc::new(Gate::default());
    let held = gate.clone();
    let replica = move || Tracked {
        gate: Some(held),
        ..Tracked::default()
    };
    let cfg = config(dir, 100, ApplyMode::Durable, FlushPolicy::Batch);
    let mut engine = Engine::start_with_replica(cfg, Tracked::default(), replica).unwrap();
    let metrics = engine.metrics();
    let _release_on_failure = OpenOnDrop(gate.clone());
    let mut rx = engine.take_responses().unwrap();
    let mut answered = 0u64;
    let mut submitted = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered < N {
        assert!(
            Instant::now() < deadline,
            "live path stuck at {answered} answers"
        );
        while submitted < N && submitted - answered < 128 {
            let (kind, payload) = op(submitted);
            let to = Submission {
                kind,
                version: 1,
                session_id: 1,
                correlation_id: submitted,
            };
            engine.submitter().submit(to, &payload).unwrap();
            submitted += 1;
        }
        rx.poll(Some(Instant::now() + Duration::from_millis(10)), |_| {
            answered += 1
        });
    }
    let m = metrics.read();
    assert_eq!(
        m.replica_applied, 0,
        "the replica is held before its first apply"
    );
    assert_eq!(m.snapshots_written, 0);
    // Released, the replica catches up, and shutdown waits for its last snapshot.
    gate.open();
    let reader =
        std::thread::spawn(
            move || while !matches!(rx.poll(None, |_| {}), Poll::Closed | Poll::Halted) {},
        );
    let state = engine.shutdown().unwrap();
    reader.join().unwrap();
    let m = metrics.read();
    assert_eq!(m.replica_applied, N);
    assert_eq!(m.snapshot_sequence, N);
    assert_eq!(m.snapshot_capture_max_ns, 0);
    assert_eq!(snapshots(dir).last().unwrap().1, state.state_hash());
}
