//! The lead: under `SegmentPrep::Adaptive` the preparer thread prepares the active segment a
//! few MiB ahead of its writer, in steps of [`STEP_BYTES`], each in the way the writer's rate
//! calls for:
//! - **zeroed** while the writer is slow: zeros written through the page cache in 16 KiB
//!   writes (small folios, so a group commit writes little more than its records), written
//!   back and synced, so the file system holds written blocks there and a commit is a pure
//!   data overwrite;
//! - **huge pages** while it is fast: the step is mapped with transparent huge pages and
//!   pre-faulted (2 MiB folios: the least writeback work per byte when every sync is large).
//!
//! A slow writer's segment is prepared only as far as its first steps before the writer gets
//! it, so no zero fill ever writes a whole segment ahead of need, and the way each part is
//! prepared follows the load of the moment rather than the load when the segment was made. (A
//! fast writer's spare is handed over whole instead, mapped with huge pages, by `prepare`.)
//!
//! # The page cache as a ring
//! In a segment the writer owns whole (it took the rest, or was handed it so), the preparer
//! pre-faults huge pages in windows ahead of the writer ([`LeadTarget::fault_ahead`]); in every
//! segment it follows, it lets go of the pages far behind the writer
//! ([`LeadTarget::release_behind`]). The memory faulted in ahead is then mostly memory freed
//! moments before, which on a VM is many times cheaper to fault in than memory that has sat
//! free (see [`RELEASE_BEHIND_BYTES`]).
//!
//! # Who writes what
//! A zero fill writes into the file the writer maps, so the two must never write the same
//! bytes. One atomic word, [`Lead::state`], says who owns what: every byte before `ready_to`
//! is the writer's (the preparer never writes it again); while `PREPARING` is set the preparer
//! is preparing bytes from `ready_to` on, which the writer must not touch; everything after is
//! nobody's yet. The preparer sets `PREPARING` with a compare-and-swap from a state without it,
//! and clears it by storing the new `ready_to` (`Release`: its zeros are in the page cache
//! before the writer may store there). A writer that needs bytes beyond `ready_to`:
//! - waits while `PREPARING` is set, after setting `WANTED`, which the preparer checks between
//!   its 16 KiB writes: the wait is one such write (or, for a huge-page step, which checks it
//!   only before it starts, that step's pre-fault);
//! - otherwise takes the whole rest of the segment with a compare-and-swap to `ready_to` =
//!   the segment's length: the preparer then never writes to that segment again (and maps
//!   its rest with huge pages, since a writer that overtook its lead is a fast one).
//!
//! Steps and the rest are all zeros either way (allocated blocks read as zeros), so the
//! records and the recovery rules are the same whatever prepared a byte: no format change.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::io::{SegmentIo, ZERO_FILL_CHUNK_BYTES};
use super::segment::SegmentSync;

/// The unit of preparation: one transparent huge page, so a huge-page step is mapped by one
/// page-table entry.
pub(crate) const STEP_BYTES: usize = 2 << 20;

/// How far ahead of the writer zeroed steps are kept.
pub(crate) const ZEROED_LEAD_BYTES: usize = 8 << 20;

/// How far ahead of the writer huge-page steps are kept: a writer at the disk's limit
/// (about 1.4 GB/s here) crosses 16 MiB in some 11 ms, many times what the preparer takes to
/// fault in a step; if it is late anyway, the writer faults the pages in itself. Kept short
/// because everything faulted in ahead is fresh memory until the ring below turns over.
pub(crate) const HUGE_LEAD_BYTES: usize = 16 << 20;

/// How far behind the writer the pages of its segment are let go of (`SegmentSync::release`):
/// their memory, freed moments ago, is what the next pages ahead are faulted in with. Memory
/// that has sat free is many times slower to fault in on a VM whose guest returns free pages
/// to the host (17× measured: docs/BENCHMARKS.md), so a fast writer's page cache turns over
/// as a ring of about lead + this much instead of growing over fresh memory until the segment
/// is retired. The smaller the ring, the less of a run's journal is faulted in from memory
/// that has sat free: at 64 MiB ahead and behind, the first lap (about 150 MiB with the first
/// spare) took the preparer 280–400 ms of a 0.7 s closed-loop run. A reader further behind
/// than this (a lagging replica) reads the file back from disk.
pub(crate) const RELEASE_BEHIND_BYTES: usize = 16 << 20;

/// The least one release lets go of (an `madvise` and an `fadvise` call).
const RELEASE_CHUNK_BYTES: usize = 4 << 20;

// Why: steps are whole huge pages, and the leads whole steps.
const _: () = assert!(STEP_BYTES.is_power_of_two());
// Why: a release never splits a huge page the writer's mapping holds.
const _: () = assert!(RELEASE_BEHIND_BYTES.is_multiple_of(STEP_BYTES));
const _: () = assert!(RELEASE_CHUNK_BYTES.is_multiple_of(STEP_BYTES));
const _: () = assert!(ZEROED_LEAD_BYTES.is_multiple_of(STEP_BYTES));
const _: () = assert!(HUGE_LEAD_BYTES.is_multiple_of(STEP_BYTES));

/// The preparer is preparing the bytes from `ready_to` on.
const PREPARING: u64 = 1 << 63;
/// The writer waits for those bytes: the preparer stops at its next write.
const WANTED: u64 = 1 << 62;
/// The writer has moved on to the next segment: nothing here needs preparing any more.
const SEALED: u64 = 1 << 61;
const READY_MASK: u64 = SEALED - 1;

/// Which bytes of one segment the writer owns; shared by the writer and the preparer.
#[derive(Debug)]
pub(crate) struct Lead {
    /// `ready_to` in the low bits, with the `PREPARING` and `WANTED` flags (module docs).
    state: AtomicU64,
    /// Where the writer was when it last told the preparer (`Lead::nudge`).
    writer_pos: AtomicUsize,
    len: usize,
}

impl Lead {
    /// A segment of `len_bytes` of which the writer owns the first `ready_to` bytes.
    pub(crate) fn new(len_bytes: usize, ready_to: usize) -> Self {
        Lead {
            state: AtomicU64::new(ready_to.min(len_bytes) as u64),
            writer_pos: AtomicUsize::new(0),
            len: len_bytes,
        }
    }

    /// The writer's: bytes before this offset it may write without asking.
    pub(crate) fn ready_to(&self) -> usize {
        (self.state.load(Ordering::Acquire) & READY_MASK) as usize
    }

    /// The writer's: makes every byte before `end` its own and returns how far it now owns
    /// (at least `end`). Waits while the preparer finishes its current write (module docs);
    /// takes the rest of the segment if the preparer is not preparing.
    #[cold]
    pub(crate) fn claim(&self, end: usize) -> usize {
        let mut waits = 0u32;
        loop {
            let state = self.state.load(Ordering::Acquire);
            let ready = (state & READY_MASK) as usize;
            if ready >= end {
                return ready;
            }
            if state & PREPARING != 0 {
                if state & WANTED == 0 {
                    self.state.fetch_or(WANTED, Ordering::AcqRel);
                }
                backoff(&mut waits);
                continue;
            }
            let taken = self.len as u64;
            if self
                .state
                .compare_exchange(state, taken, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return self.len;
            }
        }
    }

    /// The writer's, at rollover: takes the whole segment and marks it done with.
    pub(crate) fn seal(&self) {
        self.claim(self.len);
        self.state.fetch_or(SEALED, Ordering::AcqRel);
    }

    /// Whether the writer moved on to the next segment.
    pub(crate) fn is_sealed(&self) -> bool {
        self.state.load(Ordering::Acquire) & SEALED != 0
    }

    /// The writer's: tells where it is, for the preparer's next step and rate.
    pub(crate) fn nudge(&self, write_pos: usize) {
        self.writer_pos.store(write_pos, Ordering::Relaxed);
    }

    /// Where the writer last said it was.
    pub(crate) fn writer_pos(&self) -> usize {
        self.writer_pos.load(Ordering::Relaxed)
    }

    /// Whether the writer owns the whole segment (it took the rest, or every step is done).
    #[cfg(test)]
    fn is_taken(&self) -> bool {
        self.ready_to() >= self.len
    }

    /// The preparer's: starts preparing from `ready_to`, unless the writer took the rest or
    /// waits. Returns `ready_to`.
    fn begin_step(&self) -> Option<usize> {
        let state = self.state.load(Ordering::Acquire);
        let ready = (state & READY_MASK) as usize;
        if ready >= self.len || state & (WANTED | PREPARING | SEALED) != 0 {
            return None;
        }
        self.state
            .compare_exchange(
                state,
                state | PREPARING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()
            .map(|_| ready)
    }

    /// The preparer's: whether the writer waits for the step in progress.
    fn is_wanted(&self) -> bool {
        self.state.load(Ordering::Acquire) & WANTED != 0
    }

    /// The preparer's: hands the bytes before `ready_to` to the writer and ends the step.
    fn end_step(&self, ready_to: usize) {
        self.state.store(ready_to as u64, Ordering::Release);
    }
}

/// Waits a little longer each time: spins first (a 16 KiB write takes microseconds), then
/// yields the core (the preparer may need it, on a machine with fewer cores than threads).
fn backoff(waits: &mut u32) {
    *waits += 1;
    if *waits < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// How a step is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StepKind {
    #[default]
    Zeroed,
    HugePages,
}

/// The preparer's side of one segment: its [`Lead`], the mapping (to pre-fault and advise)
/// and a file description of its own for the zero fill (below).
#[derive(Debug)]
pub(crate) struct LeadTarget {
    pub(crate) lead: Arc<Lead>,
    pub(crate) map: SegmentSync,
    /// Opened separately from the writer's: a write-back error is reported once per open
    /// file description, so the preparer's `fdatasync` must not consume one that the
    /// writer's commits need to see.
    zero_file: File,
    /// How far the preparer's own steps went.
    stepped_to: usize,
    /// The writer owns the whole segment, and its rest is mapped with huge pages and
    /// pre-faulted in windows ahead of the writer ([`LeadTarget::fault_ahead`]).
    faulting_ahead: bool,
    /// How far that rest is pre-faulted (meaningful once `faulting_ahead`).
    faulted_to: usize,
    /// Pages before this offset were let go of ([`LeadTarget::release_behind`]).
    released_to: usize,
}

impl LeadTarget {
    /// The preparer's side of a segment at `path`, mapped as `map`, of which the writer owns
    /// the first `ready_to` bytes.
    pub(crate) fn open(
        path: &std::path::Path,
        map: SegmentSync,
        ready_to: usize,
    ) -> io::Result<Self> {
        // Readable too: the I/O seam may read what it syncs (a crash model does).
        let zero_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let len = map.len();
        Ok(LeadTarget {
            lead: Arc::new(Lead::new(len, ready_to)),
            map,
            zero_file,
            stepped_to: ready_to.min(len),
            faulting_ahead: false,
            faulted_to: 0,
            released_to: 0,
        })
    }

    /// The preparer's side of a spare handed over whole to the writer, mapped with huge pages
    /// and pre-faulted up to `faulted_to`: the rest is pre-faulted in windows ahead of the
    /// writer once it appends there.
    pub(crate) fn open_faulted(
        path: &std::path::Path,
        map: SegmentSync,
        faulted_to: usize,
    ) -> io::Result<Self> {
        let mut target = Self::open(path, map, usize::MAX)?;
        target.faulting_ahead = true;
        target.faulted_to = faulted_to.min(target.lead.len);
        Ok(target)
    }

    /// Lets go of the segment's pages more than [`RELEASE_BEHIND_BYTES`] behind the writer at
    /// `writer_pos`, at least [`RELEASE_CHUNK_BYTES`] at a time, on 2 MiB boundaries.
    pub(crate) fn release_behind(&mut self, writer_pos: usize) {
        let until = writer_pos.saturating_sub(RELEASE_BEHIND_BYTES) / STEP_BYTES * STEP_BYTES;
        if until >= self.released_to.saturating_add(RELEASE_CHUNK_BYTES) {
            self.map.release(self.released_to, until - self.released_to);
            self.released_to = until;
        }
    }

    /// Prepares steps until the writer owns `ahead_bytes` past `from` (or the segment's end),
    /// each as `kind`. Stops early when the writer takes the rest or waits. Zeroed steps are
    /// synced once at the end.
    pub(crate) fn prepare_ahead(
        &mut self,
        io: &dyn SegmentIo,
        from: usize,
        ahead_bytes: usize,
        kind: StepKind,
    ) -> io::Result<()> {
        let target = from.saturating_add(ahead_bytes).min(self.lead.len);
        let mut zeroed = false;
        while self.lead.ready_to() < target {
            let Some(start) = self.lead.begin_step() else {
                break;
            };
            let end = (start + 1).next_multiple_of(STEP_BYTES).min(self.lead.len);
            let done = match kind {
                StepKind::Zeroed => self.zero_step(io, start, end),
                StepKind::HugePages => Ok(self.huge_step(start, end)),
            };
            let done = match done {
                Ok(done) => done,
                Err(err) => {
                    self.lead.end_step(start);
                    return Err(err);
                }
            };
            self.lead.end_step(done);
            self.stepped_to = done;
            zeroed |= kind == StepKind::Zeroed && done > start;
            if done < end {
                break;
            }
        }
        if zeroed {
            // Writes the zeros back and makes the zeroed blocks written extents on disk: a
            // commit there then needs no metadata change. (It also writes back whatever the
            // writer has stored there meanwhile, which is harmless.)
            io.sync_file(&self.zero_file)?;
        }
        Ok(())
    }

    /// Writes zeros over `[start, end)` in 16 KiB writes, stopping where the writer waits.
    /// Returns the end of what it zeroed. Not pre-faulted: the sync after the steps cleans the
    /// pages again, and a page pre-faulted for writing after it would be dirty, so every
    /// later sync of the file would write it again until the writer reaches it; the writer
    /// takes one minor fault per 4 KiB page instead.
    fn zero_step(&self, io: &dyn SegmentIo, start: usize, end: usize) -> io::Result<usize> {
        let mut at = start;
        while at < end && !self.lead.is_wanted() {
            let n = (end - at).min(ZERO_FILL_CHUNK_BYTES);
            io.write_zeros_at(&self.zero_file, at as u64, n)?;
            at += n;
        }
        Ok(at)
    }

    /// Maps `[start, end)` with huge pages and pre-faults it; returns `end`.
    fn huge_step(&self, start: usize, end: usize) -> usize {
        if !self.lead.is_wanted() {
            self.map.advise_huge_pages(start, end - start);
            self.map.prefault(start, end - start);
        }
        end
    }

    /// Once the writer owns the whole segment: maps its rest with huge pages (the first time,
    /// from the 2 MiB boundary after `writer_pos`) and pre-faults it up to `ahead_bytes` past
    /// `writer_pos`, in whole steps. A write fault changes no byte, so the writer may append
    /// there meanwhile; a page it reaches first it faults in itself.
    pub(crate) fn fault_ahead(&mut self, writer_pos: usize, ahead_bytes: usize) {
        let len = self.lead.len;
        if !self.faulting_ahead {
            self.faulting_ahead = true;
            let from = writer_pos.next_multiple_of(STEP_BYTES).min(len);
            self.map.advise_huge_pages(from, len - from);
            self.faulted_to = from;
        }
        let start = self.faulted_to.max(writer_pos / STEP_BYTES * STEP_BYTES);
        let end = writer_pos
            .saturating_add(ahead_bytes)
            .min(len)
            .next_multiple_of(STEP_BYTES)
            .min(len);
        if end > start {
            self.map.prefault(start, end - start);
            self.faulted_to = end;
        }
    }

    /// Whether the writer took the rest of the segment from the preparer's steps (it overtook
    /// them) and the rest is not yet mapped with huge pages.
    pub(crate) fn was_overtaken(&self) -> bool {
        !self.faulting_ahead && !self.lead.is_sealed() && self.lead.ready_to() > self.stepped_to
    }

    /// Whether the writer owns the rest of the segment, which is then pre-faulted ahead of it
    /// ([`LeadTarget::fault_ahead`]) rather than prepared in steps.
    pub(crate) fn writer_owns_rest(&self) -> bool {
        self.faulting_ahead || self.was_overtaken()
    }

    /// Whether nothing is left to prepare in this segment.
    pub(crate) fn is_done(&self) -> bool {
        let prepared_to = match self.faulting_ahead {
            true => self.faulted_to,
            false => self.stepped_to,
        };
        self.lead.is_sealed() || prepared_to >= self.lead.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::io::{FaultyIo, RealIo, SegmentIo};
    use crate::journal::segment::MappedSegment;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn the_writer_takes_the_rest_when_the_preparer_is_idle() {
        let lead = Lead::new(16 << 20, 4 << 20);
        assert_eq!(lead.ready_to(), 4 << 20);
        assert_eq!(lead.claim(1 << 20), 4 << 20, "already owned");
        assert_eq!(lead.claim(5 << 20), 16 << 20, "the rest");
        assert!(lead.is_taken());
        assert_eq!(lead.begin_step(), None, "nothing left to prepare");
    }

    #[test]
    fn the_writer_waits_for_a_step_in_progress_and_the_preparer_stops_early() {
        let lead = Arc::new(Lead::new(16 << 20, 2 << 20));
        assert_eq!(lead.begin_step(), Some(2 << 20));
        let claimed = Arc::new(AtomicBool::new(false));
        let writer = {
            let (lead, claimed) = (Arc::clone(&lead), Arc::clone(&claimed));
            std::thread::spawn(move || {
                let owned = lead.claim(3 << 20);
                claimed.store(true, Ordering::Release);
                owned
            })
        };
        // Bounded: the writer sets WANTED within its first loop.
        for _ in 0..10_000 {
            if lead.is_wanted() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(lead.is_wanted(), "the writer asked");
        assert!(!claimed.load(Ordering::Acquire), "no claim while preparing");
        // The preparer stops after what it zeroed so far.
        lead.end_step((2 << 20) + (16 << 10));
        let owned = writer.join().unwrap();
        assert_eq!(owned, 16 << 20, "then the writer takes the rest");
        assert_eq!(lead.begin_step(), None);
    }

    /// An allocated segment file of `len` bytes in a fresh directory, mapped (not pre-faulted).
    fn segment(len: usize) -> (tempfile::TempDir, std::path::PathBuf, MappedSegment) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        let file = RealIo.create_allocated(&path, len as u64).unwrap();
        let map = MappedSegment::map(file, None, 0).unwrap();
        (tmp, path, map)
    }

    /// A new segment of `len` bytes, mapped, and its preparer's side with nothing prepared.
    fn lead_on_new_segment(len: usize) -> (tempfile::TempDir, MappedSegment, LeadTarget) {
        let (tmp, path, map) = segment(len);
        let target = LeadTarget::open(&path, map.sync_handle().clone(), 0).unwrap();
        (tmp, map, target)
    }

    #[test]
    fn pages_far_enough_behind_the_writer_are_let_go_of_in_chunks_and_keep_their_bytes() {
        let len = 128usize << 20;
        let (_tmp, path, mut map) = segment(len);
        let written = 100usize << 20;
        map.slot_mut(0, written).fill(0xA5);
        map.sync_handle().flush_range(0, written).unwrap();
        let mut target = LeadTarget::open(&path, map.sync_handle().clone(), 0).unwrap();
        let (behind, chunk, mib) = (RELEASE_BEHIND_BYTES, RELEASE_CHUNK_BYTES, 1usize << 20);
        target.release_behind(behind + chunk - mib);
        assert_eq!(target.released_to, 0, "less than a chunk behind the trail");
        target.release_behind(behind + chunk + mib);
        assert_eq!(target.released_to, chunk, "whole steps, at least a chunk");
        target.release_behind(behind + 2 * chunk - mib);
        assert_eq!(target.released_to, chunk, "not yet another chunk");
        target.release_behind(behind + 2 * chunk + STEP_BYTES + mib);
        assert_eq!(target.released_to, 2 * chunk + STEP_BYTES);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(
            on_disk[..written].iter().all(|&b| b == 0xA5),
            "the file keeps them"
        );
        assert!(
            map.bytes(0, written).iter().all(|&b| b == 0xA5),
            "so does the mapping"
        );
    }

    #[test]
    fn zeroed_steps_keep_ahead_of_the_writer_and_read_as_zeros() {
        let len = 12usize << 20;
        let (_tmp, map, mut target) = lead_on_new_segment(len);
        target
            .prepare_ahead(&RealIo, 0, 5 << 20, StepKind::Zeroed)
            .unwrap();
        assert_eq!(target.lead.ready_to(), 6 << 20, "whole steps");
        target.lead.nudge(6 << 20);
        target
            .prepare_ahead(&RealIo, 6 << 20, 64 << 20, StepKind::HugePages)
            .unwrap();
        assert!(target.lead.is_taken(), "to the end");
        assert!(map.bytes(0, len).iter().all(|&b| b == 0));
    }

    #[test]
    fn a_failed_zero_write_hands_nothing_over_and_leaves_the_rest_to_the_writer() {
        let len = 12usize << 20;
        let (_tmp, map, mut target) = lead_on_new_segment(len);
        let io = FaultyIo::default();
        io.fail_zero_writes.store(true, Ordering::Relaxed);
        let err = target
            .prepare_ahead(&io, 0, 5 << 20, StepKind::Zeroed)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(
            io.zero_writes.load(Ordering::Relaxed) > 0,
            "through the seam"
        );
        assert_eq!(target.lead.ready_to(), 0, "nothing handed over");
        assert_eq!(io.file_syncs.load(Ordering::Relaxed), 0, "nothing to sync");
        // The step ended: the writer is not kept waiting, it takes the rest itself.
        assert_eq!(target.lead.claim(1 << 20), len);
        assert!(map.bytes(0, len).iter().all(|&b| b == 0));
    }

    #[test]
    fn zeroed_steps_write_and_sync_through_the_seam() {
        let len = 12usize << 20;
        let (_tmp, _map, mut target) = lead_on_new_segment(len);
        let io = FaultyIo::default();
        target
            .prepare_ahead(&io, 0, 3 << 20, StepKind::Zeroed)
            .unwrap();
        assert_eq!(target.lead.ready_to(), 4 << 20);
        let writes = (4 << 20) / ZERO_FILL_CHUNK_BYTES;
        assert_eq!(io.zero_writes.load(Ordering::Relaxed), writes);
        assert_eq!(
            io.file_syncs.load(Ordering::Relaxed),
            1,
            "one sync for the steps"
        );
    }
}
