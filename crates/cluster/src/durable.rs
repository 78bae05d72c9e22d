//! Small files replaced so that a crash leaves either the old content or the new, never a
//! mix (the election's files, the `terms` file, the snapshot install's intent), and the
//! directory syncs that make creates and renames durable.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Makes the creates, renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes`: written to `tmp` (in the same directory), fsynced, renamed
/// over `path`, then the directory fsynced. Durable when this returns.
pub(crate) fn replace_file(path: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}
