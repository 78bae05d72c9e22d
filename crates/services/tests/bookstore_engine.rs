//! The bookstore inside `keel::Engine`, as a host embeds it: the seeded workload through the
//! ring and the journal, responses equal to applying the same messages directly, and restarts
//! (snapshot + journal tail, and full replay) that rebuild the same state hash.

use keel::engine::{Message, MessageHeader, ResponseReceiver};
use keel::ring::Poll;
use keel::Typed;
use keel::{Config, Engine, FlushPolicy, Output, Processor, Status, Submission, WaitStrategy};
use keel_services::bookstore::{Bookstore, Kind};
use keel_services::{App, Command};
use std::path::Path;
use std::thread;

const SEED: u64 = 2024;

/// (sequence, status, reason, response kind, payload) of one response.
type Reply = (u64, Status, u32, u16, Vec<u8>);

fn config(dir: &Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 4096;
    config.output_ring_capacity = 4096;
    config.segment_size_bytes = 4 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::None;
    config.snapshot_interval_messages = 6_000;
    config.snapshot_on_shutdown = false;
    config
}

/// Setup, then workload messages `range`.
fn commands(range: std::ops::Range<u64>) -> Vec<Command> {
    let setup = if range.start == 0 {
        Typed::<Bookstore>::setup(SEED)
    } else {
        Vec::new()
    };
    setup
        .into_iter()
        .chain(range.map(|i| Typed::<Bookstore>::workload(SEED, i)))
        .collect()
}

fn collect(mut rx: ResponseReceiver) -> thread::JoinHandle<Vec<Reply>> {
    thread::spawn(move || {
        let mut replies = Vec::new();
        loop {
            let poll = rx.poll(None, |r| {
                let h = r.header;
                replies.push((h.sequence, h.status, h.reason, h.kind, r.payload.to_vec()));
            });
            if matches!(poll, Poll::Closed | Poll::Halted) {
                return replies;
            }
        }
    })
}

/// Starts an engine over `dir`, submits `messages`, shuts down; returns state and replies.
fn run(dir: &Path, messages: &[Command]) -> (Typed<Bookstore>, Vec<Reply>) {
    let mut engine = Engine::start(config(dir), Typed::new(Bookstore::default())).unwrap();
    let replies = collect(engine.take_responses().unwrap());
    for (i, command) in messages.iter().enumerate() {
        let to = Submission {
            kind: command.kind,
            version: command.version,
            session_id: 0,
            correlation_id: i as u64,
        };
        engine.submitter().submit(to, &command.payload).unwrap();
    }
    let store = engine.shutdown().unwrap();
    (store, replies.join().unwrap())
}

/// The replies applying `messages` directly gives (timestamps differ from the live run, so
/// the caller ignores payloads that contain them).
fn direct(messages: &[Command], first_sequence: u64, store: &mut Typed<Bookstore>) -> Vec<Reply> {
    let mut buf = vec![0u8; Config::default().max_response_bytes];
    let mut replies = Vec::new();
    for (i, command) in messages.iter().enumerate() {
        let sequence = first_sequence + i as u64;
        let header = MessageHeader {
            sequence,
            kind: command.kind,
            version: command.version,
            ..MessageHeader::default()
        };
        let mut out = Output::new(&mut buf);
        let (status, reason) = match store.apply(
            &Message {
                header,
                payload: &command.payload,
            },
            &mut out,
        ) {
            keel::Outcome::Accepted => (Status::Accepted, 0),
            keel::Outcome::Rejected(reason) => (Status::Rejected, reason),
        };
        replies.push((
            sequence,
            status,
            reason,
            out.kind(),
            out.as_bytes().to_vec(),
        ));
    }
    replies
}

/// Equal except payloads of order queries (they carry the live `placed_ns`).
fn assert_same_replies(live: &[Reply], reference: &[Reply], messages: &[Command]) {
    assert_eq!(live.len(), reference.len());
    for ((l, r), command) in live.iter().zip(reference).zip(messages) {
        assert_eq!(
            (l.0, l.1, l.2, l.3),
            (r.0, r.1, r.2, r.3),
            "sequence {}",
            l.0
        );
        if command.kind != Kind::QueryOrder.number() {
            assert_eq!(l.4, r.4, "payload of sequence {}", l.0);
        }
    }
}

#[test]
fn the_bookstore_runs_in_the_engine_and_restarts_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let first = commands(0..20_000);
    let second = commands(20_000..30_000);
    let mut reference = Typed::<Bookstore>::default();

    // Run 1: periodic snapshots, no snapshot at shutdown, so a restart needs snapshot + tail.
    let (live, replies) = run(dir.path(), &first);
    assert_same_replies(&replies, &direct(&first, 1, &mut reference), &first);
    let rejected = replies.iter().filter(|r| r.1 == Status::Rejected).count();
    assert_eq!(
        rejected,
        20_000 / 100 * 2,
        "only the stale-price orders are rejected"
    );
    live.check_consistency().unwrap();

    // Restart: newest snapshot, then the journal after it.
    let engine = Engine::start(config(dir.path()), Typed::<Bookstore>::default()).unwrap();
    let recovered = engine.recovered();
    assert_eq!(recovered.last_sequence, first.len() as u64);
    assert!(
        recovered.snapshot_sequence > 0 && recovered.replayed > 0,
        "{recovered:?}"
    );
    let restarted = engine.shutdown().unwrap();
    assert_eq!(restarted.state_hash(), live.state_hash());
    restarted.check_consistency().unwrap();

    // Continue after the restart: sequences go on, outcomes as if never stopped.
    let (continued, replies) = run(dir.path(), &second);
    assert_eq!(replies.first().map(|r| r.0), Some(first.len() as u64 + 1));
    let reference_replies = direct(&second, first.len() as u64 + 1, &mut reference);
    assert_same_replies(&replies, &reference_replies, &second);

    // Full replay without any snapshot gives the same state.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let engine = Engine::start(config(dir.path()), Typed::<Bookstore>::default()).unwrap();
    assert_eq!(engine.recovered().snapshot_sequence, 0);
    let replayed = engine.shutdown().unwrap();
    assert_eq!(replayed.state_hash(), continued.state_hash());
    assert_eq!(replayed.order_count(), reference.order_count());
}

#[test]
fn an_engine_refuses_the_journal_of_another_service() {
    use keel::journal::JournalError;
    use keel_services::exchange::Exchange;
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::start(config(dir.path()), Typed::new(Bookstore::default())).unwrap();
    let setup = Typed::<Bookstore>::setup(SEED);
    let c = &setup[0];
    let to = Submission {
        kind: c.kind,
        version: c.version,
        ..Submission::default()
    };
    engine.submitter().submit(to, &c.payload).unwrap();
    drop(engine.take_responses());
    engine.shutdown().unwrap();
    match Engine::start(config(dir.path()), Typed::new(Exchange::default())) {
        Err(keel::Error::Journal(JournalError::WrongService {
            found, expected, ..
        })) => assert_eq!(
            (found.as_str(), expected.as_str()),
            ("bookstore", "exchange")
        ),
        Err(other) => panic!("expected WrongService, got {other}"),
        Ok(_) => panic!("an exchange engine opened the bookstore's journal"),
    }
    let engine = Engine::start(config(dir.path()), Typed::new(Bookstore::default())).unwrap();
    assert_eq!(engine.recovered_sequence(), 1);
    engine.shutdown().unwrap();
}
