//! `keel bench compare --rate N`: the three pipelines of [`super::compare`] under the same
//! fixed-rate, open-loop load, one after another.
//!
//! Each pipeline is fed on the same [`Schedule`] by [`drive_open_loop`] (the driver of
//! `keel bench pipeline`), and every message's latency is measured from its *intended* send
//! time (coordinated omission corrected) into a bounded [`LatencyRecorder`]:
//!
//! - keel: `keel bench pipeline` itself; the clock stops when the harness's response reader
//!   takes the response off the output ring (one hop after the logic: conservative for keel);
//! - the peers: the clock stops in their logic handler, right after the message is applied
//!   (`CompletionClock::complete`: a clock read and a histogram increment, no allocation).
//!
//! Producers encode each message when it is due (`A::workload(seed, i)`), as keel's does.
//! Every pipeline's outcome tallies must equal a reference (the workload applied directly);
//! keel's state must also equal a replay of its journal.

use super::compare::{
    disruptor_pipeline, send_waiting, untimed_logic, CrossbeamStages, Event, Logic, Outcomes,
    PlainJournal,
};
use super::completion_clock::CompletionClock;
use super::latency::{percentile_cells, LatencyRecorder, Percentiles, PERCENTILE_HEADERS};
use super::peers::YieldNow;
use super::pipeline::{self, PipelineSpec, CLOSED_LOOP_BATCH};
use super::report::ratio::{self, Better};
use super::report::saved::{self, OutArgs, SavedRun, Saving};
use super::report::Table;
use super::rig::{BenchEngineArgs, DataDir, Failure};
use super::schedule::{drive_open_loop, Schedule, Window};
use super::sysinfo::RunInfo;
use super::Idle;
use disruptor::wait_strategies::WaitStrategy as DisruptorWait;
use disruptor::{BusySpinWithSpinLoopHint, Producer, Sleep};
use keel::journal::FlushPolicy;
use keel::ring::WaitStrategy;
use keel_services::{App, Command};
use serde::Serialize;
use std::sync::mpsc;
use std::time::Duration;

/// One open-loop comparison.
#[derive(Debug, Clone)]
pub struct OpenLoopSpec {
    /// Offered rate, messages per second (at least 1).
    pub rate: u64,
    /// Measured duration.
    pub duration: Duration,
    /// Unrecorded lead-in at the same rate.
    pub warmup: Duration,
    /// Workload seed.
    pub seed: u64,
}

impl OpenLoopSpec {
    fn schedule(&self) -> Schedule {
        Schedule::new(self.rate)
    }

    fn window(&self) -> Window {
        Window::new(&self.schedule(), self.warmup, self.duration)
    }
}

/// What a peer's logic stage measured.
struct PeerRun {
    outcomes: Outcomes,
    recorder: LatencyRecorder,
    last_ns: u64,
}

impl PeerRun {
    fn from_logic(done: mpsc::Receiver<super::compare::Finished>) -> Result<Self, Failure> {
        let finished = done.recv().map_err(|_| Failure::new("logic stage lost"))?;
        let clock = finished
            .clock
            .ok_or_else(|| Failure::new("logic stage was not timed"))?;
        Ok(PeerRun {
            outcomes: finished.outcomes,
            recorder: clock.recorder,
            last_ns: clock.last_ns,
        })
    }
}

/// One pipeline's open-loop figures.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopContender {
    /// Name.
    pub name: String,
    /// Where the latency clock stops.
    pub completion: String,
    /// Offered rate, messages per second.
    pub offered_per_sec: u64,
    /// Messages completed per second over the recorded window.
    pub achieved_per_sec: f64,
    /// Messages recorded (warm-up excluded).
    pub recorded: u64,
    /// Latency from intended send time to completion, nanoseconds.
    pub latency: Percentiles,
    /// keel's figures ÷ this pipeline's.
    pub keel_over_this: KeelOverThis,
    /// How it was checked.
    pub verified: String,
    /// The whole latency distribution.
    #[serde(skip)]
    pub recorder: LatencyRecorder,
}

/// keel's figures ÷ this pipeline's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KeelOverThis {
    /// Median latency, keel ÷ this (lower is better for keel).
    pub p50: f64,
    /// p99 latency, keel ÷ this (lower is better for keel).
    pub p99: f64,
    /// p99.9 latency, keel ÷ this (lower is better for keel).
    pub p999: f64,
    /// Achieved throughput, keel ÷ this (higher is better for keel).
    pub achieved: f64,
}

impl KeelOverThis {
    /// keel against itself: every ratio 1.
    const SELF: KeelOverThis = KeelOverThis {
        p50: 1.0,
        p99: 1.0,
        p999: 1.0,
        achieved: 1.0,
    };

    fn of(c: &OpenLoopContender, keel: &OpenLoopContender) -> KeelOverThis {
        let over = |keel: u64, this: u64| ratio::over(keel as f64, this as f64);
        KeelOverThis {
            p50: over(keel.latency.p50_ns, c.latency.p50_ns),
            p99: over(keel.latency.p99_ns, c.latency.p99_ns),
            p999: over(keel.latency.p999_ns, c.latency.p999_ns),
            achieved: ratio::over(keel.achieved_per_sec, c.achieved_per_sec),
        }
    }
}

/// The open-loop comparison.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopCompareReport {
    /// Application.
    pub app: String,
    /// Always `open-loop`.
    pub mode: String,
    /// Offered rate, messages per second (the same for all three).
    pub offered_per_sec: u64,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Workload seed.
    pub seed: u64,
    /// What it ran on.
    pub run_info: RunInfo,
    /// keel, disruptor, crossbeam.
    pub contenders: Vec<OpenLoopContender>,
}

/// The expected tallies: of the whole run (setup included) and of the workload alone.
#[derive(Debug, Clone, Copy)]
struct Reference {
    all: Outcomes,
    workload: Outcomes,
}

fn reference<A: App>(seed: u64, total: u64) -> Reference {
    let setup = A::setup(seed);
    let mut logic = untimed_logic::<A>(0);
    let mut e = Event::default();
    for (k, c) in setup.iter().enumerate() {
        e.set(k as u64 + 1, c.kind, c.version, &c.payload);
        logic.apply(&e);
    }
    let after_setup = logic.outcomes();
    let first = setup.len() as u64 + 1;
    for i in 0..total {
        let c = A::workload(seed, i);
        e.set(first + i, c.kind, c.version, &c.payload);
        logic.apply(&e);
    }
    let all = logic.outcomes();
    let workload = Outcomes {
        accepted: all.accepted - after_setup.accepted,
        rejected: all.rejected - after_setup.rejected,
        failed: all.failed - after_setup.failed,
    };
    Reference { all, workload }
}

/// Runs the three pipelines of `A` on `spec`'s schedule, one after another.
pub fn run<A: App>(
    engine: &BenchEngineArgs,
    spec: &OpenLoopSpec,
) -> Result<OpenLoopCompareReport, Failure> {
    let dir = DataDir::new(engine.data_dir.as_deref(), "compare-open")?;
    let expected = reference::<A>(spec.seed, spec.window().total);
    let keel = run_keel::<A>(engine, spec, &expected)?;
    let sync = engine.flush != FlushPolicy::None;
    let journal = |name: &str| PlainJournal::create(&dir.path().join(name), sync);
    let disruptor = match engine.wait {
        WaitStrategy::BusySpin => {
            disruptor_open::<A, _>(spec, journal("d")?, engine, BusySpinWithSpinLoopHint)
        }
        WaitStrategy::Yield => disruptor_open::<A, _>(spec, journal("d")?, engine, YieldNow),
        _ => disruptor_open::<A, _>(spec, journal("d")?, engine, Sleep::new(Idle::SLEEP)),
    }?;
    let crossbeam = crossbeam_open::<A>(spec, journal("c")?, engine)?;
    let mut contenders = vec![keel];
    for (name, peer) in [
        ("disruptor crate + plain journal", disruptor),
        ("crossbeam channel + plain journal", crossbeam),
    ] {
        contenders.push(peer_contender(name, spec, peer, &expected, &contenders[0])?);
    }
    Ok(OpenLoopCompareReport {
        app: A::NAME.into(),
        mode: "open-loop".into(),
        offered_per_sec: spec.rate,
        duration_s: spec.duration.as_secs_f64(),
        warmup_s: spec.warmup.as_secs_f64(),
        seed: spec.seed,
        run_info: engine.run_info(dir.path()),
        contenders,
    })
}

fn run_keel<A: App>(
    engine: &BenchEngineArgs,
    spec: &OpenLoopSpec,
    expected: &Reference,
) -> Result<OpenLoopContender, Failure> {
    let run = pipeline::run::<A>(&PipelineSpec {
        snapshots: Default::default(),
        rate: spec.rate,
        duration: spec.duration,
        warmup: spec.warmup,
        messages: 0,
        seed: spec.seed,
        engine: engine.clone(),
        quiet: true,
    })?;
    let got = Outcomes {
        accepted: run.accepted,
        rejected: run.rejected,
        failed: run.failed,
    };
    if got != expected.workload {
        return Err(Failure(format!(
            "WRONG RESULT: keel: {got}, but the reference gives {}",
            expected.workload
        )));
    }
    let v = run.verified.expect("pipeline verifies");
    let keel = OpenLoopContender {
        name: "keel (ring + mmap journal + engine)".into(),
        completion: "response read off the output ring".into(),
        offered_per_sec: spec.rate,
        achieved_per_sec: run.achieved_per_sec,
        recorded: run.recorded,
        recorder: run.recorder,
        latency: run
            .latency
            .ok_or_else(|| Failure::new("keel's open-loop run recorded no latency"))?,
        keel_over_this: KeelOverThis::SELF,
        verified: format!(
            "outcomes = reference, state hash = replay {:#x}",
            v.replay_state_hash
        ),
    };
    Ok(keel)
}

fn peer_contender(
    name: &str,
    spec: &OpenLoopSpec,
    peer: PeerRun,
    expected: &Reference,
    keel: &OpenLoopContender,
) -> Result<OpenLoopContender, Failure> {
    if peer.outcomes != expected.all {
        return Err(Failure(format!(
            "WRONG RESULT: {name}: {}, but the reference gives {}",
            peer.outcomes, expected.all
        )));
    }
    let window = spec.window();
    let first_ns = spec.schedule().intended_ns(window.first_recorded);
    let span_s = peer.last_ns.saturating_sub(first_ns).max(1) as f64 / 1e9;
    let mut c = OpenLoopContender {
        name: name.into(),
        completion: "logic handler applied it".into(),
        offered_per_sec: spec.rate,
        achieved_per_sec: window.recorded() as f64 / span_s,
        recorded: peer.recorder.count(),
        latency: peer.recorder.summary(),
        recorder: peer.recorder,
        keel_over_this: KeelOverThis::SELF,
        verified: format!("outcomes = reference ({} accepted)", peer.outcomes.accepted),
    };
    c.keel_over_this = KeelOverThis::of(&c, keel);
    Ok(c)
}

/// The setup messages as events, sequences `1..=len`.
fn setup_events<A: App>(seed: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for (k, c) in A::setup(seed).iter().enumerate() {
        let mut e = Event::default();
        e.set(k as u64 + 1, c.kind, c.version, &c.payload);
        events.push(e);
    }
    events
}

/// Workload message `i` as the event with sequence `first_sequence + i`.
#[inline]
fn workload_event<A: App>(e: &mut Event, seed: u64, i: u64, first_sequence: u64) {
    let c: Command = A::workload(seed, i);
    e.set(first_sequence + i, c.kind, c.version, &c.payload);
}

fn disruptor_open<A: App, W: DisruptorWait + 'static>(
    spec: &OpenLoopSpec,
    journal: PlainJournal,
    engine: &BenchEngineArgs,
    strategy: W,
) -> Result<PeerRun, Failure> {
    let setup = setup_events::<A>(spec.seed);
    let first = setup.len() as u64 + 1;
    let total = spec.window().total;
    let (clock, handle) = CompletionClock::new(spec.schedule(), spec.window(), first);
    let (tx, rx) = mpsc::channel();
    let logic = Logic::<A>::timed(first - 1 + total, tx, clock);
    let mut producer = disruptor_pipeline(journal, logic, strategy);
    for e in &setup {
        producer.publish(|slot| *slot = *e);
    }
    let start = handle.start_after(first - 1)?;
    let (seed, mut idle) = (spec.seed, Idle::new(engine.wait));
    let sent = drive_open_loop(spec.schedule(), total, start, engine.spin(), |due| {
        let mut i = due.start;
        while i < due.end {
            let n = (due.end - i).min(CLOSED_LOOP_BATCH as u64);
            let fill = |events: &mut dyn Iterator<Item = &mut Event>| {
                for (e, j) in events.zip(i..) {
                    workload_event::<A>(e, seed, j, first);
                }
            };
            while producer
                .try_batch_publish(n as usize, |mut events| fill(&mut events))
                .is_err()
            {
                idle.step();
            }
            idle.reset();
            i += n;
        }
        Ok::<(), Failure>(())
    });
    drop(producer); // Joins both handler threads; the logic reports as it is dropped.
    sent?;
    PeerRun::from_logic(rx)
}

fn crossbeam_open<A: App>(
    spec: &OpenLoopSpec,
    journal: PlainJournal,
    engine: &BenchEngineArgs,
) -> Result<PeerRun, Failure> {
    let setup = setup_events::<A>(spec.seed);
    let first = setup.len() as u64 + 1;
    let total = spec.window().total;
    let (clock, handle) = CompletionClock::new(spec.schedule(), spec.window(), first);
    let (tx, rx) = mpsc::channel();
    let logic = Logic::<A>::timed(first - 1 + total, tx, clock);
    let (to_journal, stages) = CrossbeamStages::start(journal, logic)?;
    let mut idle = Idle::new(engine.wait);
    let lost = || Failure::new("crossbeam pipeline closed early");
    for e in &setup {
        if !send_waiting(&to_journal, *e, &mut idle) {
            return Err(lost());
        }
    }
    let start = handle.start_after(first - 1)?;
    let mut e = Event::default();
    let sent = drive_open_loop(spec.schedule(), total, start, engine.spin(), |due| {
        for i in due {
            workload_event::<A>(&mut e, spec.seed, i, first);
            if !send_waiting(&to_journal, e, &mut idle) {
                return Err(lost());
            }
        }
        Ok(())
    });
    drop(to_journal);
    stages.join()?;
    sent?;
    PeerRun::from_logic(rx)
}

impl OpenLoopCompareReport {
    /// The comparison table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "keel bench compare --app {} --rate {} (open loop, {} s after {} s warm-up; latency \
             from intended send time)\n{}",
            self.app,
            self.offered_per_sec,
            self.duration_s,
            self.warmup_s,
            self.run_info.lines()
        );
        let ratios = ratio::header("keel", "p50/p99/p99.9", Better::Lower);
        let mut t = Table::new(
            &[
                &["pipeline", "offered/s", "achieved/s"][..],
                &PERCENTILE_HEADERS,
                &[&ratios, "verified"],
            ]
            .concat(),
        );
        for c in &self.contenders {
            t.row(contender_row(c));
        }
        out.push_str(&t.render());
        out.push_str(
            "keel's clock stops when the response is read off its output ring; the peers' when \
             their logic handler has applied the message.\n",
        );
        out
    }
}

fn contender_row(c: &OpenLoopContender) -> Vec<String> {
    let v = &c.keel_over_this;
    let mut row = vec![
        c.name.clone(),
        c.offered_per_sec.to_string(),
        format!("{:.0}", c.achieved_per_sec),
    ];
    row.extend(percentile_cells(&c.latency));
    let cells = [v.p50, v.p99, v.p999].map(ratio::cell);
    row.push(cells.join(" / "));
    row.push(c.verified.clone());
    row
}

impl OpenLoopCompareReport {
    /// `--out`: one `.hgrm` per pipeline (keel and its peers), `report.json` and the plot.
    pub fn save(&self, out: &OutArgs) -> Result<Vec<std::path::PathBuf>, Failure> {
        const NAMES: [&str; 3] = ["keel", "disruptor", "crossbeam"];
        let runs: Vec<SavedRun<'_>> = self
            .contenders
            .iter()
            .zip(NAMES)
            .map(|(c, name)| SavedRun {
                name,
                legend: &c.name,
                recorder: &c.recorder,
            })
            .collect();
        let title = format!(
            "keel bench compare --app {} --rate {} (flush {}, wait {})",
            self.app, self.offered_per_sec, self.run_info.flush, self.run_info.wait
        );
        let settings = serde_json::json!({
            "app": self.app,
            "rate_per_sec": self.offered_per_sec,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "seed": self.seed,
        });
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
    use keel::Typed;
    use keel_services::bookstore::Bookstore;

    #[test]
    fn outcomes_read_as_words() {
        let o = Outcomes {
            accepted: 998,
            rejected: 2,
            failed: 0,
        };
        assert_eq!(o.to_string(), "998 accepted, 2 rejected, 0 failed");
    }

    #[test]
    fn bench_reference_splits_setup_from_workload() {
        let r = reference::<Typed<Bookstore>>(5, 200);
        let w = r.workload;
        assert_eq!(w.accepted + w.rejected + w.failed, 200);
        assert!(r.all.accepted >= w.accepted && r.all.rejected >= w.rejected);
        assert_eq!(r.all.failed, 0);
    }
}
