//! The storage under a journal, measured on its own in the same run, so the journal's figures
//! can be read against it: the latency of one 4 KiB overwrite + `fdatasync`, the durable
//! acknowledgement an ideal group commit on these syncs would give (the least any group
//! commit can cost, see [`group_commit_floor`]), and the sequential write bandwidth of
//! buffered writes followed by one `fdatasync` (the most group commit can reach).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::latency::{LatencyRecorder, Percentiles};

/// Bytes per synced write in the latency probe.
const PROBE_WRITE_BYTES: usize = 4096;
/// Most synced writes timed in the latency probe.
const PROBE_MAX_SYNCS: usize = 5000;
/// Most time spent on them (the probe stops at whichever limit comes first).
const PROBE_MAX_TIME: Duration = Duration::from_secs(1);
/// Spacing of the arrival instants at which the ideal group-commit ack is evaluated.
const FLOOR_ARRIVAL_STEP_NS: u64 = 1_000;
/// Bytes written in the bandwidth probe.
const BANDWIDTH_BYTES: usize = 64 << 20;
/// Bytes per `write` call in the bandwidth probe.
const BANDWIDTH_CHUNK_BYTES: usize = 1 << 20;

/// What the journal's directory can do.
#[derive(Debug, Clone, Serialize)]
pub struct DiskBaseline {
    /// 4 KiB `pwrite` over already-written blocks, then `fdatasync`, nanoseconds; the
    /// writes run back to back (at most 5000 of them or for 1 s).
    pub fdatasync_4k: Percentiles,
    /// The durable acknowledgement of an ideal group commit running those same syncs back to
    /// back, nanoseconds: for an arrival every microsecond over the probe, the time until the
    /// end of the first sync that starts after it ([`group_commit_floor`]). No group commit on
    /// this disk acknowledges faster; its tail is the syncs' time-weighted tail.
    pub group_commit_ack: Percentiles,
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
             ideal group commit ack p50 {:.0} us, p99 {:.0} us; \
             sequential write + fdatasync {:.0} MB/s\n",
            self.fdatasync_4k.p50_ns as f64 / 1e3,
            self.fdatasync_4k.p99_ns as f64 / 1e3,
            self.group_commit_ack.p50_ns as f64 / 1e3,
            self.group_commit_ack.p99_ns as f64 / 1e3,
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
    let syncs = back_to_back_syncs(&file)?;
    let mut fdatasync_4k = LatencyRecorder::new();
    for s in &syncs {
        fdatasync_4k.record(s.end_ns - s.start_ns);
    }
    Ok(DiskBaseline {
        fdatasync_4k: fdatasync_4k.summary(),
        group_commit_ack: group_commit_floor(&syncs, FLOOR_ARRIVAL_STEP_NS).summary(),
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

/// One synced write of the probe: when it started (before its `pwrite`) and when its
/// `fdatasync` returned, nanoseconds on one monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSpan {
    /// Start, nanoseconds.
    pub start_ns: u64,
    /// End, nanoseconds (not before `start_ns`).
    pub end_ns: u64,
}

/// Overwrites successive 4 KiB blocks of the (already written and synced) file, one
/// `fdatasync` each, back to back: data-only syncs, as a journal's records over allocated
/// blocks. At most [`PROBE_MAX_SYNCS`] or for [`PROBE_MAX_TIME`].
fn back_to_back_syncs(file: &File) -> io::Result<Vec<SyncSpan>> {
    let block = [0xA5u8; PROBE_WRITE_BYTES];
    let mut syncs = Vec::with_capacity(PROBE_MAX_SYNCS);
    let origin = Instant::now();
    for i in 0..PROBE_MAX_SYNCS {
        let offset = (i * PROBE_WRITE_BYTES % BANDWIDTH_BYTES) as u64;
        let start_ns = origin.elapsed().as_nanos() as u64;
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        let end_ns = origin.elapsed().as_nanos() as u64;
        syncs.push(SyncSpan { start_ns, end_ns });
        if end_ns >= PROBE_MAX_TIME.as_nanos() as u64 {
            break;
        }
    }
    Ok(syncs)
}

/// The durable acknowledgement of an ideal group commit whose syncs are `syncs` (in order of
/// start): a record written at instant `t` is durable when the first sync that starts at or
/// after `t` ends, so its latency is `end(i) - t` for the first `i` with `start(i) >= t`.
/// Evaluated for arrivals every `step_ns` from the first sync's start to the last's (a steady
/// load's arrivals are uniform in time).
///
/// For back-to-back syncs of durations `d(i)` this is at least the rest of the sync in
/// flight plus one whole sync; arrivals land in a sync in proportion to its length, so a long
/// sync is met by proportionally many records and the ack tail is the syncs' time-weighted
/// tail, above their count-weighted one.
pub fn group_commit_floor(syncs: &[SyncSpan], step_ns: u64) -> LatencyRecorder {
    assert!(step_ns > 0, "arrival step must be positive");
    let mut recorder = LatencyRecorder::new();
    let (Some(first), Some(last)) = (syncs.first(), syncs.last()) else {
        return recorder;
    };
    let mut covering = 0;
    let mut arrival_ns = first.start_ns;
    while arrival_ns <= last.start_ns {
        while syncs[covering].start_ns < arrival_ns {
            covering += 1;
        }
        recorder.record(syncs[covering].end_ns - arrival_ns);
        arrival_ns += step_ns;
    }
    recorder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_sync_latency_and_bandwidth_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskBaseline::measure(dir.path()).unwrap();
        let syncs = disk.fdatasync_4k.count;
        assert!(syncs > 0 && syncs <= PROBE_MAX_SYNCS as u64);
        assert!(
            disk.fdatasync_4k.p50_ns > 0 && disk.fdatasync_4k.p50_ns <= disk.fdatasync_4k.p99_ns
        );
        // An arrival waits at least for one whole sync.
        let floor = &disk.group_commit_ack;
        assert!(floor.count > 0 && floor.p50_ns >= disk.fdatasync_4k.p50_ns / 2);
        assert!(disk.write_mb_per_sec > 0.0);
        assert!(disk.line().contains("fdatasync") && disk.line().contains("group commit"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// `n` back-to-back syncs of `d` ns, but with `long = Some((i, ns))` sync `i` lasts `ns`.
    fn back_to_back(n: u64, d: u64, long: Option<(u64, u64)>) -> Vec<SyncSpan> {
        let mut t = 0;
        (0..n)
            .map(|i| {
                let len = match long {
                    Some((at, long_ns)) if at == i => long_ns,
                    _ => d,
                };
                let s = SyncSpan {
                    start_ns: t,
                    end_ns: t + len,
                };
                t += len;
                s
            })
            .collect()
    }

    #[test]
    fn equal_syncs_cost_between_one_and_two_syncs() {
        // Syncs [0,100), [100,200), … [900,1000); arrivals 0..=900 every 1 ns. Arrival 0
        // rides sync 0 (100 ns); one in (100(k-1), 100k] waits for sync k to end at
        // 100(k+1): 100 ..= 199 ns.
        // 100 occurs 10 times, 101 ..= 199 9 times each: the 451st value is 149.
        let floor = group_commit_floor(&back_to_back(10, 100, None), 1);
        let r = floor.summary();
        assert_eq!(r.count, 901);
        assert_eq!(floor.histogram().min(), 100);
        assert_eq!(r.max_ns, 199);
        assert_eq!(r.p50_ns, 149);
    }

    #[test]
    fn a_long_sync_is_met_by_proportionally_many_arrivals() {
        // 100 syncs of 100 ns, but sync 50 lasts 1000 ns: by count the syncs' p99 is 100 ns,
        // yet arrivals during the long sync or just before it wait 1000 ..= 1100 ns, and they
        // are 200 of the 10,801 instants (1.9%): the ack p99 is over 1000 ns.
        let syncs = back_to_back(100, 100, Some((50, 1000)));
        let mut by_count = LatencyRecorder::new();
        for s in &syncs {
            by_count.record(s.end_ns - s.start_ns);
        }
        assert_eq!(by_count.summary().p99_ns, 100);
        let r = group_commit_floor(&syncs, 1).summary();
        assert_eq!(r.count, 10_801);
        assert!(r.p99_ns >= 1000, "{r:?}");
        assert_eq!(r.max_ns, 1099);
    }

    #[test]
    fn no_syncs_no_figure() {
        assert_eq!(group_commit_floor(&[], 1_000).count(), 0);
    }
}
