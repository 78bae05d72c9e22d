//! `keel bench recovery`: how fast state comes back. Builds a journal of N messages (applying
//! them as it goes, with a snapshot `tail` messages before the end), then times a full replay
//! from the journal, the snapshot write and load for the resulting state size, and a restart
//! (`Engine::start` until live: snapshot load + tail replay). Every path must end at the same
//! state hash. `--no-op` uses a trivial processor, for raw replay speed.

use super::report::Table;
use super::rig::{replay_hash, BenchEngineArgs, DataDir, Failure};
use super::sysinfo::RunInfo;
use keel::codec::CodecError;
use keel::engine::{
    apply_message, Config, Engine, Message, MessageHeader, Outcome, Output, Processor,
};
use keel::journal::{FlushPolicy, JournalWriter, Record};
use keel::snapshot::{load_serde, save_serde, SnapshotStore, StateError};
use keel_services::App;
use serde::Serialize;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct RecoverySpec {
    /// Workload messages in the journal (after the app's setup).
    pub messages: u64,
    /// Messages after the snapshot.
    pub tail: u64,
    /// Workload seed.
    pub seed: u64,
    /// Payload bytes of each no-op message.
    pub noop_payload_bytes: usize,
    /// Engine flags (data dir, segment size, wait).
    pub engine: BenchEngineArgs,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    /// Application (`noop` for the trivial processor).
    pub app: String,
    /// What it ran on.
    pub run_info: RunInfo,
    /// Messages in the journal (setup included).
    pub journal_messages: u64,
    /// Journal bytes on disk (segment files, pre-allocated).
    pub journal_bytes: u64,
    /// Building it: append + apply on one thread, messages per second.
    pub build_msgs_per_sec: f64,
    /// Full replay from the journal only, messages per second.
    pub replay_msgs_per_sec: f64,
    /// Full replay, seconds.
    pub replay_secs: f64,
    /// Snapshot taken at this sequence.
    pub snapshot_sequence: u64,
    /// Encoded state size, bytes.
    pub state_bytes: u64,
    /// `save_state` (encode) seconds.
    pub snapshot_encode_secs: f64,
    /// Writing the file (temp file, fsync, rename, dir fsync), seconds.
    pub snapshot_write_secs: f64,
    /// Reading + checking the file and `load_state`, seconds.
    pub snapshot_load_secs: f64,
    /// `Engine::start` until live (snapshot + tail replay), seconds.
    pub restart_secs: f64,
    /// Messages the restart replayed after the snapshot.
    pub restart_replayed: u64,
    /// Of the restart: opening the journal (scanning and validating every record), seconds.
    pub restart_journal_open_secs: f64,
    /// Of the restart: reading, checking and restoring the snapshot, seconds.
    pub restart_snapshot_load_secs: f64,
    /// Of the restart: replaying the tail after the snapshot, seconds.
    pub restart_replay_secs: f64,
    /// The state hash every path reached.
    pub state_hash: u64,
}

/// A processor that only counts: replay cost without business logic.
#[derive(Debug, Default)]
pub struct NoOp {
    count: u64,
    checksum: u64,
}

impl Processor for NoOp {
    fn apply(&mut self, message: &Message<'_>, _out: &mut Output<'_>) -> Outcome {
        self.count += 1;
        self.checksum = self.checksum.rotate_left(5) ^ message.header.sequence;
        Outcome::Accepted
    }

    fn state_hash(&self) -> u64 {
        self.count.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.checksum
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(&(self.count, self.checksum), out)
    }

    fn load_state(&mut self, _schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        (self.count, self.checksum) = load_serde(bytes)?;
        Ok(())
    }
}

/// A source of (kind, version, payload) by 0-based index.
pub trait Source {
    /// Messages in total.
    fn len(&self) -> u64;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Message `i` into `buf` (replacing its contents): (kind, version).
    fn fill(&self, i: u64, buf: &mut Vec<u8>) -> (u16, u16);
}

/// An app's setup followed by its seeded workload.
pub struct AppSource<A: App> {
    setup: Vec<keel_services::Command>,
    seed: u64,
    messages: u64,
    _app: std::marker::PhantomData<A>,
}

impl<A: App> AppSource<A> {
    /// `A::setup(seed)` then `messages` of `A::workload(seed, ·)`.
    pub fn new(seed: u64, messages: u64) -> Self {
        AppSource {
            setup: A::setup(seed),
            seed,
            messages,
            _app: std::marker::PhantomData,
        }
    }
}

impl<A: App> Source for AppSource<A> {
    fn len(&self) -> u64 {
        self.setup.len() as u64 + self.messages
    }

    fn fill(&self, i: u64, buf: &mut Vec<u8>) -> (u16, u16) {
        let setup = self.setup.len() as u64;
        buf.clear();
        if i < setup {
            let c = &self.setup[i as usize];
            buf.extend_from_slice(&c.payload);
            return (c.kind, c.version);
        }
        let c = A::workload(self.seed, i - setup);
        buf.extend_from_slice(&c.payload);
        (c.kind, c.version)
    }
}

/// `messages` no-op messages of `payload_bytes` each.
pub struct NoOpSource {
    /// Messages.
    pub messages: u64,
    /// Payload bytes.
    pub payload_bytes: usize,
}

impl Source for NoOpSource {
    fn len(&self) -> u64 {
        self.messages
    }

    fn fill(&self, _i: u64, buf: &mut Vec<u8>) -> (u16, u16) {
        buf.resize(self.payload_bytes, 0x5A);
        (1, 1)
    }
}

/// Records appended between two `end_batch` calls while building.
const BUILD_BATCH: u64 = 4096;

/// What building the journal measured.
struct Built {
    last: u64,
    msgs_per_sec: f64,
    snapshot_sequence: u64,
    state_bytes: u64,
    encode_secs: f64,
    write_secs: f64,
    final_hash: u64,
}

/// Appends every message of `source` to the journal and applies it to `processor`; at
/// `snapshot_at` saves a snapshot (timed).
fn build<P: Processor>(
    config: &Config,
    source: &dyn Source,
    snapshot_at: u64,
    mut processor: P,
) -> Result<Built, Failure> {
    let mut journal = config.journal_config();
    journal.flush = FlushPolicy::None;
    let mut writer = JournalWriter::open(&journal)?;
    let store = SnapshotStore::open(&config.snapshot_dir, config.snapshot_retain)?
        .with_max_state_bytes(config.snapshot_max_state_bytes);
    let (mut payload, mut scratch) = (Vec::new(), vec![0u8; config.max_response_bytes]);
    let mut snap = (0, 0, 0.0, 0.0);
    let start = Instant::now();
    for i in 0..source.len() {
        let (kind, version) = source.fill(i, &mut payload);
        let header = MessageHeader {
            sequence: i + 1,
            timestamp_ns: i,
            session_id: 0,
            correlation_id: i,
            kind,
            version,
        };
        writer.append(&Record {
            sequence: i + 1,
            timestamp_ns: i,
            session_id: 0,
            correlation_id: i,
            kind,
            version,
            payload: &payload,
        })?;
        apply_message(
            &mut processor,
            &Message {
                header,
                payload: &payload,
            },
            &mut scratch,
        );
        if (i + 1) % BUILD_BATCH == 0 {
            writer.end_batch()?;
        }
        if i + 1 == snapshot_at {
            // A snapshot is never durable ahead of its journal.
            writer.sync()?;
            snap = snapshot(&store, &processor, i + 1, writer.last_chain())?;
        }
    }
    writer.sync()?;
    let elapsed = start.elapsed().as_secs_f64() - snap.2 - snap.3;
    Ok(Built {
        last: source.len(),
        msgs_per_sec: source.len() as f64 / elapsed,
        snapshot_sequence: snap.0,
        state_bytes: snap.1,
        encode_secs: snap.2,
        write_secs: snap.3,
        final_hash: processor.state_hash(),
    })
}

/// Saves `processor` as the snapshot after `sequence`: (sequence, bytes, encode s, write s).
fn snapshot<P: Processor>(
    store: &SnapshotStore,
    processor: &P,
    sequence: u64,
    journal_chain: u32,
) -> Result<(u64, u64, f64, f64), Failure> {
    let t0 = Instant::now();
    let mut state = Vec::new();
    processor
        .save_state(&mut state)
        .map_err(|e| Failure(e.to_string()))?;
    let encode = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    store.write(
        sequence,
        journal_chain,
        processor.schema_version(),
        processor.state_hash(),
        &state,
    )?;
    Ok((
        sequence,
        state.len() as u64,
        encode,
        t1.elapsed().as_secs_f64(),
    ))
}

/// Loads the newest snapshot into a fresh processor (timed) and checks its hash.
fn load_snapshot<P: Processor + Default>(config: &Config) -> Result<f64, Failure> {
    let store = SnapshotStore::open(&config.snapshot_dir, config.snapshot_retain)?
        .with_max_state_bytes(config.snapshot_max_state_bytes);
    let t0 = Instant::now();
    let file = store
        .list()?
        .pop()
        .ok_or_else(|| Failure::new("no snapshot written"))?;
    let loaded = store.load(&file)?;
    let mut processor = P::default();
    processor
        .load_state(loaded.header.schema_version, loaded.state())
        .map_err(|e| Failure(e.to_string()))?;
    let secs = t0.elapsed().as_secs_f64();
    if processor.state_hash() != loaded.header.state_hash {
        return Err(Failure::new(
            "WRONG RESULT: loaded snapshot hash differs from recorded",
        ));
    }
    Ok(secs)
}

/// Builds, replays, reloads and restarts; every path must reach the same state hash.
pub fn run<P: Processor + Default>(
    spec: &RecoverySpec,
    name: &str,
    source: &dyn Source,
) -> Result<RecoveryReport, Failure> {
    let dir = DataDir::new(spec.engine.data_dir.as_deref(), "recovery")?;
    let mut config = spec.engine.config(dir.path());
    config.wait = spec.engine.wait;
    refuse_existing_journal(&config.journal_dir)?;
    let snapshot_at = source.len().saturating_sub(spec.tail).max(1);
    let built = build(&config, source, snapshot_at, P::default())?;
    let t0 = Instant::now();
    let (replay, count) = replay_hash::<P>(&config.journal_dir, config.max_response_bytes)?;
    let replay_secs = t0.elapsed().as_secs_f64();
    let load_secs = load_snapshot::<P>(&config)?;
    let t1 = Instant::now();
    let engine = Engine::start(config.clone(), P::default())?;
    let restart_secs = t1.elapsed().as_secs_f64();
    let recovered = engine.recovered();
    let restarted = engine.shutdown()?.state_hash();
    if replay != built.final_hash || restarted != built.final_hash || count != built.last {
        return Err(Failure(format!(
            "WRONG RESULT: live {:#x}, replay {replay:#x} ({count} msgs), restart {restarted:#x}",
            built.final_hash
        )));
    }
    Ok(RecoveryReport {
        app: name.into(),
        run_info: spec.engine.run_info(dir.path()),
        journal_messages: built.last,
        journal_bytes: dir_bytes(&config.journal_dir),
        build_msgs_per_sec: built.msgs_per_sec,
        replay_msgs_per_sec: count as f64 / replay_secs,
        replay_secs,
        snapshot_sequence: built.snapshot_sequence,
        state_bytes: built.state_bytes,
        snapshot_encode_secs: built.encode_secs,
        snapshot_write_secs: built.write_secs,
        snapshot_load_secs: load_secs,
        restart_secs,
        restart_replayed: recovered.replayed,
        restart_journal_open_secs: recovered.journal_open.as_secs_f64(),
        restart_snapshot_load_secs: recovered.snapshot_load.as_secs_f64(),
        restart_replay_secs: recovered.replay.as_secs_f64(),
        state_hash: replay,
    })
}

/// The bench writes its own journal from sequence 1: a directory that already holds one is
/// refused up front (it would fail later with a bare sequence mismatch).
fn refuse_existing_journal(dir: &std::path::Path) -> Result<(), Failure> {
    // Any `.seg` file (under a segment's name or not) is journal-like enough to refuse; no
    // directory (yet) is fine: the bench creates it.
    let holds_segments = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.path().extension().is_some_and(|ext| ext == "seg"))
    });
    if holds_segments {
        return Err(Failure(format!(
            "{} already holds a journal: `keel bench recovery` builds its own; give an empty \
             or new --data-dir",
            dir.display()
        )));
    }
    Ok(())
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl RecoveryReport {
    /// The figures as a two-column table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "keel bench recovery --app {}\n{}",
            self.app,
            self.run_info.lines()
        );
        let mut t = Table::new(&["measure", "value"]);
        let mut row = |k: &str, v: String| t.row(vec![k.to_string(), v]);
        row("journal messages", self.journal_messages.to_string());
        row("journal bytes on disk", self.journal_bytes.to_string());
        row(
            "build (append+apply) msgs/s",
            format!("{:.0}", self.build_msgs_per_sec),
        );
        row(
            "full replay msgs/s",
            format!("{:.0}", self.replay_msgs_per_sec),
        );
        row("full replay s", format!("{:.3}", self.replay_secs));
        row("snapshot at sequence", self.snapshot_sequence.to_string());
        row("state bytes", self.state_bytes.to_string());
        row(
            "snapshot encode s",
            format!("{:.4}", self.snapshot_encode_secs),
        );
        row(
            "snapshot write+fsync s",
            format!("{:.4}", self.snapshot_write_secs),
        );
        row("snapshot load s", format!("{:.4}", self.snapshot_load_secs));
        row(
            "restart (start to live) s",
            format!("{:.3}", self.restart_secs),
        );
        row("restart tail replayed", self.restart_replayed.to_string());
        row(
            "  of which journal open s",
            format!("{:.3}", self.restart_journal_open_secs),
        );
        row(
            "  of which snapshot load s",
            format!("{:.3}", self.restart_snapshot_load_secs),
        );
        row(
            "  of which tail replay s",
            format!("{:.3}", self.restart_replay_secs),
        );
        row(
            "state hash (all paths)",
            format!("{:#018x}", self.state_hash),
        );
        out.push_str(&t.render());
        out
    }
}
