//! Input messages: kinds, versions, payloads, and the upcast of old versions.
//!
//! Every payload is one serde struct encoded with `keel::codec` (bincode, fixed-width
//! little-endian integers). Unit enums ([`Side`], [`OrderType`]) encode as their `u32` variant
//! index, so their variant order is part of the wire format: append only, never reorder.

use super::events::RejectReason;
use crate::Command;
use keel::codec;
use serde::{Deserialize, Serialize};

/// Add an instrument (v1: [`AddInstrument`]).
pub const KIND_ADD_INSTRUMENT: u16 = 1;
/// Credit cash to an account, creating it (v1: [`CashTransfer`]).
pub const KIND_DEPOSIT_CASH: u16 = 2;
/// Debit free cash from an account (v1: [`CashTransfer`]).
pub const KIND_WITHDRAW_CASH: u16 = 3;
/// Credit a position to an account, creating it (v1: [`PositionTransfer`]).
pub const KIND_DEPOSIT_POSITION: u16 = 4;
/// Debit a free position from an account (v1: [`PositionTransfer`]).
pub const KIND_WITHDRAW_POSITION: u16 = 5;
/// Place an order (v1: [`PlaceOrderV1`], v2: [`PlaceOrder`]).
pub const KIND_PLACE_ORDER: u16 = 10;
/// Cancel a resting order (v1: [`CancelOrder`]).
pub const KIND_CANCEL_ORDER: u16 = 11;
/// Change a resting order's price; it loses time priority (v1: [`MoveOrder`]).
pub const KIND_MOVE_ORDER: u16 = 12;
/// Lower a resting order's quantity; it keeps time priority (v1: [`ReduceOrder`]).
pub const KIND_REDUCE_ORDER: u16 = 13;
/// Ask for a book's depth (v1: [`QueryBook`]); answered with a `BookDepth`.
pub const KIND_QUERY_BOOK: u16 = 20;
/// Ask for an account's balances (v1: [`QueryAccount`]); answered with an `AccountView`.
pub const KIND_QUERY_ACCOUNT: u16 = 21;

/// `PlaceOrder.order_id` at or above this value is reserved for ids the exchange assigns:
/// an order sent with id 0 (and every v1 order) gets `ASSIGNED_ORDER_ID_BIT | sequence`.
pub const ASSIGNED_ORDER_ID_BIT: u64 = 1 << 63;

/// Buy or sell. Wire: `u32` variant index (Buy = 0, Sell = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// Bid: pays cash, receives the instrument.
    Buy,
    /// Ask: delivers the instrument, receives cash.
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// 0 for buy, 1 for sell (array index).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How an order executes. Wire: `u32` variant index (Gtc = 0, Ioc = 1, Fok = 2, Market = 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderType {
    /// Limit order, good till cancelled: matches what it can, rests the remainder.
    Gtc,
    /// Immediate or cancel: matches what it can at its limit, cancels the remainder.
    Ioc,
    /// Fill or kill: fills completely at its limit right now, or is rejected untouched.
    Fok,
    /// Market: IOC with the limit set by the instrument's band around the opposite best
    /// price (see the module docs); its `price` field is ignored.
    Market,
}

/// v1 of `KIND_ADD_INSTRUMENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddInstrument {
    /// Instrument id, below `ExchangeLimits::max_instruments`.
    pub instrument: u32,
    /// Tick size in price units: every limit price is a multiple of it (> 0).
    pub tick: u64,
    /// Market-order band in price units: a market buy may pay up to best ask + band, a
    /// market sell may receive down to best bid − band.
    pub market_band: u64,
}

/// v1 of `KIND_DEPOSIT_CASH` and `KIND_WITHDRAW_CASH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashTransfer {
    /// Account id, below `ExchangeLimits::max_accounts`.
    pub account: u32,
    /// Cash units (1e-4 of the quote currency), > 0.
    pub amount: u64,
}

/// v1 of `KIND_DEPOSIT_POSITION` and `KIND_WITHDRAW_POSITION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionTransfer {
    /// Account id.
    pub account: u32,
    /// Instrument id.
    pub instrument: u32,
    /// Lots, > 0.
    pub qty: u64,
}

/// v1 of `KIND_PLACE_ORDER`: a GTC limit order without a client order id (legacy clients).
/// Upcast to [`PlaceOrder`] with `order_id: 0` (exchange-assigned) and `order_type: Gtc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrderV1 {
    /// Account id.
    pub account: u32,
    /// Instrument id.
    pub instrument: u32,
    /// Buy or sell.
    pub side: Side,
    /// Limit price in price units (1e-4 of the quote currency per lot).
    pub price: u64,
    /// Lots.
    pub qty: u64,
}

/// v2 (current) of `KIND_PLACE_ORDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Client-chosen id, unique among resting orders, below [`ASSIGNED_ORDER_ID_BIT`]; 0 asks
    /// the exchange to assign `ASSIGNED_ORDER_ID_BIT | sequence`.
    pub order_id: u64,
    /// Account id.
    pub account: u32,
    /// Instrument id.
    pub instrument: u32,
    /// Buy or sell.
    pub side: Side,
    /// GTC, IOC, FOK or market.
    pub order_type: OrderType,
    /// Limit price in price units; ignored for market orders.
    pub price: u64,
    /// Lots, 1..=`ExchangeLimits::max_order_qty`.
    pub qty: u64,
}

impl From<PlaceOrderV1> for PlaceOrder {
    fn from(v1: PlaceOrderV1) -> Self {
        PlaceOrder {
            order_id: 0,
            account: v1.account,
            instrument: v1.instrument,
            side: v1.side,
            order_type: OrderType::Gtc,
            price: v1.price,
            qty: v1.qty,
        }
    }
}

/// v1 of `KIND_CANCEL_ORDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    /// Owner of the order.
    pub account: u32,
    /// The resting order.
    pub order_id: u64,
}

/// v1 of `KIND_MOVE_ORDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveOrder {
    /// Owner of the order.
    pub account: u32,
    /// The resting order.
    pub order_id: u64,
    /// New limit price in price units (may cross: the order then trades as a taker).
    pub price: u64,
}

/// v1 of `KIND_REDUCE_ORDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReduceOrder {
    /// Owner of the order.
    pub account: u32,
    /// The resting order.
    pub order_id: u64,
    /// Lots to take off (> 0); reducing by the whole remainder or more removes the order.
    pub by: u64,
}

/// v1 of `KIND_QUERY_BOOK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryBook {
    /// Instrument id.
    pub instrument: u32,
    /// Price levels per side wanted (capped at `MAX_QUERY_DEPTH`).
    pub depth: u32,
}

/// v1 of `KIND_QUERY_ACCOUNT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAccount {
    /// Account id.
    pub account: u32,
}

keel::commands! {
    /// Any input message, decoded and upcast to its current version: the wire table (each
    /// kind's number and versions; the payload is the variant's struct).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Request {
        /// Lists an instrument.
        [KIND_ADD_INSTRUMENT] => AddInstrument(AddInstrument),
        /// Credits cash to an account.
        [KIND_DEPOSIT_CASH] => DepositCash(CashTransfer),
        /// Debits cash from an account.
        [KIND_WITHDRAW_CASH] => WithdrawCash(CashTransfer),
        /// Credits a position.
        [KIND_DEPOSIT_POSITION] => DepositPosition(PositionTransfer),
        /// Debits a position.
        [KIND_WITHDRAW_POSITION] => WithdrawPosition(PositionTransfer),
        /// Places an order (v1 upcasts to v2).
        [KIND_PLACE_ORDER] => Place(PlaceOrder) version 2 { 1 => PlaceOrderV1 },
        /// Cancels an order.
        [KIND_CANCEL_ORDER] => Cancel(CancelOrder),
        /// Moves an order to a new price.
        [KIND_MOVE_ORDER] => Move(MoveOrder),
        /// Reduces an order's quantity.
        [KIND_REDUCE_ORDER] => Reduce(ReduceOrder),
        /// Reads a book's depth.
        [KIND_QUERY_BOOK] => QueryBook(QueryBook),
        /// Reads an account.
        [KIND_QUERY_ACCOUNT] => QueryAccount(QueryAccount),
    }
}

impl Request {
    /// Decodes a payload of `kind` at `version`, upcasting older versions.
    pub fn decode(kind: u16, version: u16, bytes: &[u8]) -> Result<Request, RejectReason> {
        <Request as keel::Command>::decode(kind, version, bytes).map_err(RejectReason::from)
    }

    /// This request's message kind.
    pub fn kind(&self) -> u16 {
        keel::Command::kind(self)
    }

    /// Encodes this request at its kind's current version.
    pub fn to_command(&self) -> Command {
        let mut payload = vec![0; 64];
        let n =
            keel::Command::encode_into(self, &mut payload).expect("every payload fits 64 bytes");
        payload.truncate(n);
        Command {
            kind: self.kind(),
            version: keel::Command::version(self),
            payload,
        }
    }
}

/// A legacy v1 `PlaceOrder` message (for clients and tests that still speak v1).
pub fn place_order_v1(order: &PlaceOrderV1) -> Command {
    let mut payload = Vec::with_capacity(32);
    codec::encode_to_vec(order, &mut payload).expect("encoding into a Vec cannot fail");
    Command {
        kind: KIND_PLACE_ORDER,
        version: 1,
        payload,
    }
}

/// The newest version of `kind` this build understands (`None`: unknown kind).
pub fn current_version(kind: u16) -> Option<u16> {
    match kind {
        KIND_PLACE_ORDER => Some(2),
        KIND_ADD_INSTRUMENT..=KIND_WITHDRAW_POSITION
        | KIND_CANCEL_ORDER..=KIND_REDUCE_ORDER
        | KIND_QUERY_BOOK
        | KIND_QUERY_ACCOUNT => Some(1),
        _ => None,
    }
}

/// A short name for `kind` (for logs and JSON).
pub fn kind_name(kind: u16) -> &'static str {
    match kind {
        KIND_ADD_INSTRUMENT => "add-instrument",
        KIND_DEPOSIT_CASH => "deposit-cash",
        KIND_WITHDRAW_CASH => "withdraw-cash",
        KIND_DEPOSIT_POSITION => "deposit-position",
        KIND_WITHDRAW_POSITION => "withdraw-position",
        KIND_PLACE_ORDER => "place-order",
        KIND_CANCEL_ORDER => "cancel-order",
        KIND_MOVE_ORDER => "move-order",
        KIND_REDUCE_ORDER => "reduce-order",
        KIND_QUERY_BOOK => "query-book",
        KIND_QUERY_ACCOUNT => "query-account",
        _ => "unknown",
    }
}
