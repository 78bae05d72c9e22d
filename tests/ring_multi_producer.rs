//! The multi-producer ring with real threads: every message once, each producer's in order,
//! batches contiguous, back-pressure, close, halt, and a second stage behind the first.

use keel::ring::{Consumer, MultiProducer, Poll, RingBuilder, TryPublishError, WaitStrategy};
use std::thread;

const STRATEGIES: [WaitStrategy; 2] = [WaitStrategy::Yield, WaitStrategy::PARK];

/// Value of producer `p`'s `k`-th message.
fn value(p: u64, k: u64) -> u64 {
    p << 40 | k
}

fn multi_ring(capacity: usize, wait: WaitStrategy) -> (MultiProducer<u64>, Consumer<u64>) {
    let mut builder = RingBuilder::new(capacity).wait_strategy(wait);
    builder.add_consumer(&[]);
    let (producer, mut consumers) = builder.build_multi(|| 0u64);
    (producer, consumers.pop().unwrap())
}

/// Drains until the ring closes, checking contiguous sequences and each producer's order;
/// returns how many messages each producer got through.
fn drain(mut consumer: Consumer<u64>, producers: usize) -> Vec<u64> {
    let mut next = vec![0u64; producers];
    let mut sequence = 0;
    loop {
        let poll = consumer.process_batch(None, |v: &u64, s, _| {
            sequence += 1;
            assert_eq!(s, sequence, "sequences are contiguous");
            let (p, k) = ((v >> 40) as usize, v & ((1 << 40) - 1));
            assert_eq!(k, next[p], "producer {p}: lost, duplicated or out of order");
            next[p] += 1;
            Ok::<(), ()>(())
        });
        match poll.unwrap() {
            Poll::Batch(_) | Poll::Timeout => {}
            Poll::Closed => return next,
            Poll::Halted => panic!("unexpected halt"),
        }
    }
}

/// `producers` threads each publish `count` messages in bursts of 1..=`max_burst`.
fn run(producers: u64, count: u64, max_burst: u64, wait: WaitStrategy) {
    let (producer, consumer) = multi_ring(64, wait);
    let reader = thread::spawn(move || drain(consumer, producers as usize));
    let writers: Vec<_> = (0..producers)
        .map(|p| {
            let producer = producer.clone();
            thread::spawn(move || {
                let mut k = 0;
                while k < count {
                    let n = (1 + k % max_burst).min(count - k);
                    let last = producer
                        .publish_batch(n as usize, |slot, _| {
                            *slot = value(p, k);
                            k += 1;
                        })
                        .unwrap();
                    assert!(last >= n);
                }
            })
        })
        .collect();
    drop(producer);
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(reader.join().unwrap(), vec![count; producers as usize]);
}

#[test]
fn four_producers_one_consumer_every_message_once_in_producer_order() {
    for wait in STRATEGIES {
        run(4, 20_000, 1, wait);
        run(4, 20_000, 7, wait);
    }
}

#[test]
fn a_full_ring_refuses_try_publish_and_close_releases_a_waiting_producer() {
    for wait in STRATEGIES {
        let (producer, consumer) = multi_ring(2, wait);
        producer.publish_batch(2, |slot, s| *slot = s).unwrap();
        assert_eq!(
            producer.try_publish_batch(1, |slot, s| *slot = s),
            Err(TryPublishError::Full)
        );
        let waiting = producer.clone();
        let blocked = thread::spawn(move || waiting.publish(|slot, s| *slot = s));
        // Nobody consumes: the publish waits for room until the close.
        producer.close();
        assert!(blocked.join().unwrap().is_err());
        assert!(producer.publish(|slot, s| *slot = s).is_err(), "closed");
        let mut consumer = consumer;
        let mut seen = 0;
        let poll = consumer.process_batch(None, |_: &u64, _, _| {
            seen += 1;
            Ok::<(), ()>(())
        });
        assert_eq!((poll, seen), (Ok(Poll::Batch(2)), 2));
        let poll = consumer.process_batch(None, |_: &u64, _, _| Ok::<(), ()>(()));
        assert_eq!(
            poll,
            Ok(Poll::Closed),
            "everything claimed before the close was read"
        );
    }
}

#[test]
fn a_panic_while_filling_halts_the_ring() {
    let (producer, mut consumer) = multi_ring(8, WaitStrategy::PARK);
    let panicking = producer.clone();
    let result = thread::spawn(move || {
        panicking.publish(|_, _| panic!("fill failed")).ok();
    })
    .join();
    assert!(result.is_err());
    assert!(producer.is_halted());
    let poll = consumer.process_batch(None, |_: &u64, _, _| Ok::<(), ()>(()));
    assert_eq!(
        poll,
        Ok(Poll::Halted),
        "the consumer does not wait for the lost claim"
    );
}

#[test]
fn a_second_stage_follows_the_first_on_a_multi_producer_ring() {
    let mut builder = RingBuilder::new(16).wait_strategy(WaitStrategy::PARK);
    let first = builder.add_consumer(&[]);
    builder.add_consumer(&[first]);
    let (producer, mut consumers) = builder.build_multi(|| 0u64);
    let second = consumers.pop().unwrap();
    let first = consumers.pop().unwrap();
    let first = thread::spawn(move || drain(first, 2));
    let second = thread::spawn(move || drain(second, 2));
    let writers: Vec<_> = (0..2)
        .map(|p| {
            let producer = producer.clone();
            thread::spawn(move || {
                for k in 0..5_000 {
                    producer.publish(|slot, _| *slot = value(p, k)).unwrap();
                }
            })
        })
        .collect();
    drop(producer);
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(first.join().unwrap(), vec![5_000, 5_000]);
    assert_eq!(second.join().unwrap(), vec![5_000, 5_000]);
}
