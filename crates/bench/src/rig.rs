//! What the engine-level benchmarks share: engine flags, a throw-away data directory, the
//! seeded workload, replay verification, and the error type.

use super::sysinfo::RunInfo;
use clap::Args;
use keel::engine::{apply_message, message_of, ApplyMode, Config, Processor};
use keel::journal::{FlushPolicy, JournalReader, SegmentPrep};
use keel::ring::WaitStrategy;
use keel_services::{App, Command};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A benchmark failed: wrong result, lost thread, or I/O. Never a slow result.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

impl Failure {
    /// A failure with this text.
    pub fn new(text: impl Into<String>) -> Self {
        Failure(text.into())
    }
}

macro_rules! failure_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure(e.to_string())
            }
        }
    )*};
}
failure_from!(
    keel::error::Error,
    std::io::Error,
    keel::journal::JournalError,
    keel::engine::SubmitError,
    keel::snapshot::SnapshotError,
    keel::net::ClientError
);

/// Engine flags of the engine-level benchmarks (a subset of `keel serve`'s, with a throw-away
/// data directory by default).
#[derive(Debug, Clone, Args)]
pub struct BenchEngineArgs {
    /// Keep the journal and snapshots in DIR (default: a temporary directory, removed after).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Journal flush policy: none | batch | interval:DURATION (e.g. interval:5ms).
    #[arg(long, default_value = "batch", value_parser = keel_services::units::flush_policy)]
    pub flush: FlushPolicy,
    /// How the engine and harness threads wait: spin | yield | park | phased (park: on a
    /// shared 2-core machine, yielding threads delay each other by milliseconds).
    #[arg(long, default_value = "park")]
    pub wait: WaitStrategy,
    /// durable (apply after journaling) | apply-ahead (apply at once, answer after journaling).
    #[arg(long, default_value = "durable")]
    pub mode: ApplyMode,
    /// Input and output ring slots (power of two).
    #[arg(long, value_name = "SLOTS", default_value_t = 1 << 16)]
    pub ring_capacity: usize,
    /// Journal segment file size (e.g. 64MiB, 1G).
    #[arg(long = "segment-size", alias = "segment-size-bytes", value_name = "SIZE",
          value_parser = keel_services::units::bytes, default_value = "256MiB")]
    pub segment_size_bytes: u64,
    /// How new journal segments are prepared: auto | adaptive | zeroed | huge-pages | allocated.
    #[arg(long, default_value_t = SegmentPrep::default())]
    pub segment_prep: SegmentPrep,
    /// Pin the journaler thread to this core.
    #[arg(long, value_name = "CORE")]
    pub pin_journaler: Option<usize>,
    /// Pin the business-logic thread to this core.
    #[arg(long, value_name = "CORE")]
    pub pin_logic: Option<usize>,
    /// Pin the load-generating (producer) thread to this core.
    #[arg(long, value_name = "CORE")]
    pub pin_producer: Option<usize>,
    /// Pin the response-reading thread to this core.
    #[arg(long, value_name = "CORE")]
    pub pin_receiver: Option<usize>,
}

impl Default for BenchEngineArgs {
    fn default() -> Self {
        BenchEngineArgs {
            data_dir: None,
            flush: FlushPolicy::Batch,
            wait: WaitStrategy::PARK,
            mode: ApplyMode::Durable,
            ring_capacity: 1 << 16,
            segment_size_bytes: 256 << 20,
            segment_prep: SegmentPrep::default(),
            pin_journaler: None,
            pin_logic: None,
            pin_producer: None,
            pin_receiver: None,
        }
    }
}

impl BenchEngineArgs {
    /// The engine config for data directory `dir`: no periodic snapshots (they would be
    /// measured as latency spikes of the harness, not of the pipeline).
    pub fn config(&self, dir: &Path) -> Config {
        let mut config = Config::with_data_dir(dir);
        config.ring_capacity = self.ring_capacity;
        config.output_ring_capacity = self.ring_capacity;
        config.segment_size_bytes = self.segment_size_bytes;
        config.segment_prep = self.segment_prep;
        config.flush = self.flush;
        config.wait = self.wait;
        config.mode = self.mode;
        config.snapshot_interval_messages = 0;
        config.snapshot_on_shutdown = false;
        config.pinning.journaler_core = self.pin_journaler;
        config.pinning.logic_core = self.pin_logic;
        config
    }

    /// The run description for a journal in `dir`.
    pub fn run_info(&self, dir: &Path) -> RunInfo {
        let pins = [
            ("journaler", self.pin_journaler),
            ("logic", self.pin_logic),
            ("producer", self.pin_producer),
            ("receiver", self.pin_receiver),
        ];
        let mode = match self.mode {
            ApplyMode::Durable => "durable",
            ApplyMode::ApplyAhead => "apply-ahead",
        };
        RunInfo {
            mode: Some(mode.into()),
            ..RunInfo::detect(
                &pins,
                self.wait.name(),
                (self.flush, self.segment_prep),
                dir,
            )
        }
    }

    /// Whether harness threads may busy-wait.
    pub fn spin(&self) -> bool {
        self.wait == WaitStrategy::BusySpin
    }
}

/// A data directory: the one asked for (kept), or a fresh temporary one (removed on drop).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    /// `keep` if given (created), else a new directory under the system temp dir.
    pub fn new(keep: Option<&Path>, label: &str) -> std::io::Result<DataDir> {
        let (path, temporary) = match keep {
            Some(p) => (p.to_path_buf(), false),
            None => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let name = format!("keel-bench-{label}-{}-{nanos}", std::process::id());
                (std::env::temp_dir().join(name), true)
            }
        };
        std::fs::create_dir_all(&path).map_err(|e| Self::cannot_create(&path, temporary, e))?;
        Ok(DataDir { path, temporary })
    }

    /// A sub-directory `name` of this one (created).
    pub fn sub(&self, name: &str) -> std::io::Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).map_err(|e| Self::cannot_create(&p, self.temporary, e))?;
        Ok(p)
    }

    /// The error of a directory that cannot be created, naming it and the flag that chose it.
    fn cannot_create(path: &Path, temporary: bool, e: std::io::Error) -> std::io::Error {
        let what = if temporary {
            "temporary directory"
        } else {
            "--data-dir"
        };
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => " (a parent directory is missing or read-only)",
            std::io::ErrorKind::PermissionDenied => " (choose a directory you can write)",
            _ => "",
        };
        let text = e.to_string();
        let text = text
            .split(" (os error")
            .next()
            .unwrap_or(&text)
            .to_lowercase();
        std::io::Error::new(
            e.kind(),
            format!("{what} {}: cannot create it: {text}{hint}", path.display()),
        )
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A pre-encoded stretch of the seeded workload, one contiguous buffer (built before timing).
#[derive(Debug, Default)]
pub struct Feed {
    bytes: Vec<u8>,
    /// (offset, len, kind, version) of each message.
    index: Vec<(u32, u16, u16, u16)>,
}

impl Feed {
    /// Messages `first..first + count` of `A::workload(seed, ·)`.
    pub fn build<A: App>(seed: u64, first: u64, count: u64) -> Feed {
        let mut feed = Feed::default();
        for i in first..first + count {
            feed.push(&A::workload(seed, i));
        }
        feed
    }

    /// `A::setup(seed)` followed by messages `0..count` of the workload.
    pub fn build_with_setup<A: App>(seed: u64, count: u64) -> Feed {
        let mut feed = Feed::default();
        for c in A::setup(seed) {
            feed.push(&c);
        }
        for i in 0..count {
            feed.push(&A::workload(seed, i));
        }
        feed
    }

    fn push(&mut self, c: &Command) {
        let at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(&c.payload);
        self.index
            .push((at, c.payload.len() as u16, c.kind, c.version));
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Message `k`: (kind, version, payload).
    #[inline]
    pub fn get(&self, k: usize) -> (u16, u16, &[u8]) {
        let (at, len, kind, version) = self.index[k];
        let at = at as usize;
        (kind, version, &self.bytes[at..at + len as usize])
    }
}

/// Replays the journal in `journal_dir` into a fresh processor: (state hash, messages).
pub fn replay_hash<P: Processor + Default>(
    journal_dir: &Path,
    max_response_bytes: usize,
) -> Result<(u64, u64), Failure> {
    let mut processor = P::default();
    let mut reader = JournalReader::open(journal_dir)?;
    let mut scratch = vec![0u8; max_response_bytes];
    let mut count = 0;
    while let Some(record) = reader.next()? {
        apply_message(&mut processor, &message_of(&record), &mut scratch);
        count += 1;
    }
    Ok((processor.state_hash(), count))
}

/// The end-of-run check: the live engine's state hash equals a replay of its journal.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Verified {
    /// State hash of the engine at shutdown.
    pub engine_state_hash: u64,
    /// State hash of a fresh processor after replaying the journal.
    pub replay_state_hash: u64,
    /// Messages in the journal (setup included).
    pub journaled_messages: u64,
}

/// Replays `config`'s journal and compares with `engine_hash`; fails loudly on a mismatch.
pub fn verify<P: Processor + Default>(
    config: &Config,
    engine_hash: u64,
) -> Result<Verified, Failure> {
    let (replay, count) = replay_hash::<P>(&config.journal_dir, config.max_response_bytes)?;
    if replay != engine_hash {
        return Err(Failure(format!(
            "WRONG RESULT: engine state hash {engine_hash:#018x} != replay of its journal \
             {replay:#018x} ({count} messages in {})",
            config.journal_dir.display()
        )));
    }
    Ok(Verified {
        engine_state_hash: engine_hash,
        replay_state_hash: replay,
        journaled_messages: count,
    })
}
