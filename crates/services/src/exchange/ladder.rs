//! One side's price levels, ordered by price, with no allocation of its own.
//!
//! The levels live in the exchange's level slab (reserved for `max_open_orders` at start: a
//! level holds at least one resting order, so there are never more levels than orders). A
//! side threads two structures through those slots, both by slab index:
//!
//! - a doubly linked list in ascending price order (`lower` / `higher`), giving the best level
//!   of either side, the next best when it empties, and best-first walks in O(1) per step;
//! - an AVL tree keyed by price (`left` / `right` / `height`), giving lookup and insertion
//!   point in O(log n) with a guaranteed depth (≤ 1.44 log₂ n: 25 at 100,000 levels), so the
//!   recursion on it stays shallow however prices are chosen.
//!
//! It replaces a `BTreeMap<price, slot>`, which allocated a node whenever a level appeared.

use super::book::{Level, Slab, NIL};

/// The levels of one side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ladder {
    root: u32,
    lowest: u32,
    highest: u32,
    len: u32,
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder {
            root: NIL,
            lowest: NIL,
            highest: NIL,
            len: 0,
        }
    }
}

impl Ladder {
    /// Levels on this side.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// The lowest-priced level (`NIL` when empty).
    #[inline]
    pub(crate) fn lowest(&self) -> u32 {
        self.lowest
    }

    /// The highest-priced level (`NIL` when empty).
    #[inline]
    pub(crate) fn highest(&self) -> u32 {
        self.highest
    }

    /// The level at `price` (`NIL` when none).
    pub(crate) fn find(&self, levels: &Slab<Level>, price: u64) -> u32 {
        let mut node = self.root;
        while node != NIL {
            let level = levels.get(node);
            if level.price == price {
                return node;
            }
            // A select rather than a three-way branch: the descent's direction is random.
            node = if price < level.price {
                level.left
            } else {
                level.right
            };
        }
        NIL
    }

    /// The level at `price`, or else the levels just below and above it: `Ok(slot)` or
    /// `Err((lower, higher))` (either `NIL` at an end), in one descent.
    pub(crate) fn locate(&self, levels: &Slab<Level>, price: u64) -> Result<u32, (u32, u32)> {
        let (mut lower, mut higher, mut node) = (NIL, NIL, self.root);
        while node != NIL {
            let level = levels.get(node);
            if level.price == price {
                return Ok(node);
            }
            if price < level.price {
                (higher, node) = (node, level.left);
            } else {
                (lower, node) = (node, level.right);
            }
        }
        Err((lower, higher))
    }

    /// Adds the level in `slot` (its price is not on this side yet; its links are unset)
    /// between `lower` and `higher`, as [`Ladder::locate`] found them.
    pub(crate) fn insert(&mut self, levels: &mut Slab<Level>, slot: u32, lower: u32, higher: u32) {
        let price = levels.get(slot).price;
        debug_assert_eq!(self.locate(levels, price), Err((lower, higher)));
        let level = levels.get_mut(slot);
        (level.left, level.right, level.height) = (NIL, NIL, 1);
        (level.lower, level.higher) = (lower, higher);
        match lower {
            NIL => self.lowest = slot,
            l => levels.get_mut(l).higher = slot,
        }
        match higher {
            NIL => self.highest = slot,
            h => levels.get_mut(h).lower = slot,
        }
        self.root = insert(levels, self.root, slot, price);
        self.len += 1;
    }

    /// Takes the level in `slot` off this side (the slot itself stays allocated).
    pub(crate) fn remove(&mut self, levels: &mut Slab<Level>, slot: u32) {
        let level = *levels.get(slot);
        match level.lower {
            NIL => self.lowest = level.higher,
            l => levels.get_mut(l).higher = level.higher,
        }
        match level.higher {
            NIL => self.highest = level.lower,
            h => levels.get_mut(h).lower = level.lower,
        }
        self.root = remove(levels, self.root, level.price);
        self.len -= 1;
    }
}

#[inline]
fn height(levels: &Slab<Level>, node: u32) -> u8 {
    match node {
        NIL => 0,
        n => levels.get(n).height,
    }
}

/// Recomputes `node`'s height from its children and restores the AVL balance at it.
/// Returns the subtree's new root.
fn rebalance(levels: &mut Slab<Level>, node: u32) -> u32 {
    let Level { left, right, .. } = *levels.get(node);
    let (hl, hr) = (height(levels, left), height(levels, right));
    if hl > hr + 1 {
        let l = *levels.get(left);
        if height(levels, l.left) < height(levels, l.right) {
            levels.get_mut(node).left = rotate_left(levels, left);
        }
        return rotate_right(levels, node);
    }
    if hr > hl + 1 {
        let r = *levels.get(right);
        if height(levels, r.right) < height(levels, r.left) {
            levels.get_mut(node).right = rotate_right(levels, right);
        }
        return rotate_left(levels, node);
    }
    levels.get_mut(node).height = 1 + hl.max(hr);
    node
}

fn update_height(levels: &mut Slab<Level>, node: u32) {
    let Level { left, right, .. } = *levels.get(node);
    let h = 1 + height(levels, left).max(height(levels, right));
    levels.get_mut(node).height = h;
}

fn rotate_right(levels: &mut Slab<Level>, node: u32) -> u32 {
    let l = levels.get(node).left;
    levels.get_mut(node).left = levels.get(l).right;
    levels.get_mut(l).right = node;
    update_height(levels, node);
    update_height(levels, l);
    l
}

fn rotate_left(levels: &mut Slab<Level>, node: u32) -> u32 {
    let r = levels.get(node).right;
    levels.get_mut(node).right = levels.get(r).left;
    levels.get_mut(r).left = node;
    update_height(levels, node);
    update_height(levels, r);
    r
}

/// Inserts `slot` (priced `price`) under `node`; returns the subtree's new root.
fn insert(levels: &mut Slab<Level>, node: u32, slot: u32, price: u64) -> u32 {
    if node == NIL {
        return slot;
    }
    if price < levels.get(node).price {
        let left = insert(levels, levels.get(node).left, slot, price);
        levels.get_mut(node).left = left;
    } else {
        let right = insert(levels, levels.get(node).right, slot, price);
        levels.get_mut(node).right = right;
    }
    rebalance(levels, node)
}

/// Removes the level priced `price` from under `node`; returns the subtree's new root.
fn remove(levels: &mut Slab<Level>, node: u32, price: u64) -> u32 {
    debug_assert_ne!(node, NIL, "price level {price} is not in the tree");
    let level = *levels.get(node);
    match price.cmp(&level.price) {
        std::cmp::Ordering::Less => {
            levels.get_mut(node).left = remove(levels, level.left, price);
        }
        std::cmp::Ordering::Greater => {
            levels.get_mut(node).right = remove(levels, level.right, price);
        }
        std::cmp::Ordering::Equal => {
            if level.left == NIL {
                return level.right;
            }
            if level.right == NIL {
                return level.left;
            }
            // The in-order successor takes the removed node's place.
            let (right, successor) = remove_min(levels, level.right);
            let s = levels.get_mut(successor);
            (s.left, s.right) = (level.left, right);
            return rebalance(levels, successor);
        }
    }
    rebalance(levels, node)
}

/// Detaches the lowest node under `node`; returns (the subtree's new root, that node).
fn remove_min(levels: &mut Slab<Level>, node: u32) -> (u32, u32) {
    let level = *levels.get(node);
    if level.left == NIL {
        return (level.right, node);
    }
    let (left, min) = remove_min(levels, level.left);
    levels.get_mut(node).left = left;
    (rebalance(levels, node), min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn level(price: u64) -> Level {
        Level::new(price)
    }

    /// Checks order, balance, heights and the list against the model.
    fn check(ladder: &Ladder, levels: &Slab<Level>, model: &BTreeMap<u64, u32>) {
        fn walk(levels: &Slab<Level>, node: u32, out: &mut Vec<u32>) -> u8 {
            if node == NIL {
                return 0;
            }
            let l = *levels.get(node);
            let hl = walk(levels, l.left, out);
            out.push(node);
            let hr = walk(levels, l.right, out);
            assert!(hl.abs_diff(hr) <= 1, "unbalanced at {}", l.price);
            assert_eq!(l.height, 1 + hl.max(hr));
            l.height
        }
        let mut in_order = Vec::new();
        walk(levels, ladder.root, &mut in_order);
        let expected: Vec<u32> = model.values().copied().collect();
        assert_eq!(in_order, expected);
        let (mut listed, mut node) = (Vec::new(), ladder.lowest());
        while node != NIL {
            listed.push(node);
            node = levels.get(node).higher;
        }
        assert_eq!(listed, expected);
        assert_eq!(ladder.highest(), expected.last().copied().unwrap_or(NIL));
        assert_eq!(ladder.len(), model.len());
    }

    #[test]
    fn stays_ordered_and_balanced_like_a_btreemap_under_churn() {
        let (mut ladder, mut levels) = (Ladder::default(), Slab::with_capacity(4096));
        let mut model = BTreeMap::new();
        let mut x = 7u64;
        for step in 0..60_000u32 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Mostly a narrow band (dense churn), sometimes a monotone run (worst for a BST).
            let price = if step % 5_000 < 1_000 {
                u64::from(step)
            } else {
                1 + (x >> 33) % 3_000
            };
            match model.remove(&price) {
                Some(slot) => {
                    assert_eq!(ladder.find(&levels, price), slot);
                    ladder.remove(&mut levels, slot);
                    levels.remove(slot);
                }
                None => {
                    let Err((lower, higher)) = ladder.locate(&levels, price) else {
                        panic!("{price} is not in the ladder");
                    };
                    let slot = levels.insert(level(price));
                    ladder.insert(&mut levels, slot, lower, higher);
                    model.insert(price, slot);
                }
            }
            if step % 997 == 0 {
                check(&ladder, &levels, &model);
            }
        }
        check(&ladder, &levels, &model);
        for (&price, &slot) in &model {
            assert_eq!(ladder.find(&levels, price), slot);
        }
    }
}
