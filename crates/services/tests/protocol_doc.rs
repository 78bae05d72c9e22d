//! `docs/PROTOCOL.md`'s application sections against the code, so the document cannot drift.
//!
//! Every ```` ```keel-example ```` block in the document is one message of a service: its kind,
//! version, request payload (the Rust value and its hex), and the answer (status, reason,
//! response kind, value and hex). This test checks, for each block:
//! - the hex is exactly what `keel::codec` encodes for the value built here, and the value's
//!   `Debug` text is the one written in the document;
//! - replaying the blocks' request bytes in document order into a fresh service gives exactly
//!   the documented status, reason, response kind and response bytes;
//! - every kind and version the services decode has a block, every response kind is shown,
//!   and the reject-reason and limit tables list exactly the codes, names and defaults the
//!   code has.
//!
//! After a deliberate change, `cargo test --test protocol_doc -- --ignored --nocapture` prints
//! the blocks as the code now encodes them.

use keel::codec;
use keel::engine::{Message, MessageHeader};
use keel::Typed;
use keel::{Outcome, Output, Processor};
use keel_services::bookstore::{
    self, AddBook, BookInfo, BookStatus, Bookstore, BookstoreLimits, CancelOrder, ChangePrice,
    CustomerOrders, Kind, OrderCancelled, OrderInfo, OrderPlaced, OrderStatus, OrderSummary,
    Payload, PlaceOrder, PlaceOrderV1, QueryBook, QueryCustomerOrders, QueryOrder, RejectDetail,
    ResponseKind, Restock,
};
use keel_services::exchange::{
    self as ex, AccountView, BookDepth, CancelReason, DepthLevel, Event, Exchange, ExchangeLimits,
    Holding, OrderType, Report, Side, TopOfBook,
};
use keel_services::Command;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Debug;

const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

/// The engine's default `max_response_bytes`.
const RESPONSE_BYTES: usize = 4096;

/// A message's `timestamp_ns` in the replay: a fixed instant plus its sequence.
const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

/// One example as the code builds it.
struct Expected {
    name: &'static str,
    command: Command,
    request: String,
    /// 0 when accepted.
    reason: u32,
    response_kind: u16,
    /// `(Debug text, encoding)`; `None`: no payload.
    response: Option<(String, Vec<u8>)>,
}

fn expected<Q: Debug, R: Serialize + Debug>(
    name: &'static str,
    command: Command,
    request: &Q,
    reason: u32,
    response_kind: u16,
    response: Option<&R>,
) -> Expected {
    let response = response.map(|r| {
        let mut bytes = Vec::new();
        codec::encode_to_vec(r, &mut bytes).unwrap();
        (format!("{r:?}"), bytes)
    });
    Expected {
        name,
        command,
        request: format!("{request:?}"),
        reason,
        response_kind,
        response,
    }
}

/// A request of the bookstore (encoded at its own kind and version).
fn bs<Q: Payload + Debug, R: Serialize + Debug>(
    name: &'static str,
    request: Q,
    reason: Option<bookstore::RejectReason>,
    kind: ResponseKind,
    response: Option<&R>,
) -> Expected {
    let reason = reason.map_or(0, |r| r.code());
    expected(
        name,
        request.command(),
        &request,
        reason,
        kind.number(),
        response,
    )
}

const NO_PAYLOAD: Option<&()> = None;

/// The bookstore's examples, in document (and replay) order.
#[allow(clippy::too_many_lines)] // a table of example values, not control flow
fn bookstore_examples() -> Vec<Expected> {
    use bookstore::RejectReason as R;
    let book = |price_cents, stock| BookStatus {
        book: 1,
        price_cents,
        stock,
    };
    let order = PlaceOrder {
        customer: 7,
        book: 1,
        quantity: 2,
        seen_price_cents: 2499,
    };
    let placed = |order, quantity: u32, remaining_stock| OrderPlaced {
        order,
        book: 1,
        quantity,
        price_cents: 2499,
        total_cents: 2499 * u64::from(quantity),
        remaining_stock,
    };
    let add = AddBook {
        book: 1,
        price_cents: 1999,
        stock: 10,
        title: "Dune".into(),
    };
    vec![
        bs(
            "add-book",
            add,
            None,
            ResponseKind::BookStatus,
            Some(&book(1999, 10)),
        ),
        bs(
            "change-price",
            ChangePrice {
                book: 1,
                price_cents: 2499,
            },
            None,
            ResponseKind::BookStatus,
            Some(&book(2499, 10)),
        ),
        bs(
            "restock",
            Restock {
                book: 1,
                quantity: 5,
            },
            None,
            ResponseKind::BookStatus,
            Some(&book(2499, 15)),
        ),
        bs(
            "place-order",
            order,
            None,
            ResponseKind::OrderPlaced,
            Some(&placed(1, 2, 13)),
        ),
        bs(
            "place-order-v1",
            PlaceOrderV1 {
                customer: 8,
                book: 1,
                quantity: 1,
            },
            None,
            ResponseKind::OrderPlaced,
            Some(&placed(2, 1, 12)),
        ),
        bs(
            "place-order-rejected-price-changed",
            PlaceOrder {
                seen_price_cents: 1999,
                ..order
            },
            Some(R::PriceChanged),
            ResponseKind::RejectDetail,
            Some(&RejectDetail::CurrentPrice {
                book: 1,
                price_cents: 2499,
            }),
        ),
        bs(
            "place-order-rejected-out-of-stock",
            PlaceOrder {
                quantity: 20,
                ..order
            },
            Some(R::OutOfStock),
            ResponseKind::RejectDetail,
            Some(&RejectDetail::Available { book: 1, stock: 12 }),
        ),
        bs(
            "place-order-rejected-limit",
            PlaceOrder {
                quantity: 5000,
                ..order
            },
            Some(R::InvalidQuantity),
            ResponseKind::RejectDetail,
            Some(&RejectDetail::Limit { limit: 1000 }),
        ),
        bs(
            "cancel-order",
            CancelOrder {
                customer: 7,
                order: 1,
            },
            None,
            ResponseKind::OrderCancelled,
            Some(&OrderCancelled {
                order: 1,
                book: 1,
                quantity: 2,
                stock: 14,
            }),
        ),
        bs(
            "query-book",
            QueryBook { book: 1 },
            None,
            ResponseKind::BookInfo,
            Some(&BookInfo {
                book: 1,
                price_cents: 2499,
                stock: 14,
                title: "Dune".into(),
            }),
        ),
        bs(
            "query-book-rejected",
            QueryBook { book: 9 },
            Some(R::UnknownBook),
            ResponseKind::None,
            NO_PAYLOAD,
        ),
        bs(
            "query-order",
            QueryOrder { order: 1 },
            None,
            ResponseKind::OrderInfo,
            Some(&OrderInfo {
                order: 1,
                customer: 7,
                book: 1,
                quantity: 2,
                price_cents: 2499,
                placed_ns: EPOCH_NS + 4,
                cancelled_ns: EPOCH_NS + 9,
                status: OrderStatus::Cancelled,
            }),
        ),
        bs(
            "query-customer-orders",
            QueryCustomerOrders {
                customer: 7,
                before_order: 0,
            },
            None,
            ResponseKind::CustomerOrders,
            Some(&CustomerOrders {
                customer: 7,
                total: 1,
                next_before: 0,
                orders: vec![OrderSummary {
                    order: 1,
                    book: 1,
                    quantity: 2,
                    price_cents: 2499,
                    status: OrderStatus::Cancelled,
                }],
            }),
        ),
    ]
}

/// A request of the exchange at its kind's current version, answered with events.
fn xr(name: &'static str, request: ex::Request, reason: u32, events: Vec<Event>) -> Expected {
    let report = Report { events, omitted: 0 };
    let text = format!("{request:?}");
    // The document shows the payload struct, not the `Request` variant around it.
    let inner = text[text.find('(').unwrap() + 1..text.len() - 1].to_string();
    let mut e = expected(
        name,
        request.to_command(),
        &(),
        reason,
        ex::RESPONSE_EVENTS,
        Some(&report),
    );
    e.request = inner;
    e
}

/// The exchange's examples, in document (and replay) order.
#[allow(clippy::too_many_lines)] // a table of example values, not control flow
fn exchange_examples() -> Vec<Expected> {
    use ex::Request as Q;
    let (instrument, seller, buyer) = (1, 2, 1);
    let assigned = ex::ASSIGNED_ORDER_ID_BIT | 5;
    let top = |ask_price, ask_qty| {
        Event::Book(TopOfBook {
            instrument,
            ask_price,
            ask_qty,
            ..TopOfBook::default()
        })
    };
    let sell = ex::PlaceOrder {
        order_id: 42,
        account: seller,
        instrument,
        side: Side::Sell,
        order_type: OrderType::Gtc,
        price: 12_300,
        qty: 10,
    };
    let buy_v1 = ex::PlaceOrderV1 {
        account: buyer,
        instrument,
        side: Side::Buy,
        price: 12_300,
        qty: 4,
    };
    let mut place_v1 = xr("place-order-v1", Q::Place(buy_v1.into()), 0, vec![]);
    place_v1.command = ex::place_order_v1(&buy_v1);
    place_v1.request = format!("{buy_v1:?}");
    let report = Report {
        events: vec![
            Event::Accepted {
                order_id: assigned,
                account: buyer,
                instrument,
                side: Side::Buy,
                order_type: OrderType::Gtc,
                price: 12_300,
                qty: 4,
            },
            Event::Trade {
                instrument,
                price: 12_300,
                qty: 4,
                taker_side: Side::Buy,
                taker_order: assigned,
                taker_account: buyer,
                taker_remaining: 0,
                maker_order: 42,
                maker_account: seller,
                maker_remaining: 6,
            },
            top(12_300, 6),
        ],
        omitted: 0,
    };
    let mut bytes = Vec::new();
    codec::encode_to_vec(&report, &mut bytes).unwrap();
    place_v1.response = Some((format!("{report:?}"), bytes));

    let query_book = ex::QueryBook {
        instrument,
        depth: 10,
    };
    let depth = BookDepth {
        instrument,
        bids: vec![],
        asks: vec![DepthLevel {
            price: 12_300,
            qty: 6,
            orders: 1,
        }],
    };
    let query_account = ex::QueryAccount { account: buyer };
    let view = AccountView {
        account: buyer,
        cash: 950_800,
        reserved: 0,
        holdings: vec![Holding {
            instrument,
            qty: 4,
            reserved: 0,
        }],
        omitted: 0,
    };
    let bad_price = ex::PlaceOrder {
        order_id: 7,
        account: buyer,
        side: Side::Buy,
        price: 12_350,
        qty: 1,
        ..sell
    };
    vec![
        xr(
            "add-instrument",
            Q::AddInstrument(ex::AddInstrument {
                instrument,
                tick: 100,
                market_band: 10_000,
            }),
            0,
            vec![Event::InstrumentAdded {
                instrument,
                tick: 100,
                market_band: 10_000,
            }],
        ),
        xr(
            "deposit-cash",
            Q::DepositCash(ex::CashTransfer {
                account: buyer,
                amount: 1_000_000,
            }),
            0,
            vec![Event::Cash {
                account: buyer,
                cash: 1_000_000,
                reserved: 0,
            }],
        ),
        xr(
            "deposit-position",
            Q::DepositPosition(ex::PositionTransfer {
                account: seller,
                instrument,
                qty: 50,
            }),
            0,
            vec![Event::Position {
                account: seller,
                instrument,
                qty: 50,
                reserved: 0,
            }],
        ),
        xr(
            "place-order",
            Q::Place(sell),
            0,
            vec![
                Event::Accepted {
                    order_id: 42,
                    account: seller,
                    instrument,
                    side: Side::Sell,
                    order_type: OrderType::Gtc,
                    price: 12_300,
                    qty: 10,
                },
                top(12_300, 10),
            ],
        ),
        place_v1,
        expected(
            "query-book",
            Q::QueryBook(query_book).to_command(),
            &query_book,
            0,
            ex::RESPONSE_BOOK,
            Some(&depth),
        ),
        expected(
            "query-account",
            Q::QueryAccount(query_account).to_command(),
            &query_account,
            0,
            ex::RESPONSE_ACCOUNT,
            Some(&view),
        ),
        xr(
            "move-order",
            Q::Move(ex::MoveOrder {
                account: seller,
                order_id: 42,
                price: 12_400,
            }),
            0,
            vec![
                Event::Moved {
                    order_id: 42,
                    account: seller,
                    instrument,
                    from_price: 12_300,
                    to_price: 12_400,
                    remaining: 6,
                },
                top(12_400, 6),
            ],
        ),
        xr(
            "reduce-order",
            Q::Reduce(ex::ReduceOrder {
                account: seller,
                order_id: 42,
                by: 2,
            }),
            0,
            vec![
                Event::Reduced {
                    order_id: 42,
                    account: seller,
                    instrument,
                    by: 2,
                    remaining: 4,
                },
                top(12_400, 4),
            ],
        ),
        xr(
            "cancel-order",
            Q::Cancel(ex::CancelOrder {
                account: seller,
                order_id: 42,
            }),
            0,
            vec![
                Event::Cancelled {
                    order_id: 42,
                    account: seller,
                    instrument,
                    side: Side::Sell,
                    price: 12_400,
                    qty: 4,
                    reason: CancelReason::Requested,
                },
                top(0, 0),
            ],
        ),
        xr(
            "withdraw-cash",
            Q::WithdrawCash(ex::CashTransfer {
                account: buyer,
                amount: 800,
            }),
            0,
            vec![Event::Cash {
                account: buyer,
                cash: 950_000,
                reserved: 0,
            }],
        ),
        xr(
            "withdraw-position",
            Q::WithdrawPosition(ex::PositionTransfer {
                account: buyer,
                instrument,
                qty: 1,
            }),
            0,
            vec![Event::Position {
                account: buyer,
                instrument,
                qty: 3,
                reserved: 0,
            }],
        ),
        xr(
            "place-order-rejected",
            Q::Place(bad_price),
            ex::RejectReason::InvalidPrice as u32,
            vec![Event::Rejected {
                order_id: 7,
                reason: ex::RejectReason::InvalidPrice,
            }],
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The document's side.

/// One ```` ```keel-example ```` block as written.
#[derive(Debug, Default)]
struct Block {
    example: String,
    kind: u16,
    version: u16,
    request: String,
    request_hex: Vec<u8>,
    status: String,
    reason: u32,
    reason_name: String,
    response_kind: u16,
    response: String,
    response_hex: Vec<u8>,
}

fn hex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {text}");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// `key: value` lines; a line starting with a space continues the previous value.
fn fields(body: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if line.starts_with(' ') {
            let last = out.last_mut().expect("a continuation follows a field");
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else if let Some((key, value)) = line.split_once(':') {
            out.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

fn parse_block(body: &str) -> Block {
    let mut b = Block::default();
    for (key, value) in fields(body) {
        match key.as_str() {
            "example" => b.example = value,
            "kind" => b.kind = value.parse().unwrap(),
            "version" => b.version = value.parse().unwrap(),
            "request" => b.request = value,
            "request hex" => b.request_hex = hex(&value),
            "status" => b.status = value,
            "reason" => {
                let mut words = value.split_whitespace();
                b.reason = words.next().unwrap().parse().unwrap();
                b.reason_name = words.next().unwrap_or("").to_string();
            }
            "response kind" => b.response_kind = value.parse().unwrap(),
            "response" => b.response = value,
            "response hex" => b.response_hex = hex(&value),
            other => panic!("unknown field {other:?} in a keel-example block"),
        }
    }
    b
}

/// The blocks whose example name starts with `service.`, in document order.
fn blocks(service: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut rest = DOC;
    while let Some(start) = rest.find("```keel-example\n") {
        let body = &rest[start + "```keel-example\n".len()..];
        let end = body.find("```").expect("block closed");
        let block = parse_block(&body[..end]);
        if let Some(name) = block.example.strip_prefix(&format!("{service}.")) {
            out.push(Block {
                example: name.to_string(),
                ..block
            });
        }
        rest = &body[end + 3..];
    }
    out
}

/// The text of the document from the heading `heading` to the next heading of its level.
fn section(heading: &str) -> &'static str {
    let start = DOC
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let body = &DOC[start + heading.len() + 2..];
    let level = heading.split(' ').next().unwrap();
    let end = body.find(&format!("\n{level} ")).unwrap_or(body.len());
    &body[..end]
}

/// Table rows of `text` as cells, trimmed, backticks removed.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|-") && !l.starts_with("|:"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The checks.

fn check_blocks(service: &str, expected: &[Expected], blocks: &[Block]) {
    let names: Vec<&str> = blocks.iter().map(|b| b.example.as_str()).collect();
    let wanted: Vec<&str> = expected.iter().map(|e| e.name).collect();
    assert_eq!(
        names, wanted,
        "{service}: the document's examples, in order"
    );
    for (e, b) in expected.iter().zip(blocks) {
        let at = format!("{service}.{}", e.name);
        assert_eq!(
            (b.kind, b.version),
            (e.command.kind, e.command.version),
            "{at}"
        );
        assert_eq!(b.request, e.request, "{at}: request value");
        assert_eq!(b.request_hex, e.command.payload, "{at}: request hex");
        let status = if e.reason == 0 {
            "accepted"
        } else {
            "rejected"
        };
        assert_eq!(b.status, status, "{at}: status");
        assert_eq!(b.reason, e.reason, "{at}: reason");
        assert_eq!(b.response_kind, e.response_kind, "{at}: response kind");
        match &e.response {
            Some((text, bytes)) => {
                assert_eq!(&b.response, text, "{at}: response value");
                assert_eq!(&b.response_hex, bytes, "{at}: response hex");
            }
            None => {
                assert_eq!(b.response, "(none)", "{at}: response value");
                assert!(b.response_hex.is_empty(), "{at}: response hex");
            }
        }
    }
}

/// Feeds the blocks' request bytes, in order, to a fresh `processor` as the engine would
/// (sequence 1, 2, …) and checks each documented answer.
fn check_replay<P: Processor>(mut processor: P, service: &str, blocks: &[Block]) {
    let mut buf = vec![0u8; RESPONSE_BYTES];
    for (i, b) in blocks.iter().enumerate() {
        let sequence = i as u64 + 1;
        let header = MessageHeader {
            sequence,
            timestamp_ns: EPOCH_NS + sequence,
            kind: b.kind,
            version: b.version,
            ..MessageHeader::default()
        };
        let message = Message {
            header,
            payload: &b.request_hex,
        };
        let mut out = Output::new(&mut buf);
        let outcome = processor.apply(&message, &mut out);
        let at = format!("{service}.{}", b.example);
        let wanted = match b.reason {
            0 => Outcome::Accepted,
            reason => Outcome::Rejected(reason),
        };
        assert_eq!(outcome, wanted, "{at}: outcome");
        assert_eq!(out.kind(), b.response_kind, "{at}: response kind");
        assert_eq!(out.as_bytes(), &b.response_hex[..], "{at}: response bytes");
    }
}

/// Every `(kind, version)` in `declared` has an example.
fn check_coverage(service: &str, declared: &BTreeSet<(u16, u16)>, blocks: &[Block]) {
    let shown: BTreeSet<(u16, u16)> = blocks.iter().map(|b| (b.kind, b.version)).collect();
    let missing: Vec<_> = declared.difference(&shown).collect();
    assert!(missing.is_empty(), "{service}: no example of {missing:?}");
    let unknown: Vec<_> = shown.difference(declared).collect();
    assert!(
        unknown.is_empty(),
        "{service}: examples of undeclared {unknown:?}"
    );
}

/// The table under `heading` lists exactly `codes` as `| number | name | … |` rows.
fn check_reason_table(heading: &str, codes: &[(u32, &str)]) {
    let listed: Vec<(u32, String)> = rows(section(heading))
        .into_iter()
        .filter_map(|r| Some((r.first()?.parse().ok()?, r.get(1)?.clone())))
        .collect();
    let wanted: Vec<(u32, String)> = codes.iter().map(|(n, s)| (*n, s.to_string())).collect();
    assert_eq!(listed, wanted, "{heading}");
}

/// The table under `heading` gives every field of `limits` with its default value.
fn check_limits_table(heading: &str, limits: serde_json::Value) {
    let listed: BTreeSet<(String, String)> = rows(section(heading))
        .into_iter()
        .filter(|r| r.len() > 1 && r[1].replace('_', "").parse::<u64>().is_ok())
        .map(|r| (r[0].clone(), r[1].replace('_', "")))
        .collect();
    let wanted: BTreeSet<(String, String)> = limits
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(listed, wanted, "{heading}");
}

#[test]
fn bookstore_examples_match_the_code() {
    let blocks = blocks("bookstore");
    check_blocks("bookstore", &bookstore_examples(), &blocks);
    check_replay(Typed::<Bookstore>::default(), "bookstore", &blocks);
    for b in &blocks {
        if b.reason != 0 {
            let reason = bookstore::RejectReason::from_u32(b.reason).unwrap();
            assert_eq!(b.reason_name, reason.name(), "bookstore.{}", b.example);
        }
    }
    let declared = Kind::ALL
        .iter()
        .flat_map(|k| (1..=k.current_version()).map(|v| (k.number(), v)))
        .collect();
    check_coverage("bookstore", &declared, &blocks);
    let shown: BTreeSet<u16> = blocks.iter().map(|b| b.response_kind).collect();
    let kinds: BTreeSet<u16> = (0..)
        .map_while(ResponseKind::from_u16)
        .map(ResponseKind::number)
        .collect();
    assert_eq!(
        shown, kinds,
        "bookstore: every response kind has an example"
    );
}

#[test]
fn exchange_examples_match_the_code() {
    let blocks = blocks("exchange");
    check_blocks("exchange", &exchange_examples(), &blocks);
    check_replay(Typed::new(Exchange::default()), "exchange", &blocks);
    for b in &blocks {
        if b.reason != 0 {
            let reason = ex::RejectReason::from_u32(b.reason).unwrap();
            assert_eq!(b.reason_name, reason.name(), "exchange.{}", b.example);
        }
    }
    let declared = (0..0xFF00)
        .filter_map(|k| Some((k, ex::current_version(k)?)))
        .flat_map(|(k, current)| (1..=current).map(move |v| (k, v)))
        .collect();
    check_coverage("exchange", &declared, &blocks);
    let shown: BTreeSet<u16> = blocks.iter().map(|b| b.response_kind).collect();
    let kinds = BTreeSet::from([ex::RESPONSE_EVENTS, ex::RESPONSE_BOOK, ex::RESPONSE_ACCOUNT]);
    assert_eq!(shown, kinds, "exchange: every response kind has an example");
}

#[test]
fn reason_and_limit_tables_match_the_code() {
    let bookstore: Vec<(u32, &str)> = bookstore::RejectReason::ALL
        .iter()
        .map(|r| (r.code(), r.name()))
        .collect();
    check_reason_table("#### bookstore reject reasons", &bookstore);
    let exchange: Vec<(u32, &str)> = ex::RejectReason::ALL
        .iter()
        .map(|r| (*r as u32, r.name()))
        .collect();
    check_reason_table("#### exchange reject reasons", &exchange);
    let limits = serde_json::to_value(BookstoreLimits::default()).unwrap();
    check_limits_table("#### bookstore limits", limits);
    let limits = serde_json::to_value(ExchangeLimits::default()).unwrap();
    check_limits_table("#### exchange limits", limits);
}

/// The codec rules the document states, on values of the shapes it names.
#[test]
fn stated_codec_rules_hold() {
    let enc = |v: &dyn erased::Enc| v.bytes();
    assert_eq!(enc(&0x0102u16), hex("02 01"));
    assert_eq!(enc(&true), hex("01"));
    assert_eq!(enc(&"é".to_string()), hex("02 00 00 00 00 00 00 00 c3 a9"));
    assert_eq!(enc(&vec![7u32]), hex("01 00 00 00 00 00 00 00 07 00 00 00"));
    assert_eq!(enc(&Some(5u64)), hex("01 05 00 00 00 00 00 00 00"));
    assert_eq!(enc(&None::<u64>), hex("00"));
    assert_eq!(enc(&Side::Sell), hex("01 00 00 00"));
    assert_eq!(enc(&OrderStatus::Cancelled), hex("01 00 00 00"));
    assert_eq!(
        enc(&RejectDetail::Limit { limit: 9 }),
        hex("02 00 00 00 09 00 00 00 00 00 00 00")
    );
    // The exchange's reject reason is its number, not a variant index.
    assert_eq!(enc(&ex::RejectReason::InvalidPrice), hex("1e 00 00 00"));
}

mod erased {
    /// A value the codec can encode, as a trait object.
    pub trait Enc {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Enc for T {
        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            keel::codec::encode_to_vec(self, &mut out).unwrap();
            out
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regeneration.

fn hex_lines(bytes: &[u8]) -> String {
    let lines: Vec<String> = bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    lines.join("\n  ")
}

fn print_block(service: &str, e: &Expected, reason_name: Option<&str>) {
    println!("```keel-example");
    println!("example: {service}.{}", e.name);
    println!("kind: {}", e.command.kind);
    println!("version: {}", e.command.version);
    println!("request: {}", e.request);
    println!("request hex: {}", hex_lines(&e.command.payload));
    match reason_name {
        None => println!("status: accepted\nreason: 0"),
        Some(name) => println!("status: rejected\nreason: {} {name}", e.reason),
    }
    println!("response kind: {}", e.response_kind);
    match &e.response {
        Some((text, bytes)) => {
            println!("response: {text}");
            println!("response hex: {}", hex_lines(bytes));
        }
        None => println!("response: (none)\nresponse hex:"),
    }
    println!("```\n");
}

#[test]
#[ignore = "prints the document's example blocks; run by hand after a deliberate change"]
fn print_examples() {
    for e in bookstore_examples() {
        let name = (e.reason != 0).then(|| bookstore::RejectReason::from_u32(e.reason).unwrap());
        print_block("bookstore", &e, name.map(|r| r.name()));
    }
    for e in exchange_examples() {
        let name = (e.reason != 0).then(|| ex::RejectReason::from_u32(e.reason).unwrap());
        print_block("exchange", &e, name.map(|r| r.name()));
    }
}
