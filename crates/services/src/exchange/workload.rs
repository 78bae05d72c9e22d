//! The canonical seeded workload: an exchange-core-like mix, mostly moves and cancels with
//! some places that match, as a pure function of `(seed, i)`.
//!
//! Message `i` belongs to slot `i % slots` in round `i / slots`. Each slot runs order
//! lifecycles of `cycle` rounds (staggered per slot): a passive GTC place in the first round,
//! a cancel in the last, and in between a move (0.5% of them crossing the spread), a reduce
//! by one lot (6%), or an aggressive IOC / FOK / market order on a random instrument (3%). The
//! order a slot refers to is recomputed from `(seed, slot, lifecycle)`, so no state is needed;
//! a reference to an order that has meanwhile traded away is rejected as `UnknownOrder`.
//! With the defaults: ~6% passive places, ~3% aggressive places, ~6% cancels, ~5% reduces and
//! ~80% moves.

use super::messages::{
    AddInstrument, CancelOrder, CashTransfer, MoveOrder, OrderType, PlaceOrder, PositionTransfer,
    ReduceOrder, Request, Side,
};

/// Shape of the canonical workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadParams {
    /// Instruments `0..instruments`.
    pub instruments: u32,
    /// Funded accounts `0..accounts`.
    pub accounts: u32,
    /// Order slots (about this many resting orders in steady state).
    pub slots: u64,
    /// Rounds per order lifecycle (place, moves…, cancel).
    pub cycle: u64,
    /// Tick size, price units.
    pub tick: u64,
    /// Mid price of instrument 0, price units (instrument k: + k × 100 ticks).
    pub mid: u64,
    /// Passive orders rest 1..=depth_ticks ticks away from the mid.
    pub depth_ticks: u64,
    /// Market-order band, in ticks.
    pub band_ticks: u64,
    /// Cash deposited into each account, cash units.
    pub cash: u64,
    /// Lots of each instrument deposited into each account.
    pub lots: u64,
}

/// The defaults used by `App::workload` and `App::setup`.
pub const WORKLOAD: WorkloadParams = WorkloadParams {
    instruments: 8,
    accounts: 1000,
    slots: 8192,
    cycle: 16,
    tick: 100,
    mid: 1_000_000,
    depth_ticks: 50,
    band_ticks: 10,
    cash: 10_000_000_000_000,
    lots: 10_000_000,
};

/// Order ids of aggressive (never resting) workload orders have this bit set.
const AGGRESSIVE_ID_BIT: u64 = 1 << 62;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A well-mixed 64-bit value from three inputs.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    splitmix64(seed ^ splitmix64(a ^ splitmix64(b)))
}

/// The resting order of one slot lifecycle.
#[derive(Debug, Clone, Copy)]
struct SlotOrder {
    id: u64,
    account: u32,
    instrument: u32,
    side: Side,
    qty: u64,
}

impl WorkloadParams {
    /// Admin messages that create the instruments and fund the accounts.
    pub fn setup(&self) -> Vec<Request> {
        let mut out = Vec::new();
        for instrument in 0..self.instruments {
            let market_band = self.band_ticks * self.tick;
            out.push(Request::AddInstrument(AddInstrument {
                instrument,
                tick: self.tick,
                market_band,
            }));
        }
        for account in 0..self.accounts {
            out.push(Request::DepositCash(CashTransfer {
                account,
                amount: self.cash,
            }));
            for instrument in 0..self.instruments {
                let t = PositionTransfer {
                    account,
                    instrument,
                    qty: self.lots,
                };
                out.push(Request::DepositPosition(t));
            }
        }
        out
    }

    /// Message `i` of the workload for `seed`.
    pub fn request(&self, seed: u64, i: u64) -> Request {
        let (round, slot) = (i / self.slots, i % self.slots);
        let t = round + mix(seed, slot, 0x57A6) % self.cycle;
        let (lifecycle, phase) = (t / self.cycle, t % self.cycle);
        let o = self.slot_order(seed, slot, lifecycle);
        let r = mix(seed, i, 0x5EED);
        if phase == 0 || round == 0 {
            let price = self.passive_price(o.instrument, o.side, r);
            return Request::Place(PlaceOrder {
                order_id: o.id,
                account: o.account,
                instrument: o.instrument,
                side: o.side,
                order_type: OrderType::Gtc,
                price,
                qty: o.qty,
            });
        }
        if phase == self.cycle - 1 {
            return Request::Cancel(CancelOrder {
                account: o.account,
                order_id: o.id,
            });
        }
        match r % 1000 {
            0..30 => self.aggressive(i, r),
            30..90 => Request::Reduce(ReduceOrder {
                account: o.account,
                order_id: o.id,
                by: 1,
            }),
            _ => {
                let price = if (r >> 12) % 1000 < 5 {
                    self.crossing_price(o.instrument, o.side, r >> 16)
                } else {
                    self.passive_price(o.instrument, o.side, r >> 16)
                };
                Request::Move(MoveOrder {
                    account: o.account,
                    order_id: o.id,
                    price,
                })
            }
        }
    }

    fn slot_order(&self, seed: u64, slot: u64, lifecycle: u64) -> SlotOrder {
        let r = mix(seed, slot, lifecycle);
        SlotOrder {
            id: lifecycle * self.slots + slot + 1,
            account: (r % u64::from(self.accounts)) as u32,
            instrument: (slot % u64::from(self.instruments)) as u32,
            side: if (r >> 32) & 1 == 0 {
                Side::Buy
            } else {
                Side::Sell
            },
            qty: 10 + (r >> 40) % 91,
        }
    }

    fn mid(&self, instrument: u32) -> u64 {
        self.mid + u64::from(instrument) * 100 * self.tick
    }

    /// A price 1..=depth ticks on the resting side of the mid.
    fn passive_price(&self, instrument: u32, side: Side, r: u64) -> u64 {
        let away = (1 + r % self.depth_ticks) * self.tick;
        match side {
            Side::Buy => self.mid(instrument) - away,
            Side::Sell => self.mid(instrument) + away,
        }
    }

    /// A price 1..=3 ticks into the opposite side.
    fn crossing_price(&self, instrument: u32, side: Side, r: u64) -> u64 {
        let into = (1 + r % 3) * self.tick;
        match side {
            Side::Buy => self.mid(instrument) + into,
            Side::Sell => self.mid(instrument) - into,
        }
    }

    fn aggressive(&self, i: u64, r: u64) -> Request {
        let side = if (r >> 7) & 1 == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let instrument = ((r >> 8) % u64::from(self.instruments)) as u32;
        let order_type = match (r >> 40) % 10 {
            0..5 => OrderType::Ioc,
            5..7 => OrderType::Fok,
            _ => OrderType::Market,
        };
        Request::Place(PlaceOrder {
            order_id: AGGRESSIVE_ID_BIT | i,
            account: ((r >> 20) % u64::from(self.accounts)) as u32,
            instrument,
            side,
            order_type,
            price: self.crossing_price(instrument, side, r >> 44),
            qty: 1 + (r >> 50) % 20,
        })
    }
}
