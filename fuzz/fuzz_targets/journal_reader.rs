//! The `journal_reader` fuzz target. Its harness (documented there) is
//! `fuzz/harness/journal_reader.rs`, shared with the regression test
//! `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../common/scratch.rs"]
mod scratch;
#[path = "../harness/journal_reader.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
