//! No heap allocation per message on the server's path (socket → frames → input ring → ... →
//! output ring → session buffer → socket), nor in the client's `queue`/`recv`: counted by a
//! global allocator over every thread, after warm-up.

mod net_support;

use keel::net::ReplyStatus;
use net_support::*;
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

/// `n` pipelined adds of 1 (64 in flight), checked.
fn traffic(client: &mut keel::net::Client, n: u64) {
    let (mut sent, mut got) = (0u64, 0u64);
    while got < n {
        while sent < n && sent - got < 64 {
            sent += 1;
            client.queue(ADD, 1, &1u64.to_le_bytes()).unwrap();
        }
        let reply = client.recv().unwrap();
        got += 1;
        assert_eq!(reply.status, ReplyStatus::Accepted);
    }
}

#[test]
fn no_allocation_per_message_on_the_network_path() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine_config(dir.path()), net_config(), Counter::default());
    let mut client = node.client();
    traffic(&mut client, 3_000);
    ARMED.store(true, Ordering::SeqCst);
    traffic(&mut client, 20_000);
    ARMED.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    let (state, _) = node.stop();
    assert_eq!(state.applied, 23_000);
    assert_eq!(allocations, 0, "allocations while serving 20 000 requests");
}
