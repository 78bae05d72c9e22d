//! Resting order id → order slot.
//!
//! The lookup every cancel, move and reduce starts with, so it is an open-addressing table
//! (linear probing, backward-shift deletion) in a power-of-two `Vec` rather than a `BTreeMap`:
//! one or two cache lines per lookup instead of a walk down four or five nodes. It stays
//! deterministic — a fixed multiplicative hash, no random state — and nothing observable ever
//! depends on its layout: it is never iterated, and snapshots save the books, not the index.
//! It doubles (rehashing, a deterministic function of its contents) at half load.

/// Marks an empty entry; order ids are never 0 (0 in a place asks for an assigned id).
const EMPTY: u64 = 0;
const MIN_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    slot: u32,
}

const VACANT: Entry = Entry { id: EMPTY, slot: 0 };

/// A map from order id to slot.
#[derive(Debug, Clone)]
pub(crate) struct OrderIndex {
    entries: Vec<Entry>,
    len: usize,
    /// `64 - log2(capacity)`: the hash's top bits pick the home entry.
    shift: u32,
}

impl Default for OrderIndex {
    fn default() -> Self {
        OrderIndex::with_capacity(MIN_CAPACITY)
    }
}

impl OrderIndex {
    fn with_capacity(capacity: usize) -> Self {
        debug_assert!(capacity.is_power_of_two());
        OrderIndex {
            entries: vec![VACANT; capacity],
            len: 0,
            shift: 64 - capacity.trailing_zeros(),
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// Fibonacci hashing: good spread for sequential and strided ids alike.
    #[inline]
    fn home(&self, id: u64) -> usize {
        ((id ^ (id >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// The entry holding `id`, or the empty entry where it would go.
    #[inline]
    fn find(&self, id: u64) -> usize {
        debug_assert_ne!(id, EMPTY);
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            let e = self.entries[i].id;
            if e == id || e == EMPTY {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot of `id` (`None` for id 0, which a request may name but no order has).
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<u32> {
        if id == EMPTY {
            return None;
        }
        let e = self.entries[self.find(id)];
        (e.id != EMPTY).then_some(e.slot)
    }

    /// Whether `id` is present.
    #[inline]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Adds `id` (which must be absent, and not 0).
    pub(crate) fn insert(&mut self, id: u64, slot: u32) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        let i = self.find(id);
        debug_assert_eq!(self.entries[i].id, EMPTY, "order id {id} indexed twice");
        self.entries[i] = Entry { id, slot };
        self.len += 1;
    }

    fn grow(&mut self) {
        let mut bigger = OrderIndex::with_capacity(self.entries.len() * 2);
        for e in self.entries.iter().filter(|e| e.id != EMPTY) {
            let i = bigger.find(e.id);
            bigger.entries[i] = *e;
        }
        bigger.len = self.len;
        *self = bigger;
    }

    /// Removes `id`, returning its slot. Later entries of the probe run shift back into the
    /// hole, so lookups never need tombstones.
    pub(crate) fn remove(&mut self, id: u64) -> Option<u32> {
        if id == EMPTY {
            return None;
        }
        let mut hole = self.find(id);
        let removed = self.entries[hole];
        if removed.id == EMPTY {
            return None;
        }
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e.id == EMPTY {
                break;
            }
            // Move `e` into the hole unless its home lies cyclically in (hole, j].
            let home = self.home(e.id);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = VACANT;
        self.len -= 1;
        Some(removed.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_a_btreemap_under_churn() {
        let mut index = OrderIndex::default();
        let mut model = BTreeMap::new();
        let mut x = 1u64;
        for step in 0..200_000u32 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // A small id space (plus some huge ids) forces collisions, reuse and long runs.
            let id = if x >> 60 == 0 {
                x | 1 << 63
            } else {
                1 + (x >> 33) % 5_000
            };
            if let Some(slot) = model.remove(&id) {
                assert_eq!(index.remove(id), Some(slot));
            } else {
                index.insert(id, step);
                model.insert(id, step);
            }
            assert_eq!(index.len(), model.len());
        }
        for (&id, &slot) in &model {
            assert_eq!(index.get(id), Some(slot));
        }
        assert_eq!(index.get(999_999), None);
    }

    #[test]
    fn id_0_is_absent_not_a_precondition() {
        // Fuzz finding (`exchange_decoder`): a cancel, move or reduce naming order 0 reached
        // `find(0)`, whose debug assertion fired (in release it happened to answer `None`).
        let mut index = OrderIndex::default();
        index.insert(7, 1);
        assert_eq!(index.get(0), None);
        assert!(!index.contains(0));
        assert_eq!(index.remove(0), None);
        assert_eq!(index.get(7), Some(1));
    }
}
