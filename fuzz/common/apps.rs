//! Shared by the application-decoder targets: splits the input into messages, runs them
//! through the app's validator and business logic twice, and checks what must hold.

use keel::engine::{Message, MessageHeader};
use keel::{Outcome, Output};
use keel_services::App;

/// One message cut from the input: `kind u16, version u16, len u8, payload[len]`.
pub struct Raw<'a> {
    pub kind: u16,
    pub version: u16,
    pub payload: &'a [u8],
}

/// Cuts `data` into messages (the last one may be short: it takes what is left).
pub fn messages(mut data: &[u8]) -> Vec<Raw<'_>> {
    let mut out = Vec::new();
    while data.len() >= 5 && out.len() < 256 {
        let kind = u16::from_le_bytes([data[0], data[1]]);
        let version = u16::from_le_bytes([data[2], data[3]]);
        let len = usize::from(data[4]).min(data.len() - 5);
        out.push(Raw {
            kind,
            version,
            payload: &data[5..5 + len],
        });
        data = &data[5 + len..];
    }
    out
}

/// What one apply produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub kind: u16,
    pub response: Vec<u8>,
}

/// Applies every message (valid or not: an embedded host submits without the network
/// validator) to `app`, checking `check` after each. Returns the outputs.
pub fn run<A: App>(app: &mut A, msgs: &[Raw<'_>], check: impl Fn(&A)) -> Vec<Applied> {
    let mut buf = vec![0u8; 64 << 10];
    let mut outs = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let header = MessageHeader {
            sequence: i as u64 + 1,
            timestamp_ns: 1_000_000 * (i as u64 + 1),
            session_id: 1,
            correlation_id: i as u64,
            kind: m.kind,
            version: m.version,
        };
        let message = Message {
            header,
            payload: m.payload,
        };
        let mut out = Output::new(&mut buf);
        let outcome = app.apply(&message, &mut out);
        if A::validate(m.kind, m.version, m.payload).is_err() {
            assert!(
                matches!(outcome, Outcome::Rejected(_)),
                "an invalid message was accepted: kind {} v{}",
                m.kind,
                m.version
            );
        }
        outs.push(Applied {
            outcome,
            kind: out.kind(),
            response: out.as_bytes().to_vec(),
        });
        check(app);
    }
    outs
}

/// Same messages on a second instance give the same outputs and state; the final state
/// survives a snapshot round trip.
pub fn check_determinism<A: App>(fresh: fn() -> A, msgs: &[Raw<'_>], check: impl Fn(&A) + Copy) {
    let mut first = fresh();
    let outs = run(&mut first, msgs, check);
    let mut second = fresh();
    assert_eq!(
        run(&mut second, msgs, |_| {}),
        outs,
        "replay gave other outputs"
    );
    assert_eq!(
        second.state_hash(),
        first.state_hash(),
        "replay gave another state"
    );
    let mut saved = Vec::new();
    first.save_state(&mut saved).expect("state saves");
    let mut restored = fresh();
    restored
        .load_state(first.schema_version(), &saved)
        .expect("saved state loads");
    assert_eq!(
        restored.state_hash(),
        first.state_hash(),
        "snapshot round trip"
    );
}
