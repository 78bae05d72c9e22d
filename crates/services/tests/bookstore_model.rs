//! The bookstore against a naive model (a `BTreeMap` of books and a list of orders, every rule
//! written out in the documented order of checks): random message sequences, small limits so
//! every limit is hit, and the same outcome for every message, the same stock and orders at
//! the end.

use keel::engine::{Message, MessageHeader};
use keel::Typed;
use keel::{Outcome, Output, Processor};
use keel_services::bookstore::{
    AddBook, Bookstore, BookstoreLimits, CancelOrder, ChangePrice, OrderStatus, Payload,
    PlaceOrder, PlaceOrderV1, QueryBook, QueryCustomerOrders, QueryOrder, RejectReason, Restock,
};
use keel_services::Command;
use proptest::prelude::*;
use std::collections::BTreeMap;

const LIMITS: BookstoreLimits = BookstoreLimits {
    max_books: 6,
    max_orders: 40,
    max_customers: 5,
    max_orders_per_customer: 12,
    max_quantity_per_order: 4,
    max_price_cents: 1_000,
    max_stock_per_book: 30,
    max_title_bytes: 8,
    orders_per_page: 3,
};

#[derive(Debug, Clone)]
enum Op {
    Add {
        book: u32,
        price: u64,
        stock: u64,
        title_len: usize,
    },
    Price {
        book: u32,
        price: u64,
    },
    Restock {
        book: u32,
        quantity: u32,
    },
    Order {
        customer: u64,
        book: u32,
        quantity: u32,
        stale: bool,
    },
    OrderV1 {
        customer: u64,
        book: u32,
        quantity: u32,
    },
    Cancel {
        customer: u64,
        order: u64,
    },
    QueryBook {
        book: u32,
    },
    QueryOrder {
        order: u64,
    },
    QueryCustomer {
        customer: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let book = 0u32..8;
    let customer = 0u64..7;
    prop_oneof![
        2 => (book.clone(), 0u64..1_100, 0u64..35, 0usize..10)
            .prop_map(|(book, price, stock, title_len)| Op::Add { book, price, stock, title_len }),
        1 => (book.clone(), 0u64..1_100).prop_map(|(book, price)| Op::Price { book, price }),
        1 => (book.clone(), 0u32..12).prop_map(|(book, quantity)| Op::Restock { book, quantity }),
        6 => (customer.clone(), book.clone(), 0u32..6, any::<bool>()).prop_map(
            |(customer, book, quantity, stale)| Op::Order { customer, book, quantity, stale }
        ),
        1 => (customer.clone(), book.clone(), 0u32..6)
            .prop_map(|(customer, book, quantity)| Op::OrderV1 { customer, book, quantity }),
        3 => (customer.clone(), 0u64..45).prop_map(|(customer, order)| Op::Cancel { customer, order }),
        1 => book.prop_map(|book| Op::QueryBook { book }),
        1 => (0u64..45).prop_map(|order| Op::QueryOrder { order }),
        1 => customer.prop_map(|customer| Op::QueryCustomer { customer }),
    ]
}

/// The obviously-correct bookstore.
#[derive(Default)]
struct Model {
    books: BTreeMap<u32, (u64, u64)>,
    /// (customer, book, quantity, cancelled)
    orders: Vec<(u64, u32, u32, bool)>,
}

type Verdict = Result<(), RejectReason>;

impl Model {
    fn price_of(&self, book: u32) -> u64 {
        self.books.get(&book).map_or(1, |b| b.0)
    }

    fn add(&mut self, book: u32, price: u64, stock: u64, title_len: usize) -> Verdict {
        use RejectReason::*;
        let rule = [
            (book >= LIMITS.max_books, BookLimit),
            (self.books.contains_key(&book), DuplicateBook),
            (price == 0 || price > LIMITS.max_price_cents, InvalidPrice),
            (stock > LIMITS.max_stock_per_book, StockLimit),
            (title_len > LIMITS.max_title_bytes as usize, TitleTooLong),
        ];
        first_broken(&rule)?;
        self.books.insert(book, (price, stock));
        Ok(())
    }

    fn order(&mut self, customer: u64, book: u32, quantity: u32, seen: Option<u64>) -> Verdict {
        use RejectReason::*;
        let &(price, stock) = self.books.get(&book).ok_or(UnknownBook)?;
        let placed = self.orders.iter().filter(|o| o.0 == customer).count() as u32;
        let rule = [
            (
                quantity == 0 || quantity > LIMITS.max_quantity_per_order,
                InvalidQuantity,
            ),
            (seen.is_some_and(|seen| seen != price), PriceChanged),
            (stock < u64::from(quantity), OutOfStock),
            (self.orders.len() >= LIMITS.max_orders as usize, OrderLimit),
            (customer >= u64::from(LIMITS.max_customers), CustomerLimit),
            (placed >= LIMITS.max_orders_per_customer, CustomerOrderLimit),
        ];
        first_broken(&rule)?;
        self.books
            .insert(book, (price, stock - u64::from(quantity)));
        self.orders.push((customer, book, quantity, false));
        Ok(())
    }

    fn cancel(&mut self, customer: u64, order: u64) -> Verdict {
        use RejectReason::*;
        let index = order.checked_sub(1).ok_or(UnknownOrder)? as usize;
        let o = *self.orders.get(index).ok_or(UnknownOrder)?;
        first_broken(&[(o.0 != customer, NotYourOrder), (o.3, AlreadyCancelled)])?;
        self.orders[index].3 = true;
        self.books.get_mut(&o.1).unwrap().1 += u64::from(o.2);
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Verdict {
        use RejectReason::*;
        match *op {
            Op::Add {
                book,
                price,
                stock,
                title_len,
            } => self.add(book, price, stock, title_len),
            Op::Price { book, price } => {
                let entry = self.books.get_mut(&book).ok_or(UnknownBook)?;
                first_broken(&[(price == 0 || price > LIMITS.max_price_cents, InvalidPrice)])?;
                entry.0 = price;
                Ok(())
            }
            Op::Restock { book, quantity } => {
                let entry = self.books.get_mut(&book).ok_or(UnknownBook)?;
                let over = entry.1 + u64::from(quantity) > LIMITS.max_stock_per_book;
                first_broken(&[(quantity == 0, InvalidQuantity), (over, StockLimit)])?;
                entry.1 += u64::from(quantity);
                Ok(())
            }
            Op::Order {
                customer,
                book,
                quantity,
                stale,
            } => {
                let seen = self.price_of(book) + u64::from(stale);
                self.order(customer, book, quantity, Some(seen))
            }
            Op::OrderV1 {
                customer,
                book,
                quantity,
            } => self.order(customer, book, quantity, None),
            Op::Cancel { customer, order } => self.cancel(customer, order),
            Op::QueryBook { book } => self.books.get(&book).map(|_| ()).ok_or(UnknownBook),
            Op::QueryOrder { order } => {
                let known = order >= 1 && order <= self.orders.len() as u64;
                first_broken(&[(!known, UnknownOrder)])
            }
            Op::QueryCustomer { .. } => Ok(()),
        }
    }
}

fn first_broken(rules: &[(bool, RejectReason)]) -> Verdict {
    rules
        .iter()
        .find(|(broken, _)| *broken)
        .map_or(Ok(()), |&(_, reason)| Err(reason))
}

fn command(op: &Op, model: &Model) -> Command {
    match *op {
        Op::Add {
            book,
            price,
            stock,
            title_len,
        } => {
            let title = "t".repeat(title_len);
            AddBook {
                book,
                price_cents: price,
                stock,
                title,
            }
            .command()
        }
        Op::Price { book, price } => ChangePrice {
            book,
            price_cents: price,
        }
        .command(),
        Op::Restock { book, quantity } => Restock { book, quantity }.command(),
        Op::Order {
            customer,
            book,
            quantity,
            stale,
        } => {
            let seen_price_cents = model.price_of(book) + u64::from(stale);
            PlaceOrder {
                customer,
                book,
                quantity,
                seen_price_cents,
            }
            .command()
        }
        Op::OrderV1 {
            customer,
            book,
            quantity,
        } => PlaceOrderV1 {
            customer,
            book,
            quantity,
        }
        .command(),
        Op::Cancel { customer, order } => CancelOrder { customer, order }.command(),
        Op::QueryBook { book } => QueryBook { book }.command(),
        Op::QueryOrder { order } => QueryOrder { order }.command(),
        Op::QueryCustomer { customer } => QueryCustomerOrders {
            customer,
            before_order: 0,
        }
        .command(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_bookstore_agrees_with_the_model(ops in prop::collection::vec(op(), 1..300)) {
        let mut store = Typed::new(Bookstore::new(LIMITS));
        let mut model = Model::default();
        let mut buf = vec![0u8; 4096];
        for (i, op) in ops.iter().enumerate() {
            let command = command(op, &model);
            let header = MessageHeader {
                sequence: i as u64 + 1,
                kind: command.kind,
                version: command.version,
                ..MessageHeader::default()
            };
            let message = Message { header, payload: &command.payload };
            let got = store.apply(&message, &mut Output::new(&mut buf));
            let want = match model.apply(op) {
                Ok(()) => Outcome::Accepted,
                Err(reason) => Outcome::Rejected(reason.code()),
            };
            prop_assert_eq!(got, want, "message {} {:?}", i, op);
        }
        for book in 0..8 {
            let stock = store.book(book).map(|b| b.stock);
            prop_assert_eq!(stock, model.books.get(&book).map(|b| b.1));
        }
        prop_assert_eq!(store.order_count(), model.orders.len() as u64);
        for (i, o) in model.orders.iter().enumerate() {
            let info = store.order(i as u64 + 1).unwrap();
            let cancelled = info.status == OrderStatus::Cancelled;
            prop_assert_eq!((info.customer, info.book, info.quantity, cancelled), *o);
        }
        store.check_consistency().unwrap();
    }
}
