//! Engine flags shared by `keel serve` and the benchmarks: every `Config` limit as a flag.

use crate::engine::{ApplyMode, Config, Pinning};
use crate::journal::{FlushPolicy, SegmentPrep};
use crate::ring::WaitStrategy;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Which of the two services built on keel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AppName {
    /// Books, prices, stock and orders.
    #[default]
    Bookstore,
    /// Limit order books, accounts and pre-trade risk.
    Exchange,
}

/// Every engine limit and choice, as command-line flags (defaults = `Config::default()`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Data directory: the journal goes in DIR/journal, snapshots in DIR/snapshots.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Journal flush policy: none | batch | interval:MS.
    #[arg(long, default_value = "batch")]
    pub flush: FlushPolicy,
    /// Wait strategy of the engine threads: spin | yield | park | phased.
    #[arg(long, default_value = "phased")]
    pub wait: WaitStrategy,
    /// durable (apply after journaling) | apply-ahead (apply at once, answer after journaling).
    #[arg(long, default_value = "durable")]
    pub mode: ApplyMode,
    /// Input ring slots (power of two).
    #[arg(long, default_value_t = 1 << 16)]
    pub ring_capacity: usize,
    /// Output ring slots (power of two).
    #[arg(long, default_value_t = 1 << 16)]
    pub output_ring_capacity: usize,
    /// Largest message payload accepted, bytes.
    #[arg(long, default_value_t = 1024)]
    pub max_message_bytes: usize,
    /// Largest response payload, bytes.
    #[arg(long, default_value_t = 4096)]
    pub max_response_bytes: usize,
    /// Journal segment file size, bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub segment_size_bytes: u64,
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
    /// Largest snapshot state restored at startup, bytes (a larger one is skipped unread).
    #[arg(long, default_value_t = crate::engine::DEFAULT_SNAPSHOT_MAX_STATE_BYTES)]
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
        Config {
            ring_capacity: self.ring_capacity,
            output_ring_capacity: self.output_ring_capacity,
            max_message_bytes: self.max_message_bytes,
            max_response_bytes: self.max_response_bytes,
            segment_size_bytes: self.segment_size_bytes,
            segment_prep: self.segment_prep,
            flush: self.flush,
            wait: self.wait,
            mode: self.mode,
            snapshot_interval_messages: self.snapshot_interval_messages,
            snapshot_retain: self.snapshot_retain,
            snapshot_max_state_bytes: self.snapshot_max_state_bytes,
            prefault_state: self.prefault_state,
            pinning: Pinning {
                journaler_core: self.pin_journaler,
                logic_core: self.pin_logic,
            },
            ..Config::with_data_dir(&self.data_dir)
        }
    }
}
