//! The engine's hooks for replication: the commit gate (apply in durable mode, responses in
//! apply-ahead mode, wait for it), `Submitter::submit_record` (a follower journals a leader's
//! records byte for byte), `Engine::halt` (stops without what the gate holds back), and the
//! term record kind (0xFF02, journaled, never reaching the processor).

use keel::codec::CodecError;
use keel::engine::{ClientError, ResponseReceiver, SubmitError};
use keel::journal::{verify, JournalConfig, JournalReader, JournalWriter, Record};
use keel::ring::{Poll, Sequence};
use keel::snapshot::{load_serde, save_serde, StateError};
use keel::{
    ApplyMode, Config, Engine, FlushPolicy, Message, Outcome, Output, Processor, Producers,
    Submission, WaitStrategy,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The replication term record's kind (reserved; the cluster crate defines it).
const TERM_RECORD: u16 = 0xFF02;

/// Folds everything a message carries into its state, so any difference in what a follower
/// was fed shows in the hash.
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorder {
    applied: u64,
    last_sequence: u64,
    hash: u64,
}

impl Processor for Recorder {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        let h = &message.header;
        assert!(
            h.kind < TERM_RECORD,
            "control kinds never reach the processor"
        );
        assert!(h.sequence > self.last_sequence, "in order");
        self.applied += 1;
        self.last_sequence = h.sequence;
        for word in [h.sequence, h.timestamp_ns, h.session_id, h.correlation_id] {
            self.hash = (self.hash ^ word).wrapping_mul(0x100_0000_01b3);
        }
        self.hash ^= u64::from(h.kind) << 16 | u64::from(h.version);
        for &byte in message.payload {
            self.hash = (self.hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        out.write(&h.sequence.to_le_bytes()).unwrap();
        Outcome::Accepted
    }

    fn state_hash(&self) -> u64 {
        self.hash ^ self.applied.rotate_left(32)
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(self, out)
    }

    fn load_state(&mut self, _schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        *self = load_serde(bytes)?;
        Ok(())
    }
}

fn config(dir: &Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 256;
    config.output_ring_capacity = 256;
    config.segment_size_bytes = 1 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::Batch;
    config.snapshot_on_shutdown = false;
    config
}

fn gated(dir: &Path, mode: ApplyMode) -> (Config, Arc<Sequence>) {
    let gate = Arc::new(Sequence::new(0));
    let mut config = config(dir);
    config.mode = mode;
    config.commit_gate = Some(gate.clone());
    (config, gate)
}

fn to(kind: u16, session_id: u64, correlation_id: u64) -> Submission {
    Submission {
        kind,
        version: 1 + kind % 3,
        session_id,
        correlation_id,
    }
}

/// Waits (parking 1 ms at a time, at most 10 s) until `ready()`; returns whether it held.
fn wait_until(mut ready: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    for _ in 0..10_000 {
        if ready() {
            return true;
        }
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    ready()
}

/// Reads responses until `count` arrived (bounded); returns their sequences.
fn receive(rx: &mut ResponseReceiver, count: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..1_000 {
        if got.len() >= count {
            break;
        }
        let deadline = Some(Instant::now() + Duration::from_millis(10));
        rx.poll(deadline, |r| got.push(r.header.sequence));
    }
    got
}

/// One journal record, owned: sequence, timestamp, session, correlation, kind, version,
/// payload.
type Owned = (u64, u64, u64, u64, u16, u16, Vec<u8>);

/// Every record of the journal in `dir`, owned.
fn records(dir: &Path) -> Vec<Owned> {
    let mut reader = JournalReader::open(dir).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next().unwrap() {
        out.push((
            r.sequence,
            r.timestamp_ns,
            r.session_id,
            r.correlation_id,
            r.kind,
            r.version,
            r.payload.to_vec(),
        ));
    }
    out
}

/// The chain value at the end of the journal in `dir` (the CRC of its last record, which
/// covers every earlier record through `prev_crc`).
fn last_chain(dir: &Path) -> u32 {
    let mut journal = JournalConfig::new(dir);
    journal.segment_size_bytes = 1 << 20;
    JournalWriter::open(&journal).unwrap().last_chain()
}

fn term_payload(term: u64, leader: u64) -> [u8; 16] {
    let mut payload = [0u8; 16];
    payload[..8].copy_from_slice(&term.to_le_bytes());
    payload[8..].copy_from_slice(&leader.to_le_bytes());
    payload
}

#[test]
fn a_follower_fed_the_leaders_records_journals_them_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (leader_dir, follower_dir) = (tmp.path().join("leader"), tmp.path().join("follower"));
    let mut leader = Engine::start(config(&leader_dir), Recorder::default()).unwrap();
    let mut rx = leader.take_responses().unwrap();
    let submitter = leader.submitter();
    submitter
        .submit(to(TERM_RECORD, 0, 0), &term_payload(1, 1))
        .unwrap();
    for i in 1..=200u64 {
        let payload = vec![i as u8; (i % 40) as usize];
        submitter
            .submit(to((i % 9) as u16, i % 5, i * 3), &payload)
            .unwrap();
    }
    assert_eq!(
        receive(&mut rx, 201).len(),
        201,
        "the term record is answered in its slot"
    );
    drop(rx);
    let leader_state = leader.shutdown().unwrap();
    assert_eq!(
        leader_state.applied, 200,
        "the term record reached no processor"
    );

    let mut follower = Engine::start(config(&follower_dir), Recorder::default()).unwrap();
    let submitter = follower.submitter();
    let mut reader = JournalReader::open(&leader_dir.join("journal")).unwrap();
    let mut fed = 0;
    while let Some(record) = reader.next().unwrap() {
        if record.sequence == 5 {
            let skipped = Record {
                sequence: 6,
                ..record
            };
            let refused = submitter.submit_record(&skipped).unwrap_err();
            assert!(
                matches!(
                    refused,
                    SubmitError::OutOfSequence {
                        sequence: 6,
                        expected: 5
                    }
                ),
                "{refused}"
            );
        }
        assert_eq!(submitter.submit_record(&record).unwrap(), record.sequence);
        fed += 1;
    }
    assert_eq!(fed, 201);
    let follower_state = follower.shutdown().unwrap();
    assert_eq!(follower_state, leader_state);
    let (leader_journal, follower_journal) =
        (leader_dir.join("journal"), follower_dir.join("journal"));
    assert_eq!(records(&follower_journal), records(&leader_journal));
    assert_eq!(verify(&follower_journal).unwrap().last_sequence, 201);
    assert_eq!(last_chain(&follower_journal), last_chain(&leader_journal));
}

#[test]
fn a_gated_engine_applies_only_what_the_gate_released_and_halts_without_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, gate) = gated(tmp.path(), ApplyMode::Durable);
    let mut engine = Engine::start(config, Recorder::default()).unwrap();
    let waker = engine
        .commit_gate_waker()
        .expect("a gated engine has a waker");
    let metrics = engine.metrics();
    let mut rx = engine.take_responses().unwrap();
    for i in 1..=10 {
        engine.submitter().submit(to(1, 1, i), &[1]).unwrap();
    }
    assert!(wait_until(|| metrics.durable_sequence() == 10), "journaled");
    assert_eq!(engine.applied_sequence(), 0, "nothing released yet");
    assert!(waker.advance(&gate, 4));
    assert!(!waker.advance(&gate, 3), "never backwards");
    assert_eq!(receive(&mut rx, 4), [1, 2, 3, 4]);
    assert!(wait_until(|| metrics.applied_sequence() == 4));
    assert_eq!(
        engine.journaled_sequence(),
        10,
        "local durable is not gated"
    );
    // The rest is journaled and held back: halt returns at once, at the gate.
    let processor = engine.halt().unwrap();
    assert_eq!((processor.applied, processor.last_sequence), (4, 4));
    drop(rx);
    // A plain restart replays everything journaled.
    let engine = Engine::start(self::config(tmp.path()), Recorder::default()).unwrap();
    assert_eq!(engine.recovered_sequence(), 10);
    assert_eq!(engine.shutdown().unwrap().applied, 10);
}

#[test]
fn a_gate_ahead_of_the_journal_is_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, gate) = gated(tmp.path(), ApplyMode::Durable);
    let mut engine = Engine::start(config, Recorder::default()).unwrap();
    engine.commit_gate_waker().unwrap().advance(&gate, 1_000);
    let mut rx = engine.take_responses().unwrap();
    for i in 1..=5 {
        engine.submitter().submit(to(1, 1, i), &[2]).unwrap();
    }
    assert_eq!(receive(&mut rx, 5), [1, 2, 3, 4, 5]);
    drop(rx);
    assert_eq!(engine.shutdown().unwrap().applied, 5);
}

#[test]
fn apply_ahead_releases_responses_only_through_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, gate) = gated(tmp.path(), ApplyMode::ApplyAhead);
    let mut engine = Engine::start(config, Recorder::default()).unwrap();
    let waker = engine.commit_gate_waker().unwrap();
    let metrics = engine.metrics();
    let mut rx = engine.take_responses().unwrap();
    for i in 1..=6 {
        engine.submitter().submit(to(1, 1, i), &[3]).unwrap();
    }
    assert!(wait_until(
        || metrics.applied_sequence() == 6 && metrics.durable_sequence() == 6
    ));
    assert_eq!(
        rx.try_poll(|_| panic!("released before the gate")),
        Poll::Timeout
    );
    waker.advance(&gate, 2);
    assert_eq!(receive(&mut rx, 2), [1, 2]);
    assert_eq!(rx.delivered_sequence(), 2);
    waker.advance(&gate, 6);
    assert_eq!(receive(&mut rx, 4), [3, 4, 5, 6]);
    drop(rx);
    assert_eq!(engine.shutdown().unwrap().applied, 6);
}

#[test]
fn apply_ahead_client_replies_wait_for_the_gate_and_halt_stops_the_waiters() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut config, gate) = gated(tmp.path(), ApplyMode::ApplyAhead);
    config.producers = Producers::Multi;
    let engine = Engine::start(config, Recorder::default()).unwrap();
    let waker = engine.commit_gate_waker().unwrap();
    let metrics = engine.metrics();
    let client = engine.client().unwrap();
    let mut first = client.submit(to(1, 0, 1), &[4]).unwrap();
    let second = client.submit(to(1, 0, 2), &[4]).unwrap();
    assert!(wait_until(
        || metrics.applied_sequence() == 2 && metrics.durable_sequence() == 2
    ));
    assert!(first.try_take().unwrap().is_none(), "held by the gate");
    waker.advance(&gate, 1);
    let mut reply = None;
    assert!(wait_until(|| {
        reply = first.try_take().unwrap().map(|r| r.header().sequence);
        reply.is_some()
    }));
    assert_eq!(reply, Some(1));
    std::thread::scope(|scope| {
        // The second reply is never released: halt must end this wait.
        let waiter = scope.spawn(move || matches!(second.wait(), Err(ClientError::Stopped)));
        engine.halt().unwrap();
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn snapshots_bind_only_at_sequences_the_gate_released_also_from_a_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut config, gate) = gated(tmp.path(), ApplyMode::Durable);
    config.snapshot_interval_messages = 4;
    let store = keel::snapshot::SnapshotStore::open(&config.snapshot_dir, 10).unwrap();
    let mut engine =
        Engine::start_with_replica(config, Recorder::default(), Recorder::default).unwrap();
    let waker = engine.commit_gate_waker().unwrap();
    let metrics = engine.metrics();
    let _discarded = engine.take_responses();
    for i in 1..=10 {
        engine.submitter().submit(to(1, 1, i), &[5]).unwrap();
    }
    assert!(wait_until(|| metrics.durable_sequence() == 10));
    // The replica follows the journal past the gate and captures at 4 and 8; only 4 may bind.
    waker.advance(&gate, 5);
    let snapshots = || -> Vec<u64> { store.list().unwrap().iter().map(|f| f.sequence).collect() };
    assert!(wait_until(|| snapshots() == [4]), "{:?}", snapshots());
    let processor = engine.halt().unwrap();
    assert_eq!(processor.applied, 5);
    assert_eq!(snapshots(), [4], "nothing beyond the gate");
}

#[test]
fn a_gated_engine_dropped_with_messages_held_back_halts_instead_of_waiting() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _gate) = gated(tmp.path(), ApplyMode::Durable);
    let mut engine = Engine::start(config, Recorder::default()).unwrap();
    let metrics = engine.metrics();
    for i in 1..=3 {
        engine.submitter().submit(to(1, 1, i), &[6]).unwrap();
    }
    assert!(wait_until(|| metrics.durable_sequence() == 3));
    drop(engine);
    let engine = Engine::start(self::config(tmp.path()), Recorder::default()).unwrap();
    assert_eq!(engine.recovered_sequence(), 3);
}
