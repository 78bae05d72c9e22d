//! Bookstore messages: kinds, versions, payloads, and the upcast of old versions.
//!
//! Every payload is one struct encoded with [`keel::codec`] (fixed-width little-endian
//! integers, strings as a `u64` length then UTF-8 bytes). Each kind has a current version;
//! older versions stay decodable forever, because old journals must replay. The
//! [`keel::commands!`] table below declares each kind and version once; its
//! [`Request::decode`](keel::Command::decode) turns any supported `(kind, version, payload)`
//! into one canonical [`Request`], upcasting old versions on the way, so the business logic
//! only ever sees the current shape.
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

use crate::Command;
use keel::codec::{self, CodecError};
use serde::ser::{Error as _, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The bookstore's message kinds (the `kind` of a message header). Stable numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[repr(u16)]
#[serde(rename_all = "kebab-case")]
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
    pub const fn number(self) -> u16 {
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
/// changed since, the order is rejected with
/// [`RejectReason::PriceChanged`](super::RejectReason::PriceChanged) and the current
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

/// The canonical (current) form of an order, whatever version it arrived in. On the wire it
/// is a [`PlaceOrder`] (version 2); a version-1 order upcasts to `seen_price_cents: None`,
/// which has no version-2 encoding (encoding it is an error). In JSON the price is a number
/// or `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl Serialize for OrderRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let mut s = serializer.serialize_struct("OrderRequest", 4)?;
            s.serialize_field("customer", &self.customer)?;
            s.serialize_field("book", &self.book)?;
            s.serialize_field("quantity", &self.quantity)?;
            s.serialize_field("seen_price_cents", &self.seen_price_cents)?;
            return s.end();
        }
        let seen_price_cents = self
            .seen_price_cents
            .ok_or_else(|| S::Error::custom("a version-1 order has no version-2 encoding"))?;
        let v2 = PlaceOrder {
            customer: self.customer,
            book: self.book,
            quantity: self.quantity,
            seen_price_cents,
        };
        v2.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for OrderRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        PlaceOrder::deserialize(deserializer).map(Into::into)
    }
}

keel::commands! {
    /// Any bookstore message, decoded and upcast to its current shape. A `decode` of a title
    /// longer than the payload fails before allocating beyond keel's message decode limit.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    #[serde(tag = "type", rename_all = "kebab-case")]
    pub enum Request {
        /// Lists a new book.
        [Kind::AddBook.number()] => AddBook(AddBook),
        /// Sets a book's price.
        [Kind::ChangePrice.number()] => ChangePrice(ChangePrice),
        /// Adds stock to a book.
        [Kind::Restock.number()] => Restock(Restock),
        /// An order, any version (v1 upcasts).
        [Kind::PlaceOrder.number()] => PlaceOrder(OrderRequest) version 2 { 1 => PlaceOrderV1 },
        /// Cancels an order.
        [Kind::CancelOrder.number()] => CancelOrder(CancelOrder),
        /// Reads one book.
        [Kind::QueryBook.number()] => QueryBook(QueryBook),
        /// Reads one order.
        [Kind::QueryOrder.number()] => QueryOrder(QueryOrder),
        /// Reads a page of a customer's orders.
        [Kind::QueryCustomerOrders.number()] => QueryCustomerOrders(QueryCustomerOrders),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel::service::Invalid;
    use keel::Command as _;

    fn decode(kind: u16, version: u16, payload: &[u8]) -> Result<Request, Invalid> {
        Request::decode(kind, version, payload)
    }

    #[test]
    fn payload_kinds_and_versions_are_the_tables() {
        fn check<T: Payload>(payload: T) {
            let command = payload.command();
            let request = decode(command.kind, command.version, &command.payload).unwrap();
            assert_eq!(request.kind(), T::KIND.number());
            assert_eq!(request.version(), T::KIND.current_version());
        }
        check(AddBook {
            book: 1,
            price_cents: 2,
            stock: 3,
            title: "t".into(),
        });
        check(ChangePrice {
            book: 1,
            price_cents: 2,
        });
        check(Restock {
            book: 1,
            quantity: 2,
        });
        check(PlaceOrderV1 {
            customer: 1,
            book: 2,
            quantity: 3,
        });
        check(PlaceOrder {
            customer: 1,
            book: 2,
            quantity: 3,
            seen_price_cents: 4,
        });
        check(CancelOrder {
            customer: 1,
            order: 2,
        });
        check(QueryBook { book: 1 });
        check(QueryOrder { order: 1 });
        check(QueryCustomerOrders {
            customer: 1,
            before_order: 0,
        });
        let v1 = decode(
            4,
            1,
            &PlaceOrderV1 {
                customer: 1,
                book: 2,
                quantity: 3,
            }
            .command()
            .payload,
        );
        assert!(v1.unwrap().encode_into(&mut [0; 64]).is_err(), "no v2 form");
    }

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
        assert_eq!(decode(1, 1, &lying), Err(Invalid::Undecodable));
        assert_eq!(decode(1, 1, &payload[..27]), Err(Invalid::Undecodable));
        assert_eq!(decode(1, 1, &payload[..30]), Err(Invalid::Undecodable));
    }
}
