//! Measures what an empty engine costs at a given configuration: start time, resident memory
//! (`VmRSS` after `Engine::start`) and bytes on disk of its fresh data directory.
//!
//! `cargo run --release --example footprint [default|production] [DIR]` (Linux: reads
//! `/proc/self/status`). `DIR` defaults to a fresh temporary directory.

use keel::codec::CodecError;
use keel::snapshot::StateError;
use keel::{Config, Engine, Message, Outcome, Output, Processor};
use std::path::Path;
use std::time::Instant;

/// A processor with no state: what remains is the engine's own cost.
struct Empty;

impl Processor for Empty {
    fn apply(&mut self, _message: &Message<'_>, _out: &mut Output<'_>) -> Outcome {
        Outcome::Accepted
    }
    fn state_hash(&self) -> u64 {
        0
    }
    fn save_state(&self, _out: &mut Vec<u8>) -> Result<(), CodecError> {
        Ok(())
    }
    fn load_state(&mut self, _schema_version: u32, _bytes: &[u8]) -> Result<(), StateError> {
        Ok(())
    }
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Allocated bytes (not apparent length) of every file under `dir`, like `du`.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let preset = args.next().unwrap_or_else(|| "default".into());
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = args
        .next()
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    let config = match preset.as_str() {
        "default" => Config::with_data_dir(&dir),
        "production" => Config::production(&dir),
        other => panic!("unknown preset {other:?}"),
    };
    let ring_mib = config.ring_memory_bytes() as f64 / (1 << 20) as f64;
    let before = vm_rss_kib();
    let start = Instant::now();
    let engine = Engine::start(config, Empty).expect("engine starts");
    let started = start.elapsed();
    let rss = vm_rss_kib();
    // The spare segment is prepared in the background: give it a moment before `du`.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let disk = disk_bytes(&dir);
    let rss_later = vm_rss_kib();
    engine.shutdown().expect("clean shutdown");
    println!(
        "preset={preset} start_ms={:.1} rss_before_start_mib={:.1} rss_after_start_mib={:.1} \
         rss_after_500ms_mib={:.1} disk_mib={:.1} ring_memory_mib={ring_mib:.1}",
        started.as_secs_f64() * 1e3,
        before as f64 / 1024.0,
        rss as f64 / 1024.0,
        rss_later as f64 / 1024.0,
        disk as f64 / (1 << 20) as f64,
    );
}
