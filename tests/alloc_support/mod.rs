//! A counting global allocator for allocation tests (`tests/alloc.rs`, `tests/client_alloc.rs`):
//! `mod alloc_support;` installs it.
//!
//! Counting is off until [`arm`]; while armed it counts the allocations (and reallocations)
//! of every thread except those named in [`OFF_PATH_THREADS`], which allocate by design, off
//! the per-message path (the journal's spare-segment preparer, the snapshot writer). Every
//! other thread counts: keel's journaler, group-commit syncer and business-logic threads, the
//! test's own submitting, reading and calling threads, and any thread not named here. Counts
//! are kept per thread name too, so a failure says where the allocations happened.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Threads whose allocations are never counted.
pub const OFF_PATH_THREADS: [&str; 2] = ["keel-journal-prep", "keel-snapshot"];

/// Threads counted apart (for the report); everything else counts as "other".
const NAMED: [&str; 5] = [
    "keel-journaler",
    "keel-journal-sync",
    "keel-logic",
    "keel-slots",
    "keel-net",
];

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Per [`NAMED`] thread, then one for every other counted thread.
static BY_THREAD: [AtomicU64; NAMED.len() + 1] = [const { AtomicU64::new(0) }; NAMED.len() + 1];

/// Where a thread's allocations go.
#[derive(Clone, Copy)]
enum Role {
    OffPath,
    Counted(usize),
}

thread_local! {
    /// Decided on the thread's first allocation (looking its name up does not allocate).
    static ROLE: Cell<Option<Role>> = const { Cell::new(None) };
}

fn role() -> Role {
    ROLE.with(|cell| {
        cell.get().unwrap_or_else(|| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            let role = if OFF_PATH_THREADS.contains(&name) {
                Role::OffPath
            } else {
                Role::Counted(NAMED.iter().position(|n| *n == name).unwrap_or(NAMED.len()))
            };
            cell.set(Some(role));
            role
        })
    })
}

fn count() {
    if ARMED.load(Ordering::Relaxed) {
        if let Role::Counted(index) = role() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BY_THREAD[index].fetch_add(1, Ordering::Relaxed);
        }
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
    for counter in &BY_THREAD {
        counter.store(0, Ordering::SeqCst);
    }
    ARMED.store(true, Ordering::SeqCst);
}

/// Stops counting; returns the allocations counted since [`arm`].
pub fn disarm() -> u64 {
    disarm_by_thread().0
}

/// Stops counting; returns the allocations counted since [`arm`] and where they happened
/// (`"keel-journaler: 3, other: 1"`, empty when none).
pub fn disarm_by_thread() -> (u64, String) {
    ARMED.store(false, Ordering::SeqCst);
    let total = ALLOCATIONS.swap(0, Ordering::SeqCst);
    let names = NAMED.iter().copied().chain(["other"]);
    let counts = BY_THREAD.iter().map(|c| c.swap(0, Ordering::SeqCst));
    let parts: Vec<String> = names
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    (total, parts.join(", "))
}
