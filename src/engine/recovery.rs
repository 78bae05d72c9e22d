//! Startup recovery: restore the newest valid snapshot at or before the journal's end, then
//! replay the journal after it through the same `apply_message` as live operation, so recovery
//! reproduces state and outcomes exactly.

use super::config::Config;
use super::dedup::{apply_once, DedupTable};
use super::logic::panic_text;
use super::message::{Message, MessageHeader};
use super::processor::Processor;
use crate::error::{Error, RecoveryError};
use crate::journal::{JournalReader, Record, RetiredHistory};
use crate::snapshot::{
    judge, Judged, SnapshotError, SnapshotFile, SnapshotStore, StateError, UnboundSnapshot, Vouch,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
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
    /// Time spent opening the journal (scanning and validating every record).
    pub journal_open: Duration,
    /// Time spent reading, checking and restoring snapshots (failed attempts included).
    pub snapshot_load: Duration,
    /// Time spent replaying the journal after the snapshot.
    pub replay: Duration,
}

/// Restores the newest snapshot the journal vouches for, then replays the journal to `last`.
/// `judged` is every snapshot with the journal's verdict ([`bind_snapshots`]).
pub(crate) fn recover<P: Processor>(
    config: &Config,
    store: &SnapshotStore,
    judged: &[Judged],
    (processor, dedup): (&mut P, &mut DedupTable),
    last: u64,
) -> Result<Recovered, Error> {
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
    (processor, dedup): (&mut P, &mut DedupTable),
    first: u64,
    last: u64,
) -> Result<u64, Error> {
    if first > last {
        return Ok(0);
    }
    let mut reader = JournalReader::open(&config.journal_dir)?;
    // The journal writer's open-time scan validated every record up to `last`, checksums
    // included, and its lock is held until the engine stops: hashing them again would only
    // double the cost of reading (links are still checked, and nothing after `last` is read).
    reader.trust_verified_through(last);
    reader.seek(first)?;
    let mut scratch = vec![0u8; config.max_response_bytes];
    let mut expected = first;
    while expected <= last {
        let Some(record) = reader.next()? else {
            let short = RecoveryError::JournalShort {
                journal_end: expected - 1,
                recovered: last,
            };
            return Err(short.into());
        };
        if record.sequence != expected {
            // The reader validates contiguity within the journal, but the journal may start
            // after `expected`: older segments were removed and no snapshot covers them.
            let found = record.sequence;
            let gap = RecoveryError::JournalGap {
                needed: expected,
                found,
                journal_dir: config.journal_dir.clone(),
                history: retired_history(&config.journal_dir, found),
            };
            return Err(gap.into());
        }
        apply_once(processor, dedup, &message_of(&record), &mut scratch);
        expected += 1;
    }
    Ok(last - first + 1)
}
