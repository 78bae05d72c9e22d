//! No heap allocation per message on the engine's own path (submit → ring → journal →
//! business logic → output ring → receiver), counted by a global allocator after warm-up.
//! The journal's background spare-segment preparer and the snapshot writer are off that path
//! and not counted.

mod common;

use common::{to, Summer, ADD};
use keel::ring::Poll;
use keel::{Config, Engine, FlushPolicy, WaitStrategy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    /// Whether this thread is off the message path: the journal's spare-segment preparer and
    /// the snapshot writer allocate (file names, buffers) by design, outside the per-message path.
    static OFF_PATH: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

fn on_message_path() -> bool {
    OFF_PATH.with(|cell| {
        let off = cell.get().unwrap_or_else(|| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            let off = name == "keel-journal-prep" || name == "keel-snapshot";
            cell.set(Some(off));
            off
        });
        !off
    })
}

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) && on_message_path() {
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
        if ARMED.load(Ordering::Relaxed) && on_message_path() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn run(flush: FlushPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = {
        let mut config = Config::with_data_dir(dir.path());
        config.ring_capacity = 4096;
        config.output_ring_capacity = 4096;
        config.segment_size_bytes = 64 << 20;
        config.wait = WaitStrategy::Yield;
        config.flush = flush;
        config
    };
    let mut engine = Engine::start(cfg, Summer::default()).unwrap();
    let mut rx = engine.take_responses().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let r2 = received.clone();
    let reader = std::thread::spawn(move || loop {
        let poll = rx.poll(None, |_| {
            r2.fetch_add(1, Ordering::Relaxed);
        });
        if matches!(poll, Poll::Closed | Poll::Halted) {
            break;
        }
    });
    let payload = 1u64.to_le_bytes();
    let mut send = |from: u64, count: u64| {
        for i in from..from + count {
            engine.submitter().submit(to(ADD, i), &payload).unwrap();
        }
        let start = Instant::now();
        while received.load(Ordering::Relaxed) < from + count - 1 {
            assert!(start.elapsed() < Duration::from_secs(60));
            std::thread::yield_now();
        }
    };
    send(1, 20_000); // warm-up: every lazily initialised thing is touched once
    ARMED.store(true, Ordering::SeqCst);
    send(20_001, 100_000);
    ARMED.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.swap(0, Ordering::SeqCst);
    engine.shutdown().unwrap();
    reader.join().unwrap();
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for 100,000 messages with {flush}"
    );
}

#[test]
fn no_allocation_per_message() {
    run(FlushPolicy::None);
    run(FlushPolicy::Batch);
}
