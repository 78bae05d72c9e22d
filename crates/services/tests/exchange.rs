//! Unit tests of the exchange through `Processor::apply`: order types, priority, risk and
//! reservations, limits, upcasting, snapshots, responses, and the `App` surface.

mod common_exchange;

use common_exchange::*;
use keel::engine::{MessageHeader, Response, ResponseHeader, Status};
use keel::Typed;
use keel::{Message, Outcome, Processor};
use keel_services::exchange::*;
use keel_services::App;
use serde_json::json;

fn big() -> ExchangeLimits {
    ExchangeLimits::default()
}

#[test]
fn a_gtc_order_rests_then_trades_at_the_makers_price() {
    let mut h = funded(big());
    let events = h.ok(&sell(1, 1, 1000, 5));
    assert!(matches!(
        events[0],
        Event::Accepted {
            order_id: 1,
            price: 1000,
            qty: 5,
            ..
        }
    ));
    let top = TopOfBook {
        instrument: 0,
        bid_price: 0,
        bid_qty: 0,
        ask_price: 1000,
        ask_qty: 5,
    };
    assert_eq!(events[1], Event::Book(top));
    let events = h.ok(&buy(2, 2, 1020, 3));
    assert_eq!(trades(&events), vec![(1, 2, 1000, 3)]);
    match events[1] {
        Event::Trade {
            taker_side,
            taker_account,
            maker_account,
            taker_remaining,
            maker_remaining,
            ..
        } => {
            assert_eq!(
                (taker_side, taker_account, maker_account),
                (Side::Buy, 2, 1)
            );
            assert_eq!((taker_remaining, maker_remaining), (0, 2));
        }
        ref other => panic!("expected a trade, got {other:?}"),
    }
    assert_eq!(balance(&h, 1), (1_003_000, 0, 997, 2));
    // The buyer paid the maker's price; the rest of its reservation at 1020 went back.
    assert_eq!(balance(&h, 2), (997_000, 0, 1003, 0));
    h.exchange.service().check_invariants().unwrap();
}

#[test]
fn better_prices_trade_first_then_older_orders() {
    let mut h = funded(big());
    h.ok(&sell(1, 1, 1010, 2));
    h.ok(&sell(2, 2, 1000, 2));
    h.ok(&sell(3, 3, 1000, 2));
    h.ok(&sell(4, 4, 990, 2));
    let events = h.ok(&buy(5, 1, 1010, 7));
    assert_eq!(
        trades(&events),
        vec![
            (4, 5, 990, 2),
            (2, 5, 1000, 2),
            (3, 5, 1000, 2),
            (1, 5, 1010, 1)
        ]
    );
}

#[test]
fn ioc_fills_what_it_can_and_cancels_the_rest() {
    let mut h = funded(big());
    h.ok(&sell(1, 1, 1000, 4));
    h.ok(&sell(2, 1, 1050, 4));
    let events = h.ok(&order(3, 2, Side::Buy, OrderType::Ioc, 1000, 10));
    assert_eq!(trades(&events), vec![(1, 3, 1000, 4)]);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Cancelled {
            order_id: 3,
            qty: 6,
            reason: CancelReason::Unfilled,
            ..
        }
    )));
    assert_eq!(h.exchange.service().open_orders(), 1);
    assert_eq!(
        balance(&h, 2),
        (996_000, 0, 1004, 0),
        "unfilled part released"
    );
    // With nothing to match it is accepted and cancelled whole.
    let events = h.ok(&order(4, 2, Side::Buy, OrderType::Ioc, 900, 1));
    assert!(matches!(
        events[..],
        [Event::Accepted { .. }, Event::Cancelled { qty: 1, .. }]
    ));
}

#[test]
fn fok_fills_completely_or_is_rejected_untouched() {
    let mut h = funded(big());
    h.ok(&sell(1, 1, 1000, 4));
    h.ok(&sell(2, 1, 1010, 4));
    h.ok(&sell(3, 1, 1030, 4));
    h.rejected(
        &order(4, 2, Side::Buy, OrderType::Fok, 1010, 9),
        RejectReason::FokUnfillable,
    );
    let events = h.ok(&order(5, 2, Side::Buy, OrderType::Fok, 1010, 8));
    assert_eq!(trades(&events), vec![(1, 5, 1000, 4), (2, 5, 1010, 4)]);
    assert!(!events.iter().any(|e| matches!(e, Event::Cancelled { .. })));
}

#[test]
fn market_orders_execute_within_the_band_and_need_liquidity() {
    let mut h = funded(big()); // band 50
    h.rejected(
        &order(1, 2, Side::Buy, OrderType::Market, 0, 5),
        RejectReason::NoLiquidity,
    );
    h.ok(&sell(2, 1, 1000, 2));
    h.ok(&sell(3, 1, 1050, 2));
    h.ok(&sell(4, 1, 1060, 2));
    let events = h.ok(&order(5, 2, Side::Buy, OrderType::Market, 0, 10));
    assert!(matches!(
        events[0],
        Event::Accepted {
            price: 1050,
            order_type: OrderType::Market,
            ..
        }
    ));
    assert_eq!(trades(&events), vec![(2, 5, 1000, 2), (3, 5, 1050, 2)]);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Cancelled {
            qty: 6,
            reason: CancelReason::Unfilled,
            ..
        }
    )));
    assert_eq!(balance(&h, 2), (1_000_000 - 4100, 0, 1004, 0));
    // A market buy reserves band limit × qty up front.
    h.ok(&deposit(9, 100));
    h.ok(&sell(6, 1, 1060, 2));
    h.rejected(
        &Request::Place(PlaceOrder {
            order_id: 7,
            account: 9,
            instrument: 0,
            side: Side::Buy,
            order_type: OrderType::Market,
            price: 0,
            qty: 1,
        }),
        RejectReason::InsufficientCash,
    );
    // Market sells reach down to best bid − band.
    h.ok(&buy(8, 3, 900, 1));
    h.ok(&buy(9, 3, 850, 1));
    h.ok(&buy(10, 3, 840, 1));
    let events = h.ok(&order(11, 4, Side::Sell, OrderType::Market, 0, 5));
    assert_eq!(trades(&events), vec![(8, 11, 900, 1), (9, 11, 850, 1)]);
}

#[test]
fn move_loses_time_priority_and_reduce_keeps_it() {
    let mut h = funded(big());
    h.ok(&buy(1, 1, 1000, 5));
    h.ok(&buy(2, 2, 1000, 5));
    h.ok(&buy(3, 3, 1000, 5));
    let events = h.ok(&reduce(1, 1, 2));
    assert!(matches!(
        events[0],
        Event::Reduced {
            order_id: 1,
            by: 2,
            remaining: 3,
            ..
        }
    ));
    let events = h.ok(&move_to(2, 2, 1000)); // same price: still to the back
    assert!(matches!(
        events[0],
        Event::Moved {
            from_price: 1000,
            to_price: 1000,
            remaining: 5,
            ..
        }
    ));
    assert_eq!(events.len(), 1, "top unchanged, no book event");
    let ids: Vec<u64> = h
        .exchange
        .service()
        .orders(0)
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(ids, vec![1, 3, 2]);
    let events = h.ok(&order(4, 4, Side::Sell, OrderType::Ioc, 1000, 9));
    assert_eq!(
        trades(&events),
        vec![(1, 4, 1000, 3), (3, 4, 1000, 5), (2, 4, 1000, 1)]
    );
}

#[test]
fn a_move_across_the_spread_trades_and_rests_the_remainder() {
    let mut h = funded(big());
    h.ok(&sell(1, 1, 1010, 3));
    h.ok(&buy(2, 2, 990, 5));
    let events = h.ok(&move_to(2, 2, 1020));
    assert!(matches!(
        events[0],
        Event::Moved {
            order_id: 2,
            from_price: 990,
            to_price: 1020,
            remaining: 5,
            ..
        }
    ));
    assert_eq!(trades(&events), vec![(1, 2, 1010, 3)]);
    let top = h.exchange.service().top_of_book(0).unwrap();
    assert_eq!((top.bid_price, top.bid_qty, top.ask_qty), (1020, 2, 0));
    // Reserved at the new price for what rests; paid the maker's price for what traded.
    assert_eq!(balance(&h, 2), (1_000_000 - 3030, 2040, 1003, 0));
    h.exchange.service().check_invariants().unwrap();
}

#[test]
fn reduce_by_the_whole_remainder_removes_the_order() {
    let mut h = funded(big());
    h.ok(&sell(1, 1, 1000, 4));
    h.rejected(&reduce(1, 1, 0), RejectReason::InvalidQuantity);
    let events = h.ok(&reduce(1, 1, 10));
    assert!(matches!(
        events[0],
        Event::Reduced {
            by: 4,
            remaining: 0,
            ..
        }
    ));
    assert_eq!(h.exchange.service().open_orders(), 0);
    assert_eq!(balance(&h, 1), (1_000_000, 0, 1000, 0));
    h.rejected(&reduce(1, 1, 1), RejectReason::UnknownOrder);
}

#[test]
fn only_the_owner_may_touch_an_order() {
    let mut h = funded(big());
    h.ok(&buy(1, 1, 1000, 4));
    h.rejected(&cancel(2, 1), RejectReason::NotOrderOwner);
    h.rejected(&move_to(2, 1, 990), RejectReason::NotOrderOwner);
    h.rejected(&reduce(2, 1, 1), RejectReason::NotOrderOwner);
    h.rejected(&cancel(1, 77), RejectReason::UnknownOrder);
    let events = h.ok(&cancel(1, 1));
    assert!(matches!(
        events[0],
        Event::Cancelled {
            order_id: 1,
            qty: 4,
            price: 1000,
            reason: CancelReason::Requested,
            ..
        }
    ));
    assert_eq!(balance(&h, 1), (1_000_000, 0, 1000, 0));
}

#[test]
fn risk_checks_use_free_balances() {
    let mut h = funded(big());
    h.ok(&buy(1, 1, 1000, 600)); // reserves 600_000 of 1_000_000
    h.rejected(&buy(2, 1, 1000, 401), RejectReason::InsufficientCash);
    h.ok(&buy(3, 1, 1000, 400));
    h.rejected(
        &Request::WithdrawCash(CashTransfer {
            account: 1,
            amount: 1,
        }),
        RejectReason::InsufficientCash,
    );
    h.ok(&sell(4, 2, 2000, 999));
    h.rejected(&sell(5, 2, 2000, 2), RejectReason::InsufficientPosition);
    h.rejected(
        &Request::WithdrawPosition(PositionTransfer {
            account: 2,
            instrument: 0,
            qty: 2,
        }),
        RejectReason::InsufficientPosition,
    );
    h.ok(&Request::WithdrawPosition(PositionTransfer {
        account: 2,
        instrument: 0,
        qty: 1,
    }));
    // A buy moved up must fit the extra reservation; moved down it frees cash.
    h.rejected(&move_to(1, 3, 1010), RejectReason::InsufficientCash);
    h.ok(&move_to(1, 3, 990));
    assert_eq!(balance(&h, 1).1, 600_000 + 396_000);
    h.ok(&Request::WithdrawCash(CashTransfer {
        account: 1,
        amount: 4_000,
    }));
    h.rejected(&buy(6, 5, 1000, 1), RejectReason::UnknownAccount);
    h.exchange.service().check_invariants().unwrap();
}

#[test]
fn reservations_are_released_by_fills_cancels_reduces_and_moves() {
    let mut h = funded(big());
    h.ok(&buy(1, 1, 1000, 10));
    h.ok(&sell(2, 2, 1100, 10));
    assert_eq!((balance(&h, 1).1, balance(&h, 2).3), (10_000, 10));
    h.ok(&reduce(1, 1, 4));
    h.ok(&reduce(2, 2, 4));
    assert_eq!((balance(&h, 1).1, balance(&h, 2).3), (6_000, 6));
    h.ok(&order(3, 3, Side::Sell, OrderType::Ioc, 1000, 2)); // fills 2 of the buy
    h.ok(&order(4, 4, Side::Buy, OrderType::Ioc, 1100, 2)); // fills 2 of the sell
    assert_eq!((balance(&h, 1).1, balance(&h, 2).3), (4_000, 4));
    h.ok(&move_to(1, 1, 900));
    assert_eq!(balance(&h, 1).1, 3_600);
    h.ok(&cancel(1, 1));
    h.ok(&cancel(2, 2));
    for account in 1..=4 {
        let (_, reserved, _, reserved_lots) = balance(&h, account);
        assert_eq!((reserved, reserved_lots), (0, 0));
    }
    assert_eq!(h.exchange.service().total_cash(), 4_000_000);
    h.exchange.service().check_invariants().unwrap();
}

#[test]
fn self_trades_leave_the_account_unchanged() {
    let mut h = funded(big());
    h.ok(&sell(1, 1, 1000, 5));
    let events = h.ok(&buy(2, 1, 1000, 5));
    assert_eq!(trades(&events), vec![(1, 2, 1000, 5)]);
    assert_eq!(balance(&h, 1), (1_000_000, 0, 1000, 0));
}

#[test]
fn limits_are_rejections_not_panics() {
    let limits = ExchangeLimits {
        max_instruments: 2,
        max_accounts: 8,
        max_open_orders: 3,
        max_price_levels: 2,
        max_price: 5_000,
        max_order_qty: 100,
    };
    let mut h = funded(limits);
    h.rejected(&add_instrument(2, 1, 1), RejectReason::InstrumentLimit);
    h.rejected(&add_instrument(0, 1, 1), RejectReason::InstrumentExists);
    h.rejected(&add_instrument(1, 0, 1), RejectReason::InvalidTick);
    h.rejected(&deposit(8, 1), RejectReason::AccountLimit);
    h.rejected(&deposit(1, 0), RejectReason::InvalidAmount);
    h.rejected(&deposit(1, u64::MAX), RejectReason::BalanceOverflow);
    h.rejected(&deposit_lots(1, 0, u64::MAX), RejectReason::BalanceOverflow);
    h.rejected(&buy(1, 1, 1000, 101), RejectReason::InvalidQuantity);
    h.rejected(&buy(1, 1, 1000, 0), RejectReason::InvalidQuantity);
    h.rejected(&buy(1, 1, 5_010, 1), RejectReason::InvalidPrice);
    h.rejected(&buy(1, 1, 1005, 1), RejectReason::InvalidPrice);
    h.rejected(&buy(1, 1, 0, 1), RejectReason::InvalidPrice);
    h.ok(&buy(1, 1, 1000, 1));
    h.ok(&buy(2, 1, 990, 1));
    h.rejected(&buy(3, 1, 980, 1), RejectReason::PriceLevelLimit);
    h.rejected(&move_to(1, 2, 970), RejectReason::PriceLevelLimit);
    h.ok(&buy(3, 1, 990, 1));
    h.rejected(&sell(4, 2, 2000, 1), RejectReason::OpenOrderLimit);
    // Only GTC orders rest, so IOC / FOK / market orders are still taken at the limit.
    h.ok(&order(5, 2, Side::Sell, OrderType::Ioc, 1000, 1));
    h.ok(&sell(4, 2, 2000, 1));
    let mut wide = funded(big());
    let big_price = big().max_price;
    wide.rejected(
        &buy(1, 1, big_price, 100_000_000),
        RejectReason::NotionalOverflow,
    );
    wide.rejected(
        &order(1, 1, Side::Buy, OrderType::Gtc, 10, 1).with_order_id(ASSIGNED_ORDER_ID_BIT),
        RejectReason::InvalidOrderId,
    );
    h.exchange.service().check_invariants().unwrap();
}

trait WithOrderId {
    fn with_order_id(self, id: u64) -> Request;
}

impl WithOrderId for Request {
    fn with_order_id(self, id: u64) -> Request {
        match self {
            Request::Place(p) => Request::Place(PlaceOrder { order_id: id, ..p }),
            other => other,
        }
    }
}

#[test]
fn order_ids_are_unique_among_resting_orders_and_zero_is_assigned() {
    let mut h = funded(big());
    h.ok(&buy(7, 1, 1000, 1));
    h.rejected(&buy(7, 2, 990, 1), RejectReason::DuplicateOrderId);
    h.rejected(
        &order(7, 2, Side::Sell, OrderType::Ioc, 990, 1),
        RejectReason::DuplicateOrderId,
    );
    h.ok(&cancel(1, 7));
    h.ok(&buy(7, 2, 990, 1)); // reusable once gone
    let events = h.ok(&buy(0, 1, 980, 1));
    let assigned = ASSIGNED_ORDER_ID_BIT | h.sequence;
    assert!(matches!(events[0], Event::Accepted { order_id, .. } if order_id == assigned));
    h.ok(&cancel(1, assigned));
}

#[test]
fn a_v1_place_is_upcast_to_a_gtc_order_with_an_assigned_id() {
    let mut h = funded(big());
    let v1 = PlaceOrderV1 {
        account: 1,
        instrument: 0,
        side: Side::Sell,
        price: 1000,
        qty: 3,
    };
    let command = place_order_v1(&v1);
    assert_eq!((command.kind, command.version), (KIND_PLACE_ORDER, 1));
    let (outcome, answer) = h.command(&command);
    assert_eq!(outcome, Outcome::Accepted);
    let id = ASSIGNED_ORDER_ID_BIT | h.sequence;
    let expected = Event::Accepted {
        order_id: id,
        account: 1,
        instrument: 0,
        side: Side::Sell,
        order_type: OrderType::Gtc,
        price: 1000,
        qty: 3,
    };
    assert_eq!(answer.events()[0], expected);
    let upcast = Request::decode(KIND_PLACE_ORDER, 1, &command.payload).unwrap();
    assert_eq!(
        upcast,
        Request::Place(PlaceOrder {
            order_id: 0,
            account: 1,
            instrument: 0,
            side: Side::Sell,
            order_type: OrderType::Gtc,
            price: 1000,
            qty: 3
        })
    );
    // v2 bytes are not a v1 message, and unknown versions are refused.
    let v2 = buy(1, 1, 1000, 1).to_command();
    assert_eq!(v2.version, 2);
    assert_eq!(
        Request::decode(KIND_PLACE_ORDER, 1, &v2.payload),
        Err(RejectReason::MalformedPayload)
    );
    assert_eq!(
        Request::decode(KIND_PLACE_ORDER, 3, &v2.payload),
        Err(RejectReason::UnsupportedVersion)
    );
    assert_eq!(
        Request::decode(KIND_PLACE_ORDER, 0, &v2.payload),
        Err(RejectReason::UnsupportedVersion)
    );
    assert_eq!(
        Request::decode(999, 1, &v2.payload),
        Err(RejectReason::UnknownKind)
    );
    let (outcome, _) = h.command(&keel_services::Command { version: 3, ..v2 });
    assert_eq!(
        outcome,
        Outcome::Rejected(RejectReason::UnsupportedVersion as u32)
    );
    h.ok(&cancel(1, id));
}

#[test]
fn save_and_load_round_trip_with_equal_hash_and_behaviour() {
    let mut h = funded(big());
    for i in 0..40u64 {
        let price = 900 + 10 * (i % 15);
        let request = if i % 2 == 0 {
            buy(i + 1, 1 + (i % 4) as u32, price, 1 + i % 5)
        } else {
            sell(i + 1, 1 + (i % 3) as u32, price + 100, 2)
        };
        h.send(&request);
    }
    h.ok(&cancel(1, 1));
    let mut bytes = Vec::new();
    h.exchange.save_state(&mut bytes).unwrap();
    let mut copy = Harness::new(ExchangeLimits {
        max_open_orders: 1,
        ..big()
    });
    copy.exchange
        .load_state(h.exchange.schema_version(), &bytes)
        .unwrap();
    copy.sequence = h.sequence;
    assert_eq!(copy.exchange.state_hash(), h.exchange.state_hash());
    assert_eq!(
        copy.exchange.service().limits(),
        h.exchange.service().limits(),
        "limits are part of the state"
    );
    copy.exchange.service().check_invariants().unwrap();
    for request in [
        order(100, 4, Side::Sell, OrderType::Ioc, 900, 30),
        move_to(2, 3, 1200),
        reduce(3, 5, 1),
        buy(0, 2, 1000, 3),
    ] {
        assert_eq!(copy.send(&request), h.send(&request));
    }
    assert_eq!(copy.exchange.state_hash(), h.exchange.state_hash());
    // Bad snapshots are refused and leave the exchange as it was.
    let before = copy.exchange.state_hash();
    assert!(copy
        .exchange
        .load_state(SCHEMA_VERSION + 1, &bytes)
        .is_err());
    assert!(copy
        .exchange
        .load_state(SCHEMA_VERSION, &bytes[..bytes.len() - 3])
        .is_err());
    assert_eq!(copy.exchange.state_hash(), before);
}

#[test]
fn the_state_hash_depends_on_the_state_not_the_history() {
    let mut a = funded(big());
    let mut b = funded(big());
    a.ok(&buy(1, 1, 1000, 1));
    a.ok(&buy(2, 2, 990, 1));
    a.ok(&cancel(1, 1));
    b.ok(&buy(2, 2, 990, 1));
    assert_eq!(a.exchange.state_hash(), b.exchange.state_hash());
    b.ok(&buy(3, 2, 990, 1));
    assert_ne!(a.exchange.state_hash(), b.exchange.state_hash());
}

#[test]
fn a_report_too_big_for_the_response_keeps_a_prefix_and_counts_the_rest() {
    let mut h = Harness::with_buffer(big(), 4096);
    h.ok(&add_instrument(0, 10, 50));
    h.ok(&deposit(1, 1_000_000_000));
    h.ok(&deposit(2, 1_000_000_000));
    h.ok(&deposit_lots(1, 0, 1000));
    for i in 0..200 {
        h.ok(&sell(i + 1, 1, 1000 + 10 * (i % 5), 1));
    }
    let (outcome, answer) = h.send(&buy(500, 2, 2000, 200));
    assert_eq!(outcome, Outcome::Accepted);
    let Answer::Events(report) = answer else {
        panic!("expected a report")
    };
    assert!(
        report.omitted > 0 && report.events.len() > 40,
        "{} kept, {} omitted",
        report.events.len(),
        report.omitted
    );
    assert_eq!(report.events.len() + report.omitted as usize, 202); // accepted + 200 trades + book
    assert!(matches!(
        report.events[0],
        Event::Accepted { order_id: 500, .. }
    ));
    assert_eq!(
        h.exchange.service().open_orders(),
        0,
        "the whole order executed"
    );
}

#[test]
fn book_events_only_when_the_top_changes() {
    let mut h = funded(big());
    assert!(matches!(h.ok(&buy(1, 1, 1000, 1))[..], [_, Event::Book(_)]));
    assert!(
        matches!(h.ok(&buy(2, 1, 990, 1))[..], [_]),
        "a deeper level does not change the top"
    );
    assert!(matches!(
        h.ok(&buy(3, 1, 1000, 2))[..],
        [_, Event::Book(TopOfBook { bid_qty: 3, .. })]
    ));
    assert!(matches!(h.ok(&cancel(1, 2))[..], [_]));
}

#[test]
fn queries_answer_with_views() {
    let mut h = funded(big());
    h.ok(&buy(1, 1, 1000, 1));
    h.ok(&buy(2, 2, 1000, 2));
    h.ok(&sell(3, 3, 1020, 4));
    let (outcome, answer) = h.send(&Request::QueryBook(QueryBook {
        instrument: 0,
        depth: 5,
    }));
    assert_eq!(outcome, Outcome::Accepted);
    let Answer::Book(depth) = answer else {
        panic!("expected a depth")
    };
    assert_eq!(
        depth.bids,
        vec![DepthLevel {
            price: 1000,
            qty: 3,
            orders: 2
        }]
    );
    assert_eq!(
        depth.asks,
        vec![DepthLevel {
            price: 1020,
            qty: 4,
            orders: 1
        }]
    );
    let (_, answer) = h.send(&Request::QueryAccount(QueryAccount { account: 2 }));
    let Answer::Account(view) = answer else {
        panic!("expected an account")
    };
    assert_eq!(
        (view.cash, view.reserved, view.holdings.len()),
        (1_000_000, 2000, 1)
    );
    h.rejected(
        &Request::QueryBook(QueryBook {
            instrument: 3,
            depth: 5,
        }),
        RejectReason::UnknownInstrument,
    );
    h.rejected(
        &Request::QueryAccount(QueryAccount { account: 7 }),
        RejectReason::UnknownAccount,
    );
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn shell_commands_parse_and_describe() {
    let mut h = Harness::new(big());
    for line in [
        "add-instrument 0 10",
        "deposit 1 100000",
        "deposit-position 1 0 50",
        "place 1 0 sell 1000 5",
        "place 1 0 sell 1010 5 gtc 42",
        "place-v1 1 0 sell 1020 1",
        "move 1 42 1030",
        "reduce 1 42 1",
        "withdraw 1 10",
        "withdraw-position 1 0 1",
        "book 0",
        "balance 1",
        "cancel 1 42",
    ] {
        let command = Typed::<Exchange>::parse_command(&words(line)).unwrap();
        let (outcome, _) = h.command(&command);
        assert_eq!(outcome, Outcome::Accepted, "{line}");
        let header = MessageHeader {
            sequence: h.sequence,
            kind: command.kind,
            version: command.version,
            ..MessageHeader::default()
        };
        let json = Typed::<Exchange>::describe_message(&Message {
            header,
            payload: &command.payload,
        });
        assert_eq!(json["type"], kind_name(command.kind), "{line}: {json}");
        assert!(json.as_object().unwrap().len() > 1, "{line}: {json}");
    }
    assert!(
        Typed::<Exchange>::parse_command(&words("place 1 0 hold 1000 5"))
            .unwrap_err()
            .contains("buy or sell")
    );
    assert!(Typed::<Exchange>::parse_command(&words("place 1 0 buy"))
        .unwrap_err()
        .contains("PRICE"));
    assert!(Typed::<Exchange>::parse_command(&words("frobnicate"))
        .unwrap_err()
        .contains("unknown command"));
    assert!(Typed::<Exchange>::command_help().lines().count() >= 10);
    let state = h.exchange.describe_state();
    assert_eq!(state["instruments"][0]["instrument"], 0);
    assert_eq!(state["accounts"], 1);
}

#[test]
fn responses_describe_themselves_with_reason_names() {
    let mut bytes = Vec::new();
    keel::codec::encode_to_vec(
        &Report {
            events: vec![Event::Rejected {
                order_id: 9,
                reason: RejectReason::UnknownOrder,
            }],
            omitted: 0,
        },
        &mut bytes,
    )
    .unwrap();
    let header = ResponseHeader {
        status: Status::Rejected,
        reason: 33,
        kind: RESPONSE_EVENTS,
        ..ResponseHeader::default()
    };
    let json = Typed::<Exchange>::describe_response(
        KIND_CANCEL_ORDER,
        &Response {
            header,
            payload: &bytes,
        },
    );
    assert_eq!(json["status"], "rejected");
    assert_eq!(json["request"], "cancel-order");
    assert_eq!(
        (&json["reason"], &json["reason_code"]),
        (&json!("unknown-order"), &json!(33))
    );
    let event = &json["response"]["events"][0];
    assert_eq!(
        (&event["type"], &event["reason"]),
        (&json!("rejected"), &json!("unknown-order"))
    );
    assert_eq!(event["order_id"], 9);
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
}

#[test]
fn reject_reason_numbers_are_stable() {
    let numbers: Vec<(u32, &str)> = RejectReason::ALL
        .iter()
        .map(|r| (*r as u32, r.name()))
        .collect();
    assert_eq!(
        numbers,
        vec![
            (1, "UnknownKind"),
            (2, "UnsupportedVersion"),
            (3, "MalformedPayload"),
            (10, "UnknownInstrument"),
            (11, "InstrumentExists"),
            (12, "InstrumentLimit"),
            (13, "InvalidTick"),
            (20, "UnknownAccount"),
            (21, "AccountLimit"),
            (22, "InsufficientCash"),
            (23, "InsufficientPosition"),
            (24, "BalanceOverflow"),
            (25, "InvalidAmount"),
            (30, "InvalidPrice"),
            (31, "InvalidQuantity"),
            (32, "DuplicateOrderId"),
            (33, "UnknownOrder"),
            (34, "NotOrderOwner"),
            (35, "OpenOrderLimit"),
            (36, "PriceLevelLimit"),
            (37, "NoLiquidity"),
            (38, "FokUnfillable"),
            (39, "InvalidOrderId"),
            (40, "NotionalOverflow"),
        ]
    );
    for reason in RejectReason::ALL {
        assert_eq!(RejectReason::from_u32(*reason as u32), Some(*reason));
        let mut bytes = Vec::new();
        keel::codec::encode_to_vec(reason, &mut bytes).unwrap();
        assert_eq!(
            bytes,
            (*reason as u32).to_le_bytes(),
            "encoded as its number"
        );
    }
}

#[test]
fn the_workload_is_reproducible_and_mostly_moves_and_cancels() {
    assert_eq!(
        Typed::<Exchange>::workload(1, 77),
        Typed::<Exchange>::workload(1, 77)
    );
    let differs =
        (0..100).any(|i| Typed::<Exchange>::workload(1, i) != Typed::<Exchange>::workload(2, i));
    assert!(differs, "the seed matters");
    let mut counts = std::collections::BTreeMap::<u16, u64>::new();
    let n = 200_000;
    for i in WORKLOAD.slots..WORKLOAD.slots + n {
        *counts
            .entry(Typed::<Exchange>::workload(3, i).kind)
            .or_default() += 1;
    }
    let share = |kind| counts.get(&kind).copied().unwrap_or(0) as f64 / n as f64;
    assert!((0.75..0.85).contains(&share(KIND_MOVE_ORDER)), "{counts:?}");
    assert!(
        (0.05..0.08).contains(&share(KIND_CANCEL_ORDER)),
        "{counts:?}"
    );
    assert!(
        (0.07..0.11).contains(&share(KIND_PLACE_ORDER)),
        "{counts:?}"
    );
    assert!(
        (0.04..0.07).contains(&share(KIND_REDUCE_ORDER)),
        "{counts:?}"
    );
    let setup = Typed::<Exchange>::setup(3);
    assert_eq!(
        setup.len() as u32,
        WORKLOAD.instruments + WORKLOAD.accounts * (1 + WORKLOAD.instruments)
    );
}

#[test]
fn garbage_is_rejected_with_distinct_reasons() {
    let mut h = funded(big());
    let good = cancel(1, 1).to_command();
    let mut short = good.clone();
    short.payload.pop();
    let cases = [
        (
            keel_services::Command {
                kind: 77,
                ..good.clone()
            },
            RejectReason::UnknownKind,
        ),
        (
            keel_services::Command {
                version: 2,
                ..good.clone()
            },
            RejectReason::UnsupportedVersion,
        ),
        (short, RejectReason::MalformedPayload),
    ];
    for (command, reason) in cases {
        let (outcome, answer) = h.command(&command);
        assert_eq!(outcome, Outcome::Rejected(reason as u32));
        assert_eq!(
            answer.events(),
            &[Event::Rejected {
                order_id: 0,
                reason
            }]
        );
    }
}
