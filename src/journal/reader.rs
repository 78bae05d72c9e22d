//! Read-only, validating iteration over a journal, from any sequence, across segments; it can
//! follow a live writer (another thread or process).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ahead::ChecksumsAhead;

use super::dir::{list_segments, segment_file_name, SegmentFile};
use super::error::{file_io, CorruptionReason, Damage, JournalError};
use super::format::{
    decode_record, link_known_record, Chain, Entry, Fault, Record, END_MARKER_SIZE,
    RECORD_HEADER_SIZE, RECORD_MAGIC, SEGMENT_HEADER_SIZE,
};
use super::recovery::{
    check_end_marker, check_segment_header, continues_unsealed, corrupted, find_evidence_after,
    find_evidence_in, read_entry, skip_entry,
};
use super::segment::SegmentView;

/// Reads a journal in order, validating every record (CRC, sequence, hash chain) as it goes.
/// Never modifies files and takes no lock, so it can tail a live writer.
#[derive(Debug)]
pub struct JournalReader {
    dir: PathBuf,
    /// An archive directory whose segments precede the journal's (journal retention).
    archive: Option<PathBuf>,
    current: Option<Current>,
    /// Records below this sequence are validated but not returned (set by `seek`).
    skip_below: u64,
    /// Records up to this sequence were validated by the journal's open-time scan, under the
    /// lock still held: their CRCs are not computed again (links are still checked).
    verified_through: u64,
    /// Whether a second core is there for checksums ahead ([`ChecksumsAhead`]).
    ahead_allowed: bool,
}

/// Records a reader returns from one segment before it starts checksums ahead: short reads
/// (a seek and one record, a tail follower's trickle) never start a thread.
const AHEAD_AFTER_RECORDS: u32 = 4096;

/// How far ahead of the record being returned a reader prefetches the segment's bytes.
const PREFETCH_AHEAD_BYTES: usize = 1024;

/// The segment being read.
#[derive(Debug)]
struct Current {
    view: Arc<SegmentView>,
    seg: SegmentFile,
    offset: usize,
    chain: Chain,
    /// From this offset on, a look-ahead found no valid data: stopping there is the end, not
    /// corruption. The writer only writes forward, so this stays true as it appends.
    clear_from: Option<usize>,
    /// Records returned from this segment (up to [`AHEAD_AFTER_RECORDS`]).
    returned: u32,
    /// The helper checking this segment's CRCs ahead, once started.
    ahead: Option<ChecksumsAhead>,
    /// Entries before this offset were checked ahead (the helper's progress, last read).
    ahead_to: usize,
}

impl Current {
    /// Whether the CRC of the entry at `offset` is already known good (checked ahead). Reads
    /// the helper's progress only once the cached value is passed.
    #[inline]
    fn checked_ahead(&mut self, offset: usize) -> bool {
        if offset < self.ahead_to {
            return true;
        }
        let Some(ahead) = self.ahead.as_ref() else {
            return false;
        };
        self.ahead_to = ahead.checked_to();
        offset < self.ahead_to
    }

    /// Steps over the next entry when it is a record whose CRC is known good (`trusted`, or
    /// checked ahead) and whose links continue the chain: its offset and size. `None` for
    /// anything else (end marker, unwritten, faults, CRC not yet known), which
    /// `JournalReader::step` then handles the long way. The per-record loop of replay.
    #[inline]
    fn step_known(&mut self, trusted: bool) -> Option<(usize, usize)> {
        let offset = self.offset;
        let available = self.view.len() - offset;
        if available < RECORD_HEADER_SIZE + END_MARKER_SIZE
            || !(trusted || self.checked_ahead(offset))
        {
            return None;
        }
        // Published first: only then are the entry's bytes final (a live writer).
        if self.view.magic_acquire(offset) != RECORD_MAGIC {
            return None;
        }
        let rest = self.view.bytes(offset, available);
        let (crc, size_bytes) = link_known_record(rest, self.chain)?;
        self.view.prefetch_streaming(offset + PREFETCH_AHEAD_BYTES);
        self.offset += size_bytes;
        self.chain = Chain {
            next_sequence: self.chain.next_sequence + 1,
            prev_crc: crc,
        };
        Some((offset, size_bytes))
    }

    /// Counts a returned record; after enough of them, starts checking ahead of `offset` (the
    /// next entry) when allowed.
    #[inline]
    fn returned_one(&mut self, allowed: bool) {
        if self.returned < AHEAD_AFTER_RECORDS {
            self.returned += 1;
            if self.returned == AHEAD_AFTER_RECORDS && allowed {
                self.ahead = ChecksumsAhead::spawn(Arc::clone(&self.view), self.offset);
            }
        }
    }
}

/// What one step of `next` found.
enum Step {
    /// A record to return, at this offset and size in the current segment.
    Ready { offset: usize, size_bytes: usize },
    /// Progress was made (record skipped, segment entered): keep going.
    Again,
    /// Nothing more for now.
    End,
}

impl JournalReader {
    /// Opens the journal in `dir`, positioned at its oldest record. The directory must exist;
    /// it may be empty (a writer may create segments later).
    pub fn open(dir: &Path) -> Result<JournalReader, JournalError> {
        if !dir.is_dir() {
            let err = io::Error::new(io::ErrorKind::NotFound, "journal directory not found");
            return Err(file_io(dir)(err));
        }
        let mut reader = Self {
            dir: dir.to_owned(),
            archive: None,
            current: None,
            skip_below: 0,
            verified_through: 0,
            ahead_allowed: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
        };
        reader.seek(0)?;
        Ok(reader)
    }

    /// Like [`JournalReader::open`], reading the segments journal retention moved to
    /// `archive` too, as if they were still in `dir`: the archived history and the journal are
    /// one chain, validated across the boundary. A segment in both places is read from `dir`.
    /// An archive that does not exist holds nothing.
    pub fn open_with_archive(dir: &Path, archive: &Path) -> Result<JournalReader, JournalError> {
        let mut reader = Self::open(dir)?;
        reader.archive = Some(archive.to_owned());
        reader.seek(0)?;
        Ok(reader)
    }

    /// Segment files of the journal and of its archive, oldest first.
    fn listing(&self) -> Result<Vec<SegmentFile>, JournalError> {
        let mut segments = list_segments(&self.dir)?;
        if let Some(archive) = self.archive.as_deref().filter(|a| a.is_dir()) {
            let held: std::collections::HashSet<u64> =
                segments.iter().map(|s| s.first_sequence).collect();
            let archived = list_segments(archive)?;
            segments.extend(
                archived
                    .into_iter()
                    .filter(|s| !held.contains(&s.first_sequence)),
            );
            segments.sort_by_key(|s| s.first_sequence);
        }
        Ok(segments)
    }

    /// Where the segment starting at `first_sequence` is: the journal directory, else the
    /// archive when it holds it.
    fn locate(&self, first_sequence: u64) -> PathBuf {
        let name = segment_file_name(first_sequence);
        let path = self.dir.join(&name);
        match &self.archive {
            Some(archive) if !path.exists() && archive.join(&name).exists() => archive.join(name),
            _ => path,
        }
    }

    /// Positions at the first record with a sequence `>= sequence` (present or future).
    pub fn seek(&mut self, sequence: u64) -> Result<(), JournalError> {
        self.skip_below = sequence;
        self.current = None;
        let segments = self.listing()?;
        let pick = segments.iter().rev().find(|s| s.first_sequence <= sequence);
        match pick.or(segments.first()) {
            Some(seg) => self.enter(seg.clone(), None).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Trusts the checksums of records up to `sequence`: the open-time scan of the writer that
    /// holds the journal's lock (and keeps holding it while this reader runs) validated every
    /// record up to its last one, CRCs included, so recovery does not hash them again. Every
    /// record's sequence, `prev_crc` link, magic and length are still checked, and records
    /// after `sequence` are checked in full.
    pub(crate) fn trust_verified_through(&mut self, sequence: u64) {
        self.verified_through = sequence;
    }

    /// The chain after the last record read or stepped over (at a segment's start, the one its
    /// header states); `None` before a segment is entered.
    pub(crate) fn chain(&self) -> Option<Chain> {
        self.current.as_ref().map(|c| c.chain)
    }

    /// Sequence the next record will have, once known (a segment has been entered).
    pub fn next_sequence(&self) -> Option<u64> {
        self.current
            .as_ref()
            .map(|c| c.chain.next_sequence.max(self.skip_below))
    }

    /// The next record (borrowed from the mapping), or `Ok(None)` at the current end of the
    /// journal. Calling again later returns records appended since.
    #[allow(clippy::should_implement_trait)] // lending iterator: the record borrows `self`
    #[inline]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        match self.step_known() {
            Some((offset, size_bytes)) => {
                let Some(cur) = self.current.as_ref() else {
                    unreachable!()
                };
                Ok(Some(decode_record(cur.view.bytes(offset, size_bytes))))
            }
            None => self.next_slow(),
        }
    }

    /// [`JournalReader::next`] the long way: every check, segment changes, the end, faults.
    #[inline(never)] // keeps `next`'s per-record path small enough to inline
    fn next_slow(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        loop {
            match self.step()? {
                Step::Ready { offset, size_bytes } => {
                    let Some(cur) = self.current.as_ref() else {
                        unreachable!()
                    };
                    let record = decode_record(cur.view.bytes(offset, size_bytes));
                    assert_eq!(record.sequence + 1, cur.chain.next_sequence);
                    return Ok(Some(record));
                }
                Step::Again => {}
                Step::End => return Ok(None),
            }
        }
    }

    /// Passes the records from the next one through sequence `through` to `apply`, in one
    /// loop over the current segment's mapping, for records whose CRCs the open-time scan
    /// validated ([`JournalReader::trust_verified_through`]; never beyond that sequence). The
    /// checks are the ones [`JournalReader::next`] makes of such records (magic, room,
    /// reserved field, sequence, `prev_crc` link). Stops early at anything else (the segment's
    /// end, a fault): the caller then goes on with `next`, which takes the long way.
    #[inline]
    pub(crate) fn for_each_trusted(&mut self, through: u64, mut apply: impl FnMut(Record<'_>)) {
        let through = through.min(self.verified_through);
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        if cur.chain.next_sequence < self.skip_below {
            return;
        }
        let view = &*cur.view;
        let (mut offset, mut chain) = (cur.offset, cur.chain);
        while chain.next_sequence <= through {
            let available = view.len() - offset;
            // Published first: only then are the entry's bytes final (a live writer).
            if available < RECORD_HEADER_SIZE + END_MARKER_SIZE
                || view.magic_acquire(offset) != RECORD_MAGIC
            {
                break;
            }
            let rest = view.bytes(offset, available);
            let Some((crc, size_bytes)) = link_known_record(rest, chain) else {
                break;
            };
            view.prefetch_streaming(offset + PREFETCH_AHEAD_BYTES);
            apply(decode_record(&rest[..size_bytes]));
            offset += size_bytes;
            chain = Chain {
                next_sequence: chain.next_sequence + 1,
                prev_crc: crc,
            };
        }
        cur.offset = offset;
        cur.chain = chain;
    }

    /// [`Current::step_known`] for the next record to return (not one a seek steps over).
    #[inline]
    fn step_known(&mut self) -> Option<(usize, usize)> {
        let cur = self.current.as_mut()?;
        let next = cur.chain.next_sequence;
        if next < self.skip_below {
            return None;
        }
        cur.step_known(next <= self.verified_through)
    }

    fn step(&mut self) -> Result<Step, JournalError> {
        let Some(cur) = self.current.as_mut() else {
            self.seek(self.skip_below)?;
            return Ok(if self.current.is_some() {
                Step::Again
            } else {
                Step::End
            });
        };
        let offset = cur.offset;
        let entry = if cur.chain.next_sequence < self.skip_below {
            step_over(&cur.view, offset, cur.chain)
        } else if cur.chain.next_sequence <= self.verified_through || cur.checked_ahead(offset) {
            skip_entry(&cur.view, offset, cur.chain)
        } else {
            read_entry(&cur.view, offset, cur.chain)
        };
        match entry {
            Ok(Entry::Record {
                sequence,
                crc,
                size_bytes,
            }) => {
                cur.offset += size_bytes;
                cur.chain = Chain {
                    next_sequence: sequence + 1,
                    prev_crc: crc,
                };
                if sequence < self.skip_below {
                    return Ok(Step::Again);
                }
                // Recovery's records are trusted already: nothing to check ahead.
                cur.returned_one(self.ahead_allowed && sequence > self.verified_through);
                Ok(Step::Ready { offset, size_bytes })
            }
            Ok(Entry::End { next_sequence }) => self.follow_marker(offset, next_sequence),
            Err(Fault::Hard(reason)) => Err(corrupted(
                &cur.seg.path,
                offset,
                cur.chain.next_sequence,
                reason,
            )),
            Err(Fault::Soft(damage)) => self.at_soft_fault(damage),
        }
    }

    /// Follows the current segment's end marker (at `offset`) into the segment it names. The
    /// writer makes that segment durable before it seals, so a missing one was deleted:
    /// `SuccessorMissing`, as `verify` reports it.
    fn follow_marker(&mut self, offset: usize, next_sequence: u64) -> Result<Step, JournalError> {
        let Some(cur) = self.current.as_ref() else {
            return Ok(Step::End);
        };
        check_end_marker(&cur.seg, offset, next_sequence)?;
        let next = SegmentFile {
            first_sequence: next_sequence,
            path: self.locate(next_sequence),
        };
        let Some(view) = open_view(&next.path)? else {
            let reason = CorruptionReason::SuccessorMissing { next_sequence };
            return Err(corrupted(&cur.seg.path, offset, next_sequence, reason));
        };
        let chain = cur.chain;
        self.enter_view(next, view, Some(chain))
    }

    /// Enters `seg`, continuing `chain` (or starting from its header when `None`). A missing
    /// file or a torn header with nothing valid after it is the current end: stay put.
    fn enter(&mut self, seg: SegmentFile, chain: Option<Chain>) -> Result<Step, JournalError> {
        match open_view(&seg.path)? {
            Some(view) => self.enter_view(seg, view, chain),
            None => Ok(Step::End),
        }
    }

    fn enter_view(
        &mut self,
        seg: SegmentFile,
        view: SegmentView,
        chain: Option<Chain>,
    ) -> Result<Step, JournalError> {
        let header = match check_segment_header(&view, &seg, chain)? {
            Ok(header) => header,
            Err(damage) => {
                let later = self.segments_after(seg.first_sequence)?;
                if let Some(evidence) = find_evidence_after(&view, seg.first_sequence, 0, &later)? {
                    let reason = CorruptionReason::DamagedBeforeValidData { damage, evidence };
                    return Err(corrupted(&seg.path, 0, seg.first_sequence, reason));
                }
                return Ok(Step::End);
            }
        };
        let chain = Chain {
            next_sequence: header.first_sequence,
            prev_crc: header.prev_crc,
        };
        let offset = SEGMENT_HEADER_SIZE;
        self.current = Some(Current {
            view: Arc::new(view),
            seg,
            offset,
            chain,
            clear_from: None,
            returned: 0,
            ahead: None,
            ahead_to: 0,
        });
        Ok(Step::Again)
    }

    /// Nothing valid at the current offset: the end for now, unless valid data follows it. A
    /// segment left unsealed by a crash in a rollover, whose successor continues it exactly
    /// (see `continues_unsealed`), is followed into that successor.
    fn at_soft_fault(&mut self, damage: Damage) -> Result<Step, JournalError> {
        let Some(cur) = self.current.as_ref() else {
            return Ok(Step::End);
        };
        let offset = cur.offset;
        if cur.clear_from.is_some_and(|clear| offset >= clear) {
            return Ok(Step::End);
        }
        let first = cur.seg.first_sequence;
        let later = self.segments_after(first)?;
        let Some(cur) = self.current.as_mut() else {
            return Ok(Step::End);
        };
        if continues_unsealed(&cur.view, offset, damage, cur.chain, later.first())? {
            let chain = cur.chain;
            let next = later[0].clone();
            return self.enter(next, Some(chain));
        }
        // The checksum helper may have scanned this segment's rest already, from here.
        let scanned = (cur.ahead.as_ref()).is_some_and(|ahead| ahead.found_clear_from(offset));
        let evidence = if scanned {
            find_evidence_in(&later)?
        } else {
            find_evidence_after(&cur.view, first, offset, &later)?
        };
        let Some(evidence) = evidence else {
            cur.clear_from = Some(offset);
            return Ok(Step::End);
        };
        // A live writer may have published this entry, and more, since we first looked.
        match read_entry(&cur.view, offset, cur.chain) {
            Err(Fault::Soft(_)) => {
                let reason = CorruptionReason::DamagedBeforeValidData { damage, evidence };
                Err(corrupted(
                    &cur.seg.path,
                    offset,
                    cur.chain.next_sequence,
                    reason,
                ))
            }
            _ => Ok(Step::Again),
        }
    }

    fn segments_after(&self, first_sequence: u64) -> Result<Vec<SegmentFile>, JournalError> {
        let mut segments = self.listing()?;
        segments.retain(|s| s.first_sequence > first_sequence);
        Ok(segments)
    }
}

/// Maps the segment at `path`; `None` if there is no such file.
fn open_view(path: &Path) -> Result<Option<SegmentView>, JournalError> {
    match SegmentView::open(path) {
        Ok(view) => Ok(Some(view)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(file_io(path)(err)),
    }
}

/// An entry a seek steps over: its payload is not hashed while a published entry follows it
/// (so it was written whole before that one); the last entry in view is fully checked, since
/// it may be a torn write that recovery would cut.
fn step_over(view: &SegmentView, offset: usize, chain: Chain) -> Result<Entry, Fault> {
    let stepped = skip_entry(view, offset, chain);
    if let Ok(Entry::Record { size_bytes, .. }) = stepped {
        let next = offset + size_bytes;
        if next < view.len() && view.magic_acquire(next) != 0 {
            return stepped;
        }
    }
    read_entry(view, offset, chain)
}
