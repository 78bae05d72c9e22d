//! The `snapshot_reader` fuzz target. Its harness (documented there) is
//! `fuzz/harness/snapshot_reader.rs`, shared with the regression test
//! `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../common/scratch.rs"]
mod scratch;
#[path = "../harness/snapshot_reader.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
