//! Resting order id → order slot.
//!
//! The lookup every cancel, move and reduce starts with, so it is an open-addressing table
//! (linear probing, backward-shift deletion) in a power-of-two `Vec` rather than a `BTreeMap`:
//! one or two cache lines per lookup instead of a walk down four or five nodes. It stays
//! deterministic — a fixed multiplicative hash, no random state — and nothing observable ever
//! depends on its layout: it is never iterated, and snapshots save the books, not the index.
//!
//! It is allocated once, for the exchange's `max_open_orders`: the next power of two ≥ twice
//! that many entries (16 bytes each), so it is never more than half full and never grows —
//! no rehash on the business-logic thread. The allocation is zeroed (an empty entry is all
//! zeros), so untouched pages cost address space only until written or pre-faulted.

use std::collections::TryReserveError;

/// Marks an empty entry; order ids are never 0 (0 in a place asks for an assigned id).
const EMPTY: u64 = 0;

/// `(order id, slot)`. A tuple of integers, not a struct: `vec!` of an all-zero tuple is a
/// zeroed allocation (calloc), which is what keeps the untouched part of the table off the
/// resident set.
type Entry = (u64, u32);

const VACANT: Entry = (EMPTY, 0);

/// A map from order id to slot.
#[derive(Debug, Clone)]
pub(crate) struct OrderIndex {
    entries: Vec<Entry>,
    len: usize,
    /// `64 - log2(capacity)`: the hash's top bits pick the home entry.
    shift: u32,
}

impl OrderIndex {
    /// An empty index for up to `max_ids` ids, allocated now and never again.
    ///
    /// `vec!` aborts when the allocator refuses; reserving the same size first (and freeing
    /// it at once) turns a limit that does not fit in memory into an error instead.
    pub(crate) fn reserved(max_ids: u32) -> Result<Self, TryReserveError> {
        let wanted = (max_ids as usize).saturating_mul(2).max(2);
        let capacity = wanted.checked_next_power_of_two().unwrap_or(usize::MAX);
        Vec::<Entry>::new().try_reserve_exact(capacity)?;
        Ok(OrderIndex {
            entries: vec![VACANT; capacity],
            len: 0,
            shift: 64 - capacity.trailing_zeros(),
        })
    }

    /// Writes every page of the table now, so no lookup or insert takes a first-touch page
    /// fault later. The contents do not change: empty entries are rewritten empty.
    pub(crate) fn prefault(&mut self) {
        if self.len == 0 {
            self.entries.fill(VACANT); // one write pass, no read fault first
            return;
        }
        for e in &mut self.entries {
            if e.0 == EMPTY {
                *e = VACANT;
            }
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
            let e = self.entries[i].0;
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
        let (found, slot) = self.entries[self.find(id)];
        (found != EMPTY).then_some(slot)
    }

    /// Whether `id` is present.
    #[inline]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Adds `id` (which must be absent, and not 0). Never grows: the exchange refuses a
    /// resting order beyond `max_open_orders`, so the table stays at most half full.
    pub(crate) fn insert(&mut self, id: u64, slot: u32) {
        debug_assert!(
            (self.len + 1) * 2 <= self.entries.len(),
            "order index beyond its limit"
        );
        let i = self.find(id);
        debug_assert_eq!(self.entries[i].0, EMPTY, "order id {id} indexed twice");
        self.entries[i] = (id, slot);
        self.len += 1;
    }

    /// Removes `id`, returning its slot. Later entries of the probe run shift back into the
    /// hole, so lookups never need tombstones.
    pub(crate) fn remove(&mut self, id: u64) -> Option<u32> {
        if id == EMPTY {
            return None;
        }
        let mut hole = self.find(id);
        let removed = self.entries[hole];
        if removed.0 == EMPTY {
            return None;
        }
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e.0 == EMPTY {
                break;
            }
            // Move `e` into the hole unless its home lies cyclically in (hole, j].
            let home = self.home(e.0);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = VACANT;
        self.len -= 1;
        Some(removed.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_a_btreemap_under_churn() {
        // At most 5_000 small ids and ~12_500 huge ones are present at once.
        let mut index = OrderIndex::reserved(20_000).unwrap();
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
        let mut index = OrderIndex::reserved(4).unwrap();
        index.insert(7, 1);
        assert_eq!(index.get(0), None);
        assert!(!index.contains(0));
        assert_eq!(index.remove(0), None);
        assert_eq!(index.get(7), Some(1));
    }

    #[test]
    fn is_allocated_once_and_never_reallocates_up_to_its_limit() {
        let max = 1_000u32;
        let mut index = OrderIndex::reserved(max).unwrap();
        assert_eq!(index.entries.len(), 2048, "next power of two of 2 × max");
        let (ptr, capacity) = (index.entries.as_ptr(), index.entries.capacity());
        index.prefault();
        // Sequential ids, then churn at the limit with strided ones.
        for id in 1..=u64::from(max) {
            index.insert(id, id as u32);
        }
        for round in 0..20u64 {
            for id in (1..=u64::from(max)).filter(|id| id % 20 == round) {
                let slot = index.remove(id).unwrap();
                index.insert((id << 32) | round, slot);
            }
            assert_eq!(index.len(), max as usize);
        }
        index.prefault(); // rewrites only empty entries
        assert_eq!(index.len(), max as usize);
        assert_eq!(index.get((7 << 32) | 7), Some(7));
        assert_eq!(index.get(7), None);
        assert_eq!(
            (index.entries.as_ptr(), index.entries.capacity()),
            (ptr, capacity)
        );
        // No limit at all still leaves an empty entry for lookups to stop at.
        let empty = OrderIndex::reserved(0).unwrap();
        assert_eq!(empty.entries.len(), 2);
        assert_eq!(empty.get(5), None);
    }
}
