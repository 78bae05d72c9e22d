//! The bookstore's message decoder (`messages::decode`, `App::validate`) and its business
//! logic on whatever decodes: validator and decoder agree; a current-version payload that
//! decodes re-encodes to the same bytes (one encoding per message); applying any sequence
//! never panics, rejects what the validator refuses, keeps the state consistent, and is
//! deterministic (a replay gives the same outputs and state, a snapshot restores it).
//!
//! Shared by the fuzz target `bookstore_decoder` and `tests/fuzz_regressions.rs`, which replays
//! every input in `fuzz/regressions/bookstore_decoder/`.

use crate::apps;

use keel::codec;
use keel_services::bookstore::messages::{self, Kind, Request};
use keel_services::bookstore::{Bookstore, BookstoreLimits, PlaceOrder, PlaceOrderV1};
use keel_services::App;

fn small() -> Bookstore {
    Bookstore::new(BookstoreLimits {
        max_books: 16,
        max_orders: 512,
        max_customers: 32,
        max_orders_per_customer: 64,
        ..BookstoreLimits::default()
    })
}

/// One fuzz input: see the module docs.
pub fn run(data: &[u8]) {
    let msgs = apps::messages(data);
    for m in &msgs {
        let decoded = messages::decode(m.kind, m.version, m.payload);
        let valid = Bookstore::validate(m.kind, m.version, m.payload);
        assert_eq!(
            decoded.is_ok(),
            valid.is_ok(),
            "validate and decode disagree"
        );
        if let Ok(request) = decoded {
            assert_eq!(reencode(&request, m.version), m.payload, "{request:?}");
        }
    }
    apps::check_determinism(small, &msgs, |store: &Bookstore| {
        store.check_consistency().expect("consistent state");
    });
}

/// The payload bytes of `request` at `version` (the upcast of v1 orders is undone).
fn reencode(request: &Request, version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let r = match request {
        Request::AddBook(m) => codec::encode_to_vec(m, &mut out),
        Request::ChangePrice(m) => codec::encode_to_vec(m, &mut out),
        Request::Restock(m) => codec::encode_to_vec(m, &mut out),
        Request::PlaceOrder(o) if version == 1 => {
            assert_eq!(o.seen_price_cents, None);
            let v1 = PlaceOrderV1 {
                customer: o.customer,
                book: o.book,
                quantity: o.quantity,
            };
            codec::encode_to_vec(&v1, &mut out)
        }
        Request::PlaceOrder(o) => {
            assert_eq!(version, Kind::PlaceOrder.current_version());
            let seen_price_cents = o.seen_price_cents.expect("v2 carries the price");
            let v2 = PlaceOrder {
                customer: o.customer,
                book: o.book,
                quantity: o.quantity,
                seen_price_cents,
            };
            codec::encode_to_vec(&v2, &mut out)
        }
        Request::CancelOrder(m) => codec::encode_to_vec(m, &mut out),
        Request::QueryBook(m) => codec::encode_to_vec(m, &mut out),
        Request::QueryOrder(m) => codec::encode_to_vec(m, &mut out),
        Request::QueryCustomerOrders(m) => codec::encode_to_vec(m, &mut out),
    };
    r.expect("encodes into a Vec");
    out
}
