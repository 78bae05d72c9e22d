//! No heap allocation per message by the exchange in steady state, counted by a global
//! allocator on the seeded canonical workload (`Typed::<Exchange>::workload`) after a warm-up:
//!
//! - directly around `Processor::apply`;
//! - through the whole engine (submit → ring → journal → business logic → output ring →
//!   receiver) with small journal segments and periodic snapshots, so the window spans
//!   several segment rollovers and snapshot captures.
//!
//! What is counted where, and why:
//!
//! - The business-logic thread, the submitting thread, the response reader and the journaler
//!   thread (`keel-journaler`, counted apart for the report): every allocation, and there must
//!   be none, rollovers and snapshot captures included.
//! - Not counted: the journal's spare-segment preparer thread (`keel-journal-prep`, a file
//!   and a mapping per segment, off the message path by design) and the snapshot writer
//!   thread (`keel-snapshot`, a file per snapshot). The commands are built before the window.
//!
//! Bounded, start-up-like growth is outside the window by construction and stays so in
//! production: the order-id index doubles only when the open orders reach a new high, the
//! per-message event buffer only when one message produces more events than ever before, and
//! an account's holdings only on its first position in an instrument.

/// The counting allocator keel's own allocation tests use.
#[path = "../../../tests/alloc_support/mod.rs"]
mod alloc_support;

use keel::engine::MessageHeader;
use keel::ring::Poll;
use keel::Typed;
use keel::{Config, Engine, FlushPolicy, Message, Output, Processor, Submission, WaitStrategy};
use keel_services::exchange::*;
use keel_services::{App, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SEED: u64 = 5;
const WARM_UP: u64 = 300_000;
const MEASURED: u64 = 300_000;
/// A snapshot every this many messages: several in the warm-up and in the window.
const SNAPSHOT_INTERVAL_MESSAGES: u64 = 40_000;

/// The counter is global: the tests of this file take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Allocations counted while `f` runs, and where they happened (the journaler apart).
fn count(f: impl FnOnce()) -> (u64, String) {
    alloc_support::arm();
    f();
    alloc_support::disarm_by_thread()
}

fn workload(from: u64, to: u64) -> Vec<Command> {
    (from..to)
        .map(|i| Typed::<Exchange>::workload(SEED, i))
        .collect()
}

fn apply_all(exchange: &mut Typed<Exchange>, buf: &mut [u8], first: u64, commands: &[Command]) {
    for (i, command) in commands.iter().enumerate() {
        let sequence = first + i as u64;
        let header = MessageHeader {
            sequence,
            timestamp_ns: sequence,
            session_id: 0,
            correlation_id: sequence,
            kind: command.kind,
            version: command.version,
        };
        let message = Message {
            header,
            payload: &command.payload,
        };
        exchange.apply(&message, &mut Output::new(buf));
    }
}

#[test]
fn steady_state_apply_allocates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    let mut exchange = Typed::<Exchange>::default();
    let mut buf = vec![0u8; 4096];
    let setup = Typed::<Exchange>::setup(SEED);
    apply_all(&mut exchange, &mut buf, 1, &setup);
    let warm = workload(0, WARM_UP);
    apply_all(&mut exchange, &mut buf, 1 + setup.len() as u64, &warm);
    let measured = workload(WARM_UP, WARM_UP + MEASURED);
    let first = 1 + (setup.len() + warm.len()) as u64;
    let (allocations, _) = count(|| apply_all(&mut exchange, &mut buf, first, &measured));
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in {MEASURED} messages"
    );
}

fn submit_all(engine: &mut Engine<Typed<Exchange>>, commands: &[Command], received: &AtomicU64) {
    let start = received.load(Ordering::Relaxed);
    for (i, c) in commands.iter().enumerate() {
        let to = Submission {
            kind: c.kind,
            version: c.version,
            session_id: 1,
            correlation_id: i as u64,
        };
        engine.submitter().submit(to, &c.payload).unwrap();
    }
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < start + commands.len() as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "responses stalled"
        );
        std::thread::yield_now();
    }
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

#[test]
fn the_engine_path_allocates_nothing_per_message_across_segment_rollovers() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::with_data_dir(dir.path());
    cfg.ring_capacity = 4096;
    cfg.output_ring_capacity = 4096;
    cfg.segment_size_bytes = 1 << 20;
    cfg.wait = WaitStrategy::Yield;
    cfg.flush = FlushPolicy::None;
    cfg.snapshot_interval_messages = SNAPSHOT_INTERVAL_MESSAGES;
    cfg.snapshot_on_shutdown = false;
    let journal_dir = cfg.journal_dir.clone();
    let mut engine = Engine::start(cfg, Typed::<Exchange>::default()).unwrap();
    let mut rx = engine.take_responses().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let reader = std::thread::spawn(move || loop {
        let poll = rx.poll(None, |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        if matches!(poll, Poll::Closed | Poll::Halted) {
            break;
        }
    });
    let mut warm = Typed::<Exchange>::setup(SEED);
    warm.extend(workload(0, WARM_UP));
    submit_all(&mut engine, &warm, &received);
    let measured = workload(WARM_UP, WARM_UP + MEASURED);
    let segments_before = segment_files(&journal_dir);
    let metrics = engine.metrics();
    let snapshots_taken = || {
        let m = metrics.read();
        m.snapshots_written + m.snapshots_skipped
    };
    let snapshots_before = snapshots_taken();
    let (allocations, where_) = count(|| submit_all(&mut engine, &measured, &received));
    let rollovers = (segment_files(&journal_dir) - segments_before) as u64;
    let snapshots = snapshots_taken() - snapshots_before;
    engine.shutdown().unwrap();
    reader.join().unwrap();
    println!("{allocations} allocations ({where_}), {rollovers} rollovers, {snapshots} snapshots");
    assert!(
        rollovers >= 3,
        "only {rollovers} segment rollovers in the window"
    );
    assert!(snapshots >= 3, "only {snapshots} snapshots in the window");
    assert_eq!(
        allocations, 0,
        "allocations in {MEASURED} messages through the engine ({where_})"
    );
}

#[test]
fn queries_allocate_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    let mut exchange = Typed::<Exchange>::default();
    let mut buf = vec![0u8; 4096];
    let mut warm = Typed::<Exchange>::setup(SEED);
    warm.extend(workload(0, 50_000));
    apply_all(&mut exchange, &mut buf, 1, &warm);
    // Every instrument at every depth (and one unknown), every account (and one unknown); a
    // small response buffer too, so the answers are cut to fit.
    let queries: Vec<Command> = (0..=WORKLOAD.instruments)
        .flat_map(|instrument| {
            (0..=MAX_QUERY_DEPTH).map(move |depth| QueryBook { instrument, depth })
        })
        .map(|q| Request::QueryBook(q).to_command())
        .chain(
            (0..=WORKLOAD.accounts)
                .map(|account| Request::QueryAccount(QueryAccount { account }).to_command()),
        )
        .collect();
    let first = 1 + warm.len() as u64;
    let mut small = vec![0u8; 256];
    let (allocations, _) = count(|| {
        apply_all(&mut exchange, &mut buf, first, &queries);
        apply_all(&mut exchange, &mut small, first, &queries);
    });
    assert_eq!(allocations, 0, "{allocations} allocations in queries");
}
