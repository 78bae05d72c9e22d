//! Differential tests: the exchange and a naive reference exchange receive the same seeded
//! random streams; every response (outcome and events) and the final books and balances must
//! match exactly.

mod common_exchange;

use common_exchange::generator::{Generator, Input};
use common_exchange::reference::Reference;
use common_exchange::{small_limits, Answer, Harness};
use keel::Typed;
use keel::{Outcome, Processor};
use keel_services::exchange::*;
use keel_services::App;
use std::collections::BTreeMap;

/// What the reference says `input` (message `sequence`) must answer.
fn expected(r: &mut Reference, input: &Input, sequence: u64) -> (Outcome, Answer) {
    let rejected = |reason: RejectReason| {
        let report = Report {
            events: vec![Event::Rejected {
                order_id: 0,
                reason,
            }],
            omitted: 0,
        };
        (Outcome::Rejected(reason as u32), Answer::Events(report))
    };
    let events = |(outcome, events): (Outcome, Vec<Event>)| {
        (outcome, Answer::Events(Report { events, omitted: 0 }))
    };
    match input {
        Input::Request(Request::QueryBook(q)) => match r.book_depth(q.instrument, q.depth) {
            Some(depth) => (Outcome::Accepted, Answer::Book(depth)),
            None => rejected(RejectReason::UnknownInstrument),
        },
        Input::Request(Request::QueryAccount(q)) => match r.account_view(q.account) {
            Some(view) => (Outcome::Accepted, Answer::Account(view)),
            None => rejected(RejectReason::UnknownAccount),
        },
        Input::Request(request) => events(r.execute(request, sequence)),
        Input::PlaceV1(v1) => {
            // The reference's own upcast: no client id (assigned), GTC.
            let v2 = PlaceOrder {
                order_id: 0,
                account: v1.account,
                instrument: v1.instrument,
                side: v1.side,
                order_type: OrderType::Gtc,
                price: v1.price,
                qty: v1.qty,
            };
            events(r.execute(&Request::Place(v2), sequence))
        }
        Input::Garbage { reason, .. } => rejected(*reason),
    }
}

/// Compares every book and every account.
fn assert_same_state(h: &Harness, r: &Reference, context: &str) {
    let ids: Vec<u32> = h.exchange.service().instrument_ids().collect();
    assert_eq!(ids, r.instrument_ids(), "{context}: instruments");
    for id in ids {
        assert_eq!(
            h.exchange.service().orders(id),
            r.orders(id),
            "{context}: book {id}"
        );
    }
    let accounts: Vec<u32> = h.exchange.service().account_ids().collect();
    assert_eq!(accounts, r.account_ids(), "{context}: accounts");
    for id in accounts {
        assert_eq!(
            h.exchange.service().account_view(id),
            r.account_view(id),
            "{context}: account {id}"
        );
    }
    h.exchange
        .service()
        .check_invariants()
        .unwrap_or_else(|e| panic!("{context}: {e}"));
}

#[derive(Default)]
struct Coverage {
    rejects: BTreeMap<u32, u64>,
    events: BTreeMap<&'static str, u64>,
}

impl Coverage {
    fn record(&mut self, outcome: Outcome, answer: &Answer) {
        if let Outcome::Rejected(reason) = outcome {
            *self.rejects.entry(reason).or_default() += 1;
        }
        if let Answer::Events(report) = answer {
            for event in &report.events {
                let name = match event {
                    Event::Trade { .. } => "trade",
                    Event::Cancelled {
                        reason: CancelReason::Unfilled,
                        ..
                    } => "unfilled",
                    Event::Cancelled { .. } => "cancelled",
                    Event::Reduced { remaining: 0, .. } => "reduced_out",
                    Event::Reduced { .. } => "reduced",
                    Event::Moved { .. } => "moved",
                    Event::Book(_) => "book",
                    Event::Accepted {
                        order_type: OrderType::Market,
                        ..
                    } => "market",
                    Event::Accepted {
                        order_type: OrderType::Fok,
                        ..
                    } => "fok",
                    Event::Accepted { .. } => "accepted",
                    _ => "other",
                };
                *self.events.entry(name).or_default() += 1;
            }
        }
    }
}

fn run(seed: u64, messages: usize, limits: ExchangeLimits, coverage: &mut Coverage) {
    let mut h = Harness::new(limits);
    let mut r = Reference::new(limits);
    let mut g = Generator::new(seed);
    let setup = g.setup();
    for i in 0..setup.len() + messages {
        let input = if i < setup.len() {
            setup[i].clone()
        } else {
            g.next()
        };
        let (outcome, answer) = h.command(&input.command());
        let want = expected(&mut r, &input, h.sequence);
        let context = format!("seed {seed} message {}: {input:?}", h.sequence);
        assert_eq!((outcome, &answer), (want.0, &want.1), "{context}");
        coverage.record(outcome, &answer);
        if let Answer::Events(report) = &answer {
            g.observe(&report.events);
        }
        if h.sequence.is_multiple_of(250) {
            assert_same_state(&h, &r, &context);
        }
    }
    assert_same_state(&h, &r, &format!("seed {seed} end"));
}

#[test]
fn random_streams_match_the_reference_under_small_limits() {
    let mut coverage = Coverage::default();
    for seed in 0..60 {
        // Every third stream runs with books so small that the order limits bite often.
        let tight = ExchangeLimits {
            max_open_orders: 15,
            max_price_levels: 5,
            ..small_limits()
        };
        let limits = if seed % 3 == 0 { tight } else { small_limits() };
        run(seed, 6_000, limits, &mut coverage);
    }
    // NotionalOverflow cannot happen when max_price × max_order_qty fits in u64 (unit test).
    for reason in RejectReason::ALL
        .iter()
        .filter(|r| **r != RejectReason::NotionalOverflow)
    {
        let n = coverage
            .rejects
            .get(&(*reason as u32))
            .copied()
            .unwrap_or(0);
        assert!(n > 0, "no {reason:?} rejection in the random streams");
    }
    for name in [
        "trade",
        "unfilled",
        "cancelled",
        "reduced",
        "reduced_out",
        "moved",
        "book",
        "market",
        "fok",
    ] {
        assert!(
            coverage.events.get(name).copied().unwrap_or(0) > 20,
            "too few {name} events: {:?}",
            coverage.events
        );
    }
}

#[test]
fn random_streams_match_the_reference_under_default_limits() {
    let mut coverage = Coverage::default();
    for seed in 100..112 {
        run(seed, 8_000, ExchangeLimits::default(), &mut coverage);
    }
    assert!(coverage.events["trade"] > 1000);
}

#[test]
fn the_canonical_workload_matches_the_reference() {
    let seed = 42;
    let mut h = Harness::new(ExchangeLimits::default());
    let mut r = Reference::new(ExchangeLimits::default());
    let mut coverage = Coverage::default();
    let setup = WORKLOAD.setup();
    let workload = (0..120_000).map(|i| WORKLOAD.request(seed, i));
    for request in setup.into_iter().chain(workload) {
        let (outcome, answer) = h.send(&request);
        let (want, events) = r.execute(&request, h.sequence);
        let context = format!("message {}: {request:?}", h.sequence);
        assert_eq!((outcome, answer.events()), (want, &events[..]), "{context}");
        coverage.record(outcome, &answer);
    }
    assert_same_state(&h, &r, "canonical workload");
    assert!(coverage.events["trade"] > 1000, "{:?}", coverage.events);
    assert!(coverage.events["moved"] > 80_000, "{:?}", coverage.events);
    let rejected: u64 = coverage.rejects.values().sum();
    assert!(
        rejected < 120_000 / 8,
        "too many rejections in the canonical mix: {:?}",
        coverage.rejects
    );
    // The App entry points produce exactly these messages.
    assert_eq!(
        Typed::<Exchange>::workload(seed, 123),
        WORKLOAD.request(seed, 123).to_command()
    );
    assert_eq!(Typed::<Exchange>::setup(seed).len(), WORKLOAD.setup().len());
    // Snapshot round trip of a busy state.
    let mut bytes = Vec::new();
    h.exchange.save_state(&mut bytes).unwrap();
    let mut loaded = Typed::<Exchange>::default();
    loaded.load_state(SCHEMA_VERSION, &bytes).unwrap();
    assert_eq!(loaded.state_hash(), h.exchange.state_hash());
}
