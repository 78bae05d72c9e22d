//! In-process clients (`Producers::Multi`): many threads calling at once each get exactly
//! their own replies, tickets are polled and waited, dropped tickets block nobody, a stopping
//! engine answers waiting callers with an error, and a restart replays the journal to the same
//! state.

use keel::codec::CodecError;
use keel::snapshot::{load_serde, save_serde, StateError};
use keel::{
    ApplyMode, ClientError, Config, Engine, FlushPolicy, Message, Outcome, Output, Processor,
    Producers, Status, Submission, WaitStrategy,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

const ECHO: u16 = 1;
const REJECT: u16 = 2;
const THREADS: u64 = 4;

/// Echoes each request `(thread, n)` with the number of messages applied so far; counts per
/// thread. `REJECT` is refused with reason `n`.
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Echo {
    applied: u64,
    sum_by_thread: [u64; THREADS as usize],
}

fn request(thread: u64, n: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&thread.to_le_bytes());
    bytes[8..].copy_from_slice(&n.to_le_bytes());
    bytes
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

impl Processor for Echo {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        let (thread, n) = (word(message.payload, 0), word(message.payload, 8));
        if message.header.kind == REJECT {
            return Outcome::Rejected(n as u32);
        }
        self.applied += 1;
        self.sum_by_thread[thread as usize] += n;
        out.write(&message.payload[..16]).unwrap();
        out.write(&self.applied.to_le_bytes()).unwrap();
        Outcome::Accepted
    }

    fn state_hash(&self) -> u64 {
        let sums = self
            .sum_by_thread
            .iter()
            .fold(0u64, |h, s| h.rotate_left(13) ^ s);
        self.applied ^ sums.rotate_left(29)
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(self, out)
    }

    fn load_state(&mut self, _schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        *self = load_serde(bytes)?;
        Ok(())
    }
}

fn config(dir: &std::path::Path, mode: ApplyMode) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.producers = Producers::Multi;
    config.mode = mode;
    config.ring_capacity = 256;
    config.segment_size_bytes = 1 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::None;
    config.snapshot_on_shutdown = false;
    config
}

fn to(kind: u16, correlation_id: u64) -> Submission {
    Submission {
        kind,
        correlation_id,
        ..Submission::default()
    }
}

/// Correlation id of thread `t`'s `n`-th call.
fn correlation(thread: u64, n: u64) -> u64 {
    thread << 32 | n
}

/// `THREADS` threads each calling `calls` times; returns every reply's sequence.
fn call_from_threads(engine: &Engine<Echo>, calls: u64) -> Vec<u64> {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = engine.client().unwrap();
            thread::spawn(move || {
                let mut sequences = Vec::new();
                for n in 1..=calls {
                    let reply = client.call(to(ECHO, correlation(t, n)), &request(t, n));
                    let reply = reply.unwrap();
                    let header = reply.header();
                    assert_eq!(header.correlation_id, correlation(t, n), "someone else's");
                    assert_eq!(header.status, Status::Accepted);
                    assert_eq!(&reply.payload()[..16], &request(t, n), "someone else's");
                    assert!(word(reply.payload(), 16) >= n, "applied count");
                    sequences.push(header.sequence);
                }
                sequences
            })
        })
        .collect();
    let mut sequences: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    sequences.sort_unstable();
    sequences
}

fn threads_get_their_own_replies(mode: ApplyMode, flush: FlushPolicy, calls: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), mode);
    config.flush = flush;
    let engine = Engine::start(config, Echo::default()).unwrap();
    let sequences = call_from_threads(&engine, calls);
    let all: Vec<u64> = (1..=THREADS * calls).collect();
    assert_eq!(sequences, all, "each message answered once, to its caller");
    let state = engine.shutdown().unwrap();
    assert_eq!(state.applied, THREADS * calls);
    let per_thread = calls * (calls + 1) / 2;
    assert_eq!(state.sum_by_thread, [per_thread; THREADS as usize]);
}

#[test]
fn four_threads_each_get_their_own_replies_durable() {
    threads_get_their_own_replies(ApplyMode::Durable, FlushPolicy::None, 2_000);
}

#[test]
fn four_threads_each_get_their_own_replies_apply_ahead() {
    threads_get_their_own_replies(ApplyMode::ApplyAhead, FlushPolicy::None, 2_000);
}

#[test]
fn replies_wait_for_group_commit_in_both_modes() {
    // `batch`: the group-commit syncer's durable sequence gates (durable mode) or releases
    // (apply-ahead) the replies, and its wake-up reaches the parked callers.
    threads_get_their_own_replies(ApplyMode::Durable, FlushPolicy::Batch, 200);
    threads_get_their_own_replies(ApplyMode::ApplyAhead, FlushPolicy::Batch, 200);
}

#[test]
fn tickets_are_polled_and_waited() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(dir.path(), ApplyMode::Durable), Echo::default()).unwrap();
    let client = engine.client().unwrap();
    let mut tickets: Vec<_> = (1..=60)
        .map(|n| client.submit(to(ECHO, n), &request(0, n)).unwrap())
        .collect();
    let rejected = client.submit(to(REJECT, 99), &request(1, 7)).unwrap();
    // Polled: each reply arrives eventually (a bounded loop, no timing assumption).
    let mut polled = tickets.remove(0);
    let reply = (0..100_000)
        .find_map(|_| {
            let reply = polled.try_take().unwrap();
            if reply.is_none() {
                thread::yield_now();
            }
            reply
        })
        .expect("the reply comes");
    assert_eq!(reply.header().correlation_id, 1);
    assert_eq!(polled.try_take().unwrap_err(), ClientError::ReplyTaken);
    // Waited with a timeout, then without.
    let mut timed = tickets.remove(0);
    let reply = (0..1_000)
        .find_map(|_| timed.wait_timeout(Duration::from_millis(50)).unwrap())
        .expect("the reply comes");
    assert_eq!(reply.header().correlation_id, 2);
    for (n, ticket) in (3..).zip(tickets) {
        let sequence = ticket.sequence();
        let reply = ticket.wait().unwrap();
        assert_eq!(
            (reply.header().correlation_id, reply.header().sequence),
            (n, sequence)
        );
    }
    let reply = rejected.wait().unwrap();
    assert_eq!(
        (reply.status(), reply.header().reason),
        (Status::Rejected, 7)
    );
    drop(reply);
    engine.shutdown().unwrap();
}

#[test]
fn dropped_tickets_block_nobody_and_held_ones_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(dir.path(), ApplyMode::Durable), Echo::default()).unwrap();
    // Far more dropped tickets than reply slots (256), from two threads, beside two callers.
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = engine.client().unwrap();
            thread::spawn(move || {
                for n in 1..=3_000 {
                    if t % 2 == 0 {
                        drop(client.submit(to(ECHO, n), &request(t, n)).unwrap());
                    } else {
                        client.call(to(ECHO, n), &request(t, n)).unwrap();
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    // Once this reply is out, every dropped ticket's reply was written and its slot freed.
    let client = engine.client().unwrap();
    drop(client.call(to(ECHO, 1), &request(0, 1)).unwrap());
    // Held tickets: one per reply slot (twice the ring), then a clear error, not a wait.
    let mut held: Vec<_> = (0..512)
        .map(|n| client.submit(to(ECHO, n), &request(0, n)).unwrap())
        .collect();
    let refused = client.submit(to(ECHO, 0), &request(0, 0)).unwrap_err();
    assert_eq!(refused, ClientError::TooManyOutstanding { limit: 512 });
    drop(held.pop().unwrap().wait().unwrap()); // the last reply: all are written
    drop(held);
    client.call(to(ECHO, 1), &request(0, 1)).unwrap();
    let state = engine.shutdown().unwrap();
    assert_eq!(state.applied, THREADS * 3_000 + 1 + 512 + 1);
}

#[test]
fn shutdown_while_callers_wait_answers_or_refuses_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(dir.path(), ApplyMode::Durable), Echo::default()).unwrap();
    let started = Arc::new(Barrier::new(THREADS as usize + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (client, started) = (engine.client().unwrap(), started.clone());
            thread::spawn(move || {
                started.wait();
                // Calls until the engine refuses one (the shutdown below).
                let mut answered = 0;
                for n in 1..=10_000_000 {
                    match client.call(to(ECHO, n), &request(t, n)) {
                        Ok(_) => answered += 1,
                        Err(ClientError::Stopped) => return answered,
                        Err(other) => panic!("{other}"),
                    }
                }
                panic!("the engine never stopped")
            })
        })
        .collect();
    started.wait();
    thread::sleep(Duration::from_millis(20));
    let state = engine.shutdown().unwrap();
    let answered: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // Every message published before the close was applied and answered; none after it.
    assert_eq!(state.applied, answered);
    // And what was answered is in the journal.
    let again = Engine::start(config(dir.path(), ApplyMode::Durable), Echo::default()).unwrap();
    assert_eq!(again.shutdown().unwrap(), state);
}

#[derive(Clone, Default)]
struct FailingSink {
    failed: Arc<AtomicBool>,
}

impl keel::engine::JournalSink for FailingSink {
    fn append(&mut self, _: &keel::journal::Record<'_>) -> Result<(), keel::journal::JournalError> {
        // Fails once a caller is waiting, so that its wait ends through the stop.
        thread::sleep(Duration::from_millis(20));
        self.failed.store(true, Ordering::Release);
        Err(keel::journal::JournalError::Io(std::io::Error::other(
            "injected",
        )))
    }
    fn end_batch(&mut self) -> Result<(), keel::journal::JournalError> {
        Ok(())
    }
    fn tick(&mut self) -> Result<(), keel::journal::JournalError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), keel::journal::JournalError> {
        Ok(())
    }
}

#[test]
fn a_halted_engine_answers_waiting_callers_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FailingSink::default();
    let cfg = config(dir.path(), ApplyMode::Durable);
    let engine = Engine::start_with_sink(cfg, Echo::default(), sink.clone(), 0).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = engine.client().unwrap();
            thread::spawn(move || client.call(to(ECHO, t), &request(t, 1)).map(|_| ()))
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), Err(ClientError::Stopped));
    }
    assert!(sink.failed.load(Ordering::Acquire));
    let client = engine.client().unwrap();
    assert_eq!(
        client.call(to(ECHO, 9), &request(0, 9)).unwrap_err(),
        ClientError::Stopped
    );
    assert!(
        engine.shutdown().is_err(),
        "the journal failure is reported"
    );
    // A client outliving its engine is refused, not blocked.
    assert_eq!(
        client.call(to(ECHO, 9), &request(0, 9)).unwrap_err(),
        ClientError::Stopped
    );
}

#[test]
fn restart_replays_the_journal_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(dir.path(), ApplyMode::Durable), Echo::default()).unwrap();
    call_from_threads(&engine, 500);
    let before = engine.shutdown().unwrap();
    // No snapshot on shutdown (see `config`): the restart replays every message.
    let engine = Engine::start(config(dir.path(), ApplyMode::Durable), Echo::default()).unwrap();
    assert_eq!(engine.recovered().replayed, THREADS * 500);
    // New calls continue the sequence after the replayed ones.
    let client = engine.client().unwrap();
    let reply = client.call(to(ECHO, 1), &request(0, 0)).unwrap();
    assert_eq!(reply.header().sequence, THREADS * 500 + 1);
    drop(reply);
    let after = engine.shutdown().unwrap();
    assert_eq!(after.applied, before.applied + 1);
    assert_eq!(after.sum_by_thread, before.sum_by_thread);
}

#[test]
fn misuse_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // The default single producer has no clients.
    let mut single = config(dir.path(), ApplyMode::Durable);
    single.producers = Producers::Single;
    let engine = Engine::start(single, Echo::default()).unwrap();
    assert_eq!(engine.client().unwrap_err(), ClientError::SingleProducer);
    engine.shutdown().unwrap();
    // Clients wait for replies: discarding them is refused at start.
    let mut discard = config(dir.path(), ApplyMode::Durable);
    discard.discard_responses = true;
    assert!(Engine::start(discard, Echo::default()).is_err());
    // With clients the output goes to them; the submitter still publishes (no reply).
    let mut engine =
        Engine::start(config(dir.path(), ApplyMode::Durable), Echo::default()).unwrap();
    assert!(engine.take_responses().is_none());
    let sequence = engine
        .submitter()
        .submit(to(ECHO, 1), &request(0, 5))
        .unwrap();
    let client = engine.client().unwrap();
    let too_big = vec![0u8; client.max_message_bytes() + 1];
    assert!(matches!(
        client.call(to(ECHO, 2), &too_big),
        Err(ClientError::TooLarge { .. })
    ));
    let reply = client.call(to(ECHO, 3), &request(1, 6)).unwrap();
    assert_eq!(reply.header().sequence, sequence + 1);
    drop(reply);
    let state = engine.shutdown().unwrap();
    assert_eq!(state.sum_by_thread[..2], [5, 6]);
}
