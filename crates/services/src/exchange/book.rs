//! One instrument's limit order book: price levels in a [`Ladder`] per side (a price-ordered
//! list and tree threaded through the level slots), each level an intrusive FIFO of orders
//! linked by slab indices. Orders and levels of every book live in one [`Arena`] of two slabs,
//! reserved for `max_open_orders` when the exchange is created, so trading reuses slots and
//! never allocates.

use super::events::{DepthLevel, TopOfBook};
use super::ladder::Ladder;
use super::messages::Side;

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
    /// The side's price tree (see [`Ladder`]).
    pub(crate) left: u32,
    pub(crate) right: u32,
    /// The neighbouring prices of the side, lower and higher.
    pub(crate) lower: u32,
    pub(crate) higher: u32,
    /// Height of this level's subtree in the price tree (a leaf is 1).
    pub(crate) height: u8,
}

/// A `Vec` of slots with a free list: indices stay valid until removed.
#[derive(Debug)]
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

/// A `Vec` with room for `capacity` items, or less when the memory cannot be had (it then
/// grows on demand like any `Vec`). Untouched capacity costs address space, not memory.
fn reserved<T>(capacity: usize) -> Vec<T> {
    let mut v = Vec::new();
    let _ = v.try_reserve_exact(capacity);
    v
}

/// A clone keeps the reserved capacity, so a cloned exchange does not allocate either.
impl<T: Copy> Clone for Slab<T> {
    fn clone(&self) -> Self {
        let mut items = reserved(self.items.capacity());
        items.extend_from_slice(&self.items);
        let mut free = reserved(self.free.capacity());
        free.extend_from_slice(&self.free);
        Slab { items, free }
    }
}

impl<T: Copy> Slab<T> {
    /// An empty slab with room for `capacity` slots (and as many free-list entries).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Slab {
            items: reserved(capacity),
            free: reserved(capacity),
        }
    }

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

impl Arena {
    /// Room for `max_open_orders` resting orders and as many levels (a level holds at least
    /// one order).
    pub(crate) fn with_capacity(max_open_orders: u32) -> Self {
        Arena {
            orders: Slab::with_capacity(max_open_orders as usize),
            levels: Slab::with_capacity(max_open_orders as usize),
        }
    }
}

/// One instrument's two sides.
#[derive(Debug, Clone, Default)]
pub(crate) struct Book {
    sides: [Ladder; 2],
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
        let ladder = &self.sides[side.index()];
        match side {
            Side::Buy => ladder.highest(),
            Side::Sell => ladder.lowest(),
        }
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

    /// The level slot of `side` at `price` (`NIL` when none).
    pub(crate) fn level_at(&self, arena: &Arena, side: Side, price: u64) -> u32 {
        self.sides[side.index()].find(&arena.levels, price)
    }

    /// Whether `side` has a level at `price`.
    pub(crate) fn has_level(&self, arena: &Arena, side: Side, price: u64) -> bool {
        self.level_at(arena, side, price) != NIL
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
        let ladder = &mut self.sides[order.side.index()];
        let level_slot = match ladder.locate(&arena.levels, order.price) {
            Ok(level) => level,
            Err((lower, higher)) => {
                let slot = arena.levels.insert(Level::new(order.price));
                ladder.insert(&mut arena.levels, slot, lower, higher);
                slot
            }
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
            self.sides[order.side.index()].remove(&mut arena.levels, order.level);
            arena.levels.remove(order.level);
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
        self.level_slots(arena, side)
            .map(|slot| arena.levels.get(slot))
            .take_while(|level| crosses(side.opposite(), limit, level.price))
            .any(|level| {
                sum = sum.saturating_add(level.total);
                sum >= qty
            })
    }

    /// Level slots of `side`, best first.
    pub(crate) fn level_slots<'a>(&self, arena: &'a Arena, side: Side) -> LevelSlots<'a> {
        LevelSlots {
            levels: &arena.levels,
            next: self.best(side),
            side,
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
        self.level_slots(arena, side)
            .take(depth)
            .map(level)
            .collect()
    }

    /// Fills `out` with up to `out.len()` levels of `side`, best first; returns how many.
    pub(crate) fn depth_into(&self, arena: &Arena, side: Side, out: &mut [DepthLevel]) -> usize {
        let mut n = 0;
        for (slot, entry) in self.level_slots(arena, side).zip(out.iter_mut()) {
            let l = arena.levels.get(slot);
            *entry = DepthLevel {
                price: l.price,
                qty: l.total,
                orders: l.count,
            };
            n += 1;
        }
        n
    }

    /// Order slots of `side` in priority order (best price first, oldest first).
    pub(crate) fn order_slots(&self, arena: &Arena, side: Side) -> Vec<u32> {
        let mut out = Vec::new();
        for level in self.level_slots(arena, side) {
            let mut slot = arena.levels.get(level).head;
            while slot != NIL {
                out.push(slot);
                slot = arena.orders.get(slot).next;
            }
        }
        out
    }
}

impl Level {
    /// An empty level at `price`, not yet on a side.
    pub(super) fn new(price: u64) -> Self {
        Level {
            price,
            total: 0,
            count: 0,
            head: NIL,
            tail: NIL,
            left: NIL,
            right: NIL,
            lower: NIL,
            higher: NIL,
            height: 0,
        }
    }
}

/// The level slots of one side, best first (a walk of the side's price list).
pub(crate) struct LevelSlots<'a> {
    levels: &'a Slab<Level>,
    next: u32,
    side: Side,
}

impl Iterator for LevelSlots<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        let slot = self.next;
        if slot == NIL {
            return None;
        }
        let level = self.levels.get(slot);
        self.next = match self.side {
            Side::Buy => level.lower,
            Side::Sell => level.higher,
        };
        Some(slot)
    }
}
