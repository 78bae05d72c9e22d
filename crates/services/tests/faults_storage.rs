//! Storage faults through the journal's I/O seam, driving the whole engine (bookstore).
//!
//! `CrashIo` keeps a model of what the storage has made durable: a file's bytes become durable
//! only through `sync_range` / `sync_file`, and a name only through `sync_dir`. At every sync
//! point it records the durable image (and, every few points, the live one a process crash
//! leaves). Each image is then recovered on its own:
//! - the durable image recovers every message answered before it was taken, never more than
//!   was appended, and exactly the last durable sequence when taken right after a batch;
//! - its records are byte for byte the live journal's prefix (nothing applied twice, nothing
//!   skipped), and the engine restarted on it has the state of that prefix;
//! - a power cut that persisted any subset of the dirty pages either recovers such a prefix
//!   or refuses with a location (the documented false positive), never anything else.
//!
//! Failures: a failed or short sync, a failed directory sync or rename stops the engine (the
//! ring halts, nothing after the failure is answered); ENOSPC while preparing a segment is a
//! `DiskFull` error before anything that needed the space is acknowledged.

#[path = "../../../tests/rng/mod.rs"]
mod rng;

use keel::engine::{apply_message, message_of, JournalSink, SubmitError};
use keel::journal::{
    FlushPolicy, JournalConfig, JournalError, JournalReader, JournalWriter, Record, SegmentIo,
    SegmentSync,
};
use keel::ring::Poll;
use keel::Typed;
use keel::{ApplyMode, Config, Engine, Processor, Submission, WaitStrategy};
use keel_services::bookstore::Bookstore;
use keel_services::App;
use rng::Rng;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The smallest segment the engine accepts for 256-byte messages: ~800 records, so the runs
/// below roll over a few times.
const SEGMENT_BYTES: u64 = 69_632;
const MAX_MESSAGE_BYTES: usize = 256;
const PAGE: usize = 4096;

// ---------------------------------------------------------------- the crash-simulating seam

/// Shared between the seam, the journal sink and the response reader.
#[derive(Debug, Default)]
struct Progress {
    /// Highest sequence whose response the client side has seen.
    acked: AtomicU64,
    /// Last sequence appended to the journal.
    appended: AtomicU64,
    /// Last sequence whose batch `end_batch` completed.
    committed: AtomicU64,
}

/// Which operation fails, counted from 1 over the writer's life (including its open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The nth `sync_range` fails with EIO; `short`: after persisting half the range.
    SyncRange {
        nth: u64,
        short: bool,
    },
    /// The nth `sync_dir` fails with EIO.
    SyncDir {
        nth: u64,
    },
    /// The nth `rename` fails with EIO.
    Rename {
        nth: u64,
    },
    /// Allocations after the first `ok` fail with ENOSPC.
    Allocations {
        ok: u64,
    },
}

/// What a crash at one instant leaves on the storage.
#[derive(Debug, Clone)]
struct Image {
    /// Durable files by durable name.
    durable: Vec<(String, Arc<Vec<u8>>)>,
    /// The live directory (what a process crash leaves), for some images.
    live: Option<Vec<(String, Vec<u8>)>>,
    acked: u64,
    appended: u64,
    committed: u64,
    /// Taken right after `end_batch` returned under `batch`: must recover exactly `appended`.
    exact: bool,
}

#[derive(Debug, Default)]
struct Model {
    /// Durable bytes by inode.
    files: HashMap<u64, Arc<Vec<u8>>>,
    /// Durable directory entries.
    names: BTreeMap<String, u64>,
    images: Vec<Image>,
    counts: HashMap<&'static str, u64>,
    failed: bool,
}

#[derive(Debug)]
struct CrashIo {
    dir: PathBuf,
    fault: Fault,
    /// Keep the live image every this many images (0: never).
    live_every: usize,
    progress: Arc<Progress>,
    model: Mutex<Model>,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

/// The file behind a mapped segment. `SegmentSync` exposes no path, but its `Debug` shows
/// its `File`, whose `Debug` on Linux shows the path (from /proc/self/fd).
fn path_of(segment: &SegmentSync) -> PathBuf {
    let text = format!("{segment:?}");
    let start = text.find("path: \"").expect("File's Debug shows its path") + 7;
    let end = start + text[start..].find('"').expect("closing quote");
    PathBuf::from(&text[start..end])
}

fn read_range(path: &Path, offset: usize, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset as u64)
        .unwrap();
    buf
}

/// Journal files (segments and the spare) in `dir`, by name.
fn journal_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".seg"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    out
}

impl CrashIo {
    fn new(dir: &Path, fault: Fault, live_every: usize, progress: Arc<Progress>) -> Arc<Self> {
        Arc::new(CrashIo {
            dir: dir.to_owned(),
            fault,
            live_every,
            progress,
            model: Mutex::new(Model::default()),
        })
    }

    /// Counts an operation; whether it is the one to fail.
    fn count(model: &mut Model, op: &'static str, fails: impl Fn(u64) -> bool) -> bool {
        let n = model.counts.entry(op).or_default();
        *n += 1;
        let fail = fails(*n);
        model.failed |= fail;
        fail
    }

    /// Records the image a crash right now would leave. `live`: also read the live files,
    /// which is only consistent on the journaler's thread (no append runs meanwhile).
    fn record(&self, model: &mut Model, exact: bool, live: bool) {
        let durable = model
            .names
            .iter()
            .filter_map(|(name, ino)| Some((name.clone(), model.files.get(ino)?.clone())))
            .collect();
        let every = self.live_every;
        let live = (live && every > 0 && model.images.len().is_multiple_of(every)).then(|| {
            let files = journal_files(&self.dir);
            files
                .into_iter()
                .map(|(n, p)| (n, fs::read(p).unwrap()))
                .collect()
        });
        let p = &self.progress;
        model.images.push(Image {
            durable,
            live,
            acked: p.acked.load(SeqCst),
            appended: p.appended.load(SeqCst),
            committed: p.committed.load(SeqCst),
            exact,
        });
    }

    /// Copies `[offset, offset + len)` of the file at `path` into its durable bytes.
    fn persist(model: &mut Model, path: &Path, offset: usize, len: usize) {
        let ino = fs::metadata(path).unwrap().ino();
        let bytes = read_range(path, offset, len);
        let file = model
            .files
            .entry(ino)
            .or_insert_with(|| Arc::new(fs::read(path).unwrap()));
        Arc::make_mut(file)[offset..offset + len].copy_from_slice(&bytes);
    }

    fn images(&self) -> Vec<Image> {
        self.model.lock().unwrap().images.clone()
    }

    fn failed(&self) -> bool {
        self.model.lock().unwrap().failed
    }

    /// What a power cut right now would leave of the journal: durable files by durable name.
    fn durable_now(&self) -> Vec<(String, Arc<Vec<u8>>)> {
        let model = self.model.lock().unwrap();
        model
            .names
            .iter()
            .filter_map(|(name, ino)| Some((name.clone(), model.files.get(ino)?.clone())))
            .collect()
    }

    /// Called by the sink after a completed batch.
    fn batch_done(&self) {
        let mut model = self.model.lock().unwrap();
        self.record(&mut model, true, true);
    }
}

impl SegmentIo for CrashIo {
    fn create_allocated(&self, path: &Path, len_bytes: u64) -> io::Result<File> {
        let mut model = self.model.lock().unwrap();
        if let Fault::Allocations { ok } = self.fault {
            if Self::count(&mut model, "alloc", |n| n > ok) {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(len_bytes)?;
        let zeros = Arc::new(vec![0u8; len_bytes as usize]);
        model.files.insert(file.metadata()?.ino(), zeros);
        Ok(file)
    }

    fn sync_range(&self, segment: &SegmentSync, offset: usize, len: usize) -> io::Result<()> {
        let path = path_of(segment);
        let mut model = self.model.lock().unwrap();
        if let Fault::SyncRange { nth, short } = self.fault {
            if Self::count(&mut model, "sync_range", |n| n == nth) {
                if short {
                    Self::persist(&mut model, &path, offset, len / 2);
                }
                return Err(eio());
            }
        }
        Self::persist(&mut model, &path, offset, len);
        self.record(&mut model, false, true);
        Ok(())
    }

    fn sync_file(&self, file: &File) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        let mut bytes = vec![0u8; file.metadata()?.len() as usize];
        file.read_exact_at(&mut bytes, 0)?;
        model.files.insert(file.metadata()?.ino(), Arc::new(bytes));
        // Called from the journal's background thread, concurrently with appends.
        self.record(&mut model, false, false);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        if let Fault::SyncDir { nth } = self.fault {
            if Self::count(&mut model, "sync_dir", |n| n == nth) {
                return Err(eio());
            }
        }
        model.names = journal_files(dir)
            .into_iter()
            .map(|(name, path)| (name, fs::metadata(path).unwrap().ino()))
            .collect();
        self.record(&mut model, false, true);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        if let Fault::Rename { nth } = self.fault {
            if Self::count(&mut model, "rename", |n| n == nth) {
                return Err(eio());
            }
        }
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

/// An I/O seam without syncs, for recovering thousands of images quickly (recovery logic is
/// under test there, not durability).
#[derive(Debug)]
struct NoSyncIo;

impl SegmentIo for NoSyncIo {
    fn create_allocated(&self, path: &Path, len_bytes: u64) -> io::Result<File> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(len_bytes)?;
        Ok(file)
    }
    fn sync_range(&self, _: &SegmentSync, _: usize, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn sync_file(&self, _: &File) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

/// The engine's journal: the real writer over `CrashIo`, reporting progress to the model.
struct TrackedJournal {
    writer: JournalWriter,
    io: Arc<CrashIo>,
}

impl JournalSink for TrackedJournal {
    fn append(&mut self, record: &Record<'_>) -> Result<(), JournalError> {
        self.writer.append(record)?;
        self.io.progress.appended.store(record.sequence, SeqCst);
        Ok(())
    }
    /// Under `batch` the writer commits on its syncer thread; this sink waits for the commit
    /// (so the image taken right after it is exact, and live files are read while no append
    /// runs). The engine is still gated on the writer's durable sequence, as in production.
    fn end_batch(&mut self) -> Result<(), JournalError> {
        self.writer.end_batch()?;
        let appended = self.io.progress.appended.load(SeqCst);
        if let Some(durable) = self.writer.durable_sequence() {
            while durable.load_acquire() < appended {
                self.writer.tick()?;
                thread::yield_now();
            }
        }
        self.io.progress.committed.store(appended, SeqCst);
        if self.writer.flush_policy() == FlushPolicy::Batch {
            self.io.batch_done();
        }
        Ok(())
    }
    fn tick(&mut self) -> Result<(), JournalError> {
        self.writer.tick()
    }
    fn sync(&mut self) -> Result<(), JournalError> {
        self.writer.sync()
    }
    fn durable(&self) -> Option<Arc<keel::ring::Sequence>> {
        self.writer.durable_sequence()
    }
    fn set_durable_waker(&mut self, waker: keel::journal::DurableWaker) {
        self.writer.set_durable_waker(waker);
    }
    fn sync_handle(&self) -> Option<keel::journal::JournalSyncHandle> {
        Some(self.writer.sync_handle())
    }
}

// ---------------------------------------------------------------- driving the engine

/// A scratch directory on tmpfs when there is one: these tests write thousands of images.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

fn journal_config(dir: &Path, flush: FlushPolicy) -> JournalConfig {
    {
        let mut journal = JournalConfig::new(dir.to_owned());
        journal.segment_size_bytes = SEGMENT_BYTES;
        journal.flush = flush;
        journal.max_payload_bytes = MAX_MESSAGE_BYTES as u32;
        journal.segment_prep = keel::journal::SegmentPrep::default();
        journal
    }
}

fn engine_config(data: &Path, flush: FlushPolicy, mode: ApplyMode) -> Config {
    let mut config = Config::with_data_dir(data);
    config.ring_capacity = 256;
    config.output_ring_capacity = 256;
    config.max_message_bytes = MAX_MESSAGE_BYTES;
    config.segment_size_bytes = SEGMENT_BYTES;
    config.flush = flush;
    config.mode = mode;
    config.wait = WaitStrategy::PARK;
    config.snapshot_interval_messages = 0;
    config.snapshot_on_shutdown = false;
    config
}

/// The engine over a `CrashIo` journal in `data/journal`, with a thread reading responses.
struct Run {
    engine: Engine<Typed<Bookstore>>,
    io: Arc<CrashIo>,
    responses: JoinHandle<Vec<u64>>,
}

fn start(data: &Path, flush: FlushPolicy, mode: ApplyMode, fault: Fault, live: usize) -> Run {
    start_with(engine_config(data, flush, mode), fault, live)
}

fn start_with(config: Config, fault: Fault, live: usize) -> Run {
    let progress = Arc::new(Progress::default());
    let journal_dir = config.journal_dir.clone();
    let io = CrashIo::new(&journal_dir, fault, live, progress.clone());
    let journal = journal_config(&journal_dir, config.flush);
    let writer = JournalWriter::open_with_io(&journal, io.clone()).expect("journal opens");
    let mut engine = Engine::start_with_sink(
        config,
        Typed::<Bookstore>::default(),
        TrackedJournal {
            writer,
            io: io.clone(),
        },
        0,
    )
    .unwrap();
    let mut receiver = engine.take_responses().unwrap();
    let responses = thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let poll = receiver.poll(None, |r| {
                seen.push(r.header.sequence);
                progress.acked.fetch_max(r.header.sequence, SeqCst);
            });
            if matches!(poll, Poll::Closed | Poll::Halted) {
                return seen;
            }
        }
    });
    Run {
        engine,
        io,
        responses,
    }
}

/// Message `i` of the run: the bookstore's setup, then its seeded workload.
fn command(seed: u64, setup: &[keel_services::Command], i: u64) -> keel_services::Command {
    match setup.get(i as usize) {
        Some(c) => c.clone(),
        None => Typed::<Bookstore>::workload(seed, i - setup.len() as u64),
    }
}

/// Submits `n` messages in random bursts, waiting for each burst's answers (many batches,
/// so many sync points). Stops early when the engine stops; returns how many went in.
fn drive(run: &mut Run, seed: u64, n: u64, setup_books: usize) -> u64 {
    let setup: Vec<_> = Typed::<Bookstore>::setup(seed)
        .into_iter()
        .take(setup_books)
        .collect();
    let mut rng = Rng(seed | 1);
    let progress = run.io.progress.clone();
    let mut i = 0;
    while i < n {
        let burst = if (i as usize) < setup.len() {
            64
        } else {
            1 + rng.below(12)
        };
        let mut last = 0;
        for _ in 0..burst.min(n - i) {
            let c = command(seed, &setup, i);
            let to = Submission {
                kind: c.kind,
                version: c.version,
                session_id: 1 + i % 3,
                correlation_id: i,
            };
            match run.engine.submitter().try_submit(to, &c.payload) {
                Ok(sequence) => last = sequence,
                Err(SubmitError::Stopped) => return i,
                // Only after a fault, before the journaler has halted the ring.
                Err(SubmitError::Full) => {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(other) => panic!("{other}"),
            }
            i += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while progress.acked.load(SeqCst) < last && !run.io.failed() {
            assert!(Instant::now() < deadline, "no answer for {last}");
            thread::sleep(Duration::from_micros(200));
        }
    }
    n
}

// ---------------------------------------------------------------- checking images

/// Every record of the live journal, owned, and the state hash after each (index = sequence).
struct Reference {
    records: Vec<OwnedRecord>,
    hashes: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedRecord {
    sequence: u64,
    timestamp_ns: u64,
    session_id: u64,
    correlation_id: u64,
    kind: u16,
    version: u16,
    payload: Vec<u8>,
}

impl OwnedRecord {
    fn of(r: &Record<'_>) -> Self {
        OwnedRecord {
            sequence: r.sequence,
            timestamp_ns: r.timestamp_ns,
            session_id: r.session_id,
            correlation_id: r.correlation_id,
            kind: r.kind,
            version: r.version,
            payload: r.payload.to_vec(),
        }
    }
}

fn read_records(dir: &Path) -> Vec<OwnedRecord> {
    let mut reader = JournalReader::open(dir).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next().unwrap() {
        out.push(OwnedRecord::of(&r));
    }
    out
}

fn reference(journal_dir: &Path) -> Reference {
    let records = read_records(journal_dir);
    let mut state = Typed::<Bookstore>::default();
    let mut hashes = vec![state.state_hash()];
    let mut buf = vec![0u8; 4096];
    let mut reader = JournalReader::open(journal_dir).unwrap();
    while let Some(r) = reader.next().unwrap() {
        apply_message(&mut state, &message_of(&r), &mut buf);
        hashes.push(state.state_hash());
    }
    Reference { records, hashes }
}

/// Writes `files` as a journal directory under `root`.
fn materialize<B: Borrow<Vec<u8>>>(root: &Path, files: &[(String, B)]) -> PathBuf {
    let _ = fs::remove_dir_all(root);
    let dir = root.join("journal");
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes.borrow()).unwrap();
    }
    dir
}

/// Recovers the journal in `dir` as the writer would at restart: its last sequence, after
/// checking its records are the reference's prefix.
fn recover(dir: &Path, reference: &Reference) -> Result<u64, JournalError> {
    let writer =
        JournalWriter::open_with_io(&journal_config(dir, FlushPolicy::None), Arc::new(NoSyncIo))?;
    let last = writer.last_sequence();
    drop(writer);
    let records = read_records(dir);
    assert_eq!(records.len() as u64, last, "records 1..=last");
    assert!(
        records[..] == reference.records[..records.len()],
        "recovered records differ from the live journal's prefix"
    );
    Ok(last)
}

/// What the checks saw.
#[derive(Debug, Default)]
struct Tally {
    images: u64,
    exact: u64,
    live: u64,
    torn_ok: u64,
    torn_refused: u64,
    engine_restarts: u64,
}

fn check_bounds(what: &str, last: u64, image: &Image, acked_is_durable: bool) {
    assert!(
        last <= image.appended,
        "{what}: {last} > appended {}",
        image.appended
    );
    if acked_is_durable {
        assert!(
            last >= image.acked,
            "{what}: lost answered {} (has {last})",
            image.acked
        );
        assert!(
            last >= image.committed,
            "{what}: lost committed {}",
            image.committed
        );
    }
    if image.exact {
        assert_eq!(
            last, image.appended,
            "{what}: not the last durable sequence"
        );
    }
}

/// A power cut with the rename and each dirty page persisted or not, at random.
fn torn_variant(
    image: &Image,
    live: &[(String, Vec<u8>)],
    rng: &mut Rng,
) -> Vec<(String, Vec<u8>)> {
    let durable: HashMap<&str, &Arc<Vec<u8>>> =
        image.durable.iter().map(|(n, b)| (n.as_str(), b)).collect();
    let use_live_names = rng.below(2) == 0;
    let mut out = Vec::new();
    for (name, live_bytes) in live {
        let Some(base) = durable.get(name.as_str()).map(|b| b.as_ref()) else {
            if use_live_names {
                out.push((name.clone(), live_bytes.clone()));
            }
            continue;
        };
        let mut bytes = base.clone();
        for page in (0..bytes.len()).step_by(PAGE) {
            let end = (page + PAGE).min(bytes.len());
            if bytes[page..end] != live_bytes[page..end] && rng.below(2) == 0 {
                bytes[page..end].copy_from_slice(&live_bytes[page..end]);
            }
        }
        out.push((name.clone(), bytes));
    }
    out
}

/// Checks one image: durable, live (if kept) and two torn variants.
fn check_image(
    image: &Image,
    reference: &Reference,
    root: &Path,
    durable_acks: bool,
    t: &mut Tally,
    rng: &mut Rng,
) {
    let dir = materialize(root, &image.durable);
    let last = recover(&dir, reference).unwrap_or_else(|e| panic!("durable image refused: {e}"));
    check_bounds("durable image", last, image, durable_acks);
    t.images += 1;
    t.exact += u64::from(image.exact);
    let Some(live) = &image.live else {
        return;
    };
    let dir = materialize(root, live);
    let live_last = recover(&dir, reference).unwrap_or_else(|e| panic!("live image refused: {e}"));
    check_bounds(
        "live image",
        live_last,
        &Image {
            exact: false,
            ..image.clone()
        },
        true,
    );
    assert!(
        live_last >= last && live_last >= image.acked,
        "a process crash lost data"
    );
    t.live += 1;
    for _ in 0..2 {
        let dir = materialize(root, &torn_variant(image, live, rng));
        match recover(&dir, reference) {
            Ok(torn) => {
                let plain = Image {
                    exact: false,
                    ..image.clone()
                };
                check_bounds("torn image", torn, &plain, durable_acks);
                t.torn_ok += 1;
            }
            Err(JournalError::Corrupted { .. }) => t.torn_refused += 1,
            Err(other) => panic!("torn image: {other}"),
        }
    }
}

/// Restarts the whole engine on a durable image: it recovers `last` and the state of that
/// prefix of the live journal.
fn restart_on(image: &Image, reference: &Reference, root: &Path) {
    let dir = materialize(root, &image.durable);
    let expected = recover(&dir, reference).unwrap();
    let config = engine_config(root, FlushPolicy::None, ApplyMode::Durable);
    let engine = Engine::start(config, Typed::new(Bookstore::default())).unwrap();
    assert_eq!(engine.recovered().last_sequence, expected);
    let state = engine.shutdown().unwrap();
    assert_eq!(
        state.state_hash(),
        reference.hashes[expected as usize],
        "state after {expected}"
    );
}

/// Runs `n` messages under `flush`/`mode` and checks every image taken; returns the tally.
fn crash_at_every_sync_point(flush: FlushPolicy, mode: ApplyMode, n: u64, seed: u64) -> Tally {
    let tmp = scratch();
    let data = tmp.path().join("live");
    let mut run = start(&data, flush, mode, Fault::None, 4);
    assert_eq!(drive(&mut run, seed, n, 300), n);
    let Run {
        engine,
        io,
        responses,
    } = run;
    engine.shutdown().unwrap();
    assert_eq!(
        responses.join().unwrap().len() as u64,
        n,
        "every message answered"
    );
    let reference = reference(&data.join("journal"));
    assert_eq!(reference.records.len() as u64, n);
    let images = io.images();
    let mut tally = Tally::default();
    let mut rng = Rng(seed ^ 0x5eed);
    let root = tmp.path().join("image");
    let durable_acks = flush == FlushPolicy::Batch;
    for (i, image) in images.iter().enumerate() {
        check_image(image, &reference, &root, durable_acks, &mut tally, &mut rng);
        if i % 40 == 0 || i + 1 == images.len() {
            restart_on(image, &reference, &root);
            tally.engine_restarts += 1;
        }
    }
    eprintln!("{flush} {mode:?}: {n} messages, {tally:?}");
    tally
}

// ---------------------------------------------------------------- the tests

#[test]
fn batch_crash_at_every_sync_point_recovers_exactly_the_durable_prefix() {
    let tally = crash_at_every_sync_point(FlushPolicy::Batch, ApplyMode::Durable, 1_400, 7);
    assert!(tally.images > 150 && tally.exact > 100, "{tally:?}");
    assert!(tally.torn_ok > 0, "{tally:?}");
}

#[test]
fn apply_ahead_answers_nothing_before_it_is_durable() {
    let tally = crash_at_every_sync_point(FlushPolicy::Batch, ApplyMode::ApplyAhead, 900, 11);
    assert!(tally.exact > 50, "{tally:?}");
}

#[test]
fn interval_and_none_keep_everything_through_a_process_crash() {
    // Power loss may lose answered messages under these policies (documented); a process
    // crash (the live image) may not, and every image is still a clean prefix.
    for flush in [FlushPolicy::IntervalMs(2), FlushPolicy::None] {
        let tally = crash_at_every_sync_point(flush, ApplyMode::Durable, 700, 13);
        assert!(tally.live > 0, "{tally:?}");
    }
}

/// The case 4: under `none` (and `interval`) the journal's tail may vanish in a power
/// cut, but never a part a snapshot covers: the snapshot thread makes the journal durable up to
/// a snapshot's sequence before publishing it. A power cut at any moment (here: while the engine
/// runs, after several snapshots) leaves snapshots the journal vouches for, so the restart
/// neither refuses nor forks.
#[test]
fn a_power_cut_under_none_never_leaves_a_snapshot_beyond_the_durable_journal() {
    for (flush, mode) in [
        (FlushPolicy::None, ApplyMode::Durable),
        (FlushPolicy::None, ApplyMode::ApplyAhead),
        (FlushPolicy::IntervalMs(1_000), ApplyMode::ApplyAhead),
    ] {
        let tmp = scratch();
        let data = tmp.path().join("live");
        let config = {
            let mut config = engine_config(&data, flush, mode);
            config.snapshot_interval_messages = 150;
            config
        };
        let mut run = start_with(config, Fault::None, 0);
        assert_eq!(drive(&mut run, 21, 1_000, 300), 1_000);
        let metrics = run.engine.metrics();
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.read().snapshots_written < 3 {
            assert!(Instant::now() < deadline, "snapshots were not written");
            thread::sleep(Duration::from_millis(1));
        }
        // Snapshots first: the journal's durable part only grows after this.
        let root = tmp.path().join("image");
        let snapshots = tmp.path().join("snapshots-at-the-cut");
        fs::create_dir_all(&snapshots).unwrap();
        for entry in fs::read_dir(data.join("snapshots")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "snap") {
                fs::copy(&path, snapshots.join(path.file_name().unwrap())).unwrap();
            }
        }
        let image = run.io.durable_now();
        let Run {
            engine, responses, ..
        } = run;
        engine.shutdown().unwrap();
        responses.join().unwrap();
        let reference = reference(&data.join("journal"));
        materialize(&root, &image);
        fs::rename(&snapshots, root.join("snapshots")).unwrap();
        let engine = Engine::start(
            engine_config(&root, flush, mode),
            Typed::new(Bookstore::default()),
        )
        .unwrap_or_else(|e| panic!("{flush} {mode:?}: {e}"));
        let r = engine.recovered();
        assert!(r.snapshot_sequence > 0, "{flush} {mode:?}: {r:?}");
        let state = engine.shutdown().unwrap();
        assert_eq!(
            state.state_hash(),
            reference.hashes[r.last_sequence as usize],
            "{flush} {mode:?}"
        );
    }
}

/// Runs until the injected fault stops the engine; checks that nothing after it was answered
/// and that the durable image recovers every answer. Returns the data directory's run.
fn run_into_fault(tmp: &Path, fault: Fault, n: u64) -> (Vec<u64>, u64, keel::Error) {
    let data = tmp.join("live");
    let mut run = start(&data, FlushPolicy::Batch, ApplyMode::Durable, fault, 0);
    let submitted = drive(&mut run, 3, n, 1_000);
    assert!(submitted < n, "{fault:?} did not stop the engine");
    // Stopped for good: nothing more is accepted.
    let to = Submission {
        kind: 6,
        version: 1,
        session_id: 9,
        correlation_id: 0,
    };
    let err = run.engine.submitter().try_submit(to, &[0; 4]).unwrap_err();
    assert!(matches!(err, SubmitError::Stopped), "{err}");
    let Run {
        engine,
        io,
        responses,
    } = run;
    let error = engine
        .shutdown()
        .expect_err("the engine reports the journal failure");
    let answered = responses.join().unwrap();
    let committed = io.progress.committed.load(SeqCst);
    let max = answered.iter().copied().max().unwrap_or(0);
    assert!(
        max <= committed,
        "{fault:?}: answered {max} after the last good batch {committed}"
    );
    let image = io.images().last().cloned().expect("an image");
    let root = tmp.join("image");
    let dir = materialize(&root, &image.durable);
    let reference = Reference {
        records: read_records(&data.join("journal")),
        hashes: vec![],
    };
    let last = recover(&dir, &reference).expect("the durable image recovers");
    assert!(last >= max, "{fault:?}: answered {max}, durable {last}");
    (answered, committed, error)
}

#[test]
fn failed_syncs_and_renames_stop_the_engine_and_nothing_after_them_is_answered() {
    let faults = [
        Fault::SyncRange {
            nth: 60,
            short: false,
        },
        Fault::SyncRange {
            nth: 60,
            short: true,
        },
        // The writer's open syncs the directory and renames once; the second of each is
        // the first rollover's.
        Fault::SyncDir { nth: 2 },
        Fault::Rename { nth: 2 },
    ];
    for fault in faults {
        let tmp = scratch();
        let (answered, committed, error) = run_into_fault(tmp.path(), fault, 3_000);
        assert!(!answered.is_empty(), "{fault:?}: answered before the fault");
        eprintln!(
            "{fault:?}: {} answered, committed {committed}: {error}",
            answered.len()
        );
        // Restart on the live directory (page cache = what a process crash keeps): every
        // answered message is there, and the engine goes on.
        let data = tmp.path().join("live");
        let config = engine_config(&data, FlushPolicy::Batch, ApplyMode::Durable);
        let mut engine = Engine::start(config, Typed::new(Bookstore::default())).unwrap();
        assert!(engine.recovered().last_sequence >= committed);
        let to = Submission {
            kind: 6,
            version: 1,
            session_id: 9,
            correlation_id: 0,
        };
        engine.submitter().submit(to, &0u32.to_le_bytes()).unwrap();
        engine.shutdown().unwrap();
    }
}

#[test]
fn disk_full_at_open_is_an_error_before_anything_is_accepted() {
    let tmp = scratch();
    let dir = tmp.path().join("journal");
    let io = CrashIo::new(&dir, Fault::Allocations { ok: 0 }, 0, Arc::default());
    let err = JournalWriter::open_with_io(&journal_config(&dir, FlushPolicy::Batch), io)
        .expect_err("no space for the first segment");
    assert!(matches!(err, JournalError::DiskFull { .. }), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[test]
fn disk_full_at_rollover_stops_before_the_record_that_needed_space() {
    let tmp = scratch();
    // The first segment allocates; its spare (prepared in the background) does not.
    let (answered, committed, error) =
        run_into_fault(tmp.path(), Fault::Allocations { ok: 1 }, 3_000);
    assert!(error.to_string().contains("disk full"), "{error}");
    let data = tmp.path().join("live");
    let on_disk = read_records(&data.join("journal"));
    let first_segment_holds = on_disk.len();
    assert!(first_segment_holds as u64 >= committed);
    assert!(answered.len() <= first_segment_holds);
    // Space is back: recovery keeps everything, the record that needed space goes in next.
    let config = {
        let mut config = engine_config(&data, FlushPolicy::Batch, ApplyMode::Durable);
        config.discard_responses = true;
        config
    };
    let mut engine = Engine::start(config, Typed::new(Bookstore::default())).unwrap();
    let last = engine.recovered().last_sequence;
    assert_eq!(last, first_segment_holds as u64);
    for i in 0..2_000u64 {
        let c = Typed::<Bookstore>::workload(3, i);
        let to = Submission {
            kind: c.kind,
            version: c.version,
            session_id: 9,
            correlation_id: i,
        };
        engine.submitter().submit(to, &c.payload).unwrap();
    }
    engine.shutdown().unwrap();
    assert_eq!(
        read_records(&data.join("journal")).len() as u64,
        last + 2_000
    );
}

#[test]
fn submit_refuses_as_soon_as_the_journal_fails() {
    let tmp = scratch();
    let data = tmp.path().join("live");
    let fault = Fault::SyncRange {
        nth: 3,
        short: false,
    };
    let mut run = start(&data, FlushPolicy::Batch, ApplyMode::Durable, fault, 0);
    let to = Submission {
        kind: 6,
        version: 1,
        session_id: 1,
        correlation_id: 0,
    };
    let payload = 0u32.to_le_bytes();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run.io.failed() {
        assert!(Instant::now() < deadline);
        run.engine.submitter().submit(to, &payload).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(50)); // the journaler halts the ring
    let err = run.engine.submitter().submit(to, &payload).unwrap_err();
    assert!(matches!(err, SubmitError::Stopped), "{err}");
}

/// Appends `n` records of 200 bytes straight to a writer over `io`, in batches of 10; under
/// `batch` each batch is waited for (so live images are read while no append runs, and the
/// batch counts as committed).
fn append_direct(writer: &mut JournalWriter, io: &CrashIo, n: u64) {
    let payload = [0x5au8; 200];
    for sequence in 1..=n {
        let record = Record {
            sequence,
            timestamp_ns: sequence,
            session_id: 1,
            correlation_id: sequence,
            kind: 1,
            version: 1,
            payload: &payload,
        };
        writer.append(&record).unwrap();
        io.progress.appended.store(sequence, SeqCst);
        if sequence % 10 == 0 {
            writer.end_batch().unwrap();
            if let Some(durable) = writer.durable_sequence() {
                while durable.load_acquire() < sequence {
                    writer.tick().unwrap();
                    thread::yield_now();
                }
            }
            if writer.flush_policy() == FlushPolicy::Batch {
                io.progress.committed.store(sequence, SeqCst);
            }
        }
    }
}

/// Whether a segment other than the last has no end marker (the rollover's crash window).
fn has_unsealed_segment(files: &[(String, Arc<Vec<u8>>)]) -> bool {
    let segments: Vec<_> = files.iter().filter(|(n, _)| n.ends_with(".seg")).collect();
    let sealed = |bytes: &[u8]| bytes.chunks_exact(8).any(|w| &w[..4] == b"KEND");
    segments.len() > 1
        && segments[..segments.len() - 1]
            .iter()
            .any(|(_, b)| !sealed(b))
}

#[test]
fn a_crash_at_any_step_of_a_rollover_keeps_every_synced_record() {
    // The successor is made durable (header, name) before the old segment is sealed, so a
    // crash in between leaves an unsealed segment continued by its successor: recovered as a
    // boundary. Under `batch` and `interval` every image recovers at least what was synced;
    // under `none` a durable image may be refused (the old segment's records were never
    // synced, its successor's name was: documented), and a process crash loses nothing.
    for flush in [
        FlushPolicy::Batch,
        FlushPolicy::IntervalMs(1),
        FlushPolicy::None,
    ] {
        let tmp = scratch();
        let dir = tmp.path().join("live");
        let io = CrashIo::new(&dir, Fault::None, 1, Arc::new(Progress::default()));
        let config = journal_config(&dir, flush);
        let mut writer = JournalWriter::open_with_io(&config, io.clone()).unwrap();
        append_direct(&mut writer, &io, 1_000);
        drop(writer);
        let reference = Reference {
            records: read_records(&dir),
            hashes: vec![],
        };
        assert_eq!(reference.records.len(), 1_000);
        let root = tmp.path().join("image");
        let (mut unsealed, mut refused) = (0, 0);
        for image in io.images() {
            unsealed += u64::from(has_unsealed_segment(&image.durable));
            let durable = materialize(&root, &image.durable);
            match recover(&durable, &reference) {
                Ok(last) => check_bounds("durable image", last, &image, true),
                Err(JournalError::Corrupted { .. }) if flush == FlushPolicy::None => refused += 1,
                Err(err) => panic!("{flush}: durable image refused: {err}"),
            }
            if let Some(live) = &image.live {
                let live = materialize(&root, live);
                let last = recover(&live, &reference).expect("a live image recovers");
                assert_eq!(
                    last, image.appended,
                    "{flush}: a process crash lost records"
                );
            }
        }
        eprintln!("{flush}: {unsealed} images in a rollover's window, {refused} refused");
        if flush != FlushPolicy::None {
            assert!(unsealed > 0, "{flush}: no image inside a rollover");
        }
    }
}
