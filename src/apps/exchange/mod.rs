//! Exchange: limit order books for many instruments, with accounts and pre-trade risk.
//!
//! # Units (fixed-point integers, no floats anywhere)
//!
//! - **Price**: `u64` *price units* of 1e-4 of the quote currency per lot (`1_234_500` is
//!   123.45). Each instrument has a tick size in price units; limit prices are multiples of it.
//! - **Quantity**: `u64` *lots* (whole units of the instrument).
//! - **Cash**: `u64` *cash units* of 1e-4 of the quote currency, so the notional of a trade
//!   is exactly `price × qty` cash units. One currency for all instruments.
//!
//! # Orders
//!
//! Price-time priority: the best price trades first, and within a price the order that
//! entered (or was last moved to) that price first. A trade executes at the resting
//! (maker) order's price. Self-trades are allowed (they leave the account's totals unchanged).
//!
//! - **GTC** limit: matches while it crosses, the remainder rests.
//! - **IOC**: matches while it crosses, the remainder is cancelled (`Cancelled`/`Unfilled`).
//! - **FOK**: if the crossing levels hold the whole quantity it executes like IOC (and fills
//!   completely), otherwise it is rejected with `FokUnfillable` and nothing changes.
//! - **Market**: rejected with `NoLiquidity` when the opposite side is empty; otherwise an
//!   IOC whose limit is the opposite best price widened by the instrument's `market_band`
//!   (buy: best ask + band; sell: best bid − band, floored at 0). A market buy reserves
//!   `limit × qty` cash up front like any buy; the unused part is released when it finishes.
//! - **Cancel** removes a resting order. **Move** changes its price: it goes to the back of
//!   the new price's queue (priority lost, even at the same price) and trades if it crosses.
//!   **Reduce** lowers its quantity in place (priority kept); reducing by the whole remainder
//!   or more removes it. Only the owning account may cancel, move or reduce.
//! - Order ids are chosen by the client (below [`ASSIGNED_ORDER_ID_BIT`]) and must be unique
//!   among *resting* orders; id 0 asks the exchange to assign `ASSIGNED_ORDER_ID_BIT |
//!   sequence`. An id may be reused once its order has left the book.
//!
//! # Risk (details in the `risk` module)
//!
//! Accounts are created by a deposit. A buy reserves `limit × qty` cash, a sell reserves
//! `qty` lots of the instrument (no short selling); both must fit in the *free* (unreserved)
//! balance or the order is rejected. Fills, cancels, reduces and unfilled remainders release
//! their share. A move re-reserves a buy at its new price.
//!
//! # Checks, in order (the first failing one is the reason)
//!
//! Place: instrument, account, quantity, order id (range, then duplicate), price (market:
//! liquidity), notional overflow, GTC only: open-order limit then price-level limit (both
//! conservative: a GTC order that would have filled completely is still refused when the book
//! is full), free cash / position, FOK fillability. Move: order, owner, price, price-level
//! limit, notional overflow, free cash for a higher buy price. Cancel: order, owner.
//! Reduce: order, owner, quantity. Add instrument: id limit, exists, tick. Deposit cash:
//! account limit, amount, overflow. Withdraw cash: account, amount, free cash. Deposit
//! position: account limit, instrument, quantity, overflow. Withdraw position: instrument,
//! account, quantity, free position.
//!
//! # Messages (payload structs such as [`PlaceOrder`]; all encoded with `keel::codec`)
//!
//! | kind | name | version | payload |
//! |---|---|---|---|
//! | 1 | add instrument | 1 | `instrument u32, tick u64, market_band u64` |
//! | 2 | deposit cash | 1 | `account u32, amount u64` |
//! | 3 | withdraw cash | 1 | `account u32, amount u64` |
//! | 4 | deposit position | 1 | `account u32, instrument u32, qty u64` |
//! | 5 | withdraw position | 1 | `account u32, instrument u32, qty u64` |
//! | 10 | place order | 1 | `account u32, instrument u32, side, price u64, qty u64` (GTC) |
//! | 10 | place order | 2 | `order_id u64, account u32, instrument u32, side, order_type, price u64, qty u64` |
//! | 11 | cancel order | 1 | `account u32, order_id u64` |
//! | 12 | move order | 1 | `account u32, order_id u64, price u64` |
//! | 13 | reduce order | 1 | `account u32, order_id u64, by u64` |
//! | 20 | query book | 1 | `instrument u32, depth u32` |
//! | 21 | query account | 1 | `account u32` |
//!
//! Place v1 is upcast to v2 with `order_id: 0` (assigned) and `order_type: Gtc`.
//!
//! # Responses
//!
//! Order and admin messages answer with a [`Report`] (kind [`RESPONSE_EVENTS`]): the
//! [`Event`]s in the order they happened — `Rejected` alone, or e.g. `Accepted`, `Trade`…,
//! `Cancelled` (IOC remainder), then `Book` when the instrument's top of book (best bid/ask
//! price and size) changed. A rejected message also sets the response's reason code
//! ([`RejectReason`] as `u32`). When the report would not fit in `Config::max_response_bytes`
//! (4096 by default, about 50 trades) the exchange writes the longest prefix of the events
//! that fits and sets `Report::omitted` to how many were left off the end; the state change is
//! complete either way. Queries answer with a [`BookDepth`] or an [`AccountView`].
//!
//! # Limits, determinism, snapshots
//!
//! Every table is bounded by [`ExchangeLimits`] (part of the state, so a snapshot restores
//! the limits it was taken under) and reserved to its bound when the exchange is built (sizes
//! in [`ExchangeLimits`]); hitting a limit is a rejection, never a panic. State lives
//! in `Vec`s, slabs and `BTreeMap`s, plus one `Vec`-backed open-addressing order-id index with
//! a fixed hash that is never iterated (see the `index` module); time and assigned ids come
//! from the message header. `save_state` writes a canonical form (books in priority order), so
//! `state_hash` is equal for equal states however they were reached (see the `state` module,
//! which also documents the schema upgrade path).
//!
//! # Cost
//!
//! Steady-state `apply` allocates nothing except an occasional `BTreeMap` node when a price
//! level appears, a holding the first time an account holds an instrument, and a bigger event
//! buffer the first time a message produces more than 256 events. Nothing else grows: the
//! order-id index, the order and level slabs and the account and instrument tables are
//! allocated once, at construction. The response is encoded straight into the engine's
//! `Output` from the reused event buffer.

mod admin;
mod app;
mod book;
mod events;
mod index;
mod invariants;
mod messages;
mod orders;
mod risk;
mod state;
mod workload;

pub use events::{
    AccountView, BookDepth, CancelReason, DepthLevel, Event, Holding, RejectReason, Report,
    TopOfBook, MAX_QUERY_DEPTH, RESPONSE_ACCOUNT, RESPONSE_BOOK, RESPONSE_EVENTS,
};
pub use messages::*;
pub use state::{OrderView, SCHEMA_VERSION};
pub use workload::{WorkloadParams, WORKLOAD};

use crate::codec::CodecError;
use crate::engine::{Message, Outcome, Output, Processor};
use crate::snapshot::StateError;
use book::{clone_reserved, Arena, Book};
use events::ReportRef;
use index::OrderIndex;
use risk::Accounts;
use serde::{Deserialize, Serialize};
use std::collections::TryReserveError;

/// Every bound of the exchange, fixed when it is created and saved with its state.
///
/// # Memory
///
/// [`Exchange::with_limits`] reserves every table to these limits at once, so nothing grows
/// on the message path. What it reserves is address space: a page becomes resident when it is
/// first written, or all at once with [`Exchange::prefault`].
///
/// - `max_open_orders`: 120 to 152 bytes each — an order slot (48), a price-level slot (32;
///   a level holds at least one order), a free-list entry for each slab (4 + 4), and two
///   entries of the order-id index (2 × 16, the table rounded up to a power of two: up to 64).
///   The level slots are capped at `2 × max_instruments × max_price_levels` when that is
///   fewer.
/// - `max_accounts`: 48 bytes each (accounts are stored densely by id).
/// - `max_instruments`: 88 bytes each (stored densely by id).
///
/// The defaults reserve about 528 MiB: 480 MiB for 2²² open orders (orders 192, levels 128,
/// index 128, free lists 32), 48 MiB for 2²⁰ accounts, 352 KiB for 4096 instruments. Not
/// reserved: the books' `BTreeMap` nodes (they come and go with price levels), each account's
/// holdings (24 bytes per instrument held) and the event buffer beyond 256 events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeLimits {
    /// Instrument ids are `0..max_instruments`.
    pub max_instruments: u32,
    /// Account ids are `0..max_accounts` (accounts are stored densely by id).
    pub max_accounts: u32,
    /// Resting orders across all books.
    pub max_open_orders: u32,
    /// Price levels per side of one book.
    pub max_price_levels: u32,
    /// Highest limit price, price units.
    pub max_price: u64,
    /// Largest order, lots.
    pub max_order_qty: u64,
}

impl Default for ExchangeLimits {
    fn default() -> Self {
        ExchangeLimits {
            max_instruments: 4096,
            max_accounts: 1 << 20,
            max_open_orders: 1 << 22,
            max_price_levels: 100_000,
            max_price: 1_000_000_000_000,
            max_order_qty: 1_000_000_000,
        }
    }
}

/// One instrument: its rules and its book.
#[derive(Debug, Clone)]
pub(crate) struct Instrument {
    pub(crate) tick: u64,
    pub(crate) market_band: u64,
    /// Sum of every account's lots of this instrument.
    pub(crate) total_position: u64,
    pub(crate) book: Book,
}

/// The exchange: a [`Processor`] (and [`crate::apps::App`]) owning all books and accounts.
#[derive(Debug)]
pub struct Exchange {
    limits: ExchangeLimits,
    instruments: Vec<Option<Instrument>>,
    accounts: Accounts,
    arena: Arena,
    /// Resting order id → order slot.
    index: OrderIndex,
    /// Events of the message being applied (cleared per message; capacity kept).
    events: Vec<Event>,
}

impl Clone for Exchange {
    /// A copy with the same reservations (a derived clone would shrink every table to its
    /// length, and the copy would grow on the message path).
    fn clone(&self) -> Self {
        Exchange {
            limits: self.limits,
            instruments: clone_reserved(&self.instruments),
            accounts: self.accounts.clone(),
            arena: self.arena.clone(),
            index: self.index.clone(),
            events: clone_reserved(&self.events),
        }
    }
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::with_limits(ExchangeLimits::default())
    }
}

impl Exchange {
    /// An empty exchange with these limits, every table reserved to them now (sizes in
    /// [`ExchangeLimits`]; address space only until written or pre-faulted).
    ///
    /// # Panics
    /// If the limits do not fit in memory.
    pub fn with_limits(limits: ExchangeLimits) -> Self {
        Exchange::reserved(limits, &limits)
            .unwrap_or_else(|e| panic!("exchange limits {limits:?} do not fit in memory: {e}"))
    }

    /// An empty exchange with `limits`. Orders, levels and the id index are reserved to
    /// `limits`; the tables dense by id (accounts, instruments) to the lower of `limits` and
    /// `ids`, the bound a snapshot loader puts on the ids it accepts.
    pub(crate) fn reserved(
        limits: ExchangeLimits,
        ids: &ExchangeLimits,
    ) -> Result<Self, TryReserveError> {
        let mut instruments = Vec::new();
        instruments.try_reserve_exact(limits.max_instruments.min(ids.max_instruments) as usize)?;
        let accounts = limits.max_accounts.min(ids.max_accounts) as usize;
        let orders = limits.max_open_orders as usize;
        Ok(Exchange {
            limits,
            instruments,
            accounts: Accounts::reserved(accounts)?,
            arena: Arena::reserved(orders, max_levels(&limits))?,
            index: OrderIndex::reserved(limits.max_open_orders)?,
            events: Vec::with_capacity(256),
        })
    }

    /// Makes every page reserved at construction resident now (the order-id index, the order
    /// and level slabs, the account and instrument tables: see [`ExchangeLimits`] for the
    /// sizes), so the message path never stops for a first-touch page fault. The contents do
    /// not change. Optional: without it, pages are faulted in as the tables fill.
    pub fn prefault(&mut self) {
        self.index.prefault();
        self.arena.prefault();
        self.accounts.prefault();
        for slot in self.instruments.spare_capacity_mut() {
            slot.write(None);
        }
    }

    /// Its limits.
    pub fn limits(&self) -> &ExchangeLimits {
        &self.limits
    }

    /// Applies one order or admin request (queries change nothing and produce no events).
    /// The events it produced are in [`Exchange::events`] until the next call.
    pub fn execute(&mut self, request: &Request, sequence: u64) -> Outcome {
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
            Ok(()) => Outcome::Accepted,
            Err(reason) => self.reject(order_id_of(request), reason),
        }
    }

    fn reject(&mut self, order_id: u64, reason: RejectReason) -> Outcome {
        debug_assert!(
            self.events.is_empty(),
            "a rejection must not follow changes"
        );
        self.events.clear();
        self.events.push(Event::Rejected { order_id, reason });
        Outcome::Rejected(reason as u32)
    }

    /// The events of the last message applied.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    fn answer(&mut self, request: &Request, out: &mut Output<'_>) -> Outcome {
        let view = match request {
            Request::QueryBook(q) => self.book_depth(q.instrument, q.depth).map(|depth| {
                let (bids, asks) = (&depth.bids, &depth.asks);
                let most = bids.len().max(asks.len());
                encode_fitting(out, RESPONSE_BOOK, most, |n| BookDepth {
                    instrument: depth.instrument,
                    bids: bids[..n.min(bids.len())].to_vec(),
                    asks: asks[..n.min(asks.len())].to_vec(),
                });
            }),
            Request::QueryAccount(q) => self.account_view(q.account).map(|view| {
                let total = view.holdings.len();
                encode_fitting(out, RESPONSE_ACCOUNT, total, |n| AccountView {
                    holdings: view.holdings[..n].to_vec(),
                    omitted: (total - n) as u32,
                    ..view.clone()
                });
            }),
            _ => unreachable!("only queries are answered"),
        };
        match (view, request) {
            (Some(()), _) => Outcome::Accepted,
            (None, Request::QueryBook(_)) => self.reject(0, RejectReason::UnknownInstrument),
            (None, _) => self.reject(0, RejectReason::UnknownAccount),
        }
    }
}

/// How many price levels can exist at once: each holds at least one resting order, and each
/// side of a book at most `max_price_levels` (a loaded snapshot is held to both too).
fn max_levels(limits: &ExchangeLimits) -> usize {
    let per_book = 2 * u64::from(limits.max_price_levels);
    let all_books = per_book.saturating_mul(u64::from(limits.max_instruments));
    all_books.min(u64::from(limits.max_open_orders)) as usize
}

/// The order id a request names (for its `Rejected` event).
fn order_id_of(request: &Request) -> u64 {
    match request {
        Request::Place(m) => m.order_id,
        Request::Cancel(m) => m.order_id,
        Request::Move(m) => m.order_id,
        Request::Reduce(m) => m.order_id,
        _ => 0,
    }
}

/// Writes `make(n)` for the largest `n ≤ total` whose encoding fits in `out` (binary search;
/// only reached when the whole value does not fit). Sets the response kind.
fn encode_fitting<T: Serialize>(
    out: &mut Output<'_>,
    kind: u16,
    total: usize,
    make: impl Fn(usize) -> T,
) {
    if out.encode(&make(total)).is_err() {
        let (mut lo, mut hi) = (0, total);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            out.clear();
            if out.encode(&make(mid)).is_ok() {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        out.clear();
        // Even an empty value may not fit a tiny buffer: then the payload stays empty.
        let _ = out.encode(&make(lo));
    }
    out.set_kind(kind);
}

impl Processor for Exchange {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        let header = &message.header;
        let outcome = match Request::decode(header.kind, header.version, message.payload) {
            Ok(request @ (Request::QueryBook(_) | Request::QueryAccount(_))) => {
                self.events.clear();
                let outcome = self.answer(&request, out);
                if outcome == Outcome::Accepted {
                    return outcome; // answered with a view; a rejection falls through
                }
                outcome
            }
            Ok(request) => self.execute(&request, header.sequence),
            Err(reason) => {
                self.events.clear();
                self.reject(0, reason)
            }
        };
        let events = &self.events;
        encode_fitting(out, RESPONSE_EVENTS, events.len(), |n| ReportRef {
            events: &events[..n],
            omitted: (events.len() - n) as u32,
        });
        outcome
    }

    fn state_hash(&self) -> u64 {
        self.hash()
    }

    fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.save(out)
    }

    fn load_state(&mut self, schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        *self = Exchange::load(schema_version, bytes, &self.limits)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::book::{Level, Order};
    use super::risk::Account;
    use super::*;

    #[test]
    fn the_documented_footprint_per_limit_holds() {
        use std::mem::size_of;
        let sizes = (
            size_of::<Order>(),
            size_of::<Level>(),
            size_of::<Account>(),
            size_of::<Option<Instrument>>(),
        );
        assert_eq!(sizes, (48, 32, 48, 88), "update the ExchangeLimits docs");
        let limits = ExchangeLimits::default();
        assert_eq!(max_levels(&limits), limits.max_open_orders as usize);
        let tight = ExchangeLimits {
            max_instruments: 3,
            max_price_levels: 5,
            ..limits
        };
        assert_eq!(max_levels(&tight), 30);
    }

    #[test]
    fn tables_are_reserved_to_the_limits_and_kept_by_clone() {
        let limits = ExchangeLimits {
            max_instruments: 10,
            max_accounts: 100,
            max_open_orders: 1000,
            max_price_levels: 20,
            ..ExchangeLimits::default()
        };
        let mut x = Exchange::with_limits(limits);
        x.prefault();
        let capacities = |x: &Exchange| {
            (
                x.instruments.capacity(),
                x.accounts.list.capacity(),
                x.arena.orders.capacity(),
                x.arena.levels.capacity(),
            )
        };
        assert_eq!(capacities(&x), (10, 100, 1000, 400));
        assert_eq!(capacities(&x.clone()), capacities(&x));
        assert_eq!(x.state_hash(), Exchange::with_limits(limits).state_hash());
    }
}
