//! The bookstore's snapshot body (schema 2), encoded and decoded by hand where it is big.
//!
//! The bytes are exactly what `codec` (bincode 2, fixed-width little-endian integers) makes
//! of [`StateRef`]: the books as bincode writes them, then the orders as a `u64` count and
//! one fixed 44-byte record per order:
//!
//! ```text
//! offset  size  field
//!      0     8  customer      u64
//!      8     4  book          u32
//!     12     4  quantity      u32
//!     16     8  price_cents   u64
//!     24     8  placed_ns     u64
//!     32     8  cancelled_ns  u64
//!     40     4  status        u32 (bincode's enum variant index: 0 open, 1 cancelled)
//! ```
//!
//! Books are few and go through serde. Orders are millions: through serde they cost about
//! 40 ns each to decode and the `Vec` grows by doubling (serde caps its capacity hint), so a
//! 10 M-order state took 0.4 s to decode. Here they are one bounds-checked loop over fixed
//! records into a `Vec` reserved to `max_orders` once. Tests prove the two codecs produce and
//! accept the same bytes.

use super::responses::OrderStatus;
use super::state::{check_books, check_order, Book, BookstoreLimits, Order, StateV2};
use keel::codec::{self, CodecError};
use keel::snapshot::StateError;
use std::mem::size_of;

/// Bytes of one encoded order.
pub(crate) const ORDER_RECORD_BYTES: usize = 44;
// Why: the record is bincode's fixed-int encoding of `Order` (six integers and a u32 variant
// index); if a field is added, this sum and the record layout above must change together.
const _: () = assert!(ORDER_RECORD_BYTES == 3 * 8 + 2 * 4 + 8 + 4);

const CUSTOMER: usize = 0;
const BOOK: usize = CUSTOMER + size_of::<u64>();
const QUANTITY: usize = BOOK + size_of::<u32>();
const PRICE: usize = QUANTITY + size_of::<u32>();
const PLACED: usize = PRICE + size_of::<u64>();
const CANCELLED: usize = PLACED + size_of::<u64>();
const STATUS: usize = CANCELLED + size_of::<u64>();
const _: () = assert!(STATUS + size_of::<u32>() == ORDER_RECORD_BYTES);

fn invalid(what: &'static str) -> StateError {
    StateError::Invalid(what.to_string())
}

/// Appends the schema-2 body of `books` and `orders` to `out`.
pub(crate) fn encode(
    books: &[Option<Book>],
    orders: &[Order],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    codec::encode_to_vec(&books, out)?;
    out.extend_from_slice(&(orders.len() as u64).to_le_bytes());
    let start = out.len();
    out.resize(start + orders.len() * ORDER_RECORD_BYTES, 0);
    let records = out[start..].chunks_exact_mut(ORDER_RECORD_BYTES);
    for (record, order) in records.zip(orders) {
        write_order(order, record);
    }
    Ok(())
}

fn write_order(order: &Order, record: &mut [u8]) {
    record[CUSTOMER..BOOK].copy_from_slice(&order.customer.to_le_bytes());
    record[BOOK..QUANTITY].copy_from_slice(&order.book.to_le_bytes());
    record[QUANTITY..PRICE].copy_from_slice(&order.quantity.to_le_bytes());
    record[PRICE..PLACED].copy_from_slice(&order.price_cents.to_le_bytes());
    record[PLACED..CANCELLED].copy_from_slice(&order.placed_ns.to_le_bytes());
    record[CANCELLED..STATUS].copy_from_slice(&order.cancelled_ns.to_le_bytes());
    record[STATUS..].copy_from_slice(&(order.status as u32).to_le_bytes());
}

/// Decodes and validates a schema-2 body: the checks of [`StateV2::validate`], made as each
/// order is read. The order count is checked against `limits.max_orders` and the
/// bytes left before anything is allocated for it; the orders `Vec` comes back reserved to
/// `max_orders`, so the live order path never reallocates it.
pub(crate) fn decode(bytes: &[u8], limits: &BookstoreLimits) -> Result<StateV2, StateError> {
    let (books, used): (Vec<Option<Book>>, usize) = codec::decode_state_prefix(bytes)?;
    check_books(&books, limits)?;
    let rest = &bytes[used..];
    let (count, records) = match rest.split_first_chunk::<8>() {
        Some((count, records)) => (u64::from_le_bytes(*count), records),
        None => return Err(invalid("bookstore state ends before the order count")),
    };
    if count > u64::from(limits.max_orders) {
        return Err(invalid("bookstore state has more orders than max_orders"));
    }
    if records.len() as u64 != count * ORDER_RECORD_BYTES as u64 {
        return Err(invalid(
            "bookstore state's order records do not match their count",
        ));
    }
    let mut orders = Vec::new();
    orders
        .try_reserve_exact(limits.max_orders as usize)
        .map_err(|_| invalid("max_orders orders do not fit in memory"))?;
    for record in records.chunks_exact(ORDER_RECORD_BYTES) {
        let order = read_order(record)?;
        check_order(&order, &books, limits)?;
        orders.push(order);
    }
    Ok(StateV2 { books, orders })
}

fn read_order(record: &[u8]) -> Result<Order, StateError> {
    let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
    let status = match u32_at(STATUS) {
        0 => OrderStatus::Open,
        1 => OrderStatus::Cancelled,
        _ => return Err(invalid("bookstore order has an unknown status")),
    };
    Ok(Order {
        customer: u64_at(CUSTOMER),
        book: u32_at(BOOK),
        quantity: u32_at(QUANTITY),
        price_cents: u64_at(PRICE),
        placed_ns: u64_at(PLACED),
        cancelled_ns: u64_at(CANCELLED),
        status,
        previous: 0,
    })
}

/// The state as serde and bincode encode it: the reference the hand codec must equal.
#[cfg(test)]
pub(crate) fn encode_with_serde(books: &[Option<Book>], orders: &[Order]) -> Vec<u8> {
    let mut out = Vec::new();
    keel::snapshot::save_serde(&super::state::StateRef { books, orders }, &mut out).unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> BookstoreLimits {
        BookstoreLimits {
            max_orders: 64,
            max_customers: 1000,
            ..BookstoreLimits::default()
        }
    }

    fn order() -> impl Strategy<Value = Order> {
        (0..1000u64, 0..4u32, any::<u32>(), any::<u64>()).prop_flat_map(
            |(customer, book, quantity, price_cents)| {
                (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
                    move |(placed_ns, cancelled_ns, cancelled)| Order {
                        customer,
                        book,
                        quantity,
                        price_cents,
                        placed_ns,
                        cancelled_ns,
                        status: if cancelled {
                            OrderStatus::Cancelled
                        } else {
                            OrderStatus::Open
                        },
                        previous: 0,
                    },
                )
            },
        )
    }

    fn book() -> impl Strategy<Value = Book> {
        (any::<u64>(), any::<u64>(), ".{0,12}").prop_map(|(price_cents, stock, title)| Book {
            price_cents,
            stock,
            title,
        })
    }

    proptest! {
        #[test]
        fn hand_codec_equals_serde_codec(
            listed in proptest::collection::vec(book(), 4),
            unlisted in proptest::collection::vec(any::<bool>(), 0..3),
            orders in proptest::collection::vec(order(), 0..64),
        ) {
            // Books 0..4 are listed (orders name them); a few unlisted ids follow.
            let mut books: Vec<Option<Book>> = listed.into_iter().map(Some).collect();
            books.extend(unlisted.iter().map(|_| None));
            let reference = encode_with_serde(&books, &orders);
            let mut fast = Vec::new();
            encode(&books, &orders, &mut fast).unwrap();
            prop_assert_eq!(&fast, &reference);
            let serde: StateV2 = keel::snapshot::load_serde(&reference).unwrap();
            let hand = decode(&reference, &limits()).unwrap();
            prop_assert_eq!(&hand.books, &serde.books);
            prop_assert_eq!(&hand.orders, &serde.orders);
            prop_assert_eq!(hand.orders.capacity(), 64);
        }
    }

    #[test]
    fn damaged_bodies_are_refused_before_allocating() {
        let mut bytes = encode_with_serde(&[None], &[]);
        let count_at = bytes.len() - 8;
        bytes[count_at..].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode(&bytes, &limits()).is_err(), "more than max_orders");
        bytes[count_at..].copy_from_slice(&3u64.to_le_bytes());
        assert!(decode(&bytes, &limits()).is_err(), "records missing");
        assert!(
            decode(&bytes[..count_at + 4], &limits()).is_err(),
            "no count"
        );
        let mut one = Vec::new();
        let order = Order {
            customer: 1,
            book: 0,
            quantity: 1,
            price_cents: 1,
            placed_ns: 1,
            cancelled_ns: 0,
            status: OrderStatus::Open,
            previous: 0,
        };
        encode(&[None], &[order], &mut one).unwrap();
        let last = one.len() - 1;
        one[last] = 7;
        assert!(decode(&one, &limits()).is_err(), "unknown status");
    }
}
