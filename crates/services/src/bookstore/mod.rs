//! The bookstore: books with a price (integer cents) and a stock, orders placed at the price
//! the customer saw, cancels that restore stock, and queries answered by the same
//! business-logic thread. Built only on keel's public API, as an outside user would.
//!
//! The seed's rule: price changes and orders interleave on the one thread, so an order carries
//! the price its customer saw. If the price changed in between, the order is rejected with
//! [`RejectReason::PriceChanged`] and the current price, never silently charged a different
//! amount. Out of stock and unknown book are distinct rejections.
//!
//! - Messages, versions and the v1 → v2 upcast: [`messages`] (its `commands!` table).
//! - Replies, response kinds, reject reasons (stable numbers): [`responses`].
//! - State layout, limits, digest, snapshot schemas and upgrades: [`BookstoreLimits`],
//!   [`SCHEMA_VERSION`].
//! - The [`crate::App`] side (shell commands, JSON, the canonical workload): [`workload`].
//!
//! Determinism: the state is `Vec`s indexed by dense ids; time is the message's
//! `timestamp_ns`; nothing reads a clock or a random source.
//!
//! The store is a typed [`keel::Service`]; [`keel::Typed`] makes it the engine's `Processor`:
//!
//! ```
//! use keel_services::bookstore::{AddBook, Bookstore, Payload, PlaceOrder, RejectReason};
//! use keel::engine::{Message, MessageHeader};
//! use keel::{Outcome, Output, Processor, Typed};
//!
//! let mut store = Typed::new(Bookstore::default());
//! let mut buf = [0u8; 512];
//! let mut send = |store: &mut Typed<Bookstore>, command: keel_services::Command| {
//!     let header = MessageHeader { kind: command.kind, version: command.version, ..Default::default() };
//!     let message = Message { header, payload: &command.payload };
//!     store.apply(&message, &mut Output::new(&mut buf))
//! };
//! let add = AddBook { book: 1, price_cents: 1999, stock: 5, title: "Dune".into() };
//! assert_eq!(send(&mut store, add.command()), Outcome::Accepted);
//! let order = PlaceOrder { customer: 7, book: 1, quantity: 2, seen_price_cents: 1999 };
//! assert_eq!(send(&mut store, order.command()), Outcome::Accepted);
//! let stale = PlaceOrder { seen_price_cents: 1500, ..order };
//! assert_eq!(send(&mut store, stale.command()), Outcome::Rejected(RejectReason::PriceChanged.code()));
//! ```

mod app;
mod apply;
pub mod messages;
pub mod responses;
mod state;
mod state_codec;
pub mod workload;

pub use messages::{
    AddBook, CancelOrder, ChangePrice, Kind, OrderRequest, Payload, PlaceOrder, PlaceOrderV1,
    QueryBook, QueryCustomerOrders, QueryOrder, Request, Restock,
};
pub use responses::{
    BookInfo, BookStatus, CustomerOrders, OrderCancelled, OrderChain, OrderInfo, OrderPlaced,
    OrderStatus, OrderSummary, RejectDetail, RejectReason, Rejected, Reply, ResponseKind,
};
pub use state::{splitmix64, BookV1, BookstoreLimits, OrderV1, StateV1, StateV2, SCHEMA_VERSION};

use keel::codec::CodecError;
use keel::engine::{MessageHeader, Output};
use keel::snapshot::{load_serde, StateError};
use keel::Service;
use state::{Customers, Derived, Digest, Order};
use std::borrow::Cow;

/// The bookstore's whole state and its business logic: a typed [`Service`]
/// (`keel::Typed::new(store)` runs it in an engine).
#[derive(Debug)]
pub struct Bookstore {
    limits: BookstoreLimits,
    /// Books indexed by id, orders by id − 1.
    state: StateV2,
    book_count: u32,
    open_orders: u64,
    /// Indexed by customer id; derived from `orders`.
    customers: Customers,
    digest: Digest,
}

impl Default for Bookstore {
    fn default() -> Self {
        Bookstore::new(BookstoreLimits::default())
    }
}

impl Bookstore {
    /// An empty store with these limits. Reserves every container to its limit now, so the
    /// order path never reallocates (address space only: pages are touched as they fill;
    /// customer entries, 8 bytes each, are written now).
    ///
    /// # Panics
    /// If the limits do not fit in memory (`max_orders` × 48 bytes of address space,
    /// `max_customers` × 8 bytes).
    pub fn new(limits: BookstoreLimits) -> Self {
        Bookstore::from_state(
            limits,
            StateV2 {
                books: Vec::new(),
                orders: Vec::new(),
            },
        )
    }

    fn from_state(limits: BookstoreLimits, state: StateV2) -> Self {
        let StateV2 {
            mut books,
            mut orders,
        } = state;
        let room = |limit: u32, len: usize| (limit as usize).saturating_sub(len);
        books
            .try_reserve_exact(room(limits.max_books, books.len()))
            .expect("max_books fits");
        orders
            .try_reserve_exact(room(limits.max_orders, orders.len()))
            .expect("max_orders fits");
        let derived = Derived::of(&books, &mut orders, limits.max_customers);
        Bookstore {
            limits,
            book_count: derived.book_count,
            open_orders: derived.open_orders,
            digest: derived.digest,
            state: StateV2 { books, orders },
            customers: derived.customers,
        }
    }

    /// Touches every page reserved for orders now (`max_orders` × 48 bytes become resident),
    /// so the order path never stops for a page fault: the engine's "allocate and pre-fault
    /// at start" for a store that will fill. Optional: without it, pages are faulted in as
    /// orders arrive (one fault per 85 orders, a few microseconds each on a VM).
    pub fn prefault(&mut self) {
        let blank = Order {
            customer: 0,
            book: 0,
            quantity: 0,
            price_cents: 0,
            placed_ns: 0,
            cancelled_ns: 0,
            status: OrderStatus::Open,
            previous: 0,
        };
        for slot in self.state.orders.spare_capacity_mut() {
            slot.write(blank);
        }
    }

    /// The limits this store was built with.
    pub fn limits(&self) -> &BookstoreLimits {
        &self.limits
    }

    /// Books listed.
    pub fn book_count(&self) -> u32 {
        self.book_count
    }

    /// Orders placed (open and cancelled).
    pub fn order_count(&self) -> u64 {
        self.state.orders.len() as u64
    }

    /// Orders not cancelled.
    pub fn open_order_count(&self) -> u64 {
        self.open_orders
    }

    /// Customers who placed at least one order.
    pub fn customer_count(&self) -> u64 {
        u64::from(self.customers.active)
    }

    /// Orders the customer placed in all.
    pub fn customer_order_count(&self, customer: u64) -> u32 {
        self.customers.get(customer).map_or(0, |c| c.count)
    }

    /// One book, if listed.
    pub fn book(&self, book: u32) -> Option<BookInfo<'_>> {
        let b = self.state.books.get(book as usize)?.as_ref()?;
        Some(BookInfo {
            book,
            price_cents: b.price_cents,
            stock: b.stock,
            title: Cow::Borrowed(&b.title),
        })
    }

    /// One order, if it exists.
    pub fn order(&self, order: u64) -> Option<OrderInfo> {
        let index = usize::try_from(order.checked_sub(1)?).ok()?;
        let o = self.state.orders.get(index)?;
        Some(OrderInfo {
            order,
            customer: o.customer,
            book: o.book,
            quantity: o.quantity,
            price_cents: o.price_cents,
            placed_ns: o.placed_ns,
            cancelled_ns: o.cancelled_ns,
            status: o.status,
        })
    }

    /// Recomputes everything derived (digest, counts, customer index) from scratch and
    /// compares; also checks that every order names a listed book. For tests and tools: it
    /// walks the whole state.
    pub fn check_consistency(&self) -> Result<(), String> {
        let rebuilt = Bookstore::from_state(
            BookstoreLimits {
                max_orders: 0,
                max_customers: 0,
                max_books: 0,
                ..self.limits
            },
            StateV2 {
                books: self.state.books.clone(),
                orders: self.state.orders.clone(),
            },
        );
        if rebuilt.digest != self.digest {
            return Err(format!(
                "digest {:#x} != recomputed {:#x}",
                self.digest.0, rebuilt.digest.0
            ));
        }
        if (rebuilt.book_count, rebuilt.open_orders) != (self.book_count, self.open_orders) {
            return Err("book or open-order count differs from the state".into());
        }
        if rebuilt
            .state
            .orders
            .iter()
            .zip(&self.state.orders)
            .any(|(a, b)| a.previous != b.previous)
        {
            return Err("customer order chains differ from the orders".into());
        }
        let rebuilt_entry = |id: usize| {
            rebuilt
                .customers
                .entries
                .get(id)
                .copied()
                .unwrap_or_default()
        };
        if self.customers.active != rebuilt.customers.active
            || self
                .customers
                .entries
                .iter()
                .enumerate()
                .any(|(id, e)| *e != rebuilt_entry(id))
        {
            return Err("customer entries differ from the orders".into());
        }
        match self
            .state
            .orders
            .iter()
            .position(|o| self.book(o.book).is_none())
        {
            Some(i) => Err(format!(
                "order {} names unlisted book {}",
                i + 1,
                self.state.orders[i].book
            )),
            None => Ok(()),
        }
    }
}

impl Service for Bookstore {
    type Command = messages::Request;
    type Reply<'a> = Reply<'a>;
    type Rejection = Rejected;
    type State = StateV2;

    #[inline]
    fn apply(&mut self, request: Request, header: &MessageHeader) -> Result<Reply<'_>, Rejected> {
        self.execute(request, header.timestamp_ns)
    }

    fn state(&self) -> &StateV2 {
        &self.state
    }

    /// Takes a state as it is (the limits are not checked: `load_state` checks them).
    fn restore(&mut self, state: StateV2) {
        *self = Bookstore::from_state(self.limits, state);
    }

    /// Under the reply's own [`ResponseKind`]. A query answer that does not fit
    /// `max_response_bytes` is rejected with `ResponseTooLarge`; a confirmation that does not
    /// fit (the change happened) is accepted with no payload.
    #[inline]
    fn write_reply(reply: &Reply<'_>, out: &mut Output<'_>) -> Result<(), Rejected> {
        // One dispatch: each arm encodes its struct under its kind.
        let (encoded, kind) = match reply {
            Reply::BookStatus(r) => (out.encode(r), ResponseKind::BookStatus),
            Reply::BookInfo(r) => (out.encode(r), ResponseKind::BookInfo),
            Reply::OrderPlaced(r) => (out.encode(r), ResponseKind::OrderPlaced),
            Reply::OrderCancelled(r) => (out.encode(r), ResponseKind::OrderCancelled),
            Reply::OrderInfo(r) => (out.encode(r), ResponseKind::OrderInfo),
            Reply::CustomerOrders(r) => (out.encode(r), ResponseKind::CustomerOrders),
        };
        if encoded.is_ok() {
            out.set_kind(kind.number());
        } else if reply.is_query() {
            return Err(RejectReason::ResponseTooLarge.into());
        }
        Ok(())
    }

    /// The detail, if any, under [`ResponseKind::RejectDetail`]; a detail that does not fit
    /// is dropped (the reason code alone still answers).
    #[inline]
    fn write_rejection(rejection: &Rejected, out: &mut Output<'_>) {
        if let Some(detail) = &rejection.detail {
            if out.encode(detail).is_ok() {
                out.set_kind(ResponseKind::RejectDetail.number());
            }
        }
    }

    fn prefault(&mut self) {
        Bookstore::prefault(self);
    }

    /// O(1): the digest is kept up to date on every change (see the `state` module docs).
    fn state_hash(&self) -> u64 {
        self.digest.0
    }

    fn name(&self) -> &'static str {
        <keel::Typed<Bookstore> as crate::App>::NAME
    }

    fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// Schema 2, through `state_codec` (the bytes serde would write for [`StateV2`]).
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        state_codec::encode(&self.state.books, &self.state.orders, out)
    }

    /// Upgrade path: schema 2 loads as is; schema 1 ([`StateV1`], orders without
    /// `cancelled_ns`) is upgraded with `cancelled_ns = 0` ("not recorded") on every order;
    /// any other version is refused with `UnsupportedSchema`.
    /// Derived data (customer entries and chains, counts, digest) is rebuilt. The limits stay
    /// the ones this store was built with, and the state must fit them (limits may grow
    /// between runs, not shrink below the state). On error `self` is untouched.
    fn load_state(&mut self, schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        let state = match schema_version {
            2 => state_codec::decode(bytes, &self.limits)?,
            1 => {
                let state = load_serde::<StateV1>(bytes)?.upgrade();
                state.validate(&self.limits)?;
                state
            }
            found => {
                return Err(StateError::UnsupportedSchema {
                    found,
                    current: SCHEMA_VERSION,
                })
            }
        };
        *self = Bookstore::from_state(self.limits, state);
        Ok(())
    }
}
