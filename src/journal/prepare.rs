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
//! Under `SegmentPrep::Adaptive` a spare is prepared only as far as its first steps (see
//! `lead`), and the preparer follows the active segment's writer: each time the writer has
//! written another [`NUDGE_BYTES`] it nudges the preparer, which measures its rate and prepares
//! the next steps, zeroed while the writer is slow and with huge pages while it is fast.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::config::SegmentPrep;
use super::io::{release_cached_pages, SegmentIo};
use super::lead::{LeadTarget, StepKind, HUGE_LEAD_BYTES, ZEROED_LEAD_BYTES};
use super::segment::{MappedSegment, SegmentSync};

/// A spare segment: allocated, durable, mapped and pre-faulted, header not yet written.
/// Under `Adaptive`, prepared only as far as its lead's first steps, and `lead` is what the
/// preparer needs to go on once it is the active segment.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) map: MappedSegment,
    pub(crate) path: PathBuf,
    pub(crate) lead: Option<LeadTarget>,
}

enum Job {
    Prepare,
    Retire {
        segment: MappedSegment,
        sync: bool,
    },
    Barrier(SyncSender<io::Result<()>>),
    /// The writer appends to this segment now: prepare ahead of it.
    Follow(LeadTarget),
    /// The writer moved on in the segment it appends to.
    Nudge,
    /// Pre-fault a segment from an offset to its end (a reopened segment's rest).
    PrefaultRest {
        map: SegmentSync,
        from: usize,
    },
}

/// How much the writer appends between two nudges of the preparer.
pub(crate) const NUDGE_BYTES: usize = 1 << 20;

/// From this rate on, the writer is fast: steps are prepared with huge pages. Below it
/// steps are zeroed, whose syncs write little but whose writeback costs more per byte.
const HUGE_PAGES_FROM_BYTES_PER_SEC: f64 = 200e6;
/// A writer whose steps are prepared with huge pages goes back to zeroed steps below this
/// rate (a gap against the other threshold, so the kind does not flap at the boundary).
const ZEROED_BELOW_BYTES_PER_SEC: f64 = 100e6;
/// The least time a rate is measured over.
const RATE_WINDOW: Duration = Duration::from_millis(20);

/// Handle to the preparer thread. At most one spare is requested or waiting at a time.
///
/// Nothing here allocates on the writer's thread after `start`: the spare is created on the
/// preparer thread and handed over through [`SpareSlot`], made at start; jobs go through a
/// bounded channel whose buffer is allocated at start and that never fills (at most a follow,
/// a retire, a prepare, a barrier and one nudge are queued: each rollover first takes the
/// spare prepared after the previous rollover's jobs), so a send never blocks.
#[derive(Debug)]
pub(crate) struct Preparer {
    jobs: Option<SyncSender<Job>>,
    spare_path: PathBuf,
    io: Arc<dyn SegmentIo>,
    spares: Arc<SpareSlot>,
    /// A nudge is queued and not yet taken up: at most one is, so jobs never fill the queue.
    nudged: Arc<AtomicBool>,
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
pub(crate) const HANDOVER_BYTES: usize = 16 << 20;

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
        let nudged = Arc::new(AtomicBool::new(false));
        let thread_nudged = Arc::clone(&nudged);
        let slot = CloseOnExit(Arc::clone(&spares));
        let thread = thread::Builder::new()
            .name("keel-journal-prep".into())
            .spawn(move || {
                let spec = SpareSpec {
                    path: &path,
                    len_bytes: segment_size_bytes,
                    prep,
                };
                run(&job_rx, &slot.0, &spec, &*thread_io, &thread_nudged);
            })?;
        let thread = Some(thread);
        Ok(Self {
            jobs: Some(jobs),
            spare_path,
            io,
            spares,
            nudged,
            requested: false,
            thread,
        })
    }

    /// Asks for the next spare, unless one is already requested or waiting.
    pub(crate) fn request(&mut self) {
        if !self.requested {
            self.requested = true;
            self.send(Job::Prepare);
        }
    }

    /// Hands the preparer the lead of the segment the writer appends to from now on.
    pub(crate) fn follow(&mut self, target: LeadTarget) {
        self.send(Job::Follow(target));
    }

    /// Pre-faults `map` from `from` to its end on the preparer thread, while the writer may
    /// already append to it (a write fault changes no byte).
    pub(crate) fn prefault_rest(&mut self, map: SegmentSync, from: usize) {
        self.send(Job::PrefaultRest { map, from });
    }

    /// Tells the preparer the writer moved on (it reads where from the segment's lead).
    /// Never blocks: a nudge already queued stands for this one.
    pub(crate) fn nudge(&self) {
        if self.nudged.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(jobs) = &self.jobs {
            if let Err(TrySendError::Full(_)) = jobs.try_send(Job::Nudge) {
                // Cannot happen (see the type's docs); the next nudge tries again.
                self.nudged.store(false, Ordering::Release);
            }
        }
    }

    /// Takes the spare, waiting for it if it is not ready (logged: rollover should not wait).
    pub(crate) fn take(&mut self) -> io::Result<Spare> {
        self.request();
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
    nudged: &AtomicBool,
) {
    let mut retire_error: Option<io::Error> = None;
    let mut follower = Follower::default();
    for job in jobs {
        match job {
            Job::Prepare => {
                let spare = prepare_spare(io, spec, follower.kind, HANDOVER_BYTES);
                // An `Adaptive` spare's rest is its lead's to prepare.
                let rest = match &spare {
                    Ok(s) if s.lead.is_none() => Some(s.map.sync_handle().clone()),
                    _ => None,
                };
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
            Job::Follow(target) => follower.follow(io, target),
            Job::Nudge => {
                nudged.store(false, Ordering::Release);
                follower.step(io);
            }
            Job::PrefaultRest { map, from } => map.prefault_rest(from),
        }
    }
}

/// The preparer's side of the active segment under `Adaptive`: its lead, and the writer's
/// rate, which decides how the next steps (and the next spare's first ones) are prepared.
#[derive(Debug, Default)]
struct Follower {
    current: Option<LeadTarget>,
    kind: StepKind,
    /// Where the writer was, and when, at the start of the rate's window.
    since: Option<(usize, Instant)>,
}

impl Follower {
    /// Follows `target` from now on, preparing ahead of its writer at once (a reopened
    /// segment comes with less than a step prepared).
    fn follow(&mut self, io: &dyn SegmentIo, target: LeadTarget) {
        self.since = Some((target.lead.writer_pos(), Instant::now()));
        self.current = Some(target);
        self.step(io);
    }

    /// Prepares ahead of where the writer says it is, as its rate calls for.
    fn step(&mut self, io: &dyn SegmentIo) {
        let Some(target) = self.current.as_mut() else {
            return;
        };
        let pos = target.lead.writer_pos();
        self.kind = next_kind(self.kind, &mut self.since, pos, Instant::now());
        target.release_behind(pos);
        if target.is_done() {
            return;
        }
        if target.was_overtaken() {
            // A writer that overtook its lead is a fast one.
            self.kind = StepKind::HugePages;
        }
        if target.writer_owns_rest() {
            target.fault_ahead(pos, HUGE_LEAD_BYTES);
            return;
        }
        let ahead_bytes = match self.kind {
            StepKind::Zeroed => ZEROED_LEAD_BYTES,
            StepKind::HugePages => HUGE_LEAD_BYTES,
        };
        if let Err(err) = target.prepare_ahead(io, pos, ahead_bytes, self.kind) {
            // The writer takes the unprepared rest itself: slower, never wrong.
            tracing::warn!("journal: could not prepare the active segment ahead: {err}");
        }
    }
}

/// The step kind after the writer was seen at `pos` at `now`: the rate over the window
/// since `since` (at least [`RATE_WINDOW`]; a shorter one keeps the kind and the window).
fn next_kind(
    kind: StepKind,
    since: &mut Option<(usize, Instant)>,
    pos: usize,
    now: Instant,
) -> StepKind {
    let Some((from, at)) = *since else {
        *since = Some((pos, now));
        return kind;
    };
    let elapsed = now.saturating_duration_since(at);
    if elapsed < RATE_WINDOW {
        return kind;
    }
    *since = Some((pos, now));
    let bytes_per_sec = pos.saturating_sub(from) as f64 / elapsed.as_secs_f64();
    match kind {
        StepKind::Zeroed if bytes_per_sec >= HUGE_PAGES_FROM_BYTES_PER_SEC => StepKind::HugePages,
        StepKind::HugePages if bytes_per_sec < ZEROED_BELOW_BYTES_PER_SEC => StepKind::Zeroed,
        _ => kind,
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

/// Creates, allocates, syncs, prepares (per `spec.prep`) and maps a spare segment,
/// pre-faulting its first `prefault_bytes` (`usize::MAX`: all of it). Under `Adaptive`, only
/// its first steps are prepared, as `kind`, and the spare comes with its lead.
pub(crate) fn prepare_spare(
    io: &dyn SegmentIo,
    spec: &SpareSpec<'_>,
    kind: StepKind,
    prefault_bytes: usize,
) -> io::Result<Spare> {
    match io.remove(spec.path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    debug_assert!(spec.prep != SegmentPrep::Auto, "resolved by the writer");
    let started = Instant::now();
    let file = io.create_allocated(spec.path, spec.len_bytes)?;
    if spec.prep == SegmentPrep::Zeroed {
        if let Err(err) = io.fill_zeros(&file, spec.len_bytes) {
            // Like a failed allocation: leave no half-prepared spare behind.
            let _ = io.remove(spec.path);
            return Err(err);
        }
    }
    let spare = match spec.prep {
        SegmentPrep::Adaptive => lead_spare(io, file, spec, kind),
        _ => {
            let huge_pages_from = (spec.prep == SegmentPrep::HugePages).then_some(0);
            MappedSegment::map(file, huge_pages_from, prefault_bytes).map(|map| Spare {
                map,
                path: spec.path.to_owned(),
                lead: None,
            })
        }
    };
    let spare = spare.inspect_err(|_| {
        let _ = io.remove(spec.path);
    })?;
    io.segment_prepared(started.elapsed());
    tracing::debug!(
        elapsed = ?started.elapsed(), len_bytes = spec.len_bytes, prep = %spec.prep,
        ?kind, "journal spare segment prepared"
    );
    Ok(spare)
}

/// An `Adaptive` spare. Zeroed: mapped, its first steps zeroed, the rest left to its lead.
/// Huge pages: mapped whole with huge pages, its first [`HANDOVER_BYTES`] pre-faulted here, the
/// writer owning all of it; once it is the active segment its lead pre-faults the rest in
/// windows ahead of the writer and lets go of the pages behind it, so the memory it faults in
/// is mostly memory just freed, which is fast to fault in again (module docs).
fn lead_spare(
    io: &dyn SegmentIo,
    file: std::fs::File,
    spec: &SpareSpec<'_>,
    kind: StepKind,
) -> io::Result<Spare> {
    let (huge_pages_from, prefault_bytes) = match kind {
        StepKind::Zeroed => (None, 0),
        StepKind::HugePages => (Some(0), HANDOVER_BYTES),
    };
    let map = MappedSegment::map(file, huge_pages_from, prefault_bytes)?;
    let lead = match kind {
        StepKind::Zeroed => {
            let mut lead = LeadTarget::open(spec.path, map.sync_handle().clone(), 0)?;
            lead.prepare_ahead(io, 0, ZEROED_LEAD_BYTES, kind)?;
            lead
        }
        StepKind::HugePages => {
            LeadTarget::open_faulted(spec.path, map.sync_handle().clone(), HANDOVER_BYTES)?
        }
    };
    Ok(Spare {
        map,
        path: spec.path.to_owned(),
        lead: Some(lead),
    })
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

    fn prepare_zeroed(io: &FaultyIo, path: &Path) -> io::Result<Spare> {
        let spec = spec(path, SegmentPrep::Zeroed);
        prepare_spare(io, &spec, StepKind::Zeroed, usize::MAX)
    }

    #[test]
    fn a_zeroed_spare_is_written_and_synced_before_it_is_mapped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("next.seg.tmp");
        let io = FaultyIo::default();
        let spare = prepare_zeroed(&io, &path).unwrap();
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
            StepKind::Zeroed,
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
    fn an_adaptive_spare_is_prepared_only_as_far_as_its_lead() {
        let tmp = tempfile::tempdir().unwrap();
        let io = FaultyIo::default();
        let len_bytes = 32u64 << 20;
        let path = tmp.path().join("lead.seg.tmp");
        let spec = SpareSpec {
            path: &path,
            len_bytes,
            prep: SegmentPrep::Adaptive,
        };
        let spare = prepare_spare(&io, &spec, StepKind::Zeroed, usize::MAX).unwrap();
        let lead = spare.lead.as_ref().expect("a lead");
        assert_eq!(
            lead.lead.ready_to(),
            ZEROED_LEAD_BYTES,
            "its first steps only"
        );
        assert_eq!(spare.map.len() as u64, len_bytes);
        let huge = tmp.path().join("huge.seg.tmp");
        let spec = SpareSpec {
            path: &huge,
            ..spec
        };
        let spare = prepare_spare(&io, &spec, StepKind::HugePages, usize::MAX).unwrap();
        let lead = spare.lead.as_ref().expect("a lead");
        assert_eq!(lead.lead.ready_to(), len_bytes as usize, "all the writer's");
        assert!(
            !lead.is_done(),
            "the rest is pre-faulted ahead of the writer"
        );
        drop(spare);
        let bytes = std::fs::read(&huge).unwrap();
        assert_eq!(bytes.len() as u64, len_bytes);
        assert!(
            bytes.iter().all(|&b| b == 0),
            "allocated blocks read as zeros"
        );
    }

    #[test]
    fn the_rate_decides_the_step_kind_with_a_gap_between_the_thresholds() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut since = None;
        let kind = next_kind(StepKind::Zeroed, &mut since, 0, t0);
        assert_eq!(kind, StepKind::Zeroed, "no rate yet");
        // 1 MB in 5 ms: too short a window to judge.
        assert_eq!(
            next_kind(kind, &mut since, 1_000_000, ms(5)),
            StepKind::Zeroed
        );
        // 10 MB in 25 ms: 400 MB/s.
        let kind = next_kind(kind, &mut since, 10_000_000, ms(25));
        assert_eq!(kind, StepKind::HugePages);
        // 3 MB in the next 20 ms: 150 MB/s, between the thresholds: stays.
        let kind = next_kind(kind, &mut since, 13_000_000, ms(45));
        assert_eq!(kind, StepKind::HugePages);
        // 1 MB in 20 ms: 50 MB/s.
        let kind = next_kind(kind, &mut since, 14_000_000, ms(65));
        assert_eq!(kind, StepKind::Zeroed);
    }

    #[test]
    fn a_failed_zero_fill_leaves_no_spare_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("next.seg.tmp");
        let io = FaultyIo::default();
        io.fail_file_syncs.store(true, Ordering::Relaxed);
        let err = prepare_zeroed(&io, &path).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(!path.exists());
    }

    #[test]
    fn a_failed_zero_write_in_an_adaptive_spares_first_steps_leaves_no_spare_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("next.seg.tmp");
        let io = FaultyIo::default();
        io.fail_zero_writes.store(true, Ordering::Relaxed);
        let spec = spec(&path, SegmentPrep::Adaptive);
        let err = prepare_spare(&io, &spec, StepKind::Zeroed, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(
            io.zero_writes.load(Ordering::Relaxed) > 0,
            "through the seam"
        );
        assert!(!path.exists());
    }
}
