//! The storage under a journal, measured on its own in the same run, so the journal's figures
//! can be read against it: the latency of one 4 KiB overwrite + `fdatasync` (the least a
//! group commit can cost) and the sequential write bandwidth of buffered writes followed by
//! one `fdatasync` (the most group commit can reach).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::latency::{LatencyRecorder, Percentiles};

/// Bytes per synced write in the latency probe.
const PROBE_WRITE_BYTES: usize = 4096;
/// Synced writes timed in the latency probe.
const PROBE_SYNCS: usize = 1000;
/// Bytes written in the bandwidth probe.
const BANDWIDTH_BYTES: usize = 64 << 20;
/// Bytes per `write` call in the bandwidth probe.
const BANDWIDTH_CHUNK_BYTES: usize = 1 << 20;

/// What the journal's directory can do.
#[derive(Debug, Clone, Serialize)]
pub struct DiskBaseline {
    /// 4 KiB `pwrite` over already-written blocks, then `fdatasync`, nanoseconds.
    pub fdatasync_4k: Percentiles,
    /// 64 MiB of buffered writes to a new file plus one `fdatasync`, megabytes (10^6) per second.
    pub write_mb_per_sec: f64,
}

impl DiskBaseline {
    /// Measures in `dir` (about a second on an SSD); leaves no file behind.
    pub fn measure(dir: &Path) -> io::Result<DiskBaseline> {
        let path = dir.join("disk-baseline.tmp");
        let result = probe(&path);
        let _ = std::fs::remove_file(&path);
        result
    }

    /// One line for a table's footer.
    pub fn line(&self) -> String {
        format!(
            "disk, same run: 4 KiB write + fdatasync p50 {:.0} us, p99 {:.0} us; \
             sequential write + fdatasync {:.0} MB/s\n",
            self.fdatasync_4k.p50_ns as f64 / 1e3,
            self.fdatasync_4k.p99_ns as f64 / 1e3,
            self.write_mb_per_sec
        )
    }
}

fn probe(path: &Path) -> io::Result<DiskBaseline> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let write_mb_per_sec = bandwidth(&file)?;
    let fdatasync_4k = sync_latency(&file)?;
    Ok(DiskBaseline {
        fdatasync_4k,
        write_mb_per_sec,
    })
}

/// Writes [`BANDWIDTH_BYTES`] and syncs them once.
fn bandwidth(mut file: &File) -> io::Result<f64> {
    let chunk = vec![0x5Au8; BANDWIDTH_CHUNK_BYTES];
    let started = Instant::now();
    for _ in 0..BANDWIDTH_BYTES / BANDWIDTH_CHUNK_BYTES {
        file.write_all(&chunk)?;
    }
    file.sync_data()?;
    Ok(BANDWIDTH_BYTES as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// Overwrites successive 4 KiB blocks of the (already written and synced) file, one
/// `fdatasync` each: data-only syncs, as a journal's records over allocated blocks.
fn sync_latency(file: &File) -> io::Result<Percentiles> {
    let block = [0xA5u8; PROBE_WRITE_BYTES];
    let mut recorder = LatencyRecorder::new();
    for i in 0..PROBE_SYNCS {
        let offset = (i * PROBE_WRITE_BYTES % BANDWIDTH_BYTES) as u64;
        let started = Instant::now();
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        recorder.record(started.elapsed().as_nanos() as u64);
    }
    Ok(recorder.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_sync_latency_and_bandwidth_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskBaseline::measure(dir.path()).unwrap();
        assert_eq!(disk.fdatasync_4k.count, PROBE_SYNCS as u64);
        assert!(
            disk.fdatasync_4k.p50_ns > 0 && disk.fdatasync_4k.p50_ns <= disk.fdatasync_4k.p99_ns
        );
        assert!(disk.write_mb_per_sec > 0.0);
        assert!(disk.line().contains("fdatasync"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
