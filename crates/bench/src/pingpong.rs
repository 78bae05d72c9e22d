//! `keel bench pingpong`: round trips between two threads over two rings.
//!
//! The ping thread stamps the clock, publishes its round-trip index `i` into the ping ring and
//! waits for the echo thread to publish the same value into the pong ring; the round-trip time
//! goes into a [`LatencyRecorder`] (warm-up round trips excluded). Every echo is checked: a
//! wrong value fails the run. This is the shape of the LMAX `PingPongSequencedLatencyTest`, which
//! the Java Disruptor peer in docs/BENCHMARKS.md runs.

use super::affinity::CoreSet;
use super::latency::{LatencyRecorder, Percentiles};
use super::report::ratio::{self, Better};
use super::report::saved::{self, OutArgs, SavedRun, Saving};
use super::report::{Hardware, Table};
use super::rig::Failure;
use super::{peers, BenchError, Idle, PinRequest, Pins};
use keel::ring::{Consumer, Halted, Poll, Producer, RingBuilder, WaitStrategy};
use serde::Serialize;
use std::convert::Infallible;
use std::time::{Duration, Instant};

/// Settings of `keel bench pingpong`.
#[derive(Debug, Clone)]
pub struct PingPongBench {
    /// Measured round trips per contender.
    pub iterations: u64,
    /// Round trips run first and not recorded.
    pub warmup: u64,
    /// Capacity of each ring.
    pub ring_size: usize,
    /// How waiting threads wait.
    pub wait: WaitStrategy,
    /// Requested pinning (producer = ping thread, consumer = echo thread).
    pub pins: PinRequest,
}

impl PingPongBench {
    /// The default number of measured round trips for `wait`: 2 M like the Java peer, but
    /// 100 k for the sleeping strategies, whose round trips take tens of microseconds.
    pub fn default_iterations(wait: WaitStrategy) -> u64 {
        match wait {
            WaitStrategy::BusySpin | WaitStrategy::Yield => 2_000_000,
            _ => 100_000,
        }
    }

    /// The default warm-up: 200 k round trips like the Java peer, at most `iterations`.
    pub fn default_warmup(iterations: u64) -> u64 {
        iterations.min(200_000)
    }
}

impl Default for PingPongBench {
    /// The canonical run: 2 M round trips after 200 k warm-up, rings of 1,024, busy-spin.
    fn default() -> Self {
        PingPongBench {
            iterations: 2_000_000,
            warmup: 200_000,
            ring_size: 1024,
            wait: WaitStrategy::BusySpin,
            pins: PinRequest::default(),
        }
    }
}

/// One contender's workload.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    /// Measured round trips.
    pub iterations: u64,
    /// Unrecorded round trips first.
    pub warmup: u64,
    /// Capacity of each ring or queue.
    pub ring_size: usize,
    /// How waiting threads wait.
    pub wait: WaitStrategy,
    /// Where the ping (producer) and echo (consumer) threads run.
    pub pins: Pins,
}

/// The measured round trips of one contender.
#[derive(Debug, Clone)]
pub struct RoundTrips {
    /// Round-trip times in nanoseconds.
    pub histogram: LatencyRecorder,
    /// Wall time of the measured (post-warm-up) round trips.
    pub elapsed: Duration,
}

/// Runs `warmup + iterations` round trips, `round_trip(i)` sending `i` and returning what came
/// back (`None` if the echo side closed), and records the measured ones.
pub fn ping_loop(
    name: &'static str,
    r: &Rounds,
    mut round_trip: impl FnMut(u64) -> Option<u64>,
) -> Result<RoundTrips, BenchError> {
    let mut one = |i: u64| -> Result<u64, BenchError> {
        let t0 = Instant::now();
        let got = round_trip(i);
        let t1 = Instant::now();
        match got {
            Some(v) if v == i => Ok(t1.duration_since(t0).as_nanos() as u64),
            Some(got) => {
                let iteration = i as i64 - r.warmup as i64;
                Err(BenchError::WrongEcho {
                    name,
                    iteration,
                    got,
                    expected: i,
                })
            }
            None => Err(BenchError::Stopped {
                name,
                reason: "the echo side closed",
            }),
        }
    };
    for i in 0..r.warmup {
        one(i)?;
    }
    let mut histogram = LatencyRecorder::new();
    let start = Instant::now();
    for i in r.warmup..r.warmup + r.iterations {
        histogram.record(one(i)?);
    }
    Ok(RoundTrips {
        histogram,
        elapsed: start.elapsed(),
    })
}

/// Runs `ping` and `echo` on two threads pinned per `pins` (ping = producer, echo = consumer).
/// `ping` must make `echo` return when it finishes (close its ring, or set a flag on drop).
pub fn run_ping_echo<P, E>(
    name: &'static str,
    pins: Pins,
    ping: P,
    echo: E,
) -> Result<RoundTrips, BenchError>
where
    P: FnOnce() -> Result<RoundTrips, BenchError> + Send,
    E: FnOnce() + Send,
{
    std::thread::scope(|s| {
        let echo = s.spawn(|| {
            pins.pin_consumer();
            echo();
        });
        let ping = s.spawn(|| {
            pins.pin_producer();
            ping()
        });
        let result = ping.join().map_err(|_| BenchError::Panicked {
            name,
            thread: "ping",
        });
        echo.join().map_err(|_| BenchError::Panicked {
            name,
            thread: "echo",
        })?;
        result?
    })
}

/// An implementation measured by `keel bench pingpong`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// Two keel rings.
    Keel,
    /// Two `disruptor` crate rings (managed echo thread, `EventPoller` on the ping side).
    Disruptor,
    /// Two `crossbeam_queue::ArrayQueue`s.
    ArrayQueue,
}

impl Contender {
    /// Every contender, keel first.
    pub const ALL: [Contender; 3] = [Contender::Keel, Contender::Disruptor, Contender::ArrayQueue];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Keel => "keel",
            Contender::Disruptor => "disruptor-crate",
            Contender::ArrayQueue => "crossbeam-arrayqueue",
        }
    }

    /// How this contender waits under `wait`, for reports.
    pub fn waits(self, wait: WaitStrategy) -> String {
        match self {
            Contender::Keel => format!("keel {wait}"),
            Contender::Disruptor => peers::disruptor_wait_name(wait).to_string(),
            Contender::ArrayQueue => Idle::describe(wait).to_string(),
        }
    }

    /// Runs this contender's round trips, every echo checked.
    pub fn run(self, rounds: &Rounds) -> Result<RoundTrips, BenchError> {
        match self {
            Contender::Keel => keel_once(rounds),
            Contender::Disruptor => peers::disruptor_pingpong(rounds),
            Contender::ArrayQueue => peers::array_queue_pingpong(rounds),
        }
    }
}

fn single_ring(capacity: usize, wait: WaitStrategy) -> (Producer<u64>, Consumer<u64>) {
    let mut builder = RingBuilder::new(capacity).wait_strategy(wait);
    builder.add_consumer(&[]);
    let (producer, mut consumers) = builder.build(|| 0u64);
    (producer, consumers.pop().expect("one consumer was added"))
}

fn keel_once(r: &Rounds) -> Result<RoundTrips, BenchError> {
    let (mut ping_tx, mut ping_rx) = single_ring(r.ring_size, r.wait);
    let (mut pong_tx, mut pong_rx) = single_ring(r.ring_size, r.wait);
    let echo = move || loop {
        let reply = |v: &u64, _, _| pong_tx.publish(|slot, _| *slot = *v).map(drop);
        match ping_rx.process_batch(None, reply) {
            Ok(Poll::Batch(_) | Poll::Timeout) => {}
            Ok(Poll::Closed | Poll::Halted) | Err(Halted) => break,
        }
    };
    let rounds = *r;
    // Dropping `ping_tx` when this returns closes the ping ring, which ends `echo`.
    let ping = move || {
        ping_loop(Contender::Keel.name(), &rounds, |i| {
            ping_tx.publish(|slot, _| *slot = i).ok()?;
            receive(&mut pong_rx)
        })
    };
    run_ping_echo(Contender::Keel.name(), r.pins, ping, echo)
}

/// Waits for the next batch on `rx` and returns its last value (`None` once closed).
#[inline]
fn receive(rx: &mut Consumer<u64>) -> Option<u64> {
    let mut got = None;
    loop {
        let take = |v: &u64, _, _| {
            got = Some(*v);
            Ok::<(), Infallible>(())
        };
        match rx.process_batch(None, take) {
            Ok(Poll::Batch(_)) => return got,
            Ok(Poll::Timeout) => {}
            Ok(Poll::Closed | Poll::Halted) => return None,
            Err(never) => match never {},
        }
    }
}

/// One contender's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// Contender name.
    pub name: &'static str,
    /// How it waits.
    pub waits: String,
    /// Round-trip percentiles.
    #[serde(flatten)]
    pub rtt: Percentiles,
    /// Measured round trips per second.
    pub round_trips_per_s: f64,
    /// Messages handed between the threads per second: two per round trip (ping and pong).
    pub throughput_msgs_per_s: f64,
    /// keel's p50 ÷ this contender's (lower is better for keel: below 1, keel is faster).
    pub keel_over_this_p50: f64,
    /// keel's p99.9 ÷ this contender's (lower is better for keel).
    pub keel_over_this_p999: f64,
    /// The whole round-trip distribution.
    #[serde(skip)]
    pub histogram: LatencyRecorder,
}

/// The result of `keel bench pingpong`, printable as a table or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct PingPongReport {
    /// Always `"pingpong"`.
    pub bench: &'static str,
    /// Wait strategy name.
    pub wait: String,
    /// Measured round trips per contender.
    pub iterations: u64,
    /// Warm-up round trips per contender (not recorded).
    pub warmup: u64,
    /// Capacity of each ring.
    pub ring_size: usize,
    /// The machine.
    pub hardware: Hardware,
    /// Per contender, keel first.
    pub results: Vec<LatencyResult>,
}

impl PingPongReport {
    /// The report as a text table (nanoseconds) with a hardware line.
    pub fn table(&self) -> String {
        let header = [
            "name", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "count", "RT/s",
        ];
        let ratios = ratio::header("keel", "p50 / p99.9", Better::Lower);
        let mut t = Table::new(&[&header[..], &[ratios.as_str()]].concat());
        for r in &self.results {
            let p = &r.rtt;
            let mut row = vec![r.name.to_string()];
            let ns = [
                p.p50_ns, p.p90_ns, p.p99_ns, p.p999_ns, p.p9999_ns, p.max_ns,
            ];
            row.extend(ns.iter().map(u64::to_string));
            row.push(format!("{:.1}", p.mean_ns));
            row.push(p.count.to_string());
            row.push(format!("{:.2}M", r.round_trips_per_s / 1e6));
            row.push(format!(
                "{} / {}",
                ratio::cell(r.keel_over_this_p50),
                ratio::cell(r.keel_over_this_p999)
            ));
            t.row(row);
        }
        format!(
            "keel bench pingpong: round-trip ns, {} round trips after {} warm-up, rings of {}, \
             wait {}\n{}\n{}",
            self.iterations,
            self.warmup,
            self.ring_size,
            self.wait,
            self.hardware.line(),
            t.render()
        )
    }
}

/// Runs `keel bench pingpong`: each contender once, every echo verified. Progress goes to
/// stderr.
pub fn run(bench: &PingPongBench) -> Result<PingPongReport, BenchError> {
    assert!(bench.iterations >= 1, "at least one round trip");
    let cores = CoreSet::detect();
    let pins = Pins::resolve(bench.pins, bench.wait, &cores);
    let rounds = Rounds {
        iterations: bench.iterations,
        warmup: bench.warmup,
        ring_size: bench.ring_size,
        wait: bench.wait,
        pins,
    };
    let mut measured = Vec::with_capacity(Contender::ALL.len());
    for contender in Contender::ALL {
        let trips = contender.run(&rounds)?;
        let s = trips.histogram.summary();
        eprintln!(
            "{:<22} p50 {} ns, p99.9 {} ns",
            contender.name(),
            s.p50_ns,
            s.p999_ns
        );
        measured.push((contender, trips));
    }
    let keel = measured[0].1.histogram.summary();
    let over = |keel: u64, this: u64| ratio::over(keel as f64, this as f64);
    let results = measured
        .into_iter()
        .map(|(c, trips)| {
            let rtt = trips.histogram.summary();
            let round_trips_per_s = rtt.count as f64 / trips.elapsed.as_secs_f64();
            LatencyResult {
                name: c.name(),
                waits: c.waits(bench.wait),
                rtt,
                round_trips_per_s,
                throughput_msgs_per_s: 2.0 * round_trips_per_s,
                keel_over_this_p50: over(keel.p50_ns, rtt.p50_ns),
                keel_over_this_p999: over(keel.p999_ns, rtt.p999_ns),
                histogram: trips.histogram,
            }
        })
        .collect();
    Ok(PingPongReport {
        bench: "pingpong",
        wait: bench.wait.to_string(),
        iterations: bench.iterations,
        warmup: bench.warmup,
        ring_size: bench.ring_size,
        hardware: Hardware::detect(&cores, pins),
        results,
    })
}

impl PingPongReport {
    /// `--out`: one `.hgrm` of round-trip times per contender, `report.json` and the plot.
    pub fn save(&self, out: &OutArgs) -> Result<Vec<std::path::PathBuf>, Failure> {
        let legends: Vec<String> = self
            .results
            .iter()
            .map(|r| format!("{} ({})", r.name, r.waits))
            .collect();
        let runs: Vec<SavedRun<'_>> = self
            .results
            .iter()
            .zip(&legends)
            .map(|(r, legend)| SavedRun {
                name: r.name,
                legend,
                recorder: &r.histogram,
            })
            .collect();
        let title = format!("keel bench pingpong: round-trip time (wait {})", self.wait);
        let settings = serde_json::json!({
            "iterations": self.iterations,
            "warmup": self.warmup,
            "ring_size": self.ring_size,
            "wait": self.wait,
            "pinning": self.hardware.pinning,
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

    #[test]
    fn every_contender_echoes_every_value() {
        // Correctness only (no timing): yield so two threads share any number of cores.
        let rounds = Rounds {
            iterations: 2_000,
            warmup: 100,
            ring_size: 8,
            wait: WaitStrategy::Yield,
            pins: Pins::default(),
        };
        for contender in Contender::ALL {
            let trips = contender.run(&rounds).unwrap();
            assert_eq!(trips.histogram.count(), 2_000, "{}", contender.name());
        }
    }
}
