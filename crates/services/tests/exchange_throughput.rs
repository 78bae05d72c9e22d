//! Business-logic throughput of the exchange on the canonical workload, `Processor::apply`
//! called directly on pre-encoded messages (no engine around it). Ignored by default:
//! `cargo test --release --test exchange_throughput -- --ignored --nocapture`.

use keel::engine::MessageHeader;
use keel::Typed;
use keel::{Message, Outcome, Output, Processor};
use keel_services::exchange::*;
use keel_services::{App, Command};
use std::time::Instant;

fn apply(
    exchange: &mut Typed<Exchange>,
    buf: &mut [u8],
    sequence: u64,
    command: &Command,
) -> Outcome {
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
    exchange.apply(&message, &mut Output::new(buf))
}

#[test]
#[ignore = "a measurement, not a check: run it in release with --ignored --nocapture"]
fn canonical_mix_throughput() {
    let seed = 7;
    let messages: u64 = std::env::var("EXCHANGE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000_000);
    let mut exchange = Typed::<Exchange>::default();
    let mut buf = vec![0u8; 4096];
    let mut sequence = 0;
    for command in Typed::<Exchange>::setup(seed) {
        sequence += 1;
        assert_eq!(
            apply(&mut exchange, &mut buf, sequence, &command),
            Outcome::Accepted
        );
    }
    let commands: Vec<Command> = (0..messages)
        .map(|i| Typed::<Exchange>::workload(seed, i))
        .collect();
    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    let mut outcomes = Vec::with_capacity(commands.len());
    let start = Instant::now();
    for command in &commands {
        sequence += 1;
        outcomes.push(apply(&mut exchange, &mut buf, sequence, command));
    }
    let elapsed = start.elapsed();
    let mut reasons = std::collections::BTreeMap::<(&str, u32), u64>::new();
    for (command, outcome) in commands.iter().zip(&outcomes) {
        if let Outcome::Rejected(reason) = outcome {
            *reasons
                .entry((kind_name(command.kind), *reason))
                .or_default() += 1;
        }
    }
    let rejected: u64 = reasons.values().sum();
    println!("rejections by (kind, reason): {reasons:?}");
    for command in &commands {
        *kinds.entry(kind_name(command.kind)).or_default() += 1;
    }
    let ns = elapsed.as_nanos() as f64 / messages as f64;
    println!(
        "{messages} messages in {elapsed:?}: {ns:.1} ns/message, {:.2} M messages/s; {rejected} rejected; open orders {}; mix {kinds:?}",
        1e3 / ns,
        exchange.service().open_orders()
    );
    exchange.service().check_invariants().unwrap();
}
