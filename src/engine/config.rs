//! `Config`: every limit of the engine, set once at start. Nothing grows after `start()`.

use crate::journal::{FlushPolicy, JournalConfig, JournalRetention, SegmentPrep};
use crate::ring::WaitStrategy;
use std::path::PathBuf;

/// When the business logic may apply a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// Apply only after the message is journaled (under the flush policy). The default.
    #[default]
    Durable,
    /// Apply as soon as it is published; hold each response until its message is journaled.
    ApplyAhead,
}

impl std::str::FromStr for ApplyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "durable" => Ok(ApplyMode::Durable),
            "apply-ahead" | "ahead" => Ok(ApplyMode::ApplyAhead),
            other => Err(format!(
                "unknown apply mode {other:?}: use durable|apply-ahead"
            )),
        }
    }
}

/// Who publishes into the input ring.
///
/// `Single` (the default) is the fastest: one [`Submitter`](crate::Submitter) (or the network
/// server) publishes with a plain store per batch, and responses go to the output ring, read
/// in order by one [`ResponseReceiver`](super::ResponseReceiver). `Multi` builds the input
/// ring with the Disruptor's multi-producer claim, so that cloneable
/// [`Client`](super::Client)s submit from any number of threads, each reply left on a reply
/// board for its own caller; there is no output ring then (`Engine::take_responses` returns
/// `None`), and the engine's `Submitter` still works, as one more producer whose messages get
/// no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Producers {
    /// One producer: the engine's `Submitter`, or the network server that takes it.
    #[default]
    Single,
    /// Any number of in-process [`Client`](super::Client)s (from `Engine::client`), plus the
    /// `Submitter`.
    Multi,
}

/// Which core each engine thread is pinned to (`None`: not pinned). The network thread's is
/// `keel::net::NetConfig::net_core`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pinning {
    /// Core id for the journaler thread.
    pub journaler_core: Option<usize>,
    /// Core id for the business-logic thread.
    pub logic_core: Option<usize>,
}

pub use crate::snapshot::DEFAULT_SNAPSHOT_MAX_STATE_BYTES;

/// Default input and output ring slots ([`Config::default`]).
const DEFAULT_RING_CAPACITY: usize = 4096;
/// Default journal segment size ([`Config::default`]): 16 MiB.
const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 16 << 20;
/// Input and output ring slots of [`Config::production`].
const PRODUCTION_RING_CAPACITY: usize = 1 << 16;
/// Journal segment size of [`Config::production`]: 256 MiB.
const PRODUCTION_SEGMENT_SIZE_BYTES: u64 = 256 << 20;

/// All limits and choices of one engine.
///
/// # Sizes and what they cost
///
/// The defaults ([`Config::default`], [`Config::with_data_dir`]) suit an embedded engine, tests
/// and development: an empty engine holds under 128 MiB resident and on disk and starts in
/// tens of milliseconds. [`Config::production`] sizes a dedicated server for bursts: deeper
/// rings and fewer segment switches, at several times the memory and disk. Both rings' slots
/// are allocated and pre-faulted at start (resident from then on); the journal keeps the
/// active segment and one prepared spare, both mapped and written through.
///
/// | Field | Default | `production` | Costs |
/// |---|---|---|---|
/// | `ring_capacity` | 4096 | 65536 | × (`max_message_bytes` + ~64 B) resident: 4.3 MiB / 68 MiB |
/// | `output_ring_capacity` | 4096 | 65536 | × (`max_response_bytes` + ~64 B) resident: 16.3 MiB / 260 MiB |
/// | `max_message_bytes` | 1024 | 1024 | per input slot (above) |
/// | `max_response_bytes` | 4096 | 4096 | per output slot (above) |
/// | `segment_size_bytes` | 16 MiB | 256 MiB | × 2 (active + spare) on disk and mapped: 32 MiB / 512 MiB |
///
/// Deeper rings absorb longer bursts before `submit` waits (back-pressure) and let the
/// journaler batch more per sync; larger segments switch files less often (each switch costs
/// a file creation and a sync, prepared ahead on another thread). [`Config::ring_memory_bytes`]
/// computes the rings' share for any setting. Processor state is separate (see
/// `prefault_state`).
///
/// `#[non_exhaustive]`: new limits can be added without breaking hosts. Start from
/// [`Config::with_data_dir`] (or [`Config::production`]) and set fields on it:
///
/// ```
/// let mut config = keel::Config::with_data_dir("data");
/// config.ring_capacity = 1024;
/// config.mode = keel::ApplyMode::ApplyAhead;
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Directory of journal segments.
    pub journal_dir: PathBuf,
    /// Directory of snapshots.
    pub snapshot_dir: PathBuf,
    /// Input ring slots (power of two).
    pub ring_capacity: usize,
    /// Output ring slots (power of two).
    pub output_ring_capacity: usize,
    /// Largest message payload accepted.
    pub max_message_bytes: usize,
    /// Largest response payload a processor may write.
    pub max_response_bytes: usize,
    /// Size of each journal segment file.
    pub segment_size_bytes: u64,
    /// When the journal is synced to storage.
    pub flush: FlushPolicy,
    /// How new journal segments are prepared: `Auto` (default: `Zeroed` when the flush policy
    /// syncs, so an acknowledgement costs about one `fdatasync`; `HugePages` under `none`),
    /// or one chosen; see [`SegmentPrep`].
    pub segment_prep: SegmentPrep,
    /// How engine threads wait.
    pub wait: WaitStrategy,
    /// Durable (default) or apply-ahead.
    pub mode: ApplyMode,
    /// One producer (default) or many: `Producers::Multi` is needed for [`Engine::client`]
    /// (see [`Producers`]). With `Multi`, at most `2 * ring_capacity` replies are outstanding
    /// at once (submitted and not yet read or dropped); the reply board's slots cost
    /// `2 * ring_capacity * max_response_bytes` (no output ring is built).
    ///
    /// [`Engine::client`]: crate::Engine::client
    pub producers: Producers,
    /// Thread pinning.
    pub pinning: Pinning,
    /// Drop responses instead of publishing them (an embedded host that does not read them).
    pub discard_responses: bool,
    /// Take a snapshot every this many messages (0: only on shutdown and on request).
    pub snapshot_interval_messages: u64,
    /// Snapshots kept on disk (older ones are deleted after a new one is written). The oldest
    /// one kept also bounds journal retention (`journal_retention`).
    pub snapshot_retain: usize,
    /// What happens to journal segments wholly before the oldest retained snapshot once a
    /// snapshot is durable: kept (the default), moved to a directory, or deleted. Applied on
    /// the snapshot thread, to keel's own journal only (not to a sink given to
    /// `Engine::start_with_sink`). See `docs/OPERATIONS.md`, "Retention".
    pub journal_retention: JournalRetention,
    /// Take a snapshot when the engine shuts down cleanly.
    pub snapshot_on_shutdown: bool,
    /// Largest snapshot state restored at startup. A snapshot file holding more is skipped
    /// (with a warning, like a damaged one) without being read, and decoding a state never
    /// allocates more than the state's own size, so a hostile snapshot costs at most this
    /// much memory.
    pub snapshot_max_state_bytes: u64,
    /// Call [`crate::Processor::prefault`] on the business-logic thread before the first
    /// message: the state's reserved memory becomes resident up front (no page faults on the
    /// message path, at the cost of memory up to the state's limits and a slower start:
    /// `Engine::start` returns once it is done).
    pub prefault_state: bool,
    /// The host accepts that a processor panic aborts the process. Panic containment (a
    /// panicking `apply` answered `Status::Failed`, the engine going on) needs
    /// `panic = "unwind"`; built with `panic = "abort"`, [`Config::validate`] (so
    /// `Engine::start`) refuses to start unless this is `true`. Replay determinism is
    /// unaffected: a message whose apply aborted the process is replayed like any other. No
    /// effect under `panic = "unwind"`. Default `false`.
    pub abort_on_processor_panic: bool,
    /// An external commit gate (replication): a message is applied (durable mode), or its
    /// response released (apply-ahead mode: output ring and [`Client`] replies), only once
    /// both the local journal holds it durably and this sequence has reached it. The engine
    /// never advances it; whoever does must wake the engine with
    /// [`Engine::commit_gate_waker`]'s [`DurableWaker::advance`]. A gate ahead of the local
    /// durable sequence is harmless (the smaller of the two applies). `None` (the default):
    /// no gate. Startup replay is not gated: the whole journal is replayed.
    /// [`Engine::shutdown`] drains everything published, so it waits for the gate to release
    /// it; [`Engine::halt`] does not (and dropping a gated engine halts it). See
    /// `docs/ARCHITECTURE.md`, "Commit gate".
    ///
    /// [`Engine::shutdown`]: crate::Engine::shutdown
    /// [`Engine::halt`]: crate::Engine::halt
    ///
    /// [`Client`]: crate::Client
    /// [`Engine::commit_gate_waker`]: crate::Engine::commit_gate_waker
    /// [`DurableWaker::advance`]: crate::journal::DurableWaker::advance
    pub commit_gate: Option<std::sync::Arc<crate::ring::Sequence>>,
    /// Exactly-once: clients whose progress the engine tracks at once (0: exactly-once off,
    /// every message applied). Past it, the least recently active client is forgotten, and a
    /// request it resends afterwards is applied again. See docs/engine.md, "Exactly once".
    pub dedup_clients: usize,
    /// Exactly-once: replies kept per client; a duplicate of an older request is refused with
    /// `Status::AlreadyAnswered` instead of answered.
    pub dedup_window: usize,
    /// Exactly-once: the largest reply payload kept; a duplicate of a request whose reply was
    /// larger is refused with `Status::AlreadyAnswered`. The table costs about
    /// `dedup_clients * dedup_window * (dedup_reply_bytes + 32)` bytes, allocated at start (and
    /// again for a snapshot replica).
    pub dedup_reply_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            journal_dir: PathBuf::from("journal"),
            snapshot_dir: PathBuf::from("snapshots"),
            ring_capacity: DEFAULT_RING_CAPACITY,
            output_ring_capacity: DEFAULT_RING_CAPACITY,
            max_message_bytes: 1024,
            max_response_bytes: 4096,
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            flush: FlushPolicy::Batch,
            segment_prep: SegmentPrep::default(),
            wait: WaitStrategy::default(),
            mode: ApplyMode::Durable,
            producers: Producers::Single,
            pinning: Pinning::default(),
            discard_responses: false,
            snapshot_interval_messages: 1_000_000,
            snapshot_retain: 3,
            journal_retention: JournalRetention::Keep,
            snapshot_on_shutdown: true,
            snapshot_max_state_bytes: DEFAULT_SNAPSHOT_MAX_STATE_BYTES,
            prefault_state: false,
            abort_on_processor_panic: false,
            commit_gate: None,
            dedup_clients: 1024,
            dedup_window: 8,
            dedup_reply_bytes: 256,
        }
    }
}

pub use crate::error::ConfigError;

impl Config {
    /// A config whose journal and snapshots live under `dir` (`dir/journal`, `dir/snapshots`).
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Config {
            journal_dir: dir.join("journal"),
            snapshot_dir: dir.join("snapshots"),
            ..Config::default()
        }
    }

    /// A config for a dedicated server under `dir`: rings of 65536 slots and 256 MiB journal
    /// segments (about 330 MiB of ring memory and 512 MiB of journal on disk; see the table on
    /// [`Config`]). Everything else as in [`Config::with_data_dir`].
    pub fn production(dir: impl Into<PathBuf>) -> Self {
        Config {
            ring_capacity: PRODUCTION_RING_CAPACITY,
            output_ring_capacity: PRODUCTION_RING_CAPACITY,
            segment_size_bytes: PRODUCTION_SEGMENT_SIZE_BYTES,
            ..Config::with_data_dir(dir)
        }
    }

    /// Bytes both rings' slots hold, allocated and made resident by `Engine::start`: each
    /// slot's payload buffer plus its header (the output ring, or with `Producers::Multi` the
    /// reply board, counts only when responses are not discarded).
    pub fn ring_memory_bytes(&self) -> u64 {
        use super::message::{Envelope, ResponseSlot};
        use crate::ring::slots_allocated;
        let ring = |slots: usize, payload: usize, header: usize| -> u64 {
            slots as u64 * (payload + header) as u64
        };
        let input = ring(
            slots_allocated::<Envelope>(self.ring_capacity),
            self.max_message_bytes,
            std::mem::size_of::<Envelope>(),
        );
        let output = ring(
            super::slots::output_slots(self),
            self.max_response_bytes,
            std::mem::size_of::<ResponseSlot>(),
        );
        input + output
    }

    /// The limits of the exactly-once table.
    pub(crate) fn dedup_limits(&self) -> super::dedup::DedupLimits {
        super::dedup::DedupLimits {
            clients: self.dedup_clients,
            window: self.dedup_window,
            reply_bytes: self.dedup_reply_bytes,
        }
    }

    /// Checks the exactly-once limits (`dedup_*`), as [`Config::validate`] does.
    pub(crate) fn validate_dedup(&self) -> Result<(), ConfigError> {
        in_range("dedup_clients", self.dedup_clients as u64, 0, 1 << 24)?;
        in_range("dedup_window", self.dedup_window as u64, 1, 1 << 16)?;
        let table_bytes = (self.dedup_clients * self.dedup_window) as u64;
        let reply_max = (1u64 << 34) / table_bytes.max(1);
        in_range(
            "dedup_reply_bytes",
            self.dedup_reply_bytes as u64,
            0,
            reply_max,
        )
    }

    /// The journal writer's configuration these limits describe.
    pub fn journal_config(&self) -> JournalConfig {
        JournalConfig {
            dir: self.journal_dir.clone(),
            segment_size_bytes: self.segment_size_bytes,
            flush: self.flush,
            max_payload_bytes: self.max_message_bytes as u32,
            segment_prep: self.segment_prep,
            service_name: String::new(),
            service_schema_version: 0,
            retention: self.journal_retention.clone(),
        }
    }

    /// Checks every limit; the engine refuses to start otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        power_of_two("ring_capacity", self.ring_capacity)?;
        power_of_two("output_ring_capacity", self.output_ring_capacity)?;
        let half_u32 = u64::from(u32::MAX / 2);
        let message_bytes = self.max_message_bytes as u64;
        in_range("max_message_bytes", message_bytes, 1, half_u32)?;
        in_range(
            "max_response_bytes",
            self.max_response_bytes as u64,
            0,
            half_u32,
        )?;
        let state_bytes = self.snapshot_max_state_bytes;
        in_range(
            "snapshot_max_state_bytes",
            state_bytes,
            1,
            isize::MAX as u64,
        )?;
        check_panic_strategy(cfg!(panic = "unwind"), self.abort_on_processor_panic)?;
        self.validate_dedup()?;
        if self.producers == Producers::Multi && self.discard_responses {
            return Err(ConfigError::Incompatible {
                settings: "discard_responses with producers = Multi",
                reason: "clients wait for their replies",
            });
        }
        let needed_bytes = 4 * message_bytes + 65_536;
        if self.segment_size_bytes < needed_bytes {
            return Err(ConfigError::SegmentTooSmall {
                segment_size_bytes: self.segment_size_bytes,
                max_message_bytes: self.max_message_bytes,
                needed_bytes,
            });
        }
        Ok(())
    }
}

fn power_of_two(field: &'static str, value: usize) -> Result<(), ConfigError> {
    if value.is_power_of_two() {
        return Ok(());
    }
    Err(ConfigError::NotPowerOfTwo { field, value })
}

fn in_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        field,
        value,
        min,
        max,
    })
}

/// Panic containment needs unwinding: without it (`panic = "abort"`) the engine starts only
/// if the host accepted, through `abort_on_processor_panic`, that a processor panic aborts
/// the process.
fn check_panic_strategy(unwinds: bool, abort_accepted: bool) -> Result<(), ConfigError> {
    if unwinds || abort_accepted {
        return Ok(());
    }
    Err(ConfigError::PanicAborts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_limits_are_checked() {
        Config::default().validate().unwrap();
        let bad = Config {
            ring_capacity: 1000,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Config {
            segment_size_bytes: 4096,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        assert!(
            Config::default().validate().is_ok(),
            "the test suite builds with panic = \"unwind\""
        );
        assert_eq!(
            "apply-ahead".parse::<ApplyMode>(),
            Ok(ApplyMode::ApplyAhead)
        );
    }

    #[test]
    fn default_rings_and_journal_stay_small_production_is_explicit() {
        const MIB: u64 = 1 << 20;
        let small = Config::default();
        // Rings plus active and spare segment: what an empty engine holds.
        let footprint = small.ring_memory_bytes() + 2 * small.segment_size_bytes;
        assert!(footprint <= 100 * MIB, "{footprint}");
        let big = Config::production("data");
        big.validate().unwrap();
        assert_eq!(big.journal_dir, PathBuf::from("data").join("journal"));
        assert!(big.ring_memory_bytes() > 300 * MIB);
        assert_eq!(big.segment_size_bytes, 256 * MIB);
    }

    #[test]
    fn abort_builds_refuse_to_start_unless_the_host_accepted_aborts() {
        assert!(check_panic_strategy(true, false).is_ok());
        assert!(check_panic_strategy(true, true).is_ok());
        let refused = check_panic_strategy(false, false).unwrap_err();
        assert_eq!(refused, ConfigError::PanicAborts);
        assert!(refused.to_string().contains("abort_on_processor_panic"));
        assert!(check_panic_strategy(false, true).is_ok());
    }
}
