//! The bookstore's message decoder (`Request::decode`, `App::validate`) and its business
//! logic on whatever decodes: validator and decoder agree; a current-version payload that
//! decodes re-encodes to the same bytes (one encoding per message); applying any sequence
//! never panics, rejects what the validator refuses, keeps the state consistent, and is
//! deterministic (a replay gives the same outputs and state, a snapshot restores it).
//!
//! Shared by the fuzz target `bookstore_decoder` and `tests/fuzz_regressions.rs`, which replays
//! every input in `fuzz/regressions/bookstore_decoder/`.

use crate::apps;

use keel::codec;
use keel::{Command as _, Typed};
use keel_services::bookstore::messages::{Kind, Request};
use keel_services::bookstore::{Bookstore, BookstoreLimits, PlaceOrderV1};
use keel_services::App;

fn small() -> Typed<Bookstore> {
    Typed::new(Bookstore::new(BookstoreLimits {
        max_books: 16,
        max_orders: 512,
        max_customers: 32,
        max_orders_per_customer: 64,
        ..BookstoreLimits::default()
    }))
}

/// One fuzz input: see the module docs.
pub fn run(data: &[u8]) {
    let msgs = apps::messages(data);
    for m in &msgs {
        let decoded = Request::decode(m.kind, m.version, m.payload);
        let valid = Typed::<Bookstore>::validate(m.kind, m.version, m.payload);
        assert_eq!(
            decoded.is_ok(),
            valid.is_ok(),
            "validate and decode disagree"
        );
        if let Ok(request) = decoded {
            assert_eq!(reencode(&request, m.version), m.payload, "{request:?}");
        }
    }
    apps::check_determinism(small, &msgs, |store: &Typed<Bookstore>| {
        store.check_consistency().expect("consistent state");
    });
}

/// The payload bytes of `request` at `version` (the upcast of v1 orders is undone).
fn reencode(request: &Request, version: u16) -> Vec<u8> {
    let mut out = vec![0u8; 1 << 16];
    let n = match request {
        Request::PlaceOrder(o) if version == 1 => {
            assert_eq!(o.seen_price_cents, None);
            let v1 = PlaceOrderV1 {
                customer: o.customer,
                book: o.book,
                quantity: o.quantity,
            };
            codec::encode_into(&v1, &mut out)
        }
        Request::PlaceOrder(o) => {
            assert_eq!(version, Kind::PlaceOrder.current_version());
            assert!(o.seen_price_cents.is_some(), "v2 carries the price");
            request.encode_into(&mut out)
        }
        _ => request.encode_into(&mut out),
    };
    out.truncate(n.expect("encodes"));
    out
}
