//! Every input the fuzzers found a bug with in the services' decoders and snapshot reader,
//! replayed through the fuzz targets' own harnesses (`fuzz/harness/<target>.rs`); see the
//! repository's `tests/fuzz_regressions.rs` for how findings are kept.

#[path = "../../../fuzz/common/apps.rs"]
mod apps;
#[path = "../../../fuzz/common/regressions.rs"]
mod regressions;
#[path = "../../../fuzz/common/scratch.rs"]
mod scratch;
#[path = "../../../fuzz/harness/bookstore_decoder.rs"]
mod bookstore_decoder;
#[path = "../../../fuzz/harness/exchange_decoder.rs"]
mod exchange_decoder;
#[path = "../../../fuzz/harness/snapshot_reader.rs"]
mod snapshot_reader;

use regressions::replay;
use std::fs;

/// From this crate's manifest directory to the repository root.
const REPOSITORY_ROOT: &str = "../..";

#[test]
fn snapshot_reader_regressions_pass() {
    let n = replay("snapshot_reader", snapshot_reader::run);
    let _ = fs::remove_dir_all(snapshot_reader::dir());
    assert!(n >= 3, "the known findings are kept");
}

#[test]
fn bookstore_decoder_regressions_pass() {
    replay("bookstore_decoder", bookstore_decoder::run);
}

#[test]
fn exchange_decoder_regressions_pass() {
    replay("exchange_decoder", exchange_decoder::run);
}
