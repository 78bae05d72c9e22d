//! The recovery scan: validate every segment and record, and tell a torn tail from corruption
//! (rules in `docs/journal_format.md`, "Recovery"). The scan itself never modifies anything; the
//! writer applies its result, and [`verify`] only reports it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::dir::{list_segments, DirLock, SegmentFile};
use super::error::{file_io, CorruptionReason, Damage, Evidence, EvidenceKind, JournalError};
use super::format::{
    check_crc, check_entry, check_entry_links, encode_end_marker, entry_size_bytes, sequence_of,
    Chain, Entry, Fault, SegmentHeader, END_MAGIC, END_MARKER_SIZE, FORMAT_VERSION,
    FORMAT_VERSION_UNNAMED, MIN_SEGMENT_SIZE_BYTES, PAGE_SIZE_BYTES, RECORD_ALIGN_BYTES,
    RECORD_HEADER_SIZE, RECORD_MAGIC, SEGMENT_HEADER_SIZE,
};
use super::progress::{ScanProgress, PUBLISH_EVERY_RECORDS};
use super::retention::RetiredHistory;
use super::segment::SegmentView;

/// What a read-only [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files in the journal.
    pub segment_count: usize,
    /// First sequence of the oldest segment (`None` when there are no segments).
    pub first_sequence: Option<u64>,
    /// Sequence of the last valid record (0 when there is none).
    pub last_sequence: u64,
    /// Valid records found.
    pub record_count: u64,
    /// How the journal ends.
    pub tail: TailState,
    /// What keel's journal retention retired before the journal's start, if anything.
    pub retired: Option<RetiredHistory>,
}

/// How a journal that is not corrupted ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TailState {
    /// No segment files.
    Empty,
    /// The last segment's data ends at `offset`; the rest of it is zero.
    Clean {
        /// The last segment.
        segment: PathBuf,
        /// Where the next record goes.
        offset: u64,
    },
    /// A torn write: the writer will zero from `offset` and delete `orphan_segments`.
    Torn {
        /// Segment holding the torn bytes (or whose header is torn, at offset 0).
        segment: PathBuf,
        /// Where the valid data ends.
        offset: u64,
        /// What the torn bytes look like.
        damage: Damage,
        /// Non-zero bytes from `offset` to the last non-zero byte of the segment.
        torn_bytes: u64,
        /// Later segment files holding nothing valid.
        orphan_segments: Vec<PathBuf>,
    },
}

/// Validates the whole journal in `dir` without modifying anything, and reports whether it
/// ends cleanly or with a torn tail. Corruption is returned as [`JournalError::Corrupted`],
/// and so is a sealed last segment whose successor is missing (`SuccessorMissing`: the writer
/// makes a successor durable before it seals, so its segment file was deleted).
/// Takes a shared lock: fails with `Locked` while a writer has the journal open.
pub fn verify(dir: &Path) -> Result<VerifyReport, JournalError> {
    let _lock = DirLock::shared(dir)?;
    scan(dir)?.report()
}

/// The result of scanning a journal that is not corrupted.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) segments: Vec<SegmentFile>,
    pub(crate) record_count: u64,
    /// The chain after the last valid record (where the next record continues).
    pub(crate) chain: Chain,
    pub(crate) end: ScanEnd,
    /// Segments left unsealed by a crash during rollover, each continued by its successor.
    pub(crate) unsealed: Vec<Unsealed>,
    /// The newest valid segment header naming a service: the file and the name.
    pub(crate) service: Option<(PathBuf, String)>,
    /// The retention marker: what keel retired before the journal's start.
    pub(crate) retired: Option<RetiredHistory>,
}

impl Scan {
    /// Refuses a journal whose segments name a service other than `name`. Unnamed segments
    /// (format version 1) and an unnamed `name` match anything.
    pub(crate) fn refuse_other_service(&self, name: &str) -> Result<(), JournalError> {
        match &self.service {
            Some((segment, found)) if !name.is_empty() && found != name => {
                Err(JournalError::WrongService {
                    segment: segment.clone(),
                    found: found.clone(),
                    expected: name.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// A segment whose records end cleanly without an end marker, followed by a successor that
/// continues the chain exactly there: a crash in a rollover between making the successor
/// durable and sealing this segment. A valid boundary, to be sealed by the next writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsealed {
    /// Index in `Scan::segments`.
    pub(crate) segment: usize,
    /// Where its end marker belongs.
    pub(crate) offset: usize,
    /// The chain after its last record: what the marker names.
    pub(crate) chain: Chain,
}

/// Where the valid journal ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// No segments at all.
    Empty,
    /// Every segment is sealed, the last one (end marker at `marker_offset`) too: its
    /// successor is missing. Refused by `verify` and `JournalOpening::finish`.
    Sealed { marker_offset: usize },
    /// `segments[segment]` has a valid header and its data ends at `offset` with `damage`
    /// (`Unwritten` for a clean end); bytes up to `nonzero_end` are torn; later files are orphans.
    Open {
        segment: usize,
        offset: usize,
        damage: Damage,
        nonzero_end: usize,
    },
    /// `segments[segment..]` hold nothing valid, starting with a bad header. The chain
    /// continues from the segment before; for `segment == 0` the journal restarts at 1 (a
    /// torn oldest segment not named 1 is refused as `ChainSeedLost`).
    HeaderTorn { segment: usize },
}

impl Scan {
    /// Files that hold nothing valid and go away when the tail is cut.
    pub(crate) fn orphans(&self) -> &[SegmentFile] {
        match self.end {
            ScanEnd::Empty | ScanEnd::Sealed { .. } => &[],
            ScanEnd::Open { segment, .. } => &self.segments[segment + 1..],
            ScanEnd::HeaderTorn { segment } => &self.segments[segment..],
        }
    }

    /// The sealed last segment, when the journal ends there (its successor is missing).
    pub(crate) fn missing_successor(&self) -> Option<&Path> {
        match self.end {
            ScanEnd::Sealed { .. } => self.segments.last().map(|s| s.path.as_path()),
            _ => None,
        }
    }

    /// `Corrupted { reason: SuccessorMissing }` when the journal ends at a sealed segment.
    pub(crate) fn refuse_missing_successor(&self) -> Result<(), JournalError> {
        let (ScanEnd::Sealed { marker_offset }, Some(last)) = (self.end, self.segments.last())
        else {
            return Ok(());
        };
        let next_sequence = self.chain.next_sequence;
        let reason = CorruptionReason::SuccessorMissing { next_sequence };
        Err(corrupted(&last.path, marker_offset, next_sequence, reason))
    }

    /// What `verify` reports: refuses a journal ending sealed (its successor is missing).
    fn report(&self) -> Result<VerifyReport, JournalError> {
        self.refuse_missing_successor()?;
        let orphan_segments = self.orphans().iter().map(|s| s.path.clone()).collect();
        let last = |i: usize| self.segments[i].path.clone();
        let tail = match self.end {
            ScanEnd::Empty => TailState::Empty,
            ScanEnd::Sealed { .. } => unreachable!("refused above"),
            ScanEnd::Open {
                segment,
                offset,
                nonzero_end,
                ..
            } if nonzero_end == offset && segment + 1 == self.segments.len() => TailState::Clean {
                segment: last(segment),
                offset: offset as u64,
            },
            ScanEnd::Open {
                segment,
                offset,
                damage,
                nonzero_end,
            } => TailState::Torn {
                segment: last(segment),
                offset: offset as u64,
                damage,
                torn_bytes: (nonzero_end - offset) as u64,
                orphan_segments,
            },
            ScanEnd::HeaderTorn { segment } => TailState::Torn {
                segment: last(segment),
                offset: 0,
                damage: Damage::BadSegmentHeader,
                torn_bytes: 0,
                orphan_segments,
            },
        };
        Ok(VerifyReport {
            segment_count: self.segments.len(),
            first_sequence: self.segments.first().map(|s| s.first_sequence),
            last_sequence: self.chain.next_sequence - 1,
            record_count: self.record_count,
            tail,
            retired: self.retired.clone(),
        })
    }
}

/// Scans every segment of `dir`, oldest first. Never modifies anything. A journal ending at a
/// sealed segment is returned (`ScanEnd::Sealed`), for the caller to refuse or accept.
pub(crate) fn scan(dir: &Path) -> Result<Scan, JournalError> {
    scan_publishing(dir, None)
}

/// [`scan`], publishing its progress to `progress` when given: the segments are then walked
/// one after the other, in order, each once its header is known to continue the journal, so
/// that every sequence published is validated (see [`ScanProgress`]).
pub(crate) fn scan_publishing(
    dir: &Path,
    progress: Option<&ScanProgress>,
) -> Result<Scan, JournalError> {
    let retired = RetiredHistory::read(dir)?;
    let segments = list_segments(dir)?;
    let mut walks = match progress {
        None => walk_each(&segments).into_iter(),
        Some(_) => Vec::new().into_iter(),
    };
    let mut found = Found {
        retired_chain: retired.as_ref().map(|r| (r.first_sequence, r.chain_in)),
        publish: progress,
        ..Found::default()
    };
    for index in 0..segments.len() {
        let (view, walked) = match walks.next() {
            Some(walk) => walk?,
            None => (open_segment(&segments[index])?, None),
        };
        if let Some(end) = found.add(&segments, index, &view, walked)? {
            return Ok(found.into_scan(segments, end, retired));
        }
    }
    let end = if segments.is_empty() {
        ScanEnd::Empty
    } else {
        ScanEnd::Sealed {
            marker_offset: found.marker_offset,
        }
    };
    Ok(found.into_scan(segments, end, retired))
}

/// What a scan has established so far, segment by segment.
#[derive(Debug, Default)]
struct Found<'p> {
    /// Where validated records are published as they are walked (segments walked in order).
    publish: Option<&'p ScanProgress>,
    /// The chain after the last segment added (`None` before the first).
    chain: Option<Chain>,
    record_count: u64,
    unsealed: Vec<Unsealed>,
    /// Offset of the end marker of the last segment added, when it is sealed.
    marker_offset: usize,
    /// The newest header naming a service.
    service: Option<(PathBuf, String)>,
    /// The retention marker's first kept sequence and the chain value it recorded there.
    retired_chain: Option<(u64, u32)>,
}

impl Found<'_> {
    /// Adds segment `index` (its mapping and its walk): `Some(end)` when the valid journal
    /// ends in it, `Err` for corruption.
    fn add(
        &mut self,
        segments: &[SegmentFile],
        index: usize,
        view: &SegmentView,
        walked: Option<Result<Walked, JournalError>>,
    ) -> Result<Option<ScanEnd>, JournalError> {
        let seg = &segments[index];
        let header = match check_segment_header(view, seg, self.chain)? {
            Ok(header) => header,
            Err(damage) => {
                let expected = self.chain.map_or(seg.first_sequence, |c| c.next_sequence);
                let fault = FaultAt {
                    segments,
                    index,
                    offset: 0,
                    damage,
                    expected,
                };
                fault.settle_header(view)?;
                return Ok(Some(ScanEnd::HeaderTorn { segment: index }));
            }
        };
        // The segment where retention says the kept journal starts must continue the history
        // it retired: its chain-in value is the one the marker recorded.
        if let Some((_, recorded)) = self
            .retired_chain
            .filter(|&(first, chain)| first == header.first_sequence && chain != header.prev_crc)
        {
            let reason = CorruptionReason::ChainBreak {
                expected: recorded,
                found: header.prev_crc,
            };
            return Err(corrupted(&seg.path, 0, header.first_sequence, reason));
        }
        // The walk starts from this same header's chain; now that the header is known to link
        // to the previous segment, its result stands. Walked here when not walked ahead (in
        // parallel), publishing as it goes.
        let walked = match walked {
            Some(walked) => walked?,
            None => {
                let publish = (self.publish).filter(|p| p.publishes_for(header.service_name()));
                walk_segment(view, seg, &header, publish)?
            }
        };
        if !header.service_name().is_empty() {
            self.service = Some((seg.path.clone(), header.service_name().to_owned()));
        }
        debug_assert_eq!(walked.start.next_sequence, header.first_sequence);
        let here = walked.end;
        self.record_count += walked.records;
        self.chain = Some(here);
        match walked.stop {
            WalkEnd::Sealed { marker_offset } => {
                self.marker_offset = marker_offset;
                Ok(None)
            }
            WalkEnd::Stopped { offset, damage } => {
                self.stopped(segments, index, view, (offset, damage), here)
            }
        }
    }

    /// Segment `index` stops at `offset` with `damage`: a boundary if its successor continues
    /// it there, otherwise the end of the journal (torn or clean), or corruption.
    fn stopped(
        &mut self,
        segments: &[SegmentFile],
        index: usize,
        view: &SegmentView,
        (offset, damage): (usize, Damage),
        here: Chain,
    ) -> Result<Option<ScanEnd>, JournalError> {
        if continues_unsealed(view, offset, damage, here, segments.get(index + 1))? {
            let segment = index;
            let chain = here;
            self.unsealed.push(Unsealed {
                segment,
                offset,
                chain,
            });
            return Ok(None);
        }
        let expected = here.next_sequence;
        let fault = FaultAt {
            segments,
            index,
            offset,
            damage,
            expected,
        };
        let nonzero_end = fault.settle(view)?;
        Ok(Some(ScanEnd::Open {
            segment: index,
            offset,
            damage,
            nonzero_end,
        }))
    }

    fn into_scan(
        self,
        segments: Vec<SegmentFile>,
        end: ScanEnd,
        retired: Option<RetiredHistory>,
    ) -> Scan {
        Scan {
            retired,
            segments,
            record_count: self.record_count,
            chain: self.chain.unwrap_or(Chain::GENESIS),
            end,
            unsealed: self.unsealed,
            service: self.service,
        }
    }
}

/// Whether a segment whose records stop at `offset` with `damage` (checked against `chain`)
/// ends at an "unsealed but continued" boundary: `next`, the following segment file, is named
/// for `chain` and has a valid header that continues `chain` exactly; the segment holds only
/// zeros after the end-marker slot at `offset`; and the slot holds no marker or a partly
/// written one (see [`torn_end_marker`]). A rollover makes the successor durable before it
/// seals, so a crash between the two leaves exactly this; the exact continuation proves that
/// no record of this segment is missing (its header names the sequence and CRC of the last).
///
/// Safe on a live segment without the lock: bytes are viewed only once a successor exists,
/// when the writer has stopped appending to this segment and writes only its marker slot.
pub(crate) fn continues_unsealed(
    view: &SegmentView,
    offset: usize,
    damage: Damage,
    chain: Chain,
    next: Option<&SegmentFile>,
) -> Result<bool, JournalError> {
    let Some(next) = next.filter(|n| n.first_sequence == chain.next_sequence) else {
        return Ok(false);
    };
    let marker_end = offset + END_MARKER_SIZE;
    if marker_end > view.len() {
        return Ok(false);
    }
    let next_view = match SegmentView::open(&next.path) {
        Ok(view) => view,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(file_io(&next.path)(err)),
    };
    // A successor that does not continue exactly is left to the usual rules (its valid
    // header is evidence after the fault: corruption).
    if !matches!(
        check_segment_header(&next_view, next, Some(chain)),
        Ok(Ok(_))
    ) {
        return Ok(false);
    }
    Ok(torn_end_marker(view, offset, damage, chain)
        && first_nonzero_from(view, marker_end).is_none())
}

/// Whether the end-marker slot at `offset` (with `damage`) holds what an interrupted sealing
/// can leave: an unpublished marker (zero magic; a live writer may be writing the rest, so
/// it is not viewed), or the end magic over bytes each of which is zero or the marker's own
/// (`chain` determines every byte of it), as a power cut that persisted part of it leaves.
/// A flipped bit in a sealed marker is neither, and stays corruption.
fn torn_end_marker(view: &SegmentView, offset: usize, damage: Damage, chain: Chain) -> bool {
    match damage {
        Damage::Unwritten => true,
        Damage::BadChecksum { .. } if view.magic_acquire(offset) == END_MAGIC => {
            let mut expected = [0u8; END_MARKER_SIZE];
            encode_end_marker(&mut expected, chain.next_sequence, chain.prev_crc);
            expected[..4].copy_from_slice(&END_MAGIC.to_le_bytes());
            let found = view.bytes(offset, END_MARKER_SIZE);
            found.iter().zip(expected).all(|(&f, e)| f == 0 || f == e)
        }
        _ => false,
    }
}

/// One segment's records walked on their own, from the chain its header states.
struct Walked {
    start: Chain,
    end: Chain,
    records: u64,
    stop: WalkEnd,
}

/// Where one segment's walk ended.
#[derive(Debug, Clone, Copy)]
enum WalkEnd {
    /// At a valid end marker, with zeros after it.
    Sealed { marker_offset: usize },
    /// Where and how its valid data stops.
    Stopped { offset: usize, damage: Damage },
}

/// A segment's mapping, and its walk when its header decodes on its own.
type SegmentWalk = Result<(SegmentView, Option<Result<Walked, JournalError>>), JournalError>;

/// Opens and walks every segment, in parallel on up to 4 threads (validating a journal is CRC
/// work proportional to its size: ~0.2 s per 800 MB on one core here). Each walk starts from
/// the chain its own segment header states; `scan` then checks, in order, that each header
/// continues the previous segment's chain, so the result is exactly a sequential walk's.
fn walk_each(segments: &[SegmentFile]) -> Vec<SegmentWalk> {
    let walk_one = |seg: &SegmentFile| -> SegmentWalk {
        let view = open_segment(seg)?;
        let walked = match check_segment_header(&view, seg, None) {
            Ok(Ok(header)) => Some(walk_segment(&view, seg, &header, None)),
            _ => None,
        };
        Ok((view, walked))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if threads < 2 || segments.len() < 2 {
        return segments.iter().map(walk_one).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, SegmentWalk)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(segments.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(seg) = segments.get(i) else {
                            return mine;
                        };
                        mine.push((i, walk_one(seg)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, walk)| walk).collect()
}

fn open_segment(seg: &SegmentFile) -> Result<SegmentView, JournalError> {
    SegmentView::open(&seg.path).map_err(file_io(&seg.path))
}

/// Walks the records of one segment from the chain its `header` states, publishing to
/// `publish` (when given) every few records and where the walk ends.
fn walk_segment(
    view: &SegmentView,
    seg: &SegmentFile,
    header: &SegmentHeader,
    publish: Option<&ScanProgress>,
) -> Result<Walked, JournalError> {
    let start = Chain {
        next_sequence: header.first_sequence,
        prev_crc: header.prev_crc,
    };
    let (mut end, mut records) = (start, 0);
    let stop = walk_records(view, seg, (&mut end, &mut records), publish);
    if let Some(progress) = publish.filter(|_| stop.is_ok()) {
        progress.publish(end.next_sequence - 1);
    }
    Ok(Walked {
        start,
        end,
        records,
        stop: stop?,
    })
}

/// Walks the records of one segment from `chain`: to its end marker (valid, zeros after it),
/// or to where and how the valid data stops. Publishes every few records to `publish`.
fn walk_records(
    view: &SegmentView,
    seg: &SegmentFile,
    (chain, record_count): (&mut Chain, &mut u64),
    publish: Option<&ScanProgress>,
) -> Result<WalkEnd, JournalError> {
    let mut offset = SEGMENT_HEADER_SIZE;
    loop {
        match read_entry(view, offset, *chain) {
            Ok(Entry::Record {
                sequence,
                crc,
                size_bytes,
            }) => {
                *chain = Chain {
                    next_sequence: sequence + 1,
                    prev_crc: crc,
                };
                *record_count += 1;
                offset += size_bytes;
                if let Some(progress) = publish.filter(|_| sequence % PUBLISH_EVERY_RECORDS == 0) {
                    progress.publish(sequence);
                }
            }
            Ok(Entry::End { next_sequence }) => {
                check_end_marker(seg, offset, next_sequence)?;
                let after = offset + END_MARKER_SIZE;
                if let Some(at) = first_nonzero_from(view, after) {
                    let reason = CorruptionReason::NonZeroAfterEndMarker { offset: at as u64 };
                    return Err(corrupted(&seg.path, offset, chain.next_sequence, reason));
                }
                return Ok(WalkEnd::Sealed {
                    marker_offset: offset,
                });
            }
            Err(Fault::Hard(reason)) => {
                return Err(corrupted(&seg.path, offset, chain.next_sequence, reason))
            }
            Err(Fault::Soft(damage)) => return Ok(WalkEnd::Stopped { offset, damage }),
        }
    }
}

/// An end marker (at `offset` of `seg`) must name a later segment. One naming its own
/// segment (an empty sealed segment, which the writer never produces) is corruption: followed,
/// it would lead back into the same file forever.
pub(crate) fn check_end_marker(
    seg: &SegmentFile,
    offset: usize,
    next_sequence: u64,
) -> Result<(), JournalError> {
    if next_sequence > seg.first_sequence {
        return Ok(());
    }
    let reason = CorruptionReason::EndMarkerDoesNotAdvance { next_sequence };
    Err(corrupted(&seg.path, offset, next_sequence, reason))
}

/// The first soft fault of a scan.
struct FaultAt<'a> {
    segments: &'a [SegmentFile],
    index: usize,
    offset: usize,
    damage: Damage,
    expected: u64,
}

impl FaultAt<'_> {
    /// Corruption if valid data follows the fault; otherwise the end of its non-zero bytes.
    fn settle(&self, view: &SegmentView) -> Result<usize, JournalError> {
        let seg = &self.segments[self.index];
        let later = &self.segments[self.index + 1..];
        if let Some(evidence) = find_evidence_after(view, seg.first_sequence, self.offset, later)? {
            let reason = CorruptionReason::DamagedBeforeValidData {
                damage: self.damage,
                evidence,
            };
            return Err(corrupted(&seg.path, self.offset, self.expected, reason));
        }
        let end = last_nonzero_from(view, self.offset).map_or(self.offset, |at| at + 1);
        Ok(end.next_multiple_of(RECORD_ALIGN_BYTES).min(view.len()))
    }

    /// For a torn segment header: corruption if valid data follows, or if it is the oldest
    /// segment but not named 1 (older segments were removed, and its header held the chain
    /// seed, so nothing can continue it); otherwise the journal ends before it.
    fn settle_header(&self, view: &SegmentView) -> Result<(), JournalError> {
        self.settle(view)?;
        let seg = &self.segments[self.index];
        if self.index == 0 && seg.first_sequence != 1 {
            let reason = CorruptionReason::ChainSeedLost;
            return Err(corrupted(&seg.path, 0, seg.first_sequence, reason));
        }
        Ok(())
    }
}

/// Reads and checks the entry at `offset` against `chain`. Safe on a live segment: the entry's
/// bytes are viewed only once its magic word is published.
#[inline]
pub(crate) fn read_entry(view: &SegmentView, offset: usize, chain: Chain) -> Result<Entry, Fault> {
    read_entry_checked(view, offset, chain, check_entry)
}

/// [`read_entry`] without hashing the payload ([`check_entry_links`]): for entries a reader
/// steps over while seeking.
#[inline]
pub(crate) fn skip_entry(view: &SegmentView, offset: usize, chain: Chain) -> Result<Entry, Fault> {
    read_entry_checked(view, offset, chain, check_entry_links)
}

/// Generic over `check` so that each use inlines it (replay calls this once per record).
#[inline]
fn read_entry_checked(
    view: &SegmentView,
    offset: usize,
    chain: Chain,
    check: impl Fn(&[u8], Chain) -> Result<Entry, Fault>,
) -> Result<Entry, Fault> {
    let available = view.len().saturating_sub(offset);
    if available < END_MARKER_SIZE {
        return Err(Fault::Soft(Damage::BadLength { payload_bytes: 0 }));
    }
    if view.magic_acquire(offset) == 0 {
        return Err(Fault::Soft(Damage::Unwritten));
    }
    let header = view.bytes(offset, RECORD_HEADER_SIZE);
    let size = entry_size_bytes(header, available).map_err(Fault::Soft)?;
    check(view.bytes(offset, size), chain)
}

/// Checks a segment's header: `Ok(Err(damage))` for a soft fault (bad magic or CRC), `Err` for
/// a hard one (name, size, sequence or chain disagree; unsupported format).
pub(crate) fn check_segment_header(
    view: &SegmentView,
    seg: &SegmentFile,
    expected: Option<Chain>,
) -> Result<Result<SegmentHeader, Damage>, JournalError> {
    let file_bytes = view.len() as u64;
    let header = match SegmentHeader::decode(view.bytes(0, view.len().min(SEGMENT_HEADER_SIZE))) {
        Ok(header) => header,
        Err(damage) => return Ok(Err(damage)),
    };
    let readable = matches!(
        header.format_version,
        FORMAT_VERSION | FORMAT_VERSION_UNNAMED
    );
    if !readable || header.codec_id != crate::codec::CODEC_ID {
        return Err(JournalError::UnsupportedFormat {
            segment: seg.path.clone(),
            format_version: header.format_version,
            codec_id: header.codec_id,
        });
    }
    let expected_sequence = expected.map_or(seg.first_sequence, |c| c.next_sequence);
    let size = header.segment_size_bytes;
    let reason = if header.first_sequence != seg.first_sequence {
        let header_sequence = header.first_sequence;
        Some(CorruptionReason::NameMismatch {
            name_sequence: seg.first_sequence,
            header_sequence,
        })
    } else if size != file_bytes || size < MIN_SEGMENT_SIZE_BYTES || size % PAGE_SIZE_BYTES != 0 {
        Some(CorruptionReason::SizeMismatch {
            header_bytes: size,
            file_bytes,
        })
    } else if header.first_sequence != expected_sequence || header.first_sequence == 0 {
        let found = header.first_sequence;
        Some(CorruptionReason::SequenceGap {
            expected: expected_sequence.max(1),
            found,
        })
    } else {
        expected
            .filter(|c| c.prev_crc != header.prev_crc)
            .map(|c| CorruptionReason::ChainBreak {
                expected: c.prev_crc,
                found: header.prev_crc,
            })
    };
    match reason {
        Some(reason) => Err(corrupted(&seg.path, 0, expected_sequence, reason)),
        None => Ok(Ok(header)),
    }
}

/// Looks for valid data after a soft fault at `offset` of the segment in `view` (named for
/// `first_sequence`): later in that segment, then in each `later` segment file.
pub(crate) fn find_evidence_after(
    view: &SegmentView,
    first_sequence: u64,
    offset: usize,
    later: &[SegmentFile],
) -> Result<Option<Evidence>, JournalError> {
    if let Some(evidence) = scan_for_evidence(view, offset + RECORD_ALIGN_BYTES, first_sequence) {
        return Ok(Some(evidence));
    }
    find_evidence_in(later)
}

/// Whether the segment in `view` holds valid data after a soft fault at `offset`: the part of
/// [`find_evidence_after`] within that segment (a reader's checksum helper runs it ahead).
pub(crate) fn valid_data_after(view: &SegmentView, offset: usize) -> bool {
    scan_for_evidence(view, offset + RECORD_ALIGN_BYTES, 0).is_some()
}

/// The part of [`find_evidence_after`] in the `later` segment files: a valid segment header
/// or a valid entry in any of them.
pub(crate) fn find_evidence_in(later: &[SegmentFile]) -> Result<Option<Evidence>, JournalError> {
    for seg in later {
        let other = match SegmentView::open(&seg.path) {
            Ok(view) => view,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(file_io(&seg.path)(err)),
        };
        let header_bytes = other.bytes(0, other.len().min(SEGMENT_HEADER_SIZE));
        if let Ok(header) = SegmentHeader::decode(header_bytes) {
            let kind = EvidenceKind::SegmentHeader {
                first_sequence: header.first_sequence,
            };
            return Ok(Some(Evidence {
                segment_first_sequence: seg.first_sequence,
                offset: 0,
                kind,
            }));
        }
        if let Some(evidence) = scan_for_evidence(&other, RECORD_ALIGN_BYTES, seg.first_sequence) {
            return Ok(Some(evidence));
        }
    }
    Ok(None)
}

/// The first entry at an 8-aligned offset `>= from` whose magic, length and CRC are valid on
/// their own (no chain check).
fn scan_for_evidence(view: &SegmentView, from: usize, first_sequence: u64) -> Option<Evidence> {
    let last = view.len().checked_sub(RECORD_HEADER_SIZE)?;
    let mut offset = from.next_multiple_of(RECORD_ALIGN_BYTES);
    while offset <= last {
        // Zero words start nothing: skip them a cache line at a time (an unwritten segment
        // tail is most of a segment).
        offset = view.next_nonzero_word(offset)?;
        if offset > last {
            return None;
        }
        let magic = view.magic_acquire(offset);
        if magic == RECORD_MAGIC || magic == END_MAGIC {
            let header = view.bytes(offset, RECORD_HEADER_SIZE);
            if let Ok(size) = entry_size_bytes(header, view.len() - offset) {
                let bytes = view.bytes(offset, size);
                if check_crc(bytes).is_ok() {
                    let sequence = sequence_of(bytes);
                    let kind = if magic == END_MAGIC {
                        EvidenceKind::EndMarker {
                            next_sequence: sequence,
                        }
                    } else {
                        EvidenceKind::Record { sequence }
                    };
                    let segment_first_sequence = first_sequence;
                    return Some(Evidence {
                        segment_first_sequence,
                        offset: offset as u64,
                        kind,
                    });
                }
            }
        }
        offset += RECORD_ALIGN_BYTES;
    }
    None
}

/// Offset of the first non-zero byte of `view` at or after `from`, reading only the ranges
/// its file may hold data in ([`SegmentView::data_ranges`]). Views the bytes as a slice: only
/// for bytes nobody writes any more (see [`SegmentView::bytes`]).
fn first_nonzero_from(view: &SegmentView, from: usize) -> Option<usize> {
    view.data_ranges(from)
        .find_map(|r| first_nonzero(view.bytes(r.start, r.len())).map(|at| r.start + at))
}

/// Offset of the last non-zero byte of `view` at or after `from`, reading only the ranges its
/// file may hold data in (each one, from the first on: there is no seek backwards). As
/// [`first_nonzero_from`], only for bytes nobody writes any more.
pub(crate) fn last_nonzero_from(view: &SegmentView, from: usize) -> Option<usize> {
    view.data_ranges(from)
        .filter_map(|r| last_nonzero(view.bytes(r.start, r.len())).map(|at| r.start + at))
        .last()
}

/// Bytes per block in the zero scans: big enough for the compiler to vectorize the OR.
const ZERO_SCAN_BLOCK_BYTES: usize = 256;

/// Index of the first non-zero byte.
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut base = 0;
    for block in bytes.chunks(ZERO_SCAN_BLOCK_BYTES) {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return block.iter().position(|&b| b != 0).map(|i| base + i);
        }
        base += block.len();
    }
    None
}

/// Index of the last non-zero byte.
fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut end = bytes.len();
    for block in bytes.rchunks(ZERO_SCAN_BLOCK_BYTES) {
        let start = end - block.len();
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return block.iter().rposition(|&b| b != 0).map(|i| start + i);
        }
        end = start;
    }
    None
}

pub(crate) fn corrupted(
    segment: &Path,
    offset: usize,
    expected_sequence: u64,
    reason: CorruptionReason,
) -> JournalError {
    JournalError::Corrupted {
        segment: segment.to_owned(),
        offset: offset as u64,
        expected_sequence,
        reason,
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segments, {} records",
            self.segment_count, self.record_count
        )?;
        if let Some(first) = self.first_sequence {
            write!(f, ", sequences {first}..={}", self.last_sequence)?;
        }

        match &self.tail {
            TailState::Empty => write!(f, ", empty"),
            TailState::Clean { segment, offset } => {
                write!(f, ", clean end at {}:{offset}", segment.display())
            }
            TailState::Torn {
                segment,
                offset,
                damage,
                torn_bytes,
                orphan_segments,
            } => write!(
                f,
                ", torn tail at {}:{offset} ({damage}; {torn_bytes} bytes, {} orphan files)",
                segment.display(),
                orphan_segments.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_scans() {
        let mut v = vec![0u8; 1000];
        assert_eq!(first_nonzero(&v), None);
        assert_eq!(last_nonzero(&v), None);
        v[3] = 1;
        v[700] = 2;
        assert_eq!(first_nonzero(&v), Some(3));
        assert_eq!(last_nonzero(&v), Some(700));
        assert_eq!(last_nonzero(&v[..500]), Some(3));
    }
}
