//! Engine flags shared by `keel serve` and the benchmarks: every `Config` limit as a flag.

use clap::{Args, ValueEnum};
use keel::engine::{ApplyMode, Config, Pinning};
use keel::journal::{FlushPolicy, JournalRetention, SegmentPrep};
use keel::ring::WaitStrategy;
pub use keel_bench::AppName;
use std::path::PathBuf;

/// The sizes an engine starts from (`--preset`); any size flag given overrides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Preset {
    /// `Config::default()`: rings of 4096 slots, 16 MiB segments (under 128 MiB resident and
    /// on disk when empty).
    #[default]
    Default,
    /// `Config::production(dir)`: rings of 65536 slots, 256 MiB segments (about 850 MiB
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
    /// Journal flush policy: none | batch | interval:MS.
    #[arg(long, default_value = "batch")]
    pub flush: FlushPolicy,
    /// Wait strategy of the engine threads: spin | yield | park | phased.
    #[arg(long, default_value = "phased")]
    pub wait: WaitStrategy,
    /// durable (apply after journaling) | apply-ahead (apply at once, answer after journaling).
    #[arg(long, default_value = "durable")]
    pub mode: ApplyMode,
    /// Input ring slots (power of two) [default: from --preset: 4096 | 65536].
    #[arg(long)]
    pub ring_capacity: Option<usize>,
    /// Output ring slots (power of two) [default: from --preset: 4096 | 65536].
    #[arg(long)]
    pub output_ring_capacity: Option<usize>,
    /// Largest message payload accepted, bytes.
    #[arg(long, default_value_t = 1024)]
    pub max_message_bytes: usize,
    /// Largest response payload, bytes.
    #[arg(long, default_value_t = 4096)]
    pub max_response_bytes: usize,
    /// Journal segment file size, bytes [default: from --preset: 16777216 (16 MiB) |
    /// 268435456 (256 MiB)].
    #[arg(long)]
    pub segment_size_bytes: Option<u64>,
    /// How new journal segments are prepared: auto (zeroed when the flush policy syncs,
    /// huge-pages under none) | zeroed (zeros written and synced ahead of use, 16 KiB pages:
    /// each ack costs about one fdatasync; least throughput) | huge-pages (2 MiB pages: most
    /// throughput; every sync writes whole 2 MiB pages) | allocated (page sizes left to the
    /// kernel: deep in a segment a sync rewrites up to 2 MiB).
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
    /// Largest snapshot state restored at startup, bytes (a larger one is skipped unread).
    #[arg(long, default_value_t = keel::snapshot::DEFAULT_SNAPSHOT_MAX_STATE_BYTES)]
    pub snapshot_max_state_bytes: u64,
    /// Make the state's reserved memory resident at start, on the business-logic thread (no
    /// page faults on the message path; the bookstore's default limits take ~1.6 GB).
    #[arg(long)]
    pub prefault_state: bool,
    /// Pin the journaler thread to this core id.
    #[arg(long)]
    pub pin_journaler: Option<usize>,
    /// Pin the business-logic thread to this core id.
    #[arg(long)]
    pub pin_logic: Option<usize>,
    /// Pin the network thread to this core id (`keel serve`; `NetConfig::net_core`).
    #[arg(long)]
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
        config.pinning = Pinning {
            journaler_core: self.pin_journaler,
            logic_core: self.pin_logic,
        };
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(same(&config(&[]), &Config::with_data_dir(".")));
        assert!(same(
            &config(&["--preset", "production", "--data-dir", "d"]),
            &Config::production("d")
        ));
        let mixed = config(&["--preset", "production", "--ring-capacity", "1024"]);
        assert_eq!(
            mixed.ring_capacity, 1024,
            "a size flag overrides the preset"
        );
        assert_eq!(mixed.output_ring_capacity, 1 << 16);
    }
}
