//! `keel bench ring`: one producer → one consumer handoff of `u64` values, batching on.
//!
//! The producer publishes `0, 1, …, messages - 1` in bursts of `burst` (one claim and one
//! Release store per burst); the consumer takes every available event as one batch and sums the
//! values. Like LMAX's `OneToOneSequencedThroughputTest`, the run fails unless the consumer saw
//! exactly `messages` values with the expected sum. The same workload runs through every
//! [`Contender`], interleaved repetition by repetition so that machine noise hits all of them
//! alike, and the report gives each one's median.

use super::affinity::CoreSet;
use super::report::ratio::{self, Better};
use super::report::{median, millions, Hardware, Table};
use super::{peers, BenchError, Idle, PinRequest, Pins};
use disruptor::{BusySpinWithSpinLoopHint, Producer as _, Sleep};
use keel::ring::{Consumer, Poll, RingBuilder, WaitStrategy};
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// Settings of `keel bench ring`.
#[derive(Debug, Clone)]
pub struct RingBench {
    /// Messages per repetition.
    pub messages: u64,
    /// Ring (and queue) capacity; a power of two.
    pub ring_size: usize,
    /// Messages claimed and published together by the producer.
    pub burst: usize,
    /// How waiting threads wait.
    pub wait: WaitStrategy,
    /// Repetitions; the report gives the median.
    pub repeat: usize,
    /// Requested pinning.
    pub pins: PinRequest,
    /// Who runs, in this order each repetition; ratios are against the first.
    pub contenders: Vec<Contender>,
    /// Producer threads; above 1, [`run_multi`] measures the multi-producer rings.
    pub producers: usize,
}

impl Default for RingBench {
    /// The canonical run: 100 M messages, ring of 65,536, bursts of 100, busy-spin, 5 runs,
    /// every contender.
    fn default() -> Self {
        RingBench {
            messages: 100_000_000,
            ring_size: 65_536,
            burst: 100,
            wait: WaitStrategy::BusySpin,
            repeat: 5,
            pins: PinRequest::default(),
            contenders: Contender::ALL.to_vec(),
            producers: 1,
        }
    }
}

/// One repetition's workload, identical for every contender.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Messages to hand over.
    pub messages: u64,
    /// Ring (and queue) capacity.
    pub ring_size: usize,
    /// Producer burst size (contenders without batch publication send one at a time).
    pub burst: usize,
    /// How waiting threads wait.
    pub wait: WaitStrategy,
    /// Where the producer and consumer threads run.
    pub pins: Pins,
}

impl Workload {
    /// The (wrapping) sum of `0..messages`, which the consumer must reproduce.
    pub fn expected_sum(&self) -> u64 {
        let n = u128::from(self.messages);
        // Truncation is the point: the consumer sums with wrapping adds too.
        (n * n.saturating_sub(1) / 2) as u64
    }

    /// The elapsed time of `measured`, or an error if its result is wrong.
    pub fn check(&self, name: &'static str, measured: &Measured) -> Result<Duration, BenchError> {
        if measured.count != self.messages || measured.sum != self.expected_sum() {
            return Err(BenchError::WrongResult {
                name,
                got_sum: measured.sum,
                got_count: measured.count,
                expected_sum: self.expected_sum(),
                expected_count: self.messages,
            });
        }
        Ok(measured.elapsed)
    }
}

/// What one repetition produced: time from the producer's start to the consumer's last
/// message, and the consumer's tally.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Producer start → consumer saw the last message.
    pub elapsed: Duration,
    /// Wrapping sum of the values consumed.
    pub sum: u64,
    /// Number of values consumed.
    pub count: u64,
}

/// The consumer side's result: when it finished, and what it saw.
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    /// When the consumer saw its last message.
    pub end: Instant,
    /// Wrapping sum of the values consumed.
    pub sum: u64,
    /// Number of values consumed.
    pub count: u64,
}

/// An implementation measured by `keel bench ring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// keel's ring: `publish_batch` bursts, `process_batch` whole batches.
    Keel,
    /// The `disruptor` crate 4.x: `batch_publish` bursts, managed batch consumer thread.
    Disruptor,
    /// `crossbeam_queue::ArrayQueue`: one push / pop at a time.
    ArrayQueue,
    /// `crossbeam_channel::bounded`: one send / recv at a time, its own blocking.
    Channel,
}

impl Contender {
    /// Every contender, keel first.
    pub const ALL: [Contender; 4] = [
        Contender::Keel,
        Contender::Disruptor,
        Contender::ArrayQueue,
        Contender::Channel,
    ];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Keel => "keel",
            Contender::Disruptor => "disruptor-crate",
            Contender::ArrayQueue => "crossbeam-arrayqueue",
            Contender::Channel => "crossbeam-channel",
        }
    }

    /// How this contender waits under `wait`, for reports.
    pub fn waits(self, wait: WaitStrategy) -> String {
        match self {
            Contender::Keel => format!("keel {wait}"),
            Contender::Disruptor => peers::disruptor_wait_name(wait).to_string(),
            Contender::ArrayQueue => Idle::describe(wait).to_string(),
            Contender::Channel => "built-in (spin, then block)".to_string(),
        }
    }

    /// The contender called `name` (as in reports; `disruptor` for short).
    pub fn from_name(name: &str) -> Option<Contender> {
        match name {
            "disruptor" => Some(Contender::Disruptor),
            _ => Contender::ALL.into_iter().find(|c| c.name() == name),
        }
    }

    /// Runs one repetition and checks its result.
    pub fn run(self, workload: &Workload) -> Result<Duration, BenchError> {
        let measured = match self {
            Contender::Keel => keel_once(workload)?,
            Contender::Disruptor => peers::disruptor_throughput(workload)?,
            Contender::ArrayQueue => peers::array_queue_throughput(workload)?,
            Contender::Channel => peers::channel_throughput(workload)?,
        };
        workload.check(self.name(), &measured)
    }
}

/// Runs the producer and consumer closures on two threads pinned per `pins`, starting them
/// together, and measures from the producer's start to the consumer's end.
pub fn run_pair<P, C>(
    name: &'static str,
    pins: Pins,
    produce: P,
    consume: C,
) -> Result<Measured, BenchError>
where
    P: FnOnce() + Send,
    C: FnOnce() -> Tally + Send,
{
    let ready = Barrier::new(2);
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            pins.pin_consumer();
            ready.wait();
            consume()
        });
        let producer = s.spawn(|| {
            pins.pin_producer();
            ready.wait();
            let start = Instant::now();
            produce();
            start
        });
        let start = producer.join().map_err(|_| BenchError::Panicked {
            name,
            thread: "producer",
        });
        let tally = consumer.join().map_err(|_| BenchError::Panicked {
            name,
            thread: "consumer",
        });
        let (start, tally) = (start?, tally?);
        let elapsed = tally.end.saturating_duration_since(start);
        Ok(Measured {
            elapsed,
            sum: tally.sum,
            count: tally.count,
        })
    })
}

/// One repetition through keel's ring.
fn keel_once(w: &Workload) -> Result<Measured, BenchError> {
    let mut builder = RingBuilder::new(w.ring_size).wait_strategy(w.wait);
    builder.add_consumer(&[]);
    let (mut producer, mut consumers) = builder.build(|| 0u64);
    let mut consumer = consumers.pop().expect("one consumer was added");
    let (messages, burst) = (w.messages, w.burst as u64);
    let produce = move || {
        let mut next = 0;
        while next < messages {
            let n = burst.min(messages - next);
            let mut value = next;
            let fill = |slot: &mut u64, _| {
                *slot = value;
                value += 1;
            };
            producer
                .publish_batch(n as usize, fill)
                .expect("nobody halts the bench ring");
            next += n;
        }
    };
    let consume = move || consume_all(&mut consumer, messages);
    run_pair(Contender::Keel.name(), w.pins, produce, consume)
}

/// One contender's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ContenderResult {
    /// Contender name.
    pub name: &'static str,
    /// How it waits.
    pub waits: String,
    /// Median over the repetitions.
    pub throughput_msgs_per_s: f64,
    /// The first contender's throughput (normally keel's) ÷ this one's: higher is better for
    /// keel (above 1, keel moved more).
    pub keel_over_this: f64,
    /// Every repetition's throughput, in run order.
    pub runs_msgs_per_s: Vec<f64>,
}

/// The result of `keel bench ring`, printable as a table or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RingReport {
    /// Always `"ring"`.
    pub bench: &'static str,
    /// Wait strategy name.
    pub wait: String,
    /// Messages per repetition.
    pub messages: u64,
    /// Ring capacity.
    pub ring_size: usize,
    /// Producer burst size.
    pub burst: usize,
    /// Producer threads.
    pub producers: usize,
    /// Repetitions.
    pub repeat: usize,
    /// The machine.
    pub hardware: Hardware,
    /// Median throughput per contender.
    pub throughput_msgs_per_s: BTreeMap<&'static str, f64>,
    /// The first contender's (normally keel's) median throughput ÷ each contender's: higher is
    /// better for keel.
    pub keel_over_this: BTreeMap<&'static str, f64>,
    /// Details per contender, keel first.
    pub results: Vec<ContenderResult>,
}

impl RingReport {
    /// The report as a text table with a hardware line.
    pub fn table(&self) -> String {
        let first = self.results.first().map_or("keel", |r| r.name);
        let header = ratio::header(first, "msgs/s", Better::Higher);
        let mut t = Table::new(&["name", "median msgs/s", &header, "waits"]);
        for r in &self.results {
            let ratio = ratio::cell(r.keel_over_this);
            t.row(vec![
                r.name.into(),
                millions(r.throughput_msgs_per_s),
                ratio,
                r.waits.clone(),
            ]);
        }
        format!(
            "keel bench ring: {} messages, {} producer(s), ring {}, burst {}, wait {}, \
             median of {}\n{}\n{}",
            self.messages,
            self.producers,
            self.ring_size,
            self.burst,
            self.wait,
            self.repeat,
            self.hardware.line(),
            t.render()
        )
    }
}

/// Runs `keel bench ring`: every contender `repeat` times, interleaved, each run verified.
/// Progress goes to stderr. With more than one producer, see [`run_multi`].
pub fn run(bench: &RingBench) -> Result<RingReport, BenchError> {
    if bench.producers > 1 {
        return run_multi(bench);
    }
    assert!(bench.repeat >= 1, "at least one repetition");
    assert!(!bench.contenders.is_empty(), "at least one contender");
    assert!(
        bench.burst >= 1 && bench.burst <= bench.ring_size,
        "burst must fit the ring"
    );
    let cores = CoreSet::detect();
    let pins = Pins::resolve(bench.pins, bench.wait, &cores);
    let workload = Workload {
        messages: bench.messages,
        ring_size: bench.ring_size,
        burst: bench.burst,
        wait: bench.wait,
        pins,
    };
    let mut runs = vec![Vec::with_capacity(bench.repeat); bench.contenders.len()];
    for rep in 1..=bench.repeat {
        for (contender, runs) in bench.contenders.iter().zip(&mut runs) {
            let elapsed = contender.run(&workload)?;
            let rate = bench.messages as f64 / elapsed.as_secs_f64();
            eprintln!(
                "run {rep}/{}: {:<22} {} msgs/s",
                bench.repeat,
                contender.name(),
                millions(rate)
            );
            runs.push(rate);
        }
    }
    Ok(report(bench, Hardware::detect(&cores, pins), runs))
}

fn report(bench: &RingBench, hardware: Hardware, runs: Vec<Vec<f64>>) -> RingReport {
    let keel = median(&runs[0]);
    let results: Vec<ContenderResult> = bench
        .contenders
        .iter()
        .zip(runs)
        .map(|(c, runs)| {
            let rate = median(&runs);
            ContenderResult {
                name: c.name(),
                waits: c.waits(bench.wait),
                throughput_msgs_per_s: rate,
                keel_over_this: ratio::over(keel, rate),
                runs_msgs_per_s: runs,
            }
        })
        .collect();
    RingReport {
        bench: "ring",
        wait: bench.wait.to_string(),
        messages: bench.messages,
        ring_size: bench.ring_size,
        burst: bench.burst,
        producers: bench.producers,
        repeat: bench.repeat,
        hardware,
        throughput_msgs_per_s: results
            .iter()
            .map(|r| (r.name, r.throughput_msgs_per_s))
            .collect(),
        keel_over_this: results.iter().map(|r| (r.name, r.keel_over_this)).collect(),
        results,
    }
}

/// `keel bench ring --producers N` (N ≥ 2): the same `messages`, split among N producer
/// threads (producer `p` publishes its share of `0..messages` in bursts), into one consumer that
/// checks count and sum, through keel's multi-producer ring ([`RingBuilder::build_multi`]) and
/// the disruptor crate's (`disruptor::build_multi_producer`), interleaved per repetition like
/// [`run`]. The other contenders have no multi-producer form here and are skipped. Threads are
/// not pinned: N + 1 threads share the cores, so use `--wait yield` (or `park`) when they
/// outnumber them.
pub fn run_multi(bench: &RingBench) -> Result<RingReport, BenchError> {
    assert!(bench.repeat >= 1 && bench.producers >= 2);
    assert!(bench.burst >= 1 && bench.burst <= bench.ring_size);
    let contenders: Vec<Contender> = bench
        .contenders
        .iter()
        .copied()
        .filter(|c| matches!(c, Contender::Keel | Contender::Disruptor))
        .collect();
    assert!(!contenders.is_empty(), "keel or disruptor-crate must run");
    let bench = RingBench {
        contenders,
        ..bench.clone()
    };
    let workload = Workload {
        messages: bench.messages,
        ring_size: bench.ring_size,
        burst: bench.burst,
        wait: bench.wait,
        pins: Pins::default(),
    };
    let producers = bench.producers as u64;
    let mut runs = vec![Vec::with_capacity(bench.repeat); bench.contenders.len()];
    for rep in 1..=bench.repeat {
        for (contender, runs) in bench.contenders.iter().zip(&mut runs) {
            let measured = match contender {
                Contender::Keel => keel_multi_once(&workload, producers)?,
                _ => disruptor_multi_once(&workload, producers)?,
            };
            let rate =
                bench.messages as f64 / workload.check(contender.name(), &measured)?.as_secs_f64();
            eprintln!(
                "run {rep}/{}: {:<22} {} msgs/s",
                bench.repeat,
                contender.name(),
                millions(rate)
            );
            runs.push(rate);
        }
    }
    let hardware = Hardware::detect(&CoreSet::detect(), Pins::default());
    Ok(report(&bench, hardware, runs))
}

/// A disruptor-crate batch filler writing `first, first + 1, …` into the claimed slots.
fn values_from<'a, I: Iterator<Item = &'a mut u64>>(first: u64) -> impl FnOnce(I) {
    move |slots| {
        for (slot, value) in slots.zip(first..) {
            *slot = value;
        }
    }
}

/// The values producer `p` of `producers` publishes: its share of `0..messages`.
fn share(messages: u64, producers: u64, p: u64) -> std::ops::Range<u64> {
    let each = messages / producers;
    let end = if p + 1 == producers {
        messages
    } else {
        (p + 1) * each
    };
    p * each..end
}

/// Starts `producers` threads together running `produce(p)`, and returns when they are done
/// with the time they were released.
fn run_producers(
    name: &'static str,
    producers: u64,
    produce: impl Fn(u64) + Sync,
) -> Result<Instant, BenchError> {
    let ready = Barrier::new(producers as usize + 1);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..producers)
            .map(|p| {
                let (ready, produce) = (&ready, &produce);
                s.spawn(move || {
                    ready.wait();
                    produce(p);
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        for thread in threads {
            thread.join().map_err(|_| BenchError::Panicked {
                name,
                thread: "producer",
            })?;
        }
        Ok(start)
    })
}

/// One repetition through keel's multi-producer ring.
fn keel_multi_once(w: &Workload, producers: u64) -> Result<Measured, BenchError> {
    let mut builder = RingBuilder::new(w.ring_size).wait_strategy(w.wait);
    builder.add_consumer(&[]);
    let (producer, mut consumers) = builder.build_multi(|| 0u64);
    let mut consumer = consumers.pop().expect("one consumer was added");
    let (messages, burst) = (w.messages, w.burst as u64);
    let produce = |p| {
        let std::ops::Range {
            start: mut next,
            end,
        } = share(messages, producers, p);
        while next < end {
            let n = burst.min(end - next);
            let mut value = next;
            let fill = |slot: &mut u64, _| {
                *slot = value;
                value += 1;
            };
            producer
                .publish_batch(n as usize, fill)
                .expect("nobody closes the bench ring");
            next += n;
        }
    };
    let consume = move || consume_all(&mut consumer, messages);
    let name = Contender::Keel.name();
    std::thread::scope(|s| {
        let consumer = s.spawn(consume);
        let start = run_producers(name, producers, produce)?;
        let tally = consumer.join().map_err(|_| BenchError::Panicked {
            name,
            thread: "consumer",
        })?;
        Ok(Measured {
            elapsed: tally.end.saturating_duration_since(start),
            sum: tally.sum,
            count: tally.count,
        })
    })
}

/// One repetition through the disruptor crate's multi-producer ring, with the wait strategy
/// matching `w.wait` (as in `peers`).
fn disruptor_multi_once(w: &Workload, producers: u64) -> Result<Measured, BenchError> {
    match w.wait {
        WaitStrategy::BusySpin => disruptor_multi_with(w, producers, BusySpinWithSpinLoopHint),
        WaitStrategy::Yield => disruptor_multi_with(w, producers, peers::YieldNow),
        _ => disruptor_multi_with(w, producers, Sleep::new(Idle::SLEEP)),
    }
}

fn disruptor_multi_with<W>(
    w: &Workload,
    producers: u64,
    strategy: W,
) -> Result<Measured, BenchError>
where
    W: disruptor::wait_strategies::WaitStrategy + 'static,
{
    let (messages, burst, wait) = (w.messages, w.burst as u64, w.wait);
    let tally = Arc::new((AtomicU64::new(0), AtomicU64::new(0), OnceLock::new()));
    let handler = {
        let (tally, mut sum) = (tally.clone(), 0u64);
        move |v: &u64, sequence: i64, end_of_batch: bool| {
            sum = sum.wrapping_add(*v);
            if end_of_batch {
                let count = sequence as u64 + 1;
                tally.0.store(sum, Ordering::Relaxed);
                tally.1.store(count, Ordering::Relaxed);
                if count == messages {
                    let _ = tally.2.set(Instant::now());
                }
            }
        }
    };
    let producer = disruptor::build_multi_producer(w.ring_size, || 0u64, strategy)
        .handle_events_with(handler)
        .build();
    let produce = |p| {
        let mut producer = producer.clone();
        let std::ops::Range {
            start: mut next,
            end,
        } = share(messages, producers, p);
        let mut idle = Idle::new(wait);
        while next < end {
            let n = burst.min(end - next) as usize;
            while producer.try_batch_publish(n, values_from(next)).is_err() {
                idle.step();
            }
            idle.reset();
            next += n as u64;
        }
    };
    let start = run_producers(Contender::Disruptor.name(), producers, produce)?;
    drop(producer); // the last handle: joins the consumer thread, so the tally is final
    let end = tally.2.get().copied().unwrap_or_else(Instant::now);
    Ok(Measured {
        elapsed: end.saturating_duration_since(start),
        sum: tally.0.load(Ordering::Relaxed),
        count: tally.1.load(Ordering::Relaxed),
    })
}

/// Sums `messages` values from `consumer` (the consuming side of every keel ring contender).
fn consume_all(consumer: &mut Consumer<u64>, messages: u64) -> Tally {
    let (mut sum, mut count) = (0u64, 0u64);
    while count < messages {
        let add = |v: &u64, _, _| {
            sum = sum.wrapping_add(*v);
            Ok::<(), Infallible>(())
        };
        match consumer.process_batch(None, add) {
            Ok(Poll::Batch(n)) => count += n,
            Ok(Poll::Timeout) => {}
            Ok(Poll::Closed | Poll::Halted) => break,
            Err(never) => match never {},
        }
    }
    Tally {
        end: Instant::now(),
        sum,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(wait: WaitStrategy) -> Workload {
        Workload {
            messages: 20_000,
            ring_size: 64,
            burst: 10,
            wait,
            pins: Pins::default(),
        }
    }

    #[test]
    fn expected_sum_is_gauss() {
        assert_eq!(
            small(WaitStrategy::Yield).expected_sum(),
            20_000 * 19_999 / 2
        );
        let none = Workload {
            messages: 0,
            ..small(WaitStrategy::Yield)
        };
        assert_eq!(none.expected_sum(), 0);
    }

    #[test]
    fn wrong_result_is_an_error() {
        let w = small(WaitStrategy::Yield);
        let m = Measured {
            elapsed: Duration::from_millis(1),
            sum: 1,
            count: w.messages,
        };
        assert!(matches!(
            w.check("x", &m),
            Err(BenchError::WrongResult { .. })
        ));
    }

    #[test]
    fn contenders_by_name() {
        for c in Contender::ALL {
            assert_eq!(Contender::from_name(c.name()), Some(c));
        }
        assert_eq!(
            Contender::from_name("disruptor"),
            Some(Contender::Disruptor)
        );
        assert_eq!(Contender::from_name("nope"), None);
    }

    #[test]
    fn both_multi_producer_rings_hand_over_everything() {
        // Correctness only (no timing): yield, so that 4 producers share any number of cores.
        for producers in [2, 4] {
            let w = small(WaitStrategy::Yield);
            w.check("keel", &keel_multi_once(&w, producers).unwrap())
                .unwrap();
            w.check("disruptor", &disruptor_multi_once(&w, producers).unwrap())
                .unwrap();
        }
        assert_eq!(share(10, 3, 0), 0..3);
        assert_eq!(share(10, 3, 2), 6..10);
    }

    #[test]
    fn every_contender_hands_over_everything() {
        // Correctness only (no timing): yield so two threads share any number of cores.
        for contender in Contender::ALL {
            contender.run(&small(WaitStrategy::Yield)).unwrap();
        }
    }
}
