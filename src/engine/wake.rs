//! The response receiver's wake hook, and the slot through which the engine's stages call it.
//!
//! A host that sleeps outside the output ring (the network thread in `epoll`) must be woken
//! when responses become available. Which stage makes them available depends on the mode:
//! the business logic publishes them, and in apply-ahead mode the stage that advances the
//! output consumer's gate (the group-commit syncer under `batch`, the journaler under `none`
//! and `interval:MS`) releases them. Each of those calls [`WakeSlot::wake`] at the end of its
//! batch; the hook itself is set late, by whoever takes the [`super::ResponseReceiver`], so the
//! order in which a host starts the engine and its consumer does not matter.

use std::sync::{Arc, OnceLock};

/// Called after responses become available; must be cheap and must not block (check a
/// "sleeping" flag before making a system call).
pub type WakeHook = Arc<dyn Fn() + Send + Sync>;

/// [`super::ResponseReceiver::set_wake_hook`] was called on a receiver that already has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the response receiver already has a wake hook (it can be set once)")]
pub struct WakeHookAlreadySet;

/// The engine's half of the hook: empty until the receiver's owner sets it.
#[derive(Default)]
pub(crate) struct WakeSlot {
    hook: OnceLock<WakeHook>,
}

impl WakeSlot {
    /// Calls the hook if one is set (one Acquire load when none is).
    #[inline]
    pub(crate) fn wake(&self) {
        if let Some(hook) = self.hook.get() {
            hook();
        }
    }

    pub(crate) fn set(&self, hook: WakeHook) -> Result<(), WakeHookAlreadySet> {
        self.hook.set(hook).map_err(|_| WakeHookAlreadySet)
    }

    pub(crate) fn is_set(&self) -> bool {
        self.hook.get().is_some()
    }
}

impl std::fmt::Debug for WakeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeSlot")
            .field("set", &self.is_set())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn the_hook_is_called_once_set_and_can_be_set_once() {
        let slot = WakeSlot::default();
        slot.wake(); // nothing set: nothing to do
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        slot.set(Arc::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }))
        .unwrap();
        slot.wake();
        slot.wake();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(slot.set(Arc::new(|| {})), Err(WakeHookAlreadySet));
    }
}
