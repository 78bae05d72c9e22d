//! The `exchange_decoder` fuzz target: the harness is `fuzz/harness/exchange_decoder.rs` (documented there),
//! shared with the regression test `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../harness/exchange_decoder.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
