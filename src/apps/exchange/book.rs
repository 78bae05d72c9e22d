//! One instrument's limit order book: price levels in a `BTreeMap<price, level slot>` per
//! side, each level an intrusive FIFO of orders linked by slab indices. Orders and levels of
//! every book live in one [`Arena`] of two slabs, so steady-state trading reuses slots instead
//! of allocating.

use super::events::{DepthLevel, TopOfBook};
use super::messages::Side;
use std::collections::BTreeMap;

/// "No slot" in the intrusive links.
pub(crate) const NIL: u32 = u32::MAX;

/// A resting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Order {
    pub(crate) id: u64,
    pub(crate) price: u64,
    pub(crate) remaining: u64,
    pub(crate) account: u32,
    pub(crate) instrument: u32,
    pub(crate) side: Side,
    pub(crate) level: u32,
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

/// All orders at one price of one side, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Level {
    pub(crate) price: u64,
    pub(crate) total: u64,
    pub(crate) count: u32,
    pub(crate) head: u32,
    pub(crate) tail: u32,
}

/// A `Vec` of slots with a free list: indices stay valid until removed.
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    items: Vec<T>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T: Copy> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.items[slot as usize] = value;
                slot
            }
            None => {
                self.items.push(value);
                (self.items.len() - 1) as u32
            }
        }
    }

    pub(crate) fn remove(&mut self, slot: u32) {
        debug_assert!((slot as usize) < self.items.len() && !self.free.contains(&slot));
        self.free.push(slot);
    }

    #[inline]
    pub(crate) fn get(&self, slot: u32) -> &T {
        &self.items[slot as usize]
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut T {
        &mut self.items[slot as usize]
    }

    /// Slots in use.
    pub(crate) fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
}

/// Orders and levels of all books.
#[derive(Debug, Clone, Default)]
pub(crate) struct Arena {
    pub(crate) orders: Slab<Order>,
    pub(crate) levels: Slab<Level>,
}

/// One instrument's two sides, with the best level of each cached.
#[derive(Debug, Clone)]
pub(crate) struct Book {
    sides: [BTreeMap<u64, u32>; 2],
    best: [u32; 2],
}

impl Default for Book {
    fn default() -> Self {
        Book {
            sides: [BTreeMap::new(), BTreeMap::new()],
            best: [NIL, NIL],
        }
    }
}

/// Whether a taker on `side` with limit `limit` trades against a level at `price`.
#[inline]
pub(crate) fn crosses(side: Side, limit: u64, price: u64) -> bool {
    match side {
        Side::Buy => price <= limit,
        Side::Sell => price >= limit,
    }
}

impl Book {
    /// The best level slot of `side` (`NIL` when empty).
    #[inline]
    pub(crate) fn best(&self, side: Side) -> u32 {
        self.best[side.index()]
    }

    /// The best price of `side`, if any.
    #[inline]
    pub(crate) fn best_price(&self, arena: &Arena, side: Side) -> Option<u64> {
        let slot = self.best(side);
        (slot != NIL).then(|| arena.levels.get(slot).price)
    }

    /// Levels on `side`.
    pub(crate) fn level_count(&self, side: Side) -> usize {
        self.sides[side.index()].len()
    }

    /// Whether `side` has a level at `price`.
    pub(crate) fn has_level(&self, side: Side, price: u64) -> bool {
        self.sides[side.index()].contains_key(&price)
    }

    /// Best bid and ask with their sizes.
    #[inline]
    pub(crate) fn top(&self, arena: &Arena, instrument: u32) -> TopOfBook {
        let side = |s: Side| match self.best(s) {
            NIL => (0, 0),
            slot => {
                let level = arena.levels.get(slot);
                (level.price, level.total)
            }
        };
        let (bid_price, bid_qty) = side(Side::Buy);
        let (ask_price, ask_qty) = side(Side::Sell);
        TopOfBook {
            instrument,
            bid_price,
            bid_qty,
            ask_price,
            ask_qty,
        }
    }

    /// Appends the order in `slot` to the back of its price's queue, creating the level.
    pub(crate) fn push(&mut self, arena: &mut Arena, slot: u32) {
        let order = *arena.orders.get(slot);
        let side = order.side.index();
        let level_slot = match self.sides[side].get(&order.price) {
            Some(&level) => level,
            None => self.new_level(arena, order.side, order.price),
        };
        let level = arena.levels.get_mut(level_slot);
        let tail = level.tail;
        level.tail = slot;
        level.total += order.remaining;
        level.count += 1;
        if tail == NIL {
            level.head = slot;
        } else {
            arena.orders.get_mut(tail).next = slot;
        }
        let o = arena.orders.get_mut(slot);
        o.level = level_slot;
        o.prev = tail;
        o.next = NIL;
    }

    fn new_level(&mut self, arena: &mut Arena, side: Side, price: u64) -> u32 {
        let level = Level {
            price,
            total: 0,
            count: 0,
            head: NIL,
            tail: NIL,
        };
        let slot = arena.levels.insert(level);
        self.sides[side.index()].insert(price, slot);
        let best = self.best[side.index()];
        // A better price than the current best: higher for bids, lower for asks.
        if best == NIL || crosses(side, price, arena.levels.get(best).price) {
            self.best[side.index()] = slot;
        }
        slot
    }

    /// Takes the order in `slot` out of its level (the slot itself stays allocated), and
    /// removes the level when it empties.
    pub(crate) fn unlink(&mut self, arena: &mut Arena, slot: u32) {
        let order = *arena.orders.get(slot);
        if order.prev != NIL {
            arena.orders.get_mut(order.prev).next = order.next;
        }
        if order.next != NIL {
            arena.orders.get_mut(order.next).prev = order.prev;
        }
        let level = arena.levels.get_mut(order.level);
        if level.head == slot {
            level.head = order.next;
        }
        if level.tail == slot {
            level.tail = order.prev;
        }
        level.total -= order.remaining;
        level.count -= 1;
        if level.count == 0 {
            self.remove_level(arena, order.side, order.level);
        }
    }

    fn remove_level(&mut self, arena: &mut Arena, side: Side, slot: u32) {
        let price = arena.levels.get(slot).price;
        let map = &mut self.sides[side.index()];
        map.remove(&price);
        arena.levels.remove(slot);
        if self.best[side.index()] == slot {
            let next = match side {
                Side::Buy => map.last_key_value(),
                Side::Sell => map.first_key_value(),
            };
            self.best[side.index()] = next.map_or(NIL, |(_, &s)| s);
        }
    }

    /// Lowers the resting order in `slot` by `qty` (< its remaining) in place.
    pub(crate) fn shrink(&mut self, arena: &mut Arena, slot: u32, qty: u64) {
        let order = arena.orders.get_mut(slot);
        debug_assert!(qty < order.remaining);
        order.remaining -= qty;
        let level = order.level;
        arena.levels.get_mut(level).total -= qty;
    }

    /// Whether the levels of `side` that a taker with `limit` crosses hold at least `qty`.
    pub(crate) fn can_fill(&self, arena: &Arena, side: Side, limit: u64, qty: u64) -> bool {
        let mut sum = 0u64;
        let mut add = |slot: &u32| {
            sum = sum.saturating_add(arena.levels.get(*slot).total);
            sum >= qty
        };
        match side {
            Side::Buy => self.sides[side.index()]
                .range(limit..)
                .rev()
                .any(|(_, s)| add(s)),
            Side::Sell => self.sides[side.index()]
                .range(..=limit)
                .any(|(_, s)| add(s)),
        }
    }

    /// Level slots of `side`, best first.
    pub(crate) fn level_slots(&self, side: Side) -> Box<dyn Iterator<Item = u32> + '_> {
        let map = &self.sides[side.index()];
        match side {
            Side::Buy => Box::new(map.values().rev().copied()),
            Side::Sell => Box::new(map.values().copied()),
        }
    }

    /// Up to `depth` levels of `side`, best first.
    pub(crate) fn depth(&self, arena: &Arena, side: Side, depth: usize) -> Vec<DepthLevel> {
        let level = |slot: u32| {
            let l = arena.levels.get(slot);
            DepthLevel {
                price: l.price,
                qty: l.total,
                orders: l.count,
            }
        };
        self.level_slots(side).take(depth).map(level).collect()
    }

    /// Order slots of `side` in priority order (best price first, oldest first).
    pub(crate) fn order_slots(&self, arena: &Arena, side: Side) -> Vec<u32> {
        let mut out = Vec::new();
        for level in self.level_slots(side) {
            let mut slot = arena.levels.get(level).head;
            while slot != NIL {
                out.push(slot);
                slot = arena.orders.get(slot).next;
            }
        }
        out
    }
}
