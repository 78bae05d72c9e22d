//! No heap allocation per message on the in-process client path (`Producers::Multi`): claim →
//! input ring → journal → business logic → reply board → caller, from several threads at once
//! (calls and tickets, byte-level and typed), counted by a global allocator after warm-up. Each
//! counted window spans journal segment rollovers (small segments) and periodic snapshots. The
//! journal's spare-segment preparer and the snapshot writer work off that path and are not
//! counted (`alloc_support`).

mod alloc_support;

use keel::codec::CodecError;
use keel::engine::MessageHeader;
use keel::service::decode_response;
use keel::snapshot::StateError;
use keel::{
    Client, Config, Engine, FlushPolicy, Message, Outcome, Output, Processor, Producers,
    Submission, Ticket, WaitStrategy,
};
use keel::{Service, Typed};
use serde::{Deserialize, Serialize};
use std::sync::Barrier;
use std::thread;

/// Adds each payload to a total and answers with it.
#[derive(Default)]
struct Adder {
    total: u64,
}

impl Processor for Adder {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        let value = u64::from_le_bytes(message.payload[..8].try_into().unwrap());
        self.total = self.total.wrapping_add(value);
        out.write(&self.total.to_le_bytes()).unwrap();
        Outcome::Accepted
    }
    fn state_hash(&self) -> u64 {
        self.total
    }
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&self.total.to_le_bytes());
        Ok(())
    }
    fn load_state(&mut self, _: u32, bytes: &[u8]) -> Result<(), StateError> {
        self.total = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        Ok(())
    }
}

/// The same sum as a typed service: command and reply without heap fields.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Sum {
    total: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Add(u64);

keel::commands! {
    #[derive(Debug)]
    enum SumCommand {
        1 => Add(Add),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Never;

impl keel::Rejection for Never {
    fn code(&self) -> u32 {
        1
    }
}

impl Service for Sum {
    type Command = SumCommand;
    type Reply<'a> = u64;
    type Rejection = Never;
    type State = Sum;

    fn apply(&mut self, command: SumCommand, _: &MessageHeader) -> Result<u64, Never> {
        let SumCommand::Add(Add(value)) = command;
        self.total = self.total.wrapping_add(value);
        Ok(self.total)
    }
    fn state(&self) -> &Sum {
        self
    }
    fn restore(&mut self, state: Sum) {
        *self = state;
    }
}

const CALLERS: usize = 2;
/// Small segments: a rollover every ~1,500 messages.
const SEGMENT_SIZE_BYTES: u64 = 128 << 10;
/// A snapshot every this many messages.
const SNAPSHOT_INTERVAL_MESSAGES: u64 = 2_000;

fn segment_files(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            })
            .count() as u64
    })
}

fn snapshots_taken<P: Processor>(engine: &Engine<P>) -> u64 {
    let metrics = engine.metrics().read();
    metrics.snapshots_written + metrics.snapshots_skipped
}

/// `count` typed calls, then `count` typed tickets decoded as they come.
fn typed_traffic<'c>(client: &'c Client, count: u64, window: &mut Vec<Ticket<'c>>) {
    for i in 0..count {
        client.call_typed::<Sum>(&SumCommand::Add(Add(i))).unwrap();
        window.push(client.submit_typed(&SumCommand::Add(Add(i))).unwrap());
        if window.len() == 16 {
            for ticket in window.drain(..) {
                decode_response::<Sum>(&ticket.wait().unwrap().response()).unwrap();
            }
        }
    }
    for ticket in window.drain(..) {
        decode_response::<Sum>(&ticket.wait().unwrap().response()).unwrap();
    }
}

/// `count` calls, then `count` tickets submitted in windows of 16 (in `window`, allocated by
/// the caller) and waited in order.
fn traffic<'c>(client: &'c Client, count: u64, window: &mut Vec<Ticket<'c>>) {
    let to = Submission::default();
    for i in 0..count {
        let reply = client.call(to, &i.to_le_bytes()).unwrap();
        assert_eq!(reply.payload().len(), 8);
    }
    for i in 0..count {
        window.push(client.submit(to, &i.to_le_bytes()).unwrap());
        if window.len() == 16 {
            for ticket in window.drain(..) {
                drop(ticket.wait().unwrap());
            }
        }
    }
    for ticket in window.drain(..) {
        drop(ticket.wait().unwrap());
    }
}

type Traffic = for<'c> fn(&'c Client, u64, &mut Vec<Ticket<'c>>);

fn run<P: Processor>(processor: P, traffic: Traffic, flush: FlushPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.producers = Producers::Multi;
    config.ring_capacity = 1024;
    config.segment_size_bytes = SEGMENT_SIZE_BYTES;
    config.snapshot_interval_messages = SNAPSHOT_INTERVAL_MESSAGES;
    config.wait = WaitStrategy::PARK;
    config.flush = flush;
    let journal_dir = config.journal_dir.clone();
    let engine = Engine::start(config, processor).unwrap();
    let (mut segments, mut snapshots) = (0, 0);
    // Warm-up: every lazily initialised thing is touched once, on every thread.
    let phase = Barrier::new(CALLERS + 1);
    let allocations = thread::scope(|s| {
        for _ in 0..CALLERS {
            let client = engine.client().unwrap();
            let phase = &phase;
            s.spawn(move || {
                let mut window = Vec::with_capacity(16);
                traffic(&client, 2_000, &mut window);
                phase.wait(); // warmed up
                phase.wait(); // counting
                traffic(&client, 10_000, &mut window);
                phase.wait(); // done
            });
        }
        phase.wait();
        (segments, snapshots) = (segment_files(&journal_dir), snapshots_taken(&engine));
        alloc_support::arm();
        phase.wait();
        phase.wait();
        alloc_support::disarm_by_thread()
    });
    let (allocations, by_thread) = allocations;
    let rollovers = segment_files(&journal_dir) - segments;
    let snapshots = snapshots_taken(&engine) - snapshots;
    engine.shutdown().unwrap();
    println!("{flush}: {allocations} allocations ({by_thread}), {rollovers} rollovers, {snapshots} snapshots");
    assert!(rollovers >= 10, "only {rollovers} rollovers in the window");
    assert!(snapshots >= 10, "only {snapshots} snapshots in the window");
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations for {} messages with {flush} ({by_thread})",
        CALLERS * 20_000
    );
}

#[test]
fn no_allocation_per_message_on_the_client_path() {
    run(Adder::default(), traffic, FlushPolicy::None);
    run(Adder::default(), traffic, FlushPolicy::Batch);
}

#[test]
fn no_allocation_per_message_on_the_typed_client_path() {
    run(Typed::new(Sum::default()), typed_traffic, FlushPolicy::None);
    run(
        Typed::new(Sum::default()),
        typed_traffic,
        FlushPolicy::Batch,
    );
}
