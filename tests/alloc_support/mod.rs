//! A counting global allocator for allocation tests (`tests/alloc.rs`, `tests/client_alloc.rs`):
//! `mod alloc_support;` installs it.
//!
//! Counting is off until [`arm`]; while armed it counts the allocations (and reallocations)
//! of every thread except those named in [`OFF_PATH_THREADS`], which allocate by design, off
//! the per-message path (the journal's spare-segment preparer, the snapshot writer).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Threads whose allocations are never counted.
pub const OFF_PATH_THREADS: [&str; 2] = ["keel-journal-prep", "keel-snapshot"];

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread is off the message path (decided on its first allocation).
    static OFF_PATH: Cell<Option<bool>> = const { Cell::new(None) };
}

fn on_message_path() -> bool {
    OFF_PATH.with(|cell| {
        let off = cell.get().unwrap_or_else(|| {
            let thread = std::thread::current();
            let off = OFF_PATH_THREADS.contains(&thread.name().unwrap_or(""));
            cell.set(Some(off));
            off
        });
        !off
    })
}

fn count() {
    if ARMED.load(Ordering::Relaxed) && on_message_path() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Delegates to the system allocator; counts.
pub struct Counting;

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Starts counting from zero.
pub fn arm() {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
}

/// Stops counting; returns the allocations counted since [`arm`].
pub fn disarm() -> u64 {
    ARMED.store(false, Ordering::SeqCst);
    ALLOCATIONS.swap(0, Ordering::SeqCst)
}
