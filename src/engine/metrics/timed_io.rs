//! The journal's I/O seam with a stopwatch: times each sync of appended records and each
//! segment preparation into the engine's metrics, and otherwise passes every call through.

use super::JournalCounters;
use crate::journal::{SegmentIo, SegmentSync};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `inner`, timed into `counters` (two clock reads per sync: a sync takes microseconds at
/// least).
#[derive(Debug)]
pub(crate) struct TimedIo {
    inner: Arc<dyn SegmentIo>,
    counters: Arc<super::Recorders>,
}

impl TimedIo {
    pub(crate) fn new(inner: Arc<dyn SegmentIo>, counters: Arc<super::Recorders>) -> Self {
        TimedIo { inner, counters }
    }

    fn journal(&self) -> &JournalCounters {
        &self.counters.journal
    }
}

impl SegmentIo for TimedIo {
    fn create_allocated(&self, path: &Path, len_bytes: u64) -> io::Result<File> {
        self.inner.create_allocated(path, len_bytes)
    }

    fn sync_range(&self, segment: &SegmentSync, offset: usize, len: usize) -> io::Result<()> {
        let started = Instant::now();
        let result = self.inner.sync_range(segment, offset, len);
        let ns = started.elapsed().as_nanos() as u64;
        self.journal().sync_ns.record(ns);
        result
    }

    fn sync_file(&self, file: &File) -> io::Result<()> {
        self.inner.sync_file(file)
    }

    fn fill_zeros(&self, file: &File, len_bytes: u64) -> io::Result<()> {
        self.inner.fill_zeros(file, len_bytes)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn segment_prepared(&self, elapsed: Duration) {
        self.inner.segment_prepared(elapsed);
        let ns = elapsed.as_nanos() as u64;
        self.journal().segment_prep_ns.record(ns);
    }
}
