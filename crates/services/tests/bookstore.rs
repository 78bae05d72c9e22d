//! The bookstore's business logic, driven through `Processor::apply` as the engine drives it:
//! every message and every rejection, the seed's price-change rule, cancels, limits, the v1
//! upcast, snapshots and schema upgrade, the seeded workload, and the shell/JSON side.

use keel::codec;
use keel::engine::{Message, MessageHeader, Response, ResponseHeader};
use keel::snapshot::{save_serde, StateError};
use keel::Typed;
use keel::{Outcome, Output, Processor, Status};
use keel_services::bookstore::{
    workload, AddBook, BookInfo, BookStatus, BookV1, Bookstore, BookstoreLimits, CancelOrder,
    ChangePrice, CustomerOrders, Kind, OrderCancelled, OrderInfo, OrderPlaced, OrderStatus,
    OrderV1, Payload, PlaceOrder, PlaceOrderV1, QueryBook, QueryCustomerOrders, QueryOrder,
    RejectDetail, RejectReason, ResponseKind, Restock, StateV1, SCHEMA_VERSION,
};
use keel_services::{App, Command};
use serde::de::DeserializeOwned;

/// A store plus what the engine would give it: sequences, timestamps, a response buffer.
struct Shop {
    store: Typed<Bookstore>,
    sequence: u64,
    buf: Vec<u8>,
}

/// One answer: outcome, response kind, payload.
struct Answer {
    outcome: Outcome,
    kind: u16,
    payload: Vec<u8>,
}

impl Answer {
    fn accepted<T: DeserializeOwned>(&self, kind: ResponseKind) -> T {
        assert_eq!(self.outcome, Outcome::Accepted);
        assert_eq!(self.kind, kind.number());
        codec::decode(&self.payload).unwrap()
    }

    fn rejected(&self, reason: RejectReason) -> Option<RejectDetail> {
        assert_eq!(
            self.outcome,
            Outcome::Rejected(reason.code()),
            "expected {reason:?}"
        );
        if self.payload.is_empty() {
            assert_eq!(self.kind, ResponseKind::None.number());
            return None;
        }
        assert_eq!(self.kind, ResponseKind::RejectDetail.number());
        Some(codec::decode(&self.payload).unwrap())
    }
}

impl Shop {
    fn new() -> Self {
        Shop::with(BookstoreLimits::default())
    }

    fn with(limits: BookstoreLimits) -> Self {
        Shop {
            store: Typed::new(Bookstore::new(limits)),
            sequence: 0,
            buf: vec![0; 4096],
        }
    }

    fn raw(&mut self, kind: u16, version: u16, payload: &[u8]) -> Answer {
        self.sequence += 1;
        let header = MessageHeader {
            sequence: self.sequence,
            timestamp_ns: 1_000 * self.sequence,
            kind,
            version,
            ..MessageHeader::default()
        };
        let mut out = Output::new(&mut self.buf);
        let outcome = self.store.apply(&Message { header, payload }, &mut out);
        Answer {
            outcome,
            kind: out.kind(),
            payload: out.as_bytes().to_vec(),
        }
    }

    fn send(&mut self, command: &Command) -> Answer {
        self.raw(command.kind, command.version, &command.payload)
    }

    fn go(&mut self, payload: &impl Payload) -> Answer {
        self.send(&payload.command())
    }

    /// Sends a message that must be rejected and checks the state did not change.
    fn refuse(&mut self, payload: &impl Payload, reason: RejectReason) -> Option<RejectDetail> {
        let before = self.store.state_hash();
        let detail = self.go(payload).rejected(reason);
        assert_eq!(
            self.store.state_hash(),
            before,
            "{reason:?} changed the state"
        );
        detail
    }

    fn add(&mut self, book: u32, price_cents: u64, stock: u64) -> BookStatus {
        let title = format!("Book {book}");
        self.go(&AddBook {
            book,
            price_cents,
            stock,
            title,
        })
        .accepted(ResponseKind::BookStatus)
    }

    fn order(&mut self, customer: u64, book: u32, quantity: u32, seen: u64) -> Answer {
        self.go(&PlaceOrder {
            customer,
            book,
            quantity,
            seen_price_cents: seen,
        })
    }
}

fn limit(limit: u64) -> Option<RejectDetail> {
    Some(RejectDetail::Limit { limit })
}

#[test]
fn add_book_and_its_rejections() {
    let mut shop = Shop::new();
    let status = shop.add(3, 1999, 10);
    assert_eq!(
        status,
        BookStatus {
            book: 3,
            price_cents: 1999,
            stock: 10
        }
    );
    assert_eq!(shop.store.book_count(), 1);
    let book = |title: &str| AddBook {
        book: 3,
        price_cents: 1999,
        stock: 1,
        title: title.into(),
    };
    assert_eq!(
        shop.refuse(&book("again"), RejectReason::DuplicateBook),
        None
    );
    let max = BookstoreLimits::default();
    let far = AddBook {
        book: max.max_books,
        ..book("far")
    };
    assert_eq!(
        shop.refuse(&far, RejectReason::BookLimit),
        limit(max.max_books.into())
    );
    let free = AddBook {
        book: 4,
        price_cents: 0,
        ..book("free")
    };
    assert_eq!(
        shop.refuse(&free, RejectReason::InvalidPrice),
        limit(max.max_price_cents)
    );
    let dear = AddBook {
        book: 4,
        price_cents: max.max_price_cents + 1,
        ..book("dear")
    };
    shop.refuse(&dear, RejectReason::InvalidPrice);
    let piles = AddBook {
        book: 4,
        stock: max.max_stock_per_book + 1,
        ..book("piles")
    };
    assert_eq!(
        shop.refuse(&piles, RejectReason::StockLimit),
        limit(max.max_stock_per_book)
    );
    let long = AddBook {
        book: 4,
        ..book(&"x".repeat(max.max_title_bytes as usize + 1))
    };
    assert_eq!(
        shop.refuse(&long, RejectReason::TitleTooLong),
        limit(max.max_title_bytes.into())
    );
    assert_eq!(shop.store.book_count(), 1);
    assert!(shop.store.book(4).is_none());
    shop.store.check_consistency().unwrap();
}

#[test]
fn change_price_and_its_rejections() {
    let mut shop = Shop::new();
    shop.add(1, 500, 2);
    let changed: BookStatus = shop
        .go(&ChangePrice {
            book: 1,
            price_cents: 650,
        })
        .accepted(ResponseKind::BookStatus);
    assert_eq!(
        changed,
        BookStatus {
            book: 1,
            price_cents: 650,
            stock: 2
        }
    );
    shop.refuse(
        &ChangePrice {
            book: 2,
            price_cents: 650,
        },
        RejectReason::UnknownBook,
    );
    shop.refuse(
        &ChangePrice {
            book: 1,
            price_cents: 0,
        },
        RejectReason::InvalidPrice,
    );
    shop.store.check_consistency().unwrap();
}

#[test]
fn restock_and_its_rejections() {
    let mut shop = Shop::new();
    shop.add(1, 650, 2);
    let restocked: BookStatus = shop
        .go(&Restock {
            book: 1,
            quantity: 8,
        })
        .accepted(ResponseKind::BookStatus);
    assert_eq!(
        restocked,
        BookStatus {
            book: 1,
            price_cents: 650,
            stock: 10
        }
    );
    shop.refuse(
        &Restock {
            book: 9,
            quantity: 1,
        },
        RejectReason::UnknownBook,
    );
    assert_eq!(
        shop.refuse(
            &Restock {
                book: 1,
                quantity: 0
            },
            RejectReason::InvalidQuantity
        ),
        None
    );
    let mut small = Shop::with(BookstoreLimits {
        max_stock_per_book: 100,
        ..Default::default()
    });
    small.add(1, 500, 95);
    small
        .go(&Restock {
            book: 1,
            quantity: 5,
        })
        .accepted::<BookStatus>(ResponseKind::BookStatus);
    let over = small.refuse(
        &Restock {
            book: 1,
            quantity: 1,
        },
        RejectReason::StockLimit,
    );
    assert_eq!(over, limit(100));
    shop.store.check_consistency().unwrap();
}

#[test]
fn place_order_and_its_rejections() {
    let mut shop = Shop::new();
    shop.add(1, 1250, 5);
    let placed: OrderPlaced = shop
        .order(7, 1, 2, 1250)
        .accepted(ResponseKind::OrderPlaced);
    let expected = OrderPlaced {
        order: 1,
        book: 1,
        quantity: 2,
        price_cents: 1250,
        total_cents: 2500,
        remaining_stock: 3,
    };
    assert_eq!(placed, expected);
    let order = shop.store.order(1).unwrap();
    assert_eq!(
        (order.customer, order.placed_ns, order.status),
        (7, 2_000, OrderStatus::Open)
    );
    let at = |book, quantity, seen| PlaceOrder {
        customer: 7,
        book,
        quantity,
        seen_price_cents: seen,
    };
    shop.refuse(&at(2, 1, 1250), RejectReason::UnknownBook);
    let out = shop.refuse(&at(1, 4, 1250), RejectReason::OutOfStock);
    assert_eq!(out, Some(RejectDetail::Available { book: 1, stock: 3 }));
    let stale = shop.refuse(&at(1, 1, 1000), RejectReason::PriceChanged);
    assert_eq!(
        stale,
        Some(RejectDetail::CurrentPrice {
            book: 1,
            price_cents: 1250
        })
    );
    let max = BookstoreLimits::default().max_quantity_per_order;
    assert_eq!(
        shop.refuse(&at(1, 0, 1250), RejectReason::InvalidQuantity),
        limit(max.into())
    );
    shop.refuse(&at(1, max + 1, 1250), RejectReason::InvalidQuantity);
    // The last copies can be bought.
    let last: OrderPlaced = shop
        .order(8, 1, 3, 1250)
        .accepted(ResponseKind::OrderPlaced);
    assert_eq!((last.order, last.remaining_stock), (2, 0));
    shop.refuse(&at(1, 1, 1250), RejectReason::OutOfStock);
    assert_eq!(
        (shop.store.order_count(), shop.store.customer_count()),
        (2, 2)
    );
    shop.store.check_consistency().unwrap();
}

/// The seed's rule: a price change between the customer seeing a price and the order
/// arriving rejects the order with the current price; orders already placed keep theirs.
#[test]
fn a_price_change_between_seeing_and_ordering_rejects_the_order() {
    let mut shop = Shop::new();
    shop.add(1, 1000, 100);
    let early: OrderPlaced = shop
        .order(1, 1, 1, 1000)
        .accepted(ResponseKind::OrderPlaced);
    shop.go(&ChangePrice {
        book: 1,
        price_cents: 1200,
    })
    .accepted::<BookStatus>(ResponseKind::BookStatus);
    // Customer 2 saw 1000 before the change; their order arrives after it.
    let late = shop
        .order(2, 1, 1, 1000)
        .rejected(RejectReason::PriceChanged);
    assert_eq!(
        late,
        Some(RejectDetail::CurrentPrice {
            book: 1,
            price_cents: 1200
        })
    );
    // They retry at the price they were told.
    let retry: OrderPlaced = shop
        .order(2, 1, 1, 1200)
        .accepted(ResponseKind::OrderPlaced);
    assert_eq!((retry.price_cents, retry.remaining_stock), (1200, 98));
    // Back to the old price: a customer who saw the old old price is fine again.
    shop.go(&ChangePrice {
        book: 1,
        price_cents: 1000,
    })
    .accepted::<BookStatus>(ResponseKind::BookStatus);
    shop.order(3, 1, 1, 1200)
        .rejected(RejectReason::PriceChanged);
    shop.order(3, 1, 1, 1000)
        .accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
    assert_eq!(shop.store.order(early.order).unwrap().price_cents, 1000);
    assert_eq!(shop.store.order(retry.order).unwrap().price_cents, 1200);
    shop.store.check_consistency().unwrap();
}

#[test]
fn cancel_restores_stock_and_its_rejections() {
    let mut shop = Shop::new();
    shop.add(1, 300, 10);
    let hash_before_order = shop.store.state_hash();
    let placed: OrderPlaced = shop.order(5, 1, 4, 300).accepted(ResponseKind::OrderPlaced);
    assert_eq!(placed.remaining_stock, 6);
    shop.refuse(
        &CancelOrder {
            customer: 6,
            order: placed.order,
        },
        RejectReason::NotYourOrder,
    );
    shop.refuse(
        &CancelOrder {
            customer: 5,
            order: 0,
        },
        RejectReason::UnknownOrder,
    );
    shop.refuse(
        &CancelOrder {
            customer: 5,
            order: 2,
        },
        RejectReason::UnknownOrder,
    );
    shop.refuse(
        &CancelOrder {
            customer: 5,
            order: u64::MAX,
        },
        RejectReason::UnknownOrder,
    );
    let cancelled: OrderCancelled = shop
        .go(&CancelOrder {
            customer: 5,
            order: 1,
        })
        .accepted(ResponseKind::OrderCancelled);
    assert_eq!(
        cancelled,
        OrderCancelled {
            order: 1,
            book: 1,
            quantity: 4,
            stock: 10
        }
    );
    assert_eq!(shop.store.book(1).unwrap().stock, 10);
    let order = shop.store.order(1).unwrap();
    assert_eq!(
        (order.status, order.cancelled_ns),
        (OrderStatus::Cancelled, 7_000)
    );
    assert_eq!(shop.store.open_order_count(), 0);
    shop.refuse(
        &CancelOrder {
            customer: 5,
            order: 1,
        },
        RejectReason::AlreadyCancelled,
    );
    // The order stays on record, so the state is not the one before it was placed.
    assert_ne!(shop.store.state_hash(), hash_before_order);
    shop.store.check_consistency().unwrap();
}

#[test]
fn queries_answer_without_changing_state() {
    let mut shop = Shop::new();
    shop.add(2, 700, 9);
    shop.order(4, 2, 1, 700)
        .accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
    let hash = shop.store.state_hash();
    let book: BookInfo<'static> = shop
        .go(&QueryBook { book: 2 })
        .accepted(ResponseKind::BookInfo);
    assert_eq!(
        (book.price_cents, book.stock, book.title.as_ref()),
        (700, 8, "Book 2")
    );
    shop.refuse(&QueryBook { book: 3 }, RejectReason::UnknownBook);
    let order: OrderInfo = shop
        .go(&QueryOrder { order: 1 })
        .accepted(ResponseKind::OrderInfo);
    assert_eq!(
        (
            order.customer,
            order.book,
            order.quantity,
            order.price_cents
        ),
        (4, 2, 1, 700)
    );
    shop.refuse(&QueryOrder { order: 2 }, RejectReason::UnknownOrder);
    let none: CustomerOrders = shop
        .go(&QueryCustomerOrders {
            customer: 99,
            before_order: 0,
        })
        .accepted(ResponseKind::CustomerOrders);
    assert_eq!((none.total, none.next_before, none.orders.len()), (0, 0, 0));
    assert_eq!(shop.store.state_hash(), hash);
}

#[test]
fn customer_orders_come_in_pages_newest_first() {
    let limits = BookstoreLimits {
        orders_per_page: 3,
        ..Default::default()
    };
    let mut shop = Shop::with(limits);
    shop.add(1, 100, 1_000);
    for i in 0..7 {
        shop.order(1, 1, 1, 100)
            .accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
        shop.order(2 + i % 2, 1, 1, 100)
            .accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
    }
    shop.go(&CancelOrder {
        customer: 1,
        order: 5,
    })
    .accepted::<OrderCancelled>(ResponseKind::OrderCancelled);
    // Customer 1 has orders 1, 3, 5, 7, 9, 11, 13.
    let mut before_order = 0;
    let mut seen = Vec::new();
    loop {
        let page: CustomerOrders = shop
            .go(&QueryCustomerOrders {
                customer: 1,
                before_order,
            })
            .accepted(ResponseKind::CustomerOrders);
        assert_eq!(page.total, 7);
        assert!(page.orders.len() <= 3);
        seen.extend(page.orders.iter().map(|o| (o.order, o.status)));
        if page.next_before == 0 {
            break;
        }
        before_order = page.next_before;
    }
    let expected: Vec<_> = [13, 11, 9, 7, 5, 3, 1]
        .into_iter()
        .map(|o| {
            (
                o,
                if o == 5 {
                    OrderStatus::Cancelled
                } else {
                    OrderStatus::Open
                },
            )
        })
        .collect();
    assert_eq!(seen, expected);
    let foreign = QueryCustomerOrders {
        customer: 1,
        before_order: 2,
    };
    shop.refuse(&foreign, RejectReason::NotYourOrder);
    shop.refuse(
        &QueryCustomerOrders {
            customer: 1,
            before_order: 99,
        },
        RejectReason::UnknownOrder,
    );
}

#[test]
fn a_query_too_large_for_the_response_buffer_is_rejected() {
    let mut shop = Shop::new();
    shop.buf = vec![0; 40];
    shop.go(&AddBook {
        book: 0,
        price_cents: 1,
        stock: 1,
        title: "t".repeat(100),
    })
    .accepted::<BookStatus>(ResponseKind::BookStatus);
    shop.refuse(&QueryBook { book: 0 }, RejectReason::ResponseTooLarge);
}

#[test]
fn limits_are_rejections_never_growth() {
    let limits = BookstoreLimits {
        max_books: 2,
        max_orders: 5,
        max_customers: 12,
        max_orders_per_customer: 3,
        ..Default::default()
    };
    let mut shop = Shop::with(limits);
    shop.add(0, 100, 100);
    shop.add(1, 100, 100);
    let third = AddBook {
        book: 2,
        price_cents: 1,
        stock: 1,
        title: String::new(),
    };
    assert_eq!(shop.refuse(&third, RejectReason::BookLimit), limit(2));
    for _ in 0..3 {
        shop.order(10, 0, 1, 100)
            .accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
    }
    let fourth = PlaceOrder {
        customer: 10,
        book: 0,
        quantity: 1,
        seen_price_cents: 100,
    };
    assert_eq!(
        shop.refuse(&fourth, RejectReason::CustomerOrderLimit),
        limit(3)
    );
    shop.order(11, 1, 1, 100)
        .accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
    let stranger = PlaceOrder {
        customer: 12,
        ..fourth
    };
    assert_eq!(
        shop.refuse(&stranger, RejectReason::CustomerLimit),
        limit(12)
    );
    shop.refuse(
        &PlaceOrder {
            customer: u64::MAX,
            ..fourth
        },
        RejectReason::CustomerLimit,
    );
    shop.order(11, 1, 1, 100)
        .accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
    let sixth = PlaceOrder {
        customer: 11,
        ..fourth
    };
    assert_eq!(shop.refuse(&sixth, RejectReason::OrderLimit), limit(5));
    // Cancelling frees no order slot: orders are kept on record.
    shop.go(&CancelOrder {
        customer: 11,
        order: 5,
    })
    .accepted::<OrderCancelled>(ResponseKind::OrderCancelled);
    shop.refuse(&sixth, RejectReason::OrderLimit);
    assert_eq!(
        (shop.store.order_count(), shop.store.customer_count()),
        (5, 2)
    );
    shop.store.check_consistency().unwrap();
}

#[test]
fn unknown_kinds_versions_and_malformed_payloads_are_rejected() {
    let mut shop = Shop::new();
    shop.add(1, 100, 10);
    let hash = shop.store.state_hash();
    shop.raw(0, 1, &[]).rejected(RejectReason::UnknownKind);
    shop.raw(99, 1, &[]).rejected(RejectReason::UnknownKind);
    let order = PlaceOrder {
        customer: 1,
        book: 1,
        quantity: 1,
        seen_price_cents: 100,
    }
    .command();
    shop.raw(order.kind, 3, &order.payload)
        .rejected(RejectReason::UnsupportedVersion);
    shop.raw(order.kind, 0, &order.payload)
        .rejected(RejectReason::UnsupportedVersion);
    shop.raw(order.kind, 2, &order.payload[..10])
        .rejected(RejectReason::Malformed);
    let mut long = order.payload.clone();
    long.push(0);
    shop.raw(order.kind, 2, &long)
        .rejected(RejectReason::Malformed);
    // A v2 payload sent as v1 has 8 trailing bytes: malformed, not misread.
    shop.raw(order.kind, 1, &order.payload)
        .rejected(RejectReason::Malformed);
    shop.raw(Kind::AddBook.number(), 1, &[0xFF; 30])
        .rejected(RejectReason::Malformed);
    assert_eq!(shop.store.state_hash(), hash);
}

/// PlaceOrder v1 has no seen price: it is upcast to an order that accepts the current price.
#[test]
fn place_order_v1_is_upcast_to_accept_the_current_price() {
    let mut shop = Shop::new();
    shop.add(1, 1000, 10);
    shop.go(&ChangePrice {
        book: 1,
        price_cents: 1500,
    })
    .accepted::<BookStatus>(ResponseKind::BookStatus);
    let v1 = PlaceOrderV1 {
        customer: 3,
        book: 1,
        quantity: 2,
    };
    let command = v1.command();
    assert_eq!(
        (command.kind, command.version),
        (Kind::PlaceOrder.number(), 1)
    );
    let placed: OrderPlaced = shop.send(&command).accepted(ResponseKind::OrderPlaced);
    assert_eq!(
        (
            placed.price_cents,
            placed.total_cents,
            placed.remaining_stock
        ),
        (1500, 3000, 8)
    );
    // Every other check still applies to v1 orders.
    shop.go(&PlaceOrderV1 { book: 2, ..v1 })
        .rejected(RejectReason::UnknownBook);
    let short = shop
        .go(&PlaceOrderV1 { quantity: 9, ..v1 })
        .rejected(RejectReason::OutOfStock);
    assert_eq!(short, Some(RejectDetail::Available { book: 1, stock: 8 }));
    // The same order as v2 at the price seen before the change is refused.
    let v2 = PlaceOrder {
        customer: 3,
        book: 1,
        quantity: 2,
        seen_price_cents: 1000,
    };
    shop.go(&v2).rejected(RejectReason::PriceChanged);
    // v1 and v2 at the current price leave the same state.
    let mut a = Shop::new();
    let mut b = Shop::new();
    for shop in [&mut a, &mut b] {
        shop.add(1, 1000, 10);
    }
    a.go(&v1).accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
    b.go(&PlaceOrder {
        seen_price_cents: 1000,
        ..v2
    })
    .accepted::<OrderPlaced>(ResponseKind::OrderPlaced);
    assert_eq!(a.store.state_hash(), b.store.state_hash());
}

/// A store with some of everything: books, open and cancelled orders, several customers.
fn busy_shop() -> Shop {
    let mut shop = Shop::new();
    for book in 0..20 {
        shop.add(book, 100 + u64::from(book), 50);
    }
    for i in 0..200u64 {
        let book = (i % 20) as u32;
        let price = shop.store.book(book).unwrap().price_cents;
        shop.order(i % 7, book, 1 + (i % 3) as u32, price);
        if i % 5 == 0 {
            shop.go(&CancelOrder {
                customer: i % 7,
                order: i / 2 + 1,
            });
        }
        if i % 11 == 0 {
            shop.go(&ChangePrice {
                book,
                price_cents: price + 1,
            });
        }
    }
    shop.store.check_consistency().unwrap();
    shop
}

#[test]
fn save_and_load_round_trip_with_equal_state_hash() {
    let mut shop = busy_shop();
    let mut bytes = Vec::new();
    shop.store.save_state(&mut bytes).unwrap();
    let mut copy = Shop::new();
    copy.store.load_state(SCHEMA_VERSION, &bytes).unwrap();
    copy.sequence = shop.sequence;
    assert_eq!(copy.store.state_hash(), shop.store.state_hash());
    assert_eq!(copy.store.describe_state(), shop.store.describe_state());
    copy.store.check_consistency().unwrap();
    // The derived customer index came back too: both continue identically.
    for customer in 0..8 {
        assert_eq!(
            copy.store.customer_order_count(customer),
            shop.store.customer_order_count(customer)
        );
        let query = QueryCustomerOrders {
            customer,
            before_order: 0,
        };
        assert_eq!(copy.go(&query).payload, shop.go(&query).payload);
        let order = PlaceOrder {
            customer,
            book: 3,
            quantity: 1,
            seen_price_cents: 103,
        };
        assert_eq!(copy.go(&order).payload, shop.go(&order).payload);
    }
    assert_eq!(copy.store.state_hash(), shop.store.state_hash());
    let mut again = Vec::new();
    copy.store.save_state(&mut again).unwrap();
    let mut original = Vec::new();
    shop.store.save_state(&mut original).unwrap();
    assert_eq!(again, original);
}

#[test]
fn a_bad_snapshot_leaves_the_store_untouched() {
    let mut shop = busy_shop();
    let hash = shop.store.state_hash();
    let mut bytes = Vec::new();
    shop.store.save_state(&mut bytes).unwrap();
    let err = shop
        .store
        .load_state(SCHEMA_VERSION + 1, &bytes)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::UnsupportedSchema {
                found: 3,
                current: 2
            }
        ),
        "{err}"
    );
    assert!(shop
        .store
        .load_state(SCHEMA_VERSION, &bytes[..bytes.len() - 3])
        .is_err());
    assert!(
        shop.store.load_state(1, &bytes).is_err(),
        "a v2 state is not a valid v1 state"
    );
    assert_eq!(shop.store.state_hash(), hash);
    // A state larger than the limits of the store loading it is refused (limits may grow
    // between runs, not shrink below the state).
    let mut small = Typed::new(Bookstore::new(BookstoreLimits {
        max_orders: 10,
        ..Default::default()
    }));
    let err = small.load_state(SCHEMA_VERSION, &bytes).unwrap_err();
    assert!(err.to_string().contains("max_orders"), "{err}");
    assert_eq!(small.order_count(), 0);
    // So is one that decodes but is inconsistent: an order for a book that is not listed.
    let orphan = StateV1 {
        books: vec![None],
        orders: vec![OrderV1 {
            customer: 1,
            book: 0,
            quantity: 1,
            price_cents: 1,
            placed_ns: 0,
            status: OrderStatus::Open,
        }],
    };
    let mut bytes = Vec::new();
    save_serde(&orphan, &mut bytes).unwrap();
    let err = shop.store.load_state(1, &bytes).unwrap_err();
    assert!(err.to_string().contains("unlisted book"), "{err}");
    assert_eq!(shop.store.state_hash(), hash);
}

/// Schema 1 had no `cancelled_ns`; loading it upgrades to schema 2 with `cancelled_ns = 0`.
#[test]
fn a_schema_1_snapshot_is_upgraded() {
    let v1 = StateV1 {
        books: vec![
            None,
            Some(BookV1 {
                price_cents: 250,
                stock: 7,
                title: "Old".into(),
            }),
        ],
        orders: vec![
            OrderV1 {
                customer: 9,
                book: 1,
                quantity: 2,
                price_cents: 250,
                placed_ns: 5_000,
                status: OrderStatus::Open,
            },
            OrderV1 {
                customer: 9,
                book: 1,
                quantity: 1,
                price_cents: 200,
                placed_ns: 6_000,
                status: OrderStatus::Cancelled,
            },
        ],
    };
    let mut bytes = Vec::new();
    save_serde(&v1, &mut bytes).unwrap();
    let mut upgraded = Shop::new();
    upgraded.store.load_state(1, &bytes).unwrap();
    upgraded.store.check_consistency().unwrap();
    let old = upgraded.store.order(2).unwrap();
    assert_eq!(
        (old.price_cents, old.placed_ns, old.cancelled_ns),
        (200, 6_000, 0)
    );
    assert_eq!(old.status, OrderStatus::Cancelled);
    assert_eq!(
        (
            upgraded.store.open_order_count(),
            upgraded.store.customer_order_count(9)
        ),
        (1, 2)
    );
    // The same history replayed on today's code gives the same state except cancelled_ns.
    upgraded
        .go(&CancelOrder {
            customer: 9,
            order: 2,
        })
        .rejected(RejectReason::AlreadyCancelled);
    upgraded
        .go(&CancelOrder {
            customer: 9,
            order: 1,
        })
        .accepted::<OrderCancelled>(ResponseKind::OrderCancelled);
    assert_eq!(upgraded.store.book(1).unwrap().stock, 9);
    // And it saves as schema 2, which loads back identically.
    let mut v2 = Vec::new();
    upgraded.store.save_state(&mut v2).unwrap();
    let mut reloaded = Typed::<Bookstore>::default();
    reloaded.load_state(SCHEMA_VERSION, &v2).unwrap();
    assert_eq!(reloaded.state_hash(), upgraded.store.state_hash());
}

/// Applies setup + `n` workload messages; returns the shop and the outcome of each message.
fn run_workload(seed: u64, n: u64) -> (Shop, Vec<Outcome>) {
    let mut shop = Shop::new();
    for command in Typed::<Bookstore>::setup(seed) {
        shop.send(&command)
            .accepted::<BookStatus>(ResponseKind::BookStatus);
    }
    let outcomes = (0..n)
        .map(|i| shop.send(&Typed::<Bookstore>::workload(seed, i)).outcome)
        .collect();
    (shop, outcomes)
}

#[test]
fn the_seeded_workload_is_reproducible_and_behaves_as_designed() {
    let n = 200_000;
    let (a, outcomes) = run_workload(7, n);
    let (b, _) = run_workload(7, n);
    assert_eq!(a.store.state_hash(), b.store.state_hash());
    let (c, _) = run_workload(8, n);
    assert_ne!(a.store.state_hash(), c.store.state_hash());
    a.store.check_consistency().unwrap();
    // Everything is accepted except the stale-price orders.
    for (i, outcome) in outcomes.iter().enumerate() {
        let expected = match workload::slot(i as u64) {
            workload::Slot::StaleOrder => Outcome::Rejected(RejectReason::PriceChanged.code()),
            _ => Outcome::Accepted,
        };
        assert_eq!(
            *outcome,
            expected,
            "message {i}: {:?}",
            workload::slot(i as u64)
        );
    }
    let cancels = n / workload::BLOCK * 5;
    assert_eq!(
        a.store.order_count(),
        n / workload::BLOCK * workload::ORDERS_PER_BLOCK
    );
    assert_eq!(a.store.open_order_count(), a.store.order_count() - cancels);
}

#[test]
fn parse_command_builds_every_message() {
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let parse = |s: &str| Typed::<Bookstore>::parse_command(&words(s)).unwrap();
    let add = AddBook {
        book: 1,
        price_cents: 1999,
        stock: 10,
        title: "The Hobbit".into(),
    };
    assert_eq!(parse("add-book 1 1999 10 The Hobbit"), add.command());
    assert_eq!(
        parse("price 1 2099"),
        ChangePrice {
            book: 1,
            price_cents: 2099
        }
        .command()
    );
    assert_eq!(
        parse("restock 1 5"),
        Restock {
            book: 1,
            quantity: 5
        }
        .command()
    );
    let order = PlaceOrder {
        customer: 7,
        book: 1,
        quantity: 2,
        seen_price_cents: 1999,
    };
    assert_eq!(parse("order 7 1 2 1999"), order.command());
    assert_eq!(
        parse("cancel 7 3"),
        CancelOrder {
            customer: 7,
            order: 3
        }
        .command()
    );
    assert_eq!(parse("book 1"), QueryBook { book: 1 }.command());
    assert_eq!(parse("order-status 3"), QueryOrder { order: 3 }.command());
    assert_eq!(
        parse("orders 7"),
        QueryCustomerOrders {
            customer: 7,
            before_order: 0
        }
        .command()
    );
    assert_eq!(
        parse("orders 7 40"),
        QueryCustomerOrders {
            customer: 7,
            before_order: 40
        }
        .command()
    );
    assert!(Typed::<Bookstore>::command_help().lines().count() >= 8);
}

#[test]
fn parse_command_explains_what_is_wrong() {
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    for bad in [
        "",
        "sell 1",
        "order 7 1 2",
        "order 7 x 2 100",
        "price 1",
        "book -1",
        "add-book 1 2 3",
    ] {
        let err = Typed::<Bookstore>::parse_command(&words(bad)).unwrap_err();
        assert!(!err.is_empty());
    }
    let err = Typed::<Bookstore>::parse_command(&words("order 7 x 2 100")).unwrap_err();
    assert!(err.contains("BOOK"), "{err}");
    let err = Typed::<Bookstore>::parse_command(&words("sell 1")).unwrap_err();
    assert!(
        err.contains("order CUSTOMER BOOK"),
        "the help is listed: {err}"
    );
}

#[test]
fn messages_describe_themselves_as_json() {
    let order = PlaceOrder {
        customer: 7,
        book: 1,
        quantity: 2,
        seen_price_cents: 1999,
    }
    .command();
    let header = MessageHeader {
        sequence: 5,
        kind: order.kind,
        version: 2,
        ..Default::default()
    };
    let json = Typed::<Bookstore>::describe_message(&Message {
        header,
        payload: &order.payload,
    });
    assert_eq!(json["type"], "place-order");
    assert_eq!(json["seen_price_cents"], 1999);
    let v1 = PlaceOrderV1 {
        customer: 7,
        book: 1,
        quantity: 2,
    }
    .command();
    let header = MessageHeader {
        version: 1,
        ..header
    };
    let json = Typed::<Bookstore>::describe_message(&Message {
        header,
        payload: &v1.payload,
    });
    assert_eq!(json["type"], "place-order");
    assert_eq!(json["seen_price_cents"], serde_json::Value::Null);
    let bad = Typed::<Bookstore>::describe_message(&Message {
        header,
        payload: &[1],
    });
    assert_eq!(bad["type"], "place-order");
    assert_eq!(bad["error"], "malformed");
}

#[test]
fn responses_and_state_describe_themselves_as_json() {
    let order = PlaceOrder {
        customer: 7,
        book: 1,
        quantity: 2,
        seen_price_cents: 1999,
    }
    .command();
    let mut shop = Shop::new();
    shop.add(1, 1999, 1);
    let answer = shop.order(7, 1, 2, 1999);
    let response = Response {
        header: ResponseHeader {
            sequence: 2,
            status: Status::Rejected,
            reason: RejectReason::OutOfStock.code(),
            kind: answer.kind,
            ..Default::default()
        },
        payload: &answer.payload,
    };
    let json = Typed::<Bookstore>::describe_response(order.kind, &response);
    assert_eq!(json["status"], "rejected");
    assert_eq!(json["request"], "place-order");
    assert_eq!(json["reason"], "out-of-stock");
    assert_eq!(json["reason_code"], RejectReason::OutOfStock.code());
    assert_eq!(json["response"]["type"], "available");
    assert_eq!(json["response"]["stock"], 1);
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        keel_services::json::RESPONSE_KEYS,
        "the one response shape"
    );
    let state = shop.store.describe_state();
    assert_eq!(
        (state["books"].as_u64(), state["orders"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(state["first_books"][0]["title"], "Book 1");
}
