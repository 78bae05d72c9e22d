//! The one journal writer: recovery on open, allocation-free appends, group commit, rollover.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::commit::{Committer, DurableWaker};
use super::config::{FlushPolicy, JournalConfig, SegmentPrep};
use super::dir::{remove_spares, segment_file_name, DirLock, SegmentPath, SPARE_FILE_NAME};
use super::error::{file_io, is_disk_full, Damage, JournalError};
use super::format::{
    check_entry, encode_end_marker, encode_record, record_size_bytes, Chain, Record, SegmentHeader,
    END_MAGIC, END_MARKER_SIZE, RECORD_MAGIC, SEGMENT_HEADER_SIZE,
};
use super::io::{RealIo, SegmentIo};
use super::lead::{Lead, LeadTarget, StepKind, STEP_BYTES};
use super::prepare::{prepare_spare, Preparer, Spare, SpareSpec, HANDOVER_BYTES, NUDGE_BYTES};
use super::progress::ScanProgress;
use super::recovery::{scan_publishing, Scan, ScanEnd, Unsealed};
use super::retention::{RetiredHistory, RETIRED_FILE_NAME};
use super::segment::MappedSegment;
use super::sync_handle::JournalSyncHandle;
use crate::ring::Sequence;

/// How far ahead of the record being appended the writer prefetches the segment's lines for
/// writing ([`MappedSegment::prefetch_for_write`]): a few records of ~120 bytes, so the lines
/// arrive before the stores that need them.
const WRITE_PREFETCH_AHEAD_BYTES: usize = 512;

/// Appends records to the journal. Exactly one per directory (enforced by a lock file).
#[derive(Debug)]
pub struct JournalWriter {
    dir: PathBuf,
    /// The next segment's path, formatted at rollover into a buffer sized at open.
    segment_path: SegmentPath,
    flush: FlushPolicy,
    max_payload_bytes: u32,
    segment_size_bytes: u64,
    /// Service name and schema version stamped into each new segment header.
    service: (String, u32),
    io: Arc<dyn SegmentIo>,
    active: Active,
    chain: Chain,
    last_sync: Instant,
    poisoned: Option<String>,
    preparer: Preparer,
    /// Under `batch`: the syncer that makes batches durable while the next one is appended.
    committer: Option<Committer>,
    // Declared last: dropped after the preparer thread has finished with the directory.
    _lock: DirLock,
}

/// The segment being appended to.
#[derive(Debug)]
struct Active {
    map: MappedSegment,
    /// Where the next entry goes.
    write_pos: usize,
    /// Everything before this offset is durable.
    synced_to: usize,
    /// Under `SegmentPrep::Adaptive`: which bytes are the writer's while the preparer prepares
    /// ahead of it (see `lead`).
    lead: Option<Arc<Lead>>,
    /// The writer owns every byte before this offset (the whole segment without a lead).
    owned_to: usize,
    /// When `write_pos` reaches this offset, `end_batch` nudges the preparer to prepare
    /// further ahead; `usize::MAX` without a lead.
    next_nudge: usize,
}

impl Active {
    fn new(map: MappedSegment, write_pos: usize, lead: Option<&LeadTarget>) -> Self {
        let lead = lead.map(|target| Arc::clone(&target.lead));
        let owned_to = lead.as_ref().map_or(map.len(), |lead| lead.ready_to());
        let next_nudge = match &lead {
            Some(lead) => {
                lead.nudge(write_pos);
                write_pos + NUDGE_BYTES
            }
            None => usize::MAX,
        };
        Active {
            map,
            write_pos,
            synced_to: write_pos,
            lead,
            owned_to,
            next_nudge,
        }
    }

    /// Makes the bytes before `end` the writer's (see `lead`: it may wait for the preparer's
    /// current 16 KiB write).
    #[cold]
    fn claim(&mut self, end: usize) {
        if let Some(lead) = &self.lead {
            self.owned_to = lead.claim(end);
        }
    }

    /// Whether a record of `size_bytes` fits and still leaves room for the end marker.
    #[inline]
    fn fits(&self, size_bytes: usize) -> bool {
        self.write_pos + size_bytes + END_MARKER_SIZE <= self.map.len()
    }

    fn is_dirty(&self) -> bool {
        self.write_pos > self.synced_to
    }
}

/// A journal scanned under the writer's exclusive lock, nothing modified yet: the caller can
/// check where it ends before [`JournalOpening::finish`] applies the scan (cuts a torn tail,
/// removes orphans and spares, seals a segment a crash left unsealed, creates the segment to
/// append to) and opens the writer. Dropping it releases the lock and changes nothing.
#[derive(Debug)]
pub struct JournalOpening {
    cfg: JournalConfig,
    io: Arc<dyn SegmentIo>,
    lock: DirLock,
    scan: Scan,
}

impl JournalWriter {
    /// Locks the directory (exclusive; `Locked` if another writer holds it), recovers (validates
    /// every record, cuts a torn tail, refuses corruption before the tail and a sealed last
    /// segment whose successor is missing) and positions after the last valid record. Creates
    /// the directory and the first segment if needed, and returns once the spare segment for
    /// the first rollover is prepared as well (a failed preparation is reported at that
    /// rollover, as `DiskFull`). The same as `begin_open(cfg)?.finish()`.
    pub fn open(cfg: &JournalConfig) -> Result<JournalWriter, JournalError> {
        Self::begin_open(cfg)?.finish()
    }

    /// [`JournalWriter::open`] with an injected I/O implementation (tests, fault injection).
    pub fn open_with_io(
        cfg: &JournalConfig,
        io: Arc<dyn SegmentIo>,
    ) -> Result<JournalWriter, JournalError> {
        Self::begin_open_with_io(cfg, io)?.finish()
    }

    /// The first half of [`JournalWriter::open`]: creates the directory if needed, locks it
    /// and scans the journal, modifying nothing. Corruption is refused here already; a sealed
    /// last segment whose successor is missing is not (see
    /// [`JournalOpening::missing_successor`]), so that an operator can accept that loss.
    pub fn begin_open(cfg: &JournalConfig) -> Result<JournalOpening, JournalError> {
        Self::begin_open_with_io(cfg, Arc::new(RealIo))
    }

    /// [`JournalWriter::begin_open`] with an injected I/O implementation.
    pub fn begin_open_with_io(
        cfg: &JournalConfig,
        io: Arc<dyn SegmentIo>,
    ) -> Result<JournalOpening, JournalError> {
        Self::begin_open_publishing(cfg, io, None)
    }

    /// [`JournalWriter::begin_open_with_io`], publishing how far the scan has validated the
    /// journal to `progress` as it goes (a full replay follows it, see [`ScanProgress`]).
    pub(crate) fn begin_open_publishing(
        cfg: &JournalConfig,
        io: Arc<dyn SegmentIo>,
        progress: Option<&ScanProgress>,
    ) -> Result<JournalOpening, JournalError> {
        cfg.validate()?;
        std::fs::create_dir_all(&cfg.dir).map_err(file_io(&cfg.dir))?;
        let lock = DirLock::exclusive(&cfg.dir)?;
        // A truncation recorded but not finished (a crash during it) is finished first.
        super::truncate::finish_pending(&cfg.dir)?;
        // Scan first: a refused open (corruption) leaves every file as it was.
        let scan = scan_publishing(&cfg.dir, progress)?;
        scan.refuse_other_service(&cfg.service_name)?;
        Ok(JournalOpening {
            cfg: cfg.clone(),
            io,
            lock,
            scan,
        })
    }

    /// Removes every record after `sequence` from the journal in `dir`, offline, and returns
    /// how many it removed (replication: a node drops a suffix its cluster never committed).
    /// Takes the directory lock a writer takes, so it fails with [`JournalError::Locked`]
    /// while an engine, a writer or a `verify` has the journal open. Segments wholly after the
    /// cut are deleted; the segment holding `sequence` keeps its records up to it and is
    /// zeroed after them, so recovery sees a clean end and the next writer appends
    /// `sequence + 1` with the chain value of `sequence`. Files and the directory are synced;
    /// the cut is recorded first in `journal.truncating`, so a crash during it is finished by
    /// the next open or truncation. Refuses with [`JournalError::TruncateBeforeStart`] when
    /// `sequence + 1` is before the journal's first sequence (retired history); a `sequence`
    /// at or after the journal's end removes nothing. The retention marker and the session
    /// epoch file are left as they are. Snapshots after `sequence` are no longer bound to the
    /// journal: move them aside with [`SnapshotStore::quarantine_after`]. See
    /// `docs/journal_format.md`, "Truncation (replication)".
    ///
    /// [`SnapshotStore::quarantine_after`]: crate::snapshot::SnapshotStore::quarantine_after
    pub fn truncate_after(dir: &Path, sequence: u64) -> Result<u64, JournalError> {
        super::truncate::truncate_after(dir, sequence)
    }

    /// Makes the empty journal in `cfg.dir` continue after `sequence`, offline (replication: a
    /// node that installed a snapshot of `sequence` received from its leader, its own segments
    /// moved aside). Writes the retention marker (first sequence `sequence + 1`, chain-in value
    /// `chain`, no archive) and then the first segment, whose header states the same; both
    /// synced, the directory too. A writer then opens at `sequence` with chain value `chain`,
    /// and recovery restores the snapshot of `sequence` (the journal vouches for it through
    /// that chain value) and replays nothing. Idempotent, so a crash during it is completed by
    /// calling it again. Refuses with [`JournalError::Retention`] when the directory holds a
    /// segment other than the one it creates, or `sequence` is 0; takes the writer's lock.
    pub fn start_after(cfg: &JournalConfig, sequence: u64, chain: u32) -> Result<(), JournalError> {
        super::start::start_after(cfg, sequence, chain)
    }

    /// Sequence of the last record in the journal; 0 when empty. The next append is this + 1.
    pub fn last_sequence(&self) -> u64 {
        self.chain.next_sequence - 1
    }

    /// The chain value after the last record (its CRC32C; the seed 0 when empty): what a
    /// snapshot of the state at [`Self::last_sequence`] records to bind itself to this history.
    pub fn last_chain(&self) -> u32 {
        self.chain.prev_crc
    }

    /// Under `batch`, the last durable sequence, advanced by the syncer thread as each group
    /// commit completes (gate acknowledgements on it); `None` under the other policies, where
    /// `end_batch` returns once its policy is applied.
    pub fn durable_sequence(&self) -> Option<Arc<Sequence>> {
        self.committer.as_ref().map(|c| Arc::clone(c.durable()))
    }

    /// A handle another thread uses to make this journal durable up to a sequence it has
    /// appended, under any flush policy (the snapshot writer, before publishing a snapshot).
    pub fn sync_handle(&self) -> JournalSyncHandle {
        JournalSyncHandle::new(&self.dir, Arc::clone(&self.io), 0)
    }

    /// Whom to wake (a ring's [`Signal`](crate::ring::Signal), and optionally a hook) when
    /// the durable sequence advances; set once (later calls are ignored). An `Arc<Signal>`
    /// converts into a [`DurableWaker`].
    pub fn set_durable_waker(&self, waker: impl Into<DurableWaker>) {
        if let Some(committer) = &self.committer {
            committer.set_waker(waker.into());
        }
    }

    /// The flush policy in force.
    pub fn flush_policy(&self) -> FlushPolicy {
        self.flush
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record (its sequence must be `last_sequence() + 1`). No heap allocation and
    /// no syscall, except at rollover. Durable only per the flush policy, after `end_batch`.
    #[inline]
    pub fn append(&mut self, rec: &Record<'_>) -> Result<(), JournalError> {
        self.check_usable()?;
        if rec.sequence != self.chain.next_sequence {
            let expected = self.chain.next_sequence;
            return Err(JournalError::SequenceMismatch {
                expected,
                got: rec.sequence,
            });
        }
        if rec.payload.len() > self.max_payload_bytes as usize {
            return Err(JournalError::RecordTooLarge {
                payload_bytes: rec.payload.len(),
                max_payload_bytes: self.max_payload_bytes,
            });
        }
        let size_bytes = record_size_bytes(rec.payload.len());
        if !self.active.fits(size_bytes) {
            self.roll_over()?;
            assert!(
                self.active.fits(size_bytes),
                "a new segment holds any allowed record"
            );
        }
        let offset = self.active.write_pos;
        if offset + size_bytes > self.active.owned_to {
            self.active.claim(offset + size_bytes);
        }
        self.active
            .map
            .prefetch_for_write(offset + WRITE_PREFETCH_AHEAD_BYTES);
        let crc = encode_record(
            self.active.map.slot_mut(offset, size_bytes),
            rec,
            self.chain.prev_crc,
        );
        debug_assert!(check_entry(self.active.map.bytes(offset, size_bytes), self.chain).is_ok());
        self.active.map.publish(offset, RECORD_MAGIC);
        self.active.write_pos += size_bytes;
        self.chain = Chain {
            next_sequence: rec.sequence + 1,
            prev_crc: crc,
        };
        Ok(())
    }

    /// Ends a batch: applies the flush policy (`batch`: hands the unsynced range to the
    /// syncer, which makes it durable with one msync while the next batch is appended, and
    /// then advances [`Self::durable_sequence`]; `interval:MS`: one msync if MS elapsed since
    /// the last; `none`: nothing).
    pub fn end_batch(&mut self) -> Result<(), JournalError> {
        self.check_usable()?;
        if self.active.write_pos >= self.active.next_nudge {
            self.nudge_preparer();
        }
        match self.flush {
            FlushPolicy::None => Ok(()),
            FlushPolicy::Batch => self.request_commit(),
            FlushPolicy::IntervalMs(ms) => self.sync_if_due(ms),
        }
    }

    /// Tells the preparer where the writer is, so it prepares the next steps of the segment
    /// (see `lead`); once per [`NUDGE_BYTES`] written.
    #[cold]
    fn nudge_preparer(&mut self) {
        if let Some(lead) = &self.active.lead {
            lead.nudge(self.active.write_pos);
            self.preparer.nudge();
        }
        self.active.next_nudge = self.active.write_pos + NUDGE_BYTES;
    }

    fn request_commit(&mut self) -> Result<(), JournalError> {
        let last = self.last_sequence();
        let Some(committer) = &self.committer else {
            return self.sync_durable();
        };
        match committer.request(self.active.write_pos, last) {
            Ok(()) => Ok(()),
            Err(err) => Err(self.poison(JournalError::Io(err))),
        }
    }

    /// Waits for the syncer to finish everything requested (before the writer syncs itself).
    fn drain_commits(&mut self) -> Result<(), JournalError> {
        let Some(committer) = &self.committer else {
            return Ok(());
        };
        match committer.drain() {
            Ok(synced_to) => {
                self.active.synced_to = self.active.synced_to.max(synced_to);
                Ok(())
            }
            Err(err) => Err(self.poison(JournalError::Io(err))),
        }
    }

    /// For `interval:MS` while idle: syncs if something is unsynced and the interval elapsed.
    /// Cheap when there is nothing to do.
    /// Under `batch`, reports a failed group commit (the syncer's) while no batch arrives.
    pub fn tick(&mut self) -> Result<(), JournalError> {
        self.check_usable()?;
        match self.flush {
            FlushPolicy::IntervalMs(ms) => self.sync_if_due(ms),
            FlushPolicy::Batch => match self.committer.as_ref().map(Committer::check) {
                Some(Err(err)) => Err(self.poison(JournalError::Io(err))),
                _ => Ok(()),
            },
            FlushPolicy::None => Ok(()),
        }
    }

    /// Unconditional durable sync of everything appended so far, including retired segments
    /// (for shutdown, or before acknowledging under `none`).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.check_usable()?;
        self.drain_commits()?;
        self.sync_durable()?;
        self.commits_caught_up();
        let retired = self.preparer.barrier();
        retired.map_err(|err| self.poison(JournalError::Io(err)))
    }

    /// Tells the syncer the writer made everything appended durable itself.
    fn commits_caught_up(&self) {
        if let Some(committer) = &self.committer {
            committer.synced_by_writer(self.active.synced_to, self.last_sequence());
        }
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        match &self.poisoned {
            None => Ok(()),
            Some(cause) => Err(JournalError::Poisoned {
                cause: cause.clone(),
            }),
        }
    }

    /// Records the first failure; every later call returns `Poisoned`.
    #[cold]
    fn poison(&mut self, err: JournalError) -> JournalError {
        tracing::error!("journal writer stopped: {err}");
        self.poisoned.get_or_insert_with(|| err.to_string());
        err
    }

    fn sync_if_due(&mut self, interval_ms: u32) -> Result<(), JournalError> {
        let dirty = self.active.is_dirty();
        if dirty && self.last_sync.elapsed() >= Duration::from_millis(u64::from(interval_ms)) {
            self.sync_durable()?;
        }
        Ok(())
    }

    /// msync of the active segment's unsynced range. (A new segment's name is made durable
    /// by its rollover, under every policy.)
    fn sync_durable(&mut self) -> Result<(), JournalError> {
        self.sync_active()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), JournalError> {
        let (from, to) = (self.active.synced_to, self.active.write_pos);
        if to > from {
            if let Err(err) = self
                .io
                .sync_range(self.active.map.sync_handle(), from, to - from)
            {
                return Err(self.poison(JournalError::Io(err)));
            }
            self.active.synced_to = to;
        }
        Ok(())
    }

    /// Continues in the spare, then seals the active segment with an end marker. The successor
    /// is durable (header, name) before the marker is written, so a sealed segment always has
    /// its successor (`docs/journal_format.md`, "Writing and rollover"). A failed allocation
    /// returns `DiskFull` before anything is written (the writer stays usable and retries at
    /// the next append); any later failure poisons the writer.
    #[cold]
    fn roll_over(&mut self) -> Result<(), JournalError> {
        let next = self.chain.next_sequence;
        let started = Instant::now();
        let spare = self
            .preparer
            .take()
            .map_err(|err| self.allocation_error(err))?;
        self.drain_commits()?;
        if self.flush != FlushPolicy::None {
            // This segment's records become durable before the successor's name can.
            self.sync_active()?;
        }
        let (map, lead) = self.install_successor(spare)?;
        if let Some(old) = &self.active.lead {
            // The end marker is the writer's too, and nothing here needs preparing any more.
            old.seal();
        }
        self.seal_active()?;
        let new = Active::new(map, SEGMENT_HEADER_SIZE, lead.as_ref());
        let old = std::mem::replace(&mut self.active, new);
        if let Some(committer) = &self.committer {
            let handle = self.active.map.sync_handle().clone();
            committer.switch(handle, SEGMENT_HEADER_SIZE, next - 1);
        }
        if let Some(lead) = lead {
            self.preparer.follow(lead);
        }
        // Retire first: the next spare is then pre-faulted with the memory the retired
        // segment's pages give back (see `prepare`), not with memory that has sat free.
        self.preparer
            .retire(old.map, self.flush == FlushPolicy::None);
        self.preparer.request();
        tracing::debug!(first_sequence = next, elapsed = ?started.elapsed(), "journal rolled over");
        Ok(())
    }

    /// Makes the spare the durable successor of the active segment: writes and syncs its
    /// header, renames it to its segment name and syncs the directory.
    fn install_successor(
        &mut self,
        mut spare: Spare,
    ) -> Result<(MappedSegment, Option<LeadTarget>), JournalError> {
        let next = self.chain.next_sequence;
        let header = SegmentHeader::new(next, spare.map.len() as u64, self.chain.prev_crc)
            .with_service(&self.service.0, self.service.1);
        write_header(&mut spare, &header);
        let Spare {
            map,
            path: spare_path,
            lead,
        } = spare;
        assert_eq!(
            SegmentHeader::decode(map.bytes(0, SEGMENT_HEADER_SIZE)),
            Ok(header),
            "a segment header reads back as written"
        );
        let synced = self
            .io
            .sync_range(map.sync_handle(), 0, SEGMENT_HEADER_SIZE);
        if let Err(err) = synced {
            return Err(self.poison(file_io(&spare_path)(err)));
        }
        let path = self.segment_path.of(next);
        if let Err(err) = rename_new(&*self.io, &spare_path, path) {
            let err = file_io(path)(err);
            return Err(self.poison(err));
        }
        if let Err(err) = self.io.sync_dir(&self.dir) {
            return Err(self.poison(file_io(&self.dir)(err)));
        }
        Ok((map, lead))
    }

    /// Writes and publishes the end marker of the active segment (naming the next sequence)
    /// and, unless the policy is `none`, makes it durable.
    fn seal_active(&mut self) -> Result<(), JournalError> {
        let end = self.active.write_pos;
        encode_end_marker(
            self.active.map.slot_mut(end, END_MARKER_SIZE),
            self.chain.next_sequence,
            self.chain.prev_crc,
        );
        self.active.map.publish(end, END_MAGIC);
        self.active.write_pos += END_MARKER_SIZE;
        if self.flush != FlushPolicy::None {
            self.sync_active()?;
        }
        Ok(())
    }

    fn allocation_error(&mut self, err: std::io::Error) -> JournalError {
        let path = self.dir.join(SPARE_FILE_NAME);
        if is_disk_full(&err) {
            tracing::error!("journal segment allocation failed: {err}");
            let needed_bytes = self.segment_size_bytes;
            return JournalError::DiskFull {
                path,
                needed_bytes,
                source: err,
            };
        }
        self.poison(file_io(path)(err))
    }
}

impl JournalOpening {
    /// Sequence of the last valid record (0 when empty): where the journal will continue
    /// after [`JournalOpening::finish`].
    pub fn last_sequence(&self) -> u64 {
        self.scan.chain.next_sequence - 1
    }

    /// First sequence of the oldest segment (`None` when there are no segments).
    pub fn first_sequence(&self) -> Option<u64> {
        self.scan.segments.first().map(|s| s.first_sequence)
    }

    /// The journal's chain value after its last valid record: the CRC of record
    /// [`JournalOpening::last_sequence`], or the seed the first segment header states (0 for
    /// an empty journal).
    pub fn last_chain(&self) -> u32 {
        self.scan.chain.prev_crc
    }

    /// The sealed last segment whose successor is missing, if that is how the journal ends.
    /// The writer makes a successor durable before it seals a segment, so the successor's
    /// file was deleted or lost, with whatever records it held.
    pub fn missing_successor(&self) -> Option<&Path> {
        self.scan.missing_successor()
    }

    /// Applies the scan (cuts a torn tail, removes orphans and spares, seals a segment a crash
    /// left unsealed, creates a segment when needed) and opens the writer. A journal ending at
    /// a sealed segment is refused with `Corrupted { reason: SuccessorMissing }`, leaving
    /// every file as it was.
    pub fn finish(self) -> Result<JournalWriter, JournalError> {
        self.refuse_unfinishable()?;
        self.apply()
    }

    /// What [`JournalOpening::finish`] would refuse, checked without finishing: a caller that
    /// does other work before finishing (the engine replays first) refuses at once.
    pub(crate) fn refuse_unfinishable(&self) -> Result<(), JournalError> {
        self.scan.refuse_missing_successor()?;
        self.refuse_empty_after_retirement()
    }

    /// What keel's journal retention retired before the journal's start (the retention
    /// marker), if anything.
    pub fn retired(&self) -> Option<&RetiredHistory> {
        self.scan.retired.as_ref()
    }

    /// A journal without segments whose retention marker says history was retired would
    /// restart at sequence 1 and silently discard that history: `HistoryRetired`.
    fn refuse_empty_after_retirement(&self) -> Result<(), JournalError> {
        match (&self.scan.end, &self.scan.retired) {
            (ScanEnd::Empty, Some(retired)) => Err(JournalError::HistoryRetired {
                dir: self.cfg.dir.clone(),
                last_retired: retired.last_retired(),
                where_to: retired.archive.as_ref().map_or_else(
                    || "deleted".to_owned(),
                    |dir| format!("archived to {}", dir.display()),
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Like [`JournalOpening::finish`], but when the successor of a sealed last segment is
    /// missing, logs the decision at error level and creates that successor: the journal then
    /// ends at the sealed segment's end, and the records the missing file held are given up.
    /// For the operator's explicit accept-loss command only.
    pub fn finish_accepting_loss(self) -> Result<JournalWriter, JournalError> {
        if let Some(sealed) = self.missing_successor() {
            tracing::error!(
                segment = %sealed.display(),
                next_sequence = self.scan.chain.next_sequence,
                "journal: the segment after this sealed one is missing; accepting the loss as \
                 instructed and continuing after the sealed segment"
            );
        }
        if self.refuse_empty_after_retirement().is_err() {
            let marker = self.cfg.dir.join(RETIRED_FILE_NAME);
            tracing::error!(
                marker = %marker.display(),
                "journal: no segments left after retention retired the history before them; \
                 accepting the loss as instructed and starting an empty journal"
            );
            self.io.remove(&marker).map_err(file_io(&marker))?;
            self.io
                .sync_dir(&self.cfg.dir)
                .map_err(file_io(&self.cfg.dir))?;
        }
        self.apply()
    }

    fn apply(self) -> Result<JournalWriter, JournalError> {
        let Self {
            cfg,
            io,
            lock,
            scan,
        } = self;
        let removed_spare = remove_spares(&cfg.dir, &*io)?;
        let (active, chain, lead) = resume(&cfg, &*io, scan, removed_spare)?;
        let committer = match cfg.flush {
            FlushPolicy::Batch => Some(
                Committer::start(
                    Arc::clone(&io),
                    active.map.sync_handle().clone(),
                    active.synced_to,
                    chain.next_sequence - 1,
                )
                .map_err(JournalError::Io)?,
            ),
            FlushPolicy::None | FlushPolicy::IntervalMs(_) => None,
        };
        let spare_path = cfg.dir.join(SPARE_FILE_NAME);
        let prep = cfg.segment_prep_in_force();
        let mut preparer =
            Preparer::start(spare_path, cfg.segment_size_bytes, prep, Arc::clone(&io))
                .map_err(JournalError::Io)?;
        let followed = lead.is_some();
        if let Some(lead) = lead {
            preparer.follow(lead);
        }
        // The spare made at open is prepared whole (under `Adaptive`, as far as its lead).
        preparer.request();
        // Ready means the spare too: pre-faulting it competes for the CPU with the pipeline
        // (on a VM, ~0.5 s for 256 MiB of memory that had sat free), so it happens before the
        // first message rather than under it.
        preparer.barrier().map_err(JournalError::Io)?;
        if !followed {
            // A reopened segment's rest (`reopen_active`); a no-op over pages already mapped.
            let from = active.write_pos.saturating_add(HANDOVER_BYTES);
            preparer.prefault_rest(active.map.sync_handle().clone(), from);
        }
        tracing::info!(
            dir = %cfg.dir.display(), flush = %cfg.flush,
            segment_prep = %prep,
            next_sequence = chain.next_sequence, "journal writer open"
        );
        Ok(JournalWriter {
            segment_path: SegmentPath::new(&cfg.dir),
            dir: cfg.dir,
            flush: cfg.flush,
            max_payload_bytes: cfg.max_payload_bytes,
            segment_size_bytes: cfg.segment_size_bytes,
            service: (cfg.service_name, cfg.service_schema_version),
            io,
            active,
            chain,
            last_sync: Instant::now(),
            poisoned: None,
            preparer,
            committer,
            _lock: lock,
        })
    }
}

/// Applies a scan: cuts a torn tail, removes orphans, and opens (or creates) the segment to
/// append to. Returns it with the chain to continue.
fn resume(
    cfg: &JournalConfig,
    io: &dyn SegmentIo,
    scan: Scan,
    mut dir_dirty: bool,
) -> Result<(Active, Chain, Option<LeadTarget>), JournalError> {
    let adaptive = cfg.segment_prep_in_force() == SegmentPrep::Adaptive;
    for orphan in scan.orphans() {
        tracing::warn!(path = %orphan.path.display(), "journal: removing torn segment");
        io.remove(&orphan.path).map_err(file_io(&orphan.path))?;
        dir_dirty = true;
    }
    for unsealed in &scan.unsealed {
        seal_unsealed(io, &scan.segments[unsealed.segment].path, unsealed)?;
    }
    sync_recovered(io, &scan)?;
    let active = match scan.end {
        ScanEnd::Open {
            segment,
            offset,
            nonzero_end,
            damage,
        } => {
            let seg = &scan.segments[segment];
            let torn = offset..nonzero_end;
            Some(reopen_active(io, &seg.path, torn, damage, adaptive)?)
        }
        ScanEnd::Empty | ScanEnd::Sealed { .. } | ScanEnd::HeaderTorn { .. } => None,
    };
    let active = match active {
        Some(active) => active,
        None => {
            dir_dirty = true;
            create_segment(cfg, io, scan.chain)?
        }
    };
    if dir_dirty {
        io.sync_dir(&cfg.dir).map_err(file_io(&cfg.dir))?;
    }
    let (active, lead) = active;
    Ok((active, scan.chain, lead))
}

/// Makes every recovered record durable before anything new is: after a process crash the
/// page cache may still hold records (and names) that were never synced, and later syncs only
/// cover what is appended after them, so a power cut could otherwise leave a hole before
/// durable, acknowledged records. `fdatasync` of each kept segment (cheap when clean), then
/// the directory.
fn sync_recovered(io: &dyn SegmentIo, scan: &Scan) -> Result<(), JournalError> {
    let orphans = scan.orphans().len();
    for seg in &scan.segments[..scan.segments.len() - orphans] {
        let file = std::fs::File::open(&seg.path).map_err(file_io(&seg.path))?;
        io.sync_file(&file).map_err(file_io(&seg.path))?;
    }
    let dir = scan.segments.first().and_then(|s| s.path.parent());
    match dir {
        Some(dir) => io.sync_dir(dir).map_err(file_io(dir)),
        None => Ok(()),
    }
}

/// Seals a segment a crash in a rollover left unsealed (its successor continues it): writes
/// its end marker into the unpublished slot and makes it durable. Readers following a live
/// journal then move on at the marker, as after any rollover. A published but torn marker
/// (only a power cut leaves one, so no reader has been waiting on it) is left as it is:
/// readers may be viewing its bytes, and they accept it as it is.
fn seal_unsealed(io: &dyn SegmentIo, path: &Path, unsealed: &Unsealed) -> Result<(), JournalError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(file_io(path))?;
    let len = file.metadata().map_err(file_io(path))?.len() as usize;
    // Nothing to pre-fault: one store, at the marker.
    let mut map = MappedSegment::map_for_append(file, len, len).map_err(file_io(path))?;
    let (offset, chain) = (unsealed.offset, unsealed.chain);
    if map.bytes(offset, 4) != [0; 4] {
        return Ok(());
    }
    tracing::warn!(
        path = %path.display(), offset, next_sequence = chain.next_sequence,
        "journal: sealing a segment a crash left unsealed (its successor continues it)"
    );
    encode_end_marker(
        map.slot_mut(offset, END_MARKER_SIZE),
        chain.next_sequence,
        chain.prev_crc,
    );
    map.publish(offset, END_MAGIC);
    assert!(
        check_entry(map.bytes(offset, END_MARKER_SIZE), chain).is_ok(),
        "an end marker reads back as written"
    );
    io.sync_range(map.sync_handle(), offset, END_MARKER_SIZE)
        .map_err(file_io(path))
}

/// Maps the last segment for appending at `torn.start`, zeroing (and syncing) the torn bytes
/// `torn` first. Under `Adaptive` (`adaptive`), only the rest of the step the writer is in is
/// pre-faulted, and the segment comes with its lead (the preparer zeroes ahead from there).
fn reopen_active(
    io: &dyn SegmentIo,
    path: &Path,
    torn: std::ops::Range<usize>,
    damage: Damage,
    adaptive: bool,
) -> Result<(Active, Option<LeadTarget>), JournalError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(file_io(path))?;
    let offset = torn.start;
    let prefault_to = match adaptive {
        // The rest of the step the writer is in (at least one byte past it); the preparer,
        // told to follow before the open returns, prepares ahead from there.
        true => (offset + 1).next_multiple_of(STEP_BYTES),
        // The first part; the preparer pre-faults the rest after the open (`apply`), off the
        // thread that opens (an engine's start, after its replay).
        false => offset.saturating_add(HANDOVER_BYTES),
    };
    let mut map =
        MappedSegment::map_for_append(file, offset, prefault_to).map_err(file_io(path))?;
    if torn.end > offset {
        tracing::warn!(
            path = %path.display(), offset, torn_bytes = torn.len(), %damage,
            "journal: cutting torn tail"
        );
        map.slot_mut(offset, torn.len()).fill(0);
        io.sync_range(map.sync_handle(), offset, torn.len())
            .map_err(file_io(path))?;
    }
    let lead = match adaptive {
        true => {
            let ready_to = prefault_to.min(map.len());
            Some(
                LeadTarget::open(path, map.sync_handle().clone(), ready_to)
                    .map_err(file_io(path))?,
            )
        }
        false => None,
    };
    Ok((Active::new(map, offset, lead.as_ref()), lead))
}

/// Creates a segment continuing `chain` synchronously (open only), header durable.
fn create_segment(
    cfg: &JournalConfig,
    io: &dyn SegmentIo,
    chain: Chain,
) -> Result<(Active, Option<LeadTarget>), JournalError> {
    let spare_path = cfg.dir.join(SPARE_FILE_NAME);
    let size = cfg.segment_size_bytes;
    let spec = SpareSpec {
        path: &spare_path,
        len_bytes: size,
        prep: cfg.segment_prep_in_force(),
    };
    // The writer's rate is not known yet: a lead starts zeroed.
    let mut spare = prepare_spare(io, &spec, StepKind::Zeroed, usize::MAX).map_err(|err| {
        if is_disk_full(&err) {
            JournalError::DiskFull {
                path: spare_path.clone(),
                needed_bytes: size,
                source: err,
            }
        } else {
            file_io(&spare_path)(err)
        }
    })?;
    let header = SegmentHeader::new(chain.next_sequence, size, chain.prev_crc)
        .with_service(&cfg.service_name, cfg.service_schema_version);
    write_header(&mut spare, &header);
    let Spare {
        map,
        path: spare_path,
        lead,
    } = spare;
    io.sync_range(map.sync_handle(), 0, SEGMENT_HEADER_SIZE)
        .map_err(file_io(&spare_path))?;
    let path = cfg.dir.join(segment_file_name(chain.next_sequence));
    rename_new(io, &spare_path, &path).map_err(file_io(&path))?;
    Ok((Active::new(map, SEGMENT_HEADER_SIZE, lead.as_ref()), lead))
}

/// Writes `header` into a spare's first bytes (made the writer's first, under `Adaptive`).
fn write_header(spare: &mut Spare, header: &SegmentHeader) {
    if let Some(lead) = &spare.lead {
        lead.lead.claim(SEGMENT_HEADER_SIZE);
    }
    spare
        .map
        .slot_mut(0, SEGMENT_HEADER_SIZE)
        .copy_from_slice(&header.encode());
}

/// Creates a journal's segment starting at `chain` (its header synced, renamed into place) and
/// unmaps it: `start_after`'s first segment.
pub(super) fn create_empty_segment(cfg: &JournalConfig, chain: Chain) -> Result<(), JournalError> {
    create_segment(cfg, &RealIo, chain).map(drop)
}

/// Renames the prepared spare to the new segment `to`, refusing to replace a file: a new
/// segment is always named past every existing one (recovery refuses a journal where that
/// would not hold), so a file there is foreign, and replacing it could destroy records.
fn rename_new(io: &dyn SegmentIo, from: &Path, to: &Path) -> std::io::Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "refusing to replace an existing segment file",
        ));
    }
    io.rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_segment_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("spare"), dir.path().join("seg"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"old").unwrap();
        let err = rename_new(&RealIo, &from, &to).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"old");
        std::fs::remove_file(&to).unwrap();
        rename_new(&RealIo, &from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
    }
}
