//! Journal retention through real files: `delete` keeps the journal bounded over many
//! snapshots, `archive` moves segments where `keel replay` reads them, a restart after
//! retention starts from the snapshot, history the journal no longer has is refused (never
//! replayed from the middle), and a pass interrupted half-way recovers.

#[path = "../../replay/tests/data_dir_support/mod.rs"]
mod data_dir_support;
use data_dir_support::{copy_tree, segments};
use keel::engine::accept_loss;
use keel::error::RecoveryError;
use keel::journal::{verify, JournalError, JournalRetention};
use keel::Typed;
use keel::{Config, Engine, Error, FlushPolicy, Processor, Submission, WaitStrategy};
use keel_services::bookstore::Bookstore;
use keel_services::App;
use std::fs;
use std::path::Path;
use std::process::Command as Process;

const SEED: u64 = 23;
/// Small segments, so that a few thousand messages roll over many times.
const SEGMENT_BYTES: u64 = 128 << 10;

fn config(dir: &Path, retention: JournalRetention) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 1024;
    config.output_ring_capacity = 1024;
    config.segment_size_bytes = SEGMENT_BYTES;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::Batch;
    config.snapshot_interval_messages = 2_000;
    config.snapshot_retain = 2;
    config.discard_responses = true;
    config.journal_retention = retention;
    config
}

fn start(dir: &Path, retention: JournalRetention) -> Engine<Typed<Bookstore>> {
    Engine::start(config(dir, retention), Typed::new(Bookstore::default())).expect("engine starts")
}

/// Submits the setup (on a fresh journal) and workload messages `range`.
fn submit(engine: &mut Engine<Typed<Bookstore>>, range: std::ops::Range<u64>) -> u64 {
    let setup = if engine.recovered_sequence() == 0 {
        Typed::<Bookstore>::setup(SEED)
    } else {
        Vec::new()
    };
    let mut last = engine.recovered_sequence();
    for command in setup
        .into_iter()
        .chain(range.map(|i| Typed::<Bookstore>::workload(SEED, i)))
    {
        let to = Submission {
            kind: command.kind,
            version: command.version,
            session_id: 1,
            correlation_id: 0,
        };
        last = engine.submitter().submit(to, &command.payload).unwrap();
    }
    last
}

/// Runs messages `range` and stops cleanly (a snapshot at the end); the state hash.
fn run(dir: &Path, retention: JournalRetention, range: std::ops::Range<u64>) -> u64 {
    let mut engine = start(dir, retention);
    submit(&mut engine, range);
    engine.shutdown().expect("clean stop").state_hash()
}

fn snapshots(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    out.sort();
    out
}

/// `keel ARGS --app bookstore --data-dir DIR`: exit code, standard output, standard error.
fn keel_output(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Process::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .args(["--app", "bookstore", "--no-progress", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let code = out.status.code().expect("an exit code");
    (code, text(&out.stdout), text(&out.stderr))
}

/// [`keel_output`] with both outputs in one text.
fn keel(args: &[&str], dir: &Path) -> (i32, String) {
    let (code, out, err) = keel_output(args, dir);
    (code, out + &err)
}

/// Waits (parked, at most 60 s) until the snapshot thread wrote a snapshot at `at` or later.
fn wait_for_snapshot(metrics: &keel::engine::Metrics, at: u64) {
    for _ in 0..60_000 {
        if metrics.read().snapshot_sequence >= at {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("no snapshot at {at} within 60 s");
}

#[test]
fn delete_keeps_the_journal_bounded_over_many_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut engine = start(dir, JournalRetention::Delete);
    let stats = engine.metrics();
    let (rounds, per_round) = (100u64, 2_000u64);
    let mut most = 0;
    for round in 0..rounds {
        submit(&mut engine, round * per_round..(round + 1) * per_round);
        // A snapshot now, and its retention pass, before the segments are counted.
        let at = engine.request_snapshot().unwrap();
        wait_for_snapshot(&stats, at);
        most = most.max(segments(dir).len());
    }
    engine.shutdown().expect("clean stop");
    let retired = stats.read().segments_retired;
    let left = segments(dir).len();
    let written = verify(&dir.join("journal")).unwrap();
    // Many rollovers happened, and the journal never held more than a few segments.
    assert!(retired >= 40, "only {retired} segments retired");
    assert!(most <= 16, "the journal held {most} segments at once");
    assert!(left <= 8, "{left} segments left after {retired} retired");
    assert_eq!(written.segment_count, left);
    assert!(written.first_sequence.unwrap() > 1);
    assert!(written.retired.is_some());
    let bytes: u64 = segments(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    eprintln!(
        "delete: {} messages, {retired} segments retired, at most {most} held at once, \
         {left} left ({bytes} bytes)",
        written.last_sequence
    );
    assert!(bytes <= 8 * SEGMENT_BYTES, "{bytes} bytes of journal");
    assert_eq!(stats.read().retention_failed, 0);
}

#[test]
fn a_restart_after_retention_starts_from_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(dir, JournalRetention::Delete, 0..20_000);
    let first = verify(&dir.join("journal"))
        .unwrap()
        .first_sequence
        .unwrap();
    assert!(first > 1, "retention retired nothing");
    let mut engine = start(dir, JournalRetention::Delete);
    let recovered = engine.recovered();
    assert!(recovered.snapshot_sequence >= first - 1);
    assert_eq!(recovered.replayed, 0);
    // The state is the one that stopped, and it goes on.
    let more = submit(&mut engine, 20_000..21_000);
    let state = engine.shutdown().unwrap();
    let again = start(dir, JournalRetention::Delete);
    assert_eq!(again.recovered().last_sequence, more);
    assert_eq!(again.shutdown().unwrap().state_hash(), state.state_hash());
}

#[test]
fn snapshots_removed_after_retention_refuse_the_start_with_the_retired_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(dir, JournalRetention::Delete, 0..20_000);
    let first = verify(&dir.join("journal"))
        .unwrap()
        .first_sequence
        .unwrap();
    for snapshot in snapshots(dir) {
        fs::remove_file(snapshot).unwrap();
    }
    let before: Vec<Vec<u8>> = segments(dir).iter().map(|p| fs::read(p).unwrap()).collect();
    let refused = Engine::start(
        config(dir, JournalRetention::Delete),
        Typed::new(Bookstore::default()),
    );
    let err = match refused {
        Err(Error::Recovery(err @ RecoveryError::JournalGap { .. })) => err,
        Err(other) => panic!("expected the retired-history refusal, got: {other}"),
        Ok(_) => panic!("recovery replayed a journal from the middle"),
    };
    let text = err.to_string();
    assert!(text.contains(&format!("starts at {first}")), "{text}");
    assert!(text.contains("retention retired sequences 1..="), "{text}");
    assert!(text.contains("(deleted)"), "{text}");
    assert!(text.contains("no longer rebuilds the state"), "{text}");
    let after: Vec<Vec<u8>> = segments(dir).iter().map(|p| fs::read(p).unwrap()).collect();
    assert_eq!(before, after, "a refusal changes no segment");
    // `keel replay verify` reports it as lost history (exit 9) and names the retired range.
    let (code, out) = keel(&["replay", "verify"], dir);
    assert_eq!(code, 9, "{out}");
    assert!(out.contains("HISTORY LOST"), "{out}");
    assert!(
        out.contains("retired by journal retention (deleted)"),
        "{out}"
    );

    // Every segment deleted too: the journal would restart at 1 and is refused before any
    // file is created; accepting the loss starts an empty journal.
    for segment in segments(dir) {
        fs::remove_file(segment).unwrap();
    }
    match Engine::start(
        config(dir, JournalRetention::Delete),
        Typed::new(Bookstore::default()),
    ) {
        Err(Error::Journal(JournalError::HistoryRetired { last_retired, .. })) => {
            assert_eq!(last_retired, first - 1)
        }
        Err(other) => panic!("expected HistoryRetired, got: {other}"),
        Ok(_) => panic!("an emptied journal restarted at sequence 1"),
    }
    assert!(segments(dir).is_empty());
    assert_eq!(keel(&["replay", "verify"], dir).0, 9);
    let accepted = accept_loss(&config(dir, JournalRetention::Delete)).unwrap();
    assert_eq!(accepted.retired_given_up, Some(first - 1));
    let engine = start(dir, JournalRetention::Delete);
    assert_eq!(engine.recovered().last_sequence, 0);
    engine.shutdown().unwrap();
}

#[test]
fn archive_moves_segments_and_keel_replay_reads_them_transparently() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let archive = tmp.path().join("archive");
    run(&dir, JournalRetention::Archive(archive.clone()), 0..20_000);
    let archived = fs::read_dir(&archive).unwrap().count();
    let first = verify(&dir.join("journal"))
        .unwrap()
        .first_sequence
        .unwrap();
    assert!(
        archived >= 5 && first > 1,
        "{archived} archived, journal from {first}"
    );
    // info: the whole history, from sequence 1, and the retired range.
    let (code, out, err) = keel_output(&["replay", "info", "--json"], &dir);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["journal"]["first_sequence"], 1, "{out}");
    assert_eq!(doc["journal"]["retired"]["policy"], "archive");
    assert_eq!(doc["journal"]["retired"]["last_retired"], first - 1);
    assert_eq!(doc["journal"]["retired"]["archived_segments"], archived);
    // verify: sound, naming the retired range; check: full replay through the archive.
    let (code, out) = keel(&["replay", "verify"], &dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("archived to"), "{out}");
    let (code, out) = keel(&["replay", "check"], &dir);
    assert_eq!(code, 0, "{out}");
    // The engine restarts from its snapshot.
    let engine = start(&dir, JournalRetention::Archive(archive.clone()));
    assert!(engine.recovered().snapshot_sequence >= first - 1);
    engine.shutdown().unwrap();
}

#[test]
fn a_retention_pass_interrupted_half_way_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Many segments under `keep`, then a copy of the data directory before a pass runs.
    let hash = run(&dir, JournalRetention::Keep, 0..20_000);
    let crashed = tmp.path().join("crashed");
    copy_tree(&dir, &crashed);
    let all = segments(&dir);
    // A pass under `delete` (its marker is what a crash right after the marker leaves).
    drop(start(&dir, JournalRetention::Delete).shutdown().unwrap());
    let kept = segments(&dir);
    assert!(kept.len() < all.len(), "the pass retired nothing");
    fs::copy(
        dir.join("journal").join("journal.retired"),
        crashed.join("journal").join("journal.retired"),
    )
    .unwrap();
    // Half of the retired segments gone, oldest first: a crash in the middle of the pass.
    let retired = all.len() - kept.len();
    for segment in &segments(&crashed)[..retired / 2] {
        fs::remove_file(segment).unwrap();
    }
    let (code, out) = keel(&["replay", "verify"], &crashed);
    assert_eq!(code, 0, "{out}");
    let engine = start(&crashed, JournalRetention::Keep);
    assert_eq!(engine.shutdown().unwrap().state_hash(), hash);
    // The next pass finishes the job.
    drop(
        start(&crashed, JournalRetention::Delete)
            .shutdown()
            .unwrap(),
    );
    assert_eq!(segments(&crashed).len(), kept.len());
    let engine = start(&crashed, JournalRetention::Delete);
    assert_eq!(engine.shutdown().unwrap().state_hash(), hash);
}
