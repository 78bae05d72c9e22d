//! The bookstore's state: books, orders, the customer index, the limits, and the state
//! digest. Also the snapshot schemas and the upgrade from older ones.
//!
//! Layout, chosen for the order path:
//! - books live in a `Vec<Option<Book>>` indexed by their dense id (`0..max_books`);
//! - orders live in a `Vec<Order>` indexed by `id - 1` (ids are handed out 1, 2, 3, …);
//! - customers have dense ids too (`0..max_customers`, like accounts numbered by the shop):
//!   their entries (newest order, order count; 8 bytes) sit in a `Vec` indexed by id, so the
//!   order path finds one with a bounds check, not a hash lookup;
//! - each order links to the same customer's previous order, so a customer's list is a chain
//!   through the orders `Vec` (newest first) and needs no per-customer allocation. Customer
//!   entries and links are derived from the orders and rebuilt on load, so they are not part
//!   of the snapshot or the digest.
//!
//! All three containers are reserved to their limits at construction: nothing reallocates on
//! the order path.
//!
//! The digest ([`Digest`]) is the wrapping sum of one strong 64-bit hash per fact (a book's
//! price, a book's stock, a book's title, an order), kept up to date on every change in O(1).
//! A sum does not depend on the order facts were added in, so equal states have equal digests
//! however they were reached, and `state_hash` costs nothing even with millions of orders.

use super::responses::OrderStatus;
use keel::snapshot::StateError;
use serde::{Deserialize, Serialize};

/// The schema version `save_state` writes.
///
/// - 1: books, and orders without `cancelled_ns`.
/// - 2: orders record `cancelled_ns` (the timestamp of the cancelling message). Upgrading
///   from 1 sets it to 0 ("not recorded") on every order; cancelled orders stay cancelled.
pub const SCHEMA_VERSION: u32 = 2;

/// Every limit of a bookstore, set at construction. Reaching one is a rejection
/// ([`super::RejectReason`]), never a panic or unbounded growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookstoreLimits {
    /// Book ids are dense: `0..max_books`.
    pub max_books: u32,
    /// Orders kept in all (open and cancelled; orders are never deleted).
    pub max_orders: u32,
    /// Customer ids are dense: `0..max_customers` (8 bytes each, allocated at construction).
    pub max_customers: u32,
    /// Orders one customer may place in all (bounds a customer's order list).
    pub max_orders_per_customer: u32,
    /// Copies in one order.
    pub max_quantity_per_order: u32,
    /// Highest price of a book.
    pub max_price_cents: u64,
    /// Highest stock add-book and restock may set.
    pub max_stock_per_book: u64,
    /// Longest title, in bytes of UTF-8.
    pub max_title_bytes: u32,
    /// Orders returned per customer-orders query page.
    pub orders_per_page: u32,
}

impl Default for BookstoreLimits {
    /// Room for a large shop and a long benchmark: 100 k books, 32 M orders (48 bytes each,
    /// about 1.6 GB when full; reserved up front as address space, touched only as orders
    /// arrive), 1 M customers (8 MB).
    fn default() -> Self {
        BookstoreLimits {
            max_books: 100_000,
            max_orders: 1 << 25,
            max_customers: 1 << 20,
            max_orders_per_customer: 10_000,
            max_quantity_per_order: 1_000,
            max_price_cents: 100_000_000,
            max_stock_per_book: 1_000_000_000,
            max_title_bytes: 256,
            orders_per_page: 64,
        }
    }
}

/// One book. Its id is its index in the books `Vec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Book {
    pub(crate) price_cents: u64,
    pub(crate) stock: u64,
    pub(crate) title: String,
}

/// One order. Its id is its index in the orders `Vec` plus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Order {
    pub(crate) customer: u64,
    pub(crate) book: u32,
    pub(crate) quantity: u32,
    pub(crate) price_cents: u64,
    pub(crate) placed_ns: u64,
    pub(crate) cancelled_ns: u64,
    pub(crate) status: OrderStatus,
    /// Id of the same customer's previous order (0: none). Derived; rebuilt on load.
    #[serde(skip)]
    pub(crate) previous: u32,
}

/// A customer's entry: newest order and how many they placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Customer {
    pub(crate) newest: u32,
    pub(crate) count: u32,
}

/// Customer entries indexed by dense id, and how many customers have ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Customers {
    pub(crate) entries: Vec<Customer>,
    pub(crate) active: u32,
}

impl Customers {
    /// Empty entries for ids `0..max_customers` (8 bytes each, written now).
    fn with_room(max_customers: u32) -> Customers {
        let mut entries = Vec::new();
        entries
            .try_reserve_exact(max_customers as usize)
            .expect("max_customers entries fit in memory");
        entries.resize(max_customers as usize, Customer::default());
        Customers { entries, active: 0 }
    }

    /// Appends order `id` (placed by `order.customer`) to its customer's chain and sets the
    /// order's `previous` link. Grows the entries for an id beyond them (only
    /// `check_consistency` builds with smaller limits; loaded states are validated first).
    #[inline]
    fn link_next(&mut self, id: u32, order: &mut Order) {
        let index = order.customer as usize;
        if index >= self.entries.len() {
            self.entries.resize(index + 1, Customer::default());
        }
        let entry = &mut self.entries[index];
        self.active += u32::from(entry.count == 0);
        order.previous = entry.newest;
        entry.newest = id;
        entry.count += 1;
    }

    /// The entry of `customer`, if the id is in range (customers without orders have one).
    #[inline]
    pub(crate) fn get(&self, customer: u64) -> Option<&Customer> {
        self.entries.get(usize::try_from(customer).ok()?)
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): the bookstore's one source of mixing, for the
/// digest and the seeded workload.
#[inline]
pub const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64×64 → 128-bit multiply, folded: a cheap strong mix of two words.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

const PRICE_TAG: u64 = 0x243F_6A88_85A3_08D3;
const STOCK_TAG: u64 = 0x1319_8A2E_0370_7344;
const TITLE_TAG: u64 = 0xA409_3822_299F_31D0;
const ORDER_TAG: u64 = 0x082E_FA98_EC4E_6C89;
const K1: u64 = 0x4528_21E6_38D0_1377;
const K2: u64 = 0xBE54_66CF_34E9_0C6C;
const K3: u64 = 0xC0AC_29B7_C97C_50DD;

/// The running state digest: a wrapping sum of one hash per fact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Digest(pub(crate) u64);

impl Digest {
    #[inline]
    fn fact(tag: u64, id: u64, value: u64) -> u64 {
        splitmix64(fold(id ^ tag, value ^ K1))
    }

    #[inline]
    pub(crate) fn price(&mut self, book: u32, old: Option<u64>, new: u64) {
        self.replace(PRICE_TAG, u64::from(book), old, new);
    }

    #[inline]
    pub(crate) fn stock(&mut self, book: u32, old: Option<u64>, new: u64) {
        self.replace(STOCK_TAG, u64::from(book), old, new);
    }

    pub(crate) fn title(&mut self, book: u32, title: &str) {
        let mut h = title.len() as u64;
        for chunk in title.as_bytes().chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = fold(h ^ K2, u64::from_le_bytes(word) ^ K3);
        }
        self.0 = self
            .0
            .wrapping_add(Self::fact(TITLE_TAG, u64::from(book), h));
    }

    #[inline]
    fn replace(&mut self, tag: u64, id: u64, old: Option<u64>, new: u64) {
        if let Some(old) = old {
            self.0 = self.0.wrapping_sub(Self::fact(tag, id, old));
        }
        self.0 = self.0.wrapping_add(Self::fact(tag, id, new));
    }

    #[inline]
    fn order_hash(id: u32, order: &Order) -> u64 {
        let who = fold(u64::from(id) ^ ORDER_TAG, order.customer ^ K1);
        let what = fold(
            (u64::from(order.book) << 32 | u64::from(order.quantity)) ^ K2,
            order.price_cents ^ ((order.status as u64) << 56) ^ K3,
        );
        let when = fold(order.placed_ns ^ K1, order.cancelled_ns ^ K2);
        splitmix64(who ^ what.rotate_left(21) ^ when.rotate_left(43))
    }

    /// Adds order `id`.
    #[inline]
    pub(crate) fn add_order(&mut self, id: u32, order: &Order) {
        self.0 = self.0.wrapping_add(Self::order_hash(id, order));
    }

    /// Removes order `id` as it was (before a change).
    #[inline]
    pub(crate) fn remove_order(&mut self, id: u32, order: &Order) {
        self.0 = self.0.wrapping_sub(Self::order_hash(id, order));
    }

    pub(crate) fn add_book(&mut self, id: u32, book: &Book) {
        self.price(id, None, book.price_cents);
        self.stock(id, None, book.stock);
        self.title(id, &book.title);
    }
}

/// Everything derived from the books and orders: rebuilt on load, never saved.
#[derive(Debug)]
pub(crate) struct Derived {
    pub(crate) customers: Customers,
    pub(crate) digest: Digest,
    pub(crate) book_count: u32,
    pub(crate) open_orders: u64,
}

impl Derived {
    /// Computes it from scratch in one pass over the orders (a restored 10 M-order state is
    /// walked once, not once per derived value), setting every order's `previous` link.
    /// Customer entries have room for `max_customers` ids, or more if the orders name higher.
    pub(crate) fn of(books: &[Option<Book>], orders: &mut [Order], max_customers: u32) -> Self {
        let mut digest = Digest::default();
        let mut book_count = 0;
        for (id, book) in books.iter().enumerate() {
            if let Some(book) = book {
                digest.add_book(id as u32, book);
                book_count += 1;
            }
        }
        let mut customers = Customers::with_room(max_customers);
        let mut open_orders = 0;
        for (index, order) in orders.iter_mut().enumerate() {
            let id = index as u32 + 1;
            customers.link_next(id, order);
            digest.add_order(id, order);
            open_orders += u64::from(order.status == OrderStatus::Open);
        }
        Derived {
            customers,
            digest,
            book_count,
            open_orders,
        }
    }
}

/// Snapshot body, schema 2 (current): the layout `save_state` writes, by hand in
/// `state_codec` for speed; this serde form is the reference its tests compare against.
#[cfg(test)]
#[derive(Serialize)]
pub(crate) struct StateRef<'a> {
    pub(crate) books: &'a [Option<Book>],
    pub(crate) orders: &'a [Order],
}

/// The bookstore's state as snapshots hold it (schema 2, current): books by id, orders by
/// id − 1. `save_state` writes these bytes by hand (`state_codec`), equal to their serde form.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateV2 {
    pub(crate) books: Vec<Option<Book>>,
    pub(crate) orders: Vec<Order>,
}

impl StateV2 {
    /// Refuses a decoded state that this store could not hold or that is not internally
    /// consistent: more books, orders or customer ids than the limits allow (limits may grow
    /// between runs, never shrink below the state), or an order naming an unlisted book.
    pub(crate) fn validate(&self, limits: &BookstoreLimits) -> Result<(), StateError> {
        check_books(&self.books, limits)?;
        if self.orders.len() > limits.max_orders as usize {
            return Err(StateError::Invalid(
                "bookstore state has more orders than max_orders".into(),
            ));
        }
        self.orders
            .iter()
            .try_for_each(|order| check_order(order, &self.books, limits))
    }
}

/// Refuses more books than `limits` allow.
pub(crate) fn check_books(
    books: &[Option<Book>],
    limits: &BookstoreLimits,
) -> Result<(), StateError> {
    if books.len() > limits.max_books as usize {
        return Err(StateError::Invalid(
            "bookstore state has more books than max_books".into(),
        ));
    }
    Ok(())
}

/// The checks every restored order must pass: a customer id within `limits`, a listed book.
#[inline]
pub(crate) fn check_order(
    order: &Order,
    books: &[Option<Book>],
    limits: &BookstoreLimits,
) -> Result<(), StateError> {
    if order.customer >= u64::from(limits.max_customers) {
        return Err(StateError::Invalid(
            "bookstore state has a customer id beyond max_customers".into(),
        ));
    }
    if !matches!(books.get(order.book as usize), Some(Some(_))) {
        return Err(StateError::Invalid(
            "bookstore state has an order for an unlisted book".into(),
        ));
    }
    Ok(())
}

/// An order in schema 1: no `cancelled_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderV1 {
    /// Who placed it.
    pub customer: u64,
    /// Book id.
    pub book: u32,
    /// Copies.
    pub quantity: u32,
    /// Unit price charged.
    pub price_cents: u64,
    /// When it was placed.
    pub placed_ns: u64,
    /// Open or cancelled.
    pub status: OrderStatus,
}

/// A book in either schema (unchanged since schema 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookV1 {
    /// Price in cents.
    pub price_cents: u64,
    /// Copies in stock.
    pub stock: u64,
    /// Title.
    pub title: String,
}

/// Snapshot body, schema 1. Public so tests and tools can write old snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateV1 {
    /// Books by id (`None`: no book with that id).
    pub books: Vec<Option<BookV1>>,
    /// Orders by id − 1.
    pub orders: Vec<OrderV1>,
}

impl StateV1 {
    /// The schema 1 → 2 upgrade: `cancelled_ns` was not recorded, so it is 0.
    pub(crate) fn upgrade(self) -> StateV2 {
        let books = self
            .books
            .into_iter()
            .map(|b| {
                b.map(|b| Book {
                    price_cents: b.price_cents,
                    stock: b.stock,
                    title: b.title,
                })
            })
            .collect();
        let orders = self
            .orders
            .into_iter()
            .map(|o| Order {
                customer: o.customer,
                book: o.book,
                quantity: o.quantity,
                price_cents: o.price_cents,
                placed_ns: o.placed_ns,
                cancelled_ns: 0,
                status: o.status,
                previous: 0,
            })
            .collect();
        StateV2 { books, orders }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(customer: u64, placed_ns: u64) -> Order {
        Order {
            customer,
            book: 1,
            quantity: 2,
            price_cents: 300,
            placed_ns,
            cancelled_ns: 0,
            status: OrderStatus::Open,
            previous: 0,
        }
    }

    #[test]
    fn digest_is_independent_of_insertion_order_and_sensitive_to_fields() {
        let (a, b) = (order(7, 1), order(8, 2));
        let mut x = Digest::default();
        x.add_order(1, &a);
        x.add_order(2, &b);
        let mut y = Digest::default();
        y.add_order(2, &b);
        y.add_order(1, &a);
        assert_eq!(x, y);
        let mut z = Digest::default();
        z.add_order(1, &b);
        z.add_order(2, &a);
        assert_ne!(x, z, "ids are part of the fact");
        let mut cancelled = a;
        cancelled.status = OrderStatus::Cancelled;
        let mut w = x;
        w.remove_order(1, &a);
        w.add_order(1, &cancelled);
        assert_ne!(w, x);
        w.remove_order(1, &cancelled);
        w.add_order(1, &a);
        assert_eq!(w, x);
    }

    #[test]
    fn customer_chain_links_newest_first() {
        let mut orders = vec![order(1, 0), order(2, 0), order(1, 0), order(9, 0)];
        let customers = Derived::of(&[], &mut orders, 4).customers;
        assert_eq!(
            customers.get(1),
            Some(&Customer {
                newest: 3,
                count: 2
            })
        );
        assert_eq!((customers.entries.len(), customers.active), (10, 3));
        assert_eq!(orders[2].previous, 1);
        assert_eq!(orders[0].previous, 0);
    }
}
