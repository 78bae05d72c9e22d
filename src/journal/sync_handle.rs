//! Making the journal durable from another thread, whatever the flush policy: the snapshot
//! writer does this before it publishes a snapshot, so no snapshot is ever durable ahead of the
//! journal it is bound to (`docs/fault_model.md`).
//!
//! Records are stores into shared mappings of the segment files, i.e. into the page cache, so
//! an `fdatasync` of a segment file from any descriptor makes them durable (on Linux `msync` is
//! that same call on the mapping's file). Every sync goes through the writer's [`SegmentIo`]
//! seam, so crash tests model it like the writer's own syncs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::dir::list_segments;
use super::error::{file_io, JournalError};
use super::io::SegmentIo;

/// A handle that makes a journal's records durable up to a sequence (see the module docs).
/// Cheap to clone; obtained from [`crate::journal::JournalWriter::sync_handle`].
#[derive(Debug, Clone)]
pub struct JournalSyncHandle {
    dir: PathBuf,
    io: Arc<dyn SegmentIo>,
    /// Everything up to this sequence was made durable by this handle (or was before it).
    synced_through: Arc<Mutex<u64>>,
}

impl JournalSyncHandle {
    pub(crate) fn new(dir: &Path, io: Arc<dyn SegmentIo>, durable_through: u64) -> Self {
        JournalSyncHandle {
            dir: dir.to_owned(),
            io,
            synced_through: Arc::new(Mutex::new(durable_through)),
        }
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes every record up to `sequence` durable: `fdatasync`s each segment file that may
    /// hold records after the last sequence this handle synced and up to `sequence`, then the
    /// directory (segment names). The caller must know the records were appended (the
    /// journaler's sequence has passed `sequence`); records appended later may be synced too.
    pub fn sync_through(&self, sequence: u64) -> Result<(), JournalError> {
        let mut synced_through = self
            .synced_through
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *synced_through >= sequence {
            return Ok(());
        }
        let segments = list_segments(&self.dir)?;
        for (i, seg) in segments.iter().enumerate() {
            let ends_before = segments
                .get(i + 1)
                .is_some_and(|next| next.first_sequence <= *synced_through + 1);
            if seg.first_sequence > sequence || ends_before {
                continue;
            }
            let file = File::open(&seg.path).map_err(file_io(&seg.path))?;
            self.io.sync_file(&file).map_err(file_io(&seg.path))?;
        }
        self.io.sync_dir(&self.dir).map_err(file_io(&self.dir))?;
        *synced_through = sequence;
        Ok(())
    }
}
