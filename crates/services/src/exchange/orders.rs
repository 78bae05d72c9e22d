//! Order messages: place, cancel, move, reduce, and the matching loop.
//!
//! Every handler first runs all its checks on `&self` (a pure leaf returning the reason on
//! failure), and only then mutates, so a rejected message leaves the state untouched.

use super::book::{crosses, Order, NIL};
use super::events::{CancelReason, Event, RejectReason, TopOfBook};
use super::messages::{
    CancelOrder, MoveOrder, OrderType, PlaceOrder, ReduceOrder, Side, ASSIGNED_ORDER_ID_BIT,
};
use super::risk::Settlement;
use super::{Exchange, Instrument};

/// An order being executed: an incoming one, or a resting one being moved.
#[derive(Debug, Clone, Copy)]
struct Taker {
    id: u64,
    account: u32,
    instrument: u32,
    side: Side,
    order_type: OrderType,
    /// Limit price; for a buy also the price its cash reservation was made at.
    limit: u64,
    qty: u64,
}

type Checked<T> = Result<T, RejectReason>;

impl Exchange {
    pub(crate) fn instrument(&self, id: u32) -> Checked<&Instrument> {
        match self.instruments.get(id as usize) {
            Some(Some(instrument)) => Ok(instrument),
            _ => Err(RejectReason::UnknownInstrument),
        }
    }

    fn book_top(&self, instrument: u32) -> TopOfBook {
        let book = &self.instruments[instrument as usize]
            .as_ref()
            .expect("checked")
            .book;
        book.top(&self.arena, instrument)
    }

    /// Emits a `Book` event when the top of `instrument` differs from `before`.
    fn book_update(&mut self, before: TopOfBook) {
        let after = self.book_top(before.instrument);
        if after != before {
            self.events.push(Event::Book(after));
        }
    }

    fn check_price(&self, instrument: &Instrument, price: u64) -> Checked<()> {
        if price == 0 || !price.is_multiple_of(instrument.tick) || price > self.limits.max_price {
            return Err(RejectReason::InvalidPrice);
        }
        Ok(())
    }

    /// The limit an order executes within: its price, or for a market order the opposite
    /// best price widened by the instrument's band.
    fn limit_of(&self, instrument: &Instrument, p: &PlaceOrder) -> Checked<u64> {
        if p.order_type != OrderType::Market {
            return self.check_price(instrument, p.price).map(|()| p.price);
        }
        let best = instrument.book.best_price(&self.arena, p.side.opposite());
        let best = best.ok_or(RejectReason::NoLiquidity)?;
        Ok(match p.side {
            Side::Buy => best.saturating_add(instrument.market_band),
            Side::Sell => best.saturating_sub(instrument.market_band),
        })
    }

    fn new_order_id(&self, requested: u64, sequence: u64) -> Checked<u64> {
        let id = match requested {
            0 => ASSIGNED_ORDER_ID_BIT | sequence,
            id if id >= ASSIGNED_ORDER_ID_BIT => return Err(RejectReason::InvalidOrderId),
            id => id,
        };
        if self.index.contains(id) {
            return Err(RejectReason::DuplicateOrderId);
        }
        Ok(id)
    }

    /// Whether resting at `price` on `side` would open a level beyond the limit.
    fn level_limit_hit(&self, instrument: &Instrument, side: Side, price: u64) -> bool {
        let book = &instrument.book;
        book.level_count(side) >= self.limits.max_price_levels as usize
            && !book.has_level(&self.arena, side, price)
    }

    /// Free cash (buy) or position (sell) covers `notional` / `qty`.
    fn check_funds(&self, account: u32, p: &PlaceOrder, notional: u64) -> Checked<()> {
        let account = self
            .accounts
            .get(account)
            .ok_or(RejectReason::UnknownAccount)?;
        match p.side {
            Side::Buy if account.free_cash() < notional => Err(RejectReason::InsufficientCash),
            Side::Sell if account.free_position(p.instrument) < p.qty => {
                Err(RejectReason::InsufficientPosition)
            }
            _ => Ok(()),
        }
    }

    /// All checks of a new order, in their documented order.
    fn check_place(&self, p: &PlaceOrder, sequence: u64) -> Checked<Taker> {
        let instrument = self.instrument(p.instrument)?;
        self.accounts
            .get(p.account)
            .ok_or(RejectReason::UnknownAccount)?;
        if p.qty == 0 || p.qty > self.limits.max_order_qty {
            return Err(RejectReason::InvalidQuantity);
        }
        let id = self.new_order_id(p.order_id, sequence)?;
        let limit = self.limit_of(instrument, p)?;
        let notional = limit
            .checked_mul(p.qty)
            .ok_or(RejectReason::NotionalOverflow)?;
        if p.order_type == OrderType::Gtc {
            if self.index.len() >= self.limits.max_open_orders as usize {
                return Err(RejectReason::OpenOrderLimit);
            }
            if self.level_limit_hit(instrument, p.side, limit) {
                return Err(RejectReason::PriceLevelLimit);
            }
        }
        self.check_funds(p.account, p, notional)?;
        if p.order_type == OrderType::Fok
            && !instrument
                .book
                .can_fill(&self.arena, p.side.opposite(), limit, p.qty)
        {
            return Err(RejectReason::FokUnfillable);
        }
        let (account, instrument, side, order_type) =
            (p.account, p.instrument, p.side, p.order_type);
        Ok(Taker {
            id,
            account,
            instrument,
            side,
            order_type,
            limit,
            qty: p.qty,
        })
    }

    pub(crate) fn place(&mut self, p: &PlaceOrder, sequence: u64) -> Checked<()> {
        let t = self.check_place(p, sequence)?;
        let before = self.book_top(t.instrument);
        let buy = t.side == Side::Buy;
        self.accounts
            .reserve(t.account, t.instrument, buy, t.limit, t.qty);
        self.events.push(Event::Accepted {
            order_id: t.id,
            account: t.account,
            instrument: t.instrument,
            side: t.side,
            order_type: t.order_type,
            price: t.limit,
            qty: t.qty,
        });
        let remaining = self.take(&t, t.qty);
        if remaining > 0 && t.order_type == OrderType::Gtc {
            self.rest(&t, remaining);
        } else if remaining > 0 {
            self.accounts
                .release(t.account, t.instrument, buy, t.limit, remaining);
            self.events.push(Event::Cancelled {
                order_id: t.id,
                account: t.account,
                instrument: t.instrument,
                side: t.side,
                price: t.limit,
                qty: remaining,
                reason: CancelReason::Unfilled,
            });
        }
        self.book_update(before);
        Ok(())
    }

    /// Puts the remainder of a new GTC order at the back of its price's queue.
    fn rest(&mut self, t: &Taker, remaining: u64) {
        let order = Order {
            id: t.id,
            price: t.limit,
            remaining,
            account: t.account,
            instrument: t.instrument,
            side: t.side,
            level: NIL,
            prev: NIL,
            next: NIL,
        };
        let slot = self.arena.orders.insert(order);
        self.index.insert(t.id, slot);
        let book = &mut self.instruments[t.instrument as usize]
            .as_mut()
            .expect("checked")
            .book;
        book.push(&mut self.arena, slot);
    }

    /// Matches `t` against the opposite side, best price first, oldest first, while it
    /// crosses. Returns the lots left.
    fn take(&mut self, t: &Taker, mut remaining: u64) -> u64 {
        let Exchange {
            instruments,
            arena,
            accounts,
            index,
            events,
            ..
        } = self;
        let book = &mut instruments[t.instrument as usize]
            .as_mut()
            .expect("checked")
            .book;
        let maker_side = t.side.opposite();
        while remaining > 0 {
            let level_slot = book.best(maker_side);
            if level_slot == NIL {
                break;
            }
            let level = *arena.levels.get(level_slot);
            if !crosses(t.side, t.limit, level.price) {
                break;
            }
            let maker = *arena.orders.get(level.head);
            let qty = remaining.min(maker.remaining);
            remaining -= qty;
            accounts.settle(settlement(t, &maker, qty));
            events.push(trade(t, &maker, qty, remaining));
            if qty == maker.remaining {
                book.unlink(arena, level.head);
                arena.orders.remove(level.head);
                index.remove(maker.id);
            } else {
                book.shrink(arena, level.head, qty);
            }
        }
        remaining
    }

    /// The slot of resting order `id`, checked to belong to `account`.
    fn owned(&self, account: u32, id: u64) -> Checked<u32> {
        let slot = self.index.get(id).ok_or(RejectReason::UnknownOrder)?;
        if self.arena.orders.get(slot).account != account {
            return Err(RejectReason::NotOrderOwner);
        }
        Ok(slot)
    }

    /// Takes the resting order in `slot` off its book and frees it.
    fn remove_order(&mut self, slot: u32) -> Order {
        let order = *self.arena.orders.get(slot);
        let book = &mut self.instruments[order.instrument as usize]
            .as_mut()
            .expect("live")
            .book;
        book.unlink(&mut self.arena, slot);
        self.arena.orders.remove(slot);
        self.index.remove(order.id);
        order
    }

    pub(crate) fn cancel(&mut self, c: &CancelOrder) -> Checked<()> {
        let slot = self.owned(c.account, c.order_id)?;
        let before = self.book_top(self.arena.orders.get(slot).instrument);
        let o = self.remove_order(slot);
        self.accounts.release(
            o.account,
            o.instrument,
            o.side == Side::Buy,
            o.price,
            o.remaining,
        );
        self.events.push(Event::Cancelled {
            order_id: o.id,
            account: o.account,
            instrument: o.instrument,
            side: o.side,
            price: o.price,
            qty: o.remaining,
            reason: CancelReason::Requested,
        });
        self.book_update(before);
        Ok(())
    }

    pub(crate) fn reduce(&mut self, r: &ReduceOrder) -> Checked<()> {
        let slot = self.owned(r.account, r.order_id)?;
        if r.by == 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        let o = *self.arena.orders.get(slot);
        let before = self.book_top(o.instrument);
        let by = r.by.min(o.remaining);
        self.accounts
            .release(o.account, o.instrument, o.side == Side::Buy, o.price, by);
        if by == o.remaining {
            self.remove_order(slot);
        } else {
            let book = &mut self.instruments[o.instrument as usize]
                .as_mut()
                .expect("live")
                .book;
            book.shrink(&mut self.arena, slot, by);
        }
        self.events.push(Event::Reduced {
            order_id: o.id,
            account: o.account,
            instrument: o.instrument,
            by,
            remaining: o.remaining - by,
        });
        self.book_update(before);
        Ok(())
    }

    /// All checks of a move; returns the order's slot and its new buy reservation.
    fn check_move(&self, m: &MoveOrder) -> Checked<(u32, u64)> {
        let slot = self.owned(m.account, m.order_id)?;
        let o = self.arena.orders.get(slot);
        let instrument = self.instrument(o.instrument)?;
        self.check_price(instrument, m.price)?;
        if self.level_limit_hit(instrument, o.side, m.price) {
            return Err(RejectReason::PriceLevelLimit);
        }
        let notional = m
            .price
            .checked_mul(o.remaining)
            .ok_or(RejectReason::NotionalOverflow)?;
        if o.side == Side::Buy {
            let held = o.price * o.remaining;
            let free = self.accounts.get(o.account).map_or(0, |a| a.free_cash());
            if notional > held && free < notional - held {
                return Err(RejectReason::InsufficientCash);
            }
        }
        Ok((slot, notional))
    }

    pub(crate) fn move_order(&mut self, m: &MoveOrder) -> Checked<()> {
        let (slot, notional) = self.check_move(m)?;
        let o = *self.arena.orders.get(slot);
        let before = self.book_top(o.instrument);
        let book = &mut self.instruments[o.instrument as usize]
            .as_mut()
            .expect("live")
            .book;
        book.unlink(&mut self.arena, slot);
        if o.side == Side::Buy {
            let account = self.accounts.at(o.account);
            account.reserved = account.reserved - o.price * o.remaining + notional;
        }
        self.events.push(Event::Moved {
            order_id: o.id,
            account: o.account,
            instrument: o.instrument,
            from_price: o.price,
            to_price: m.price,
            remaining: o.remaining,
        });
        let taker = Taker {
            id: o.id,
            account: o.account,
            instrument: o.instrument,
            side: o.side,
            order_type: OrderType::Gtc,
            limit: m.price,
            qty: o.remaining,
        };
        let remaining = self.take(&taker, o.remaining);
        self.requeue(slot, m.price, remaining);
        self.book_update(before);
        Ok(())
    }

    /// Puts a moved order back at the back of `price`'s queue, or frees it when filled.
    fn requeue(&mut self, slot: u32, price: u64, remaining: u64) {
        let order = self.arena.orders.get_mut(slot);
        if remaining == 0 {
            let id = order.id;
            self.arena.orders.remove(slot);
            self.index.remove(id);
            return;
        }
        order.price = price;
        order.remaining = remaining;
        let instrument = order.instrument as usize;
        let book = &mut self.instruments[instrument].as_mut().expect("live").book;
        book.push(&mut self.arena, slot);
    }
}

fn settlement(t: &Taker, maker: &Order, qty: u64) -> Settlement {
    let (buyer, buyer_limit, seller) = match t.side {
        Side::Buy => (t.account, t.limit, maker.account),
        Side::Sell => (maker.account, maker.price, t.account),
    };
    Settlement {
        instrument: t.instrument,
        buyer,
        buyer_limit,
        seller,
        price: maker.price,
        qty,
    }
}

fn trade(t: &Taker, maker: &Order, qty: u64, taker_remaining: u64) -> Event {
    Event::Trade {
        instrument: t.instrument,
        price: maker.price,
        qty,
        taker_side: t.side,
        taker_order: t.id,
        taker_account: t.account,
        taker_remaining,
        maker_order: maker.id,
        maker_account: maker.account,
        maker_remaining: maker.remaining - qty,
    }
}
