//! The ring's synchronization primitives, in one place: std's in every normal build, loom's
//! model types under `RUSTFLAGS="--cfg loom"`, so that `tests/loom_ring.rs` explores the
//! interleavings of the ring's real code (see `scripts/loom.sh`).
//!
//! Only what the ring's protocol is made of is switched: atomics, fences, parking, the
//! spin/yield hints and the slot cells. `Arc` stays std's (it is part of the public API).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
};
#[cfg(loom)]
pub(crate) use loom::{
    hint::spin_loop,
    thread::{current, yield_now, Thread},
};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
};
// `spin_loop` is a pause hint (under loom: a yield to the model's scheduler); `yield_now`
// gives the core away (under loom: to another modelled thread).
#[cfg(not(loom))]
pub(crate) use std::{
    hint::spin_loop,
    thread::{current, yield_now, Thread},
};

/// Blocks the calling thread until unparked or `timeout` (may also return spuriously).
/// Under loom there is no timeout: a wake-up the protocol loses shows up as a deadlock.
#[inline]
pub(crate) fn park_timeout(timeout: std::time::Duration) {
    #[cfg(not(loom))]
    std::thread::park_timeout(timeout);
    #[cfg(loom)]
    {
        let _ = timeout;
        loom::thread::park();
    }
}

/// Asks the CPU to start loading the cache line at `address`: a hint, which never faults and
/// changes no memory. A no-op off x86_64 and under loom.
#[inline(always)]
pub(crate) fn prefetch_read<T>(address: *const T) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: `prefetcht0` reads nothing architecturally and cannot fault, whatever the
    // address; SSE, which provides it, is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = address;
}

/// One slot of the ring: interior mutability whose accesses loom can check for races.
/// In a normal build it is `std::cell::UnsafeCell` and every access is a plain pointer.
#[derive(Debug)]
pub(crate) struct SlotCell<T> {
    #[cfg(not(loom))]
    cell: std::cell::UnsafeCell<T>,
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<T>,
}

#[cfg(not(loom))]
impl<T> SlotCell<T> {
    pub(crate) fn new(value: T) -> Self {
        SlotCell {
            cell: std::cell::UnsafeCell::new(value),
        }
    }

    /// Calls `f` with a pointer for shared reads of the slot.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.cell.get())
    }

    /// Calls `f` with a pointer for exclusive writes to the slot.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.cell.get())
    }
}

#[cfg(loom)]
impl<T> SlotCell<T> {
    pub(crate) fn new(value: T) -> Self {
        SlotCell {
            cell: loom::cell::UnsafeCell::new(value),
        }
    }

    /// Calls `f` with a pointer for shared reads of the slot (loom checks for a racing write).
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.cell.with(f)
    }

    /// Calls `f` with a pointer for exclusive writes (loom checks for any racing access).
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.cell.with_mut(f)
    }
}
