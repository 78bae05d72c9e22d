//! A seeded random message stream that exercises everything: all order types, cancels,
//! moves and reduces of live, dead and foreign orders, risk rejections (small balances),
//! limits (with `small_limits`), deposits and withdrawals, queries, v1 messages and garbage.

use keel_services::exchange::*;
use keel_services::Command;

/// A tiny deterministic RNG (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One generated message: either a request (what the reference executes) or raw bytes with
/// the rejection the exchange must answer.
#[derive(Debug, Clone)]
pub enum Input {
    Request(Request),
    /// A legacy v1 place; the reference executes its upcast.
    PlaceV1(PlaceOrderV1),
    Garbage {
        command: Command,
        reason: RejectReason,
    },
}

impl Input {
    pub fn command(&self) -> Command {
        match self {
            Input::Request(r) => r.to_command(),
            Input::PlaceV1(p) => place_order_v1(p),
            Input::Garbage { command, .. } => command.clone(),
        }
    }
}

pub struct Generator {
    rng: Rng,
    /// Every id sent in a place, with its account and instrument (live or long gone).
    ids: Vec<(u64, u32, u32)>,
    /// Resting orders as far as the answers showed: id → (account, instrument).
    live: std::collections::BTreeMap<u64, (u32, u32)>,
    next_id: u64,
    sequence: u64,
}

/// Instruments 0..=4 exist after `setup` (ids 5 and 6 do not; 6 is over the limit).
const TICKS: [u64; 5] = [1, 5, 10, 100, 25];
const ACCOUNTS: u64 = 12;

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: Rng(seed),
            ids: Vec::new(),
            live: Default::default(),
            next_id: 1,
            sequence: 0,
        }
    }

    /// Instruments and modestly funded accounts (some with nothing).
    pub fn setup(&mut self) -> Vec<Input> {
        let mut out = Vec::new();
        for (i, &tick) in TICKS.iter().enumerate() {
            let add = AddInstrument {
                instrument: i as u32,
                tick,
                market_band: tick * 3,
            };
            out.push(Input::Request(Request::AddInstrument(add)));
        }
        for account in 0..ACCOUNTS as u32 {
            let amount = 50_000 + self.rng.below(2_000_000);
            out.push(Input::Request(Request::DepositCash(CashTransfer {
                account,
                amount,
            })));
            for instrument in 0..TICKS.len() as u32 {
                if self.rng.chance(70) {
                    let qty = self.rng.below(400) + 1;
                    let t = PositionTransfer {
                        account,
                        instrument,
                        qty,
                    };
                    out.push(Input::Request(Request::DepositPosition(t)));
                }
            }
        }
        self.sequence += out.len() as u64;
        out
    }

    pub fn next(&mut self) -> Input {
        self.sequence += 1;
        match self.rng.below(100) {
            0..40 => self.place(),
            40..55 => {
                let (account, order_id, _) = self.target();
                Input::Request(Request::Cancel(CancelOrder { account, order_id }))
            }
            55..75 => {
                let (account, order_id, instrument) = self.target();
                let side = self.side();
                let price = self.price(instrument, side);
                Input::Request(Request::Move(MoveOrder {
                    account,
                    order_id,
                    price,
                }))
            }
            75..85 => {
                let (account, order_id, _) = self.target();
                let by = if self.rng.chance(5) {
                    0
                } else {
                    self.rng.below(30) + 1
                };
                Input::Request(Request::Reduce(ReduceOrder {
                    account,
                    order_id,
                    by,
                }))
            }
            85..93 => self.admin(),
            93..97 => self.query(),
            _ => self.garbage(),
        }
    }

    fn instrument(&mut self) -> u32 {
        if self.rng.chance(3) {
            5 + self.rng.below(2) as u32
        } else {
            self.rng.below(TICKS.len() as u64) as u32
        }
    }

    fn account(&mut self) -> u32 {
        if self.rng.chance(2) {
            12 + self.rng.below(4) as u32 // 12, 13 unfunded; 14, 15 over the limit
        } else {
            self.rng.below(ACCOUNTS) as u32
        }
    }

    /// A price around 100 ticks (bids mostly below, asks mostly above), sometimes invalid.
    fn price(&mut self, instrument: u32, side: Side) -> u64 {
        let tick = TICKS.get(instrument as usize).copied().unwrap_or(1);
        match (self.rng.below(100), side) {
            (0, _) => 0,
            (1, _) => tick * 100 + 1, // off tick (unless tick 1)
            (2, _) => 2_000_000,      // above max_price
            (3, _) => u64::MAX / 2,   // far above max_price
            (_, Side::Buy) => tick * (86 + self.rng.below(17)),
            (_, Side::Sell) => tick * (98 + self.rng.below(17)),
        }
    }

    fn side(&mut self) -> Side {
        if self.rng.chance(50) {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn order_id(&mut self) -> u64 {
        match self.rng.below(100) {
            0..8 => 0,
            8..10 => ASSIGNED_ORDER_ID_BIT | 7,
            10..16 if !self.ids.is_empty() => {
                self.ids[self.rng.below(self.ids.len() as u64) as usize].0
            }
            _ => {
                self.next_id += 1;
                self.next_id
            }
        }
    }

    fn place(&mut self) -> Input {
        let instrument = self.instrument();
        let order_type = match self.rng.below(100) {
            0..50 => OrderType::Gtc,
            50..70 => OrderType::Ioc,
            70..85 => OrderType::Fok,
            _ => OrderType::Market,
        };
        let qty = match self.rng.below(100) {
            0 => 0,
            1 => 61,
            _ => 1 + self.rng.below(40),
        };
        let (account, side) = (self.account(), self.side());
        let price = self.price(instrument, side);
        if self.rng.chance(4) {
            self.ids
                .push((ASSIGNED_ORDER_ID_BIT | self.sequence, account, instrument));
            return Input::PlaceV1(PlaceOrderV1 {
                account,
                instrument,
                side,
                price,
                qty,
            });
        }
        let order_id = self.order_id();
        let id = if order_id == 0 {
            ASSIGNED_ORDER_ID_BIT | self.sequence
        } else {
            order_id
        };
        if order_type == OrderType::Gtc || self.rng.chance(10) {
            self.ids.push((id, account, instrument));
        }
        Input::Request(Request::Place(PlaceOrder {
            order_id,
            account,
            instrument,
            side,
            order_type,
            price,
            qty,
        }))
    }

    /// Learns which orders rest from the events of the last message.
    pub fn observe(&mut self, events: &[Event]) {
        for event in events {
            match *event {
                Event::Accepted {
                    order_id,
                    account,
                    instrument,
                    ..
                } => {
                    self.live.insert(order_id, (account, instrument));
                }
                Event::Trade {
                    maker_order,
                    maker_remaining: 0,
                    ..
                } => {
                    self.live.remove(&maker_order);
                }
                Event::Trade {
                    taker_order,
                    taker_remaining: 0,
                    ..
                }
                | Event::Cancelled {
                    order_id: taker_order,
                    ..
                }
                | Event::Reduced {
                    order_id: taker_order,
                    remaining: 0,
                    ..
                } => {
                    self.live.remove(&taker_order);
                }
                _ => {}
            }
        }
    }

    /// A known id: mostly a resting one, else any id ever sent (often dead) or an unknown
    /// one; with its owner most of the time, and its instrument.
    fn target(&mut self) -> (u32, u64, u32) {
        if !self.live.is_empty() && self.rng.chance(85) {
            let n = self.live.len();
            let (&id, &(owner, instrument)) = self
                .live
                .iter()
                .nth(self.rng.below(n as u64) as usize)
                .unwrap();
            let account = if self.rng.chance(4) {
                self.rng.below(ACCOUNTS) as u32
            } else {
                owner
            };
            return (account, id, instrument);
        }
        if self.ids.is_empty() || self.rng.chance(20) {
            return (self.account(), 999_999, 0);
        }
        let n = self.ids.len() as u64;
        let back = if self.rng.chance(80) {
            self.rng.below(n.min(60))
        } else {
            self.rng.below(n)
        };
        let (id, owner, instrument) = self.ids[(n - 1 - back) as usize];
        let account = if self.rng.chance(5) {
            self.rng.below(ACCOUNTS) as u32
        } else {
            owner
        };
        (account, id, instrument)
    }

    fn admin(&mut self) -> Input {
        let account = self.account();
        let instrument = self.instrument();
        let amount = match self.rng.below(20) {
            0 => 0,
            1 => u64::MAX,
            _ => 1 + self.rng.below(300_000),
        };
        let qty = if self.rng.chance(5) {
            0
        } else {
            1 + self.rng.below(200)
        };
        Input::Request(match self.rng.below(6) {
            0 => Request::DepositCash(CashTransfer { account, amount }),
            1 => Request::WithdrawCash(CashTransfer { account, amount }),
            2 => Request::DepositPosition(PositionTransfer {
                account,
                instrument,
                qty,
            }),
            3 => Request::WithdrawPosition(PositionTransfer {
                account,
                instrument,
                qty,
            }),
            4 => {
                let tick = self.rng.below(3) * 7;
                Request::AddInstrument(AddInstrument {
                    instrument,
                    tick,
                    market_band: 9,
                })
            }
            _ => Request::DepositCash(CashTransfer {
                account,
                amount: amount / 1000 + 1,
            }),
        })
    }

    fn query(&mut self) -> Input {
        Input::Request(if self.rng.chance(50) {
            let depth = self.rng.below(80) as u32;
            Request::QueryBook(QueryBook {
                instrument: self.instrument(),
                depth,
            })
        } else {
            Request::QueryAccount(QueryAccount {
                account: self.account(),
            })
        })
    }

    fn garbage(&mut self) -> Input {
        let cancel = Request::Cancel(CancelOrder {
            account: 1,
            order_id: 1,
        })
        .to_command();
        let (command, reason) = match self.rng.below(4) {
            0 => (Command { kind: 99, ..cancel }, RejectReason::UnknownKind),
            1 => (
                Command {
                    version: 2,
                    ..cancel
                },
                RejectReason::UnsupportedVersion,
            ),
            2 => (
                Command {
                    version: 0,
                    ..cancel
                },
                RejectReason::UnsupportedVersion,
            ),
            _ => {
                let mut payload = cancel.payload.clone();
                payload.pop();
                (
                    Command { payload, ..cancel },
                    RejectReason::MalformedPayload,
                )
            }
        };
        Input::Garbage { command, reason }
    }
}
