//! Installing a snapshot received from the leader, crash safe (docs/REPLICATION.md, "Snapshot
//! transfer"). Nothing is destroyed, and nothing moved, before the received file passed keel's
//! snapshot loader and the processor restored it. Then, with the engine halted:
//!
//! 1. the received file is renamed to `<S>.snap.incoming` (the snapshot directory synced);
//! 2. the intent `journal.installing` is written in the journal directory (temporary file,
//!    fsync, rename, directory fsync): sequence, chain value, the term history's last row,
//!    the quarantine folder's number, CRC32C;
//! 3. the journal's segments, its retention marker and its `terms` file move into
//!    `<journal dir>/quarantine/before-<S>[-N]/` (never deleted; the directories synced);
//! 4. `JournalWriter::start_after(S, chain)` makes the empty journal start at S + 1;
//! 5. the `terms` file is rewritten with the history's last row;
//! 6. every snapshot in the snapshot directory is quarantined (`snapshots/quarantine/`) and
//!    `<S>.snap.incoming` is renamed to `<S>.snap` (the directory synced);
//! 7. the intent is removed (the directory synced); the engine starts: snapshot S, no replay.
//!
//! Each step is idempotent, and the next start (`finish_pending`, before the engine opens the
//! journal) completes an install whose intent exists. Without an intent, a leftover
//! `.snap.incoming` is removed: the install never began.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use keel::journal::{JournalWriter, RetiredHistory};
use keel::snapshot::{file_name, load_file, SnapshotFile, SnapshotStore};
use keel::{Config, Processor};

use super::terms::{TermStart, Terms, TERMS_FILE};
use super::transfer::{Announced, Received};
use super::DataError;
use crate::durable::{replace_file, sync_dir};

/// The install intent, in the journal directory.
pub const INTENT_FILE: &str = "journal.installing";
const INTENT_TMP: &str = "journal.installing.tmp";
/// Bytes of the intent: sequence u64, chain u32, history term u64, history start u64,
/// quarantine number u32, CRC32C u32 of the bytes before it.
const INTENT_BYTES: usize = 36;
// Why: the byte map in docs/REPLICATION.md.
const _: () = assert!(INTENT_BYTES == 8 + 4 + 8 + 8 + 4 + 4);
/// Suffix of a checked snapshot waiting for its install.
const STAGED_SUFFIX: &str = ".snap.incoming";
/// Folder of the journal directory where replaced journals go.
pub const JOURNAL_QUARANTINE_DIR: &str = "quarantine";

/// An install, as its intent records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The snapshot's sequence.
    pub sequence: u64,
    /// The journal's chain value there.
    pub chain: u32,
    /// The last term record at or before it.
    pub history: Option<TermStart>,
    /// Which `before-<S>` folder the journal moves to (0: no suffix, N: `-N`).
    pub attempt: u32,
}

fn encode(plan: &Plan) -> [u8; INTENT_BYTES] {
    let mut b = [0u8; INTENT_BYTES];
    let row = plan.history.unwrap_or(TermStart {
        term: 0,
        first_sequence: 0,
    });
    b[..8].copy_from_slice(&plan.sequence.to_le_bytes());
    b[8..12].copy_from_slice(&plan.chain.to_le_bytes());
    b[12..20].copy_from_slice(&row.term.to_le_bytes());
    b[20..28].copy_from_slice(&row.first_sequence.to_le_bytes());
    b[28..32].copy_from_slice(&plan.attempt.to_le_bytes());
    let crc = crc32c::crc32c(&b[..32]);
    b[32..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<Plan> {
    if b.len() != INTENT_BYTES {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    if u32_at(32) != crc32c::crc32c(&b[..32]) {
        return None;
    }
    let row = TermStart {
        term: u64_at(12),
        first_sequence: u64_at(20),
    };
    Some(Plan {
        sequence: u64_at(0),
        chain: u32_at(8),
        history: (row.term > 0).then_some(row),
        attempt: u32_at(28),
    })
}

/// Where a checked snapshot of `sequence` waits for its install (step 1).
pub fn staged_path(config: &Config, sequence: u64) -> PathBuf {
    config
        .snapshot_dir
        .join(format!("{sequence:020}{STAGED_SUFFIX}"))
}

/// Where the install of `plan` moves the journal (step 3).
pub fn quarantine_dir(config: &Config, plan: &Plan) -> PathBuf {
    let name = match plan.attempt {
        0 => format!("before-{:020}", plan.sequence),
        n => format!("before-{:020}-{n}", plan.sequence),
    };
    config.journal_dir.join(JOURNAL_QUARANTINE_DIR).join(name)
}

/// Checks a received snapshot with keel's loader (header, codec, lengths, CRCs, the sequence)
/// and the announced chain value, then restores it into a fresh processor from `make` and
/// compares its state hash: the install goes ahead only with a snapshot this node can start
/// from.
pub(crate) fn check<P: Processor>(
    received: &Received,
    max_state_bytes: u64,
    make: &(dyn Fn() -> P + Send + Sync),
) -> Result<(), DataError> {
    let Announced {
        sequence, chain, ..
    } = received.announced;
    let file = SnapshotFile {
        sequence,
        path: received.path.clone(),
    };
    let loaded = load_file(&file, max_state_bytes)?;
    let header = loaded.header;
    let refuse = |reason: String| Err(DataError::BadSnapshot(reason));
    if header.journal_chain != Some(chain) {
        return refuse(format!(
            "snapshot {sequence} records chain value {:?}, the leader announced {chain:#010x}",
            header.journal_chain
        ));
    }
    let restored = catch_unwind(AssertUnwindSafe(|| {
        let mut processor = make();
        processor
            .load_state(header.schema_version, loaded.state())
            .map(|()| (processor.schema_version(), processor.state_hash()))
    }));
    match restored {
        Ok(Ok((schema, hash))) if schema != header.schema_version || hash == header.state_hash => {
            Ok(())
        }
        Ok(Ok((_, hash))) => refuse(format!(
            "snapshot {sequence} restores to state hash {hash:#x}, its header says {:#x}",
            header.state_hash
        )),
        Ok(Err(e)) => refuse(format!(
            "snapshot {sequence}: the processor refuses it: {e}"
        )),
        Err(_) => refuse(format!("snapshot {sequence}: load_state panicked")),
    }
}

/// Installs `received` (checked) with the engine halted: steps 1 to 7 of the module's doc.
pub(crate) fn install(config: &Config, received: Received) -> Result<(), DataError> {
    let Announced {
        sequence,
        chain,
        history,
        ..
    } = received.announced;
    let staged = staged_path(config, sequence);
    fs::rename(&received.path, &staged)?;
    sync_dir(&config.snapshot_dir)?;
    let mut plan = Plan {
        sequence,
        chain,
        history,
        attempt: 0,
    };
    while quarantine_dir(config, &plan).exists() {
        plan.attempt += 1;
    }
    write_intent(&config.journal_dir, &plan)?;
    complete(config, &plan)
}

/// Completes an install an earlier run recorded (a crash during it), or removes a staged
/// snapshot whose install never began. Call before the engine opens the journal.
pub(crate) fn finish_pending(config: &Config) -> Result<(), DataError> {
    let path = config.journal_dir.join(INTENT_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let plan = decode(&bytes).ok_or(DataError::BadSnapshot(format!(
                "the install intent {} is damaged",
                path.display()
            )))?;
            tracing::warn!(
                sequence = plan.sequence,
                "finishing an interrupted snapshot install"
            );
            complete(config, &plan)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => remove_stale_staged(config),
        Err(e) => Err(e.into()),
    }
}

fn remove_stale_staged(config: &Config) -> Result<(), DataError> {
    let Ok(entries) = fs::read_dir(&config.snapshot_dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(STAGED_SUFFIX) {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Records `plan` durably in the journal directory (step 2): temporary file, fsync, rename,
/// directory fsync. Public for tests that leave an install half done.
pub fn write_intent(journal_dir: &Path, plan: &Plan) -> Result<(), DataError> {
    fs::create_dir_all(journal_dir)?;
    replace_file(
        &journal_dir.join(INTENT_FILE),
        &journal_dir.join(INTENT_TMP),
        &encode(plan),
    )?;
    Ok(())
}

/// Steps 3 to 7, each idempotent.
fn complete(config: &Config, plan: &Plan) -> Result<(), DataError> {
    let journal = config.journal_config();
    if !started_at(&config.journal_dir, plan)? {
        move_journal_aside(&config.journal_dir, &quarantine_dir(config, plan))?;
    }
    JournalWriter::start_after(&journal, plan.sequence, plan.chain)?;
    Terms::replace(&config.journal_dir, plan.history)?;
    place_snapshot(config, plan.sequence)?;
    fs::remove_file(config.journal_dir.join(INTENT_FILE))?;
    sync_dir(&config.journal_dir)?;
    tracing::info!(
        sequence = plan.sequence,
        quarantine = %quarantine_dir(config, plan).display(),
        "snapshot installed; the journal continues after it"
    );
    Ok(())
}

/// Whether the journal already starts right after the snapshot (step 4 done).
fn started_at(journal_dir: &Path, plan: &Plan) -> Result<bool, DataError> {
    let marker = RetiredHistory::read(journal_dir)?;
    let first = super::log::first_sequence(journal_dir)?;
    Ok(first == plan.sequence + 1
        && marker.is_some_and(|m| m.first_sequence == first && m.chain_in == plan.chain))
}

/// Moves segments, the retention marker and the terms file into `to`, never replacing a file.
fn move_journal_aside(journal_dir: &Path, to: &Path) -> Result<(), DataError> {
    fs::create_dir_all(to)?;
    sync_dir(to.parent().expect("under the quarantine folder"))?;
    sync_dir(journal_dir)?;
    let mut moved = 0usize;
    for entry in fs::read_dir(journal_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.ends_with(".seg") || name == "journal.retired" || name == TERMS_FILE;
        if !ours || !entry.file_type()?.is_file() {
            continue;
        }
        let mut target = to.join(&name);
        let mut n = 1;
        while target.symlink_metadata().is_ok() {
            target = to.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(entry.path(), &target)?;
        moved += 1;
    }
    sync_dir(to)?;
    sync_dir(journal_dir)?;
    tracing::warn!(moved, to = %to.display(), "journal moved aside for a snapshot install");
    Ok(())
}

/// Quarantines every snapshot and puts the staged one in place (step 6).
fn place_snapshot(config: &Config, sequence: u64) -> Result<(), DataError> {
    let staged = staged_path(config, sequence);
    let target = config.snapshot_dir.join(file_name(sequence));
    if !staged.exists() {
        if target.exists() {
            return Ok(());
        }
        return Err(DataError::BadSnapshot(format!(
            "the install of snapshot {sequence} lost its file: neither {} nor {} exists",
            staged.display(),
            target.display()
        )));
    }
    let store = SnapshotStore::open(&config.snapshot_dir, config.snapshot_retain)?;
    for file in store.list()? {
        store.quarantine(&file)?;
    }
    fs::rename(&staged, &target)?;
    sync_dir(&config.snapshot_dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intent_round_trips_and_damage_is_detected() {
        let plan = Plan {
            sequence: 77,
            chain: 0xdead_beef,
            history: Some(TermStart {
                term: 3,
                first_sequence: 40,
            }),
            attempt: 2,
        };
        let mut bytes = encode(&plan);
        assert_eq!(decode(&bytes), Some(plan));
        bytes[3] ^= 1;
        assert_eq!(decode(&bytes), None);
        let none = Plan {
            history: None,
            ..plan
        };
        assert_eq!(decode(&encode(&none)), Some(none));
    }
}
