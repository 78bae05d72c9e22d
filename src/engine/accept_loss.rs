//! The operator's explicit decision to accept lost journal data, so the engine can start
//! again after recovery refused (`docs/fault_model.md`, "Accepting a loss").
//!
//! Recovery refuses when the journal no longer holds what a snapshot saw (the snapshot lies
//! beyond the journal's end, or is of another history) and when the last segment is sealed but
//! its successor is missing. Accepting the loss, which only an operator may decide:
//! - moves every snapshot the journal cannot vouch for into `snapshots/quarantine/` (never
//!   deleted; no later restart lists it), and
//! - when the successor segment is missing, lets the journal continue at the sealed end;
//! - when journal retention retired the history and no segment is left, removes the
//!   retention marker, so the journal starts empty;
//! - logs each decision at `warn`.
//!
//! The torn tail, if any, is cut as a normal start would. Nothing else changes: a journal
//! corrupted before its tail is still refused.

use std::path::PathBuf;

use super::config::Config;
use crate::error::Error;
use crate::journal::JournalWriter;
use crate::snapshot::{judge, SnapshotStore, Vouch};

/// What [`accept_loss`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossAccepted {
    /// Snapshots moved to the quarantine folder: (where it was, where it is, why).
    pub quarantined: Vec<(PathBuf, PathBuf, String)>,
    /// The sealed last segment whose missing successor was accepted; the journal continues
    /// after it.
    pub sealed_end: Option<PathBuf>,
    /// The journal's last sequence, where the engine will continue.
    pub journal_end: u64,
    /// The journal had no segments left after journal retention had retired its history up
    /// to this sequence: that history is given up, and the journal starts empty.
    pub retired_given_up: Option<u64>,
}

impl LossAccepted {
    /// Whether there was anything to accept.
    pub fn is_empty(&self) -> bool {
        self.quarantined.is_empty() && self.sealed_end.is_none() && self.retired_given_up.is_none()
    }
}

/// Accepts the loss of whatever the journal in `config.journal_dir` no longer holds (see the
/// module docs). Idempotent: on a sound journal with bound snapshots it changes nothing. Takes
/// the journal's exclusive lock, so it fails with `Locked` while an engine runs on it.
pub fn accept_loss(config: &Config) -> Result<LossAccepted, Error> {
    std::fs::create_dir_all(&config.journal_dir)?;
    let opening = JournalWriter::begin_open(&config.journal_config())?;
    let journal_end = opening.last_sequence();
    let sealed_end = opening.missing_successor().map(|p| p.to_path_buf());
    let retired_given_up = opening
        .retired()
        .filter(|_| opening.first_sequence().is_none())
        .map(|retired| retired.last_retired());
    let store = SnapshotStore::open(&config.snapshot_dir, config.snapshot_retain)?;
    let judged = judge(&store.list()?, &config.journal_dir, journal_end)?;
    if let Some(segment) = &sealed_end {
        tracing::warn!(segment = %segment.display(), journal_end,
            "operator accepted the loss of the segments after the sealed last segment");
    }
    let writer = opening.finish_accepting_loss()?;
    drop(writer);
    let mut quarantined = Vec::new();
    for judged in judged.iter().filter(|j| j.vouch.is_evidence_of_loss()) {
        let reason = describe(&judged.vouch);
        let to = store.quarantine(&judged.file)?;
        tracing::warn!(from = %judged.file.path.display(), to = %to.display(), %reason,
            "operator accepted the loss: snapshot quarantined");
        quarantined.push((judged.file.path.clone(), to, reason));
    }
    Ok(LossAccepted {
        quarantined,
        sealed_end,
        journal_end,
        retired_given_up,
    })
}

fn describe(vouch: &Vouch) -> String {
    vouch.to_string()
}
