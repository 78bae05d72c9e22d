//! Snapshots are bound to the journal they were taken from: recovery uses a snapshot only when
//! the journal holds its sequence with the chain value it recorded, and refuses to start when a
//! snapshot shows that acknowledged data is gone (beyond the journal's end, of another history,
//! every segment deleted, the last segment deleted). The refusal modifies nothing; the
//! operator's explicit `accept_loss` quarantines the snapshots (never deletes them) and no
//! later restart picks them up.

#[path = "../../replay/tests/data_dir_support/mod.rs"]
mod data_dir_support;
use data_dir_support::{copy_tree, segments};
use keel::engine::accept_loss;
use keel::journal::{record_size_bytes, verify, JournalReader, TailState};
use keel::snapshot::{SnapshotStore, UnboundSnapshot, QUARANTINE_DIR};
use keel::Typed;
use keel::{Config, Engine, Error, FlushPolicy, Processor, Submission, WaitStrategy};
use keel_services::bookstore::Bookstore;
use keel_services::App;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

const SEED: u64 = 17;

fn config(dir: &Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 1024;
    config.output_ring_capacity = 1024;
    config.segment_size_bytes = 1 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::Batch;
    config.snapshot_interval_messages = 0;
    config.discard_responses = true;
    config
}

/// Submits the bookstore's setup (on a fresh journal) and workload messages `range`, then stops
/// cleanly (a snapshot at the last sequence). Returns the state hash and the last sequence.
fn run(dir: &Path, range: std::ops::Range<u64>, salt: u64) -> (u64, u64) {
    let mut engine =
        Engine::start(config(dir), Typed::new(Bookstore::default())).expect("engine starts");
    let fresh = engine.recovered_sequence() == 0;
    let setup = if fresh {
        Typed::<Bookstore>::setup(SEED)
    } else {
        Vec::new()
    };
    let mut last = engine.recovered_sequence();
    for command in setup
        .into_iter()
        .chain(range.map(|i| Typed::<Bookstore>::workload(SEED + salt, i)))
    {
        let to = Submission {
            kind: command.kind,
            version: command.version,
            session_id: 1,
            correlation_id: 0,
        };
        last = engine.submitter().submit(to, &command.payload).unwrap();
    }
    let state = engine.shutdown().expect("clean stop");
    (state.state_hash(), last)
}

/// The state hash a full replay of the journal in `dir` gives (snapshots ignored).
fn full_replay_hash(dir: &Path) -> u64 {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path();
    copy_tree(&dir.join("journal"), &copy.join("journal"));
    let engine = Engine::start(
        {
            let mut config = config(copy);
            config.snapshot_on_shutdown = false;
            config
        },
        Typed::<Bookstore>::default(),
    )
    .unwrap();
    assert_eq!(engine.recovered().snapshot_sequence, 0);
    engine.shutdown().unwrap().state_hash()
}

/// Every segment's bytes, to prove a refusal changed nothing.
fn journal_bytes(dir: &Path) -> Vec<Vec<u8>> {
    segments(dir).iter().map(|p| fs::read(p).unwrap()).collect()
}

/// The last record: its segment, offset and size.
fn last_record(dir: &Path) -> (PathBuf, usize, usize) {
    let journal = dir.join("journal");
    let mut reader = JournalReader::open(&journal).unwrap();
    let mut payload_bytes = None;
    while let Some(record) = reader.next().unwrap() {
        payload_bytes = Some(record.payload.len());
    }
    let size = record_size_bytes(payload_bytes.expect("a record"));
    match verify(&journal).unwrap().tail {
        TailState::Clean { segment, offset } => (segment, offset as usize - size, size),
        other => panic!("expected a clean end, got {other:?}"),
    }
}

/// The two ways the tail's last record can be lost: zeroed, or one bit flipped.
fn damage_last_record(dir: &Path, zero: bool) {
    let (segment, offset, size) = last_record(dir);
    let mut bytes = fs::read(&segment).unwrap();
    if zero {
        bytes[offset..offset + size].fill(0);
    } else {
        bytes[offset + 20] ^= 0x10;
    }
    fs::write(&segment, bytes).unwrap();
}

fn refusal(dir: &Path) -> UnboundSnapshot {
    match Engine::start(config(dir), Typed::new(Bookstore::default())) {
        Err(Error::UnboundSnapshot(refusal)) => refusal,
        Err(other) => panic!("expected a refusal naming a snapshot, got: {other}"),
        Ok(_) => panic!("recovery started on a journal that lost acknowledged data"),
    }
}

/// `keel replay verify`'s exit code on `dir`.
fn verify_exit(dir: &Path) -> i32 {
    let out = Process::new(env!("CARGO_BIN_EXE_keel"))
        .args(["replay", "verify", "--app", "bookstore", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    out.status.code().expect("an exit code")
}

fn quarantined(dir: &Path) -> Vec<String> {
    let folder = dir.join("snapshots").join(QUARANTINE_DIR);
    let mut names: Vec<String> = fs::read_dir(folder)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The case 1: clean stop (snapshot at L), the last record is then lost (zeroed or a
/// flipped bit: a torn tail, which recovery cuts). Recovery must refuse rather than start a new
/// history beside the stale snapshot; after the operator accepts the loss, a new history is
/// bound to its own snapshots and a restart equals a full replay.
fn torn_tail_under_a_snapshot(zero: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, last) = run(dir, 0..200, 0);
    damage_last_record(dir, zero);
    let before = journal_bytes(dir);
    let refused = refusal(dir);
    assert!(
        matches!(refused, UnboundSnapshot::BeyondEnd { sequence, journal_end, .. }
            if sequence == last && journal_end == last - 1),
        "{refused}"
    );
    let text = refused.to_string();
    let needles = [
        format!("{last:020}.snap"),
        "accept-loss".into(),
        (last - 1).to_string(),
    ];
    for needle in needles {
        assert!(text.contains(&needle), "{needle} missing: {text}");
    }
    assert_eq!(
        journal_bytes(dir),
        before,
        "the refusal modified the journal"
    );
    assert_eq!(verify_exit(dir), 9, "verify reports lost history");

    let accepted = accept_loss(&config(dir)).unwrap();
    assert_eq!(accepted.journal_end, last - 1);
    assert_eq!(accepted.quarantined.len(), 1, "{accepted:?}");
    assert_eq!(quarantined(dir), vec![format!("{last:020}.snap")]);

    // A new history from last - 1 on, then a restart from its own snapshot.
    let (hash, new_last) = run(dir, 1_000..1_002, 99);
    assert_eq!(new_last, last + 1);
    let engine = Engine::start(config(dir), Typed::new(Bookstore::default())).unwrap();
    assert_eq!(engine.recovered().snapshot_sequence, new_last);
    assert_eq!(engine.shutdown().unwrap().state_hash(), hash);
    assert_eq!(full_replay_hash(dir), hash);
    assert_eq!(verify_exit(dir), 0);
    assert!(accept_loss(&config(dir)).unwrap().is_empty());
    assert_eq!(quarantined(dir).len(), 1, "the quarantine is kept");
}

#[test]
fn a_zeroed_last_record_under_a_snapshot_refuses_recovery_until_the_loss_is_accepted() {
    torn_tail_under_a_snapshot(true);
}

#[test]
fn a_flipped_bit_in_the_last_record_under_a_snapshot_refuses_recovery_too() {
    torn_tail_under_a_snapshot(false);
}

/// The case 3: every segment deleted, snapshots kept.
#[test]
fn a_wiped_journal_with_snapshots_left_refuses_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, last) = run(dir, 0..100, 0);
    for segment in segments(dir) {
        fs::remove_file(segment).unwrap();
    }
    let refused = refusal(dir);
    assert!(
        matches!(refused, UnboundSnapshot::BeyondEnd { sequence, journal_end: 0, .. }
            if sequence == last),
        "{refused}"
    );
    assert_eq!(verify_exit(dir), 9);
    let accepted = accept_loss(&config(dir)).unwrap();
    assert_eq!((accepted.journal_end, accepted.quarantined.len()), (0, 1));
    let engine = Engine::start(config(dir), Typed::new(Bookstore::default())).unwrap();
    assert_eq!(engine.recovered_sequence(), 0);
    assert_eq!(
        engine.shutdown().unwrap().state_hash(),
        Typed::<Bookstore>::default().state_hash()
    );
}

/// A snapshot whose sequence the journal holds, but with another chain value: it was taken from
/// another history (here: another server's data directory).
#[test]
fn a_snapshot_of_another_history_refuses_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (_, last_a) = run(&a, 0..100, 0);
    let (_, last_b) = run(&b, 0..100, 5);
    assert_eq!(last_a, last_b);
    let name = format!("{last_a:020}.snap");
    fs::copy(
        b.join("snapshots").join(&name),
        a.join("snapshots").join(&name),
    )
    .unwrap();
    let refused = refusal(&a);
    assert!(
        matches!(refused, UnboundSnapshot::Forked { sequence, .. } if sequence == last_a),
        "{refused}"
    );
    assert!(refused.to_string().contains("another history"), "{refused}");
    assert_eq!(verify_exit(&a), 9);
    accept_loss(&config(&a)).unwrap();
    assert_eq!(quarantined(&a), vec![name]);
    let engine = Engine::start(config(&a), Typed::new(Bookstore::default())).unwrap();
    assert_eq!(engine.recovered().snapshot_sequence, 0, "full replay");
    engine.shutdown().unwrap();
}

/// The case 2: the last segment deleted, the one before it sealed, and no snapshot
/// beyond what remains. A sealed segment always has its successor, so this is refused too.
#[test]
fn a_deleted_last_segment_refuses_recovery_even_without_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(dir, 0..20_000, 0);
    let segments = segments(dir);
    assert!(segments.len() >= 2, "{segments:?}");
    fs::remove_file(segments.last().unwrap()).unwrap();
    for file in SnapshotStore::open(&dir.join("snapshots"), 10)
        .unwrap()
        .list()
        .unwrap()
    {
        fs::remove_file(file.path).unwrap();
    }
    let before = journal_bytes(dir);
    let err = Engine::start(config(dir), Typed::new(Bookstore::default()))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(
        journal_bytes(dir),
        before,
        "the refusal modified the journal"
    );
    assert_ne!(verify_exit(dir), 0);
    let accepted = accept_loss(&config(dir)).unwrap();
    assert!(accepted.sealed_end.is_some(), "{accepted:?}");
    let engine = Engine::start(config(dir), Typed::new(Bookstore::default())).unwrap();
    assert_eq!(engine.recovered_sequence(), accepted.journal_end);
    engine.shutdown().unwrap();
}

/// Snapshots written while the engine runs under `none` (and `interval`) are published only
/// once the journal is durable past them, so a restart never finds one beyond the journal.
#[test]
fn snapshots_under_every_flush_policy_are_bound_and_restored() {
    for flush in [
        FlushPolicy::None,
        FlushPolicy::IntervalMs(50),
        FlushPolicy::Batch,
    ] {
        for mode in [keel::ApplyMode::Durable, keel::ApplyMode::ApplyAhead] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let cfg = {
                let mut config = config(dir);
                config.flush = flush;
                config.mode = mode;
                config.snapshot_interval_messages = 500;
                config
            };
            let mut engine = Engine::start(cfg.clone(), Typed::new(Bookstore::default())).unwrap();
            for command in Typed::<Bookstore>::setup(SEED)
                .into_iter()
                .chain((0..3_000).map(|i| Typed::<Bookstore>::workload(SEED, i)))
            {
                let to = Submission {
                    kind: command.kind,
                    version: command.version,
                    session_id: 1,
                    correlation_id: 0,
                };
                engine.submitter().submit(to, &command.payload).unwrap();
            }
            let metrics = engine.metrics();
            let hash = engine.shutdown().unwrap().state_hash();
            let written = metrics.read().snapshots_written;
            assert!(written >= 2, "{flush:?} {mode:?}: {written} snapshots");
            let engine = Engine::start(cfg, Typed::new(Bookstore::default())).unwrap();
            assert!(engine.recovered().snapshot_sequence > 0);
            assert_eq!(
                engine.shutdown().unwrap().state_hash(),
                hash,
                "{flush:?} {mode:?}"
            );
            assert_eq!(verify_exit(dir), 0, "{flush:?} {mode:?}");
        }
    }
}

/// The default segment size shrank (256 MiB to 16 MiB): a journal written with larger segments
/// restarts under a smaller setting (each segment keeps its own size, new ones get the new
/// size), and the other way round, with the state of a full replay.
#[test]
fn a_journal_restarts_under_another_segment_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(dir, 0..5_000, 0);
    let sizes = [256 << 10, 1 << 20, 256 << 10];
    let mut hash = 0;
    for (round, size) in sizes.into_iter().enumerate() {
        let mut cfg = config(dir);
        cfg.segment_size_bytes = size;
        let mut engine = Engine::start(cfg, Typed::new(Bookstore::default())).unwrap();
        assert!(engine.recovered().snapshot_sequence > 0, "round {round}");
        for i in 0..12_000 {
            let c = Typed::<Bookstore>::workload(SEED, 10_000 * (round as u64 + 1) + i);
            let to = Submission {
                kind: c.kind,
                version: c.version,
                session_id: 1,
                correlation_id: 0,
            };
            engine.submitter().submit(to, &c.payload).unwrap();
        }
        hash = engine.shutdown().unwrap().state_hash();
    }
    let lens: std::collections::BTreeSet<u64> = segments(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .collect();
    assert_eq!(lens.len(), 2, "segments of both sizes: {lens:?}");
    assert_eq!(full_replay_hash(dir), hash);
    assert_eq!(verify_exit(dir), 0);
}

// ---------------------------------------------------------------- through the real server

mod serve_support;

use keel::net::{Client, ReplyStatus};
use keel_services::bookstore::{AddBook, Payload, PlaceOrder};
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn keel_serve(data: &Path) -> Process {
    serve_support::bookstore(data)
}

/// Runs `command` to its end (at most 60 s): its status and stderr.
fn run_to_end(mut command: Process) -> (ExitStatus, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after 60 s: it did not refuse");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// Sends each command and asserts it is accepted (so it is journaled and acknowledged).
fn acknowledged(addr: SocketAddr, commands: &[keel_services::Command]) {
    let mut client = Client::connect(addr, None).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for c in commands {
        let reply = client.request(c.kind, c.version, &c.payload).unwrap();
        assert_eq!(reply.status, ReplyStatus::Accepted);
    }
}

fn order(customer: u64) -> keel_services::Command {
    PlaceOrder {
        customer,
        book: 1,
        quantity: 1,
        seen_price_cents: 1_000,
    }
    .command()
}

fn sigterm_and_wait(mut served: serve_support::Served) {
    let pid = served.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let status = served.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The case 1 as a user meets it: 5 acknowledged requests and a clean stop (a snapshot
/// at the end), then the last record is zeroed. `keel serve` must refuse (naming the snapshot
/// and the journal's end) instead of starting a second history beside the stale snapshot;
/// after `keel admin accept-loss`, new acknowledged orders survive a kill -9, and the restart
/// is exactly a full replay of the journal (`keel replay check`).
#[test]
fn keel_serve_refuses_a_torn_tail_under_a_snapshot_until_the_loss_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let served = serve_support::spawn(keel_serve(&data));
    let book = AddBook {
        book: 1,
        price_cents: 1_000,
        stock: 10,
        title: "Dune".into(),
    };
    let first: Vec<_> = std::iter::once(book.command())
        .chain((1..=4).map(order))
        .collect();
    acknowledged(served.addr, &first);
    sigterm_and_wait(served);
    let snapshots = SnapshotStore::open(&data.join("snapshots"), 10).unwrap();
    let last = snapshots
        .list()
        .unwrap()
        .last()
        .expect("a snapshot")
        .sequence;
    damage_last_record(&data, true);

    let (status, text) = run_to_end(keel_serve(&data));
    assert!(!status.success(), "{text}");
    assert!(text.contains("refusing to start"), "{text}");
    assert!(text.contains(&format!("{last:020}.snap")), "{text}");
    assert!(text.contains(&format!("ends at {}", last - 1)), "{text}");
    assert_eq!(verify_exit(&data), 9);

    let mut admin = Process::new(env!("CARGO_BIN_EXE_keel"));
    admin
        .args(["admin", "accept-loss", "--data-dir"])
        .arg(&data);
    let (status, text) = run_to_end(admin);
    assert!(status.success() && text.contains("quarantined"), "{text}");

    let mut served = serve_support::spawn(keel_serve(&data));
    assert_eq!(served.recovered_last_sequence(), last - 1);
    acknowledged(served.addr, &[order(7), order(8)]);
    served.child.kill().unwrap(); // kill -9
    served.child.wait().unwrap();

    let served = serve_support::spawn(keel_serve(&data));
    assert_eq!(served.recovered_last_sequence(), last + 1);
    sigterm_and_wait(served);
    let mut check = Process::new(env!("CARGO_BIN_EXE_keel"));
    check
        .args(["replay", "check", "--app", "bookstore", "--data-dir"])
        .arg(&data);
    let (status, text) = run_to_end(check);
    assert!(status.success(), "replay check: {text}");
    assert_eq!(verify_exit(&data), 0);
}

/// The cases 2 and 3 as a user meets them: `keel serve` refuses, with a message naming
/// what is missing, a journal whose last segment was deleted (no snapshot after what remains)
/// and a journal wiped while snapshots remain.
#[test]
fn keel_serve_refuses_a_deleted_last_segment_and_a_wiped_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    run(&data, 0..20_000, 0);
    let all = segments(&data);
    assert!(all.len() >= 2, "{all:?}");
    let copy = tmp.path().join("copy");
    copy_tree(&data.join("journal"), &copy.join("journal"));
    copy_tree(&data.join("snapshots"), &copy.join("snapshots"));

    // Case 2: the last segment deleted, and the snapshots with it.
    fs::remove_file(all.last().unwrap()).unwrap();
    fs::remove_dir_all(data.join("snapshots")).unwrap();
    let (status, text) = run_to_end(keel_serve(&data));
    assert!(!status.success(), "{text}");
    assert!(text.contains("is missing"), "{text}");

    // Case 3: every segment deleted, the snapshots kept.
    for segment in segments(&copy) {
        fs::remove_file(segment).unwrap();
    }
    let (status, text) = run_to_end(keel_serve(&copy));
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("refusing to start") && text.contains("ends at 0"),
        "{text}"
    );
}
