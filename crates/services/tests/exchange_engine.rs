//! The exchange inside `keel::Engine`: responses equal a direct run's, and a restart (from a
//! snapshot plus the journal tail, or from the journal alone) rebuilds the same state hash.

mod common_exchange;

use common_exchange::Harness;
use keel::engine::ResponseReceiver;
use keel::ring::Poll;
use keel::Typed;
use keel::{Config, Engine, FlushPolicy, Processor, Status, Submission, WaitStrategy};
use keel_services::exchange::*;
use keel_services::{App, Command};
use std::thread;

const SEED: u64 = 11;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 4096;
    config.output_ring_capacity = 4096;
    config.segment_size_bytes = 4 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::None;
    config.snapshot_interval_messages = 15_000;
    config
}

/// Every response as (sequence, status, reason, kind, payload).
type Collected = Vec<(u64, Status, u32, u16, Vec<u8>)>;

fn collect(mut rx: ResponseReceiver) -> thread::JoinHandle<Collected> {
    thread::spawn(move || {
        let mut out = Vec::new();
        loop {
            let poll = rx.poll(None, |r| {
                let h = r.header;
                out.push((h.sequence, h.status, h.reason, h.kind, r.payload.to_vec()));
            });
            if matches!(poll, Poll::Closed | Poll::Halted) {
                return out;
            }
        }
    })
}

fn commands(from: u64, to: u64) -> Vec<Command> {
    let setup = if from == 0 {
        Typed::<Exchange>::setup(SEED)
    } else {
        Vec::new()
    };
    setup
        .into_iter()
        .chain((from..to).map(|i| Typed::<Exchange>::workload(SEED, i)))
        .collect()
}

fn submit_all(engine: &mut Engine<Typed<Exchange>>, commands: &[Command]) {
    for (i, c) in commands.iter().enumerate() {
        let to = Submission {
            kind: c.kind,
            version: c.version,
            session_id: 1,
            correlation_id: i as u64,
        };
        engine.submitter().submit(to, &c.payload).unwrap();
    }
}

#[test]
fn the_engine_answers_like_a_direct_run_and_restarts_to_the_same_hash() {
    let dir = tempfile::tempdir().unwrap();
    let first = commands(0, 40_000);
    let mut direct = Harness::with_buffer(ExchangeLimits::default(), 4096);
    let expected: Vec<_> = first.iter().map(|c| direct.command(c)).collect();

    let mut engine = Engine::start(config(dir.path()), Typed::<Exchange>::default()).unwrap();
    let responses = collect(engine.take_responses().unwrap());
    submit_all(&mut engine, &first);
    let live = engine.shutdown().unwrap();
    let got = responses.join().unwrap();
    assert_eq!(got.len(), first.len());
    for ((sequence, status, reason, kind, payload), (outcome, answer)) in got.iter().zip(&expected)
    {
        let want = match outcome {
            keel::Outcome::Accepted => (Status::Accepted, 0),
            keel::Outcome::Rejected(r) => (Status::Rejected, *r),
        };
        assert_eq!((*status, *reason), want, "message {sequence}");
        assert_eq!(
            &common_exchange::decode_answer(*kind, payload),
            answer,
            "message {sequence}"
        );
    }
    let hash = live.state_hash();
    assert_eq!(hash, direct.exchange.state_hash());
    live.service().check_invariants().unwrap();

    // Restart: newest snapshot (taken at shutdown) plus an empty tail.
    let discard = {
        let mut config = config(dir.path());
        config.discard_responses = true;
        config
    };
    let mut engine = Engine::start(discard, Typed::<Exchange>::default()).unwrap();
    assert_eq!(engine.recovered_sequence(), first.len() as u64);
    assert_eq!(engine.recovered().snapshot_sequence, first.len() as u64);
    // Continue on the restarted engine, and in the direct run.
    let more = commands(40_000, 45_000);
    for c in &more {
        direct.command(c);
    }
    submit_all(&mut engine, &more);
    let continued = engine.shutdown().unwrap();
    assert_eq!(continued.state_hash(), direct.exchange.state_hash());

    // Without snapshots, a full replay of the journal gives the same state too.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let engine = Engine::start(config(dir.path()), Typed::<Exchange>::default()).unwrap();
    assert_eq!(engine.recovered().snapshot_sequence, 0);
    let replayed = engine.shutdown().unwrap();
    assert_eq!(replayed.state_hash(), continued.state_hash());
    replayed.service().check_invariants().unwrap();
}
