//! `keel bench pipeline`: the whole in-process pipeline (producer → input ring → journal →
//! business logic → output ring → response reader) under an open-loop load, or closed loop at
//! full speed (`--rate 0`). Every run ends by replaying the journal it wrote into a fresh
//! processor and comparing state hashes. Under a durable flush policy the disk is measured
//! on its own first ([`disk_baseline`]), so the runs' latencies can be read against it.

use super::affinity::pin_current_thread;
use super::disk::DiskBaseline;
use super::latency::LatencyRecorder;
use super::output::{progress, LatencyRun};
use super::rig::{verify, BenchEngineArgs, DataDir, Failure, Feed};
use super::schedule::{corrected_latency_ns, drive_open_loop, since_ns, Schedule, Window};
use keel::engine::{Engine, ResponseReceiver, Status, Submission, Submitter};
use keel::ring::Poll;
use keel_services::App;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Offered rate per second; 0 = closed loop (as fast as possible, `submit_batch`).
    pub rate: u64,
    /// Measured duration (open loop).
    pub duration: Duration,
    /// Unrecorded lead-in at the same rate (open loop).
    pub warmup: Duration,
    /// Messages in a closed-loop run.
    pub messages: u64,
    /// Workload seed.
    pub seed: u64,
    /// Engine flags.
    pub engine: BenchEngineArgs,
    /// Hide the progress bar.
    pub quiet: bool,
    /// Snapshots during the run (default: none).
    pub snapshots: PipelineSnapshots,
}

/// Who takes the snapshots of a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SnapshotMode {
    /// No snapshots.
    #[default]
    None,
    /// The business-logic thread captures each one: a pause of the live path.
    Live,
    /// A second processor following the journal on its own thread takes them.
    Replica,
}

impl SnapshotMode {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            SnapshotMode::None => "none",
            SnapshotMode::Live => "live",
            SnapshotMode::Replica => "replica",
        }
    }
}

/// Snapshots during a pipeline run: who takes them, and every how many messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineSnapshots {
    /// Who.
    pub mode: SnapshotMode,
    /// Every this many messages (0: none, whatever the mode).
    pub interval_messages: u64,
}

impl PipelineSnapshots {
    /// Whether the run takes any.
    pub fn any(&self) -> bool {
        self.mode != SnapshotMode::None && self.interval_messages != 0
    }

    /// Sets `config`'s snapshot interval (no snapshot at shutdown: off the clock anyway).
    fn configure(&self, config: &mut keel::engine::Config) {
        config.snapshot_interval_messages = if self.any() {
            self.interval_messages
        } else {
            0
        };
        config.snapshot_on_shutdown = false;
    }

    /// Starts the engine for app `A`, with a snapshot replica in `Replica` mode.
    fn start<A: App>(&self, config: keel::engine::Config) -> Result<Engine<A>, Failure> {
        Ok(match self.mode {
            SnapshotMode::Replica if self.any() => {
                Engine::start_with_replica(config, A::default(), A::default)?
            }
            _ => Engine::start(config, A::default())?,
        })
    }

    /// One line on stderr: how many snapshots, and what they cost whom.
    fn report(&self, m: &keel::engine::MetricsSnapshot) {
        if !self.any() {
            return;
        }
        eprintln!(
            "snapshots ({} every {}): {} written, {} skipped, {} failed, {} MB each; \
             business-logic pause max {:.1} ms; replica capture {:.1} ms",
            self.mode.name(),
            self.interval_messages,
            m.snapshots_written,
            m.snapshots_skipped,
            m.snapshots_failed,
            m.snapshot_state_bytes / 1_000_000,
            m.snapshot_capture_max_ns as f64 / 1e6,
            m.replica_capture_ns as f64 / 1e6,
        );
    }
}

/// Counts of response statuses.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    accepted: u64,
    rejected: u64,
    failed: u64,
    last_ns: u64,
}

impl Tally {
    fn count(&mut self, status: Status) {
        match status {
            Status::Accepted => self.accepted += 1,
            Status::Rejected => self.rejected += 1,
            Status::Failed | Status::AlreadyAnswered => self.failed += 1,
        }
    }
}

/// The disk under the runs' journals, measured on its own before them, where they put their
/// journals (`--data-dir`, or a temporary directory beside theirs); `None` under
/// `--flush none`, whose acknowledgements never wait for the disk.
pub fn disk_baseline(engine: &BenchEngineArgs) -> Result<Option<DiskBaseline>, Failure> {
    if engine.flush == keel::journal::FlushPolicy::None {
        return Ok(None);
    }
    let dir = DataDir::new(engine.data_dir.as_deref(), "pipeline-disk")?;
    DiskBaseline::measure(dir.path())
        .map(Some)
        .map_err(|e| Failure(format!("disk baseline in {}: {e}", dir.path().display())))
}

/// Runs one pipeline measurement of app `A` and verifies the state against a replay.
pub fn run<A: App>(spec: &PipelineSpec) -> Result<LatencyRun, Failure> {
    let dir = DataDir::new(spec.engine.data_dir.as_deref(), "pipeline")?;
    let mut config = spec.engine.config(dir.path());
    // The state's reserved memory is made resident before the first message (off the
    // clock), as a deployment that wants no page faults on the message path would.
    config.prefault_state = true;
    spec.snapshots.configure(&mut config);
    if spec.rate == 0 {
        return closed_loop::<A>(spec, config);
    }
    let mut engine = spec.snapshots.start::<A>(config.clone())?;
    let metrics = engine.metrics();
    let mut submitter = engine.take_submitter().expect("fresh engine");
    let mut receiver = engine.take_responses().expect("fresh engine");
    let last = submit_setup::<A>(&mut submitter, spec.seed)?;
    while receiver.delivered_sequence() < last {
        let poll = receiver.poll(Some(Instant::now() + Duration::from_millis(1)), |_| {});
        if matches!(poll, Poll::Closed | Poll::Halted) {
            return Err(Failure::new("engine stopped during setup"));
        }
    }
    let (mut run, tally) = open_loop::<A>(spec, submitter, receiver)?;
    let state = engine.shutdown()?;
    spec.snapshots.report(&metrics.read());
    run.verified = Some(verify::<A>(&config, state.state_hash())?);
    check_failed(&tally)?;
    Ok(run)
}

fn check_failed(tally: &Tally) -> Result<(), Failure> {
    if tally.failed > 0 {
        return Err(Failure(format!(
            "WRONG RESULT: {} messages failed (processor panicked)",
            tally.failed
        )));
    }
    Ok(())
}

/// Submits `A::setup(seed)`; returns the last sequence published.
pub fn submit_setup<A: App>(submitter: &mut Submitter, seed: u64) -> Result<u64, Failure> {
    for (k, c) in A::setup(seed).iter().enumerate() {
        let to = Submission {
            kind: c.kind,
            version: c.version,
            session_id: 0,
            correlation_id: u64::MAX - k as u64,
        };
        submitter.submit(to, &c.payload)?;
    }
    Ok(submitter.published())
}

/// The open-loop run: a producer thread on the schedule, a receiver thread recording
/// latency from each message's intended send time, this thread drawing progress.
fn open_loop<A: App>(
    spec: &PipelineSpec,
    submitter: Submitter,
    receiver: ResponseReceiver,
) -> Result<(LatencyRun, Tally), Failure> {
    let schedule = Schedule::new(spec.rate);
    let window = Window::new(&schedule, spec.warmup, spec.duration);
    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (seed, spin, pin) = (spec.seed, spec.engine.spin(), spec.engine.pin_producer);
    let producer = std::thread::Builder::new()
        .name("bench-producer".into())
        .spawn(move || {
            pin_current_thread(pin, "producer");
            produce_open::<A>(submitter, schedule, window.total, seed, start, spin)
        })?;
    let (pin, counter) = (spec.engine.pin_receiver, received.clone());
    let consumer = std::thread::Builder::new()
        .name("bench-receiver".into())
        .spawn(move || {
            pin_current_thread(pin, "receiver");
            receive(receiver, schedule, window, start, &counter)
        })?;
    watch(&received, window.total, spec.quiet, &consumer);
    producer
        .join()
        .map_err(|_| Failure::new("producer thread panicked"))??;
    let (recorder, tally) = consumer
        .join()
        .map_err(|_| Failure::new("receiver thread panicked"))??;
    let first_ns = schedule.intended_ns(window.first_recorded);
    let span_s = tally.last_ns.saturating_sub(first_ns).max(1) as f64 / 1e9;
    let run = LatencyRun {
        label: format!("rate-{}", spec.rate),
        offered_per_sec: spec.rate,
        achieved_per_sec: window.recorded() as f64 / span_s,
        recorded: recorder.count(),
        latency: recorder.measured(),
        accepted: tally.accepted,
        rejected: tally.rejected,
        failed: tally.failed,
        verified: None,
        recorder,
    };
    Ok((run, tally))
}

/// Draws the progress bar until `thread` finishes.
fn watch<T>(counter: &AtomicU64, total: u64, quiet: bool, thread: &std::thread::JoinHandle<T>) {
    let bar = progress(total, quiet, "messages answered");
    while !thread.is_finished() {
        bar.set_position(counter.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

/// Sends message `i` at `start + intended(i)` ([`drive_open_loop`]).
fn produce_open<A: App>(
    mut submitter: Submitter,
    schedule: Schedule,
    total: u64,
    seed: u64,
    start: Instant,
    spin: bool,
) -> Result<(), Failure> {
    drive_open_loop(schedule, total, start, spin, |due| {
        for i in due {
            let c = A::workload(seed, i);
            let to = Submission {
                kind: c.kind,
                version: c.version,
                session_id: 0,
                correlation_id: i,
            };
            submitter.submit(to, &c.payload)?;
        }
        Ok(())
    })
}

/// Reads every response, in order, recording `now - intended(i)` for recorded messages.
fn receive(
    mut receiver: ResponseReceiver,
    schedule: Schedule,
    window: Window,
    start: Instant,
    counter: &AtomicU64,
) -> Result<(LatencyRecorder, Tally), Failure> {
    let mut recorder = LatencyRecorder::new();
    let mut tally = Tally::default();
    let mut next = 0u64;
    let mut wrong = None;
    while next < window.total {
        let deadline = Some(Instant::now() + Duration::from_millis(10));
        let poll = receiver.poll(deadline, |r| {
            let now = since_ns(start);
            if r.header.correlation_id != next && wrong.is_none() {
                wrong = Some((next, r.header.correlation_id));
            }
            if window.records(next) {
                recorder.record(corrected_latency_ns(schedule.intended_ns(next), now));
            }
            tally.count(r.header.status);
            tally.last_ns = now;
            next += 1;
        });
        counter.store(next, Ordering::Relaxed);
        if let Some((want, got)) = wrong {
            return Err(Failure(format!(
                "WRONG RESULT: response for message {got} arrived where {want} was expected"
            )));
        }
        if matches!(poll, Poll::Closed | Poll::Halted) && next < window.total {
            return Err(Failure(format!(
                "engine stopped after {next} of {} responses",
                window.total
            )));
        }
    }
    Ok((recorder, tally))
}

/// Messages per `submit_batch` in closed-loop mode.
pub const CLOSED_LOOP_BATCH: usize = 256;

/// Closed loop: submit a pre-encoded workload as fast as the ring accepts it (responses
/// discarded), time until the business logic has applied the last message.
fn closed_loop<A: App>(
    spec: &PipelineSpec,
    mut config: keel::engine::Config,
) -> Result<LatencyRun, Failure> {
    config.discard_responses = true;
    let feed = Arc::new(Feed::build::<A>(spec.seed, 0, spec.messages));
    let mut engine = spec.snapshots.start::<A>(config.clone())?;
    let metrics = engine.metrics();
    let mut submitter = engine.take_submitter().expect("fresh engine");
    let setup_last = submit_setup::<A>(&mut submitter, spec.seed)?;
    while engine.applied_sequence() < setup_last {
        std::thread::yield_now();
    }
    let last = setup_last + spec.messages;
    let pin = spec.engine.pin_producer;
    let start = Instant::now();
    let producer = {
        let feed = feed.clone();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || {
                pin_current_thread(pin, "producer");
                produce_closed(submitter, &feed)?;
                Ok::<_, Failure>(applied_through(&metrics, last))
            })?
    };
    let bar = progress(spec.messages, spec.quiet, "messages applied");
    while !producer.is_finished() {
        bar.set_position(engine.applied_sequence() - setup_last);
        std::thread::sleep(PROGRESS_INTERVAL);
    }
    let end: Instant = producer
        .join()
        .map_err(|_| Failure::new("producer thread panicked"))??;
    let elapsed = end - start;
    bar.finish_and_clear();
    let state = engine.shutdown()?;
    spec.snapshots.report(&metrics.read());
    let verified = verify::<A>(&config, state.state_hash())?;
    Ok(LatencyRun {
        label: "closed-loop".into(),
        offered_per_sec: 0,
        achieved_per_sec: spec.messages as f64 / elapsed.as_secs_f64(),
        recorded: spec.messages,
        latency: None,
        accepted: 0,
        rejected: 0,
        failed: 0,
        verified: Some(verified),
        recorder: LatencyRecorder::new(),
    })
}

/// How often the harness's own thread looks at the progress of a closed loop. Its wake-ups
/// take a core from the engine on a small machine (every 100 µs cost 3,600 context switches
/// a second), so the run's end is timed by the producer thread instead.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(10);

/// How often the producer, done submitting, looks whether the last message has been applied:
/// the run's end is known to within this.
const END_POLL_INTERVAL: Duration = Duration::from_micros(50);

/// Waits until the business logic has applied `last` (the ring drains in a few ms at most) and
/// returns when it saw that.
fn applied_through(metrics: &keel::engine::Metrics, last: u64) -> Instant {
    while metrics.applied_sequence() < last {
        std::thread::sleep(END_POLL_INTERVAL);
    }
    Instant::now()
}

fn produce_closed(mut submitter: Submitter, feed: &Feed) -> Result<(), Failure> {
    let mut batch: Vec<(Submission, &[u8])> = Vec::with_capacity(CLOSED_LOOP_BATCH);
    let mut k = 0;
    while k < feed.len() {
        batch.clear();
        let end = (k + CLOSED_LOOP_BATCH).min(feed.len());
        for j in k..end {
            let (kind, version, payload) = feed.get(j);
            let to = Submission {
                kind,
                version,
                session_id: 0,
                correlation_id: j as u64,
            };
            batch.push((to, payload));
        }
        submitter.submit_batch(&batch)?;
        k = end;
    }
    Ok(())
}
