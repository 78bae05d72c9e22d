//! Criterion micro-benchmarks: keel's ring beside its peers, one group.
//!
//! Each case publishes a burst of 1, 10 or 100 values and waits until the consumer thread has
//! seen the last one (the shape of disruptor-rs's `spsc` benches). The consumer stores every
//! value it sees into a shared `sink`; values keep increasing across iterations, so the wait
//! never ends on a stale value from an earlier burst. `base` runs the same loop with no second
//! thread: it is the cost of the measurement itself. Consumers busy-spin, so with two or more
//! cores the measuring thread is pinned to the first usable core and every consumer thread to
//! the second. (The disruptor crate's consumer pins itself on its first event: its
//! `pin_at_core` checks the core against the affinity of the already pinned building thread.)
//! With one core nothing is pinned and the numbers mostly measure the scheduler.
//!
//! `cargo bench --bench ring` (about 30 s after the build).

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use disruptor::{BusySpinWithSpinLoopHint, Producer as _};
use keel::engine::Cores as CoreSet;

/// Pins the calling thread to `core` (if any), warning instead when it is not available.
fn pin_current_thread(core: Option<usize>, thread: &str) -> bool {
    CoreSet::detect().pin_current(core, thread)
}
use keel::ring::{Poll, RingBuilder, WaitStrategy};
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Ring / queue capacity: small, like disruptor-rs's benches, so it stays in L1.
const RING_SIZE: usize = 128;
const BURSTS: [u64; 3] = [1, 10, 100];

type Sink = Arc<CachePadded<AtomicU64>>;

/// Where the measuring thread and the consumer threads run (`None`: unpinned).
#[derive(Clone, Copy)]
struct Cores {
    producer: Option<usize>,
    consumer: Option<usize>,
}

impl Cores {
    /// Reads the usable cores once, before anything is pinned, and pins the calling thread.
    fn pin_measuring_thread() -> Self {
        let cores = match CoreSet::detect().ids().as_slice() {
            [first, second, ..] => Cores {
                producer: Some(*first),
                consumer: Some(*second),
            },
            _ => Cores {
                producer: None,
                consumer: None,
            },
        };
        pin_current_thread(cores.producer, "criterion");
        cores
    }
}

/// Spins until the consumer has stored `last` into `sink`.
#[inline]
fn wait_for(sink: &Sink, last: u64) {
    while sink.load(Ordering::Acquire) != last {
        std::hint::spin_loop();
    }
}

fn bursts(c: &mut Criterion) {
    let cores = Cores::pin_measuring_thread();
    let mut group = c.benchmark_group("spsc");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    for burst in BURSTS {
        group.throughput(Throughput::Elements(burst));
        base(&mut group, burst);
        keel(&mut group, burst, cores);
        disruptor(&mut group, burst, cores);
        array_queue(&mut group, burst, cores);
    }
    group.finish();
}

/// The measurement loop alone: store each value, then "wait" for the last one.
fn base(group: &mut BenchmarkGroup<WallTime>, burst: u64) {
    let sink: Sink = Arc::default();
    let mut next = 0u64;
    group.bench_function(BenchmarkId::new("base", burst), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..burst {
                    next += 1;
                    sink.store(black_box(next), Ordering::Release);
                }
                wait_for(&sink, next);
            }
            start.elapsed()
        })
    });
}

/// keel: `publish_batch` of the burst (values = sequences), a batch consumer thread.
fn keel(group: &mut BenchmarkGroup<WallTime>, burst: u64, cores: Cores) {
    let sink: Sink = Arc::default();
    let mut builder = RingBuilder::new(RING_SIZE).wait_strategy(WaitStrategy::BusySpin);
    builder.add_consumer(&[]);
    let (mut producer, mut consumers) = builder.build(|| 0u64);
    let mut consumer = consumers.pop().expect("one consumer");
    let consumer_sink = sink.clone();
    let handle = thread::spawn(move || {
        pin_current_thread(cores.consumer, "consumer");
        loop {
            let store = |v: &u64, _, _| {
                consumer_sink.store(*v, Ordering::Release);
                Ok::<(), Infallible>(())
            };
            match consumer.process_batch(None, store) {
                Ok(Poll::Batch(_) | Poll::Timeout) => {}
                Ok(Poll::Closed | Poll::Halted) => break,
                Err(never) => match never {},
            }
        }
    });
    group.bench_function(BenchmarkId::new("keel", burst), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let fill = |slot: &mut u64, sequence| *slot = black_box(sequence);
                let last = producer
                    .publish_batch(burst as usize, fill)
                    .expect("not halted");
                wait_for(&sink, last);
            }
            start.elapsed()
        })
    });
    drop(producer); // Closes the ring: the consumer thread returns.
    handle.join().expect("consumer thread");
}

/// The disruptor crate: `batch_publish` of the burst, its managed consumer thread.
fn disruptor(group: &mut BenchmarkGroup<WallTime>, burst: u64, cores: Cores) {
    let sink: Sink = Arc::default();
    let consumer_sink = sink.clone();
    let mut pinned = false;
    let store = move |v: &u64, _sequence: i64, _end_of_batch: bool| {
        if !pinned {
            pinned = true;
            pin_current_thread(cores.consumer, "consumer");
        }
        consumer_sink.store(*v, Ordering::Release);
    };
    let mut producer =
        disruptor::build_single_producer(RING_SIZE, || 0u64, BusySpinWithSpinLoopHint)
            .handle_events_with(store)
            .build();
    let mut next = 0u64;
    group.bench_function(BenchmarkId::new("disruptor-crate", burst), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                producer.batch_publish(burst as usize, |slots| {
                    for slot in slots {
                        next += 1;
                        *slot = black_box(next);
                    }
                });
                wait_for(&sink, next);
            }
            start.elapsed()
        })
    });
    // Dropping the producer joins the consumer thread.
}

/// crossbeam's `ArrayQueue`: one push per value, a consumer thread popping one at a time.
fn array_queue(group: &mut BenchmarkGroup<WallTime>, burst: u64, cores: Cores) {
    let sink: Sink = Arc::default();
    let queue = Arc::new(ArrayQueue::<u64>::new(RING_SIZE));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (sink, queue, stop) = (sink.clone(), queue.clone(), stop.clone());
        thread::spawn(move || {
            pin_current_thread(cores.consumer, "consumer");
            while !stop.load(Ordering::Relaxed) {
                match queue.pop() {
                    Some(v) => sink.store(v, Ordering::Release),
                    None => std::hint::spin_loop(),
                }
            }
        })
    };
    let mut next = 0u64;
    group.bench_function(BenchmarkId::new("crossbeam-arrayqueue", burst), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..burst {
                    next += 1;
                    while queue.push(black_box(next)).is_err() {
                        std::hint::spin_loop();
                    }
                }
                wait_for(&sink, next);
            }
            start.elapsed()
        })
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("consumer thread");
}

criterion_group!(benches, bursts);
criterion_main!(benches);
