//! Memory-mapped segment files: the only module of the journal with `unsafe`.
//!
//! Both mappings are [`memmap2::MmapRaw`], so no `&[u8]` / `&mut [u8]` ever spans bytes another
//! thread or process may be writing. Slices are made only over:
//! - bytes of a *published* entry (its magic word was observed non-zero with `Acquire`, paired
//!   with the writer's `Release` store in [`MappedSegment::publish`]); the writer never touches
//!   them again, or
//! - bytes the caller owns exclusively: the writer's unpublished tail, or any byte of a journal
//!   whose directory lock the caller holds (recovery, verify).
//!
//! The protocol that makes those ranges immutable is documented in `docs/journal_format.md`
//! ("Publication order"). Files are never truncated while mapped (they are preallocated and only
//! deleted by recovery, under the exclusive lock), so accesses cannot fault with SIGBUS.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};

use super::format::{PAGE_SIZE_BYTES, RECORD_ALIGN_BYTES};
use super::holes::DataRanges;

/// A cache line of the CPUs keel runs on (x86-64, aarch64).
const CACHE_LINE_BYTES: usize = 64;

/// A segment mapped shared and writable, owned by the one writer. Opaque outside the journal.
#[derive(Debug)]
pub struct MappedSegment {
    sync: SegmentSync,
}

/// A handle that makes a segment's bytes durable, usable from another thread (the group-commit
/// syncer) while the writer keeps appending; it can neither read nor write the bytes. Opaque
/// outside the journal; it appears in [`super::SegmentIo::sync_range`] so tests can wrap the
/// real msync.
#[derive(Debug, Clone)]
pub struct SegmentSync {
    map: Arc<MmapRaw>,
    file: Arc<File>,
}

impl SegmentSync {
    /// `msync(MS_SYNC)` of `[offset, offset + len)`; the start is rounded down to a page.
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.map.flush_range(offset, len)
    }

    /// Length of the mapping.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// `[from, from + len)` clipped to the mapping, its start rounded down to a page: the
    /// range every advice below applies to.
    fn page_range(&self, from: usize, len: usize) -> std::ops::Range<usize> {
        let page_bytes = PAGE_SIZE_BYTES as usize;
        let end = from.saturating_add(len).min(self.map.len());
        (from / page_bytes * page_bytes).min(end)..end
    }

    /// `MADV_POPULATE_WRITE` over [`Self::page_range`]: where that range starts, or the error
    /// (kernels before 5.14 have no such advice).
    fn populate_write(&self, from: usize, len: usize) -> Result<(), (usize, io::Error)> {
        let range = self.page_range(from, len);
        match range.is_empty() {
            true => Ok(()),
            false => (self.map)
                .advise_range(Advice::PopulateWrite, range.start, range.len())
                .map_err(|err| (range.start, err)),
        }
    }

    /// Pre-faults `[from, from + len)` for writing (`MADV_POPULATE_WRITE`; clipped to the
    /// mapping; the start rounded down to a page).
    pub(crate) fn prefault(&self, from: usize, len: usize) {
        if let Err((_, err)) = self.populate_write(from, len) {
            tracing::debug!("journal: could not pre-fault part of a segment: {err}");
        }
    }

    /// Asks for transparent huge pages for `[from, from + len)` (`MADV_HUGEPAGE`; advisory:
    /// where the kernel has none, small pages work the same). Pages already in the page cache
    /// keep their size.
    pub(crate) fn advise_huge_pages(&self, from: usize, len: usize) {
        let range = self.page_range(from, len);
        if !range.is_empty() {
            if let Err(err) = self
                .map
                .advise_range(Advice::HugePage, range.start, range.len())
            {
                tracing::debug!("journal: no huge pages for part of a segment: {err}");
            }
        }
    }

    /// Lets go of the pages of `[from, from + len)` (clipped to the mapping): they leave this
    /// mapping (`MADV_DONTNEED`) and, once written back and mapped by nobody else, the page
    /// cache (`POSIX_FADV_DONTNEED`), so their memory is free again for the pages the
    /// preparer faults in ahead of the writer. No byte changes: a dirty page stays cached
    /// until written back (the advice starts that), and a later access maps the page again
    /// or reads it back from the file. Only for bytes the writer has passed for good.
    pub(crate) fn release(&self, from: usize, len: usize) {
        use memmap2::UncheckedAdvice;
        let range = self.page_range(from, len);
        if range.is_empty() {
            return;
        }
        let (from, len) = (range.start, range.len());
        // SAFETY: on a shared file mapping MADV_DONTNEED only unmaps the pages (dirty ones stay
        // dirty in the page cache): the bytes stay those of the file and a later access maps
        // them again; no reference into the range exists (the writer appends after it).
        let unmapped =
            unsafe { (self.map).unchecked_advise_range(UncheckedAdvice::DontNeed, from, len) };
        let dropped = unmapped.and_then(|()| {
            let len = std::num::NonZeroU64::new(len as u64);
            rustix::fs::fadvise(&*self.file, from as u64, len, rustix::fs::Advice::DontNeed)
                .map_err(io::Error::from)
        });
        if let Err(err) = dropped {
            tracing::debug!("journal: could not release part of a segment's pages: {err}");
        }
    }

    /// Pre-faults the mapping for writing from `from` to its end (`MADV_POPULATE_WRITE`),
    /// while the writer may already be appending to it: a write fault changes no byte, so it
    /// cannot disturb a store; a page the writer reaches first it faults in itself.
    pub(crate) fn prefault_rest(&self, from: usize) {
        self.prefault(from, usize::MAX);
    }
}

impl MappedSegment {
    fn new(map: MmapRaw, file: File) -> Self {
        let (map, file) = (Arc::new(map), Arc::new(file));
        Self {
            sync: SegmentSync { map, file },
        }
    }

    /// The mapping. Only this handle writes through it (`slot_mut` and `publish`); the
    /// `SegmentSync` clones handed to the syncer only msync it.
    #[inline]
    fn raw(&self) -> &MmapRaw {
        &self.sync.map
    }

    /// What the syncer needs to make this segment durable.
    pub(crate) fn sync_handle(&self) -> &SegmentSync {
        &self.sync
    }

    /// Maps all of `file` (opened read-write, fully allocated) shared, pre-faulted for writing.
    ///
    /// A plain write fault on each page would cost microseconds on the append path.
    /// `MADV_POPULATE_WRITE` (Linux 5.14+) takes those faults here instead, each page in one
    /// write fault (`MAP_POPULATE` as well would first read-fault every page, and the write
    /// pass would then upgrade each one again: a third more time on the preparer); on older
    /// kernels each page is touched with a store.
    ///
    /// With `huge_pages_from`, the mapping first asks for transparent huge pages
    /// (`MADV_HUGEPAGE`; see `SegmentPrep::HugePages`) from that offset on (rounded up to
    /// 2 MiB). Advisory: where the kernel has none, the segment is mapped with small pages
    /// and works the same. Pages already in the page cache keep their size.
    ///
    /// Pre-faults the first `prefault_bytes` only (all with `usize::MAX`); the caller
    /// pre-faults the rest with [`SegmentSync::prefault_rest`].
    pub(crate) fn map(
        file: File,
        huge_pages_from: Option<usize>,
        prefault_bytes: usize,
    ) -> io::Result<Self> {
        const HUGE_PAGE_BYTES: usize = 2 << 20;
        let map = MmapOptions::new().map_raw(&file)?;
        let mut segment = Self::new(map, file);
        if let Some(from) = huge_pages_from.map(|from| from.next_multiple_of(HUGE_PAGE_BYTES)) {
            segment.sync.advise_huge_pages(from, usize::MAX);
        }
        segment.prefault_range(0, prefault_bytes);
        Ok(segment)
    }

    /// Maps a segment that already holds data up to `append_from`, pre-faulting for writing
    /// only the pages from there to `prefault_to` (`usize::MAX`: the end): the written part
    /// is never stored to again, and faulting it for writing would read it all and mark it
    /// dirty (a reopened 256 MB segment took ~50 ms, and its whole content went back to disk).
    pub(crate) fn map_for_append(
        file: File,
        append_from: usize,
        prefault_to: usize,
    ) -> io::Result<Self> {
        let map = MmapOptions::new().map_raw(&file)?;
        let mut segment = Self::new(map, file);
        segment.prefault_range(append_from, prefault_to.saturating_sub(append_from));
        Ok(segment)
    }

    /// Pre-faults `[from, from + len)` (clipped to the mapping; on kernels without
    /// `MADV_POPULATE_WRITE`, every page from `from` to the end).
    fn prefault_range(&mut self, from: usize, len: usize) {
        if let Err((start, _)) = self.sync.populate_write(from, len) {
            self.touch_pages(start);
        }
    }

    /// Stores a zero into every page from `start` (those pages are still all zeros and
    /// unpublished).
    fn touch_pages(&mut self, start: usize) {
        let page_bytes = PAGE_SIZE_BYTES as usize;
        for offset in (start..self.raw().len()).step_by(page_bytes) {
            // SAFETY: `offset` is inside the mapping; the bytes from `start` are not yet
            // visible to any reader (a spare, or the unwritten tail under the writer's lock)
            // and the byte is already zero.
            unsafe { self.raw().as_mut_ptr().add(offset).write_volatile(0) };
        }
    }

    /// Length of the mapping (the segment size).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.raw().len()
    }

    /// Drops this handle's mapping (unmapped once no sync handle holds it) and returns the file.
    pub(crate) fn into_file(self) -> Arc<File> {
        self.sync.file
    }

    /// Mutable view of `[offset, offset + len)` of the unpublished tail, for encoding into.
    #[inline]
    pub(crate) fn slot_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(
            offset <= self.raw().len() && len <= self.raw().len() - offset,
            "slot out of map"
        );
        // SAFETY: the range is inside the mapping (checked above), the mapping lives as long as
        // `&mut self`, and the writer owns unpublished bytes exclusively: readers only view an
        // entry after observing its magic word, which is stored later by `publish`.
        unsafe { std::slice::from_raw_parts_mut(self.raw().as_mut_ptr().add(offset), len) }
    }

    /// Shared view of bytes the writer owns (written entries, or any byte during recovery).
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        assert!(
            offset <= self.raw().len() && len <= self.raw().len() - offset,
            "bytes out of map"
        );
        // SAFETY: inside the mapping (checked above) and alive as long as `&self`; the writer is
        // the only one who mutates the map, and it needs `&mut self` to do so.
        unsafe { std::slice::from_raw_parts(self.raw().as_ptr().add(offset), len) }
    }

    /// Asks the CPU to fetch the two cache lines from `offset` on (if inside the mapping) for
    /// writing: the writer, a few records behind them, then stores into lines already in its
    /// cache. Freshly faulted-in page-cache pages are zeroed by the kernel without leaving them
    /// cached, so without this every line of the journal is a store miss (22 ns a record of
    /// the journaler's 55 ns in a closed-loop profile). Only a hint: reads nothing
    /// architecturally, and the bytes may still be the preparer's.
    #[inline]
    pub(crate) fn prefetch_for_write(&self, offset: usize) {
        let map = self.raw();
        for line in [offset, offset + CACHE_LINE_BYTES] {
            if line >= map.len() {
                return;
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch never faults and accesses no memory architecturally; the
            // address is inside the mapping anyway (checked above).
            #[allow(unused_unsafe)]
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
                _mm_prefetch::<_MM_HINT_ET0>(map.as_ptr().add(line).cast::<i8>());
            }
        }
    }

    /// Publishes the entry at `offset` by storing its magic word with `Release`.
    #[inline]
    pub(crate) fn publish(&self, offset: usize, magic: u32) {
        assert!(magic_slot_ok(offset, self.raw().len()), "bad magic slot");
        // SAFETY: the address is inside the mapping and 4-aligned (the map is page-aligned and
        // `offset` is 8-aligned, both checked), so it is a valid `AtomicU32`; every access to
        // this word from readers is atomic too (`magic_acquire`).
        let word =
            unsafe { AtomicU32::from_ptr(self.raw().as_mut_ptr().add(offset).cast::<u32>()) };
        // Pairs with the Acquire load in `SegmentView::magic_acquire`.
        word.store(magic, Ordering::Release);
    }
}

/// Whether a magic word at `offset` is aligned and inside a map of `len` bytes.
#[inline]
fn magic_slot_ok(offset: usize, len: usize) -> bool {
    offset.is_multiple_of(RECORD_ALIGN_BYTES)
        && len.checked_sub(4).is_some_and(|last| offset <= last)
}

/// A segment mapped read-only, for readers and recovery. Never writes.
#[derive(Debug)]
pub(crate) struct SegmentView {
    map: MmapRaw,
    /// Kept open for [`Self::data_ranges`] (its filesystem's holes).
    file: File,
}

impl SegmentView {
    /// Opens and maps all of the file at `path` read-only.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let map = MmapOptions::new().map_raw_read_only(&file)?;
        Ok(Self { map, file })
    }

    /// The ranges of the mapping from `from` on that may hold data by the filesystem's
    /// account (see [`DataRanges`]): the rest are holes, zeros that need not be read (and,
    /// read through the mapping, would each cost a page-cache page).
    pub(crate) fn data_ranges(&self, from: usize) -> DataRanges<'_> {
        DataRanges::new(&self.file, self.map.len(), from)
    }

    /// Length of the mapping (the file size).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Loads the magic word at `offset` with `Acquire`: if non-zero, the entry it starts is
    /// published and every byte of it is visible and final.
    #[inline]
    pub(crate) fn magic_acquire(&self, offset: usize) -> u32 {
        assert!(magic_slot_ok(offset, self.map.len()), "bad magic slot");
        // SAFETY: inside the mapping and 4-aligned (page-aligned map, 8-aligned offset, both
        // checked); the writer stores this word atomically (`MappedSegment::publish`).
        let word = unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(offset).cast_mut().cast()) };
        // Pairs with the Release store in `MappedSegment::publish`.
        word.load(Ordering::Acquire)
    }

    /// Asks the CPU to fetch the cache line at `offset` (if inside the mapping) into its
    /// caches: a reader streaming through a segment prefetches a few records ahead of itself,
    /// across the page boundaries where the hardware prefetcher stops. Only a hint.
    #[inline]
    pub(crate) fn prefetch_streaming(&self, offset: usize) {
        if offset >= self.map.len() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and accesses no memory architecturally; the address
        // is inside the mapping anyway (checked above). SSE is part of the x86_64 baseline.
        #[allow(unused_unsafe)]
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.map.as_ptr().add(offset).cast::<i8>());
        }
    }

    /// Offset of the first non-zero 8-aligned word at or after `from`, `None` if the rest of
    /// the mapping is zero. Reads only the ranges the filesystem reports as possibly holding
    /// data ([`Self::data_ranges`]: an unwritten segment tail is skipped without being read),
    /// and those with relaxed atomic loads, a cache line per step, so it is safe on a live
    /// segment; it is only a hint where entries may start: the caller reads what it finds
    /// through [`Self::magic_acquire`].
    ///
    /// On a live segment a word may become non-zero after this passed it, read or skipped: a
    /// word read as zero, or in a range reported as a hole (which reads as zeros: a store
    /// through any mapping first puts its page in the page cache, and from then on the
    /// filesystem reports it as data), was zero at that moment of the scan. Either way the
    /// answer is what a scan reading each word once, in order, could have seen.
    pub(crate) fn next_nonzero_word(&self, from: usize) -> Option<usize> {
        let from = from.next_multiple_of(8).min(self.map.len());
        self.data_ranges(from)
            .find_map(|range| self.nonzero_word_in(range.start / 8, range.end / 8))
    }

    /// Offset of the first non-zero word among words `first..end` of the mapping.
    fn nonzero_word_in(&self, first: usize, end: usize) -> Option<usize> {
        const LINE_WORDS: usize = 8;
        let end = end.min(self.map.len() / 8);
        let base = self.map.as_ptr().cast::<u64>();
        let load = |i: usize| {
            // SAFETY: `i < end <= words in the mapping`: the word is inside the mapping, alive
            // as long as `&self`, and 8-aligned (page-aligned map). The load is atomic, the
            // same kind of access `magic_acquire` makes to slots a live writer may be
            // filling: at worst it sees old or new bytes, and the caller re-reads through
            // `magic_acquire`.
            unsafe { AtomicU64::from_ptr(base.add(i).cast_mut()) }.load(Ordering::Relaxed)
        };
        let mut i = first;
        while i < end {
            let whole_line = i.is_multiple_of(LINE_WORDS) && i + LINE_WORDS <= end;
            if whole_line && (i..i + LINE_WORDS).fold(0, |acc, w| acc | load(w)) == 0 {
                i += LINE_WORDS;
                continue;
            }
            if load(i) != 0 {
                return Some(i * 8);
            }
            i += 1;
        }
        None
    }

    /// Shared view of `[offset, offset + len)`. Callers view only immutable bytes: a published
    /// entry (after `magic_acquire`), the segment header (written before the file was renamed
    /// into place), or anything while holding the journal directory's lock.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        assert!(
            offset <= self.map.len() && len <= self.map.len() - offset,
            "bytes out of map"
        );
        // SAFETY: inside the mapping (checked above), alive as long as `&self`, and by the
        // module's protocol (see the module docs) nobody writes these bytes any more.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) }
    }
}
