//! The engine end to end, embedded (no network): order, exactly-once responses, restart,
//! panic containment, apply-ahead holding, journal failure, shutdown under load.

mod common;

use common::{to, Summer, ADD, PANIC, REJECT_ODD};
use keel::engine::{JournalSink, ResponseReceiver};
use keel::journal::{JournalError, Record};
use keel::ring::Poll;
use keel::{ApplyMode, Config, Engine, FlushPolicy, Status, WaitStrategy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 1024;
    config.output_ring_capacity = 1024;
    config.segment_size_bytes = 1 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::None;
    config
}

/// One collected response: (sequence, correlation, status, reason, payload as u64).
type Got = (u64, u64, Status, u32, u64);

/// Collects responses until the ring closes.
fn collect(mut rx: ResponseReceiver) -> thread::JoinHandle<Vec<Got>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        loop {
            let poll = rx.poll(None, |r| {
                let v = r
                    .payload
                    .get(..8)
                    .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                out.push((
                    r.header.sequence,
                    r.header.correlation_id,
                    r.header.status,
                    r.header.reason,
                    v,
                ));
            });
            if matches!(poll, Poll::Closed | Poll::Halted) {
                return out;
            }
        }
    })
}

#[test]
fn every_message_is_answered_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::start(config(dir.path()), Summer::default()).unwrap();
    let responses = collect(engine.take_responses().unwrap());
    let n = 100_000u64;
    for i in 1..=n {
        let kind = if i % 10 == 0 { REJECT_ODD } else { ADD };
        engine
            .submitter()
            .submit(to(kind, i), &i.to_le_bytes())
            .unwrap();
    }
    let state = engine.shutdown().unwrap();
    let got = responses.join().unwrap();
    assert_eq!(got.len() as u64, n);
    let mut total = 0u64;
    for (i, (seq, corr, status, _, v)) in got.iter().enumerate() {
        let i = i as u64 + 1;
        assert_eq!((*seq, *corr), (i, i));
        if i.is_multiple_of(10) {
            assert_eq!(*status, Status::Accepted); // even values pass REJECT_ODD
            total += i;
        } else {
            total += i;
            assert_eq!((*status, *v), (Status::Accepted, total));
        }
    }
    assert_eq!(state.total, total);
    assert_eq!(state.applied, n);
}

#[test]
fn restart_replays_the_journal_and_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let discard = || {
        let mut config = config(dir.path());
        config.discard_responses = true;
        config
    };
    let mut engine = Engine::start(discard(), Summer::default()).unwrap();
    for i in 1..=5_000u64 {
        let kind = if i % 7 == 0 {
            PANIC
        } else if i % 5 == 0 {
            REJECT_ODD
        } else {
            ADD
        };
        engine
            .submitter()
            .submit(to(kind, i), &i.to_le_bytes())
            .unwrap();
    }
    let first = engine.shutdown().unwrap();

    let mut engine = Engine::start(discard(), Summer::default()).unwrap();
    assert_eq!(engine.recovered_sequence(), 5_000);
    assert_eq!(engine.applied_sequence(), 5_000);
    let seq = engine
        .submitter()
        .submit(to(ADD, 1), &1u64.to_le_bytes())
        .unwrap();
    assert_eq!(seq, 5_001);
    let second = engine.shutdown().unwrap();
    assert_eq!(second.total, first.total + 1);
    assert_eq!(second.applied, 5_001);
    // Timestamps come from the journal, not the replay clock.
    let third = Engine::start(config(dir.path()), Summer::default())
        .unwrap()
        .shutdown()
        .unwrap();
    assert_eq!(third, second);
}

#[test]
fn a_panic_is_contained_reported_and_replayed_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::start(config(dir.path()), Summer::default()).unwrap();
    let responses = collect(engine.take_responses().unwrap());
    engine
        .submitter()
        .submit(to(ADD, 1), &10u64.to_le_bytes())
        .unwrap();
    engine
        .submitter()
        .submit(to(PANIC, 2), &0u64.to_le_bytes())
        .unwrap();
    engine
        .submitter()
        .submit(to(REJECT_ODD, 3), &3u64.to_le_bytes())
        .unwrap();
    engine
        .submitter()
        .submit(to(ADD, 4), &5u64.to_le_bytes())
        .unwrap();
    let live = engine.shutdown().unwrap();
    let got = responses.join().unwrap();
    let statuses: Vec<_> = got.iter().map(|r| (r.2, r.3)).collect();
    assert_eq!(
        statuses,
        vec![
            (Status::Accepted, 0),
            (Status::Failed, 0),
            (Status::Rejected, 7),
            (Status::Accepted, 0)
        ]
    );
    assert_eq!(live.total, 16); // 10 + 1 (the panic's partial change) + 5
    let replayed = Engine::start(config(dir.path()), Summer::default())
        .unwrap()
        .shutdown()
        .unwrap();
    assert_eq!(replayed, live);
}

/// A journal sink that appends nowhere, can be held (nothing gets journaled while held) and can
/// fail at a chosen sequence.
#[derive(Clone, Default)]
struct GateSink {
    hold: Arc<AtomicBool>,
    fail_at: Arc<AtomicU64>,
    appended: Arc<AtomicU64>,
}

impl JournalSink for GateSink {
    fn append(&mut self, record: &Record<'_>) -> Result<(), JournalError> {
        while self.hold.load(Ordering::Acquire) {
            thread::sleep(Duration::from_millis(1));
        }
        if record.sequence == self.fail_at.load(Ordering::Acquire) {
            return Err(JournalError::Io(std::io::Error::other("injected failure")));
        }
        self.appended.store(record.sequence, Ordering::Release);
        Ok(())
    }
    fn end_batch(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
    fn tick(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
}

fn wait_for(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "condition never held"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn apply_ahead_holds_responses_until_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let sink = GateSink::default();
    sink.hold.store(true, Ordering::Release);
    let cfg = {
        let mut config = config(dir.path());
        config.mode = ApplyMode::ApplyAhead;
        config
    };
    let mut engine = Engine::start_with_sink(cfg, Summer::default(), sink.clone(), 0).unwrap();
    let mut rx = engine.take_responses().unwrap();
    for i in 1..=10u64 {
        engine
            .submitter()
            .submit(to(ADD, i), &1u64.to_le_bytes())
            .unwrap();
    }
    // Applied ahead of the journal, but no response may leave.
    wait_for(|| engine.applied_sequence() == 10);
    let mut seen = 0;
    let poll = rx.poll(Some(Instant::now() + Duration::from_millis(50)), |_| {
        seen += 1
    });
    assert_eq!((poll, seen), (Poll::Timeout, 0));
    sink.hold.store(false, Ordering::Release);
    let handle = collect(rx);
    let state = engine.shutdown().unwrap();
    assert_eq!(handle.join().unwrap().len(), 10);
    assert_eq!(state.total, 10);
}

#[test]
fn durable_mode_never_applies_before_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let sink = GateSink::default();
    sink.hold.store(true, Ordering::Release);
    let mut engine =
        Engine::start_with_sink(config(dir.path()), Summer::default(), sink.clone(), 0).unwrap();
    for i in 1..=10u64 {
        engine
            .submitter()
            .submit(to(ADD, i), &1u64.to_le_bytes())
            .unwrap();
    }
    thread::sleep(Duration::from_millis(50));
    assert_eq!(engine.applied_sequence(), 0);
    sink.hold.store(false, Ordering::Release);
    wait_for(|| engine.applied_sequence() == 10);
    assert!(engine.journaled_sequence() >= engine.applied_sequence());
    engine.shutdown().unwrap();
}

#[test]
fn a_journal_failure_stops_the_engine_and_nothing_after_it_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let sink = GateSink::default();
    sink.fail_at.store(500, Ordering::Release);
    let mut engine =
        Engine::start_with_sink(config(dir.path()), Summer::default(), sink.clone(), 0).unwrap();
    let responses = collect(engine.take_responses().unwrap());
    let mut stopped = false;
    for i in 1..=100_000u64 {
        if engine
            .submitter()
            .submit(to(ADD, i), &1u64.to_le_bytes())
            .is_err()
        {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "submit must fail once the journal has failed");
    let err = engine.shutdown().unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let got = responses.join().unwrap();
    assert!(
        got.len() < 500,
        "answered {} messages, but 500 was never journaled",
        got.len()
    );
    assert!(got
        .iter()
        .all(|r| r.0 <= sink.appended.load(Ordering::Acquire)));
}

#[test]
fn shutdown_under_load_drains_everything_published() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::start(config(dir.path()), Summer::default()).unwrap();
    let mut submitter = engine.take_submitter().unwrap();
    let responses = collect(engine.take_responses().unwrap());
    let producer = thread::spawn(move || {
        for i in 1..=300_000u64 {
            submitter.submit(to(ADD, i), &1u64.to_le_bytes()).unwrap();
        }
        // Dropping the submitter closes the input while the pipeline is still full.
    });
    producer.join().unwrap();
    let state = engine.shutdown().unwrap();
    assert_eq!(state.total, 300_000);
    assert_eq!(responses.join().unwrap().len(), 300_000);
    let replayed = Engine::start(config(dir.path()), Summer::default())
        .unwrap()
        .shutdown()
        .unwrap();
    assert_eq!(replayed, state);
}

#[test]
fn oversized_messages_are_refused_before_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = {
        let mut config = config(dir.path());
        config.max_message_bytes = 16;
        config
    };
    let mut engine = Engine::start(cfg, Summer::default()).unwrap();
    let err = engine
        .submitter()
        .submit(to(ADD, 1), &[0u8; 17])
        .unwrap_err();
    assert!(matches!(
        err,
        keel::engine::SubmitError::TooLarge { len: 17, max: 16 }
    ));
    assert_eq!(engine.submitter().published(), 0);
    engine.shutdown().unwrap();
}

/// Records when, where and how often the engine asked it to pre-fault.
#[derive(Default)]
struct PrefaultProbe {
    applied: u64,
    prefaults: u32,
    applied_at_prefault: u64,
    prefaulted_on: Option<String>,
    /// Set (after a pause) when `prefault` finishes, if given.
    finished: Option<Arc<AtomicBool>>,
}

impl keel::Processor for PrefaultProbe {
    fn apply(
        &mut self,
        _message: &keel::Message<'_>,
        _out: &mut keel::engine::Output<'_>,
    ) -> keel::Outcome {
        self.applied += 1;
        keel::Outcome::Accepted
    }

    fn state_hash(&self) -> u64 {
        self.applied
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), keel::codec::CodecError> {
        out.extend_from_slice(&self.applied.to_le_bytes());
        Ok(())
    }

    fn load_state(
        &mut self,
        _schema_version: u32,
        bytes: &[u8],
    ) -> Result<(), keel::snapshot::StateError> {
        let bytes: [u8; 8] = bytes
            .try_into()
            .map_err(|_| keel::snapshot::StateError::Invalid("8 bytes expected".into()))?;
        self.applied = u64::from_le_bytes(bytes);
        Ok(())
    }

    fn prefault(&mut self) {
        self.prefaults += 1;
        self.applied_at_prefault = self.applied;
        self.prefaulted_on = thread::current().name().map(str::to_owned);
        if let Some(finished) = &self.finished {
            thread::sleep(Duration::from_millis(100));
            finished.store(true, Ordering::Release);
        }
    }
}

fn probe_run(dir: &std::path::Path, prefault_state: bool, messages: u64) -> PrefaultProbe {
    let config = {
        let mut config = config(dir);
        config.prefault_state = prefault_state;
        config.discard_responses = true;
        config
    };
    let mut engine = Engine::start(config, PrefaultProbe::default()).unwrap();
    for i in 1..=messages {
        engine.submitter().submit(to(ADD, i), &[]).unwrap();
    }
    engine.shutdown().unwrap()
}

#[test]
fn prefault_runs_once_on_the_logic_thread_after_recovery_before_any_message() {
    let dir = tempfile::tempdir().unwrap();
    let first = probe_run(dir.path(), false, 3);
    assert_eq!((first.prefaults, first.applied), (0, 3));
    // Restart from the shutdown snapshot: the recovered state is what gets pre-faulted.
    let second = probe_run(dir.path(), true, 2);
    assert_eq!(second.prefaults, 1);
    assert_eq!(
        second.applied_at_prefault, 3,
        "after recovery, before new messages"
    );
    assert_eq!(second.applied, 5);
    assert_eq!(second.prefaulted_on.as_deref(), Some("keel-logic"));
}

#[test]
fn start_returns_once_the_state_is_prefaulted() {
    let dir = tempfile::tempdir().unwrap();
    let finished = Arc::new(AtomicBool::new(false));
    let probe = PrefaultProbe {
        finished: Some(finished.clone()),
        ..PrefaultProbe::default()
    };
    let config = {
        let mut config = config(dir.path());
        config.prefault_state = true;
        config.discard_responses = true;
        config
    };
    let engine = Engine::start(config, probe).unwrap();
    assert!(
        finished.load(Ordering::Acquire),
        "start returned mid-prefault"
    );
    assert_eq!(engine.shutdown().unwrap().prefaults, 1);
}

/// Runs `f` on its own thread and fails the test (instead of hanging it) unless it returns
/// within a generous deadline.
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("{what} did not return: it hangs"))
}

/// Far more than the input and output rings hold together (1024 + 1024 slots).
const MANY: u64 = 20_000;

#[test]
fn a_receiver_dropped_unread_never_blocks_submit() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::start(config(dir.path()), Summer::default()).unwrap();
    drop(engine.take_responses().unwrap());
    let mut submitter = engine.take_submitter().unwrap();
    within_deadline("submit after the receiver was dropped", move || {
        for i in 1..=MANY {
            submitter.submit(to(ADD, i), &1u64.to_le_bytes()).unwrap();
        }
    });
    let state = within_deadline("shutdown", move || engine.shutdown().unwrap());
    assert_eq!(state.total, MANY, "every message is still applied");
}

#[test]
fn dropping_the_receiver_frees_a_submitter_blocked_on_full_rings() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::start(config(dir.path()), Summer::default()).unwrap();
    let receiver = engine.take_responses().unwrap();
    let mut submitter = engine.take_submitter().unwrap();
    let producer = thread::spawn(move || {
        for i in 1..=MANY {
            submitter.submit(to(ADD, i), &1u64.to_le_bytes()).unwrap();
        }
    });
    // Nobody reads: the output ring fills, the business logic waits, then the input fills.
    let capacity = engine.input_gauge().capacity();
    wait_for(|| engine.input_gauge().fill() == capacity);
    assert!(engine.applied_sequence() < MANY);
    drop(receiver);
    within_deadline("the blocked submitter", move || producer.join().unwrap());
    let state = within_deadline("shutdown", move || engine.shutdown().unwrap());
    assert_eq!(state.total, MANY);
}

/// Allocated bytes (not apparent length) of every file under `dir`, like `du`.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| match e.metadata().unwrap() {
            m if m.is_dir() => disk_bytes(&e.path()),
            m => m.blocks() * 512,
        })
        .sum()
}

#[test]
fn an_empty_engine_at_default_sizes_is_small_on_disk_and_in_its_rings() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::with_data_dir(dir.path());
    assert!(
        config.ring_memory_bytes() <= 32 * MIB,
        "default rings stay small"
    );
    let engine = Engine::start(config, Summer::default()).unwrap();
    // Start returns once the active segment and its spare are prepared.
    let on_disk = disk_bytes(dir.path());
    assert!(on_disk <= 128 * MIB, "{on_disk} bytes on disk");
    engine.shutdown().unwrap();
}

/// A data directory whose journal holds ADD messages 1..=`messages` (payload `i`) in 128 KiB
/// segments, written through an engine; its config, and its segment files oldest first.
fn journal_of_adds(dir: &std::path::Path, messages: u64) -> (Config, Vec<std::path::PathBuf>) {
    let mut config = config(dir);
    config.segment_size_bytes = 128 << 10;
    config.max_message_bytes = 1024;
    config.discard_responses = true;
    config.snapshot_interval_messages = 0;
    config.snapshot_on_shutdown = false;
    let mut engine = Engine::start(config.clone(), Summer::default()).unwrap();
    for i in 1..=messages {
        engine
            .submitter()
            .submit(to(ADD, i), &i.to_le_bytes())
            .unwrap();
    }
    engine.shutdown().unwrap();
    let mut segments: Vec<_> = std::fs::read_dir(&config.journal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    (config, segments)
}

/// Overwrites `bytes.len()` bytes of `file` at `offset`.
fn overwrite(file: &std::path::Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn a_full_replay_follows_the_open_scan_across_segments_and_stops_at_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (config, segments) = journal_of_adds(dir.path(), 10_000);
    assert!(segments.len() >= 3, "{} segments", segments.len());
    // A torn write where the next record would go: not a record, nothing valid after it.
    let keel::journal::TailState::Clean { segment, offset } =
        keel::journal::verify(&config.journal_dir).unwrap().tail
    else {
        panic!("a clean journal")
    };
    overwrite(&segment, offset, &[0xab; 40]);
    let engine = Engine::start(config.clone(), Summer::default()).unwrap();
    let recovered = engine.recovered();
    assert_eq!(
        (recovered.replayed, recovered.snapshot_sequence),
        (10_000, 0)
    );
    assert!(recovered.replay_during_open <= recovered.replay);
    let state = engine.shutdown().unwrap();
    assert_eq!((state.applied, state.total), (10_000, 10_000 * 10_001 / 2));
}

#[test]
fn a_full_replay_that_meets_corruption_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (config, segments) = journal_of_adds(dir.path(), 10_000);
    assert!(segments.len() >= 3, "{} segments", segments.len());
    // The payload of the first record of the second segment (header 64 bytes, record header
    // 56): its CRC fails, and valid records follow it. The first segment's records may have
    // been applied by then; the start must fail all the same.
    overwrite(&segments[1], 64 + 56, &[0xff; 8]);
    match Engine::start(config.clone(), Summer::default()) {
        Err(keel::Error::Journal(JournalError::Corrupted { segment, .. })) => {
            assert_eq!(segment, segments[1])
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a corrupted journal opened"),
    }
}

#[test]
fn a_backlog_is_journaled_in_batches_of_at_most_4096() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.ring_capacity = 16_384;
    config.output_ring_capacity = 16_384;
    let mut engine = Engine::start(config, Summer::default()).unwrap();
    let metrics = engine.metrics();
    let mut submitter = engine.take_submitter().unwrap();
    let responses = collect(engine.take_responses().unwrap());
    let one = 1u64.to_le_bytes();
    let batch: Vec<_> = (1..=10_000u64).map(|i| (to(ADD, i), &one[..])).collect();
    // One publish: the journaler finds all 10,000 waiting at once.
    submitter.submit_batch(&batch).unwrap();
    drop(submitter);
    let state = engine.shutdown().unwrap();
    assert_eq!(state.total, 10_000);
    assert_eq!(responses.join().unwrap().len(), 10_000);
    let batches = metrics.read().journal_batch_records;
    assert!(
        batches.count() >= 3,
        "10,000 records in {} batches",
        batches.count()
    );
    assert!(
        batches.quantile(1.0) <= 4096,
        "largest batch {}",
        batches.quantile(1.0)
    );
}
