//! Shared helpers for the exchange tests: a harness that drives `Exchange` through
//! `Processor::apply` (encode → apply → decode), a naive reference exchange, and a seeded
//! random message generator.
#![allow(dead_code)]

pub mod generator;
pub mod reference;

use keel::engine::MessageHeader;
use keel::Typed;
use keel::{Message, Outcome, Output, Processor};
use keel_services::exchange::*;
use keel_services::Command;

/// What one message answered, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Events(Report),
    Book(BookDepth),
    Account(AccountView),
}

impl Answer {
    pub fn events(&self) -> &[Event] {
        match self {
            Answer::Events(r) => &r.events,
            other => panic!("expected events, got {other:?}"),
        }
    }
}

/// Drives an exchange message by message, numbering sequences from 1.
pub struct Harness {
    pub exchange: Typed<Exchange>,
    pub sequence: u64,
    buf: Vec<u8>,
}

impl Harness {
    pub fn new(limits: ExchangeLimits) -> Self {
        Harness::with_buffer(limits, 1 << 20)
    }

    pub fn with_buffer(limits: ExchangeLimits, response_bytes: usize) -> Self {
        Harness {
            exchange: Typed::new(Exchange::with_limits(limits)),
            sequence: 0,
            buf: vec![0; response_bytes],
        }
    }

    /// Applies an encoded command; returns the outcome and the decoded answer.
    pub fn command(&mut self, command: &Command) -> (Outcome, Answer) {
        self.sequence += 1;
        let header = MessageHeader {
            sequence: self.sequence,
            timestamp_ns: 1_700_000_000_000_000_000 + self.sequence,
            session_id: 0,
            correlation_id: self.sequence,
            kind: command.kind,
            version: command.version,
        };
        let message = Message {
            header,
            payload: &command.payload,
        };
        let mut out = Output::new(&mut self.buf);
        let outcome = self.exchange.apply(&message, &mut out);
        (outcome, decode_answer(out.kind(), out.as_bytes()))
    }

    /// Applies a request at its current version.
    pub fn send(&mut self, request: &Request) -> (Outcome, Answer) {
        self.command(&request.to_command())
    }

    /// Applies a request that must be accepted; returns its events.
    pub fn ok(&mut self, request: &Request) -> Vec<Event> {
        let (outcome, answer) = self.send(request);
        assert_eq!(outcome, Outcome::Accepted, "{request:?} → {answer:?}");
        answer.events().to_vec()
    }

    /// Applies a request that must be rejected for `reason`; checks the Rejected event.
    pub fn rejected(&mut self, request: &Request, reason: RejectReason) {
        let before = self.exchange.state_hash();
        let (outcome, answer) = self.send(request);
        assert_eq!(
            outcome,
            Outcome::Rejected(reason as u32),
            "{request:?} → {answer:?}"
        );
        assert!(matches!(answer.events(), [Event::Rejected { reason: r, .. }] if *r == reason));
        assert_eq!(
            self.exchange.state_hash(),
            before,
            "a rejection changed the state"
        );
    }
}

pub fn decode_answer(kind: u16, bytes: &[u8]) -> Answer {
    match kind {
        RESPONSE_EVENTS => Answer::Events(keel::codec::decode(bytes).expect("report decodes")),
        RESPONSE_BOOK => Answer::Book(keel::codec::decode(bytes).expect("depth decodes")),
        RESPONSE_ACCOUNT => Answer::Account(keel::codec::decode(bytes).expect("account decodes")),
        other => panic!("unexpected response kind {other}"),
    }
}

/// Small limits that the random tests actually hit.
pub fn small_limits() -> ExchangeLimits {
    ExchangeLimits {
        max_instruments: 6,
        max_accounts: 14,
        max_open_orders: 60,
        max_price_levels: 12,
        max_price: 1_000_000,
        max_order_qty: 60,
    }
}

pub fn add_instrument(instrument: u32, tick: u64, market_band: u64) -> Request {
    Request::AddInstrument(AddInstrument {
        instrument,
        tick,
        market_band,
    })
}

pub fn deposit(account: u32, amount: u64) -> Request {
    Request::DepositCash(CashTransfer { account, amount })
}

pub fn deposit_lots(account: u32, instrument: u32, qty: u64) -> Request {
    Request::DepositPosition(PositionTransfer {
        account,
        instrument,
        qty,
    })
}

pub fn order(
    order_id: u64,
    account: u32,
    side: Side,
    order_type: OrderType,
    price: u64,
    qty: u64,
) -> Request {
    Request::Place(PlaceOrder {
        order_id,
        account,
        instrument: 0,
        side,
        order_type,
        price,
        qty,
    })
}

pub fn buy(order_id: u64, account: u32, price: u64, qty: u64) -> Request {
    order(order_id, account, Side::Buy, OrderType::Gtc, price, qty)
}

pub fn sell(order_id: u64, account: u32, price: u64, qty: u64) -> Request {
    order(order_id, account, Side::Sell, OrderType::Gtc, price, qty)
}

pub fn cancel(account: u32, order_id: u64) -> Request {
    Request::Cancel(CancelOrder { account, order_id })
}

pub fn move_to(account: u32, order_id: u64, price: u64) -> Request {
    Request::Move(MoveOrder {
        account,
        order_id,
        price,
    })
}

pub fn reduce(account: u32, order_id: u64, by: u64) -> Request {
    Request::Reduce(ReduceOrder {
        account,
        order_id,
        by,
    })
}

/// Instrument 0 (tick 10, band 50) and accounts 1..=4 with 1_000_000 cash and 1000 lots each.
pub fn funded(limits: ExchangeLimits) -> Harness {
    let mut h = Harness::new(limits);
    h.ok(&add_instrument(0, 10, 50));
    for account in 1..=4 {
        h.ok(&deposit(account, 1_000_000));
        h.ok(&deposit_lots(account, 0, 1000));
    }
    h
}

/// (cash, reserved cash, lots, reserved lots) of `account` in instrument 0.
pub fn balance(h: &Harness, account: u32) -> (u64, u64, u64, u64) {
    let view = h.exchange.service().account_view(account).expect("account");
    let lots = view
        .holdings
        .iter()
        .find(|x| x.instrument == 0)
        .copied()
        .unwrap_or_default();
    (view.cash, view.reserved, lots.qty, lots.reserved)
}

/// Trades in `events` as (maker order, taker order, price, qty).
pub fn trades(events: &[Event]) -> Vec<(u64, u64, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match *e {
            Event::Trade {
                maker_order,
                taker_order,
                price,
                qty,
                ..
            } => Some((maker_order, taker_order, price, qty)),
            _ => None,
        })
        .collect()
}
