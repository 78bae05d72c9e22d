//! `keel replay verify`: every record (checksum, hash chain, contiguity) and every snapshot
//! (checksums, loads, hash), telling a torn tail (a warning) from corruption.
//!
//! The journal is checked by `journal::verify`, the same scan recovery runs, under a shared
//! lock. It reports the first corruption only; `verify` then reads on, without the lock, from
//! the segment after the damaged one, to report later damage too (damage hides the rest of its
//! own segment, and the chain link across it cannot be checked). While a live writer holds the
//! lock, the records are still checked lock-free, but the tail cannot be judged (exit 6).

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use super::ctx::Ctx;
use super::error::{Exit, ReplayError};
use super::files::{
    list_segments, list_snapshots, open_reader, restore, retired_json, retired_text, SnapFile,
};
use super::info::text;
use keel::journal::{self, JournalError, RetiredHistory, TailState, VerifyReport};
use keel::snapshot::{self, SnapshotFile, Vouch};
use keel_services::App;

/// One thing wrong.
#[derive(Debug, Clone, Serialize)]
struct Problem {
    /// `corruption`, `history_lost`, `torn_tail`, `snapshot`, `locked` or `warning`.
    severity: &'static str,
    file: Option<String>,
    offset: Option<u64>,
    sequence: Option<u64>,
    reason: String,
}

impl Problem {
    fn corruption(err: &JournalError) -> Option<Problem> {
        let JournalError::Corrupted {
            segment,
            offset,
            expected_sequence,
            reason,
        } = err
        else {
            return None;
        };
        Some(Problem {
            severity: "corruption",
            file: Some(segment.display().to_string()),
            offset: Some(*offset),
            sequence: Some(*expected_sequence),
            reason: reason.to_string(),
        })
    }

    fn exit(&self) -> Exit {
        match self.severity {
            "corruption" => Exit::JournalCorrupted,
            "torn_tail" => Exit::TornTail,
            "snapshot" => Exit::SnapshotCorrupted,
            "locked" => Exit::Locked,
            "history_lost" => Exit::HistoryLost,
            _ => Exit::Ok,
        }
    }
}

/// What the journal part found: a summary and the last valid sequence (when known).
struct JournalResult {
    summary: Value,
    last: Option<u64>,
    /// The journal's first sequence (`None`: no segments, or unknown).
    first: Option<u64>,
    /// What journal retention retired before it.
    retired: Option<RetiredHistory>,
}

fn report_json(report: &VerifyReport) -> Value {
    let tail = match &report.tail {
        TailState::Empty => json!({"state": "empty"}),
        TailState::Clean { segment, offset } => {
            json!({"state": "clean", "segment": segment.display().to_string(), "offset": offset})
        }
        TailState::Torn {
            segment, offset, ..
        } => {
            json!({"state": "torn", "segment": segment.display().to_string(), "offset": offset})
        }
        _ => json!({"state": "unknown"}),
    };
    json!({
        "segments": report.segment_count,
        "first_sequence": report.first_sequence,
        "last_sequence": report.last_sequence,
        "records": report.record_count,
        "tail": tail,
        "summary": report.to_string(),
    })
}

fn torn_problem(report: &VerifyReport) -> Option<Problem> {
    let TailState::Torn {
        segment,
        offset,
        damage,
        torn_bytes,
        orphan_segments,
    } = &report.tail
    else {
        return None;
    };
    Some(Problem {
        severity: "torn_tail",
        file: Some(segment.display().to_string()),
        offset: Some(*offset),
        sequence: Some(report.last_sequence + 1),
        reason: format!(
            "torn write: {damage} ({torn_bytes} torn bytes, {} orphan segment files); \
             the next writer cuts it here",
            orphan_segments.len()
        ),
    })
}

fn check_journal(ctx: &Ctx<'_>, problems: &mut Vec<Problem>) -> Result<JournalResult, ReplayError> {
    match journal::verify(&ctx.journal) {
        Ok(report) => {
            problems.extend(torn_problem(&report));
            let last = Some(report.last_sequence);
            let mut summary = report_json(&report);
            summary["retired"] = retired_json(&ctx.journal)?.unwrap_or(Value::Null);
            if report.retired.is_some() {
                let text = format!("{report}; {}", retired_text(&summary["retired"]));
                summary["summary"] = json!(text);
            }
            Ok(JournalResult {
                summary,
                last,
                first: report.first_sequence,
                retired: report.retired.clone(),
            })
        }
        Err(err @ JournalError::Corrupted { .. }) => {
            problems.extend(Problem::corruption(&err));
            if let JournalError::Corrupted { segment, .. } = &err {
                read_on_after(&ctx.journal, segment, problems)?;
            }
            let summary = json!({"summary": "corrupted", "tail": {"state": "unknown"}});
            Ok(JournalResult {
                summary,
                last: None,
                first: None,
                retired: None,
            })
        }
        Err(JournalError::Locked { dir }) => check_locked(&dir, problems),
        Err(err) => Err(err.into()),
    }
}

/// The journal is locked by a live writer: validate the records without the lock.
fn check_locked(dir: &Path, problems: &mut Vec<Problem>) -> Result<JournalResult, ReplayError> {
    problems.push(Problem {
        severity: "locked",
        file: Some(dir.display().to_string()),
        offset: None,
        sequence: None,
        reason: "a live writer holds the journal lock: records were checked without it, \
                 but a torn tail cannot be told from the writer's end; stop it for a full verify"
            .into(),
    });
    let mut reader = open_reader(dir)?;
    let (mut records, mut last) = (0u64, None);
    loop {
        match reader.next() {
            Ok(Some(record)) => {
                records += 1;
                last = Some(record.sequence);
            }
            Ok(None) => break,
            Err(err @ JournalError::Corrupted { .. }) => {
                problems.extend(Problem::corruption(&err));
                break;
            }
            Err(err) => return Err(err.into()),
        }
    }
    let summary = json!({
        "records": records,
        "last_sequence": last,
        "tail": {"state": "live"},
        "summary": format!("{records} records read while a writer is live"),
    });
    Ok(JournalResult {
        summary,
        last,
        first: None,
        retired: None,
    })
}

/// After corruption in `damaged`, reads each later stretch of segments for more damage.
fn read_on_after(
    dir: &Path,
    damaged: &Path,
    problems: &mut Vec<Problem>,
) -> Result<(), ReplayError> {
    let segments = list_segments(dir)?;
    let mut after = segments
        .iter()
        .find(|s| s.path == damaged)
        .map(|s| s.first_sequence);
    while let Some(first) = after {
        let Some(next) = segments.iter().find(|s| s.first_sequence > first) else {
            break;
        };
        let mut reader = open_reader(dir)?;
        reader.seek(next.first_sequence)?;
        after = None;
        loop {
            match reader.next() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(err @ JournalError::Corrupted { .. }) => {
                    let mut problem = Problem::corruption(&err).expect("corruption");
                    problem.reason += " (found reading on after earlier damage)";
                    let file = problem.file.clone();
                    problems.push(problem);
                    after = segments
                        .iter()
                        .find(|s| Some(s.path.display().to_string()) == file)
                        .map(|s| s.first_sequence);
                    break;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}

fn check_snapshots<A: App>(
    ctx: &Ctx<'_>,
    last: Option<u64>,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Value>, ReplayError> {
    let files = list_snapshots(&ctx.snapshots)?;
    let verdicts = binding_verdicts(ctx, &files, last)?;
    let mut out = Vec::new();
    for (file, vouch) in files.iter().zip(verdicts) {
        let name = file.path.display().to_string();
        if let Some(problem) = vouch.as_ref().and_then(|v| binding_problem(file, v)) {
            problems.push(problem);
        }
        let status = match restore::<A>(file, &ctx.dedup) {
            Ok(restored) => {
                let hash = restored.header.state_hash;
                json!({"valid": true, "state_hash": format!("{hash:#018x}")})
            }
            Err(reason) => {
                problems.push(Problem {
                    severity: "snapshot",
                    file: Some(name.clone()),
                    offset: None,
                    sequence: Some(file.sequence),
                    reason: reason.clone(),
                });
                json!({"valid": false, "error": reason})
            }
        };
        let bound = vouch.map(|v| vouch_text(&v));
        out.push(
            json!({"file": name, "sequence": file.sequence, "status": status,
            "journal": bound}),
        );
    }
    Ok(out)
}

/// What the journal says about each snapshot (`None` when the journal's end is unknown: it
/// is corrupted).
fn binding_verdicts(
    ctx: &Ctx<'_>,
    files: &[SnapFile],
    last: Option<u64>,
) -> Result<Vec<Option<Vouch>>, ReplayError> {
    let Some(last) = last else {
        return Ok(vec![None; files.len()]);
    };
    let listed: Vec<SnapshotFile> = files
        .iter()
        .map(|f| SnapshotFile {
            sequence: f.sequence,
            path: f.path.clone(),
        })
        .collect();
    let judged = snapshot::judge(&listed, &ctx.journal, last)?;
    Ok(judged.into_iter().map(|j| Some(j.vouch)).collect())
}

/// A snapshot the journal cannot vouch for: lost history (recovery refuses), or a warning.
fn binding_problem(file: &SnapFile, vouch: &Vouch) -> Option<Problem> {
    let (severity, reason) = match vouch {
        Vouch::BeyondEnd { journal_end } => (
            "history_lost",
            format!(
                "snapshot covers sequence {} but the journal ends at {journal_end}: records it \
                 saw (possibly acknowledged) are gone; recovery refuses to start (restore the \
                 journal, or `keel admin accept-loss` to quarantine the snapshot)",
                file.sequence
            ),
        ),
        Vouch::Forked { recorded, journal } => (
            "history_lost",
            format!(
                "snapshot is of another history: it recorded chain value {recorded:#010x} at \
                 sequence {}, the journal holds {journal:#010x}; recovery refuses to start \
                 (restore the journal, or `keel admin accept-loss` to quarantine the snapshot)",
                file.sequence
            ),
        ),
        Vouch::NoChainValue => (
            "warning",
            "format 1 snapshot without the journal's chain value: recovery restores it \
             unverified; the next snapshot written is bound to the journal"
                .to_string(),
        ),
        Vouch::BeforeStart { first_sequence } => (
            "warning",
            format!(
                "the journal starts at {first_sequence}, after this snapshot: recovery cannot \
                 use it"
            ),
        ),
        Vouch::Bound | Vouch::Unreadable(_) => return None,
    };
    Some(Problem {
        severity,
        file: Some(file.path.display().to_string()),
        offset: None,
        sequence: Some(file.sequence),
        reason,
    })
}

/// When the journal no longer starts at sequence 1 (journal retention retired the records
/// before it, or they are missing), recovery needs a usable snapshot at or after the
/// sequence before its start: without one it refuses to start (`history_lost`). Likewise a
/// journal without segments whose history was retired.
fn rebuild_problem(ctx: &Ctx<'_>, journal: &JournalResult, snapshots: &[Value]) -> Option<Problem> {
    let needed = match (journal.first, &journal.retired) {
        (Some(first), _) if first > 1 => first - 1,
        (None, Some(retired)) if journal.last == Some(0) => retired.last_retired(),
        _ => return None,
    };
    let covered = snapshots.iter().any(|s| {
        s["status"]["valid"] == true
            && matches!(s["journal"].as_str(), Some("bound" | "no_chain_value"))
            && s["sequence"].as_u64().is_some_and(|seq| seq >= needed)
    });
    if covered {
        return None;
    }
    let history = match (&journal.retired, retired_json(&ctx.journal).ok().flatten()) {
        (Some(retired), Some(json)) => {
            let mut text = retired_text(&json);
            if let Some(first) = journal.first.filter(|&f| f > retired.first_sequence) {
                text += &format!(
                    ", and the segments holding {}..{first} are missing too (keel did not \
                     retire them)",
                    retired.first_sequence
                );
            }
            text
        }
        _ => format!(
            "the segments holding 1..={needed} are missing, and keel did not retire them (no \
             retention marker)"
        ),
    };
    Some(Problem {
        severity: "history_lost",
        file: Some(ctx.journal.display().to_string()),
        offset: None,
        sequence: Some(needed + 1),
        reason: format!(
            "{history}; no usable snapshot at sequence {needed} or later: the journal alone \
             no longer rebuilds the state, and recovery refuses to start (restore such a \
             snapshot, or put the segments back into the journal directory)"
        ),
    })
}

/// One word for the JSON report.
fn vouch_text(vouch: &Vouch) -> &'static str {
    match vouch {
        Vouch::Bound => "bound",
        Vouch::Unreadable(_) => "unreadable",
        Vouch::NoChainValue => "no_chain_value",
        Vouch::BeforeStart { .. } => "before_start",
        Vouch::BeyondEnd { .. } => "beyond_end",
        Vouch::Forked { .. } => "forked",
    }
}

fn verdict(exit: Exit) -> &'static str {
    match exit {
        Exit::Ok => "sound",
        Exit::TornTail => "torn_tail",
        Exit::JournalCorrupted => "journal_corrupted",
        Exit::SnapshotCorrupted => "snapshot_corrupted",
        Exit::Locked => "locked",
        Exit::HistoryLost => "history_lost",
        _ => "error",
    }
}

/// Runs `verify`.
pub(crate) fn run<A: App>(ctx: &mut Ctx<'_>) -> Result<Exit, ReplayError> {
    let mut problems = Vec::new();
    let journal = check_journal(ctx, &mut problems)?;
    let snapshots = check_snapshots::<A>(ctx, journal.last, &mut problems)?;
    problems.extend(rebuild_problem(ctx, &journal, &snapshots));
    let exit = problems.iter().fold(Exit::Ok, |e, p| e.max(p.exit()));
    let doc = json!({
        "verdict": verdict(exit),
        "exit_code": exit.code(),
        "journal": journal.summary,
        "snapshots": snapshots,
        "problems": problems,
    });
    if ctx.json {
        ctx.document(&doc)?;
    } else {
        print_text(ctx.out, &ctx.journal, &doc)?;
    }
    Ok(exit)
}

fn print_text(out: &mut dyn Write, dir: &Path, doc: &Value) -> Result<(), ReplayError> {
    writeln!(
        out,
        "journal {}: {}",
        dir.display(),
        text(&doc["journal"]["summary"])
    )?;
    let snapshots = doc["snapshots"].as_array().map_or(&[][..], Vec::as_slice);
    let bad = snapshots
        .iter()
        .filter(|s| s["status"]["valid"] == false)
        .count();
    writeln!(
        out,
        "snapshots: {} checked, {bad} unusable",
        snapshots.len()
    )?;
    for p in doc["problems"].as_array().map_or(&[][..], Vec::as_slice) {
        let label = match p["severity"].as_str() {
            Some("corruption") => "CORRUPTED",
            Some("torn_tail") => "TORN TAIL",
            Some("snapshot") => "BAD SNAPSHOT",
            Some("locked") => "LOCKED",
            Some("history_lost") => "HISTORY LOST",
            _ => "warning",
        };
        write!(out, "{label}: {}", text(&p["file"]))?;
        if let Some(offset) = p["offset"].as_u64() {
            write!(out, " at offset {offset}")?;
        }
        if let Some(sequence) = p["sequence"].as_u64() {
            write!(out, ", sequence {sequence}")?;
        }
        writeln!(out, ": {}", text(&p["reason"]))?;
    }
    writeln!(
        out,
        "verdict: {} (exit {})",
        text(&doc["verdict"]),
        doc["exit_code"]
    )?;
    Ok(())
}
