//! Output: the events one message produced, reject reasons, and query answers.

use super::messages::{OrderType, Side};
use keel::engine::Output;
use keel::service::Invalid;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Response kind of every order and admin message: a [`Report`].
pub const RESPONSE_EVENTS: u16 = 1;
/// Response kind of `KIND_QUERY_BOOK`: a [`BookDepth`].
pub const RESPONSE_BOOK: u16 = 2;
/// Response kind of `KIND_QUERY_ACCOUNT`: an [`AccountView`].
pub const RESPONSE_ACCOUNT: u16 = 3;

/// Most price levels per side a book query returns.
pub const MAX_QUERY_DEPTH: u32 = 64;

macro_rules! reject_reasons {
    ($($(#[$doc:meta])* $name:ident = $num:literal,)*) => {
        /// Why a message was rejected. The numbers are stable: they go to clients (as the
        /// response's reason code) and into replays. Never renumber; only append.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum RejectReason {
            $($(#[$doc])* $name = $num,)*
        }

        impl RejectReason {
            /// Every reason, in number order.
            pub const ALL: &'static [RejectReason] = &[$(RejectReason::$name,)*];

            /// The reason with this number.
            pub fn from_u32(n: u32) -> Option<RejectReason> {
                match n {
                    $($num => Some(RejectReason::$name),)*
                    _ => None,
                }
            }

            /// The variant name, for humans.
            pub fn name(self) -> &'static str {
                match self {
                    $(RejectReason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reject_reasons! {
    /// The message kind is not an exchange kind.
    UnknownKind = 1,
    /// The kind is known but not at this version.
    UnsupportedVersion = 2,
    /// The payload does not decode as the kind's struct.
    MalformedPayload = 3,
    /// No instrument has this id.
    UnknownInstrument = 10,
    /// The instrument id is already taken.
    InstrumentExists = 11,
    /// The instrument id is not below `ExchangeLimits::max_instruments`.
    InstrumentLimit = 12,
    /// Tick size 0.
    InvalidTick = 13,
    /// No account has this id (accounts are created by a deposit).
    UnknownAccount = 20,
    /// The account id is not below `ExchangeLimits::max_accounts`.
    AccountLimit = 21,
    /// Not enough free (unreserved) cash.
    InsufficientCash = 22,
    /// Not enough free (unreserved) position in the instrument.
    InsufficientPosition = 23,
    /// A deposit would overflow the exchange-wide total (u64).
    BalanceOverflow = 24,
    /// A cash amount of 0.
    InvalidAmount = 25,
    /// Price 0, not a multiple of the tick, or above `ExchangeLimits::max_price`.
    InvalidPrice = 30,
    /// Quantity 0 or above `ExchangeLimits::max_order_qty`.
    InvalidQuantity = 31,
    /// Another resting order has this id.
    DuplicateOrderId = 32,
    /// No resting order has this id.
    UnknownOrder = 33,
    /// The resting order belongs to another account.
    NotOrderOwner = 34,
    /// `ExchangeLimits::max_open_orders` resting orders exist already (GTC only).
    OpenOrderLimit = 35,
    /// The price would open a level on a side that has `max_price_levels` already.
    PriceLevelLimit = 36,
    /// A market order found no opposite order.
    NoLiquidity = 37,
    /// A fill-or-kill order cannot be filled completely right now.
    FokUnfillable = 38,
    /// A client order id at or above `ASSIGNED_ORDER_ID_BIT`.
    InvalidOrderId = 39,
    /// price × quantity does not fit in u64.
    NotionalOverflow = 40,
}

impl From<Invalid> for RejectReason {
    fn from(invalid: Invalid) -> Self {
        match invalid {
            Invalid::UnknownKind => RejectReason::UnknownKind,
            Invalid::UnsupportedVersion => RejectReason::UnsupportedVersion,
            Invalid::Undecodable => RejectReason::MalformedPayload,
        }
    }
}

impl Serialize for RejectReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&crate::json::Kebab(self.name()))
        } else {
            s.serialize_u32(*self as u32)
        }
    }
}

impl<'de> Deserialize<'de> for RejectReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        RejectReason::from_u32(n)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reject reason {n}")))
    }
}

/// Why an order left the book without trading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CancelReason {
    /// A cancel message.
    Requested,
    /// The unfilled remainder of an IOC or market order.
    Unfilled,
}

/// Best bid and ask of one instrument (0 price and 0 qty for an empty side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopOfBook {
    /// Instrument id.
    pub instrument: u32,
    /// Best bid price (0: no bids).
    pub bid_price: u64,
    /// Lots at the best bid.
    pub bid_qty: u64,
    /// Best ask price (0: no asks).
    pub ask_price: u64,
    /// Lots at the best ask.
    pub ask_qty: u64,
}

/// One thing that happened while applying a message, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// The message was refused; nothing changed.
    Rejected {
        /// The order id the message named (0 when none).
        order_id: u64,
        /// Why.
        reason: RejectReason,
    },
    /// An instrument was added.
    InstrumentAdded {
        /// Instrument id.
        instrument: u32,
        /// Tick size, price units.
        tick: u64,
        /// Market-order band, price units.
        market_band: u64,
    },
    /// An account's cash after a deposit or withdrawal.
    Cash {
        /// Account id.
        account: u32,
        /// Cash units.
        cash: u64,
        /// Cash units reserved by resting buy orders.
        reserved: u64,
    },
    /// An account's position after a deposit or withdrawal.
    Position {
        /// Account id.
        account: u32,
        /// Instrument id.
        instrument: u32,
        /// Lots held.
        qty: u64,
        /// Lots reserved by resting sell orders.
        reserved: u64,
    },
    /// An order passed every check and entered matching.
    Accepted {
        /// Its id (assigned when the message had 0).
        order_id: u64,
        /// Account id.
        account: u32,
        /// Instrument id.
        instrument: u32,
        /// Buy or sell.
        side: Side,
        /// GTC, IOC, FOK or market.
        order_type: OrderType,
        /// Limit price; for a market order the band limit it executes within.
        price: u64,
        /// Lots.
        qty: u64,
    },
    /// A trade between a taker (the incoming or moved order) and a resting maker.
    Trade {
        /// Instrument id.
        instrument: u32,
        /// Execution price (the maker's), price units.
        price: u64,
        /// Lots.
        qty: u64,
        /// The taker's side.
        taker_side: Side,
        /// Taker order id.
        taker_order: u64,
        /// Taker account.
        taker_account: u32,
        /// Taker lots left after this trade.
        taker_remaining: u64,
        /// Maker order id.
        maker_order: u64,
        /// Maker account.
        maker_account: u32,
        /// Maker lots left after this trade (0: the maker left the book).
        maker_remaining: u64,
    },
    /// An order's remainder left the book (or never rested).
    Cancelled {
        /// Order id.
        order_id: u64,
        /// Account id.
        account: u32,
        /// Instrument id.
        instrument: u32,
        /// Buy or sell.
        side: Side,
        /// Its limit price.
        price: u64,
        /// Lots cancelled.
        qty: u64,
        /// A cancel message, or the unfilled part of an IOC / market order.
        reason: CancelReason,
    },
    /// A resting order's quantity went down; it kept its place in the queue.
    Reduced {
        /// Order id.
        order_id: u64,
        /// Account id.
        account: u32,
        /// Instrument id.
        instrument: u32,
        /// Lots taken off (at most what was left).
        by: u64,
        /// Lots left (0: the order left the book).
        remaining: u64,
    },
    /// A resting order got a new price and went to the back of that price's queue. Trades
    /// follow when the new price crosses.
    Moved {
        /// Order id.
        order_id: u64,
        /// Account id.
        account: u32,
        /// Instrument id.
        instrument: u32,
        /// Price before.
        from_price: u64,
        /// Price after.
        to_price: u64,
        /// Lots (before any trade the move causes).
        remaining: u64,
    },
    /// The instrument's top of book after the message, sent only when it changed.
    Book(TopOfBook),
}

/// The response to an order or admin message (kind [`RESPONSE_EVENTS`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Report {
    /// What happened, in order.
    pub events: Vec<Event>,
    /// Events left off the end because the response would not fit in
    /// `Config::max_response_bytes` (0 normally).
    pub omitted: u32,
}

/// [`Report`]'s encoding, borrowed (what the exchange writes; no allocation).
#[derive(Serialize)]
struct ReportRef<'a> {
    events: &'a [Event],
    omitted: u32,
}

/// One price level in a [`BookDepth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepthLevel {
    /// Price units.
    pub price: u64,
    /// Lots resting at this price.
    pub qty: u64,
    /// Orders resting at this price.
    pub orders: u32,
}

/// The answer to `KIND_QUERY_BOOK` (kind [`RESPONSE_BOOK`]): best levels first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BookDepth {
    /// Instrument id.
    pub instrument: u32,
    /// Bids, highest price first.
    pub bids: Vec<DepthLevel>,
    /// Asks, lowest price first.
    pub asks: Vec<DepthLevel>,
}

/// [`BookDepth`], borrowed (what the exchange writes; no allocation).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BookDepthRef<'a> {
    /// Instrument id.
    pub instrument: u32,
    /// Bids, highest price first.
    pub bids: &'a [DepthLevel],
    /// Asks, lowest price first.
    pub asks: &'a [DepthLevel],
}

/// One instrument held by an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Holding {
    /// Instrument id.
    pub instrument: u32,
    /// Lots held.
    pub qty: u64,
    /// Lots reserved by resting sell orders.
    pub reserved: u64,
}

/// The answer to `KIND_QUERY_ACCOUNT` (kind [`RESPONSE_ACCOUNT`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountView {
    /// Account id.
    pub account: u32,
    /// Cash units.
    pub cash: u64,
    /// Cash units reserved by resting buy orders.
    pub reserved: u64,
    /// Holdings by instrument id (entries once created stay, even at 0).
    pub holdings: Vec<Holding>,
    /// Holdings left off because the response would not fit.
    pub omitted: u32,
}

/// [`AccountView`], borrowed (what the exchange writes; no allocation).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AccountViewRef<'a> {
    /// Account id.
    pub account: u32,
    /// Cash units.
    pub cash: u64,
    /// Cash units reserved by resting buy orders.
    pub reserved: u64,
    /// Holdings by instrument id.
    pub holdings: &'a [Holding],
    /// Holdings left off because the response would not fit.
    pub omitted: u32,
}

/// What an accepted message answers, borrowed from the exchange's state and written
/// straight into the response (the exchange's `Service::Reply`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply<'a> {
    /// An order or admin message's events: a [`Report`] under [`RESPONSE_EVENTS`].
    Events(&'a [Event]),
    /// A book query's levels: a [`BookDepth`] under [`RESPONSE_BOOK`].
    Book(BookDepthRef<'a>),
    /// An account query's balances: an [`AccountView`] under [`RESPONSE_ACCOUNT`].
    Account(AccountViewRef<'a>),
}

impl Reply<'_> {
    /// Writes the response: kind and payload, trimmed to what fits (module docs).
    pub(crate) fn write(&self, out: &mut Output<'_>) {
        match *self {
            Reply::Events(events) => write_events(events, out),
            Reply::Book(b) => {
                let levels = b.bids.len().max(b.asks.len());
                encode_fitting(out, RESPONSE_BOOK, levels, |n| BookDepthRef {
                    bids: &b.bids[..n.min(b.bids.len())],
                    asks: &b.asks[..n.min(b.asks.len())],
                    ..b
                });
            }
            Reply::Account(a) => {
                let total = a.holdings.len();
                encode_fitting(out, RESPONSE_ACCOUNT, total, |n| AccountViewRef {
                    holdings: &a.holdings[..n],
                    omitted: (total - n) as u32,
                    ..a
                });
            }
        }
    }
}

/// Why a message was refused, nothing changed (the exchange's `Service::Rejection`). Its
/// `reason` is the response's reason code; the payload is a [`Report`] holding the one
/// matching [`Event::Rejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The order id the message named (0 when none).
    pub order_id: u64,
    /// Why.
    pub reason: RejectReason,
}

impl keel::Rejection for Rejected {
    fn code(&self) -> u32 {
        self.reason as u32
    }

    /// Malformed messages are answered like any rejection, with the exchange's codes 1–3.
    fn refused(invalid: Invalid) -> Option<Self> {
        Some(Rejected {
            order_id: 0,
            reason: invalid.into(),
        })
    }
}

impl Rejected {
    /// Writes the response: a one-event report.
    pub(crate) fn write(&self, out: &mut Output<'_>) {
        let event = Event::Rejected {
            order_id: self.order_id,
            reason: self.reason,
        };
        write_events(&[event], out);
    }
}

/// Writes a [`Report`] of `events`: the longest prefix that fits, and how many were left off.
fn write_events(events: &[Event], out: &mut Output<'_>) {
    encode_fitting(out, RESPONSE_EVENTS, events.len(), |n| ReportRef {
        events: &events[..n],
        omitted: (events.len() - n) as u32,
    });
}

/// Writes `make(n)` for the largest `n ≤ total` whose encoding fits in `out` (binary search;
/// only reached when the whole value does not fit). Sets the response kind.
fn encode_fitting<T: Serialize>(
    out: &mut Output<'_>,
    kind: u16,
    total: usize,
    make: impl Fn(usize) -> T,
) {
    if out.encode(&make(total)).is_err() {
        let (mut lo, mut hi) = (0, total);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            out.clear();
            if out.encode(&make(mid)).is_ok() {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        out.clear();
        // Even an empty value may not fit a tiny buffer: then the payload stays empty.
        let _ = out.encode(&make(lo));
    }
    out.set_kind(kind);
}
