//! Heap allocations per message of the exchange in steady state, counted by a global
//! allocator around `Processor::apply` on the canonical workload. The books' `BTreeMap`s
//! allocate a node now and then when levels appear (and free one when they merge); nothing
//! else on the path allocates, so the average stays far below one per message.

use keel::apps::exchange::*;
use keel::apps::{App, Command};
use keel::engine::MessageHeader;
use keel::{Message, Output, Processor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn apply_all(exchange: &mut Exchange, buf: &mut [u8], first: u64, commands: &[Command]) {
    for (i, command) in commands.iter().enumerate() {
        let sequence = first + i as u64;
        let header = MessageHeader {
            sequence,
            timestamp_ns: sequence,
            session_id: 0,
            correlation_id: sequence,
            kind: command.kind,
            version: command.version,
        };
        let message = Message {
            header,
            payload: &command.payload,
        };
        exchange.apply(&message, &mut Output::new(buf));
    }
}

#[test]
fn steady_state_apply_allocates_almost_never() {
    let seed = 5;
    let mut exchange = Exchange::default();
    let mut buf = vec![0u8; 4096];
    let setup = Exchange::setup(seed);
    apply_all(&mut exchange, &mut buf, 1, &setup);
    let warm: Vec<Command> = (0..300_000).map(|i| Exchange::workload(seed, i)).collect();
    apply_all(&mut exchange, &mut buf, 1 + setup.len() as u64, &warm);
    let n = 300_000u64;
    let measured: Vec<Command> = (300_000..300_000 + n)
        .map(|i| Exchange::workload(seed, i))
        .collect();
    let first = 1 + (setup.len() + warm.len()) as u64;
    ARMED.store(true, Ordering::SeqCst);
    apply_all(&mut exchange, &mut buf, first, &measured);
    ARMED.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    println!("{allocations} allocations in {n} messages");
    assert!(
        allocations * 100 < n,
        "{allocations} allocations in {n} messages"
    );
}
