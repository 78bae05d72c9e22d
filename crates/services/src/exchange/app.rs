//! The exchange (as `Typed<Exchange>`) as an [`App`]: shell commands, JSON descriptions, the canonical workload.

use super::events::{
    AccountView, BookDepth, RejectReason, Report, RESPONSE_ACCOUNT, RESPONSE_BOOK, RESPONSE_EVENTS,
};
use super::messages::*;
use super::workload::WORKLOAD;
use super::Exchange;
use crate::{json, App, Command, SearchField};
use keel::codec;
use keel::engine::{Message, Processor, Response};
use keel::Typed;
use serde_json::{json, Value};
use std::str::FromStr;

const HELP: &str = "\
add-instrument ID TICK [BAND]            add an instrument (tick and market band in price units, 1e-4)
deposit ACCOUNT AMOUNT                   credit cash (cash units, 1e-4); opens the account
withdraw ACCOUNT AMOUNT                  debit free cash
deposit-position ACCOUNT INSTR QTY       credit lots of an instrument
withdraw-position ACCOUNT INSTR QTY      debit free lots
place ACCOUNT INSTR buy|sell PRICE QTY [gtc|ioc|fok|market] [ORDER_ID]
                                         place an order (no ORDER_ID: the exchange assigns one)
place-v1 ACCOUNT INSTR buy|sell PRICE QTY
                                         place a GTC order with the legacy v1 message
cancel ACCOUNT ORDER                     cancel a resting order
move ACCOUNT ORDER PRICE                 re-price a resting order (loses time priority)
reduce ACCOUNT ORDER BY                  lower a resting order's quantity (keeps priority)
book INSTR [DEPTH]                       show the book (default depth 10)
balance ACCOUNT                          show an account's cash and holdings";

fn arg<T: FromStr>(words: &[String], i: usize, what: &str) -> Result<T, String> {
    let word = words
        .get(i)
        .ok_or_else(|| format!("missing {what}\n\n{HELP}"))?;
    word.parse()
        .map_err(|_| format!("bad {what}: {word:?}\n\n{HELP}"))
}

fn side(words: &[String], i: usize) -> Result<Side, String> {
    match words.get(i).map(String::as_str) {
        Some("buy" | "b") => Ok(Side::Buy),
        Some("sell" | "s") => Ok(Side::Sell),
        Some(other) => Err(format!(
            "side must be buy or sell, not \"{other}\"\n\n{HELP}"
        )),
        None => Err(format!("missing SIDE (buy or sell)\n\n{HELP}")),
    }
}

fn order_type(words: &[String], i: usize) -> Result<OrderType, String> {
    match words.get(i).map(String::as_str) {
        None | Some("gtc") => Ok(OrderType::Gtc),
        Some("ioc") => Ok(OrderType::Ioc),
        Some("fok") => Ok(OrderType::Fok),
        Some("market") => Ok(OrderType::Market),
        Some(other) => Err(format!(
            "order type must be gtc|ioc|fok|market, not {other:?}"
        )),
    }
}

fn parse_place(w: &[String]) -> Result<Request, String> {
    Ok(Request::Place(PlaceOrder {
        account: arg(w, 1, "ACCOUNT")?,
        instrument: arg(w, 2, "INSTR")?,
        side: side(w, 3)?,
        price: arg(w, 4, "PRICE")?,
        qty: arg(w, 5, "QTY")?,
        order_type: order_type(w, 6)?,
        order_id: if w.len() > 7 {
            arg(w, 7, "ORDER_ID")?
        } else {
            0
        },
    }))
}

fn parse_request(w: &[String]) -> Result<Request, String> {
    let cash = |w| -> Result<CashTransfer, String> {
        Ok(CashTransfer {
            account: arg(w, 1, "ACCOUNT")?,
            amount: arg(w, 2, "AMOUNT")?,
        })
    };
    let lots = |w| -> Result<PositionTransfer, String> {
        let (account, instrument) = (arg(w, 1, "ACCOUNT")?, arg(w, 2, "INSTR")?);
        Ok(PositionTransfer {
            account,
            instrument,
            qty: arg(w, 3, "QTY")?,
        })
    };
    let target =
        || -> Result<(u32, u64), String> { Ok((arg(w, 1, "ACCOUNT")?, arg(w, 2, "ORDER")?)) };
    Ok(match w.first().map(String::as_str).unwrap_or("") {
        "add-instrument" => {
            let (instrument, tick): (u32, u64) = (arg(w, 1, "ID")?, arg(w, 2, "TICK")?);
            let market_band = if w.len() > 3 {
                arg(w, 3, "BAND")?
            } else {
                tick * 10
            };
            Request::AddInstrument(AddInstrument {
                instrument,
                tick,
                market_band,
            })
        }
        "deposit" => Request::DepositCash(cash(w)?),
        "withdraw" => Request::WithdrawCash(cash(w)?),
        "deposit-position" => Request::DepositPosition(lots(w)?),
        "withdraw-position" => Request::WithdrawPosition(lots(w)?),
        "place" => parse_place(w)?,
        "cancel" => {
            let (account, order_id) = target()?;
            Request::Cancel(CancelOrder { account, order_id })
        }
        "move" => {
            let (account, order_id) = target()?;
            Request::Move(MoveOrder {
                account,
                order_id,
                price: arg(w, 3, "PRICE")?,
            })
        }
        "reduce" => {
            let (account, order_id) = target()?;
            Request::Reduce(ReduceOrder {
                account,
                order_id,
                by: arg(w, 3, "BY")?,
            })
        }
        "book" => {
            let depth = if w.len() > 2 { arg(w, 2, "DEPTH")? } else { 10 };
            Request::QueryBook(QueryBook {
                instrument: arg(w, 1, "INSTR")?,
                depth,
            })
        }
        "balance" => Request::QueryAccount(QueryAccount {
            account: arg(w, 1, "ACCOUNT")?,
        }),
        other => return Err(format!("unknown command {other:?}\n\n{HELP}")),
    })
}

fn parse_place_v1(w: &[String]) -> Result<Command, String> {
    Ok(place_order_v1(&PlaceOrderV1 {
        account: arg(w, 1, "ACCOUNT")?,
        instrument: arg(w, 2, "INSTR")?,
        side: side(w, 3)?,
        price: arg(w, 4, "PRICE")?,
        qty: arg(w, 5, "QTY")?,
    }))
}

fn describe_payload(response: &Response<'_>) -> Value {
    let payload = response.payload;
    let decoded = match response.header.kind {
        RESPONSE_EVENTS => codec::decode::<Report>(payload).map(|report| {
            let events: Vec<Value> = report
                .events
                .iter()
                .map(|e| json::tagged(json!(e)))
                .collect();
            json!({ "events": events, "omitted": report.omitted })
        }),
        RESPONSE_BOOK => codec::decode::<BookDepth>(payload).map(|v| json!(v)),
        RESPONSE_ACCOUNT => codec::decode::<AccountView>(payload).map(|v| json!(v)),
        _ => return json!({ "raw": payload }),
    };
    decoded.unwrap_or_else(|e| json!({ "undecodable": e.to_string(), "raw": payload }))
}

impl App for Typed<Exchange> {
    const NAME: &'static str = "exchange";

    fn validate(kind: u16, version: u16, payload: &[u8]) -> Result<(), keel::service::Invalid> {
        <Request as keel::Command>::validate(kind, version, payload)
    }

    fn parse_command(words: &[String]) -> Result<Command, String> {
        match words.first().map(String::as_str) {
            Some("place-v1") => parse_place_v1(words),
            _ => parse_request(words).map(|r| r.to_command()),
        }
    }

    fn command_help() -> &'static str {
        HELP
    }

    fn describe_message(message: &Message<'_>) -> Value {
        let h = &message.header;
        let kind = kind_name(h.kind);
        match Request::decode(h.kind, h.version, message.payload) {
            Ok(request) => json::with_type(kind, json::tagged(json!(request))),
            Err(reason) => {
                let error =
                    json!({ "error": json::kebab(reason.name()), "bytes": message.payload.len() });
                json::with_type(kind, error)
            }
        }
    }

    fn describe_response(request_kind: u16, response: &Response<'_>) -> Value {
        json::response(
            kind_name(request_kind),
            response,
            |code| RejectReason::from_u32(code).map(RejectReason::name),
            describe_payload,
        )
    }

    fn searchable_fields() -> &'static [SearchField] {
        const ACCOUNT_KEYS: &[&str] = &["account", "taker_account", "maker_account"];
        &[
            SearchField {
                name: "order",
                keys: &["order_id", "taker_order", "maker_order"],
            },
            SearchField {
                name: "customer",
                keys: ACCOUNT_KEYS,
            },
            SearchField {
                name: "account",
                keys: ACCOUNT_KEYS,
            },
            SearchField {
                name: "instrument",
                keys: &["instrument"],
            },
        ]
    }

    fn describe_state(&self) -> Value {
        let exchange = self.service();
        let instruments: Vec<Value> = exchange
            .instrument_ids()
            .map(|id| {
                let orders = exchange.orders(id).map_or(0, |o| o.len());
                json!({ "instrument": id, "top": exchange.top_of_book(id), "orders": orders })
            })
            .collect();
        json!({
            "limits": exchange.limits(),
            "instruments": instruments,
            "accounts": exchange.account_ids().count(),
            "open_orders": exchange.open_orders(),
            "total_cash": exchange.total_cash(),
            "state_hash": format!("{:#018x}", self.state_hash()),
        })
    }

    fn workload(seed: u64, i: u64) -> Command {
        WORKLOAD.request(seed, i).to_command()
    }

    fn setup(_seed: u64) -> Vec<Command> {
        WORKLOAD.setup().iter().map(Request::to_command).collect()
    }
}
