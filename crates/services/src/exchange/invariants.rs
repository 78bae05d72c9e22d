//! A full consistency check of the state (tests, and every loaded snapshot).

use super::book::NIL;
use super::messages::Side;
use super::Exchange;
use std::collections::BTreeMap;

/// Reservations and totals recomputed from the books.
#[derive(Default)]
struct Expected {
    cash_reserved: BTreeMap<u32, u64>,
    lots_reserved: BTreeMap<(u32, u32), u64>,
    orders: usize,
    levels: usize,
}

impl Expected {
    /// Adds what a resting order reserves: cash (price × lots) for a buy, lots for a sell.
    fn reserve(
        &mut self,
        account: u32,
        instrument: u32,
        side: Side,
        price: u64,
        lots: u64,
    ) -> Result<(), String> {
        let what = || format!("account {account} reservations");
        let sum = match side {
            Side::Buy => self.cash_reserved.entry(account).or_default(),
            Side::Sell => self.lots_reserved.entry((account, instrument)).or_default(),
        };
        let amount = match side {
            Side::Buy => price.checked_mul(lots).ok_or_else(|| overflow(what()))?,
            Side::Sell => lots,
        };
        *sum = add(*sum, amount, what)?;
        Ok(())
    }
}

/// `a + b`, or an error naming `what` (a crafted state may hold any numbers; a live one
/// never overflows, every change is checked).
fn add(a: u64, b: u64, what: impl FnOnce() -> String) -> Result<u64, String> {
    a.checked_add(b).ok_or_else(|| overflow(what()))
}

fn overflow(what: String) -> String {
    format!("{what} overflow")
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

impl Exchange {
    /// Checks every invariant: book links, level totals, cached best levels, the id index,
    /// reservations against resting orders, and cash and position totals. `Err` names the
    /// first broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected = Expected::default();
        for id in self.instrument_ids() {
            for side in [Side::Buy, Side::Sell] {
                self.check_side(id, side, &mut expected)?;
            }
        }
        ensure(expected.orders == self.index.len(), || {
            "index size differs from books".into()
        })?;
        ensure(expected.orders == self.arena.orders.len(), || {
            "order slab leaks".into()
        })?;
        ensure(expected.levels == self.arena.levels.len(), || {
            "level slab leaks".into()
        })?;
        self.check_accounts(&expected)
    }

    fn check_side(&self, instrument: u32, side: Side, e: &mut Expected) -> Result<(), String> {
        let i = self
            .instrument(instrument)
            .map_err(|r| r.name().to_string())?;
        let (book, tick) = (&i.book, i.tick);
        let slots: Vec<u32> = book.level_slots(&self.arena, side).collect();
        ensure(
            book.best(side) == slots.first().copied().unwrap_or(NIL),
            || format!("instrument {instrument} {side:?}: cached best level is stale"),
        )?;
        self.check_ladder(instrument, side, &slots)?;
        for level_slot in slots {
            let level = self.arena.levels.get(level_slot);
            let (mut total, mut count, mut prev, mut slot) = (0u64, 0u32, NIL, level.head);
            while slot != NIL {
                let o = self.arena.orders.get(slot);
                ensure(
                    o.prev == prev && o.level == level_slot && o.side == side,
                    || format!("order {} is mislinked", o.id),
                )?;
                let priced = o.price == level.price && o.price > 0 && o.price.is_multiple_of(tick);
                ensure(
                    priced && o.instrument == instrument && o.remaining > 0,
                    || format!("order {} does not belong to its level", o.id),
                )?;
                ensure(self.index.get(o.id) == Some(slot), || {
                    format!("order {} not indexed", o.id)
                })?;
                e.reserve(o.account, instrument, side, o.price, o.remaining)?;
                total = add(total, o.remaining, || {
                    format!("level {} total", level.price)
                })?;
                (count, prev, slot) = (count + 1, slot, o.next);
            }
            ensure(
                prev == level.tail && total == level.total && count == level.count && count > 0,
                || {
                    format!(
                        "instrument {instrument} level {} totals are wrong",
                        level.price
                    )
                },
            )?;
            e.orders += count as usize;
            e.levels += 1;
        }
        Ok(())
    }

    /// The side's price list (`slots`, best first) is strictly ordered, counted, and agrees
    /// with its price tree.
    fn check_ladder(&self, instrument: u32, side: Side, slots: &[u32]) -> Result<(), String> {
        let book = &self.instrument(instrument).expect("checked").book;
        let price = |slot: u32| self.arena.levels.get(slot).price;
        let ordered = slots.windows(2).all(|w| match side {
            Side::Buy => price(w[0]) > price(w[1]),
            Side::Sell => price(w[0]) < price(w[1]),
        });
        let found = slots
            .iter()
            .all(|&slot| book.level_at(&self.arena, side, price(slot)) == slot);
        ensure(
            ordered && found && book.level_count(side) == slots.len(),
            || format!("instrument {instrument} {side:?}: price list and tree disagree"),
        )
    }

    fn check_accounts(&self, e: &Expected) -> Result<(), String> {
        let mut cash = 0u64;
        let mut lots: BTreeMap<u32, u64> = BTreeMap::new();
        for id in self.account_ids() {
            let a = self.accounts.get(id).expect("listed");
            cash = add(cash, a.cash, || "total cash".into())?;
            let reserved = e.cash_reserved.get(&id).copied().unwrap_or(0);
            ensure(a.reserved == reserved && a.reserved <= a.cash, || {
                format!(
                    "account {id}: reserved cash {} but orders need {reserved}",
                    a.reserved
                )
            })?;
            let sorted = a
                .holdings
                .windows(2)
                .all(|w| w[0].instrument < w[1].instrument);
            ensure(sorted, || format!("account {id}: holdings are not sorted"))?;
            for h in &a.holdings {
                let sum = lots.entry(h.instrument).or_default();
                *sum = add(*sum, h.qty, || {
                    format!("instrument {} position", h.instrument)
                })?;
                let reserved = e
                    .lots_reserved
                    .get(&(id, h.instrument))
                    .copied()
                    .unwrap_or(0);
                ensure(h.reserved == reserved && h.reserved <= h.qty, || {
                    format!(
                        "account {id} instrument {}: reserved lots are wrong",
                        h.instrument
                    )
                })?;
            }
        }
        for (&(id, instrument), &reserved) in &e.lots_reserved {
            let held = self
                .accounts
                .get(id)
                .map(|a| a.holding(instrument).reserved);
            ensure(held == Some(reserved), || {
                format!("account {id}: sell reservations are wrong")
            })?;
        }
        for &id in e.cash_reserved.keys() {
            ensure(self.accounts.get(id).is_some(), || {
                format!("account {id} is not open")
            })?;
        }
        ensure(cash == self.accounts.total_cash, || {
            "total cash differs from the sum".into()
        })?;
        for id in self.instrument_ids() {
            let total = self.instrument(id).expect("listed").total_position;
            ensure(lots.get(&id).copied().unwrap_or(0) == total, || {
                format!("instrument {id}: total position differs from the sum")
            })?;
        }
        Ok(())
    }
}
