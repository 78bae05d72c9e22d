//! The benchmark workloads through keel's peers: the `disruptor` crate 4.x,
//! `crossbeam_queue::ArrayQueue` and `crossbeam_channel::bounded`.
//!
//! Each peer is used the way its documentation recommends, at its best setting for the wait
//! strategy asked for: the disruptor crate publishes bursts with `batch_publish` and consumes in
//! batches on its managed thread; ArrayQueue and the channel have no batch API, so they move one
//! value at a time. The disruptor crate has no blocking wait strategy, so `park`/`phased` use its
//! `Sleep` strategy (see [`disruptor_wait_name`]).

use super::pingpong::{ping_loop, run_ping_echo, RoundTrips, Rounds};
use super::ring::{run_pair, Measured, Tally, Workload};
use super::{BenchError, Idle};
use crossbeam_queue::ArrayQueue;
use disruptor::wait_strategies::WaitStrategy as DisruptorWait;
use disruptor::{BusySpinWithSpinLoopHint, Polling, ProcessorSettings, Producer, Sleep};
use keel::ring::WaitStrategy;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

const DISRUPTOR: &str = "disruptor-crate";
const ARRAY_QUEUE: &str = "crossbeam-arrayqueue";
const CHANNEL: &str = "crossbeam-channel";

/// A disruptor-crate wait strategy that yields the core between checks (the crate has none).
#[derive(Debug, Clone, Copy)]
pub struct YieldNow;

impl DisruptorWait for YieldNow {
    #[inline]
    fn wait_for(&self, _sequence: i64) {
        std::thread::yield_now();
    }
}

/// The disruptor-crate wait strategy used for keel's `wait`, for reports.
pub fn disruptor_wait_name(wait: WaitStrategy) -> &'static str {
    match wait {
        WaitStrategy::BusySpin => "BusySpinWithSpinLoopHint",
        WaitStrategy::Yield => "yield_now",
        _ => "Sleep(50us) (the crate has no blocking or back-off strategy)",
    }
}

/// Calls `$run` with the disruptor-crate wait strategy matching `$wait` (each is its own type).
macro_rules! with_disruptor_wait {
    ($wait:expr, $run:ident($($arg:expr),*)) => {
        match $wait {
            WaitStrategy::BusySpin => $run($($arg,)* BusySpinWithSpinLoopHint),
            WaitStrategy::Yield => $run($($arg,)* YieldNow),
            _ => $run($($arg,)* Sleep::new(Idle::SLEEP)),
        }
    };
}

/// The consumer's tally, handed from the disruptor's managed thread once per batch.
#[derive(Debug, Default)]
struct SharedTally {
    sum: AtomicU64,
    count: AtomicU64,
    end: OnceLock<Instant>,
}

/// `keel bench ring`'s workload through the disruptor crate.
pub fn disruptor_throughput(w: &Workload) -> Result<Measured, BenchError> {
    with_disruptor_wait!(w.wait, disruptor_throughput_with(w))
}

fn disruptor_throughput_with<W>(w: &Workload, strategy: W) -> Result<Measured, BenchError>
where
    W: DisruptorWait + 'static,
{
    let tally = Arc::new(SharedTally::default());
    let handler = {
        let (tally, messages) = (tally.clone(), w.messages);
        let mut sum = 0u64;
        // Like keel's consumer, count per batch (from the sequence), not per event.
        move |v: &u64, sequence: i64, end_of_batch: bool| {
            sum = sum.wrapping_add(*v);
            if end_of_batch {
                let count = sequence as u64 + 1;
                tally.sum.store(sum, Ordering::Relaxed);
                tally.count.store(count, Ordering::Relaxed);
                if count == messages {
                    let _ = tally.end.set(Instant::now());
                }
            }
        }
    };
    // Built on this (unpinned) thread: the crate checks the core against get_core_ids() here.
    let builder = disruptor::build_single_producer(w.ring_size, || 0u64, strategy);
    let builder = match w.pins.consumer {
        Some(core) => builder.pin_at_core(core),
        None => builder,
    };
    let producer = builder.handle_events_with(handler).build();
    let (messages, burst, wait, pins) = (w.messages, w.burst as u64, w.wait, w.pins);
    let start = on_thread(DISRUPTOR, "producer", move || {
        pins.pin_producer();
        let start = Instant::now();
        disruptor_produce(producer, messages, burst, wait);
        start
    })?;
    // Dropping the producer joined the consumer thread: the tally is final.
    let end = tally.end.get().copied().unwrap_or_else(Instant::now);
    Ok(Measured {
        elapsed: end.saturating_duration_since(start),
        sum: tally.sum.load(Ordering::Relaxed),
        count: tally.count.load(Ordering::Relaxed),
    })
}

/// Publishes `0..messages` in bursts, then drops the producer (which joins the consumer).
fn disruptor_produce(
    mut producer: impl Producer<u64>,
    messages: u64,
    burst: u64,
    wait: WaitStrategy,
) {
    let mut next = 0;
    let mut idle = Idle::new(wait);
    while next < messages {
        let n = burst.min(messages - next);
        if wait == WaitStrategy::BusySpin {
            // The crate's own full-ring wait: a busy spin.
            producer.batch_publish(n as usize, fill_from(next));
        } else {
            while producer
                .try_batch_publish(n as usize, fill_from(next))
                .is_err()
            {
                idle.step();
            }
            idle.reset();
        }
        next += n;
    }
}

/// A batch filler writing `first, first + 1, …` into the claimed slots.
fn fill_from<'a, I: Iterator<Item = &'a mut u64>>(first: u64) -> impl FnOnce(I) {
    move |slots| {
        for (slot, value) in slots.zip(first..) {
            *slot = value;
        }
    }
}

/// Runs `f` on a new thread and returns its result, or `Panicked`.
fn on_thread<R: Send>(
    name: &'static str,
    thread: &'static str,
    f: impl FnOnce() -> R + Send,
) -> Result<R, BenchError> {
    std::thread::scope(|s| s.spawn(f).join()).map_err(|_| BenchError::Panicked { name, thread })
}

/// Sets a flag when dropped, so a waiting thread stops even if its partner panicked.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// `keel bench ring`'s workload through `crossbeam_queue::ArrayQueue`, one value at a time.
pub fn array_queue_throughput(w: &Workload) -> Result<Measured, BenchError> {
    let queue = ArrayQueue::new(w.ring_size);
    let done = AtomicBool::new(false);
    let (messages, wait) = (w.messages, w.wait);
    let produce = || {
        let _done = SetOnDrop(&done);
        let mut idle = Idle::new(wait);
        for value in 0..messages {
            if let Err(mut back) = queue.push(value) {
                idle.step();
                while let Err(again) = queue.push(back) {
                    back = again;
                    idle.step();
                }
                idle.reset();
            }
        }
    };
    let consume = || {
        let (mut sum, mut count) = (0u64, 0u64);
        let mut idle = Idle::new(wait);
        while count < messages {
            match queue.pop() {
                Some(v) => {
                    sum = sum.wrapping_add(v);
                    count += 1;
                    idle.reset();
                }
                None if done.load(Ordering::Acquire) && queue.is_empty() => break,
                None => idle.step(),
            }
        }
        Tally {
            end: Instant::now(),
            sum,
            count,
        }
    };
    run_pair(ARRAY_QUEUE, w.pins, produce, consume)
}

/// `keel bench ring`'s workload through `crossbeam_channel::bounded`, one value at a time,
/// with the channel's own blocking (the `--wait` flag does not apply).
pub fn channel_throughput(w: &Workload) -> Result<Measured, BenchError> {
    let (tx, rx) = crossbeam_channel::bounded(w.ring_size);
    let messages = w.messages;
    let produce = move || {
        for value in 0..messages {
            tx.send(value).expect("the consumer outlives the producer");
        }
    };
    let consume = move || {
        let (mut sum, mut count) = (0u64, 0u64);
        for v in rx.iter() {
            sum = sum.wrapping_add(v);
            count += 1;
            if count == messages {
                break;
            }
        }
        Tally {
            end: Instant::now(),
            sum,
            count,
        }
    };
    run_pair(CHANNEL, w.pins, produce, consume)
}

/// `keel bench pingpong` through two disruptor-crate rings: the echo is the ping ring's managed
/// consumer thread (publishing into the pong ring); the ping thread polls the pong ring with an
/// `EventPoller`.
pub fn disruptor_pingpong(r: &Rounds) -> Result<RoundTrips, BenchError> {
    with_disruptor_wait!(r.wait, disruptor_pingpong_with(r))
}

fn disruptor_pingpong_with<W>(r: &Rounds, strategy: W) -> Result<RoundTrips, BenchError>
where
    W: DisruptorWait + 'static,
{
    let (mut poller, pong) =
        disruptor::build_single_producer(r.ring_size, || 0u64, strategy).new_event_poller();
    let mut pong = pong.build();
    let echo = move |v: &u64, _sequence: i64, _end_of_batch: bool| pong.publish(|e| *e = *v);
    let builder = disruptor::build_single_producer(r.ring_size, || 0u64, strategy);
    let builder = match r.pins.consumer {
        Some(core) => builder.pin_at_core(core),
        None => builder,
    };
    let mut ping = builder.handle_events_with(echo).build();
    let rounds = *r;
    on_thread(DISRUPTOR, "ping", move || {
        rounds.pins.pin_producer();
        let mut idle = Idle::new(rounds.wait);
        let result = ping_loop(DISRUPTOR, &rounds, |i| {
            ping.publish(|e| *e = i);
            loop {
                match poller.poll() {
                    Ok(mut events) => return (&mut events).last().copied(),
                    Err(Polling::NoEvents) => idle.step(),
                    Err(Polling::Shutdown) => return None,
                }
            }
        });
        drop(ping); // Joins the echo thread, which drops the pong producer.
        result
    })?
}

/// `keel bench pingpong` through two `ArrayQueue`s.
pub fn array_queue_pingpong(r: &Rounds) -> Result<RoundTrips, BenchError> {
    let (ping, pong) = (ArrayQueue::new(r.ring_size), ArrayQueue::new(r.ring_size));
    let stop = AtomicBool::new(false);
    let wait = r.wait;
    let echo = || {
        let mut idle = Idle::new(wait);
        loop {
            match ping.pop() {
                Some(v) => {
                    push_spin(&pong, v, &mut idle);
                    idle.reset();
                }
                None if stop.load(Ordering::Acquire) => break,
                None => idle.step(),
            }
        }
    };
    let round_trips = || {
        let _stop = SetOnDrop(&stop);
        let mut idle = Idle::new(wait);
        ping_loop(ARRAY_QUEUE, r, |i| {
            push_spin(&ping, i, &mut idle);
            loop {
                if let Some(v) = pong.pop() {
                    idle.reset();
                    return Some(v);
                }
                idle.step();
            }
        })
    };
    run_ping_echo(ARRAY_QUEUE, r.pins, round_trips, echo)
}

fn push_spin(queue: &ArrayQueue<u64>, mut value: u64, idle: &mut Idle) {
    while let Err(back) = queue.push(value) {
        value = back;
        idle.step();
    }
}
