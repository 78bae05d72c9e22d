//! `keel bench compare`: the same pre-encoded bookstore (or exchange) workload, closed loop,
//! through three pipelines of producer → journal → business logic (`--rate N`: open loop, see
//! [`super::compare_open`]):
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

use super::completion_clock::CompletionClock;
use super::peers::YieldNow;
use super::pipeline::{self, PipelineSpec};
use super::report::ratio::{self, Better};
use super::report::Table;
use super::rig::{BenchEngineArgs, DataDir, Failure, Feed};
use super::sysinfo::RunInfo;
use super::Idle;
use disruptor::wait_strategies::WaitStrategy as DisruptorWait;
use disruptor::{BusySpinWithSpinLoopHint, Producer, Sleep};
use keel::engine::{apply_message, Message, MessageHeader, Status};
use keel::journal::FlushPolicy;
use keel::ring::WaitStrategy;
use keel_services::App;
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
        self.set(first_sequence + k as u64, kind, version, payload);
    }

    /// Overwrites this event with message `sequence` (payload at most
    /// [`EVENT_PAYLOAD_BYTES`]).
    #[inline]
    pub(super) fn set(&mut self, sequence: u64, kind: u16, version: u16, payload: &[u8]) {
        self.sequence = sequence;
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

impl std::fmt::Display for Outcomes {
    /// `998 accepted, 2 rejected, 0 failed`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Outcomes {
            accepted,
            rejected,
            failed,
        } = self;
        write!(
            f,
            "{accepted} accepted, {rejected} rejected, {failed} failed"
        )
    }
}

/// What a peer's logic stage reports when it is dropped.
pub(super) struct Finished {
    /// Every message's outcome.
    pub(super) outcomes: Outcomes,
    /// When the last message was applied (or when the stage stopped).
    pub(super) end: Instant,
    /// The open-loop completion times, when timed.
    pub(super) clock: Option<CompletionClock>,
}

/// The business-logic stage of a peer: applies, tallies, timestamps completions (open loop),
/// and reports when dropped.
pub(super) struct Logic<A: App> {
    app: A,
    scratch: Vec<u8>,
    outcomes: Outcomes,
    end: Option<Instant>,
    last: u64,
    clock: Option<CompletionClock>,
    done: mpsc::Sender<Finished>,
}

impl<A: App> Logic<A> {
    fn new(last: u64, done: mpsc::Sender<Finished>) -> Self {
        Self::with_clock(last, done, None)
    }

    /// A stage that records each workload message's latency on `clock` as it is applied.
    pub(super) fn timed(last: u64, done: mpsc::Sender<Finished>, clock: CompletionClock) -> Self {
        Self::with_clock(last, done, Some(clock))
    }

    fn with_clock(last: u64, done: mpsc::Sender<Finished>, clock: Option<CompletionClock>) -> Self {
        Logic {
            app: A::default(),
            scratch: vec![0; 4096],
            outcomes: Outcomes::default(),
            end: None,
            last,
            clock,
            done,
        }
    }

    #[inline]
    pub(super) fn apply(&mut self, e: &Event) {
        let applied = apply_message(&mut self.app, &e.message(), &mut self.scratch);
        match applied.status {
            Status::Accepted => self.outcomes.accepted += 1,
            Status::Rejected => self.outcomes.rejected += 1,
            Status::Failed | Status::AlreadyAnswered => self.outcomes.failed += 1,
        }
        if let Some(clock) = &mut self.clock {
            clock.complete(e.sequence);
        }
        if e.sequence == self.last {
            self.end = Some(Instant::now());
        }
    }

    /// The tallies so far.
    pub(super) fn outcomes(&self) -> Outcomes {
        self.outcomes
    }
}

impl<A: App> Drop for Logic<A> {
    fn drop(&mut self) {
        let _ = self.done.send(Finished {
            outcomes: self.outcomes,
            end: self.end.unwrap_or_else(Instant::now),
            clock: self.clock.take(),
        });
    }
}

/// One contender's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Contender {
    /// Name.
    pub name: String,
    /// Workload messages per second, closed loop.
    pub msgs_per_sec: f64,
    /// keel's throughput ÷ this one's (higher is better for keel).
    pub keel_over_this: f64,
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

/// Calls `$run::<$a, _>(args…, strategy)` with the disruptor-crate wait strategy matching
/// keel's `$wait` (each strategy is its own type).
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
                "WRONG RESULT: {name}: {outcomes}, but the reference gives {reference}"
            )));
        }
        let rate = feed.len() as f64 / secs;
        contenders.push(Contender {
            name: name.into(),
            msgs_per_sec: rate,
            keel_over_this: ratio::over(contenders[0].msgs_per_sec, rate),
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

/// A logic stage whose report nobody reads (for references computed in place).
pub(super) fn untimed_logic<A: App>(last: u64) -> Logic<A> {
    let (tx, _rx) = mpsc::channel();
    Logic::new(last, tx)
}

fn reference<A: App>(feed: &Feed) -> Outcomes {
    let mut logic = untimed_logic::<A>(feed.len() as u64);
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
        snapshots: Default::default(),
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
        keel_over_this: 1.0,
        verified: format!("state hash = replay {:#x}", v.replay_state_hash),
    })
}

/// The disruptor-crate pipeline: a journal handler, then the logic handler.
pub(super) fn disruptor_pipeline<A: App, W: DisruptorWait + 'static>(
    mut journal: PlainJournal,
    mut logic: Logic<A>,
    wait: W,
) -> impl Producer<Event> {
    let journal_stage = move |e: &Event, _seq: i64, end_of_batch: bool| {
        journal.append(e);
        if end_of_batch {
            journal.end_batch().expect("plain journal write");
        }
    };
    let logic_stage = move |e: &Event, _seq: i64, _end: bool| logic.apply(e);
    disruptor::build_single_producer(1 << 16, Event::default, wait)
        .handle_events_with(journal_stage)
        .and_then()
        .handle_events_with(logic_stage)
        .build()
}

fn run_disruptor<A: App, W: DisruptorWait + 'static>(
    feed: &Arc<Feed>,
    path: &Path,
    sync: bool,
    wait: W,
) -> (Result<Outcomes, Failure>, f64) {
    let journal = match PlainJournal::create(path, sync) {
        Ok(j) => j,
        Err(e) => return (Err(e.into()), 1.0),
    };
    let (tx, rx) = mpsc::channel();
    let logic = Logic::<A>::new(feed.len() as u64, tx);
    let mut producer = disruptor_pipeline(journal, logic, wait);
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
        Ok(f) => (Ok(f.outcomes), f.end.duration_since(start).as_secs_f64()),
        Err(_) => (Err(Failure::new("disruptor logic stage lost")), 1.0),
    }
}

/// The crossbeam pipeline's two stage threads (journal, logic).
pub(super) struct CrossbeamStages {
    journaler: std::thread::JoinHandle<std::io::Result<()>>,
    logic: std::thread::JoinHandle<()>,
}

impl CrossbeamStages {
    /// Starts the journal and logic threads; events sent into the returned channel flow
    /// through both. Dropping the sender ends them.
    pub(super) fn start<A: App>(
        journal: PlainJournal,
        logic: Logic<A>,
    ) -> std::io::Result<(crossbeam_channel::Sender<Event>, Self)> {
        let (to_journal, journal_in) = crossbeam_channel::bounded::<Event>(1 << 16);
        let (to_logic, logic_in) = crossbeam_channel::bounded::<Event>(1 << 16);
        let journaler = std::thread::Builder::new()
            .name("crossbeam-journal".into())
            .spawn(move || journal_loop(journal, &journal_in, &to_logic))?;
        let logic = std::thread::Builder::new()
            .name("crossbeam-logic".into())
            .spawn(move || {
                let mut logic = logic;
                for e in logic_in {
                    logic.apply(&e);
                }
            })?;
        Ok((to_journal, CrossbeamStages { journaler, logic }))
    }

    /// Waits for both threads (after the sender was dropped).
    pub(super) fn join(self) -> Result<(), Failure> {
        self.journaler
            .join()
            .map_err(|_| Failure::new("crossbeam journaler panicked"))??;
        self.logic
            .join()
            .map_err(|_| Failure::new("crossbeam logic panicked"))
    }
}

/// The crossbeam journaler: drains what is queued (up to 4096), writes it as one batch, then
/// forwards it to the logic.
fn journal_loop(
    mut journal: PlainJournal,
    journal_in: &crossbeam_channel::Receiver<Event>,
    to_logic: &crossbeam_channel::Sender<Event>,
) -> std::io::Result<()> {
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
}

/// Sends `e` into a bounded channel, waiting per `idle` while it is full. False if closed.
#[inline]
pub(super) fn send_waiting(
    to: &crossbeam_channel::Sender<Event>,
    e: Event,
    idle: &mut Idle,
) -> bool {
    loop {
        match to.try_send(e) {
            Ok(()) => {
                idle.reset();
                return true;
            }
            Err(crossbeam_channel::TrySendError::Full(_)) => idle.step(),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
        }
    }
}

fn run_crossbeam<A: App>(
    feed: &Arc<Feed>,
    path: &Path,
    sync: bool,
    wait: WaitStrategy,
) -> Result<(Outcomes, f64), Failure> {
    let (tx, rx) = mpsc::channel();
    let logic = Logic::<A>::new(feed.len() as u64, tx);
    let (to_journal, stages) = CrossbeamStages::start(PlainJournal::create(path, sync)?, logic)?;
    let start = Instant::now();
    let mut idle = Idle::new(wait);
    let mut e = Event::default();
    for k in 0..feed.len() {
        e.fill(feed, k, 1);
        if !send_waiting(&to_journal, e, &mut idle) {
            break;
        }
    }
    drop(to_journal);
    stages.join()?;
    let f = rx
        .recv()
        .map_err(|_| Failure::new("crossbeam logic lost"))?;
    Ok((f.outcomes, f.end.duration_since(start).as_secs_f64()))
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
        let header = ratio::header("keel", "msgs/s", Better::Higher);
        let mut t = Table::new(&["pipeline", "msgs/s", &header, "verified"]);
        for c in &self.contenders {
            t.row(vec![
                c.name.clone(),
                format!("{:.0}", c.msgs_per_sec),
                ratio::cell(c.keel_over_this),
                c.verified.clone(),
            ]);
        }
        out.push_str(&t.render());
        out
    }
}
