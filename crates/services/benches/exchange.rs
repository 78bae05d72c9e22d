//! Exchange apply cost per message type, calling `Processor::apply` directly (decode, risk,
//! matching, response encoding), on books pre-populated by the canonical workload.
//!
//! Each case times only the messages it names: the orders a cancel, move or reduce needs are
//! placed, and whatever a case leaves behind is cleaned up, outside the timed region, in
//! chunks of `CHUNK` messages. `mix` replays the canonical workload (`App::workload`) itself.
//! The per-message cases assert that every timed message was accepted, and every group checks
//! the exchange's invariants at the end, so a broken exchange fails the benchmark.
//!
//! Cargo.toml: `[[bench]] name = "exchange" harness = false`.
//!
//! Measured (2-vCPU AMD EPYC VM, shared, bench profile with fat LTO): place resting 77 ns,
//! place matching one maker 97 ns, cancel 57 ns, move 72 ns, reduce 47 ns, canonical mix
//! 110 ns (about 9 M commands/s on the business-logic thread).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel::engine::MessageHeader;
use keel::Typed;
use keel::{Message, Outcome, Output, Processor};
use keel_services::exchange::*;
use keel_services::{App, Command};
use std::time::{Duration, Instant};

const SEED: u64 = 7;
const WARM_MESSAGES: u64 = 300_000;
const CHUNK: u64 = 10_000;
/// A book of its own for the matching case: makers at one price on top of a passive book.
const MATCH_INSTRUMENT: u32 = 100;
const MATCH_PRICE: u64 = 2_000_000;
const ACCOUNT: u32 = 1;

struct Driver {
    exchange: Typed<Exchange>,
    sequence: u64,
    buf: Vec<u8>,
    next_id: u64,
    workload_index: u64,
}

impl Driver {
    fn new() -> Self {
        let mut d = Driver {
            exchange: Typed::<Exchange>::default(),
            sequence: 0,
            buf: vec![0; 4096],
            next_id: 1 << 61,
            workload_index: 0,
        };
        for command in Typed::<Exchange>::setup(SEED) {
            d.apply_ok(&command);
        }
        d.apply_ok(&add(MATCH_INSTRUMENT));
        let lots = PositionTransfer {
            account: ACCOUNT,
            instrument: MATCH_INSTRUMENT,
            qty: 1 << 40,
        };
        d.apply_ok(&Request::DepositPosition(lots).to_command());
        d.warm();
        d
    }

    /// Runs the canonical workload into a steady state, and gives the matching book depth.
    fn warm(&mut self) {
        for _ in 0..WARM_MESSAGES {
            let command = Typed::<Exchange>::workload(SEED, self.workload_index);
            self.workload_index += 1;
            self.apply(&command);
        }
        for i in 0..2_000u64 {
            let (side, price) = match i % 2 {
                0 => (Side::Buy, MATCH_PRICE - WORKLOAD.tick * (1 + i % 48)),
                _ => (Side::Sell, MATCH_PRICE + WORKLOAD.tick * (1 + i % 48)),
            };
            let id = self.id();
            self.apply_ok(&place(
                id,
                MATCH_INSTRUMENT,
                side,
                OrderType::Gtc,
                price,
                10,
            ));
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    #[inline]
    fn apply(&mut self, command: &Command) -> Outcome {
        self.sequence += 1;
        let header = MessageHeader {
            sequence: self.sequence,
            timestamp_ns: self.sequence,
            session_id: 0,
            correlation_id: self.sequence,
            kind: command.kind,
            version: command.version,
        };
        let message = Message {
            header,
            payload: &command.payload,
        };
        let mut out = Output::new(&mut self.buf);
        self.exchange.apply(&message, &mut out)
    }

    fn apply_ok(&mut self, command: &Command) {
        let outcome = self.apply(command);
        assert_eq!(outcome, Outcome::Accepted, "{command:?}");
    }

    /// Applies `commands`, checks they were all accepted, returns the time it took.
    fn timed(&mut self, commands: &[Command]) -> Duration {
        let start = Instant::now();
        let mut rejected = 0u32;
        for command in commands {
            rejected += u32::from(self.apply(command) != Outcome::Accepted);
        }
        let elapsed = start.elapsed();
        assert_eq!(rejected, 0, "benchmark messages were rejected");
        elapsed
    }

    /// `n` resting buys on instrument 0 at passive prices; returns their ids.
    fn rest_buys(&mut self, n: u64, qty: u64) -> Vec<u64> {
        let ids: Vec<u64> = (0..n).map(|_| self.id()).collect();
        for (i, &id) in ids.iter().enumerate() {
            let price = passive(i as u64);
            self.apply_ok(&place(id, 0, Side::Buy, OrderType::Gtc, price, qty));
        }
        ids
    }

    fn cancel_all(&mut self, ids: &[u64]) {
        for &id in ids {
            let outcome = self.apply(&cancel(id));
            let gone = Outcome::Rejected(RejectReason::UnknownOrder as u32);
            debug_assert!(outcome == Outcome::Accepted || outcome == gone);
        }
    }

    /// Runs `iters` messages in chunks: `prepare` (untimed) gives the chunk's messages, then
    /// they are timed, then `cleanup` (untimed) restores the state.
    fn chunked(
        &mut self,
        iters: u64,
        mut prepare: impl FnMut(&mut Driver, u64) -> (Vec<Command>, Vec<u64>),
        cleanup: impl Fn(&mut Driver, &[u64]),
    ) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(CHUNK);
            let (commands, ids) = prepare(self, n);
            total += self.timed(&commands);
            cleanup(self, &ids);
            left -= n;
        }
        total
    }
}

fn add(instrument: u32) -> Command {
    let m = AddInstrument {
        instrument,
        tick: WORKLOAD.tick,
        market_band: 10 * WORKLOAD.tick,
    };
    Request::AddInstrument(m).to_command()
}

fn place(
    id: u64,
    instrument: u32,
    side: Side,
    order_type: OrderType,
    price: u64,
    qty: u64,
) -> Command {
    let p = PlaceOrder {
        order_id: id,
        account: ACCOUNT,
        instrument,
        side,
        order_type,
        price,
        qty,
    };
    Request::Place(p).to_command()
}

/// A passive bid price on instrument 0 (below its mid of 1_000_000).
fn passive(i: u64) -> u64 {
    WORKLOAD.mid - WORKLOAD.tick * (1 + (i * 7) % WORKLOAD.depth_ticks)
}

fn cancel(id: u64) -> Command {
    Request::Cancel(CancelOrder {
        account: ACCOUNT,
        order_id: id,
    })
    .to_command()
}

/// What one case times (`Vec<Command>`) and the ids its cleanup needs.
type Prepared = (Vec<Command>, Vec<u64>);

fn place_resting(d: &mut Driver, n: u64) -> Prepared {
    let ids: Vec<u64> = (0..n).map(|_| d.id()).collect();
    let at =
        |(i, &id): (usize, &u64)| place(id, 0, Side::Buy, OrderType::Gtc, passive(i as u64), 10);
    (ids.iter().enumerate().map(at).collect(), ids)
}

/// Makers at `MATCH_PRICE` (untimed), then one IOC taker per maker, each one trade.
fn place_matching(d: &mut Driver, n: u64) -> Prepared {
    for _ in 0..n {
        let id = d.id();
        d.apply_ok(&place(
            id,
            MATCH_INSTRUMENT,
            Side::Sell,
            OrderType::Gtc,
            MATCH_PRICE,
            5,
        ));
    }
    let ids: Vec<u64> = (0..n).map(|_| d.id()).collect();
    let take = |&id: &u64| {
        place(
            id,
            MATCH_INSTRUMENT,
            Side::Buy,
            OrderType::Ioc,
            MATCH_PRICE,
            5,
        )
    };
    (ids.iter().map(take).collect(), Vec::new())
}

fn cancels(d: &mut Driver, n: u64) -> Prepared {
    let ids = d.rest_buys(n, 10);
    (ids.iter().map(|&id| cancel(id)).collect(), Vec::new())
}

fn moves(d: &mut Driver, n: u64) -> Prepared {
    let ids = d.rest_buys(n, 10);
    let to = |(i, &id): (usize, &u64)| {
        let price = passive(i as u64 + 3);
        Request::Move(MoveOrder {
            account: ACCOUNT,
            order_id: id,
            price,
        })
        .to_command()
    };
    (ids.iter().enumerate().map(to).collect(), ids)
}

fn reduces(d: &mut Driver, n: u64) -> Prepared {
    let ids = d.rest_buys(n, 10);
    let by_one = |&id: &u64| {
        Request::Reduce(ReduceOrder {
            account: ACCOUNT,
            order_id: id,
            by: 1,
        })
        .to_command()
    };
    (ids.iter().map(by_one).collect(), ids)
}

type Case = (
    &'static str,
    fn(&mut Driver, u64) -> Prepared,
    fn(&mut Driver, &[u64]),
);

const CASES: [Case; 5] = [
    ("place_resting", place_resting, Driver::cancel_all),
    ("place_matching", place_matching, |_, _| {}),
    ("cancel", cancels, |_, _| {}),
    ("move", moves, Driver::cancel_all),
    ("reduce", reduces, Driver::cancel_all),
];

fn per_message(c: &mut Criterion) {
    let mut d = Driver::new();
    let mut group = c.benchmark_group("exchange_apply");
    group.throughput(Throughput::Elements(1));
    for (name, prepare, cleanup) in CASES {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| d.chunked(iters, prepare, cleanup))
        });
    }
    group.finish();
    assert!(d.exchange.service().check_invariants().is_ok());
}

fn mix(c: &mut Criterion) {
    let mut d = Driver::new();
    let mut group = c.benchmark_group("exchange_mix");
    group.throughput(Throughput::Elements(1));
    group.bench_function("canonical_workload", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let from = d.workload_index;
                let commands: Vec<Command> = (from..from + n)
                    .map(|i| Typed::<Exchange>::workload(SEED, i))
                    .collect();
                d.workload_index += n;
                let start = Instant::now();
                for command in &commands {
                    d.apply(command);
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    group.finish();
    assert!(d.exchange.service().check_invariants().is_ok());
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = per_message, mix
}
criterion_main!(benches);
