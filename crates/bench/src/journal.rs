//! `keel bench journal`: append throughput of [`JournalWriter`] on its own (msgs/s and MB/s)
//! for several payload sizes and batch sizes, and the durable-ack latency of each batch (from
//! the append of its first record until it is durable) under the flush policy in force.
//!
//! Under `batch` the writer commits on its syncer thread while the next batch is appended
//! (group commit); a batch is acknowledged when the durable sequence reaches it. As in the
//! engine, where the ring bounds it, at most [`IN_FLIGHT_RECORDS`] records may be appended
//! ahead of the durable sequence; the clock stops when the last record is durable.
//!
//! With a rate ([`JournalSpec::rate`]) the load is open loop: records fall due at fixed
//! intended times, whatever is due is appended in batches of at most `batch`, and each batch's
//! latency counts from its first record's intended time (no coordinated omission).
//!
//! The appending thread waits for acknowledgements as the engine's business-logic thread
//! does: with a [`WaitStrategy`], woken by the syncer through a [`Signal`]. On two cores a
//! thread that yields in a loop instead takes the CPU the syncer and the kernel's writeback
//! need (the group commits then take twice as long).

use super::disk::DiskBaseline;
use super::latency::{micros, LatencyRecorder, Percentiles};
use super::report::saved::{self, OutArgs, SavedRun, Saving};
use super::report::Table;
use super::rig::{DataDir, Failure};
use super::schedule::{drive_open_loop, Schedule};
use super::sysinfo::RunInfo;
use keel::journal::{
    record_size_bytes, FlushPolicy, JournalConfig, JournalError, JournalReader, JournalWriter,
    Record, SegmentPrep,
};
use keel::ring::{wait_for, Check, Sequence, Signal, WaitKey, WaitStrategy};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records appended but not yet durable, at most (the engine's default ring capacity).
pub const IN_FLIGHT_RECORDS: u64 = 1 << 16;

/// What to measure.
#[derive(Debug, Clone)]
pub struct JournalSpec {
    /// Flush policy.
    pub flush: FlushPolicy,
    /// How the appending thread waits for durable acknowledgements.
    pub wait: WaitStrategy,
    /// Open loop at this many records per second (acknowledgement latency counted from each
    /// batch's intended time); `None`: closed loop, batches back to back.
    pub rate: Option<Schedule>,
    /// Payload sizes, bytes.
    pub payloads: Vec<usize>,
    /// Records per batch (`end_batch` after each).
    pub batches: Vec<usize>,
    /// Most records per case.
    pub messages: u64,
    /// Most time per case (a case stops at whichever limit comes first).
    pub max_time: Duration,
    /// Segment file size.
    pub segment_size_bytes: u64,
    /// How each segment is prepared.
    pub segment_prep: SegmentPrep,
    /// Where the journals go (None: a temporary directory).
    pub data_dir: Option<PathBuf>,
}

/// One (payload, batch) case.
#[derive(Debug, Clone, Serialize)]
pub struct JournalCase {
    /// Payload bytes per record.
    pub payload_bytes: usize,
    /// Records per batch (most per batch in an open-loop case).
    pub batch: usize,
    /// Offered records per second; `None` in a closed-loop case.
    pub offered_per_sec: Option<u64>,
    /// Records appended.
    pub messages: u64,
    /// Records per second.
    pub msgs_per_sec: f64,
    /// Megabytes (10^6) of records (header + payload + padding) per second.
    pub record_mb_per_sec: f64,
    /// Megabytes of payload per second.
    pub payload_mb_per_sec: f64,
    /// Time from a batch's first append (open loop: its first record's intended time) until
    /// it is durable, nanoseconds.
    pub ack_latency: Percentiles,
    /// The whole distribution of `ack_latency`.
    #[serde(skip)]
    pub ack_recorder: LatencyRecorder,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct JournalReport {
    /// What it ran on (flush policy included).
    pub run_info: RunInfo,
    /// The same directory's storage measured on its own, before the cases.
    pub disk: DiskBaseline,
    /// One per case.
    pub cases: Vec<JournalCase>,
}

/// Runs every case; each reads its journal back and checks the record count.
pub fn run(spec: &JournalSpec) -> Result<JournalReport, Failure> {
    let dir = DataDir::new(spec.data_dir.as_deref(), "journal")?;
    let disk = DiskBaseline::measure(dir.path())
        .map_err(|e| Failure(format!("disk baseline in {}: {e}", dir.path().display())))?;
    let mut cases = Vec::new();
    for &payload in &spec.payloads {
        for &batch in &spec.batches {
            let case_dir = dir.sub(&format!("p{payload}-b{batch}"))?;
            let case = run_case(spec, &case_dir, payload, batch.max(1));
            let _ = std::fs::remove_dir_all(&case_dir);
            cases.push(case?);
        }
    }
    let wait = spec.wait.name();
    let run_info = RunInfo::detect(&[], wait, (spec.flush, spec.segment_prep), dir.path());
    Ok(JournalReport {
        run_info,
        disk,
        cases,
    })
}

fn run_case(
    spec: &JournalSpec,
    dir: &Path,
    payload_bytes: usize,
    batch: usize,
) -> Result<JournalCase, Failure> {
    let mut cfg = JournalConfig::new(dir);
    cfg.segment_size_bytes = spec.segment_size_bytes;
    cfg.flush = spec.flush;
    cfg.max_payload_bytes = payload_bytes.max(64) as u32;
    cfg.segment_prep = spec.segment_prep;
    let mut writer = JournalWriter::open(&cfg)?;
    let mut load = Load {
        acks: Acks::new(writer.durable_sequence(), spec.wait, batch),
        payload: vec![0xA5u8; payload_bytes],
        appended: 0,
    };
    writer.set_durable_waker(Arc::clone(&load.acks.signal));
    let start = Instant::now();
    match spec.rate {
        None => load.closed_loop(&mut writer, spec, batch, start)?,
        Some(schedule) => {
            let total = spec.messages.min(schedule.messages_in(spec.max_time));
            drive_open_loop(schedule, total, start, false, |due| {
                load.due(&mut writer, due, batch, |i| {
                    start + Duration::from_nanos(schedule.intended_ns(i))
                })
            })?;
        }
    }
    let appended = load.appended;
    load.acks.wait_all(&mut writer, appended)?;
    let elapsed = start.elapsed().as_secs_f64();
    writer.sync()?;
    drop(writer);
    check_count(dir, appended)?;
    let record_bytes = record_size_bytes(payload_bytes) as f64;
    let rate = appended as f64 / elapsed;
    Ok(JournalCase {
        payload_bytes,
        batch,
        offered_per_sec: spec.rate.map(|s| s.rate_per_sec()),
        messages: appended,
        msgs_per_sec: rate,
        record_mb_per_sec: rate * record_bytes / 1e6,
        payload_mb_per_sec: rate * payload_bytes as f64 / 1e6,
        ack_latency: load.acks.recorder.summary(),
        ack_recorder: load.acks.recorder,
    })
}

/// The appending side of a case.
struct Load {
    acks: Acks,
    payload: Vec<u8>,
    /// Records appended so far (the last sequence).
    appended: u64,
}

impl Load {
    /// Batches of `batch` back to back (each timed from its first append) until the record
    /// or time limit.
    fn closed_loop(
        &mut self,
        writer: &mut JournalWriter,
        spec: &JournalSpec,
        batch: usize,
        start: Instant,
    ) -> Result<(), JournalError> {
        while self.appended < spec.messages && start.elapsed() < spec.max_time {
            let n = (batch as u64).min(spec.messages - self.appended);
            self.append_batch(writer, n, Instant::now())?;
        }
        Ok(())
    }

    /// Open loop: the records `due` (0-based) became due; appends them in batches of at most
    /// `batch`, each timed from its first record's intended time.
    fn due(
        &mut self,
        writer: &mut JournalWriter,
        due: std::ops::Range<u64>,
        batch: usize,
        intended: impl Fn(u64) -> Instant,
    ) -> Result<(), JournalError> {
        let mut first = due.start;
        while first < due.end {
            let n = (batch as u64).min(due.end - first);
            self.append_batch(writer, n, intended(first))?;
            first += n;
        }
        Ok(())
    }

    /// Appends `n` records as one batch begun at `started`.
    fn append_batch(
        &mut self,
        writer: &mut JournalWriter,
        n: u64,
        started: Instant,
    ) -> Result<(), JournalError> {
        for _ in 0..n {
            self.appended += 1;
            writer.append(&record(self.appended, &self.payload))?;
        }
        writer.end_batch()?;
        self.acks.ended(writer, self.appended, started)
    }
}

/// How long an acknowledgement wait goes without asking the writer whether its syncer failed.
const SYNCER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Batches waiting for their durable acknowledgement.
struct Acks {
    durable: Option<Arc<Sequence>>,
    /// Notified by the syncer whenever the durable sequence advances.
    signal: Arc<Signal>,
    wait: WaitStrategy,
    /// (last sequence of the batch, when its first record was appended), oldest first.
    pending: VecDeque<(u64, Instant)>,
    in_flight_batches: usize,
    recorder: LatencyRecorder,
}

impl Acks {
    fn new(durable: Option<Arc<Sequence>>, wait: WaitStrategy, batch: usize) -> Self {
        let in_flight_batches = (IN_FLIGHT_RECORDS as usize / batch.max(1)).max(1);
        Acks {
            durable,
            signal: Arc::new(Signal::default()),
            wait,
            pending: VecDeque::with_capacity(in_flight_batches + 1),
            in_flight_batches,
            recorder: LatencyRecorder::new(),
        }
    }

    /// A batch ending at `last`, begun at `started`, was handed to `writer`.
    fn ended(
        &mut self,
        writer: &mut JournalWriter,
        last: u64,
        started: Instant,
    ) -> Result<(), JournalError> {
        if self.durable.is_none() {
            // Durable when `end_batch` returned.
            self.recorder.record(started.elapsed().as_nanos() as u64);
            return Ok(());
        }
        self.pending.push_back((last, started));
        self.settle(self.durable_now());
        if self.pending.len() > self.in_flight_batches {
            let oldest = self.pending.front().map_or(0, |&(last, _)| last);
            self.wait_durable(writer, oldest)?;
            self.settle(self.durable_now());
        }
        Ok(())
    }

    /// Waits until `last` is durable, acknowledging every batch.
    fn wait_all(&mut self, writer: &mut JournalWriter, last: u64) -> Result<(), JournalError> {
        if self.durable.is_none() {
            return Ok(());
        }
        self.wait_durable(writer, last)?;
        self.settle(last);
        Ok(())
    }

    /// Blocks (per the wait strategy) until `sequence` is durable. Every
    /// [`SYNCER_CHECK_INTERVAL`] without progress it asks `writer` whether the syncer failed
    /// (the durable sequence then never advances), and returns that error.
    fn wait_durable(&self, writer: &mut JournalWriter, sequence: u64) -> Result<(), JournalError> {
        let Some(durable) = &self.durable else {
            return Ok(());
        };
        loop {
            let deadline = Instant::now() + SYNCER_CHECK_INTERVAL;
            let durable_now = wait_for(self.wait, &self.signal, Some(deadline), || {
                if durable.load_acquire() >= sequence {
                    Check::Ready
                } else {
                    Check::BlockedOn(WaitKey::of(durable))
                }
            });
            if durable_now {
                return Ok(());
            }
            writer.tick()?;
        }
    }

    fn durable_now(&self) -> u64 {
        self.durable.as_ref().map_or(u64::MAX, |d| d.load_acquire())
    }

    fn settle(&mut self, durable: u64) {
        let now = Instant::now();
        while let Some(&(last, started)) = self.pending.front() {
            if last > durable {
                break;
            }
            self.recorder.record((now - started).as_nanos() as u64);
            self.pending.pop_front();
        }
    }
}

#[inline]
fn record(sequence: u64, payload: &[u8]) -> Record<'_> {
    Record {
        sequence,
        timestamp_ns: sequence,
        session_id: 0,
        correlation_id: sequence,
        kind: 1,
        version: 1,
        payload,
    }
}

/// Reads the journal back: exactly `expected` valid records.
fn check_count(dir: &Path, expected: u64) -> Result<(), Failure> {
    let mut reader = JournalReader::open(dir)?;
    let mut n = 0;
    while reader.next()?.is_some() {
        n += 1;
    }
    if n != expected {
        return Err(Failure(format!(
            "WRONG RESULT: appended {expected} records, read back {n}"
        )));
    }
    Ok(())
}

impl JournalReport {
    /// A table of every case.
    pub fn table(&self) -> String {
        let mut out = format!("keel bench journal\n{}", self.run_info.lines());
        let mut t = Table::new(&[
            "payload",
            "batch",
            "offered/s",
            "records",
            "msgs/s",
            "MB/s",
            "ack p50 us",
            "ack p99 us",
            "ack p99.9 us",
            "ack max us",
        ]);
        for c in &self.cases {
            let l = &c.ack_latency;
            t.row(vec![
                format!("{} B", c.payload_bytes),
                c.batch.to_string(),
                c.offered_per_sec
                    .map_or_else(|| "closed".into(), |r| r.to_string()),
                c.messages.to_string(),
                format!("{:.0}", c.msgs_per_sec),
                format!("{:.1}", c.record_mb_per_sec),
                micros(l.p50_ns),
                micros(l.p99_ns),
                micros(l.p999_ns),
                micros(l.max_ns),
            ]);
        }
        out.push_str(&t.render());
        out.push_str("MB/s counts whole records (header + payload + padding).\n");
        out.push_str(&self.disk.line());
        out
    }
}

impl JournalReport {
    /// `--out`: one `.hgrm` of durable-ack latency per (payload, batch) case, `report.json`
    /// (with `settings`) and the plot.
    pub fn save(
        &self,
        out: &OutArgs,
        settings: serde_json::Value,
    ) -> Result<Vec<PathBuf>, Failure> {
        let named: Vec<(String, String)> = self
            .cases
            .iter()
            .map(|c| {
                let legend = format!("{} B, batch {}", c.payload_bytes, c.batch);
                (format!("ack-p{}-b{}", c.payload_bytes, c.batch), legend)
            })
            .collect();
        let runs: Vec<SavedRun<'_>> = named
            .iter()
            .zip(&self.cases)
            .map(|((name, legend), c)| SavedRun {
                name,
                legend,
                recorder: &c.ack_recorder,
            })
            .collect();
        let title = format!(
            "keel bench journal: durable-ack latency (flush {}, wait {})",
            self.run_info.flush, self.run_info.wait
        );
        let saving = Saving {
            title: &title,
            runs: &runs,
            report: self,
            settings,
        };
        saved::save(out, &saving)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel::journal::{RealIo, SegmentIo, SegmentSync};
    use std::fs::File;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The real file system, except that every `sync_range` fails with `EIO` once asked to.
    #[derive(Debug, Default)]
    struct FaultyIo {
        fail_range_syncs: AtomicBool,
    }

    impl SegmentIo for FaultyIo {
        fn create_allocated(&self, path: &Path, len_bytes: u64) -> std::io::Result<File> {
            RealIo.create_allocated(path, len_bytes)
        }
        fn sync_range(
            &self,
            segment: &SegmentSync,
            offset: usize,
            len: usize,
        ) -> std::io::Result<()> {
            if self.fail_range_syncs.load(Ordering::Relaxed) {
                return Err(std::io::Error::from_raw_os_error(5)); // EIO
            }
            RealIo.sync_range(segment, offset, len)
        }
        fn sync_file(&self, file: &File) -> std::io::Result<()> {
            RealIo.sync_file(file)
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            RealIo.sync_dir(dir)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            RealIo.rename(from, to)
        }
        fn remove(&self, path: &Path) -> std::io::Result<()> {
            RealIo.remove(path)
        }
    }

    fn spec(dir: &Path, rate: Option<Schedule>) -> JournalSpec {
        JournalSpec {
            flush: FlushPolicy::Batch,
            wait: WaitStrategy::PARK,
            rate,
            payloads: vec![64],
            batches: vec![16],
            messages: 3_000,
            max_time: Duration::from_secs(60),
            segment_size_bytes: 1 << 18,
            segment_prep: SegmentPrep::Allocated,
            data_dir: Some(dir.to_path_buf()),
        }
    }

    #[test]
    fn a_failed_group_commit_ends_the_acknowledgement_wait_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = {
            let mut journal = JournalConfig::new(dir.path());
            journal.segment_size_bytes = 1 << 18;
            journal
        };
        let io = Arc::new(FaultyIo::default());
        let mut writer = JournalWriter::open_with_io(&cfg, io.clone()).unwrap();
        let mut acks = Acks::new(writer.durable_sequence(), WaitStrategy::PARK, 16);
        writer.set_durable_waker(Arc::clone(&acks.signal));
        io.fail_range_syncs.store(true, Ordering::Relaxed);
        writer.append(&record(1, &[7u8; 64])).unwrap();
        writer.end_batch().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(acks.wait_all(&mut writer, 1).map_err(|e| e.to_string()));
        });
        let waited = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the wait ends (it used to wait forever for a durable sequence)");
        let err = waited.expect_err("record 1 never became durable");
        assert!(
            err.contains("Input/output error") || err.contains("EIO"),
            "{err}"
        );
    }

    #[test]
    fn closed_loop_journals_every_record_across_rollovers_and_times_every_batch() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(&spec(dir.path(), None)).unwrap();
        let case = &report.cases[0];
        assert_eq!((case.messages, case.offered_per_sec), (3_000, None));
        assert_eq!(case.ack_latency.count, 3_000 / 16 + 1);
        assert!(report.table().contains("closed"));
    }

    #[test]
    fn open_loop_offers_the_rate_and_times_batches_from_their_intended_time() {
        let dir = tempfile::tempdir().unwrap();
        let zeroed = JournalSpec {
            segment_prep: SegmentPrep::Zeroed,
            ..spec(dir.path(), Some(Schedule::new(30_000)))
        };
        let report = run(&zeroed).unwrap();
        assert_eq!(report.run_info.segment_prep, "zeroed");
        assert!(report.table().contains("segments: zeroed"));
        let case = &report.cases[0];
        assert_eq!((case.messages, case.offered_per_sec), (3_000, Some(30_000)));
        assert!(case.ack_latency.count >= 3_000 / 16);
        // 3,000 records at 30,000/s take 100 ms at least, whatever the disk.
        assert!(case.msgs_per_sec <= 31_000.0, "{}", case.msgs_per_sec);
        assert!(report.table().contains("30000"));
    }
}
