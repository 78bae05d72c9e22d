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
//! The exchange is a `keel::Service`: [`Request`] is its `commands!` table (kinds, versions,
//! the v1 upcast), and `keel::Typed<Exchange>` the processor the engine runs.
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
//! The exchange keeps its own response layout (it overrides the typed layer's writers):
//! order and admin messages answer with a [`Report`] (kind [`RESPONSE_EVENTS`]): the
//! [`Event`]s in the order they happened — `Rejected` alone, or e.g. `Accepted`, `Trade`…,
//! `Cancelled` (IOC remainder), then `Book` when the instrument's top of book (best bid/ask
//! price and size) changed. A rejected message also sets the response's reason code
//! ([`RejectReason`] as `u32`). When the report would not fit in `Config::max_response_bytes`
//! (4096 by default, about 50 trades) the exchange writes the longest prefix of the events
//! that fits and sets `Report::omitted` to how many were left off the end; the state change is
//! complete either way. Queries answer with a [`BookDepth`] or an [`AccountView`]. A message
//! of an unknown kind or version, or with a malformed payload, is rejected with its own reason
//! (1, 2, 3) and a `Rejected` event like any other.
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
mod saved;
mod state;
mod workload;

pub use events::{
    AccountView, AccountViewRef, BookDepth, BookDepthRef, CancelReason, DepthLevel, Event, Holding,
    RejectReason, Rejected, Reply, Report, TopOfBook, MAX_QUERY_DEPTH, RESPONSE_ACCOUNT,
    RESPONSE_BOOK, RESPONSE_EVENTS,
};
pub use messages::*;
pub use state::{OrderView, SCHEMA_VERSION};
pub use workload::{WorkloadParams, WORKLOAD};

use book::{Arena, Book};
use index::OrderIndex;
use keel::codec::CodecError;
use keel::engine::{MessageHeader, Output};
use keel::snapshot::StateError;
use keel::Service;
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

/// The exchange: a [`Service`] owning all books and accounts; `keel::Typed<Exchange>` is its
/// `Processor` (and [`crate::App`]).
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
    /// Where the state hash encodes the state (kept: hashing does not allocate).
    hash_scratch: saved::HashScratch,
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
            hash_scratch: saved::HashScratch::default(),
        }
    }

    /// Its limits.
    pub fn limits(&self) -> &ExchangeLimits {
        &self.limits
    }

    /// A book query's answer: up to `depth` levels per side (`None`: no such instrument).
    fn book_depth_ref(&mut self, q: QueryBook) -> Option<Reply<'_>> {
        let Some(Some(i)) = self.instruments.get(q.instrument as usize) else {
            return None;
        };
        let depth = q.depth.min(MAX_QUERY_DEPTH) as usize;
        let [bids, asks] = &mut self.depth;
        let n_bids = i
            .book
            .depth_into(&self.arena, Side::Buy, &mut bids[..depth]);
        let n_asks = i
            .book
            .depth_into(&self.arena, Side::Sell, &mut asks[..depth]);
        Some(Reply::Book(BookDepthRef {
            instrument: q.instrument,
            bids: &bids[..n_bids],
            asks: &asks[..n_asks],
        }))
    }

    /// An account query's answer (`None`: no such account).
    fn account_view_ref(&self, account: u32) -> Option<Reply<'_>> {
        let a = self.accounts.get(account)?;
        Some(Reply::Account(AccountViewRef {
            account,
            cash: a.cash,
            reserved: a.reserved,
            holdings: &a.holdings,
            omitted: 0,
        }))
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

impl Service for Exchange {
    type Command = Request;
    type Reply<'a> = Reply<'a>;
    type Rejection = Rejected;
    /// Unused: the exchange writes, hashes and loads its canonical form itself (`state`
    /// module), so every state function below is its own.
    type State = ();

    /// Order and admin requests answer with their events; queries change nothing.
    fn apply(&mut self, request: Request, header: &MessageHeader) -> Result<Reply<'_>, Rejected> {
        self.events.clear();
        let order_id = order_id_of(&request);
        let rejected = |reason| Rejected { order_id, reason };
        let result = match request {
            Request::QueryBook(q) => {
                return self
                    .book_depth_ref(q)
                    .ok_or(rejected(RejectReason::UnknownInstrument))
            }
            Request::QueryAccount(q) => {
                return self
                    .account_view_ref(q.account)
                    .ok_or(rejected(RejectReason::UnknownAccount))
            }
            Request::AddInstrument(m) => self.add_instrument(&m),
            Request::DepositCash(m) => self.deposit_cash(&m),
            Request::WithdrawCash(m) => self.withdraw_cash(&m),
            Request::DepositPosition(m) => self.deposit_position(&m),
            Request::WithdrawPosition(m) => self.withdraw_position(&m),
            Request::Place(m) => self.place(&m, header.sequence),
            Request::Cancel(m) => self.cancel(&m),
            Request::Move(m) => self.move_order(&m),
            Request::Reduce(m) => self.reduce(&m),
        };
        match result {
            Ok(()) => Ok(Reply::Events(&self.events)),
            Err(reason) => {
                debug_assert!(
                    self.events.is_empty(),
                    "a rejection must not follow changes"
                );
                Err(rejected(reason))
            }
        }
    }

    fn state(&self) -> &() {
        &()
    }

    fn restore(&mut self, (): ()) {}

    fn name(&self) -> &'static str {
        <keel::Typed<Exchange> as crate::App>::NAME
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

    fn state_hash(&self) -> u64 {
        self.hash()
    }

    fn write_reply(reply: &Reply<'_>, out: &mut Output<'_>) -> Result<(), Rejected> {
        reply.write(out);
        Ok(())
    }

    fn write_rejection(rejection: &Rejected, out: &mut Output<'_>) {
        rejection.write(out);
    }
}
