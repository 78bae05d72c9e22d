//! What the bookstore answers: reject reasons (stable numbers), response kinds and their
//! payloads, all encoded with [`keel::codec`].
//!
//! A response's header carries the status and, when rejected, the [`RejectReason`] number;
//! its `kind` is a [`ResponseKind`] that says how to decode the payload (`None`: no payload).
//! The business logic answers a [`Reply`] or a [`Rejected`]; the service writes each under
//! its response kind (`Bookstore::write_reply`, `write_rejection`).

use super::state::Order;
use keel::service::Invalid;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// Why the bookstore refused a message. The state is unchanged. The numbers are stable:
/// they are journaled outcomes and reach clients, so never renumber; only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u32)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    /// No book with that id.
    UnknownBook = 1,
    /// Fewer copies in stock than ordered (detail: `Available`).
    OutOfStock = 2,
    /// The price the customer saw is no longer the book's price (detail: `CurrentPrice`).
    PriceChanged = 3,
    /// No order with that id.
    UnknownOrder = 4,
    /// The order was already cancelled.
    AlreadyCancelled = 5,
    /// The order belongs to another customer.
    NotYourOrder = 6,
    /// A book with that id already exists.
    DuplicateBook = 7,
    /// The book id is not below `max_books` (ids are dense: `0..max_books`) (detail: `Limit`).
    BookLimit = 8,
    /// The store holds `max_orders` orders already (detail: `Limit`).
    OrderLimit = 9,
    /// The customer placed `max_orders_per_customer` orders already (detail: `Limit`).
    CustomerOrderLimit = 10,
    /// The customer id is not below `max_customers` (ids are dense: `0..max_customers`)
    /// (detail: `Limit`).
    CustomerLimit = 11,
    /// The stock would exceed `max_stock_per_book` (detail: `Limit`).
    StockLimit = 12,
    /// The title is longer than `max_title_bytes` (detail: `Limit`).
    TitleTooLong = 13,
    /// Quantity 0, or above `max_quantity_per_order` (detail: `Limit`).
    InvalidQuantity = 14,
    /// Price 0, or above `max_price_cents` (detail: `Limit`).
    InvalidPrice = 15,
    /// A query's answer does not fit the engine's `max_response_bytes`.
    ResponseTooLarge = 16,
    /// The message kind is not a bookstore kind.
    UnknownKind = 100,
    /// The kind is known but this version of it is not.
    UnsupportedVersion = 101,
    /// The payload does not decode as that kind and version.
    Malformed = 102,
}

impl RejectReason {
    /// Every reason, in number order.
    pub const ALL: [RejectReason; 19] = [
        RejectReason::UnknownBook,
        RejectReason::OutOfStock,
        RejectReason::PriceChanged,
        RejectReason::UnknownOrder,
        RejectReason::AlreadyCancelled,
        RejectReason::NotYourOrder,
        RejectReason::DuplicateBook,
        RejectReason::BookLimit,
        RejectReason::OrderLimit,
        RejectReason::CustomerOrderLimit,
        RejectReason::CustomerLimit,
        RejectReason::StockLimit,
        RejectReason::TitleTooLong,
        RejectReason::InvalidQuantity,
        RejectReason::InvalidPrice,
        RejectReason::ResponseTooLarge,
        RejectReason::UnknownKind,
        RejectReason::UnsupportedVersion,
        RejectReason::Malformed,
    ];

    /// The reason with this number, if any.
    pub fn from_u32(code: u32) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The stable number sent to clients.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The variant name, for logs and JSON.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 19] = [
            "UnknownBook",
            "OutOfStock",
            "PriceChanged",
            "UnknownOrder",
            "AlreadyCancelled",
            "NotYourOrder",
            "DuplicateBook",
            "BookLimit",
            "OrderLimit",
            "CustomerOrderLimit",
            "CustomerLimit",
            "StockLimit",
            "TitleTooLong",
            "InvalidQuantity",
            "InvalidPrice",
            "ResponseTooLarge",
            "UnknownKind",
            "UnsupportedVersion",
            "Malformed",
        ];
        let index = RejectReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(0);
        NAMES[index]
    }
}

/// How to decode a response payload (the response header's `kind`). Stable numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[repr(u16)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseKind {
    /// No payload.
    None = 0,
    /// [`BookStatus`]: after add-book, change-price, restock.
    BookStatus = 1,
    /// [`BookInfo`]: answer to query-book.
    BookInfo = 2,
    /// [`OrderPlaced`]: after place-order.
    OrderPlaced = 3,
    /// [`OrderCancelled`]: after cancel-order.
    OrderCancelled = 4,
    /// [`OrderInfo`]: answer to query-order.
    OrderInfo = 5,
    /// [`CustomerOrders`]: answer to query-customer-orders.
    CustomerOrders = 6,
    /// [`RejectDetail`]: extra facts about a rejection.
    RejectDetail = 7,
}

impl ResponseKind {
    /// The kind with this number, if any.
    pub fn from_u16(kind: u16) -> Option<ResponseKind> {
        const ALL: [ResponseKind; 8] = [
            ResponseKind::None,
            ResponseKind::BookStatus,
            ResponseKind::BookInfo,
            ResponseKind::OrderPlaced,
            ResponseKind::OrderCancelled,
            ResponseKind::OrderInfo,
            ResponseKind::CustomerOrders,
            ResponseKind::RejectDetail,
        ];
        ALL.get(usize::from(kind)).copied()
    }

    /// The number on the wire.
    pub fn number(self) -> u16 {
        self as u16
    }
}

/// A book's price and stock after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookStatus {
    /// Book id.
    pub book: u32,
    /// Current price in cents.
    pub price_cents: u64,
    /// Copies in stock.
    pub stock: u64,
}

/// Everything about one book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookInfo<'a> {
    /// Book id.
    pub book: u32,
    /// Current price in cents.
    pub price_cents: u64,
    /// Copies in stock.
    pub stock: u64,
    /// Title.
    pub title: Cow<'a, str>,
}

/// An accepted order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The new order's id (1, 2, 3, … in the order orders were accepted).
    pub order: u64,
    /// Book id.
    pub book: u32,
    /// Copies ordered.
    pub quantity: u32,
    /// Unit price charged, in cents.
    pub price_cents: u64,
    /// `price_cents * quantity`.
    pub total_cents: u64,
    /// Copies of the book left in stock.
    pub remaining_stock: u64,
}

/// A cancelled order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// Order id.
    pub order: u64,
    /// Book id.
    pub book: u32,
    /// Copies returned to stock.
    pub quantity: u32,
    /// The book's stock afterwards.
    pub stock: u64,
}

/// Whether an order still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    /// Placed and not cancelled.
    Open = 0,
    /// Cancelled; its copies went back to stock.
    Cancelled = 1,
}

/// Everything about one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInfo {
    /// Order id.
    pub order: u64,
    /// Who placed it.
    pub customer: u64,
    /// Book id.
    pub book: u32,
    /// Copies.
    pub quantity: u32,
    /// Unit price charged, in cents.
    pub price_cents: u64,
    /// `timestamp_ns` of the message that placed it.
    pub placed_ns: u64,
    /// `timestamp_ns` of the message that cancelled it (0 while open).
    pub cancelled_ns: u64,
    /// Open or cancelled.
    pub status: OrderStatus,
}

/// One line of a customer's order list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    /// Order id.
    pub order: u64,
    /// Book id.
    pub book: u32,
    /// Copies.
    pub quantity: u32,
    /// Unit price charged, in cents.
    pub price_cents: u64,
    /// Open or cancelled.
    pub status: OrderStatus,
}

/// A page of a customer's orders, newest first. `L` is `Vec<OrderSummary>` when decoding; the
/// bookstore encodes the same layout straight from its state, without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerOrders<L = Vec<OrderSummary>> {
    /// Customer id.
    pub customer: u64,
    /// How many orders the customer has placed in all.
    pub total: u32,
    /// Pass as `before_order` to get the next (older) page; 0 when this is the last page.
    pub next_before: u64,
    /// At most `orders_per_page` orders, newest first.
    pub orders: L,
}

/// Extra facts sent with some rejections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectDetail {
    /// With `PriceChanged`: the price now.
    CurrentPrice {
        /// Book id.
        book: u32,
        /// Current price in cents.
        price_cents: u64,
    },
    /// With `OutOfStock`: the copies there are.
    Available {
        /// Book id.
        book: u32,
        /// Copies in stock.
        stock: u64,
    },
    /// With the `*Limit`, `Invalid*` and `TitleTooLong` reasons: the configured limit.
    Limit {
        /// The limit's value.
        limit: u64,
    },
}

/// Why the bookstore refused a message: the reason (the response's `reason`) and, for some
/// reasons, a detail (the payload, response kind [`ResponseKind::RejectDetail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Why.
    pub reason: RejectReason,
    /// Extra facts, if the reason has any.
    pub detail: Option<RejectDetail>,
}

impl From<RejectReason> for Rejected {
    #[inline]
    fn from(reason: RejectReason) -> Self {
        Rejected {
            reason,
            detail: None,
        }
    }
}

impl Rejected {
    /// A rejection for a limit, with the limit's value as its detail.
    #[inline]
    pub(crate) fn limit(reason: RejectReason, limit: impl Into<u64>) -> Self {
        let detail = RejectDetail::Limit {
            limit: limit.into(),
        };
        Rejected {
            reason,
            detail: Some(detail),
        }
    }
}

impl keel::Rejection for Rejected {
    #[inline]
    fn code(&self) -> u32 {
        self.reason.code()
    }

    /// The bookstore's own codes 100–102, older than keel's reserved ones.
    fn refused(invalid: Invalid) -> Option<Self> {
        let reason = match invalid {
            Invalid::UnknownKind => RejectReason::UnknownKind,
            Invalid::UnsupportedVersion => RejectReason::UnsupportedVersion,
            Invalid::Undecodable => RejectReason::Malformed,
        };
        Some(reason.into())
    }
}

/// What an accepted command answers: one response payload, encoded without an enum tag
/// under its own [`ResponseKind`].
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply<'a> {
    /// After add-book, change-price, restock.
    BookStatus(BookStatus),
    /// Answer to query-book.
    BookInfo(BookInfo<'a>),
    /// After place-order.
    OrderPlaced(OrderPlaced),
    /// After cancel-order.
    OrderCancelled(OrderCancelled),
    /// Answer to query-order.
    OrderInfo(OrderInfo),
    /// Answer to query-customer-orders, encoded straight from the state.
    CustomerOrders(CustomerOrders<OrderChain<'a>>),
}

impl Reply<'_> {
    /// The response kind this reply is written under.
    #[inline]
    pub fn kind(&self) -> ResponseKind {
        match self {
            Reply::BookStatus(_) => ResponseKind::BookStatus,
            Reply::BookInfo(_) => ResponseKind::BookInfo,
            Reply::OrderPlaced(_) => ResponseKind::OrderPlaced,
            Reply::OrderCancelled(_) => ResponseKind::OrderCancelled,
            Reply::OrderInfo(_) => ResponseKind::OrderInfo,
            Reply::CustomerOrders(_) => ResponseKind::CustomerOrders,
        }
    }

    /// Whether this answers a query (which changed nothing).
    #[inline]
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Reply::BookInfo(_) | Reply::OrderInfo(_) | Reply::CustomerOrders(_)
        )
    }
}

/// `len` orders of one customer's chain from order id `first`, serialized as a sequence of
/// [`OrderSummary`] without collecting them.
#[derive(Clone, Copy)]
pub struct OrderChain<'a> {
    pub(crate) orders: &'a [Order],
    pub(crate) first: u32,
    pub(crate) len: u32,
}

impl fmt::Debug for OrderChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (first, len) = (self.first, self.len);
        write!(f, "OrderChain {{ first: {first}, len: {len} }}")
    }
}

impl Serialize for OrderChain<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len as usize))?;
        let mut id = self.first;
        for _ in 0..self.len {
            let o = &self.orders[id as usize - 1];
            seq.serialize_element(&OrderSummary {
                order: u64::from(id),
                book: o.book,
                quantity: o.quantity,
                price_cents: o.price_cents,
                status: o.status,
            })?;
            id = o.previous;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_numbers_are_stable_and_unique() {
        let codes: Vec<u32> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(
            codes,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 100, 101, 102]
        );
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::from_u32(reason.code()), Some(reason));
            assert_eq!(format!("{reason:?}"), reason.name());
        }
        assert_eq!(RejectReason::from_u32(0), None);
    }

    #[test]
    fn response_kinds_round_trip() {
        for n in 0..8 {
            assert_eq!(ResponseKind::from_u16(n).map(ResponseKind::number), Some(n));
        }
        assert_eq!(ResponseKind::from_u16(8), None);
    }
}
