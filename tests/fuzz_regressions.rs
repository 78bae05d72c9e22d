//! Every input the fuzzers found a bug with, replayed through the same harness the fuzz
//! target runs (`fuzz/harness/<target>.rs`): each file in `fuzz/regressions/<target>/` must
//! now pass, within a few seconds (some were hangs). To keep a new finding, copy it from
//! `fuzz/artifacts/<target>/` into `fuzz/regressions/<target>/` under a name that says what
//! it found, and fix the bug.

#[path = "../fuzz/common/apps.rs"]
mod apps;
#[path = "../fuzz/common/scratch.rs"]
mod scratch;
#[path = "../fuzz/harness/bookstore_decoder.rs"]
mod bookstore_decoder;
#[path = "../fuzz/harness/exchange_decoder.rs"]
mod exchange_decoder;
#[path = "../fuzz/harness/frame_decoder.rs"]
mod frame_decoder;
#[path = "../fuzz/harness/journal_reader.rs"]
mod journal_reader;
#[path = "../fuzz/harness/snapshot_reader.rs"]
mod snapshot_reader;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use std::{fs, thread};

/// Longest one input may take (the fuzzer's own timeout is 10 s; these are tiny).
const TIMEOUT: Duration = Duration::from_secs(20);

/// The regression inputs of `target`, by name.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs `harness` on each input of `target` in turn, each on its own thread with a timeout.
/// Returns how many ran.
fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let files = inputs(target);
    for path in &files {
        let data = fs::read(path).unwrap();
        let (tx, rx) = mpsc::channel();
        let worker = thread::spawn(move || {
            harness(&data);
            let _ = tx.send(());
        });
        let name = path.file_name().unwrap().to_string_lossy();
        match rx.recv_timeout(TIMEOUT) {
            Ok(()) => worker.join().unwrap(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let panic = worker.join().expect_err("the worker ended without sending");
                std::panic::resume_unwind(panic)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{target}/{name}: still running"),
        }
    }
    files.len()
}

#[test]
fn snapshot_reader_regressions_pass() {
    let n = replay("snapshot_reader", snapshot_reader::run);
    let _ = fs::remove_dir_all(snapshot_reader::dir());
    assert!(n >= 3, "the known findings are kept");
}

#[test]
fn journal_reader_regressions_pass() {
    let n = replay("journal_reader", journal_reader::run);
    let _ = fs::remove_dir_all(journal_reader::dir());
    assert!(n >= 2, "the known findings are kept");
}

#[test]
fn frame_decoder_regressions_pass() {
    replay("frame_decoder", frame_decoder::run);
}

#[test]
fn bookstore_decoder_regressions_pass() {
    replay("bookstore_decoder", bookstore_decoder::run);
}

#[test]
fn exchange_decoder_regressions_pass() {
    replay("exchange_decoder", exchange_decoder::run);
}
