//! The background thread that keeps rollover off the slow paths: it prepares the spare segment
//! (create, `fallocate`, `fsync`, zero fill or huge pages if asked, map, pre-fault) ahead of
//! need, and retires full segments (`fdatasync` when the policy did not, then unmap:
//! unmapping a large mapping takes ms).
//!
//! A retired segment's pages are then dropped from the page cache. Nothing re-reads them on
//! the hot path (replay and lagging readers read them back from disk), and the freed memory
//! is what the next spare is pre-faulted with. Memory that has sat free is slow to fault in
//! again on a VM whose guest returns free pages to the host (virtio-balloon free page
//! reporting): pre-faulting a 256 MiB spare took ~550 ms from such memory and ~80 ms from
//! memory just released, and on two cores the slow pre-fault also halved group-commit speed.
//! A spare is therefore handed over once its first [`HANDOVER_BYTES`] are pre-faulted, and
//! the rest is pre-faulted after, while the writer may already append to it.
//!
//! Under `SegmentPrep::Adaptive` the writer tells the preparer to hurry
//! ([`Preparer::hurry`]) when, at its rate so far, it will need the spare soon: the zero fill
//! then stops, and the rest of the spare gets huge pages.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use super::config::SegmentPrep;
use super::io::{
    release_cached_pages, write_back, write_zeros, SegmentIo, ZERO_FILL_CHUNK_BYTES,
    ZERO_FILL_WRITE_BACK_BYTES,
};
use super::segment::MappedSegment;

/// A spare segment: allocated, durable, mapped and pre-faulted, header not yet written.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) map: MappedSegment,
    pub(crate) path: PathBuf,
}

enum Job {
    /// Prepare a spare; `yielding`: an `Adaptive` zero fill stops when the writer asks the
    /// preparer to hurry (otherwise it zeroes the whole spare).
    Prepare {
        yielding: bool,
    },
    Retire {
        segment: MappedSegment,
        sync: bool,
    },
    Barrier(SyncSender<io::Result<()>>),
}

/// Handle to the preparer thread. At most one spare is requested or waiting at a time.
///
/// Nothing here allocates on the writer's thread after `start`: the spare is created on the
/// preparer thread and handed over through [`SpareSlot`], made at start; jobs go through a
/// bounded channel whose buffer is allocated at start and that never fills (at most a retire,
/// a prepare and a barrier are queued: each rollover first takes the spare prepared after the
/// previous rollover's jobs), so a send never blocks.
#[derive(Debug)]
pub(crate) struct Preparer {
    jobs: Option<SyncSender<Job>>,
    spare_path: PathBuf,
    io: Arc<dyn SegmentIo>,
    spares: Arc<SpareSlot>,
    /// Set by the writer when it needs the requested spare soon: a paced zero fill stops.
    hurry: Arc<AtomicBool>,
    requested: bool,
    thread: Option<JoinHandle<()>>,
}

/// Where the preparer thread leaves a spare (or why it has none) for the writer: one slot,
/// a mutex and a condition variable, so the handover allocates nothing, waiting included.
#[derive(Debug, Default)]
pub(crate) struct SpareSlot {
    state: Mutex<SlotState>,
    filled: Condvar,
}

#[derive(Debug, Default)]
struct SlotState {
    spare: Option<io::Result<Spare>>,
    /// The preparer thread has exited: no spare will come.
    closed: bool,
}

impl SpareSlot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding the lock leaves the state consistent (one assignment).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves a spare (the slot is empty: at most one is requested at a time).
    fn put(&self, spare: io::Result<Spare>) {
        let mut state = self.lock();
        debug_assert!(state.spare.is_none(), "one spare at a time");
        state.spare = Some(spare);
        drop(state);
        self.filled.notify_one();
    }

    /// Marks the thread gone (it will put nothing more) and wakes a waiting writer.
    fn close(&self) {
        self.lock().closed = true;
        self.filled.notify_one();
    }

    /// The spare if it is there, without waiting.
    fn try_take(&self) -> Option<io::Result<Spare>> {
        self.lock().spare.take()
    }

    /// Waits for the spare; an error if the thread is gone without leaving one.
    fn take(&self) -> io::Result<Spare> {
        let mut state = self.lock();
        loop {
            if let Some(spare) = state.spare.take() {
                return spare;
            }
            if state.closed {
                return Err(thread_gone());
            }
            state = self.filled.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Closes the slot when the preparer thread ends, however it ends (a panic included).
struct CloseOnExit(Arc<SpareSlot>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// How much of a spare is pre-faulted before it is handed over; the preparer pre-faults the
/// rest after (the writer may be appending meanwhile). A writer at the disk's limit then never
/// waits at its rollover for a whole pre-fault, which took 0.9-2.9 s for 256 MiB of huge pages
/// when they came from memory that had sat free (see the module docs).
const HANDOVER_BYTES: usize = 16 << 20;

/// Jobs that can queue up before `send` blocks (rollovers are far rarer than this drains).
const JOB_QUEUE_LEN: usize = 16;

impl Preparer {
    /// Starts the thread. Spares are created at `spare_path` with `segment_size_bytes` bytes,
    /// prepared per `prep`.
    pub(crate) fn start(
        spare_path: PathBuf,
        segment_size_bytes: u64,
        prep: SegmentPrep,
        io: Arc<dyn SegmentIo>,
    ) -> io::Result<Self> {
        let (jobs, job_rx) = mpsc::sync_channel(JOB_QUEUE_LEN);
        let spares = Arc::new(SpareSlot::default());
        let (path, thread_io) = (spare_path.clone(), Arc::clone(&io));
        let hurry = Arc::new(AtomicBool::new(false));
        let thread_hurry = Arc::clone(&hurry);
        let slot = CloseOnExit(Arc::clone(&spares));
        let thread = thread::Builder::new()
            .name("keel-journal-prep".into())
            .spawn(move || {
                let spec = SpareSpec {
                    path: &path,
                    len_bytes: segment_size_bytes,
                    prep,
                };
                run(&job_rx, &slot.0, &spec, &*thread_io, &thread_hurry);
            })?;
        let thread = Some(thread);
        Ok(Self {
            jobs: Some(jobs),
            spare_path,
            io,
            spares,
            hurry,
            requested: false,
            thread,
        })
    }

    /// Asks for the next spare, unless one is already requested or waiting. `yielding`: its
    /// preparation heeds [`Preparer::hurry`]; if not, the spare is wholly prepared.
    pub(crate) fn request(&mut self, yielding: bool) {
        if !self.requested {
            self.requested = true;
            // Cleared before the job is sent: a later `hurry` concerns this spare.
            self.hurry.store(false, Ordering::Release);
            self.send(Job::Prepare { yielding });
        }
    }

    /// Tells the preparer the requested spare is needed soon: an `Adaptive` zero fill stops
    /// where it is, and the rest of the spare is mapped with huge pages.
    pub(crate) fn hurry(&self) {
        self.hurry.store(true, Ordering::Release);
    }

    /// Takes the spare, waiting for it if it is not ready (logged: rollover should not wait).
    pub(crate) fn take(&mut self) -> io::Result<Spare> {
        self.request(true);
        self.hurry();
        let spare = match self.spares.try_take() {
            Some(spare) => spare,
            None => {
                tracing::warn!("journal rollover waits for the spare segment to be prepared");
                self.spares.take()
            }
        };
        self.requested = false;
        spare
    }

    /// Hands a full segment over to be synced (if `sync`) and unmapped off the caller's thread.
    pub(crate) fn retire(&mut self, segment: MappedSegment, sync: bool) {
        self.send(Job::Retire { segment, sync });
    }

    /// Waits until every job sent so far is done; returns the first retire-sync error since the
    /// last barrier.
    pub(crate) fn barrier(&mut self) -> io::Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Barrier(tx));
        rx.recv().map_err(|_| thread_gone())?
    }

    fn send(&mut self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // The thread only exits when `jobs` is dropped; a failed send means it panicked,
            // which `take`/`barrier` then report as an error.
            let _ = jobs.send(job);
        }
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // An unused spare is only allocated space: leave the directory with segments alone.
        drop(self.spares.try_take());
        if let Err(err) = self.io.remove(&self.spare_path) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!("journal: could not remove the spare segment: {err}");
            }
        }
    }
}

fn thread_gone() -> io::Error {
    io::Error::other("journal preparer thread exited")
}

/// What a spare segment is: where, how large, how its blocks are prepared.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpareSpec<'a> {
    pub(crate) path: &'a Path,
    pub(crate) len_bytes: u64,
    pub(crate) prep: SegmentPrep,
}

fn run(
    jobs: &Receiver<Job>,
    spares: &SpareSlot,
    spec: &SpareSpec<'_>,
    io: &dyn SegmentIo,
    hurry: &AtomicBool,
) {
    let mut retire_error: Option<io::Error> = None;
    for job in jobs {
        match job {
            Job::Prepare { yielding } => {
                let spare = prepare_spare(io, spec, yielding.then_some(hurry), HANDOVER_BYTES);
                let rest = spare.as_ref().ok().map(|s| s.map.sync_handle().clone());
                spares.put(spare);
                // Before any later job: a retire then finds the segment no longer mapped here.
                if let Some(rest) = rest {
                    rest.prefault_rest(HANDOVER_BYTES);
                }
            }
            Job::Retire { segment, sync } => {
                if let Err(err) = retire(io, segment, sync) {
                    tracing::error!("journal: fdatasync of a retired segment failed: {err}");
                    retire_error.get_or_insert(err);
                }
            }
            Job::Barrier(reply) => {
                let _ = reply.send(retire_error.take().map_or(Ok(()), Err));
            }
        }
    }
}

/// Unmaps a full segment, makes it durable if `sync`, then drops its pages from the cache.
fn retire(io: &dyn SegmentIo, segment: MappedSegment, sync: bool) -> io::Result<()> {
    // Unmap first: writeback of a file nobody maps needs no page-table changes, so no
    // TLB-shootdown interrupts hit the writer's core.
    let file = segment.into_file();
    if sync {
        io.sync_file(&file)?;
    }
    // Only clean pages are dropped; a tailing reader's mapping keeps the pages it maps.
    if let Err(err) = release_cached_pages(&file) {
        tracing::debug!("journal: could not drop a retired segment's cached pages: {err}");
    }
    Ok(())
}

/// Creates, allocates, syncs, prepares (per `spec.prep`) and maps (pre-faulted) a spare segment.
/// With `hurry`, an `Adaptive` zero fill stops once `hurry` is set; without, it zeroes the
/// whole spare.
/// Pre-faults its first `prefault_bytes` (`usize::MAX`: all of it).
pub(crate) fn prepare_spare(
    io: &dyn SegmentIo,
    spec: &SpareSpec<'_>,
    hurry: Option<&AtomicBool>,
    prefault_bytes: usize,
) -> io::Result<Spare> {
    match io.remove(spec.path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    debug_assert!(spec.prep != SegmentPrep::Auto, "resolved by the writer");
    let started = Instant::now();
    let file = io.create_allocated(spec.path, spec.len_bytes)?;
    let zeroed = match spec.prep {
        SegmentPrep::Zeroed => io
            .fill_zeros(&file, spec.len_bytes)
            .map(|()| spec.len_bytes),
        SegmentPrep::Adaptive => fill_zeros_until(io, &file, spec.len_bytes, hurry),
        SegmentPrep::Auto | SegmentPrep::Allocated | SegmentPrep::HugePages => Ok(0),
    };
    let zeroed_bytes = match zeroed {
        Ok(bytes) => bytes,
        Err(err) => {
            // Like a failed allocation: leave no half-prepared spare behind.
            let _ = io.remove(spec.path);
            return Err(err);
        }
    };
    let huge_pages_from = match spec.prep {
        SegmentPrep::HugePages => Some(0),
        SegmentPrep::Adaptive if zeroed_bytes < spec.len_bytes => Some(zeroed_bytes as usize),
        _ => None,
    };
    let map = MappedSegment::map(file, huge_pages_from, prefault_bytes)?;
    io.segment_prepared(started.elapsed());
    tracing::debug!(
        elapsed = ?started.elapsed(), len_bytes = spec.len_bytes, prep = %spec.prep,
        zeroed_bytes, "journal spare segment prepared"
    );
    Ok(Spare {
        map,
        path: spec.path.to_owned(),
    })
}

/// The `Adaptive` zero fill: zeros written from the start of `file` as `SegmentIo::fill_zeros`
/// writes them (16 KiB writes, each 1 MiB written back before the next), stopping before the
/// next 1 MiB once `hurry` is set; then synced. Returns how many bytes from the start are
/// zeroed.
fn fill_zeros_until(
    io: &dyn SegmentIo,
    file: &std::fs::File,
    len_bytes: u64,
    hurry: Option<&AtomicBool>,
) -> io::Result<u64> {
    let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES];
    let mut offset = 0;
    while offset < len_bytes && !hurry.is_some_and(|h| h.load(Ordering::Acquire)) {
        let end = len_bytes.min(offset + ZERO_FILL_WRITE_BACK_BYTES);
        write_zeros(file, offset..end, &zeros)?;
        write_back(file, offset..end)?;
        offset = end;
    }
    if offset > 0 {
        // Makes the zeros, and the zeroed blocks' conversion to written extents, durable.
        io.sync_file(file)?;
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::io::FaultyIo;
    use std::sync::atomic::Ordering;

    const LEN_BYTES: u64 = 256 << 10;

    fn spec(path: &Path, prep: SegmentPrep) -> SpareSpec<'_> {
        SpareSpec {
            path,
            len_bytes: LEN_BYTES,
            prep,
        }
    }

    #[test]
    fn a_zeroed_spare_is_written_and_synced_before_it_is_mapped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("next.seg.tmp");
        let io = FaultyIo::default();
        let spare =
            prepare_spare(&io, &spec(&path, SegmentPrep::Zeroed), None, usize::MAX).unwrap();
        assert_eq!(
            io.file_syncs.load(Ordering::Relaxed),
            1,
            "one fdatasync of the zeros"
        );
        assert_eq!(spare.map.len() as u64, LEN_BYTES);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, LEN_BYTES);
        assert!(bytes.iter().all(|&b| b == 0));
        drop(spare);
        let allocated = tmp.path().join("other.seg.tmp");
        prepare_spare(
            &io,
            &spec(&allocated, SegmentPrep::Allocated),
            None,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(
            io.file_syncs.load(Ordering::Relaxed),
            1,
            "no fill, no data sync"
        );
    }

    #[test]
    fn an_adaptive_spare_is_zeroed_unless_the_writer_hurries() {
        let tmp = tempfile::tempdir().unwrap();
        let io = FaultyIo::default();
        let whole = tmp.path().join("whole.seg.tmp");
        let spare =
            prepare_spare(&io, &spec(&whole, SegmentPrep::Adaptive), None, usize::MAX).unwrap();
        assert_eq!(
            io.file_syncs.load(Ordering::Relaxed),
            1,
            "zeroed and synced"
        );
        assert_eq!(spare.map.len() as u64, LEN_BYTES);
        let hurried = tmp.path().join("hurried.seg.tmp");
        let hurry = AtomicBool::new(true);
        let spec = spec(&hurried, SegmentPrep::Adaptive);
        let spare = prepare_spare(&io, &spec, Some(&hurry), usize::MAX).unwrap();
        assert_eq!(io.file_syncs.load(Ordering::Relaxed), 1, "nothing zeroed");
        assert_eq!(spare.map.len() as u64, LEN_BYTES);
        drop(spare);
        let bytes = std::fs::read(&hurried).unwrap();
        assert_eq!(bytes.len() as u64, LEN_BYTES);
        assert!(
            bytes.iter().all(|&b| b == 0),
            "allocated blocks read as zeros"
        );
    }

    #[test]
    fn a_failed_zero_fill_leaves_no_spare_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("next.seg.tmp");
        let io = FaultyIo::default();
        io.fail_file_syncs.store(true, Ordering::Relaxed);
        let err =
            prepare_spare(&io, &spec(&path, SegmentPrep::Zeroed), None, usize::MAX).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(!path.exists());
    }
}
