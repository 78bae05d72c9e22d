//! No heap allocation per message on the engine's own path (submit → ring → journal →
//! business logic → output ring → receiver), counted by a global allocator after warm-up;
//! and none through the typed service layer either (the host's typed submit, the command's
//! decode, the reply's encode, the host's typed decode of the reply).
//! The journal's background spare-segment preparer and the snapshot writer are off that path
//! and not counted.

mod alloc_support;
mod common;

use common::{to, Summer, ADD};
use keel::engine::Submitter;
use keel::ring::Poll;
use keel::{Config, Engine, FlushPolicy, Processor, Response, WaitStrategy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn run(flush: FlushPolicy) {
    let payload = 1u64.to_le_bytes();
    count_per_message(
        &format!("{flush}"),
        flush,
        Summer::default(),
        move |submitter, i| {
            submitter.submit(to(ADD, i), &payload).unwrap();
        },
        |_| {},
    );
}

/// Runs 20,000 messages to warm up, then counts the allocations of 100,000 more: `submit_one`
/// publishes message `i`, `read` sees each response.
fn count_per_message<P: Processor>(
    what: &str,
    flush: FlushPolicy,
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
        config.segment_size_bytes = 64 << 20;
        config.wait = WaitStrategy::Yield;
        config.flush = flush;
        config
    };
    let mut engine = Engine::start(cfg, processor).unwrap();
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
    send(1, 20_000); // warm-up: every lazily initialised thing is touched once
    alloc_support::arm();
    send(20_001, 100_000);
    let allocations = alloc_support::disarm();
    engine.shutdown().unwrap();
    reader.join().unwrap();
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for 100,000 messages ({what})"
    );
}

#[test]
fn no_allocation_per_message() {
    run(FlushPolicy::None);
    run(FlushPolicy::Batch);
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
    use keel::service::{decode_response, submit};
    use typed::{Add, CounterCommand};
    count_per_message(
        "typed",
        FlushPolicy::None,
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
