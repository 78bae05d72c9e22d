//! Engine flags shared by `keel serve` and the benchmarks: every `Config` limit as a flag.

use clap::{Args, ValueEnum};
use keel::engine::{ApplyMode, Config, Pinning};
use keel::journal::{FlushPolicy, JournalRetention, SegmentPrep};
use keel::ring::WaitStrategy;
pub use keel_bench::AppName;
use keel_services::units;
use std::path::PathBuf;

/// The sizes an engine starts from (`--preset`); any size flag given overrides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Preset {
    /// Small (the engine's default config): rings of 4096 slots, 16MiB segments (under 128 MiB
    /// resident and on disk when empty).
    #[default]
    Default,
    /// The engine's production config: rings of 65536 slots, 256MiB segments (about 850 MiB
    /// resident and 512 MiB on disk when empty).
    Production,
}

/// Every engine limit and choice, as command-line flags (defaults = `Config::default()`, or
/// `Config::production` with `--preset production`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Data directory: the journal goes in DIR/journal, snapshots in DIR/snapshots.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Sizes to start from: default (small: rings 4096, segments 16 MiB) | production (rings
    /// 65536, segments 256 MiB). Size flags override it.
    #[arg(long, value_enum, default_value_t = Preset::Default)]
    pub preset: Preset,
    /// Journal flush policy: none | batch | interval:DURATION (e.g. interval:5ms).
    #[arg(long, default_value = "batch", value_parser = units::flush_policy)]
    pub flush: FlushPolicy,
    /// Wait strategy of the engine threads: spin | yield | park | phased | auto (phased,
    /// which spins before it parks, where this process may use at least 4 cores; park where
    /// fewer, since the spinning would take the cores from the work).
    #[arg(long, default_value = "auto", value_parser = wait_strategy)]
    pub wait: WaitStrategy,
    /// durable (apply after journaling) | apply-ahead (apply at once, answer after journaling).
    #[arg(long, default_value = "durable")]
    pub mode: ApplyMode,
    /// Input ring slots (power of two) [default: from --preset: 4096 | 65536].
    #[arg(long, value_name = "SLOTS")]
    pub ring_capacity: Option<usize>,
    /// Output ring slots (power of two) [default: from --preset: 4096 | 65536].
    #[arg(long, value_name = "SLOTS")]
    pub output_ring_capacity: Option<usize>,
    /// Largest message payload accepted (e.g. 1KiB, 4096).
    #[arg(long = "max-message-size", alias = "max-message-bytes", value_name = "SIZE",
          value_parser = units::bytes_usize, default_value = "1KiB")]
    pub max_message_bytes: usize,
    /// Largest response payload.
    #[arg(long = "max-response-size", alias = "max-response-bytes", value_name = "SIZE",
          value_parser = units::bytes_usize, default_value = "4KiB")]
    pub max_response_bytes: usize,
    /// Journal segment file size (e.g. 64MiB, 1G) [default: from --preset: 16MiB | 256MiB].
    #[arg(long = "segment-size", alias = "segment-size-bytes", value_name = "SIZE",
          value_parser = units::bytes)]
    pub segment_size_bytes: Option<u64>,
    /// How new journal segments are prepared: auto (adaptive when the flush policy syncs,
    /// huge-pages under none; use it) | adaptive (zeros written ahead at a bounded pace while
    /// the writer is slow, 2 MiB pages for the rest when it is fast) | expert, each worse at
    /// some load: zeroed (always zeroed: least throughput) | huge-pages (every sync writes
    /// whole 2 MiB pages) | allocated (deep in a segment a sync rewrites up to 2 MiB).
    #[arg(long, default_value_t = SegmentPrep::default())]
    pub segment_prep: SegmentPrep,
    /// Snapshot every N messages (0: only on shutdown and on request).
    #[arg(long, default_value_t = 1_000_000)]
    pub snapshot_interval_messages: u64,
    /// Snapshots kept on disk.
    #[arg(long, default_value_t = 3)]
    pub snapshot_retain: usize,
    /// What happens to journal segments wholly before the oldest retained snapshot, once a
    /// snapshot is durable: keep | archive:DIR (moved into DIR; `keel replay` reads them
    /// there) | delete. See docs/OPERATIONS.md, "Retention".
    #[arg(long, default_value = "keep")]
    pub journal_retention: JournalRetention,
    /// Largest snapshot state restored at startup (a larger one is skipped unread).
    #[arg(long = "snapshot-max-state-size", alias = "snapshot-max-state-bytes",
          value_name = "SIZE", value_parser = units::bytes,
          default_value = "16GiB")]
    pub snapshot_max_state_bytes: u64,
    /// Make the state's reserved memory resident at start, on the business-logic thread (no
    /// page faults on the message path; the bookstore's default limits take ~1.6 GB).
    #[arg(long)]
    pub prefault_state: bool,
    /// Exactly-once: clients tracked at once (0: off). Past it the least recently active is
    /// forgotten. See docs/engine.md, "Exactly once".
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub dedup_clients: usize,
    /// Exactly-once: replies kept per client (at least a client's requests in flight).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub dedup_window: usize,
    /// Exactly-once: largest reply kept for a resent request.
    #[arg(long = "dedup-reply-size", value_name = "SIZE", value_parser = units::bytes,
          default_value = "256")]
    pub dedup_reply_bytes: u64,
    /// Pin the journaler thread to this core id.
    #[arg(long, value_name = "CORE")]
    pub pin_journaler: Option<usize>,
    /// Pin the business-logic thread to this core id.
    #[arg(long, value_name = "CORE")]
    pub pin_logic: Option<usize>,
    /// Pin the network thread to this core id.
    #[arg(long, value_name = "CORE")]
    pub pin_net: Option<usize>,
}

impl EngineArgs {
    /// The engine `Config` these flags describe.
    pub fn config(&self) -> Config {
        let mut config = match self.preset {
            Preset::Default => Config::with_data_dir(&self.data_dir),
            Preset::Production => Config::production(&self.data_dir),
        };
        if let Some(capacity) = self.ring_capacity {
            config.ring_capacity = capacity;
        }
        if let Some(capacity) = self.output_ring_capacity {
            config.output_ring_capacity = capacity;
        }
        if let Some(bytes) = self.segment_size_bytes {
            config.segment_size_bytes = bytes;
        }
        config.max_message_bytes = self.max_message_bytes;
        config.max_response_bytes = self.max_response_bytes;
        config.segment_prep = self.segment_prep;
        config.flush = self.flush;
        config.wait = self.wait;
        config.mode = self.mode;
        config.snapshot_interval_messages = self.snapshot_interval_messages;
        config.snapshot_retain = self.snapshot_retain;
        config.journal_retention = self.journal_retention.clone();
        config.snapshot_max_state_bytes = self.snapshot_max_state_bytes;
        config.prefault_state = self.prefault_state;
        config.dedup_clients = self.dedup_clients;
        config.dedup_window = self.dedup_window;
        config.dedup_reply_bytes = self.dedup_reply_bytes as usize;
        config.pinning = Pinning {
            journaler_core: self.pin_journaler,
            logic_core: self.pin_logic,
        };
        config
    }
}

/// Cores this process may use from which `--wait auto` is `phased`: the engine's journaler and
/// business-logic threads and the network thread each spin before they park.
const AUTO_PHASED_MIN_CORES: usize = 4;

/// Parses `--wait`: a wait strategy, or `auto` resolved by the cores this process may use.
fn wait_strategy(s: &str) -> Result<WaitStrategy, String> {
    if s != "auto" {
        return s.parse();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(auto_wait(cores))
}

/// `--wait auto` on a machine with `cores` cores.
fn auto_wait(cores: usize) -> WaitStrategy {
    if cores >= AUTO_PHASED_MIN_CORES {
        WaitStrategy::default()
    } else {
        WaitStrategy::PARK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_auto_spins_only_with_cores_to_spare() {
        assert_eq!(auto_wait(2), WaitStrategy::PARK);
        assert_eq!(auto_wait(AUTO_PHASED_MIN_CORES), WaitStrategy::default());
        assert_eq!(wait_strategy("yield"), Ok(WaitStrategy::Yield));
        assert!(wait_strategy("auto").is_ok());
        assert!(wait_strategy("sometimes").is_err());
    }
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn config(args: &[&str]) -> Config {
        let args = std::iter::once("keel").chain(args.iter().copied());
        Cli::parse_from(args).engine.config()
    }

    #[test]
    fn flag_defaults_are_the_config_defaults_and_presets_are_explicit() {
        let same = |a: &Config, b: &Config| format!("{a:?}") == format!("{b:?}");
        // `--wait auto` is the library's default wait strategy where the cores allow it.
        let with_auto_wait = |mut c: Config| {
            c.wait = wait_strategy("auto").expect("auto");
            c
        };
        assert!(same(
            &config(&[]),
            &with_auto_wait(Config::with_data_dir("."))
        ));
        assert!(same(
            &config(&["--preset", "production", "--data-dir", "d"]),
            &with_auto_wait(Config::production("d"))
        ));
        let mixed = config(&["--preset", "production", "--ring-capacity", "1024"]);
        assert_eq!(
            mixed.ring_capacity, 1024,
            "a size flag overrides the preset"
        );
        assert_eq!(mixed.output_ring_capacity, 1 << 16);
    }

    #[test]
    fn sizes_take_units_and_the_old_byte_flags_still_work() {
        let c = config(&["--segment-size", "4M", "--max-message-size", "2KiB"]);
        assert_eq!((c.segment_size_bytes, c.max_message_bytes), (4 << 20, 2048));
        let old = config(&[
            "--segment-size-bytes",
            "1048576",
            "--max-message-bytes",
            "512",
        ]);
        assert_eq!(
            (old.segment_size_bytes, old.max_message_bytes),
            (1 << 20, 512)
        );
        let flush = config(&["--flush", "interval:2s"]);
        assert_eq!(flush.flush, FlushPolicy::IntervalMs(2000));
        assert_eq!(
            units::format_bytes(keel::snapshot::DEFAULT_SNAPSHOT_MAX_STATE_BYTES),
            "16GiB",
            "the help default of --snapshot-max-state-size"
        );
    }
}
