//! Replays every input the fuzzers found a bug with through the same harness the fuzz target
//! runs (`fuzz/harness/<target>.rs`). Shared by the regression tests of each crate whose
//! harnesses live here; the including test sets `REPOSITORY_ROOT`, the path from its
//! crate's manifest directory to the repository root.

use super::REPOSITORY_ROOT;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use std::{fs, thread};

/// Longest one input may take (the fuzzer's own timeout is 10 s; these are tiny).
const TIMEOUT: Duration = Duration::from_secs(20);

/// The regression inputs of `target`, by name.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(REPOSITORY_ROOT)
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
pub fn replay(target: &str, harness: fn(&[u8])) -> usize {
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
