//! Every input the fuzzers found a bug with, replayed through the same harness the fuzz
//! target runs (`fuzz/harness/<target>.rs`): each file in `fuzz/regressions/<target>/` must
//! now pass, within a few seconds (some were hangs). To keep a new finding, copy it from
//! `fuzz/artifacts/<target>/` into `fuzz/regressions/<target>/` under a name that says what
//! it found, and fix the bug. The services' harnesses run in `crates/services/tests/`.

#[path = "../fuzz/common/regressions.rs"]
mod regressions;
#[path = "../fuzz/common/scratch.rs"]
mod scratch;
#[cfg(feature = "net")]
#[path = "../fuzz/harness/frame_decoder.rs"]
mod frame_decoder;
#[path = "../fuzz/harness/journal_reader.rs"]
mod journal_reader;

use regressions::replay;
use std::fs;

/// From this crate's manifest directory to the repository root.
const REPOSITORY_ROOT: &str = ".";

#[test]
fn journal_reader_regressions_pass() {
    let n = replay("journal_reader", journal_reader::run);
    let _ = fs::remove_dir_all(journal_reader::dir());
    assert!(n >= 2, "the known findings are kept");
}

#[cfg(feature = "net")]
#[test]
fn frame_decoder_regressions_pass() {
    replay("frame_decoder", frame_decoder::run);
}
