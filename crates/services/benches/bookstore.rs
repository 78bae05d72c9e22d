//! Bookstore apply cost per message type, calling `Processor::apply` directly (no ring, no
//! journal): the business-logic thread's own budget. Throughput is in messages per second;
//! for the order cases that is orders per second.
//!
//! Every case verifies its outcomes after timing (all accepted, or all rejected with the
//! expected reason), so a fast wrong answer fails the run. Messages are encoded before
//! timing; each timed message builds its header (sequence, timestamp) as the engine would.
//! Cases that grow the state (orders, cancels, the canonical mix) run in chunks on a fresh
//! store set up outside the timing, so the state stays within its limits; such a store is
//! kept across samples (steady state: warm caches, the order storage faulting in page by page
//! as it fills). `order_accepted_prefaulted` touches the order storage first
//! (`Bookstore::prefault`), as a deployment that allocates everything at start would.
//! Results depend on the machine: state the hardware with the figures.

use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};
use keel::engine::{Message, MessageHeader};
use keel::Typed;
use keel::{Outcome, Output, Processor};
use keel_services::bookstore::{
    workload, Bookstore, CancelOrder, ChangePrice, Payload, PlaceOrder, QueryBook,
    QueryCustomerOrders, QueryOrder, RejectReason, Restock,
};
use keel_services::App;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SEED: u64 = 1;
/// Distinct pre-encoded messages cycled through by the cases that do not grow the state.
const POOL: usize = 4096;
/// Most state-growing messages encoded (outside the timing) and applied in one go.
const CHUNK: u64 = 1 << 20;

/// One pre-encoded message.
#[derive(Clone, Copy)]
struct Msg {
    kind: u16,
    version: u16,
    len: u8,
    bytes: [u8; workload::MAX_PAYLOAD_BYTES],
}

impl Msg {
    fn of<T: Payload>(payload: &T) -> Msg {
        let mut bytes = [0u8; workload::MAX_PAYLOAD_BYTES];
        let len = payload.encode_into(&mut bytes).expect("fits") as u8;
        Msg {
            kind: T::KIND.number(),
            version: T::VERSION,
            len,
            bytes,
        }
    }
}

/// A store plus the engine-side bits: sequence counter and response buffer.
struct Rig {
    store: Typed<Bookstore>,
    sequence: u64,
    buf: Vec<u8>,
}

impl Rig {
    /// A fresh store with the workload's books (setup is not timed).
    fn new() -> Rig {
        let mut rig = Rig {
            store: Typed::<Bookstore>::default(),
            sequence: 0,
            buf: vec![0; 4096],
        };
        for command in Typed::<Bookstore>::setup(SEED) {
            let mut bytes = [0u8; workload::MAX_PAYLOAD_BYTES];
            let len = command.payload.len().min(bytes.len());
            bytes[..len].copy_from_slice(&command.payload[..len]);
            let msg = Msg {
                kind: command.kind,
                version: command.version,
                len: len as u8,
                bytes,
            };
            assert_eq!(rig.apply(&msg), Outcome::Accepted);
        }
        rig
    }

    /// A fresh store, its order storage touched first if `prefault`.
    fn fresh(prefault: bool) -> Rig {
        let mut rig = Rig::new();
        if prefault {
            rig.store.prefault();
        }
        rig
    }

    #[inline]
    fn apply(&mut self, msg: &Msg) -> Outcome {
        self.sequence += 1;
        let header = MessageHeader {
            sequence: self.sequence,
            timestamp_ns: self.sequence,
            kind: msg.kind,
            version: msg.version,
            ..MessageHeader::default()
        };
        let message = Message {
            header,
            payload: &msg.bytes[..usize::from(msg.len)],
        };
        self.store.apply(&message, &mut Output::new(&mut self.buf))
    }

    /// Applies `msgs` cyclically `count` times; returns elapsed time and the outcomes seen.
    fn timed(&mut self, msgs: &[Msg], count: u64) -> (Duration, Tally) {
        let mut tally = Tally::default();
        let start = Instant::now();
        for i in 0..count {
            tally.add(black_box(self.apply(&msgs[i as usize % msgs.len()])));
        }
        (start.elapsed(), tally)
    }
}

/// Outcome counts, for verification after timing.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    accepted: u64,
    rejected: u64,
    last_reason: u32,
}

impl Tally {
    #[inline]
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::Rejected(reason) => {
                self.rejected += 1;
                self.last_reason = reason;
            }
        }
    }
}

fn random(i: u64) -> u64 {
    keel_services::bookstore::splitmix64(i ^ 0xBE7C)
}

fn book_of(i: u64) -> u32 {
    (random(i) % u64::from(workload::BOOKS)) as u32
}

fn customer_of(i: u64) -> u64 {
    random(i.wrapping_add(7)) % workload::CUSTOMERS + 1
}

/// A state-growing case: message `p` of an endless stream is `make(p)`. One store serves
/// as many messages as it has room for (`capacity`), then is replaced outside the timing, so
/// the measurement is the steady state (warm caches and indexes, new pages as they fill).
struct Growing<M, P, E> {
    rig: Rig,
    /// Touch the order storage when a store is created (outside the timing).
    prefault: bool,
    next: u64,
    capacity: u64,
    make: M,
    prepare: P,
    expect: E,
}

impl<M, P, E> Growing<M, P, E>
where
    M: Fn(u64) -> Msg,
    P: Fn(&mut Rig, u64, u64),
    E: Fn(u64, u64, Tally),
{
    /// A case whose first store is built now, before criterion starts its clock: criterion
    /// sizes its samples from the wall time of its first calls, so slow untimed setup there
    /// would shrink every sample to a single message.
    fn new(prefault: bool, capacity: u64, make: M, prepare: P, expect: E) -> Self {
        let rig = Rig::fresh(prefault);
        Growing {
            rig,
            prefault,
            next: 0,
            capacity,
            make,
            prepare,
            expect,
        }
    }

    fn run(&mut self, b: &mut Bencher<'_>) {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                if self.next + n > self.capacity {
                    (self.rig, self.next) = (Rig::fresh(self.prefault), 0);
                }
                let rig = &mut self.rig;
                (self.prepare)(rig, self.next, n);
                let msgs: Vec<Msg> = (self.next..self.next + n).map(&self.make).collect();
                let (elapsed, tally) = rig.timed(&msgs, n);
                (self.expect)(self.next, n, tally);
                total += elapsed;
                self.next += n;
                left -= n;
            }
            total
        });
    }
}

/// Cycles a fixed pool on one store (the state does not grow); checks every outcome.
fn cycled(b: &mut Bencher<'_>, rig: &mut Rig, msgs: &[Msg], expect: Outcome) {
    b.iter_custom(|iters| {
        let (elapsed, tally) = rig.timed(msgs, iters);
        let want = match expect {
            Outcome::Accepted => Tally {
                accepted: iters,
                ..Tally::default()
            },
            Outcome::Rejected(r) => Tally {
                rejected: iters,
                last_reason: r,
                accepted: 0,
            },
        };
        assert_eq!(tally, want);
        elapsed
    });
}

/// Order `p` of the order stream: a random customer and book, at the setup price.
fn order(p: u64, price_offset: u64) -> Msg {
    let book = book_of(p);
    let seen_price_cents = workload::price_at(SEED, book, 0) + price_offset;
    Msg::of(&PlaceOrder {
        customer: customer_of(p),
        book,
        quantity: 1,
        seen_price_cents,
    })
}

/// Places orders `start..start + n` of the order stream (ids `start + 1 ..`).
fn place_orders(rig: &mut Rig, start: u64, n: u64) {
    let msgs: Vec<Msg> = (start..start + n).map(|p| order(p, 0)).collect();
    assert_eq!(rig.timed(&msgs, n).1.accepted, n);
}

fn all_accepted(_: u64, n: u64, tally: Tally) {
    assert_eq!((tally.accepted, tally.rejected), (n, 0));
}

/// Room for orders in one store, with the default limits (stock: 1 M per book is plenty).
const ORDER_CAPACITY: u64 = 30_000_000;

fn order_cases(c: &mut Criterion) {
    let mut group = c.benchmark_group("bookstore_apply");
    group.throughput(Throughput::Elements(1));
    for prefault in [false, true] {
        let make = |p| order(p, 0);
        let mut orders = Growing::new(
            prefault,
            ORDER_CAPACITY,
            make,
            |_: &mut Rig, _, _| {},
            all_accepted,
        );
        let name = if prefault {
            "order_accepted_prefaulted"
        } else {
            "order_accepted"
        };
        group.bench_function(name, |b| orders.run(b));
    }
    group.bench_function("order_rejected_stale_price", |b| {
        let stale: Vec<Msg> = (0..POOL as u64).map(|p| order(p, 1)).collect();
        let reason = RejectReason::PriceChanged.code();
        cycled(b, &mut Rig::new(), &stale, Outcome::Rejected(reason));
    });
    let cancel = |p| {
        Msg::of(&CancelOrder {
            customer: customer_of(p),
            order: p + 1,
        })
    };
    let mut cancels = Growing::new(false, ORDER_CAPACITY, cancel, place_orders, all_accepted);
    group.bench_function("cancel", |b| cancels.run(b));
    drop(cancels);
    let mix = |p| {
        let mut msg = Msg {
            kind: 0,
            version: 0,
            len: 0,
            bytes: [0; workload::MAX_PAYLOAD_BYTES],
        };
        let (kind, version, len) = workload::encode(SEED, p, &mut msg.bytes);
        Msg {
            kind: kind.number(),
            version,
            len: len as u8,
            ..msg
        }
    };
    let only_stale_rejected = |start: u64, n: u64, tally: Tally| {
        let stale = (start..start + n).filter(|&p| workload::slot(p) == workload::Slot::StaleOrder);
        assert_eq!(
            (tally.accepted, tally.rejected),
            (n - stale.clone().count() as u64, stale.count() as u64)
        );
    };
    // The workload reaches the default order limit after about 38 M messages.
    let nothing = |_: &mut Rig, _, _| {};
    let mut mix = Growing::new(false, 35_000_000, mix, nothing, only_stale_rejected);
    group.bench_function("workload_mix", |b| mix.run(b));
    drop(mix);
    group.finish();
}

fn book_and_query_cases(c: &mut Criterion) {
    let mut group = c.benchmark_group("bookstore_apply");
    group.throughput(Throughput::Elements(1));
    let pool = |f: &dyn Fn(u64) -> Msg| -> Vec<Msg> { (0..POOL as u64).map(f).collect() };
    let prices = pool(&|i| {
        Msg::of(&ChangePrice {
            book: book_of(i),
            price_cents: 100 + i,
        })
    });
    group.bench_function("price_change", |b| {
        cycled(b, &mut Rig::new(), &prices, Outcome::Accepted)
    });
    let restocks = pool(&|i| {
        Msg::of(&Restock {
            book: book_of(i),
            quantity: 1,
        })
    });
    group.bench_function("restock", |b| {
        cycled(b, &mut Rig::new(), &restocks, Outcome::Accepted)
    });
    let mut rig = Rig::new();
    place_orders(&mut rig, 0, 100_000);
    let books = pool(&|i| Msg::of(&QueryBook { book: book_of(i) }));
    group.bench_function("query_book", |b| {
        cycled(b, &mut rig, &books, Outcome::Accepted)
    });
    let order_queries = pool(&|i| {
        Msg::of(&QueryOrder {
            order: random(i) % 100_000 + 1,
        })
    });
    group.bench_function("query_order", |b| {
        cycled(b, &mut rig, &order_queries, Outcome::Accepted)
    });
    let customers = pool(&|i| {
        Msg::of(&QueryCustomerOrders {
            customer: customer_of(i),
            before_order: 0,
        })
    });
    group.bench_function("query_customer_orders", |b| {
        cycled(b, &mut rig, &customers, Outcome::Accepted)
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = order_cases, book_and_query_cases
}
criterion_main!(benches);
