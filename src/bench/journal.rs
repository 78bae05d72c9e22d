//! `keel bench journal`: append throughput of [`JournalWriter`] on its own (msgs/s and MB/s)
//! for several payload sizes and batch sizes, and the durable-ack latency of each batch (from
//! the append of its first record until it is durable) under the flush policy in force.
//!
//! Under `batch` the writer commits on its syncer thread while the next batch is appended
//! (group commit); a batch is acknowledged when the durable sequence reaches it. As in the
//! engine, where the ring bounds it, at most [`IN_FLIGHT_RECORDS`] records may be appended
//! ahead of the durable sequence; the clock stops when the last record is durable.

use super::hist::Percentiles;
use super::latency::{micros, LatencyRecorder};
use super::report::Table;
use super::rig::{DataDir, Failure};
use super::sysinfo::RunInfo;
use crate::journal::{
    record_size_bytes, FlushPolicy, JournalConfig, JournalReader, JournalWriter, Record,
};
use crate::ring::Sequence;
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
    /// Where the journals go (None: a temporary directory).
    pub data_dir: Option<PathBuf>,
}

/// One (payload, batch) case.
#[derive(Debug, Clone, Serialize)]
pub struct JournalCase {
    /// Payload bytes per record.
    pub payload_bytes: usize,
    /// Records per batch.
    pub batch: usize,
    /// Records appended.
    pub messages: u64,
    /// Records per second.
    pub msgs_per_sec: f64,
    /// Megabytes (10^6) of records (header + payload + padding) per second.
    pub record_mb_per_sec: f64,
    /// Megabytes of payload per second.
    pub payload_mb_per_sec: f64,
    /// Time from a batch's first append until it is durable, nanoseconds.
    pub ack_latency: Percentiles,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct JournalReport {
    /// What it ran on (flush policy included).
    pub run_info: RunInfo,
    /// One per case.
    pub cases: Vec<JournalCase>,
}

/// Runs every case; each reads its journal back and checks the record count.
pub fn run(spec: &JournalSpec) -> Result<JournalReport, Failure> {
    let dir = DataDir::new(spec.data_dir.as_deref(), "journal")?;
    let mut cases = Vec::new();
    for &payload in &spec.payloads {
        for &batch in &spec.batches {
            let case_dir = dir.sub(&format!("p{payload}-b{batch}"))?;
            let case = run_case(spec, &case_dir, payload, batch.max(1));
            let _ = std::fs::remove_dir_all(&case_dir);
            cases.push(case?);
        }
    }
    let run_info = RunInfo::detect(&[], "-", &spec.flush.to_string(), dir.path());
    Ok(JournalReport { run_info, cases })
}

fn run_case(
    spec: &JournalSpec,
    dir: &Path,
    payload_bytes: usize,
    batch: usize,
) -> Result<JournalCase, Failure> {
    let cfg = JournalConfig {
        dir: dir.to_path_buf(),
        segment_size_bytes: spec.segment_size_bytes,
        flush: spec.flush,
        max_payload_bytes: payload_bytes.max(64) as u32,
    };
    let mut writer = JournalWriter::open(&cfg)?;
    let payload = vec![0xA5u8; payload_bytes];
    let mut acks = Acks::new(writer.durable_sequence(), batch);
    let mut sequence = 0u64;
    let start = Instant::now();
    while sequence < spec.messages && start.elapsed() < spec.max_time {
        let n = (batch as u64).min(spec.messages - sequence);
        let t0 = Instant::now();
        for _ in 0..n {
            sequence += 1;
            writer.append(&record(sequence, &payload))?;
        }
        writer.end_batch()?;
        acks.ended(sequence, t0);
    }
    acks.wait_all(sequence);
    let elapsed = start.elapsed().as_secs_f64();
    writer.sync()?;
    let recorder = acks.recorder;
    drop(writer);
    check_count(dir, sequence)?;
    let record_bytes = record_size_bytes(payload_bytes) as f64;
    let rate = sequence as f64 / elapsed;
    Ok(JournalCase {
        payload_bytes,
        batch,
        messages: sequence,
        msgs_per_sec: rate,
        record_mb_per_sec: rate * record_bytes / 1e6,
        payload_mb_per_sec: rate * payload_bytes as f64 / 1e6,
        ack_latency: recorder.summary(),
    })
}

/// Batches waiting for their durable acknowledgement.
struct Acks {
    durable: Option<Arc<Sequence>>,
    /// (last sequence of the batch, when its first record was appended), oldest first.
    pending: VecDeque<(u64, Instant)>,
    in_flight_batches: usize,
    recorder: LatencyRecorder,
}

impl Acks {
    fn new(durable: Option<Arc<Sequence>>, batch: usize) -> Self {
        let in_flight_batches = (IN_FLIGHT_RECORDS as usize / batch.max(1)).max(1);
        Acks {
            durable,
            pending: VecDeque::with_capacity(in_flight_batches + 1),
            in_flight_batches,
            recorder: LatencyRecorder::new(),
        }
    }

    /// A batch ending at `last`, begun at `started`, was handed to the writer.
    fn ended(&mut self, last: u64, started: Instant) {
        if self.durable.is_none() {
            // Durable when `end_batch` returned.
            self.recorder.record(started.elapsed().as_nanos() as u64);
            return;
        }
        self.pending.push_back((last, started));
        self.settle(self.durable_now());
        while self.pending.len() > self.in_flight_batches {
            std::thread::yield_now();
            self.settle(self.durable_now());
        }
    }

    /// Waits until `last` is durable, acknowledging every batch.
    fn wait_all(&mut self, last: u64) {
        if self.durable.is_none() {
            return;
        }
        while self.durable_now() < last {
            std::thread::yield_now();
        }
        self.settle(last);
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
        out
    }
}
