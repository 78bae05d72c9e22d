//! Thread pinning with `core_affinity`, read once, failing soft.
//!
//! `core_affinity::get_core_ids()` returns the *calling thread's* current mask, so it is read
//! once, before any thread is pinned, and shared. Pinning to a core that is not available, or a
//! refused `set_for_current`, logs a warning and the thread runs unpinned: never a panic.

use core_affinity::CoreId;
use std::sync::OnceLock;

/// The cores this process may run on, as seen before anything was pinned.
#[derive(Debug, Clone)]
pub struct Cores {
    ids: Vec<CoreId>,
}

impl Cores {
    /// Reads the available cores once per process (first caller wins).
    pub fn detect() -> Cores {
        static CORES: OnceLock<Vec<CoreId>> = OnceLock::new();
        Cores {
            ids: CORES
                .get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
                .clone(),
        }
    }

    /// How many cores are available.
    pub fn count(&self) -> usize {
        self.ids.len()
    }

    /// The available core ids, in the order the OS reported them.
    pub fn ids(&self) -> Vec<usize> {
        self.ids.iter().map(|c| c.id).collect()
    }

    /// Pins the calling thread to `core` (if `Some`). Returns whether it is now pinned;
    /// otherwise warns, naming `thread`, and leaves it unpinned.
    pub fn pin_current(&self, core: Option<usize>, thread: &str) -> bool {
        let Some(core) = core else { return false };
        let Some(id) = self.ids.iter().copied().find(|c| c.id == core) else {
            tracing::warn!(
                thread,
                core,
                available = self.ids.len(),
                "core not available to this process; running unpinned"
            );
            return false;
        };
        if core_affinity::set_for_current(id) {
            true
        } else {
            tracing::warn!(thread, core, "pinning refused by the OS; running unpinned");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_to_a_missing_core_warns_and_continues() {
        let cores = Cores::detect();
        let t = std::thread::spawn(move || cores.pin_current(Some(100_000), "test"));
        assert!(!t.join().unwrap());
        assert!(!Cores::detect().pin_current(None, "test"));
    }
}
