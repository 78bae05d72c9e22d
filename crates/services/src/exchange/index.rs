//! Resting order id → order slot.
//!
//! The lookup every cancel, move and reduce starts with, so it is an open-addressing table
//! (linear probing, backward-shift deletion) in a power-of-two `Vec` rather than a `BTreeMap`:
//! one or two cache lines per lookup instead of a walk down four or five nodes. It stays
//! deterministic — a fixed multiplicative hash, no random state — and nothing observable ever
//! depends on its layout: it is never iterated, and snapshots save the books, not the index.
//!
//! It doubles at half load, but never rehashes all at once (that took 38 ms on the logic
//! thread at 1 M resting orders): the new table is a zeroed allocation (no pass over it), and
//! every insert and remove then moves the next [`MIGRATE_PER_OP`] entries of the old table
//! across, tombstoning them there, until all are moved. Meanwhile a lookup tries the new
//! table, then the old; afterwards the old table's memory is given back a slice at a time.
//! Sizing the table for `max_open_orders` up front was measured and rejected: 2²³ entries
//! spread a few thousand live ids over 128 MB, and the exchange pipeline ran at half speed
//! from cache and TLB misses.

/// Marks an empty entry; order ids are never 0 (0 in a place asks for an assigned id).
const EMPTY: u64 = 0;
/// The slot of a tombstone: an entry of the old table that was moved or removed during a
/// migration (its id is `EMPTY`, so no lookup matches it, but probes continue past it).
const TOMBSTONE: u32 = u32::MAX;
const MIN_CAPACITY: usize = 1024;
/// Old-table entries moved per insert or remove while a migration runs. A migration starts
/// when the new table (2C entries) is a quarter full (C/2 ids) and must end before it is half
/// full: at least C/2 inserts later, by which time 8 per insert have scanned all C old entries
/// four times over.
const MIGRATE_PER_OP: usize = 8;

/// Entries of a migrated-out table's memory released per insert or remove (64 KiB): freeing
/// a 32 MB table at once stalled the logic thread for ~3 ms.
const RELEASE_PER_OP: usize = 4096;

/// `(order id, slot)`. A tuple, not a struct: `vec!` of an all-zero tuple is a zeroed
/// allocation (calloc), so a new table costs no pass over its memory.
type Entry = (u64, u32);

const VACANT: Entry = (EMPTY, 0);

/// One open-addressing table.
#[derive(Debug, Clone)]
struct Table {
    entries: Vec<Entry>,
    len: usize,
    /// `64 - log2(capacity)`: the hash's top bits pick the home entry.
    shift: u32,
}

/// A map from order id to slot.
#[derive(Debug, Clone)]
pub(crate) struct OrderIndex {
    table: Table,
    /// The previous table while its entries move across, and the next position to move.
    old: Option<(Table, usize)>,
    /// The memory of the last migrated-out table, given back a slice per operation.
    retired: Vec<Entry>,
}

impl Default for OrderIndex {
    fn default() -> Self {
        OrderIndex {
            table: Table::with_capacity(MIN_CAPACITY),
            old: None,
            retired: Vec::new(),
        }
    }
}

impl Table {
    fn with_capacity(capacity: usize) -> Self {
        debug_assert!(capacity.is_power_of_two());
        Table {
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

    /// The entry holding `id`, or the empty (never a tombstone) entry ending its probe run.
    #[inline]
    fn find(&self, id: u64) -> usize {
        debug_assert_ne!(id, EMPTY);
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            let (e, slot) = self.entries[i];
            if e == id || (e == EMPTY && slot != TOMBSTONE) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn get(&self, id: u64) -> Option<u32> {
        let (e, slot) = self.entries[self.find(id)];
        (e != EMPTY).then_some(slot)
    }

    /// Adds an absent `id`; the caller keeps the table at most half full.
    fn insert(&mut self, id: u64, slot: u32) {
        debug_assert!((self.len + 1) * 2 <= self.entries.len());
        let i = self.find(id);
        debug_assert_eq!(self.entries[i].0, EMPTY, "order id {id} indexed twice");
        self.entries[i] = (id, slot);
        self.len += 1;
    }

    /// Removes `id`, returning its slot. Later entries of the probe run shift back into the
    /// hole, so lookups never need tombstones (a table being migrated uses `tombstone`).
    fn remove(&mut self, id: u64) -> Option<u32> {
        let mut hole = self.find(id);
        let (found, removed) = self.entries[hole];
        if found == EMPTY {
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
        Some(removed)
    }

    /// Removes the entry at `i` without moving any other: entries behind it stay where the
    /// migration scan expects them.
    fn tombstone(&mut self, i: usize) -> u32 {
        let (_, slot) = self.entries[i];
        self.entries[i] = (EMPTY, TOMBSTONE);
        self.len -= 1;
        slot
    }
}

impl OrderIndex {
    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.table.len + self.old.as_ref().map_or(0, |(old, _)| old.len)
    }

    /// The slot of `id` (`None` for id 0, which a request may name but no order has).
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<u32> {
        if id == EMPTY {
            return None;
        }
        match &self.old {
            None => self.table.get(id),
            Some((old, _)) => self.table.get(id).or_else(|| old.get(id)),
        }
    }

    /// Whether `id` is present.
    #[inline]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Adds `id` (which must be absent, and not 0).
    pub(crate) fn insert(&mut self, id: u64, slot: u32) {
        self.migrate(MIGRATE_PER_OP);
        if (self.len() + 1) * 2 > self.table.entries.len() {
            self.grow();
        }
        self.table.insert(id, slot);
    }

    /// Removes `id`, returning its slot.
    pub(crate) fn remove(&mut self, id: u64) -> Option<u32> {
        if id == EMPTY {
            return None;
        }
        self.migrate(MIGRATE_PER_OP);
        if let Some(slot) = self.table.remove(id) {
            return Some(slot);
        }
        let (old, _) = self.old.as_mut()?;
        let i = old.find(id);
        (old.entries[i].0 != EMPTY).then(|| old.tombstone(i))
    }

    /// Starts moving everything into a table twice the size (finishing a migration still
    /// running first, which the `MIGRATE_PER_OP` bound makes a never-taken path).
    #[cold]
    fn grow(&mut self) {
        self.migrate(usize::MAX);
        let bigger = Table::with_capacity(self.table.entries.len() * 2);
        let old = std::mem::replace(&mut self.table, bigger);
        self.old = Some((old, 0));
    }

    /// Moves up to `budget` entries of the old table (scanning live and dead entries alike)
    /// into the current one; drops the old table once it is all scanned.
    fn migrate(&mut self, budget: usize) {
        let Some((old, next)) = self.old.as_mut() else {
            self.release_retired();
            return;
        };
        let end = old.entries.len().min(next.saturating_add(budget));
        for i in *next..end {
            let (id, _) = old.entries[i];
            if id != EMPTY {
                let slot = old.tombstone(i);
                self.table.insert(id, slot);
            }
        }
        *next = end;
        if end == old.entries.len() {
            debug_assert_eq!(old.len, 0);
            if let Some((old, _)) = self.old.take() {
                self.retired = old.entries;
            }
        }
    }

    /// Shrinks the retired table's allocation by `RELEASE_PER_OP` entries (the allocator
    /// returns the tail pages), freeing it once empty.
    #[inline]
    fn release_retired(&mut self) {
        if self.retired.capacity() > 0 {
            let keep = self.retired.len().saturating_sub(RELEASE_PER_OP);
            self.retired.truncate(keep);
            self.retired.shrink_to(keep);
        }
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
    fn doubling_moves_a_few_entries_per_operation_and_lookups_see_both_tables() {
        let mut index = OrderIndex::default();
        let mut model = BTreeMap::new();
        let (mut migrating_steps, mut scanned) = (0u32, None::<usize>);
        for step in 1..=300_000u32 {
            let id = u64::from(step) * 7_919;
            index.insert(id, step);
            model.insert(id, step);
            if step % 3 == 0 {
                let victim = u64::from(step / 2) * 7_919;
                if let Some(slot) = model.remove(&victim) {
                    assert_eq!(index.remove(victim), Some(slot));
                }
            }
            match &index.old {
                Some((old, next)) => {
                    migrating_steps += 1;
                    // An insert and a remove each move at most MIGRATE_PER_OP entries.
                    let before = scanned.unwrap_or(0);
                    assert!(*next - before <= 2 * MIGRATE_PER_OP && *next <= old.entries.len());
                    scanned = Some(*next);
                    let probe = u64::from(step / 3) * 7_919;
                    assert_eq!(index.get(probe), model.get(&probe).copied());
                }
                None => scanned = None,
            }
            assert_eq!(index.len(), model.len());
        }
        assert!(
            migrating_steps > 10_000,
            "{migrating_steps} steps saw a migration"
        );
        for (&id, &slot) in &model {
            assert_eq!(index.get(id), Some(slot));
        }
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
