//! A naive, obviously correct exchange: orders in a plain `Vec` per instrument, best price and
//! time found by scanning, balances in `BTreeMap`s. Same rules and the same check order as
//! the real one (see the `keel_services::exchange` module docs), no cleverness.

use keel::Outcome;
use keel_services::exchange::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Instr {
    tick: u64,
    band: u64,
    total_position: u64,
    /// Every resting order, in no particular order.
    orders: Vec<RefOrder>,
}

#[derive(Debug, Clone, Copy)]
struct RefOrder {
    id: u64,
    account: u32,
    side: Side,
    price: u64,
    remaining: u64,
    /// When it entered its price (arrival or last move): smaller is earlier.
    time: u64,
}

#[derive(Debug, Clone, Default)]
struct Acct {
    cash: u64,
    reserved: u64,
    /// instrument → (lots, reserved lots)
    holdings: BTreeMap<u32, (u64, u64)>,
}

pub struct Reference {
    limits: ExchangeLimits,
    instruments: BTreeMap<u32, Instr>,
    accounts: BTreeMap<u32, Acct>,
    clock: u64,
    events: Vec<Event>,
}

type R<T> = Result<T, RejectReason>;

fn crosses(side: Side, limit: u64, price: u64) -> bool {
    match side {
        Side::Buy => price <= limit,
        Side::Sell => price >= limit,
    }
}

/// Whether `a` has priority over `b` on `side`.
fn better(side: Side, a: &RefOrder, b: &RefOrder) -> bool {
    match side {
        Side::Buy if a.price != b.price => a.price > b.price,
        Side::Sell if a.price != b.price => a.price < b.price,
        _ => a.time < b.time,
    }
}

impl Reference {
    pub fn new(limits: ExchangeLimits) -> Self {
        Reference {
            limits,
            instruments: BTreeMap::new(),
            accounts: BTreeMap::new(),
            clock: 0,
            events: Vec::new(),
        }
    }

    /// Applies one request; returns the outcome and its events.
    pub fn execute(&mut self, request: &Request, sequence: u64) -> (Outcome, Vec<Event>) {
        self.events.clear();
        let result = match request {
            Request::AddInstrument(m) => self.add_instrument(m),
            Request::DepositCash(m) => self.deposit_cash(m),
            Request::WithdrawCash(m) => self.withdraw_cash(m),
            Request::DepositPosition(m) => self.deposit_position(m),
            Request::WithdrawPosition(m) => self.withdraw_position(m),
            Request::Place(m) => self.place(m, sequence),
            Request::Cancel(m) => self.cancel(m),
            Request::Move(m) => self.move_order(m),
            Request::Reduce(m) => self.reduce(m),
            Request::QueryBook(_) | Request::QueryAccount(_) => Ok(()),
        };
        match result {
            Ok(()) => (Outcome::Accepted, std::mem::take(&mut self.events)),
            Err(reason) => {
                assert!(
                    self.events.is_empty(),
                    "reference changed state before rejecting"
                );
                let order_id = match request {
                    Request::Place(m) => m.order_id,
                    Request::Cancel(m) => m.order_id,
                    Request::Move(m) => m.order_id,
                    Request::Reduce(m) => m.order_id,
                    _ => 0,
                };
                (
                    Outcome::Rejected(reason as u32),
                    vec![Event::Rejected { order_id, reason }],
                )
            }
        }
    }

    // ---- admin ----

    fn add_instrument(&mut self, a: &AddInstrument) -> R<()> {
        if a.instrument >= self.limits.max_instruments {
            return Err(RejectReason::InstrumentLimit);
        }
        if self.instruments.contains_key(&a.instrument) {
            return Err(RejectReason::InstrumentExists);
        }
        if a.tick == 0 {
            return Err(RejectReason::InvalidTick);
        }
        let instr = Instr {
            tick: a.tick,
            band: a.market_band,
            total_position: 0,
            orders: vec![],
        };
        self.instruments.insert(a.instrument, instr);
        self.events.push(Event::InstrumentAdded {
            instrument: a.instrument,
            tick: a.tick,
            market_band: a.market_band,
        });
        Ok(())
    }

    fn total_cash(&self) -> u64 {
        self.accounts.values().map(|a| a.cash).sum()
    }

    fn deposit_cash(&mut self, t: &CashTransfer) -> R<()> {
        if t.account >= self.limits.max_accounts {
            return Err(RejectReason::AccountLimit);
        }
        if t.amount == 0 {
            return Err(RejectReason::InvalidAmount);
        }
        self.total_cash()
            .checked_add(t.amount)
            .ok_or(RejectReason::BalanceOverflow)?;
        let a = self.accounts.entry(t.account).or_default();
        a.cash += t.amount;
        let event = Event::Cash {
            account: t.account,
            cash: a.cash,
            reserved: a.reserved,
        };
        self.events.push(event);
        Ok(())
    }

    fn withdraw_cash(&mut self, t: &CashTransfer) -> R<()> {
        let a = self
            .accounts
            .get_mut(&t.account)
            .ok_or(RejectReason::UnknownAccount)?;
        if t.amount == 0 {
            return Err(RejectReason::InvalidAmount);
        }
        if a.cash - a.reserved < t.amount {
            return Err(RejectReason::InsufficientCash);
        }
        a.cash -= t.amount;
        let event = Event::Cash {
            account: t.account,
            cash: a.cash,
            reserved: a.reserved,
        };
        self.events.push(event);
        Ok(())
    }

    fn deposit_position(&mut self, t: &PositionTransfer) -> R<()> {
        if t.account >= self.limits.max_accounts {
            return Err(RejectReason::AccountLimit);
        }
        let instr = self
            .instruments
            .get_mut(&t.instrument)
            .ok_or(RejectReason::UnknownInstrument)?;
        if t.qty == 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        instr.total_position = instr
            .total_position
            .checked_add(t.qty)
            .ok_or(RejectReason::BalanceOverflow)?;
        let h = self
            .accounts
            .entry(t.account)
            .or_default()
            .holdings
            .entry(t.instrument)
            .or_default();
        h.0 += t.qty;
        let (qty, reserved) = *h;
        let (account, instrument) = (t.account, t.instrument);
        self.events.push(Event::Position {
            account,
            instrument,
            qty,
            reserved,
        });
        Ok(())
    }

    fn withdraw_position(&mut self, t: &PositionTransfer) -> R<()> {
        let instr = self
            .instruments
            .get_mut(&t.instrument)
            .ok_or(RejectReason::UnknownInstrument)?;
        let a = self
            .accounts
            .get_mut(&t.account)
            .ok_or(RejectReason::UnknownAccount)?;
        if t.qty == 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        let (qty, reserved) = a.holdings.get(&t.instrument).copied().unwrap_or((0, 0));
        if qty - reserved < t.qty {
            return Err(RejectReason::InsufficientPosition);
        }
        instr.total_position -= t.qty;
        let h = a.holdings.get_mut(&t.instrument).expect("has lots");
        h.0 -= t.qty;
        let (qty, reserved) = *h;
        let (account, instrument) = (t.account, t.instrument);
        self.events.push(Event::Position {
            account,
            instrument,
            qty,
            reserved,
        });
        Ok(())
    }

    // ---- book helpers (all by scanning) ----

    fn best(&self, instrument: u32, side: Side) -> Option<RefOrder> {
        let orders = &self.instruments[&instrument].orders;
        let mut best: Option<RefOrder> = None;
        for o in orders.iter().filter(|o| o.side == side) {
            if best.as_ref().is_none_or(|b| better(side, o, b)) {
                best = Some(*o);
            }
        }
        best
    }

    fn top(&self, instrument: u32) -> TopOfBook {
        let level = |side| match self.best(instrument, side) {
            None => (0, 0),
            Some(b) => {
                let orders = &self.instruments[&instrument].orders;
                let at = orders
                    .iter()
                    .filter(|o| o.side == side && o.price == b.price);
                (b.price, at.map(|o| o.remaining).sum())
            }
        };
        let (bid_price, bid_qty) = level(Side::Buy);
        let (ask_price, ask_qty) = level(Side::Sell);
        TopOfBook {
            instrument,
            bid_price,
            bid_qty,
            ask_price,
            ask_qty,
        }
    }

    fn prices(&self, instrument: u32, side: Side) -> Vec<u64> {
        let orders = &self.instruments[&instrument].orders;
        let mut prices: Vec<u64> = orders
            .iter()
            .filter(|o| o.side == side)
            .map(|o| o.price)
            .collect();
        prices.sort_unstable();
        prices.dedup();
        if side == Side::Buy {
            prices.reverse();
        }
        prices
    }

    fn level_limit_hit(&self, instrument: u32, side: Side, price: u64) -> bool {
        let prices = self.prices(instrument, side);
        prices.len() >= self.limits.max_price_levels as usize && !prices.contains(&price)
    }

    fn open_orders(&self) -> usize {
        self.instruments.values().map(|i| i.orders.len()).sum()
    }

    fn find(&self, id: u64) -> Option<(u32, RefOrder)> {
        for (&instrument, i) in &self.instruments {
            if let Some(o) = i.orders.iter().find(|o| o.id == id) {
                return Some((instrument, *o));
            }
        }
        None
    }

    fn remove(&mut self, instrument: u32, id: u64) {
        self.instruments
            .get_mut(&instrument)
            .unwrap()
            .orders
            .retain(|o| o.id != id);
    }

    fn book_update(&mut self, before: TopOfBook) {
        let after = self.top(before.instrument);
        if after != before {
            self.events.push(Event::Book(after));
        }
    }

    fn valid_price(&self, instrument: u32, price: u64) -> bool {
        let tick = self.instruments[&instrument].tick;
        price != 0 && price.is_multiple_of(tick) && price <= self.limits.max_price
    }

    fn reserve(&mut self, account: u32, instrument: u32, side: Side, limit: u64, qty: u64) {
        let a = self.accounts.get_mut(&account).unwrap();
        match side {
            Side::Buy => a.reserved += limit * qty,
            Side::Sell => a.holdings.get_mut(&instrument).unwrap().1 += qty,
        }
    }

    fn release(&mut self, account: u32, instrument: u32, side: Side, limit: u64, qty: u64) {
        let a = self.accounts.get_mut(&account).unwrap();
        match side {
            Side::Buy => a.reserved -= limit * qty,
            Side::Sell => a.holdings.get_mut(&instrument).unwrap().1 -= qty,
        }
    }

    // ---- orders ----

    fn place(&mut self, p: &PlaceOrder, sequence: u64) -> R<()> {
        let instr = self
            .instruments
            .get(&p.instrument)
            .ok_or(RejectReason::UnknownInstrument)?;
        let band = instr.band;
        let acct = self
            .accounts
            .get(&p.account)
            .ok_or(RejectReason::UnknownAccount)?;
        if p.qty == 0 || p.qty > self.limits.max_order_qty {
            return Err(RejectReason::InvalidQuantity);
        }
        let id = match p.order_id {
            0 => ASSIGNED_ORDER_ID_BIT | sequence,
            id if id >= ASSIGNED_ORDER_ID_BIT => return Err(RejectReason::InvalidOrderId),
            id => id,
        };
        if self.find(id).is_some() {
            return Err(RejectReason::DuplicateOrderId);
        }
        let limit = if p.order_type == OrderType::Market {
            let best = self
                .best(p.instrument, p.side.opposite())
                .ok_or(RejectReason::NoLiquidity)?;
            match p.side {
                Side::Buy => best.price.saturating_add(band),
                Side::Sell => best.price.saturating_sub(band),
            }
        } else if self.valid_price(p.instrument, p.price) {
            p.price
        } else {
            return Err(RejectReason::InvalidPrice);
        };
        let notional = limit
            .checked_mul(p.qty)
            .ok_or(RejectReason::NotionalOverflow)?;
        if p.order_type == OrderType::Gtc {
            if self.open_orders() >= self.limits.max_open_orders as usize {
                return Err(RejectReason::OpenOrderLimit);
            }
            if self.level_limit_hit(p.instrument, p.side, limit) {
                return Err(RejectReason::PriceLevelLimit);
            }
        }
        match p.side {
            Side::Buy if acct.cash - acct.reserved < notional => {
                return Err(RejectReason::InsufficientCash)
            }
            Side::Sell => {
                let (qty, reserved) = acct.holdings.get(&p.instrument).copied().unwrap_or((0, 0));
                if qty - reserved < p.qty {
                    return Err(RejectReason::InsufficientPosition);
                }
            }
            _ => {}
        }
        if p.order_type == OrderType::Fok {
            let orders = &self.instruments[&p.instrument].orders;
            let crossing = orders
                .iter()
                .filter(|o| o.side != p.side && crosses(p.side, limit, o.price));
            if crossing.map(|o| o.remaining).sum::<u64>() < p.qty {
                return Err(RejectReason::FokUnfillable);
            }
        }
        self.execute_place(p, id, limit);
        Ok(())
    }

    fn execute_place(&mut self, p: &PlaceOrder, id: u64, limit: u64) {
        let before = self.top(p.instrument);
        self.reserve(p.account, p.instrument, p.side, limit, p.qty);
        self.events.push(Event::Accepted {
            order_id: id,
            account: p.account,
            instrument: p.instrument,
            side: p.side,
            order_type: p.order_type,
            price: limit,
            qty: p.qty,
        });
        let remaining = self.take(p.instrument, id, p.account, p.side, limit, p.qty);
        if remaining > 0 && p.order_type == OrderType::Gtc {
            self.clock += 1;
            let o = RefOrder {
                id,
                account: p.account,
                side: p.side,
                price: limit,
                remaining,
                time: self.clock,
            };
            self.instruments
                .get_mut(&p.instrument)
                .unwrap()
                .orders
                .push(o);
        } else if remaining > 0 {
            self.release(p.account, p.instrument, p.side, limit, remaining);
            self.events.push(Event::Cancelled {
                order_id: id,
                account: p.account,
                instrument: p.instrument,
                side: p.side,
                price: limit,
                qty: remaining,
                reason: CancelReason::Unfilled,
            });
        }
        self.book_update(before);
    }

    /// The matching loop: repeatedly trade with the best crossing maker.
    fn take(
        &mut self,
        instrument: u32,
        id: u64,
        account: u32,
        side: Side,
        limit: u64,
        qty: u64,
    ) -> u64 {
        let mut remaining = qty;
        while remaining > 0 {
            let Some(maker) = self.best(instrument, side.opposite()) else {
                break;
            };
            if !crosses(side, limit, maker.price) {
                break;
            }
            let q = remaining.min(maker.remaining);
            remaining -= q;
            let (buyer, buyer_limit, seller) = match side {
                Side::Buy => (account, limit, maker.account),
                Side::Sell => (maker.account, maker.price, account),
            };
            self.settle(instrument, buyer, buyer_limit, seller, maker.price, q);
            self.events.push(Event::Trade {
                instrument,
                price: maker.price,
                qty: q,
                taker_side: side,
                taker_order: id,
                taker_account: account,
                taker_remaining: remaining,
                maker_order: maker.id,
                maker_account: maker.account,
                maker_remaining: maker.remaining - q,
            });
            let orders = &mut self.instruments.get_mut(&instrument).unwrap().orders;
            let m = orders.iter_mut().find(|o| o.id == maker.id).unwrap();
            m.remaining -= q;
            orders.retain(|o| o.remaining > 0);
        }
        remaining
    }

    fn settle(
        &mut self,
        instrument: u32,
        buyer: u32,
        buyer_limit: u64,
        seller: u32,
        price: u64,
        q: u64,
    ) {
        let b = self.accounts.get_mut(&buyer).unwrap();
        b.cash -= price * q;
        b.reserved -= buyer_limit * q;
        b.holdings.entry(instrument).or_default().0 += q;
        let s = self.accounts.get_mut(&seller).unwrap();
        s.cash += price * q;
        let h = s.holdings.get_mut(&instrument).unwrap();
        h.0 -= q;
        h.1 -= q;
    }

    fn owned(&self, account: u32, id: u64) -> R<(u32, RefOrder)> {
        let (instrument, o) = self.find(id).ok_or(RejectReason::UnknownOrder)?;
        if o.account != account {
            return Err(RejectReason::NotOrderOwner);
        }
        Ok((instrument, o))
    }

    fn cancel(&mut self, c: &CancelOrder) -> R<()> {
        let (instrument, o) = self.owned(c.account, c.order_id)?;
        let before = self.top(instrument);
        self.remove(instrument, o.id);
        self.release(o.account, instrument, o.side, o.price, o.remaining);
        self.events.push(Event::Cancelled {
            order_id: o.id,
            account: o.account,
            instrument,
            side: o.side,
            price: o.price,
            qty: o.remaining,
            reason: CancelReason::Requested,
        });
        self.book_update(before);
        Ok(())
    }

    fn reduce(&mut self, r: &ReduceOrder) -> R<()> {
        let (instrument, o) = self.owned(r.account, r.order_id)?;
        if r.by == 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        let before = self.top(instrument);
        let by = r.by.min(o.remaining);
        self.release(o.account, instrument, o.side, o.price, by);
        let orders = &mut self.instruments.get_mut(&instrument).unwrap().orders;
        orders.iter_mut().find(|x| x.id == o.id).unwrap().remaining -= by;
        orders.retain(|x| x.remaining > 0);
        self.events.push(Event::Reduced {
            order_id: o.id,
            account: o.account,
            instrument,
            by,
            remaining: o.remaining - by,
        });
        self.book_update(before);
        Ok(())
    }

    fn move_order(&mut self, m: &MoveOrder) -> R<()> {
        let (instrument, o) = self.owned(m.account, m.order_id)?;
        if !self.valid_price(instrument, m.price) {
            return Err(RejectReason::InvalidPrice);
        }
        if self.level_limit_hit(instrument, o.side, m.price) {
            return Err(RejectReason::PriceLevelLimit);
        }
        let notional = m
            .price
            .checked_mul(o.remaining)
            .ok_or(RejectReason::NotionalOverflow)?;
        if o.side == Side::Buy {
            let a = &self.accounts[&o.account];
            let held = o.price * o.remaining;
            if notional > held && a.cash - a.reserved < notional - held {
                return Err(RejectReason::InsufficientCash);
            }
        }
        let before = self.top(instrument);
        self.remove(instrument, o.id);
        self.release(o.account, instrument, o.side, o.price, o.remaining);
        self.reserve(o.account, instrument, o.side, m.price, o.remaining);
        self.events.push(Event::Moved {
            order_id: o.id,
            account: o.account,
            instrument,
            from_price: o.price,
            to_price: m.price,
            remaining: o.remaining,
        });
        let remaining = self.take(instrument, o.id, o.account, o.side, m.price, o.remaining);
        if remaining > 0 {
            self.clock += 1;
            let moved = RefOrder {
                price: m.price,
                remaining,
                time: self.clock,
                ..o
            };
            self.instruments
                .get_mut(&instrument)
                .unwrap()
                .orders
                .push(moved);
        }
        self.book_update(before);
        Ok(())
    }

    // ---- views ----

    /// Resting orders of `instrument`: bids then asks, each in priority order.
    pub fn orders(&self, instrument: u32) -> Option<Vec<OrderView>> {
        let i = self.instruments.get(&instrument)?;
        let mut out = Vec::new();
        for side in [Side::Buy, Side::Sell] {
            let mut orders: Vec<RefOrder> = i
                .orders
                .iter()
                .filter(|o| o.side == side)
                .copied()
                .collect();
            orders.sort_by(|a, b| {
                if better(side, a, b) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            });
            out.extend(orders.iter().map(|o| OrderView {
                id: o.id,
                account: o.account,
                side,
                price: o.price,
                remaining: o.remaining,
            }));
        }
        Some(out)
    }

    pub fn book_depth(&self, instrument: u32, depth: u32) -> Option<BookDepth> {
        self.instruments.get(&instrument)?;
        let depth = depth.min(MAX_QUERY_DEPTH) as usize;
        let side_levels = |side| {
            let orders = &self.instruments[&instrument].orders;
            let prices = self.prices(instrument, side);
            let levels = prices.into_iter().take(depth).map(|price| {
                let at: Vec<_> = orders
                    .iter()
                    .filter(|o| o.side == side && o.price == price)
                    .collect();
                DepthLevel {
                    price,
                    qty: at.iter().map(|o| o.remaining).sum(),
                    orders: at.len() as u32,
                }
            });
            levels.collect()
        };
        Some(BookDepth {
            instrument,
            bids: side_levels(Side::Buy),
            asks: side_levels(Side::Sell),
        })
    }

    pub fn account_view(&self, account: u32) -> Option<AccountView> {
        let a = self.accounts.get(&account)?;
        let holdings = a
            .holdings
            .iter()
            .map(|(&instrument, &(qty, reserved))| Holding {
                instrument,
                qty,
                reserved,
            });
        Some(AccountView {
            account,
            cash: a.cash,
            reserved: a.reserved,
            holdings: holdings.collect(),
            omitted: 0,
        })
    }

    pub fn instrument_ids(&self) -> Vec<u32> {
        self.instruments.keys().copied().collect()
    }

    pub fn account_ids(&self) -> Vec<u32> {
        self.accounts.keys().copied().collect()
    }
}
