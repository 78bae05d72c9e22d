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
//! Group `mpsc`: 2 and 4 producer threads (one `publish` per message) into one consumer,
//! keel's multi-producer ring beside the disruptor crate's (`build_multi_producer`). Nothing is
//! pinned and every thread yields while it waits (producers for room, the consumer for data,
//! the measuring thread for the end): with more threads than cores, spinning would measure
//! the scheduler. It runs first, before the measuring thread is pinned for `spsc`.
//!
//! `cargo bench --bench ring` (about a minute after the build); one group:
//! `cargo bench --bench ring -- mpsc`.

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
use keel::ring::{MultiProducer, Poll, RingBuilder, WaitStrategy};
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

/// Messages each producer publishes per iteration of the `mpsc` group.
const PER_PRODUCER: u64 = 256;
/// Ring capacity of the `mpsc` group (the disruptor crate's multi-producer needs at least 64).
const MP_RING_SIZE: usize = 1024;
const PRODUCERS: [u64; 2] = [2, 4];

fn multi_producer(c: &mut Criterion) {
    let mut group = c.benchmark_group("mpsc");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for producers in PRODUCERS {
        group.throughput(Throughput::Elements(producers * PER_PRODUCER));
        keel_multi(&mut group, producers);
        disruptor_multi(&mut group, producers);
    }
    group.finish();
}

/// Yields until the consumer has stored `count` (or more) into `sink`.
fn wait_yielding(sink: &Sink, count: u64) {
    while sink.load(Ordering::Acquire) < count {
        thread::yield_now();
    }
}

/// Runs `publish(producer, i)` for `i` in `0..per_thread` on each of `producers` threads
/// (each with its own clone of `producer`) and returns when they are all done.
fn on_producer_threads<P: Clone + Send>(
    producer: &P,
    producers: u64,
    per_thread: u64,
    publish: impl Fn(&mut P, u64) + Sync,
) {
    thread::scope(|s| {
        for _ in 0..producers {
            let (mut producer, publish) = (producer.clone(), &publish);
            s.spawn(move || (0..per_thread).for_each(|i| publish(&mut producer, i)));
        }
    });
}

/// keel: `MultiProducer::publish` from each producer thread, a batch consumer thread.
fn keel_multi(group: &mut BenchmarkGroup<WallTime>, producers: u64) {
    let sink: Sink = Arc::default();
    let mut builder = RingBuilder::new(MP_RING_SIZE).wait_strategy(WaitStrategy::Yield);
    builder.add_consumer(&[]);
    let (producer, mut consumers) = builder.build_multi(|| 0u64);
    let mut consumer = consumers.pop().expect("one consumer");
    let consumer_sink = sink.clone();
    let handle = thread::spawn(move || loop {
        // Sequences start at 1: the last one of a batch is the count so far.
        let store = |_: &u64, sequence, end_of_batch| {
            if end_of_batch {
                consumer_sink.store(sequence, Ordering::Release);
            }
            Ok::<(), Infallible>(())
        };
        match consumer.process_batch(None, store) {
            Ok(Poll::Batch(_) | Poll::Timeout) => {}
            Ok(Poll::Closed | Poll::Halted) => break,
            Err(never) => match never {},
        }
    });
    let mut published = 0;
    let publish = |p: &mut MultiProducer<u64>, i: u64| {
        p.publish(|slot, _| *slot = black_box(i)).expect("open");
    };
    group.bench_function(BenchmarkId::new("keel", producers), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            on_producer_threads(&producer, producers, iters * PER_PRODUCER, publish);
            published += producers * iters * PER_PRODUCER;
            wait_yielding(&sink, published);
            start.elapsed()
        })
    });
    drop(producer); // The last handle: closes the ring, the consumer thread returns.
    handle.join().expect("consumer thread");
}

/// A disruptor-crate wait strategy that yields the core between checks (the crate has none).
#[derive(Clone, Copy)]
struct YieldNow;

impl disruptor::wait_strategies::WaitStrategy for YieldNow {
    fn wait_for(&self, _sequence: i64) {
        thread::yield_now();
    }
}

/// The disruptor crate: `try_publish` (yielding while full) from each producer thread, its
/// managed consumer thread.
fn disruptor_multi(group: &mut BenchmarkGroup<WallTime>, producers: u64) {
    let sink: Sink = Arc::default();
    let consumer_sink = sink.clone();
    let store = move |_: &u64, sequence: i64, end_of_batch: bool| {
        if end_of_batch {
            consumer_sink.store(sequence as u64 + 1, Ordering::Release);
        }
    };
    let producer = disruptor::build_multi_producer(MP_RING_SIZE, || 0u64, YieldNow)
        .handle_events_with(store)
        .build();
    let mut published = 0;
    let publish = |p: &mut disruptor::MultiProducer<u64, _>, i: u64| {
        while p.try_publish(|slot| *slot = black_box(i)).is_err() {
            thread::yield_now();
        }
    };
    group.bench_function(BenchmarkId::new("disruptor-crate", producers), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            on_producer_threads(&producer, producers, iters * PER_PRODUCER, publish);
            published += producers * iters * PER_PRODUCER;
            wait_yielding(&sink, published);
            start.elapsed()
        })
    });
    // Dropping the last producer joins the consumer thread.
}

// `multi_producer` first: `bursts` pins the measuring thread, and threads it spawns after
// that would inherit its core.
criterion_group!(benches, multi_producer, bursts);
criterion_main!(benches);
