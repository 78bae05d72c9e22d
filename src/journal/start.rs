//! Starting an empty journal after a sequence, for replication: a node that installed a
//! snapshot of sequence S received from its leader continues at S + 1, with the chain value of
//! S, as if retention had retired everything up to S (`docs/journal_format.md`, "Starting
//! after a snapshot (replication)").
//!
//! The retention marker (`journal.retired`, first sequence S + 1, chain-in value) is written
//! first, then the first segment, whose header states the same sequence and chain value; a
//! crash between the two leaves a marker without segments, which a writer refuses
//! (`HistoryRetired`) and a repeated call completes. Both steps are idempotent.

use std::fs::File;
use std::io::Read;

use super::config::JournalConfig;
use super::dir::{list_segments, DirLock, SegmentFile};
use super::error::{file_io, JournalError};
use super::format::{Chain, SegmentHeader, SEGMENT_HEADER_SIZE};
use super::retention::RetiredHistory;

/// Makes the empty journal in `cfg.dir` start at `sequence + 1` with chain-in value `chain`.
/// Refuses with `Retention` when the directory holds any other segment, or `sequence` is 0.
pub(crate) fn start_after(
    cfg: &JournalConfig,
    sequence: u64,
    chain: u32,
) -> Result<(), JournalError> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.dir).map_err(file_io(&cfg.dir))?;
    let _lock = DirLock::exclusive(&cfg.dir)?;
    let refuse = |reason: String| JournalError::Retention {
        path: cfg.dir.clone(),
        reason,
    };
    if sequence == 0 {
        return Err(refuse("a journal starts after sequence 0 by itself".into()));
    }
    let first = sequence + 1;
    let segments = list_segments(&cfg.dir)?;
    let done = match segments.as_slice() {
        [] => false,
        [only] if only.first_sequence == first && states_chain(only, first, chain)? => true,
        _ => {
            return Err(refuse(format!(
                "cannot start the journal at {first}: it holds segments (move them aside first)"
            )))
        }
    };
    let marker = RetiredHistory {
        first_sequence: first,
        chain_in: chain,
        archive: None,
    };
    if RetiredHistory::read(&cfg.dir)?.as_ref() != Some(&marker) {
        marker.write(&cfg.dir)?;
    }
    if !done {
        let next = Chain {
            next_sequence: first,
            prev_crc: chain,
        };
        super::writer::create_empty_segment(cfg, next)?;
        File::open(&cfg.dir)
            .and_then(|d| d.sync_all())
            .map_err(file_io(&cfg.dir))?;
    }
    tracing::info!(dir = %cfg.dir.display(), first_sequence = first,
        "journal starts after a snapshot");
    Ok(())
}

/// Whether the header of `seg` states `first` and chain-in value `chain`.
fn states_chain(seg: &SegmentFile, first: u64, chain: u32) -> Result<bool, JournalError> {
    let mut bytes = [0u8; SEGMENT_HEADER_SIZE];
    File::open(&seg.path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(file_io(&seg.path))?;
    Ok(SegmentHeader::decode(&bytes)
        .is_ok_and(|h| h.first_sequence == first && h.prev_crc == chain))
}

#[cfg(test)]
mod tests {
    use super::super::{verify, JournalReader, JournalWriter, Record};
    use super::*;

    #[test]
    fn an_empty_journal_started_after_a_sequence_continues_there() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = JournalConfig::new(tmp.path());
        cfg.segment_size_bytes = 16 << 10;
        cfg.max_payload_bytes = 256;
        start_after(&cfg, 41, 0xabcd_0123).unwrap();
        start_after(&cfg, 41, 0xabcd_0123).unwrap(); // idempotent
        assert!(start_after(&cfg, 40, 0xabcd_0123).is_err());
        let mut w = JournalWriter::open(&cfg).unwrap();
        assert_eq!(w.last_sequence(), 41);
        assert_eq!(w.last_chain(), 0xabcd_0123);
        let record = Record {
            sequence: 42,
            timestamp_ns: 1,
            session_id: 1,
            correlation_id: 1,
            kind: 1,
            version: 1,
            payload: b"after",
        };
        w.append(&record).unwrap();
        w.end_batch().unwrap();
        w.sync().unwrap();
        drop(w);
        let report = verify(tmp.path()).unwrap();
        assert_eq!(
            (report.first_sequence, report.last_sequence),
            (Some(42), 42)
        );
        assert_eq!(report.retired.unwrap().first_sequence, 42);
        let mut reader = JournalReader::open(tmp.path()).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().sequence, 42);
        assert!(
            start_after(&cfg, 50, 0xabcd_0123).is_err(),
            "not this journal's start"
        );
    }

    #[test]
    fn a_crash_between_the_marker_and_the_segment_is_completed_by_a_repeat() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = JournalConfig::new(tmp.path());
        cfg.segment_size_bytes = 16 << 10;
        cfg.max_payload_bytes = 256;
        let marker = RetiredHistory {
            first_sequence: 8,
            chain_in: 7,
            archive: None,
        };
        marker.write(tmp.path()).unwrap();
        let refused = JournalWriter::open(&cfg);
        assert!(
            matches!(refused, Err(JournalError::HistoryRetired { .. })),
            "{refused:?}"
        );
        start_after(&cfg, 7, 7).unwrap();
        assert_eq!(JournalWriter::open(&cfg).unwrap().last_sequence(), 7);
    }
}
