//! The scratch directory a file-based harness writes its inputs into, shared by the fuzz
//! targets and `tests/fuzz_regressions.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `keel-fuzz-<name>-<pid>` under `/dev/shm` when there is one (else `/tmp`), created on first
/// use and kept in `cell` for the life of the process.
pub fn dir(cell: &'static OnceLock<PathBuf>, name: &str) -> &'static Path {
    cell.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir = PathBuf::from(base).join(format!("keel-fuzz-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    })
}
