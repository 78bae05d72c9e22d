//! The [`App`] side of the bookstore: shell commands, JSON descriptions, and the canonical
//! workload (in [`super::workload`]).

use super::messages::{
    AddBook, CancelOrder, ChangePrice, Kind, Payload, PlaceOrder, QueryBook, QueryCustomerOrders,
    QueryOrder, Request, Restock,
};
use super::responses::{
    BookInfo, BookStatus, CustomerOrders, OrderCancelled, OrderInfo, OrderPlaced, RejectDetail,
    RejectReason, Rejected, ResponseKind,
};
use super::{workload, Bookstore};
use crate::{App, Command};
use keel::codec;
use keel::engine::{Message, Processor, Response, Status};
use keel::{Command as _, Rejection as _, Typed};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::str::FromStr;

const HELP: &str = "\
add-book ID PRICE_CENTS STOCK TITLE...    list a book (ids are 0..max_books)
price ID PRICE_CENTS                      change a book's price
restock ID QUANTITY                       add copies to a book's stock
order CUSTOMER BOOK QUANTITY SEEN_PRICE_CENTS
                                          place an order at the price you saw
cancel CUSTOMER ORDER                     cancel one of your orders (restores stock)
book ID                                   show a book
order-status ORDER                        show an order
orders CUSTOMER [BEFORE_ORDER]            a customer's orders, newest first, one page";

/// Parses word `index` of `words` as a number named `name`.
fn arg<T: FromStr>(words: &[String], index: usize, name: &str) -> Result<T, String> {
    let word = words.get(index).ok_or_else(|| format!("missing {name}"))?;
    word.parse()
        .map_err(|_| format!("{name}: {word:?} is not a valid number"))
}

fn expect_words(words: &[String], count: usize, usage: &str) -> Result<(), String> {
    if words.len() == count {
        Ok(())
    } else {
        Err(format!("usage: {usage}"))
    }
}

fn parse_add_book(words: &[String]) -> Result<Command, String> {
    if words.len() < 5 {
        return Err("usage: add-book ID PRICE_CENTS STOCK TITLE...".into());
    }
    Ok(AddBook {
        book: arg(words, 1, "ID")?,
        price_cents: arg(words, 2, "PRICE_CENTS")?,
        stock: arg(words, 3, "STOCK")?,
        title: words[4..].join(" "),
    }
    .command())
}

fn parse_order(words: &[String]) -> Result<Command, String> {
    expect_words(words, 5, "order CUSTOMER BOOK QUANTITY SEEN_PRICE_CENTS")?;
    Ok(PlaceOrder {
        customer: arg(words, 1, "CUSTOMER")?,
        book: arg(words, 2, "BOOK")?,
        quantity: arg(words, 3, "QUANTITY")?,
        seen_price_cents: arg(words, 4, "SEEN_PRICE_CENTS")?,
    }
    .command())
}

fn parse_orders(words: &[String]) -> Result<Command, String> {
    if !(2..=3).contains(&words.len()) {
        return Err("usage: orders CUSTOMER [BEFORE_ORDER]".into());
    }
    let before_order = if words.len() == 3 {
        arg(words, 2, "BEFORE_ORDER")?
    } else {
        0
    };
    Ok(QueryCustomerOrders {
        customer: arg(words, 1, "CUSTOMER")?,
        before_order,
    }
    .command())
}

/// Decodes `payload` as `T` and renders it, or renders the decode error.
fn json_of<T: DeserializeOwned + Serialize>(payload: &[u8]) -> Value {
    match codec::decode::<T>(payload) {
        Ok(value) => serde_json::to_value(value).unwrap_or(Value::Null),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

fn response_body(kind: u16, payload: &[u8]) -> Value {
    match ResponseKind::from_u16(kind) {
        Some(ResponseKind::None) => Value::Null,
        Some(ResponseKind::BookStatus) => json_of::<BookStatus>(payload),
        Some(ResponseKind::BookInfo) => json_of::<BookInfo<'static>>(payload),
        Some(ResponseKind::OrderPlaced) => json_of::<OrderPlaced>(payload),
        Some(ResponseKind::OrderCancelled) => json_of::<OrderCancelled>(payload),
        Some(ResponseKind::OrderInfo) => json_of::<OrderInfo>(payload),
        Some(ResponseKind::CustomerOrders) => json_of::<CustomerOrders>(payload),
        Some(ResponseKind::RejectDetail) => json_of::<RejectDetail>(payload),
        None => json!({ "unknown_response_kind": kind, "bytes": payload.len() }),
    }
}

impl App for Typed<Bookstore> {
    const NAME: &'static str = "bookstore";

    fn validate(kind: u16, version: u16, payload: &[u8]) -> Result<(), keel::service::Invalid> {
        Request::validate(kind, version, payload)
    }

    fn parse_command(words: &[String]) -> Result<Command, String> {
        let verb = words.first().map(String::as_str).unwrap_or("");
        match verb {
            "add-book" => parse_add_book(words),
            "price" => {
                expect_words(words, 3, "price ID PRICE_CENTS")?;
                let change = ChangePrice {
                    book: arg(words, 1, "ID")?,
                    price_cents: arg(words, 2, "PRICE_CENTS")?,
                };
                Ok(change.command())
            }
            "restock" => {
                expect_words(words, 3, "restock ID QUANTITY")?;
                Ok(Restock {
                    book: arg(words, 1, "ID")?,
                    quantity: arg(words, 2, "QUANTITY")?,
                }
                .command())
            }
            "order" => parse_order(words),
            "cancel" => {
                expect_words(words, 3, "cancel CUSTOMER ORDER")?;
                Ok(CancelOrder {
                    customer: arg(words, 1, "CUSTOMER")?,
                    order: arg(words, 2, "ORDER")?,
                }
                .command())
            }
            "book" => {
                expect_words(words, 2, "book ID")?;
                Ok(QueryBook {
                    book: arg(words, 1, "ID")?,
                }
                .command())
            }
            "order-status" => {
                expect_words(words, 2, "order-status ORDER")?;
                Ok(QueryOrder {
                    order: arg(words, 1, "ORDER")?,
                }
                .command())
            }
            "orders" => parse_orders(words),
            other => Err(format!(
                "unknown bookstore command {other:?}; commands:\n{HELP}"
            )),
        }
    }

    fn command_help() -> &'static str {
        HELP
    }

    fn describe_message(message: &Message<'_>) -> Value {
        let h = &message.header;
        let kind = Kind::from_u16(h.kind).map_or("unknown", Kind::name);
        let body = match Request::decode(h.kind, h.version, message.payload) {
            Ok(request) => serde_json::to_value(request).unwrap_or(Value::Null),
            Err(invalid) => {
                let reason = Rejected::refused(invalid).map_or("unknown", |r| r.reason.name());
                json!({ "error": reason, "bytes": message.payload.len() })
            }
        };
        json!({
            "sequence": h.sequence,
            "timestamp_ns": h.timestamp_ns,
            "session_id": h.session_id,
            "correlation_id": h.correlation_id,
            "kind": kind,
            "version": h.version,
            "message": body,
        })
    }

    fn describe_response(request_kind: u16, response: &Response<'_>) -> Value {
        let h = &response.header;
        let request = Kind::from_u16(request_kind).map_or("unknown", Kind::name);
        let (status, reason, body) = match h.status {
            Status::Accepted => (
                "accepted",
                Value::Null,
                response_body(h.kind, response.payload),
            ),
            Status::Rejected => {
                let reason = RejectReason::from_u32(h.reason).map_or("unknown", RejectReason::name);
                (
                    "rejected",
                    json!(reason),
                    response_body(h.kind, response.payload),
                )
            }
            Status::Failed => (
                "failed",
                Value::Null,
                json!(String::from_utf8_lossy(response.payload)),
            ),
        };
        json!({
            "sequence": h.sequence,
            "correlation_id": h.correlation_id,
            "request": request,
            "status": status,
            "reason": reason,
            "reason_code": h.reason,
            "response": body,
        })
    }

    fn describe_state(&self) -> Value {
        let store = self.service();
        let books: Vec<Value> = (0..store.state.books.len() as u32)
            .filter_map(|id| store.book(id))
            .take(50)
            .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
            .collect();
        json!({
            "app": Self::NAME,
            "schema_version": self.schema_version(),
            "state_hash": format!("{:#018x}", self.state_hash()),
            "books": store.book_count(),
            "orders": store.order_count(),
            "open_orders": store.open_order_count(),
            "customers": store.customer_count(),
            "stock": store.state.books.iter().flatten().map(|b| b.stock).sum::<u64>(),
            "limits": serde_json::to_value(store.limits()).unwrap_or(Value::Null),
            "first_books": books,
        })
    }

    fn workload(seed: u64, i: u64) -> Command {
        workload::message(seed, i)
    }

    fn setup(seed: u64) -> Vec<Command> {
        workload::setup(seed)
    }
}
