//! Startup recovery: restore the newest valid snapshot at or before the journal's end, then
//! replay the journal after it through the same `apply_message` as live operation, so recovery
//! reproduces state and outcomes exactly.

use super::config::Config;
use super::dedup::{apply_once, DedupTable};
use super::logic::panic_text;
use super::message::{Message, MessageHeader};
use super::processor::Processor;
use crate::error::{Error, RecoveryError};
use crate::journal::{
    FinishOnDrop, JournalConfig, JournalOpening, JournalReader, JournalWriter, Record,
    RetiredHistory, ScanProgress, SegmentIo,
};
use crate::snapshot::{
    judge, Judged, SnapshotError, SnapshotFile, SnapshotStore, StateError, UnboundSnapshot, Vouch,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What recovery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Sequence of the snapshot restored (0: none, full replay).
    pub snapshot_sequence: u64,
    /// Messages replayed from the journal after it.
    pub replayed: u64,
    /// Last sequence in the journal: the state now reflects everything up to here.
    pub last_sequence: u64,
    /// Time spent opening the journal: scanning and validating every record, and, once the
    /// replay is done, cutting a torn tail and readying the last segment for appending.
    pub journal_open: Duration,
    /// Time spent reading, checking and restoring snapshots (failed attempts included).
    pub snapshot_load: Duration,
    /// Time spent replaying the journal after the snapshot.
    pub replay: Duration,
    /// The part of `replay` that ran while the journal was still being opened: a full replay
    /// (no snapshot to start from) applies each record as soon as the journal's open-time
    /// scan has validated it, so that recovery took `journal_open + replay -
    /// replay_during_open` in all. Zero when recovery started from a snapshot.
    pub replay_during_open: Duration,
}

/// A journal opened (scanned, nothing modified yet), the snapshots judged against it, and,
/// for a full replay, the replay begun while the journal was scanned.
pub(crate) type Opened = (JournalOpening, Vec<Judged>, Option<Replay>);

/// Opens the journal (`JournalWriter::begin_open_with_io`) and judges the snapshots against
/// it ([`bind_snapshots`]). With no snapshot to start from, the full replay starts at once:
/// the scan runs on a helper thread and publishes how far it has validated the journal, and
/// this thread applies every record as soon as it is validated, never one beyond
/// ([`ScanProgress`]). A scan that fails fails the start, whatever was applied.
pub(crate) fn open_journal<P: Processor>(
    config: &Config,
    journal: &JournalConfig,
    io: Arc<dyn SegmentIo>,
    store: &SnapshotStore,
    state: (&mut P, &mut DedupTable),
) -> Result<Opened, Error> {
    if !store.list()?.is_empty() {
        let opening = JournalWriter::begin_open_with_io(journal, io)?;
        let judged = bind_snapshots(store, &config.journal_dir, opening.last_sequence())?;
        return Ok((opening, judged, None));
    }
    let progress = ScanProgress::new(&journal.service_name);
    let mut replay = Replay::new(config, 1);
    let (opening, followed) = std::thread::scope(|scope| {
        let scanner = std::thread::Builder::new()
            .name("keel-open-scan".into())
            .spawn_scoped(scope, || {
                let _finished = FinishOnDrop(&progress);
                JournalWriter::begin_open_publishing(journal, Arc::clone(&io), Some(&progress))
            });
        let Ok(scanner) = scanner else {
            // No thread: scan here, then replay (as with a snapshot).
            return (
                JournalWriter::begin_open_with_io(journal, Arc::clone(&io)),
                Ok(()),
            );
        };
        let followed = replay.follow(config, state, &progress);
        let opening = scanner
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (opening, followed)
    });
    // The scan's verdict first: a refused journal explains any replay failure.
    let opening = opening?;
    followed?;
    replay.during_open = replay.started.elapsed();
    Ok((opening, Vec::new(), Some(replay)))
}

/// Restores the newest snapshot the journal vouches for, then replays the journal to `last`.
/// `judged` is every snapshot with the journal's verdict ([`bind_snapshots`]). A replay
/// already begun (`open_journal`, no snapshot) is carried on to `last`.
pub(crate) fn recover<P: Processor>(
    config: &Config,
    store: &SnapshotStore,
    judged: &[Judged],
    (processor, dedup): (&mut P, &mut DedupTable),
    (last, begun): (u64, Option<Replay>),
) -> Result<Recovered, Error> {
    if let Some(mut replay) = begun {
        replay.apply_through(config, (processor, dedup), last)?;
        return Ok(Recovered {
            replayed: replay.expected - 1,
            last_sequence: last,
            replay: replay.started.elapsed(),
            replay_during_open: replay.during_open,
            ..Recovered::default()
        });
    }
    let started = Instant::now();
    let snapshot_sequence = restore_snapshot(store, judged, (processor, dedup))?;
    let snapshot_load = started.elapsed();
    let replayed = replay_range(config, (processor, dedup), snapshot_sequence + 1, last)?;
    Ok(Recovered {
        snapshot_sequence,
        replayed,
        last_sequence: last,
        snapshot_load,
        replay: started.elapsed() - snapshot_load,
        ..Recovered::default()
    })
}

/// Judges every snapshot in `store` against the journal in `journal_dir`, which ends at
/// `last`, and refuses with [`UnboundSnapshot`] (newest first) when one is evidence that
/// acknowledged data is gone: beyond the journal's end, or of another history. Reads only
/// snapshot headers and the journal at their sequences, and modifies nothing, so it runs
/// before the journal's torn tail is cut.
pub(crate) fn bind_snapshots(
    store: &SnapshotStore,
    journal_dir: &Path,
    last: u64,
) -> Result<Vec<Judged>, Error> {
    let judged = judge(&store.list()?, journal_dir, last)?;
    match judged
        .iter()
        .rev()
        .find_map(|j| UnboundSnapshot::of(j, journal_dir, last))
    {
        Some(refusal) => Err(refusal.into()),
        None => Ok(judged),
    }
}

/// Tries the snapshots the journal vouches for, newest first; corrupt, unreadable or
/// oversized ones, states the processor refuses, and states whose `load_state` panics are
/// skipped with a warning, as are snapshots from before the journal's start. A format 1
/// snapshot (no chain value) at or before the journal's end is restored unverified. Returns
/// the restored sequence, or 0 when none was usable (full replay). `dedup` is restored from
/// the same snapshot (empty for a full replay or a snapshot from before format 3).
pub(crate) fn restore_snapshot<P: Processor>(
    store: &SnapshotStore,
    judged: &[Judged],
    (processor, dedup): (&mut P, &mut DedupTable),
) -> Result<u64, Error> {
    if judged.is_empty() {
        return Ok(0);
    }
    // A `load_state` that panics may leave the processor half-restored: this save of its
    // initial state puts it back before the next snapshot or the full replay (without it, such
    // a panic is fatal).
    let mut blank = Vec::new();
    let blank = processor.save_state(&mut blank).ok().map(|()| blank);
    for judged in judged.iter().rev() {
        let file = &judged.file;
        if !judged.vouch.is_usable() {
            tracing::warn!(path = %file.path.display(), verdict = %judged.vouch,
                "the journal cannot vouch for this snapshot; falling back to an older one");
            continue;
        }
        if judged.vouch == Vouch::NoChainValue {
            tracing::warn!(path = %file.path.display(),
                "format 1 snapshot (no journal chain value): restored unverified, as before");
        }
        match load_one(store, file, (processor, dedup), blank.as_deref()) {
            Ok(()) => return Ok(file.sequence),
            Err(LoadError::Skip(e)) => {
                tracing::warn!(path = %file.path.display(), error = %e,
                    "snapshot unusable; falling back to an older one")
            }
            Err(LoadError::Fatal(e)) => return Err(e),
        }
    }
    let _ = dedup.decode(&[]);
    Ok(0)
}

enum LoadError {
    Skip(SnapshotError),
    Fatal(Error),
}

fn load_one<P: Processor>(
    store: &SnapshotStore,
    file: &SnapshotFile,
    (processor, dedup): (&mut P, &mut DedupTable),
    blank: Option<&[u8]>,
) -> Result<(), LoadError> {
    let snapshot = store.load(file).map_err(LoadError::Skip)?;
    let h = snapshot.header;
    // Before the state: a section that does not decode leaves the processor untouched.
    dedup.decode(snapshot.dedup()).map_err(|reason| {
        LoadError::Skip(SnapshotError::Corrupted {
            path: file.path.clone(),
            reason,
        })
    })?;
    load_state_caught(processor, h.schema_version, snapshot.state(), blank)?;
    if h.schema_version == processor.schema_version() && processor.state_hash() != h.state_hash {
        // The state decoded but is not the state it claims to be: the processor's state_hash
        // is not stable, or save/load lose information. Continuing would fork history.
        let mismatch = RecoveryError::StateHashMismatch {
            path: file.path.clone(),
            restored: processor.state_hash(),
            recorded: h.state_hash,
        };
        return Err(LoadError::Fatal(mismatch.into()));
    }
    Ok(())
}

/// `Processor::load_state` with its panics caught: a panic skips the snapshot
/// (`StateError::Panicked`) after the processor is reset to `blank`, its initial state saved
/// before. A reset that fails or panics too is fatal: the processor's state would be unknown.
fn load_state_caught<P: Processor>(
    processor: &mut P,
    schema_version: u32,
    state: &[u8],
    blank: Option<&[u8]>,
) -> Result<(), LoadError> {
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        processor.load_state(schema_version, state)
    }));
    let panic = match loaded {
        Ok(result) => return result.map_err(|e| LoadError::Skip(e.into())),
        Err(panic) => panic_text(&*panic).to_string(),
    };
    let blank_schema = processor.schema_version();
    let reset = blank.map(|blank| {
        catch_unwind(AssertUnwindSafe(|| {
            processor.load_state(blank_schema, blank)
        }))
    });
    match reset {
        Some(Ok(Ok(()))) => Err(LoadError::Skip(StateError::Panicked(panic).into())),
        _ => Err(LoadError::Fatal(
            RecoveryError::ResetFailed { panic }.into(),
        )),
    }
}

/// The message a journal record holds.
pub fn message_of<'a>(record: &Record<'a>) -> Message<'a> {
    let header = MessageHeader {
        sequence: record.sequence,
        timestamp_ns: record.timestamp_ns,
        session_id: record.session_id,
        correlation_id: record.correlation_id,
        kind: record.kind,
        version: record.version,
    };
    Message {
        header,
        payload: record.payload,
    }
}

/// What happened to the records before `first_held`, the journal's first sequence, as its
/// retention marker tells it.
pub(crate) fn retired_history(journal_dir: &Path, first_held: u64) -> String {
    match RetiredHistory::read(journal_dir) {
        Ok(Some(retired)) => {
            let to = retired.archive.as_ref().map_or_else(
                || "deleted".to_owned(),
                |dir| format!("moved to the archive {}", dir.display()),
            );
            let mut text = format!(
                "journal retention retired sequences 1..={} ({to})",
                retired.last_retired()
            );
            if first_held > retired.first_sequence {
                text += &format!(
                    ", and the segments holding {}..{first_held} are missing too (keel did \
                     not retire them)",
                    retired.first_sequence
                );
            }
            text
        }
        Ok(None) => format!(
            "the segments holding 1..{first_held} are missing, and keel did not retire them (no \
             retention marker)"
        ),
        Err(err) => format!("the retention marker is unreadable ({err})"),
    }
}

/// Replays sequences `first..=last` into `processor`, checking contiguity as it goes. Only for
/// a journal the open writer scanned up to `last` (its CRCs are trusted, see
/// `JournalReader::trust_verified_through`).
pub(crate) fn replay_range<P: Processor>(
    config: &Config,
    state: (&mut P, &mut DedupTable),
    first: u64,
    last: u64,
) -> Result<u64, Error> {
    let mut replay = Replay::new(config, first);
    replay.apply_through(config, state, last)?;
    Ok(replay.expected - first)
}

/// A replay of the journal into the processor, record after record, in as many steps as the
/// validated journal grows (one step after a complete scan, many while following one).
pub(crate) struct Replay {
    /// Opened at the first step (only then is a followed scan known to have begun).
    reader: Option<JournalReader>,
    /// The next sequence to apply.
    expected: u64,
    scratch: Vec<u8>,
    started: Instant,
    /// How long it ran while the journal was being opened.
    during_open: Duration,
}

impl Replay {
    fn new(config: &Config, first: u64) -> Self {
        Self {
            reader: None,
            expected: first,
            scratch: vec![0u8; config.max_response_bytes],
            started: Instant::now(),
            during_open: Duration::ZERO,
        }
    }

    /// Applies records while `progress` validates them, until its scan ends.
    fn follow<P: Processor>(
        &mut self,
        config: &Config,
        (processor, dedup): (&mut P, &mut DedupTable),
        progress: &ScanProgress,
    ) -> Result<(), Error> {
        loop {
            let through = progress.wait_beyond(self.expected - 1);
            if through < self.expected {
                return Ok(());
            }
            self.apply_through(config, (&mut *processor, &mut *dedup), through)?;
        }
    }

    /// Applies the records from the next one through `through`, every one of which the
    /// journal's open-time scan has validated, checksums included, under the lock the engine
    /// keeps until it stops: their CRCs are not hashed again (links are still checked, and
    /// nothing after `through` is read).
    fn apply_through<P: Processor>(
        &mut self,
        config: &Config,
        (processor, dedup): (&mut P, &mut DedupTable),
        through: u64,
    ) -> Result<(), Error> {
        let Self {
            reader,
            expected,
            scratch,
            ..
        } = self;
        if *expected > through {
            return Ok(());
        }
        let reader = match reader {
            Some(reader) => reader,
            None => {
                let mut opened = JournalReader::open(&config.journal_dir)?;
                opened.trust_verified_through(through);
                opened.seek(*expected)?;
                reader.insert(opened)
            }
        };
        reader.trust_verified_through(through);
        while *expected <= through {
            // The tight loop, while the reader is exactly at `expected` (it stops at a
            // segment's end); then one record the long way, with every check.
            if reader.chain().is_some_and(|c| c.next_sequence == *expected) {
                reader.for_each_trusted(through, |record| {
                    apply_once(processor, dedup, &message_of(&record), scratch);
                    *expected += 1;
                });
                if *expected > through {
                    break;
                }
            }
            let Some(record) = reader.next()? else {
                let short = RecoveryError::JournalShort {
                    journal_end: *expected - 1,
                    recovered: through,
                };
                return Err(short.into());
            };
            if record.sequence != *expected {
                return Err(gap(config, *expected, record.sequence));
            }
            apply_once(processor, dedup, &message_of(&record), scratch);
            *expected += 1;
        }
        Ok(())
    }
}

/// The reader validates contiguity within the journal, but the journal may start after
/// `needed`: older segments were removed and no snapshot covers them.
fn gap(config: &Config, needed: u64, found: u64) -> Error {
    RecoveryError::JournalGap {
        needed,
        found,
        journal_dir: config.journal_dir.clone(),
        history: retired_history(&config.journal_dir, found),
    }
    .into()
}
