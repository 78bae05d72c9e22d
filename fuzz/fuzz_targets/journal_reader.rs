//! The `journal_reader` fuzz target: the harness is `fuzz/harness/journal_reader.rs` (documented there),
//! shared with the regression test `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../harness/journal_reader.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
