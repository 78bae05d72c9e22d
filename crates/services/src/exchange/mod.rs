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
//! the limits it was taken under); hitting a limit is a rejection, never a panic. State lives
//! in `Vec`s and slabs (each book side a price-ordered list and AVL tree threaded through the
//! level slab, see the `ladder` module), plus one `Vec`-backed open-addressing order-id index
//! with a fixed hash that is never iterated (see the `index` module); time and assigned ids come
//! from the message header. `save_state` writes a canonical form (books in priority order), so
//! `state_hash` is equal for equal states however they were reached (see the `state` module,
//! which also documents the schema upgrade path).
//!
//! # Cost
//!
//! Steady-state `apply` of order and admin messages allocates nothing (`crates/services/tests/exchange_alloc.rs`
//! counts it, directly and through the engine): the order and level slabs are reserved for
//! `max_open_orders` at construction, and the response is encoded straight into the engine's
//! `Output` from a reused event buffer. What still grows, and only at a new high: the order-id
//! index (doubling as the open orders reach a new peak), the event buffer (a message with more
//! events than any before), an account's holdings (its first position in an instrument), and
//! the account and instrument tables (deposits and new instruments). Queries are encoded from
//! borrowed views and a fixed depth buffer, so they allocate nothing either.

mod admin;
mod app;
mod book;
mod events;
mod index;
mod invariants;
mod ladder;
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

use book::{Arena, Book};
use events::{AccountViewRef, BookDepthRef, ReportRef};
use index::OrderIndex;
use keel::codec::CodecError;
use keel::engine::{Message, Outcome, Output, Processor};
use keel::snapshot::StateError;
use risk::Accounts;
use serde::{Deserialize, Serialize};

/// Every bound of the exchange, fixed when it is created and saved with its state.
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

const DEPTH_ZERO: DepthLevel = DepthLevel {
    price: 0,
    qty: 0,
    orders: 0,
};

/// One instrument: its rules and its book.
#[derive(Debug, Clone)]
pub(crate) struct Instrument {
    pub(crate) tick: u64,
    pub(crate) market_band: u64,
    /// Sum of every account's lots of this instrument.
    pub(crate) total_position: u64,
    pub(crate) book: Book,
}

/// The exchange: a [`Processor`] (and [`crate::App`]) owning all books and accounts.
#[derive(Debug, Clone)]
pub struct Exchange {
    limits: ExchangeLimits,
    instruments: Vec<Option<Instrument>>,
    accounts: Accounts,
    arena: Arena,
    /// Resting order id → order slot.
    index: OrderIndex,
    /// Events of the message being applied (cleared per message; capacity kept).
    events: Vec<Event>,
    /// A book query's bids and asks, gathered here to be encoded.
    depth: [[DepthLevel; MAX_QUERY_DEPTH as usize]; 2],
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::with_limits(ExchangeLimits::default())
    }
}

impl Exchange {
    /// An empty exchange with these limits. Its order and level slabs are reserved for
    /// `max_open_orders` here (address space; pages are touched as orders arrive), so placing,
    /// matching and cancelling never allocate afterwards.
    pub fn with_limits(limits: ExchangeLimits) -> Self {
        Exchange::reserving(limits, limits.max_open_orders)
    }

    /// An empty exchange with these limits, its slabs reserved for `open_orders` orders.
    fn reserving(limits: ExchangeLimits, open_orders: u32) -> Self {
        Exchange {
            limits,
            instruments: Vec::new(),
            accounts: Accounts::default(),
            arena: Arena::with_capacity(open_orders),
            index: OrderIndex::default(),
            events: Vec::with_capacity(256),
            depth: [[DEPTH_ZERO; MAX_QUERY_DEPTH as usize]; 2],
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
        let answered = match request {
            Request::QueryBook(q) => self.answer_book(q.instrument, q.depth, out),
            Request::QueryAccount(q) => self.answer_account(q.account, out),
            _ => unreachable!("only queries are answered"),
        };
        match (answered, request) {
            (true, _) => Outcome::Accepted,
            (false, Request::QueryBook(_)) => self.reject(0, RejectReason::UnknownInstrument),
            (false, _) => self.reject(0, RejectReason::UnknownAccount),
        }
    }

    /// Encodes a [`BookDepth`] of `instrument` into `out` (false: no such instrument).
    fn answer_book(&mut self, instrument: u32, depth: u32, out: &mut Output<'_>) -> bool {
        let Some(Some(i)) = self.instruments.get(instrument as usize) else {
            return false;
        };
        let depth = depth.min(MAX_QUERY_DEPTH) as usize;
        let [bids, asks] = &mut self.depth;
        let book = &i.book;
        let n_bids = book.depth_into(&self.arena, Side::Buy, &mut bids[..depth]);
        let n_asks = book.depth_into(&self.arena, Side::Sell, &mut asks[..depth]);
        let (bids, asks) = (&bids[..n_bids], &asks[..n_asks]);
        encode_fitting(out, RESPONSE_BOOK, bids.len().max(asks.len()), |n| {
            BookDepthRef {
                instrument,
                bids: &bids[..n.min(bids.len())],
                asks: &asks[..n.min(asks.len())],
            }
        });
        true
    }

    /// Encodes an [`AccountView`] of `account` into `out` (false: no such account).
    fn answer_account(&self, account: u32, out: &mut Output<'_>) -> bool {
        let Some(a) = self.accounts.get(account) else {
            return false;
        };
        let total = a.holdings.len();
        encode_fitting(out, RESPONSE_ACCOUNT, total, |n| AccountViewRef {
            account,
            cash: a.cash,
            reserved: a.reserved,
            holdings: &a.holdings[..n],
            omitted: (total - n) as u32,
        });
        true
    }
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
