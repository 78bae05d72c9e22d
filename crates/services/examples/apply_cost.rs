//! The bookstore's apply cost in instructions per message, a figure a busy machine does not
//! disturb: run it under cachegrind with N and 2N messages; the difference divided by N is
//! the cost of one message (setup and start-up cancel out). docs/BENCHMARKS.md has the method.
//!
//! ```text
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/apply_cost order_accepted 20000
//! ```
//!
//! Cases: query_book, query_order, price_change, order_accepted, order_rejected_stale_price.
use keel::engine::{Message, MessageHeader, Output};
use keel::Processor;
use keel_services::bookstore::{
    AddBook, Bookstore, ChangePrice, Payload, PlaceOrder, QueryBook, QueryOrder,
};
use std::hint::black_box;

const BOOKS: u32 = 1000;

type Store = keel::Typed<Bookstore>;

/// The store and what the engine would hand it: a sequence and a response buffer.
struct Rig {
    store: Store,
    seq: u64,
    buf: Vec<u8>,
    bytes: [u8; 512],
}

impl Rig {
    /// Encodes `p` and applies it as the next message.
    fn send<T: Payload>(&mut self, p: &T) {
        let len = p.encode_into(&mut self.bytes).unwrap();
        self.seq += 1;
        let header = MessageHeader {
            sequence: self.seq,
            timestamp_ns: self.seq,
            kind: T::KIND.number(),
            version: T::VERSION,
            ..Default::default()
        };
        let m = Message {
            header,
            payload: &self.bytes[..len],
        };
        black_box(self.store.apply(&m, &mut Output::new(&mut self.buf)));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args[1].as_str();
    let n: u64 = args[2].parse().unwrap();
    let mut rig = Rig {
        store: keel::Typed::new(Bookstore::default()),
        seq: 0,
        buf: vec![0; 4096],
        bytes: [0; 512],
    };
    for book in 0..BOOKS {
        rig.send(&AddBook {
            book,
            price_cents: 1000,
            stock: 1_000_000_000,
            title: "t".into(),
        });
    }
    if case == "query_order" {
        for i in 0..1000u64 {
            rig.send(&PlaceOrder {
                customer: i,
                book: (i % 1000) as u32,
                quantity: 1,
                seen_price_cents: 1000,
            });
        }
    }
    for i in 0..n {
        let book = (i % u64::from(BOOKS)) as u32;
        match case {
            "query_book" => rig.send(&QueryBook { book }),
            "price_change" => rig.send(&ChangePrice {
                book,
                price_cents: 1000,
            }),
            "order_accepted" => rig.send(&PlaceOrder {
                customer: i % 100_000,
                book,
                quantity: 1,
                seen_price_cents: 1000,
            }),
            "order_rejected_stale_price" => rig.send(&PlaceOrder {
                customer: i % 100_000,
                book,
                quantity: 1,
                seen_price_cents: 999,
            }),
            "query_order" => rig.send(&QueryOrder {
                order: 1 + i % 1000,
            }),
            other => panic!("unknown case {other}"),
        }
    }
}
