//! `keel bench compare`: the same pre-encoded bookstore (or exchange) workload, closed loop,
//! through three pipelines of producer → journal → business logic:
//!
//! - keel (ring, mmap journal with CRC32C-chained records, the engine);
//! - the `disruptor` crate (4.x): a journal handler then a logic handler, the journal a plain
//!   file (`write` per batch, `fdatasync` per batch when the flush policy is `batch`);
//! - crossbeam bounded channels with the same plain journal on a middle thread.
//!
//! Each peer tallies the outcome of every message; the tallies must equal a reference
//! (the workload applied directly, untimed), and keel's state must equal a replay of its
//! journal. The plain journal has no checksums, chaining or pre-allocation: it is the simple
//! thing, and that makes the ratios honest rather than flattering.

use super::peers::YieldNow;
use super::pipeline::{self, PipelineSpec};
use super::report::Table;
use super::rig::{BenchEngineArgs, DataDir, Failure, Feed};
use super::sysinfo::RunInfo;
use super::Idle;
use crate::apps::App;
use crate::engine::{apply_message, Message, MessageHeader, Status};
use crate::journal::FlushPolicy;
use crate::ring::WaitStrategy;
use disruptor::wait_strategies::WaitStrategy as DisruptorWait;
use disruptor::{BusySpinWithSpinLoopHint, Producer, Sleep};
use serde::Serialize;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest payload the peers' fixed-size events carry.
pub const EVENT_PAYLOAD_BYTES: usize = 64;
/// Messages per producer publish, for all three.
const BURST: usize = pipeline::CLOSED_LOOP_BATCH;

/// One message on the peers' rings and channels.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    sequence: u64,
    kind: u16,
    version: u16,
    len: u16,
    bytes: [u8; EVENT_PAYLOAD_BYTES],
}

impl Default for Event {
    fn default() -> Self {
        Event {
            sequence: 0,
            kind: 0,
            version: 0,
            len: 0,
            bytes: [0; EVENT_PAYLOAD_BYTES],
        }
    }
}

impl Event {
    fn fill(&mut self, feed: &Feed, k: usize, first_sequence: u64) {
        let (kind, version, payload) = feed.get(k);
        self.sequence = first_sequence + k as u64;
        self.kind = kind;
        self.version = version;
        self.len = payload.len() as u16;
        self.bytes[..payload.len()].copy_from_slice(payload);
    }

    fn message(&self) -> Message<'_> {
        let header = MessageHeader {
            sequence: self.sequence,
            timestamp_ns: self.sequence,
            session_id: 0,
            correlation_id: self.sequence,
            kind: self.kind,
            version: self.version,
        };
        Message {
            header,
            payload: &self.bytes[..self.len as usize],
        }
    }
}

/// The simple journal: length-prefixed records appended to one file, one `write` per batch,
/// and one `fdatasync` per batch when `sync`.
pub struct PlainJournal {
    file: File,
    buf: Vec<u8>,
    sync: bool,
}

impl PlainJournal {
    /// Creates `path`.
    pub fn create(path: &Path, sync: bool) -> std::io::Result<Self> {
        Ok(PlainJournal {
            file: File::create(path)?,
            buf: Vec::with_capacity(1 << 20),
            sync,
        })
    }

    /// Buffers one record: length, sequence, kind, version, payload.
    #[inline]
    pub fn append(&mut self, e: &Event) {
        self.buf.extend_from_slice(&u32::from(e.len).to_le_bytes());
        self.buf.extend_from_slice(&e.sequence.to_le_bytes());
        self.buf.extend_from_slice(&e.kind.to_le_bytes());
        self.buf.extend_from_slice(&e.version.to_le_bytes());
        self.buf.extend_from_slice(&e.bytes[..e.len as usize]);
    }

    /// Writes the batch (and syncs it when asked).
    pub fn end_batch(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Outcomes of every message, plus when the last was applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Accepted.
    pub accepted: u64,
    /// Rejected.
    pub rejected: u64,
    /// Failed (panicked).
    pub failed: u64,
}

/// The business-logic stage of a peer: applies, tallies, and reports when dropped.
struct Logic<A: App> {
    app: A,
    scratch: Vec<u8>,
    outcomes: Outcomes,
    end: Option<Instant>,
    last: u64,
    done: mpsc::Sender<(Outcomes, Instant)>,
}

impl<A: App> Logic<A> {
    fn new(last: u64, done: mpsc::Sender<(Outcomes, Instant)>) -> Self {
        Logic {
            app: A::default(),
            scratch: vec![0; 4096],
            outcomes: Outcomes::default(),
            end: None,
            last,
            done,
        }
    }

    #[inline]
    fn apply(&mut self, e: &Event) {
        let applied = apply_message(&mut self.app, &e.message(), &mut self.scratch);
        match applied.status {
            Status::Accepted => self.outcomes.accepted += 1,
            Status::Rejected => self.outcomes.rejected += 1,
            Status::Failed => self.outcomes.failed += 1,
        }
        if e.sequence == self.last {
            self.end = Some(Instant::now());
        }
    }
}

impl<A: App> Drop for Logic<A> {
    fn drop(&mut self) {
        let _ = self
            .done
            .send((self.outcomes, self.end.unwrap_or_else(Instant::now)));
    }
}

/// One contender's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Contender {
    /// Name.
    pub name: String,
    /// Workload messages per second, closed loop.
    pub msgs_per_sec: f64,
    /// Throughput relative to keel.
    pub ratio_to_keel: f64,
    /// How it was checked.
    pub verified: String,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// Application.
    pub app: String,
    /// Workload messages.
    pub messages: u64,
    /// What it ran on.
    pub run_info: RunInfo,
    /// keel, disruptor, crossbeam.
    pub contenders: Vec<Contender>,
}

macro_rules! with_disruptor_wait {
    ($wait:expr, $run:ident::<$a:ident>($($arg:expr),*)) => {
        match $wait {
            WaitStrategy::BusySpin => $run::<$a, _>($($arg,)* BusySpinWithSpinLoopHint),
            WaitStrategy::Yield => $run::<$a, _>($($arg,)* YieldNow),
            _ => $run::<$a, _>($($arg,)* Sleep::new(Idle::SLEEP)),
        }
    };
}

/// Runs the three pipelines on `messages` of `A`'s workload.
pub fn run<A: App>(
    engine: &BenchEngineArgs,
    messages: u64,
    seed: u64,
) -> Result<CompareReport, Failure> {
    let dir = DataDir::new(engine.data_dir.as_deref(), "compare")?;
    let feed = Arc::new(Feed::build_with_setup::<A>(seed, messages));
    let reference = reference::<A>(&feed);
    let keel = run_keel::<A>(engine, messages, seed)?;
    let sync = engine.flush != FlushPolicy::None;
    let path = dir.path().join("disruptor.journal");
    let (d_out, d_secs) = with_disruptor_wait!(engine.wait, run_disruptor::<A>(&feed, &path, sync));
    let (c_out, c_secs) = run_crossbeam::<A>(
        &feed,
        &dir.path().join("crossbeam.journal"),
        sync,
        engine.wait,
    )?;
    let mut contenders = vec![keel];
    for (name, outcomes, secs) in [
        ("disruptor crate + plain journal", d_out?, d_secs),
        ("crossbeam channel + plain journal", c_out, c_secs),
    ] {
        if outcomes != reference {
            return Err(Failure(format!(
                "WRONG RESULT: {name}: {outcomes:?} != reference {reference:?}"
            )));
        }
        let rate = feed.len() as f64 / secs;
        contenders.push(Contender {
            name: name.into(),
            msgs_per_sec: rate,
            ratio_to_keel: rate / contenders[0].msgs_per_sec,
            verified: format!("outcomes = reference ({} accepted)", outcomes.accepted),
        });
    }
    Ok(CompareReport {
        app: A::NAME.into(),
        messages,
        run_info: engine.run_info(dir.path()),
        contenders,
    })
}

fn reference<A: App>(feed: &Feed) -> Outcomes {
    let (tx, _rx) = mpsc::channel();
    let mut logic = Logic::<A>::new(feed.len() as u64, tx);
    let mut e = Event::default();
    for k in 0..feed.len() {
        e.fill(feed, k, 1);
        logic.apply(&e);
    }
    logic.outcomes
}

fn run_keel<A: App>(
    engine: &BenchEngineArgs,
    messages: u64,
    seed: u64,
) -> Result<Contender, Failure> {
    let spec = PipelineSpec {
        rate: 0,
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        messages,
        seed,
        engine: engine.clone(),
        quiet: true,
    };
    let run = pipeline::run::<A>(&spec)?;
    let v = run.verified.expect("pipeline verifies");
    Ok(Contender {
        name: "keel (ring + mmap journal + engine)".into(),
        msgs_per_sec: run.achieved_per_sec,
        ratio_to_keel: 1.0,
        verified: format!("state hash = replay {:#x}", v.replay_state_hash),
    })
}

fn run_disruptor<A: App, W: DisruptorWait + 'static>(
    feed: &Arc<Feed>,
    path: &Path,
    sync: bool,
    wait: W,
) -> (Result<Outcomes, Failure>, f64) {
    let mut journal = match PlainJournal::create(path, sync) {
        Ok(j) => j,
        Err(e) => return (Err(e.into()), 1.0),
    };
    let (tx, rx) = mpsc::channel();
    let mut logic = Logic::<A>::new(feed.len() as u64, tx);
    let journal_stage = move |e: &Event, _seq: i64, end_of_batch: bool| {
        journal.append(e);
        if end_of_batch {
            journal.end_batch().expect("plain journal write");
        }
    };
    let logic_stage = move |e: &Event, _seq: i64, _end: bool| logic.apply(e);
    let mut producer = disruptor::build_single_producer(1 << 16, Event::default, wait)
        .handle_events_with(journal_stage)
        .and_then()
        .handle_events_with(logic_stage)
        .build();
    let start = Instant::now();
    let mut k = 0;
    while k < feed.len() {
        let n = BURST.min(feed.len() - k);
        let mut j = k;
        producer.batch_publish(n, |events| {
            for e in events {
                e.fill(feed, j, 1);
                j += 1;
            }
        });
        k += n;
    }
    drop(producer);
    match rx.recv() {
        Ok((outcomes, end)) => (Ok(outcomes), end.duration_since(start).as_secs_f64()),
        Err(_) => (Err(Failure::new("disruptor logic stage lost")), 1.0),
    }
}

fn run_crossbeam<A: App>(
    feed: &Arc<Feed>,
    path: &Path,
    sync: bool,
    wait: WaitStrategy,
) -> Result<(Outcomes, f64), Failure> {
    let (to_journal, journal_in) = crossbeam_channel::bounded::<Event>(1 << 16);
    let (to_logic, logic_in) = crossbeam_channel::bounded::<Event>(1 << 16);
    let mut journal = PlainJournal::create(path, sync)?;
    let journaler = std::thread::spawn(move || -> std::io::Result<()> {
        let mut batch = Vec::with_capacity(4096);
        while let Ok(first) = journal_in.recv() {
            batch.push(first);
            while batch.len() < 4096 {
                match journal_in.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            batch.iter().for_each(|e| journal.append(e));
            journal.end_batch()?;
            for e in batch.drain(..) {
                let _ = to_logic.send(e);
            }
        }
        Ok(())
    });
    let (tx, rx) = mpsc::channel();
    let last = feed.len() as u64;
    let logic = std::thread::spawn(move || {
        let mut logic = Logic::<A>::new(last, tx);
        for e in logic_in {
            logic.apply(&e);
        }
    });
    let start = Instant::now();
    let mut idle = Idle::new(wait);
    let mut e = Event::default();
    for k in 0..feed.len() {
        e.fill(feed, k, 1);
        while let Err(crossbeam_channel::TrySendError::Full(_)) = to_journal.try_send(e) {
            idle.step();
        }
        idle.reset();
    }
    drop(to_journal);
    journaler
        .join()
        .map_err(|_| Failure::new("crossbeam journaler panicked"))??;
    logic
        .join()
        .map_err(|_| Failure::new("crossbeam logic panicked"))?;
    let (outcomes, end) = rx
        .recv()
        .map_err(|_| Failure::new("crossbeam logic lost"))?;
    Ok((outcomes, end.duration_since(start).as_secs_f64()))
}

impl CompareReport {
    /// The comparison table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "keel bench compare --app {} ({} messages, closed loop)\n{}",
            self.app,
            self.messages,
            self.run_info.lines()
        );
        let mut t = Table::new(&["pipeline", "msgs/s", "vs keel", "verified"]);
        for c in &self.contenders {
            t.row(vec![
                c.name.clone(),
                format!("{:.0}", c.msgs_per_sec),
                format!("{:.2}x", c.ratio_to_keel),
                c.verified.clone(),
            ]);
        }
        out.push_str(&t.render());
        out
    }
}
