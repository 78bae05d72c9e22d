//! Bookstore messages: kinds, versions, payloads, and the upcast of old versions.
//!
//! Every payload is one struct encoded with [`keel::codec`] (fixed-width little-endian
//! integers, strings as a `u64` length then UTF-8 bytes). Each kind has a current version;
//! older versions stay decodable forever, because old journals must replay. [`decode`] turns
//! any supported `(kind, version, payload)` into one canonical [`Request`], upcasting old
//! versions on the way, so the business logic only ever sees the current shape.
//!
//! | kind | name                     | version | payload                                         |
//! |------|--------------------------|---------|-------------------------------------------------|
//! | 1    | `AddBook`                | 1       | book u32, price_cents u64, stock u64, title str |
//! | 2    | `ChangePrice`            | 1       | book u32, price_cents u64                       |
//! | 3    | `Restock`                | 1       | book u32, quantity u32                          |
//! | 4    | `PlaceOrder`             | 1 (old) | customer u64, book u32, quantity u32            |
//! | 4    | `PlaceOrder`             | 2       | customer u64, book u32, quantity u32, seen_price_cents u64 |
//! | 5    | `CancelOrder`            | 1       | customer u64, order u64                         |
//! | 6    | `QueryBook`              | 1       | book u32                                        |
//! | 7    | `QueryOrder`             | 1       | order u64                                       |
//! | 8    | `QueryCustomerOrders`    | 1       | customer u64, before_order u64 (0: newest)      |

use super::RejectReason;
use crate::Command;
use keel::codec::{self, CodecError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The bookstore's message kinds (the `kind` of a message header). Stable numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[repr(u16)]
pub enum Kind {
    /// Lists a new book: [`AddBook`].
    AddBook = 1,
    /// Sets a book's price: [`ChangePrice`].
    ChangePrice = 2,
    /// Adds stock to a book: [`Restock`].
    Restock = 3,
    /// A customer orders copies of a book: [`PlaceOrder`] (v2) or [`PlaceOrderV1`].
    PlaceOrder = 4,
    /// A customer cancels one of their orders: [`CancelOrder`].
    CancelOrder = 5,
    /// Reads one book: [`QueryBook`].
    QueryBook = 6,
    /// Reads one order: [`QueryOrder`].
    QueryOrder = 7,
    /// Reads a page of one customer's orders, newest first: [`QueryCustomerOrders`].
    QueryCustomerOrders = 8,
}

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Kind; 8] = [
        Kind::AddBook,
        Kind::ChangePrice,
        Kind::Restock,
        Kind::PlaceOrder,
        Kind::CancelOrder,
        Kind::QueryBook,
        Kind::QueryOrder,
        Kind::QueryCustomerOrders,
    ];

    /// The kind with this number, if any.
    pub fn from_u16(kind: u16) -> Option<Kind> {
        Kind::ALL.get(usize::from(kind).wrapping_sub(1)).copied()
    }

    /// The kind's number on the wire.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// The version new messages of this kind are written with.
    pub fn current_version(self) -> u16 {
        match self {
            Kind::PlaceOrder => 2,
            _ => 1,
        }
    }

    /// Whether messages of this kind only read the state.
    pub fn is_query(self) -> bool {
        matches!(
            self,
            Kind::QueryBook | Kind::QueryOrder | Kind::QueryCustomerOrders
        )
    }

    /// Lower-case name used in JSON and in errors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AddBook => "add-book",
            Kind::ChangePrice => "change-price",
            Kind::Restock => "restock",
            Kind::PlaceOrder => "place-order",
            Kind::CancelOrder => "cancel-order",
            Kind::QueryBook => "query-book",
            Kind::QueryOrder => "query-order",
            Kind::QueryCustomerOrders => "query-customer-orders",
        }
    }
}

/// A message payload type: its kind, its version, and how to encode it.
pub trait Payload: Serialize + Sized {
    /// The message kind this payload belongs to.
    const KIND: Kind;
    /// The version this struct encodes.
    const VERSION: u16;

    /// The message ready to submit (allocates the payload; not for the hot path).
    fn command(&self) -> Command {
        let mut payload = Vec::new();
        codec::encode_to_vec(self, &mut payload).expect("encoding into a Vec cannot fail");
        Command {
            kind: Self::KIND.number(),
            version: Self::VERSION,
            payload,
        }
    }

    /// Encodes the payload into `buf`, returning its length. Does not allocate.
    fn encode_into(&self, buf: &mut [u8]) -> Result<usize, CodecError> {
        codec::encode_into(self, buf)
    }
}

/// Kind 1, v1: lists a new book. `book` is a dense id below `BookstoreLimits::max_books`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddBook {
    /// Book id, `0..max_books`.
    pub book: u32,
    /// Price in cents, `1..=max_price_cents`.
    pub price_cents: u64,
    /// Copies in stock, at most `max_stock_per_book`.
    pub stock: u64,
    /// Title, at most `max_title_bytes` bytes of UTF-8.
    pub title: String,
}

/// Kind 2, v1: sets a book's price. Orders placed at the old price are rejected afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePrice {
    /// Book id.
    pub book: u32,
    /// New price in cents, `1..=max_price_cents`.
    pub price_cents: u64,
}

/// Kind 3, v1: adds copies to a book's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restock {
    /// Book id.
    pub book: u32,
    /// Copies added, at least 1; stock may not exceed `max_stock_per_book`.
    pub quantity: u32,
}

/// Kind 4, v1 (superseded): an order without the price the customer saw. Upcast to a
/// [`OrderRequest`] that accepts whatever the price is when the order is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrderV1 {
    /// Customer id, `0..max_customers`.
    pub customer: u64,
    /// Book id.
    pub book: u32,
    /// Copies, `1..=max_quantity_per_order`.
    pub quantity: u32,
}

/// Kind 4, v2 (current): an order at the price the customer saw. If the book's price has
/// changed since, the order is rejected with [`RejectReason::PriceChanged`] and the current
/// price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Customer id, `0..max_customers`.
    pub customer: u64,
    /// Book id.
    pub book: u32,
    /// Copies, `1..=max_quantity_per_order`.
    pub quantity: u32,
    /// The unit price in cents the customer was shown.
    pub seen_price_cents: u64,
}

/// Kind 5, v1: a customer cancels one of their open orders; the copies go back to stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    /// The customer asking; must be the one who placed the order.
    pub customer: u64,
    /// Order id, as returned when it was placed.
    pub order: u64,
}

/// Kind 6, v1: reads one book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryBook {
    /// Book id.
    pub book: u32,
}

/// Kind 7, v1: reads one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryOrder {
    /// Order id.
    pub order: u64,
}

/// Kind 8, v1: reads a page of a customer's orders, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryCustomerOrders {
    /// Customer id.
    pub customer: u64,
    /// 0 for the newest page; otherwise the `next_before` of the previous page (an order of
    /// this customer): the page then starts with the customer's order placed before it.
    pub before_order: u64,
}

macro_rules! payload {
    ($($ty:ty => $kind:ident, $version:literal;)*) => {$(
        impl Payload for $ty {
            const KIND: Kind = Kind::$kind;
            const VERSION: u16 = $version;
        }
    )*};
}

payload! {
    AddBook => AddBook, 1;
    ChangePrice => ChangePrice, 1;
    Restock => Restock, 1;
    PlaceOrderV1 => PlaceOrder, 1;
    PlaceOrder => PlaceOrder, 2;
    CancelOrder => CancelOrder, 1;
    QueryBook => QueryBook, 1;
    QueryOrder => QueryOrder, 1;
    QueryCustomerOrders => QueryCustomerOrders, 1;
}

/// The canonical (current) form of an order, whatever version it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OrderRequest {
    /// Customer id.
    pub customer: u64,
    /// Book id.
    pub book: u32,
    /// Copies.
    pub quantity: u32,
    /// The price the customer saw; `None` (only from v1) accepts the current price.
    pub seen_price_cents: Option<u64>,
}

/// The v1 → v2 upcast: v1 clients never sent the price they saw, and they expected the
/// order to go through at whatever the price was. So a v1 order checks nothing about the
/// price; it is recorded, like every order, at the price current when it is applied.
impl From<PlaceOrderV1> for OrderRequest {
    fn from(v1: PlaceOrderV1) -> Self {
        OrderRequest {
            customer: v1.customer,
            book: v1.book,
            quantity: v1.quantity,
            seen_price_cents: None,
        }
    }
}

impl From<PlaceOrder> for OrderRequest {
    fn from(v2: PlaceOrder) -> Self {
        OrderRequest {
            customer: v2.customer,
            book: v2.book,
            quantity: v2.quantity,
            seen_price_cents: Some(v2.seen_price_cents),
        }
    }
}

/// Any bookstore message, decoded and upcast to its current shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    /// Kind 1.
    AddBook(AddBook),
    /// Kind 2.
    ChangePrice(ChangePrice),
    /// Kind 3.
    Restock(Restock),
    /// Kind 4, any version.
    PlaceOrder(OrderRequest),
    /// Kind 5.
    CancelOrder(CancelOrder),
    /// Kind 6.
    QueryBook(QueryBook),
    /// Kind 7.
    QueryOrder(QueryOrder),
    /// Kind 8.
    QueryCustomerOrders(QueryCustomerOrders),
}

#[inline]
fn de<T: DeserializeOwned>(payload: &[u8]) -> Result<T, RejectReason> {
    codec::decode(payload).map_err(|_| RejectReason::Malformed)
}

/// Checks the title length an `AddBook` v1 payload declares against the bytes that are
/// actually there, before decoding allocates a `String` of the declared length.
///
/// Layout (fixed-width codec): book u32 @0, price_cents u64 @4, stock u64 @12, title length
/// u64 @20, title bytes @28.
fn check_add_book(payload: &[u8]) -> Result<&[u8], RejectReason> {
    const TITLE_LEN_AT: usize = 4 + 8 + 8;
    const TITLE_AT: usize = TITLE_LEN_AT + 8;
    let declared = payload
        .get(TITLE_LEN_AT..TITLE_AT)
        .ok_or(RejectReason::Malformed)?;
    let declared = u64::from_le_bytes(declared.try_into().map_err(|_| RejectReason::Malformed)?);
    if declared != (payload.len() - TITLE_AT) as u64 {
        return Err(RejectReason::Malformed);
    }
    Ok(payload)
}

/// Decodes a message of any supported version into its current shape.
///
/// Errors: [`RejectReason::UnknownKind`], [`RejectReason::UnsupportedVersion`] (a version
/// this build does not know, older or newer), [`RejectReason::Malformed`] (the payload does
/// not decode as that version, including trailing bytes).
#[inline]
pub fn decode(kind: u16, version: u16, payload: &[u8]) -> Result<Request, RejectReason> {
    let kind = Kind::from_u16(kind).ok_or(RejectReason::UnknownKind)?;
    match (kind, version) {
        (Kind::PlaceOrder, 2) => de::<PlaceOrder>(payload).map(|v| Request::PlaceOrder(v.into())),
        (Kind::PlaceOrder, 1) => de::<PlaceOrderV1>(payload).map(|v| Request::PlaceOrder(v.into())),
        (Kind::AddBook, 1) => de(check_add_book(payload)?).map(Request::AddBook),
        (Kind::ChangePrice, 1) => de(payload).map(Request::ChangePrice),
        (Kind::Restock, 1) => de(payload).map(Request::Restock),
        (Kind::CancelOrder, 1) => de(payload).map(Request::CancelOrder),
        (Kind::QueryBook, 1) => de(payload).map(Request::QueryBook),
        (Kind::QueryOrder, 1) => de(payload).map(Request::QueryOrder),
        (Kind::QueryCustomerOrders, 1) => de(payload).map(Request::QueryCustomerOrders),
        _ => Err(RejectReason::UnsupportedVersion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_is_none() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_u16(kind.number()), Some(kind));
        }
        assert_eq!(Kind::from_u16(0), None);
        assert_eq!(Kind::from_u16(9), None);
    }

    #[test]
    fn place_order_wire_layout_is_fixed() {
        let order = PlaceOrder {
            customer: 1,
            book: 2,
            quantity: 3,
            seen_price_cents: 4,
        };
        let mut buf = [0u8; 64];
        assert_eq!(order.encode_into(&mut buf).unwrap(), 24);
        let v1 = PlaceOrderV1 {
            customer: 1,
            book: 2,
            quantity: 3,
        };
        assert_eq!(v1.encode_into(&mut buf).unwrap(), 16);
    }

    #[test]
    fn add_book_title_length_is_checked_before_decoding() {
        let add = AddBook {
            book: 1,
            price_cents: 2,
            stock: 3,
            title: "abc".into(),
        };
        let payload = add.command().payload;
        assert_eq!(payload.len(), 28 + 3);
        assert_eq!(decode(1, 1, &payload), Ok(Request::AddBook(add)));
        let mut lying = payload.clone();
        lying[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode(1, 1, &lying), Err(RejectReason::Malformed));
        assert_eq!(decode(1, 1, &payload[..27]), Err(RejectReason::Malformed));
        assert_eq!(decode(1, 1, &payload[..30]), Err(RejectReason::Malformed));
    }
}
