//! Ring behaviour with real threads: order, no loss, no duplication, back-pressure, close, halt.

use keel::ring::{Consumer, Poll, Producer, RingBuilder, Sequence, WaitStrategy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const STRATEGIES: [WaitStrategy; 2] = [WaitStrategy::Yield, WaitStrategy::PARK];

/// Drains `consumer` until the ring closes, checking that values arrive as 1, 2, 3, ... and that
/// each event's sequence matches its value. Returns (count, batches, saw_end_of_batch_last).
fn drain_checked(mut consumer: Consumer<u64>) -> (u64, u64) {
    let mut expected = 1u64;
    let mut batches = 0u64;
    loop {
        let poll = consumer
            .process_batch(None, |value: &u64, seq, end| {
                assert_eq!(*value, expected, "out of order, lost or duplicated");
                assert_eq!(seq, expected);
                let _ = end;
                expected += 1;
                Ok::<(), ()>(())
            })
            .unwrap();
        match poll {
            Poll::Batch(_) => batches += 1,
            Poll::Closed => return (expected - 1, batches),
            Poll::Timeout => {}
            Poll::Halted => panic!("unexpected halt"),
        }
    }
}

/// A ring of `capacity` `u64` slots with one consumer.
fn single_ring(capacity: usize, wait: WaitStrategy) -> (Producer<u64>, Consumer<u64>) {
    let mut builder = RingBuilder::new(capacity).wait_strategy(wait);
    builder.add_consumer(&[]);
    let (producer, mut consumers) = builder.build(|| 0u64);
    (producer, consumers.pop().unwrap())
}

fn run_one_to_one(capacity: usize, strategy: WaitStrategy, count: u64, burst: usize) {
    let (mut producer, consumer) = single_ring(capacity, strategy);
    let handle = thread::spawn(move || drain_checked(consumer));
    let burst = burst.min(capacity);
    let mut next = 1u64;
    while next <= count {
        let n = burst.min((count - next + 1) as usize);
        producer
            .publish_batch(n, |slot, seq| {
                *slot = next;
                assert_eq!(seq, next);
                next += 1;
            })
            .unwrap();
    }
    drop(producer);
    let (received, batches) = handle.join().unwrap();
    assert_eq!(received, count);
    assert!(batches >= 1);
}

#[test]
fn millions_through_a_small_ring_in_order() {
    for strategy in STRATEGIES {
        // 2 M messages through 1024 slots: ~2000 wrap-arounds.
        run_one_to_one(1024, strategy, 2_000_000, 1);
        run_one_to_one(1024, strategy, 2_000_000, 64);
    }
}

#[test]
fn capacity_one_and_two() {
    for strategy in STRATEGIES {
        run_one_to_one(1, strategy, 20_000, 1);
        run_one_to_one(2, strategy, 20_000, 1);
        run_one_to_one(2, strategy, 20_000, 2);
    }
}

#[test]
#[should_panic(expected = "not a power of two")]
fn capacity_must_be_power_of_two() {
    RingBuilder::new(3);
}

#[test]
fn full_ring_makes_the_producer_wait_and_drops_nothing() {
    let (mut producer, mut consumer) = single_ring(8, WaitStrategy::PARK);
    for v in 1..=8 {
        producer.publish(|slot, _| *slot = v).unwrap();
    }
    assert_eq!(producer.gauge().fill(), 8);
    assert_eq!(
        producer.try_publish_batch(1, |s, _| *s = 9),
        Err(keel::ring::TryPublishError::Full)
    );
    // A blocking publish waits until the consumer frees a slot.
    let published = Arc::new(AtomicU64::new(0));
    let p2 = published.clone();
    let t = thread::spawn(move || {
        producer.publish(|slot, _| *slot = 9).unwrap();
        p2.store(1, Ordering::SeqCst);
        producer
    });
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        published.load(Ordering::SeqCst),
        0,
        "producer overwrote an unconsumed slot"
    );
    let mut seen = Vec::new();
    consumer
        .process_batch(None, |v: &u64, _, _| {
            seen.push(*v);
            Ok::<(), ()>(())
        })
        .unwrap();
    let producer = t.join().unwrap();
    assert_eq!(published.load(Ordering::SeqCst), 1);
    consumer
        .process_batch(None, |v: &u64, _, _| {
            seen.push(*v);
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(seen, (1..=9).collect::<Vec<_>>());
    drop(producer);
}

#[test]
fn downstream_never_passes_upstream() {
    let mut builder = RingBuilder::new(64).wait_strategy(WaitStrategy::Yield);
    let first = builder.add_consumer(&[]);
    builder.add_consumer(&[first]);
    let (mut producer, mut consumers) = builder.build(|| 0u64);
    let second = consumers.pop().unwrap();
    let mut first = consumers.pop().unwrap();
    let upstream: Arc<Sequence> = first.sequence();
    let up = thread::spawn(move || loop {
        match first
            .process_batch(None, |_, _, _| Ok::<(), ()>(()))
            .unwrap()
        {
            Poll::Closed => break,
            _ => thread::yield_now(),
        }
    });
    let down = thread::spawn(move || {
        let mut second = second;
        let mut n = 0u64;
        loop {
            let poll = second
                .process_batch(None, |v: &u64, seq, _| {
                    assert!(
                        seq <= upstream.load_acquire(),
                        "saw {seq} before upstream did"
                    );
                    assert_eq!(*v, seq);
                    n += 1;
                    Ok::<(), ()>(())
                })
                .unwrap();
            if poll == Poll::Closed {
                return n;
            }
        }
    });
    for v in 1..=200_000u64 {
        producer.publish(|slot, _| *slot = v).unwrap();
    }
    drop(producer);
    up.join().unwrap();
    assert_eq!(down.join().unwrap(), 200_000);
}

#[test]
fn end_of_batch_marks_the_last_event_of_each_batch() {
    let (mut producer, mut consumer) = single_ring(16, WaitStrategy::Yield);
    producer.publish_batch(5, |s, seq| *s = seq).unwrap();
    let mut ends = Vec::new();
    consumer
        .process_batch(None, |_, seq, end| {
            ends.push((seq, end));
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(
        ends,
        vec![(1, false), (2, false), (3, false), (4, false), (5, true)]
    );
}

#[test]
fn failed_handler_does_not_advance() {
    let (mut producer, mut consumer) = single_ring(16, WaitStrategy::Yield);
    producer.publish_batch(3, |s, seq| *s = seq).unwrap();
    let r = consumer.process_batch(None, |_, seq, _| if seq == 2 { Err(seq) } else { Ok(()) });
    assert_eq!(r, Err(2));
    assert_eq!(consumer.sequence().load_acquire(), 0);
}

#[test]
fn timeout_and_halt_release_waiters() {
    let (producer, mut consumer) = single_ring(16, WaitStrategy::PARK);
    let deadline = Some(Instant::now() + Duration::from_millis(10));
    assert_eq!(
        consumer.process_batch(deadline, |_, _, _| Ok::<(), ()>(())),
        Ok(Poll::Timeout)
    );
    let t = thread::spawn(move || consumer.process_batch(None, |_, _, _| Ok::<(), ()>(())));
    thread::sleep(Duration::from_millis(20));
    producer.halt();
    assert_eq!(t.join().unwrap(), Ok(Poll::Halted));
}

#[test]
fn start_after_resumes_numbering() {
    let mut builder = RingBuilder::new(4)
        .wait_strategy(WaitStrategy::Yield)
        .start_after(41);
    builder.add_consumer(&[]);
    let (mut producer, mut consumers) = builder.build(|| 0u64);
    assert_eq!(producer.publish(|s, seq| *s = seq).unwrap(), 42);
    let mut consumer = consumers.pop().unwrap();
    let mut seen = 0;
    consumer
        .process_batch(None, |v: &u64, _, _| {
            seen = *v;
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(seen, 42);
}

#[test]
fn written_slots_are_invisible_until_flushed() {
    let (mut producer, mut consumer) = single_ring(4, WaitStrategy::Yield);
    for v in 1..=3 {
        assert_eq!(producer.write(|s, _| *s = v).unwrap(), v);
    }
    let soon = Some(Instant::now() + Duration::from_millis(5));
    assert_eq!(
        consumer.process_batch(soon, |_, _, _| Ok::<(), ()>(())),
        Ok(Poll::Timeout)
    );
    producer.flush();
    let mut seen = Vec::new();
    consumer
        .process_batch(None, |v: &u64, _, _| {
            seen.push(*v);
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
}

#[test]
fn a_writer_that_fills_the_ring_publishes_before_waiting() {
    // Capacity 2, never flushing explicitly: waiting for room must publish what was written,
    // or producer and consumer would wait for each other forever.
    let (mut producer, consumer) = single_ring(2, WaitStrategy::PARK);
    let handle = thread::spawn(move || drain_checked(consumer));
    for v in 1..=10_000u64 {
        producer.write(|s, _| *s = v).unwrap();
    }
    drop(producer); // publishes the rest and closes
    assert_eq!(handle.join().unwrap().0, 10_000);
}

#[test]
fn a_batch_publish_also_publishes_earlier_writes_and_a_flush_after_it_changes_nothing() {
    let (mut producer, mut consumer) = single_ring(8, WaitStrategy::Yield);
    let gauge = producer.gauge();
    producer.write(|s, _| *s = 1).unwrap();
    producer.write(|s, _| *s = 2).unwrap();
    assert_eq!(gauge.published(), 0);
    assert_eq!(producer.publish_batch(1, |s, _| *s = 3), Ok(3));
    assert_eq!(gauge.published(), 3);
    producer.flush();
    assert_eq!(gauge.published(), 3);
    let mut batches = Vec::new();
    let soon = Some(Instant::now() + Duration::from_millis(5));
    while let Ok(Poll::Batch(_)) = consumer.process_batch(soon, |v: &u64, _, end| {
        batches.push((*v, end));
        Ok::<(), ()>(())
    }) {}
    assert_eq!(batches, vec![(1, false), (2, false), (3, true)]);
}

#[test]
#[should_panic(expected = "batch of 0 does not fit the ring of 4")]
fn an_empty_batch_is_refused() {
    let (mut producer, _consumer) = single_ring(4, WaitStrategy::default());
    let _ = producer.publish_batch(0, |s, _| *s = 1);
}

#[test]
#[should_panic(expected = "batch of 5 does not fit the ring of 4")]
fn a_batch_larger_than_the_ring_is_refused() {
    let (mut producer, _consumer) = single_ring(4, WaitStrategy::default());
    let _ = producer.try_publish_batch(5, |s, _| *s = 1);
}

#[test]
fn an_abandoned_ring_frees_a_waiting_producer() {
    for strategy in STRATEGIES {
        let (mut producer, consumer) = single_ring(4, strategy);
        for i in 1..=4u64 {
            producer.publish(|slot, _| *slot = i).unwrap();
        }
        assert!(!producer.is_abandoned());
        // The producer waits for room nobody will free, until the consumer abandons the ring.
        let waiter = thread::spawn(move || {
            let result = producer.publish(|slot, _| *slot = 5);
            (result, producer.is_abandoned())
        });
        consumer.abandon();
        let (result, abandoned) = waiter.join().unwrap();
        assert!(result.is_err(), "a full, abandoned ring does not wait");
        assert!(abandoned);
    }
}
