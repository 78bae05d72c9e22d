//! `append` and `end_batch` do not allocate in steady state, segment rollovers included (a
//! counting global allocator; only allocations made by the test thread, the writer's, while
//! counting is on are counted: the spare-segment preparer allocates by design, off this path).

mod journal_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use journal_support::*;
use keel::journal::{FlushPolicy, JournalWriter};

struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every method forwards to the system allocator unchanged; counting has no side effect
// on the memory returned.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
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
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn append_and_end_batch_do_not_allocate() {
    // The counter sees this thread's allocations.
    COUNTING.with(|c| c.set(true));
    drop(std::hint::black_box(vec![1u8; 8]));
    COUNTING.with(|c| c.set(false));
    assert!(ALLOCATIONS.load(Ordering::Relaxed) >= 1);
    let tmp = tempfile::tempdir().unwrap();
    // 128 KiB segments roll over often; 4 MiB ones are long enough for the writer to nudge
    // its preparer (once per MiB) and overtake its lead (`adaptive` under the syncing
    // policies: segments prepared a few MiB ahead of the writer).
    for (sub, flush, segment_bytes, records) in [
        ("n", FlushPolicy::None, 128 << 10, 5_000),
        ("b", FlushPolicy::Batch, 128 << 10, 5_000),
        ("i", FlushPolicy::IntervalMs(1), 128 << 10, 5_000),
        ("b4", FlushPolicy::Batch, 4 << 20, 100_000),
        ("i4", FlushPolicy::IntervalMs(1), 4 << 20, 100_000),
    ] {
        let dir = tmp.path().join(sub);
        let mut w = JournalWriter::open(&cfg(&dir, segment_bytes, flush)).unwrap();
        let payloads: Vec<Vec<u8>> = (1..=records).map(payload).collect();
        let segments = || std::fs::read_dir(&dir).unwrap().count();
        write(&mut w, 1, 10, 10); // warm up (lazy statics, first syncs)
        let files = segments();
        ALLOCATIONS.store(0, Ordering::Relaxed);
        COUNTING.with(|c| c.set(true));
        for seq in 11..=records {
            w.append(&rec(seq, &payloads[seq as usize - 1])).unwrap();
            if seq % 100 == 0 {
                w.end_batch().unwrap();
                w.tick().unwrap();
            }
        }
        COUNTING.with(|c| c.set(false));
        let rollovers = segments() - files;
        assert!(rollovers >= 3, "{flush}: only {rollovers} rollovers");
        assert_eq!(
            ALLOCATIONS.load(Ordering::Relaxed),
            0,
            "{flush}: allocations on the append path, {rollovers} rollovers included"
        );
    }
}
