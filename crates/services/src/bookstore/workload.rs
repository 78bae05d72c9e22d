//! The canonical seeded bookstore workload: message `i` of a reproducible stream, computed
//! from `(seed, i)` alone in O(1), with a hand-written splitmix64 and no state.
//!
//! [`setup`] lists [`BOOKS`] books with [`INITIAL_STOCK`] copies each. Then the stream runs in
//! blocks of [`BLOCK`] messages with a fixed pattern of [`Slot`]s (positions in the block):
//!
//! | slots per block | what                                                             |
//! |-----------------|------------------------------------------------------------------|
//! | 88              | an order at the book's current price (accepted)                  |
//! | 2               | an order at a stale price (rejected: `PriceChanged`)             |
//! | 1               | a price change, round-robin over the books                       |
//! | 2               | a restock                                                        |
//! | 5               | a cancel of one of the block's recent orders, by its customer    |
//! | 2               | a query (one book, one order)                                    |
//!
//! Book, quantity and restock sizes are random per message. Because the pattern is fixed,
//! the stream knows without simulating which order ids exist, which customer placed each
//! (a hash of the order id), and every book's current price (a hash of the book and the number
//! of price changes it has had). So on a fresh store after [`setup`], with the default
//! limits, every message is accepted except the stale orders, until the order limit is
//! reached (about 38 M messages with `max_orders = 2^25`); after that orders are rejected with
//! `OrderLimit`, still deterministically.

use super::messages::{
    AddBook, CancelOrder, ChangePrice, Kind, Payload, PlaceOrder, QueryBook, QueryOrder, Restock,
};
use super::state::splitmix64;
use crate::Command;

/// Books created by [`setup`]: ids `0..BOOKS`.
pub const BOOKS: u32 = 1_000;
/// Customer ids used: `1..=CUSTOMERS`.
pub const CUSTOMERS: u64 = 100_000;
/// Copies of each book at setup.
pub const INITIAL_STOCK: u64 = 1_000_000;
/// Messages per block of the fixed pattern.
pub const BLOCK: u64 = 100;
/// Accepted orders per block.
pub const ORDERS_PER_BLOCK: u64 =
    ORDERS_BEFORE[BLOCK as usize - 1] as u64 + matches!(slot(BLOCK - 1), Slot::Order) as u64;
/// The largest payload the workload encodes, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64;

/// What the message at a position of the block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// An order at the current price.
    Order,
    /// An order at a price that is not the current one.
    StaleOrder,
    /// A price change.
    PriceChange,
    /// A restock.
    Restock,
    /// A cancel by the order's customer.
    Cancel,
    /// A book query.
    QueryBook,
    /// An order query.
    QueryOrder,
}

/// What message `i` of the workload is.
pub const fn slot(i: u64) -> Slot {
    match i % BLOCK {
        7 => Slot::PriceChange,
        13 | 57 => Slot::Restock,
        21 | 44 | 68 | 90 | 99 => Slot::Cancel,
        33 | 77 => Slot::StaleOrder,
        50 => Slot::QueryBook,
        95 => Slot::QueryOrder,
        _ => Slot::Order,
    }
}

/// Accepted orders before each position of a block.
const ORDERS_BEFORE: [u32; BLOCK as usize] = {
    let mut table = [0; BLOCK as usize];
    let (mut p, mut n) = (0, 0);
    while p < BLOCK as usize {
        table[p] = n;
        if matches!(slot(p as u64), Slot::Order) {
            n += 1;
        }
        p += 1;
    }
    table
};

/// The cancel windows must not overlap, so no order is cancelled twice (checked below).
const CANCEL_WINDOW: u64 = 7;

const _: () = {
    // Why: consecutive cancel slots need at least CANCEL_WINDOW orders between them, and the
    // first one needs CANCEL_WINDOW orders before it, so every cancel hits a distinct order.
    let mut p = 0;
    let mut last_cancel_orders = 0;
    while p < BLOCK as usize {
        if matches!(slot(p as u64), Slot::Cancel) {
            assert!(ORDERS_BEFORE[p] as u64 >= last_cancel_orders + CANCEL_WINDOW);
            last_cancel_orders = ORDERS_BEFORE[p] as u64;
        }
        p += 1;
    }
};

/// The id the order at position `i` gets (if `slot(i)` is an order), or the id of the last
/// order before `i` otherwise.
fn order_id_at(i: u64) -> u64 {
    (i / BLOCK) * ORDERS_PER_BLOCK + u64::from(ORDERS_BEFORE[(i % BLOCK) as usize])
}

/// The customer who places order `order` in the workload.
pub fn customer_of(seed: u64, order: u64) -> u64 {
    splitmix64(seed ^ 0x0C05_7E77 ^ splitmix64(order)) % CUSTOMERS + 1
}

/// Price of `book` after its `epoch`-th price change (epoch 0: the setup price). Consecutive
/// epochs differ in parity, so a price change always changes the price.
pub fn price_at(seed: u64, book: u32, epoch: u64) -> u64 {
    let h = splitmix64(seed ^ splitmix64((u64::from(book) << 32) ^ epoch));
    100 + 2 * (h % 4_950) + (epoch & 1)
}

/// Price changes `book` has had before message `i`.
fn epoch_before(book: u32, i: u64) -> u64 {
    // Block k changes book k % BOOKS at position k * BLOCK + 7; count blocks with that < i.
    let blocks = if i <= 7 { 0 } else { (i - 8) / BLOCK + 1 };
    let book = u64::from(book);
    if blocks > book {
        (blocks - 1 - book) / u64::from(BOOKS) + 1
    } else {
        0
    }
}

/// The book's price when message `i` is applied.
pub fn current_price(seed: u64, book: u32, i: u64) -> u64 {
    price_at(seed, book, epoch_before(book, i))
}

/// Encodes message `i` into `buf` (at least [`MAX_PAYLOAD_BYTES`]); returns kind, version and
/// payload length. Does not allocate.
pub fn encode(seed: u64, i: u64, buf: &mut [u8]) -> (Kind, u16, usize) {
    let r = splitmix64(seed ^ splitmix64(i ^ 0x0B00_C570_9E00));
    let book = (r % u64::from(BOOKS)) as u32;
    let small = (r >> 32) as u32;
    let encoded = match slot(i) {
        Slot::Order => {
            let order = order_id_at(i) + 1;
            let customer = customer_of(seed, order);
            let seen_price_cents = current_price(seed, book, i);
            PlaceOrder {
                customer,
                book,
                quantity: 1 + small % 4,
                seen_price_cents,
            }
            .encode_into(buf)
        }
        Slot::StaleOrder => {
            let epoch = epoch_before(book, i);
            let seen_price_cents = price_at(seed, book, epoch.checked_sub(1).unwrap_or(1));
            let customer = u64::from(small) % CUSTOMERS + 1;
            PlaceOrder {
                customer,
                book,
                quantity: 1,
                seen_price_cents,
            }
            .encode_into(buf)
        }
        Slot::PriceChange => {
            let book = ((i / BLOCK) % u64::from(BOOKS)) as u32;
            let price_cents = price_at(seed, book, epoch_before(book, i) + 1);
            ChangePrice { book, price_cents }.encode_into(buf)
        }
        Slot::Restock => Restock {
            book,
            quantity: 50 + small % 150,
        }
        .encode_into(buf),
        Slot::Cancel => {
            let order = order_id_at(i) - u64::from(small) % CANCEL_WINDOW;
            CancelOrder {
                customer: customer_of(seed, order),
                order,
            }
            .encode_into(buf)
        }
        Slot::QueryBook => QueryBook { book }.encode_into(buf),
        Slot::QueryOrder => QueryOrder {
            order: order_id_at(i) - u64::from(small) % 80,
        }
        .encode_into(buf),
    };
    let len = encoded.expect("workload payloads fit MAX_PAYLOAD_BYTES");
    let kind = match slot(i) {
        Slot::Order | Slot::StaleOrder => Kind::PlaceOrder,
        Slot::PriceChange => Kind::ChangePrice,
        Slot::Restock => Kind::Restock,
        Slot::Cancel => Kind::CancelOrder,
        Slot::QueryBook => Kind::QueryBook,
        Slot::QueryOrder => Kind::QueryOrder,
    };
    (kind, kind.current_version(), len)
}

/// Message `i` of the workload for `seed`, ready to submit.
pub fn message(seed: u64, i: u64) -> Command {
    let mut buf = [0u8; MAX_PAYLOAD_BYTES];
    let (kind, version, len) = encode(seed, i, &mut buf);
    Command {
        kind: kind.number(),
        version,
        payload: buf[..len].to_vec(),
    }
}

/// The messages to apply before the workload: [`BOOKS`] books at their epoch-0 prices.
pub fn setup(seed: u64) -> Vec<Command> {
    (0..BOOKS)
        .map(|book| {
            AddBook {
                book,
                price_cents: price_at(seed, book, 0),
                stock: INITIAL_STOCK,
                title: format!("Volume {book:04}"),
            }
            .command()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_pattern() {
        assert_eq!(ORDERS_PER_BLOCK, 88);
        assert_eq!(order_id_at(100), 88);
        assert_eq!(epoch_before(0, 7), 0);
        assert_eq!(epoch_before(0, 8), 1);
        assert_eq!(epoch_before(1, 107), 0);
        assert_eq!(epoch_before(1, 108), 1);
        assert_eq!(epoch_before(0, 100_007), 1);
        assert_eq!(epoch_before(0, 100_008), 2);
    }

    #[test]
    fn same_seed_and_index_same_message() {
        for i in 0..1_000 {
            assert_eq!(message(42, i), message(42, i));
        }
        assert_ne!(
            (0..100).map(|i| message(1, i)).collect::<Vec<_>>(),
            (0..100).map(|i| message(2, i)).collect::<Vec<_>>()
        );
    }
}
