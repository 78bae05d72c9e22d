//! The `exchange_decoder` fuzz target. Its harness (documented there) is
//! `fuzz/harness/exchange_decoder.rs`, shared with the regression test
//! `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../common/apps.rs"]
mod apps;
#[path = "../harness/exchange_decoder.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
