//! No heap allocation per message on the engine's own path (submit → ring → journal →
//! business logic → output ring → receiver), counted by a global allocator after warm-up;
//! and none through the typed service layer either (the host's typed submit, the command's
//! decode, the reply's encode, the host's typed decode of the reply).
//!
//! Every counted window spans journal segment rollovers (small segments) and periodic
//! snapshots (a capture every few thousand messages), under `FlushPolicy::None` and `Batch`:
//! the journaler, the group-commit syncer and the business-logic thread are counted through
//! them. The journal's spare-segment preparer and the snapshot writer work off that path, in
//! the background, and are not counted (`alloc_support`).

mod alloc_support;
mod common;

use common::{to, Summer, ADD};
use keel::engine::Submitter;
use keel::ring::Poll;
use keel::{ApplyMode, Config, Engine, FlushPolicy, Processor, Response, WaitStrategy};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Messages before the window (every lazily initialised thing touched once, a rollover and a
/// snapshot included) and in it.
const WARM_UP: u64 = 20_000;
const MEASURED: u64 = 100_000;
/// Small segments: a rollover every ~1,500 messages.
const SEGMENT_SIZE_BYTES: u64 = 128 << 10;
/// A snapshot every this many messages.
const SNAPSHOT_INTERVAL_MESSAGES: u64 = 5_000;

fn run(flush: FlushPolicy, mode: ApplyMode) {
    let payload = 1u64.to_le_bytes();
    count_per_message(
        &format!("{flush}, {mode:?}"),
        (flush, mode),
        Summer::default(),
        move |submitter, i| {
            submitter.submit(to(ADD, i), &payload).unwrap();
        },
        |_| {},
    );
}

fn segment_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            })
            .count() as u64
    })
}

/// Runs [`WARM_UP`] messages, then counts the allocations of [`MEASURED`] more: `submit_one`
/// publishes message `i`, `read` sees each response. The window must span segment rollovers
/// and snapshots.
fn count_per_message<P: Processor>(
    what: &str,
    (flush, mode): (FlushPolicy, ApplyMode),
    processor: P,
    mut submit_one: impl FnMut(&mut Submitter, u64),
    mut read: impl FnMut(&Response<'_>) + Send + 'static,
) {
    // The counters are global: one measurement at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cfg = {
        let mut config = Config::with_data_dir(dir.path());
        config.ring_capacity = 4096;
        config.output_ring_capacity = 4096;
        config.segment_size_bytes = SEGMENT_SIZE_BYTES;
        config.snapshot_interval_messages = SNAPSHOT_INTERVAL_MESSAGES;
        config.wait = WaitStrategy::Yield;
        config.flush = flush;
        config.mode = mode;
        config
    };
    let journal_dir = cfg.journal_dir.clone();
    let mut engine = Engine::start(cfg, processor).unwrap();
    let metrics = engine.metrics();
    let mut rx = engine.take_responses().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let r2 = received.clone();
    let reader = std::thread::spawn(move || loop {
        let poll = rx.poll(None, |response| {
            read(&response);
            r2.fetch_add(1, Ordering::Relaxed);
        });
        if matches!(poll, Poll::Closed | Poll::Halted) {
            break;
        }
    });
    let mut send = |from: u64, count: u64| {
        for i in from..from + count {
            submit_one(engine.submitter(), i);
        }
        let start = Instant::now();
        while received.load(Ordering::Relaxed) < from + count - 1 {
            assert!(start.elapsed() < Duration::from_secs(60));
            std::thread::yield_now();
        }
    };
    send(1, WARM_UP);
    let segments_before = segment_files(&journal_dir);
    let snapshots_before = {
        let m = metrics.read();
        m.snapshots_written + m.snapshots_skipped
    };
    alloc_support::arm();
    send(WARM_UP + 1, MEASURED);
    let (allocations, by_thread) = alloc_support::disarm_by_thread();
    let rollovers = segment_files(&journal_dir) - segments_before;
    let captured = {
        let m = metrics.read();
        m.snapshots_written + m.snapshots_skipped - snapshots_before
    };
    engine.shutdown().unwrap();
    reader.join().unwrap();
    println!("{what}: {allocations} allocations ({by_thread}), {rollovers} rollovers, {captured} snapshots");
    assert!(
        rollovers >= 10,
        "{what}: only {rollovers} rollovers in the window"
    );
    assert!(
        captured >= 10,
        "{what}: only {captured} snapshots in the window"
    );
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {MEASURED} messages ({what}; {by_thread})"
    );
}

#[test]
fn no_allocation_per_message() {
    run(FlushPolicy::None, ApplyMode::Durable);
    run(FlushPolicy::Batch, ApplyMode::Durable);
    run(FlushPolicy::Batch, ApplyMode::ApplyAhead);
}

/// A typed service whose commands and reply have no heap fields: decoding the command,
/// encoding the reply, the host's typed submit and its typed decode of the reply allocate
/// nothing either.
mod typed {
    use keel::engine::MessageHeader;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct Add {
        pub value: u64,
        pub at: u32,
    }

    keel::commands! {
        pub enum CounterCommand {
            1 => Add(Add),
        }
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Never;

    impl keel::Rejection for Never {
        fn code(&self) -> u32 {
            1
        }
    }

    #[derive(Default)]
    pub struct Counter {
        pub total: u64,
    }

    impl keel::Service for Counter {
        type Command = CounterCommand;
        type Reply<'a> = (u64, u32);
        type Rejection = Never;
        type State = u64;

        fn apply(
            &mut self,
            command: CounterCommand,
            _: &MessageHeader,
        ) -> Result<(u64, u32), Never> {
            let CounterCommand::Add(add) = command;
            self.total += add.value;
            Ok((self.total, add.at))
        }

        fn state(&self) -> &u64 {
            &self.total
        }

        fn restore(&mut self, total: u64) {
            self.total = total;
        }
    }
}

#[test]
fn no_allocation_per_typed_message() {
    typed_run(FlushPolicy::None);
    typed_run(FlushPolicy::Batch);
}

fn typed_run(flush: FlushPolicy) {
    use keel::service::{decode_response, submit};
    use typed::{Add, CounterCommand};
    count_per_message(
        &format!("typed, {flush}"),
        (flush, ApplyMode::Durable),
        keel::Typed::new(typed::Counter::default()),
        |submitter, i| {
            let add = CounterCommand::Add(Add {
                value: 1,
                at: i as u32,
            });
            submit(submitter, &add).unwrap();
        },
        |response| {
            let (total, _) = decode_response::<typed::Counter>(response).unwrap();
            assert!(total > 0);
        },
    );
}
