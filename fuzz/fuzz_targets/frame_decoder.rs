//! The `frame_decoder` fuzz target. Its harness (documented there) is
//! `fuzz/harness/frame_decoder.rs`, shared with the regression test
//! `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../harness/frame_decoder.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
