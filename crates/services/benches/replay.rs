//! Replay against the business logic alone, in one run: the same N bookstore messages (the
//! setup, then the canonical seeded workload) applied to a fresh store
//!
//! - `logic_alone`: straight from memory through `apply_message` (no journal): the floor;
//! - `journal_reader`: read from a real journal with [`JournalReader`] (every record's CRC and
//!   chain checked on the applying thread) and applied, as `keel replay` and the benches do;
//! - `engine_recovery`: `Engine::start` replaying the whole journal (no snapshot), timed by its
//!   own `Recovered::replay`: the restart path, which applies each record once the open-time
//!   scan (on a helper thread, at the same time) has validated it;
//! - `engine_open_and_recovery`: the same start, journal open and replay together (`journal_open
//!   + replay - replay_during_open`: the wall-clock time of both).
//!
//! Every case checks the state hash it reached against the direct one, so a fast wrong replay
//! fails the run. At the end the medians per message and their ratios to `logic_alone` are
//! printed (the "replay at the speed of the logic" figure), in wall-clock time and in CPU time
//! of the applying thread (`CLOCK_THREAD_CPUTIME_ID`: what the thread itself spent, memory
//! stalls and page faults included, not time it waited for a core on a shared machine; for
//! the engine, all of `Engine::start` on the calling thread). Building the journal and the fresh
//! stores are not timed. `KEEL_REPLAY_BENCH_MESSAGES` sets N (default 1 000 000).
//!
//! `KEEL_REPLAY_BENCH_UNWRITTEN_TAIL=1`: before every timed journal run the rest of the last
//! segment after its records is made an allocated but unwritten extent again (punched out and
//! allocated anew, untimed), as a segment preparation that writes only a window ahead of the
//! writer leaves it; by default it is written zeros (the build's writer pre-faults a segment's
//! rest for writing, and so does every engine start).

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use keel::engine::{apply_message, Config, Engine, Message, MessageHeader};
use keel::journal::{FlushPolicy, JournalReader, JournalWriter, Record};
use keel::{Processor, Typed};
use keel_services::bookstore::Bookstore;
use keel_services::App;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SEED: u64 = 1;
/// Records between two `end_batch` calls while building the journal.
const BUILD_BATCH: u64 = 4096;
/// Small segments, so a replay crosses several of them.
const SEGMENT_SIZE_BYTES: u64 = 64 << 20;

type Store = Typed<Bookstore>;

/// One message as the journal holds it.
struct Msg {
    kind: u16,
    version: u16,
    payload: Vec<u8>,
}

fn header(i: u64, msg: &Msg) -> MessageHeader {
    MessageHeader {
        sequence: i + 1,
        timestamp_ns: i,
        session_id: 0,
        correlation_id: i,
        kind: msg.kind,
        version: msg.version,
    }
}

/// The setup and `messages` workload messages, in memory.
fn messages(messages: u64) -> Vec<Msg> {
    let mut all: Vec<Msg> = Store::setup(SEED)
        .into_iter()
        .map(|c| Msg {
            kind: c.kind,
            version: c.version,
            payload: c.payload,
        })
        .collect();
    all.extend((0..messages).map(|i| {
        let c = Store::workload(SEED, i);
        Msg {
            kind: c.kind,
            version: c.version,
            payload: c.payload,
        }
    }));
    all
}

/// A data directory whose journal holds `msgs`, and the config to start an engine on it: the
/// default flush policy and segment preparation (the journal is built without syncs, which
/// are not timed).
fn build(dir: &std::path::Path, msgs: &[Msg]) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.segment_size_bytes = SEGMENT_SIZE_BYTES;
    config.snapshot_interval_messages = 0;
    config.snapshot_on_shutdown = false;
    let mut journal = config.journal_config();
    journal.flush = FlushPolicy::None;
    journal.service_name = Store::default().name().to_owned();
    let mut writer = JournalWriter::open(&journal).expect("journal opens");
    for (i, msg) in msgs.iter().enumerate() {
        let h = header(i as u64, msg);
        let record = Record {
            sequence: h.sequence,
            timestamp_ns: h.timestamp_ns,
            session_id: h.session_id,
            correlation_id: h.correlation_id,
            kind: h.kind,
            version: h.version,
            payload: &msg.payload,
        };
        writer.append(&record).expect("append");
        if (i as u64 + 1).is_multiple_of(BUILD_BATCH) {
            writer.end_batch().expect("end_batch");
        }
    }
    writer.sync().expect("sync");
    config
}

/// Where the last segment's rest after its records starts (rounded up to a page), when
/// `KEEL_REPLAY_BENCH_UNWRITTEN_TAIL=1`.
fn unwritten_tail(config: &Config) -> Option<(std::path::PathBuf, u64)> {
    if std::env::var("KEEL_REPLAY_BENCH_UNWRITTEN_TAIL").ok()? != "1" {
        return None;
    }
    let report = keel::journal::verify(&config.journal_dir).expect("journal verifies");
    match report.tail {
        keel::journal::TailState::Clean { segment, offset } => {
            Some((segment, offset.next_multiple_of(4096)))
        }
        other => panic!("unexpected journal end {other:?}"),
    }
}

/// Punches `[from, end)` of `segment` out and allocates it again: an unwritten extent with no
/// page-cache page, which reads as zeros.
fn unwrite((segment, from): &(std::path::PathBuf, u64)) {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("segment");
    let len = file
        .metadata()
        .expect("metadata")
        .len()
        .saturating_sub(*from);
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    for mode in [punch, 0] {
        // SAFETY: a plain syscall on a descriptor `file` keeps open.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, *from as i64, len as i64) };
        assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
    }
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant of the platform.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "thread CPU clock");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Page faults the calling thread has taken (minor and major).
fn thread_faults() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "thread rusage");
    (usage.ru_minflt + usage.ru_majflt) as u64
}

/// Applying-thread CPU time and page faults of the last timed call.
static CPU: Mutex<(Duration, u64)> = Mutex::new((Duration::ZERO, 0));

fn set_cpu((since, faults): (Duration, u64)) {
    *CPU.lock().expect("not poisoned") = (thread_cpu() - since, thread_faults() - faults);
}

fn cpu() -> Duration {
    CPU.lock().expect("not poisoned").0
}

/// Page faults of the last timed call, as a "duration" of one nanosecond each (for `Samples`).
fn faults() -> Duration {
    Duration::from_nanos(CPU.lock().expect("not poisoned").1)
}

fn thread_usage() -> (Duration, u64) {
    (thread_cpu(), thread_faults())
}

/// Applies every message straight from memory: (elapsed, state hash).
#[inline(never)] // a frame of its own in profiles (callgrind instruction counts)
fn logic_alone(msgs: &[Msg], scratch: &mut [u8]) -> (Duration, u64) {
    let mut store = Store::default();
    let cpu = thread_usage();
    let start = Instant::now();
    for (i, msg) in msgs.iter().enumerate() {
        let message = Message {
            header: header(i as u64, msg),
            payload: &msg.payload,
        };
        apply_message(&mut store, &message, scratch);
    }
    let elapsed = start.elapsed();
    set_cpu(cpu);
    (elapsed, store.state_hash())
}

/// Reads the journal with `JournalReader` and applies every record: (elapsed, hash).
#[inline(never)] // a frame of its own in profiles (callgrind instruction counts)
fn journal_reader(config: &Config, scratch: &mut [u8]) -> (Duration, u64, u64) {
    let mut store = Store::default();
    let cpu = thread_usage();
    let start = Instant::now();
    let mut reader = JournalReader::open(&config.journal_dir).expect("reader opens");
    let mut count = 0;
    while let Some(record) = reader.next().expect("valid journal") {
        apply_message(&mut store, &keel::engine::message_of(&record), scratch);
        count += 1;
    }
    let elapsed = start.elapsed();
    set_cpu(cpu);
    (elapsed, store.state_hash(), count)
}

/// Starts an engine on the journal (full replay): (journal open and replay together, replay,
/// hash, replayed).
#[inline(never)] // a frame of its own in profiles (callgrind instruction counts)
fn engine_recovery(config: &Config) -> (Duration, Duration, u64, u64) {
    let store = Store::default();
    let cpu = thread_usage();
    let engine = Engine::start(config.clone(), store).expect("engine starts");
    set_cpu(cpu);
    let recovered = engine.recovered();
    let hash = engine.shutdown().expect("clean shutdown").state_hash();
    let both = recovered.journal_open + recovered.replay - recovered.replay_during_open;
    (both, recovered.replay, hash, recovered.replayed)
}

/// Per-message nanoseconds of every timed iteration, by case.
#[derive(Default)]
struct Samples(Mutex<Vec<(&'static str, f64)>>);

impl Samples {
    fn add(&self, case: &'static str, elapsed: Duration, messages: usize) {
        let ns = elapsed.as_secs_f64() * 1e9 / messages as f64;
        self.0.lock().expect("not poisoned").push((case, ns));
    }

    fn median(&self, case: &str) -> Option<f64> {
        let mut v: Vec<f64> = (self.0.lock().expect("not poisoned").iter())
            .filter(|(c, _)| *c == case)
            .map(|(_, ns)| *ns)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }

    fn print_ratios(&self, messages: usize) {
        let Some(logic) = self.median("logic_alone") else {
            return;
        };
        println!("\nreplay of {messages} bookstore messages, medians of all timed iterations:");
        println!("  {:<26} {:>8.1} ns/msg", "logic_alone", logic);
        for case in [
            "journal_reader",
            "engine_recovery",
            "engine_open_and_recovery",
        ] {
            if let Some(ns) = self.median(case) {
                println!("  {case:<26} {ns:>8.1} ns/msg  {:.2}x logic", ns / logic);
            }
        }
        let Some(logic) = self.median("cpu:logic_alone") else {
            return;
        };
        println!("CPU time of the applying thread, medians (page faults per 1000 messages):");
        for case in ["logic_alone", "journal_reader", "engine_start"] {
            let ns = self.median(&format!("cpu:{case}")).unwrap_or(f64::NAN);
            let faults = self.median(&format!("faults:{case}")).unwrap_or(f64::NAN) * 1000.0;
            println!(
                "  {case:<26} {ns:>8.1} ns/msg  {:.2}x logic  ({faults:.1} faults)",
                ns / logic
            );
        }
    }
}

fn replay(c: &mut Criterion) {
    let n = std::env::var("KEEL_REPLAY_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let msgs = messages(n);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = build(dir.path(), &msgs);
    let tail = unwritten_tail(&config);
    let unwrite_tail = || tail.as_ref().map_or((), unwrite);
    let mut scratch = vec![0u8; config.max_response_bytes];
    let (_, want) = logic_alone(&msgs, &mut scratch);
    let samples = Samples::default();
    let total = msgs.len();

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(total as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("logic_alone", |b| {
        b.iter_custom(|iters| {
            let mut sum = Duration::ZERO;
            for _ in 0..iters {
                let (elapsed, hash) = logic_alone(&msgs, &mut scratch);
                assert_eq!(hash, want, "logic alone reached another state");
                samples.add("logic_alone", elapsed, total);
                samples.add("cpu:logic_alone", cpu(), total);
                samples.add("faults:logic_alone", faults(), total);
                sum += elapsed;
            }
            sum
        })
    });
    group.bench_function("journal_reader", |b| {
        b.iter_custom(|iters| {
            let mut sum = Duration::ZERO;
            for _ in 0..iters {
                unwrite_tail();
                let (elapsed, hash, count) = journal_reader(&config, &mut scratch);
                assert_eq!((hash, count), (want, total as u64), "reader replay differs");
                samples.add("journal_reader", elapsed, total);
                samples.add("cpu:journal_reader", cpu(), total);
                samples.add("faults:journal_reader", faults(), total);
                sum += elapsed;
            }
            sum
        })
    });
    for (name, with_open) in [
        ("engine_recovery", false),
        ("engine_open_and_recovery", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    unwrite_tail();
                    let (both, replay, hash, replayed) = engine_recovery(&config);
                    assert_eq!((hash, replayed), (want, total as u64), "recovery differs");
                    let elapsed = if with_open { both } else { replay };
                    samples.add(name, elapsed, total);
                    samples.add("cpu:engine_start", cpu(), total);
                    samples.add("faults:engine_start", faults(), total);
                    sum += elapsed;
                }
                sum
            })
        });
    }
    group.finish();
    samples.print_ratios(total);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = replay
}
criterion_main!(benches);
