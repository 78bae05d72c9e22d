//! The exchange's message decoder (`Request::decode`, `App::validate`) and its matching
//! engine on whatever decodes: validator and decoder agree; a current-version payload that
//! decodes re-encodes to the same bytes; applying any sequence never panics, rejects what the
//! validator refuses, keeps every book and account invariant, and is deterministic.
//!
//! Shared by the fuzz target `exchange_decoder` and `tests/fuzz_regressions.rs`, which replays
//! every input in `fuzz/regressions/exchange_decoder/`.

use crate::apps;

use keel::Typed;
use keel_services::exchange::{current_version, Exchange, ExchangeLimits, Request};
use keel_services::App;

fn small() -> Typed<Exchange> {
    Typed::new(Exchange::with_limits(ExchangeLimits {
        max_instruments: 8,
        max_accounts: 32,
        max_open_orders: 256,
        max_price_levels: 64,
        ..ExchangeLimits::default()
    }))
}

/// One fuzz input: see the module docs.
pub fn run(data: &[u8]) {
    let msgs = apps::messages(data);
    for m in &msgs {
        let decoded = Request::decode(m.kind, m.version, m.payload);
        let valid = Typed::<Exchange>::validate(m.kind, m.version, m.payload);
        assert_eq!(
            decoded.is_ok(),
            valid.is_ok(),
            "validate and decode disagree"
        );
        if let Ok(request) = decoded {
            if current_version(m.kind) == Some(m.version) {
                let command = request.to_command();
                assert_eq!((command.kind, command.version), (m.kind, m.version));
                assert_eq!(command.payload, m.payload, "{request:?}");
            }
        }
    }
    apps::check_determinism(small, &msgs, |x: &Typed<Exchange>| {
        x.service().check_invariants().expect("invariants hold");
    });
}
