//! Pinning plans for the benchmarks: which of the usable cores each harness thread gets.
//!
//! Reading the usable cores and pinning are the engine's ([`keel::engine::Cores`]: read once
//! per process, before anything is pinned, since `core_affinity::get_core_ids()` reports the
//! *calling thread's* mask; a refused pin warns and the thread runs unpinned). This module adds
//! only the benchmarks' rules: a request that cannot be met (unknown core, more threads than
//! cores) is logged with `tracing::warn!` and the thread runs unpinned.

use keel::engine::Cores;

/// The cores this process may run on, read once before any thread is pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreSet {
    ids: Vec<usize>,
}

impl CoreSet {
    /// The usable core ids, as the engine read them once per process (see the module docs).
    /// An unreadable list (unsupported platform) is an empty set: nothing will be pinned.
    pub fn detect() -> Self {
        let ids = Cores::detect().ids();
        if ids.is_empty() {
            tracing::warn!("cannot read the usable cores; threads will not be pinned");
        }
        CoreSet { ids }
    }

    /// A set with exactly these ids (for tests and for callers that already know them).
    pub fn from_ids(ids: Vec<usize>) -> Self {
        CoreSet { ids }
    }

    /// Number of usable cores.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no core could be read.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The usable core ids, in the order the OS reported them.
    pub fn ids(&self) -> &[usize] {
        &self.ids
    }

    /// The usable core ids as a person reads them: `0, 1, 2` (`none` when empty).
    fn listed(&self) -> String {
        let ids: Vec<String> = self.ids.iter().map(usize::to_string).collect();
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        }
    }

    /// Whether `id` is one of the usable cores.
    pub fn contains(&self, id: usize) -> bool {
        self.ids.contains(&id)
    }

    /// Checks one pinning request per thread (`None` = leave that thread unpinned) and returns
    /// the cores to use. If more threads ask for a core than there are usable cores, it warns
    /// and leaves *every* thread unpinned (pinning two spinning threads onto one core would be
    /// worse than letting the scheduler place them). An unknown core id leaves just that thread
    /// unpinned, with a warning.
    pub fn plan(&self, requests: &[(&str, Option<usize>)]) -> Vec<Option<usize>> {
        let wanted = requests.iter().filter(|(_, core)| core.is_some()).count();
        if wanted > self.len() {
            tracing::warn!(
                "{wanted} threads asked to be pinned but only {} core(s) are usable; \
                 continuing unpinned",
                self.len()
            );
            return vec![None; requests.len()];
        }
        let mut planned = Vec::with_capacity(requests.len());
        for (i, &(thread, core)) in requests.iter().enumerate() {
            let core = core.filter(|&id| {
                let known = self.contains(id);
                if !known {
                    tracing::warn!(
                        "core {id} for thread {thread} is not usable (usable: {}); \
                         leaving it unpinned",
                        self.listed()
                    );
                }
                known
            });
            if let Some(id) = core.filter(|_| planned[..i].contains(&core)) {
                tracing::warn!("thread {thread} shares core {id} with another thread");
            }
            planned.push(core);
        }
        planned
    }
}

/// Pins the calling thread to `core` (`None` does nothing) and returns whether it is pinned
/// ([`Cores::pin_current`]: a core not available or a refusal by the OS is logged and the
/// thread carries on unpinned).
pub fn pin_current_thread(core: Option<usize>, thread: &str) -> bool {
    Cores::detect().pin_current(core, thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_requests_than_cores_pins_nothing() {
        let one = CoreSet::from_ids(vec![0]);
        assert_eq!(
            one.plan(&[("a", Some(0)), ("b", Some(1))]),
            vec![None, None]
        );
    }

    #[test]
    fn unknown_core_leaves_only_that_thread_unpinned() {
        let two = CoreSet::from_ids(vec![0, 1]);
        assert_eq!(
            two.plan(&[("a", Some(0)), ("b", Some(7))]),
            vec![Some(0), None]
        );
        assert_eq!(
            two.plan(&[("a", None), ("b", Some(1))]),
            vec![None, Some(1)]
        );
    }

    #[test]
    fn usable_cores_are_listed_for_people() {
        assert_eq!(CoreSet::from_ids(vec![0, 1, 3]).listed(), "0, 1, 3");
        assert_eq!(CoreSet::from_ids(Vec::new()).listed(), "none");
    }

    #[test]
    fn empty_set_never_pins() {
        let none = CoreSet::from_ids(Vec::new());
        assert!(none.is_empty());
        assert_eq!(none.plan(&[("a", Some(0))]), vec![None]);
        assert!(!pin_current_thread(None, "test"));
    }
}
