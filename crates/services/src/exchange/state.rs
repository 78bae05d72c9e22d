//! Snapshots, the state hash, and read-only views of the state.
//!
//! `save_state` writes a canonical [`StateV1`]: instruments by id, each book's orders in
//! priority order (bids best first, asks best first, oldest first within a price), accounts by
//! id. Slab slots, free lists and map layouts are not saved, so two exchanges holding the same
//! books and balances save the same bytes and hash equal, however they got there; `load_state`
//! rebuilds the books by re-queueing the orders in that order, which restores priority.
//!
//! # Upgrade path
//!
//! [`SCHEMA_VERSION`] is 1. To change the state's shape: keep `StateV1` as it is, add
//! `StateV2`, bump `SCHEMA_VERSION` to 2, make `save` write `StateV2`, and give `load` an arm
//! `1 => upgrade(load_serde::<StateV1>(bytes)?)` converting the old form. Journals need no
//! upgrade: message versions are upcast on decode.

use super::book::{Order, NIL};
use super::events::{AccountView, BookDepth, Holding, TopOfBook, MAX_QUERY_DEPTH};
use super::messages::Side;
use super::risk::Account;
use super::saved::SavedState;
use super::{Exchange, ExchangeLimits, Instrument};
use keel::codec::CodecError;
use keel::snapshot::{load_serde, save_serde, StateError};
use serde::{Deserialize, Serialize};

/// The state schema version `save_state` writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A resting order as seen from outside (and as saved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Order id.
    pub id: u64,
    /// Owner.
    pub account: u32,
    /// Buy or sell.
    pub side: Side,
    /// Limit price, price units.
    pub price: u64,
    /// Lots left.
    pub remaining: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct InstrumentV1 {
    id: u32,
    tick: u64,
    market_band: u64,
    total_position: u64,
    /// Bids then asks, each in priority order.
    orders: Vec<OrderView>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AccountV1 {
    id: u32,
    cash: u64,
    reserved: u64,
    holdings: Vec<Holding>,
}

/// Schema version 1 of the saved state.
#[derive(Debug, Serialize, Deserialize)]
struct StateV1 {
    limits: ExchangeLimits,
    instruments: Vec<InstrumentV1>,
    accounts: Vec<AccountV1>,
}

fn invalid(reason: impl std::fmt::Display) -> StateError {
    StateError::Invalid(format!("exchange state: {reason}"))
}

impl Exchange {
    /// The saved state as a copy: what [`SavedState`] encodes straight from the live state
    /// (the test below holds the two to the same bytes).
    #[cfg(test)]
    fn canonical(&self) -> StateV1 {
        let instruments = self.instrument_ids().map(|id| {
            let i = self.instrument(id).expect("listed");
            let orders = self.orders(id).expect("listed");
            let (tick, market_band, total_position) = (i.tick, i.market_band, i.total_position);
            InstrumentV1 {
                id,
                tick,
                market_band,
                total_position,
                orders,
            }
        });
        let accounts = self
            .accounts
            .list
            .iter()
            .enumerate()
            .filter(|(_, a)| a.open);
        let accounts = accounts.map(|(id, a)| AccountV1 {
            id: id as u32,
            cash: a.cash,
            reserved: a.reserved,
            holdings: a.holdings.clone(),
        });
        StateV1 {
            limits: self.limits,
            instruments: instruments.collect(),
            accounts: accounts.collect(),
        }
    }

    pub(crate) fn save(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(&SavedState(self), out)
    }

    /// Decodes and rebuilds a saved state. The state keeps the limits it was saved under,
    /// but its account and instrument ids must also be below `ceiling`'s (the loading
    /// exchange's limits): those tables are dense by id, so the ids decide their memory.
    pub(crate) fn load(
        schema_version: u32,
        bytes: &[u8],
        ceiling: &ExchangeLimits,
    ) -> Result<Exchange, StateError> {
        match schema_version {
            SCHEMA_VERSION => Exchange::rebuild(load_serde::<StateV1>(bytes)?, ceiling),
            found => Err(StateError::UnsupportedSchema {
                found,
                current: SCHEMA_VERSION,
            }),
        }
    }

    fn rebuild(state: StateV1, ceiling: &ExchangeLimits) -> Result<Exchange, StateError> {
        // The saved limits are not trusted with memory: reserve no more than the loader's.
        let open_orders = state.limits.max_open_orders.min(ceiling.max_open_orders);
        let mut x = Exchange::reserving(state.limits, open_orders);
        let max_accounts = x.limits.max_accounts.min(ceiling.max_accounts);
        for a in state.accounts {
            if a.id >= max_accounts || x.accounts.get(a.id).is_some() {
                return Err(invalid(format_args!(
                    "account {} is beyond max_accounts or listed twice",
                    a.id
                )));
            }
            if a.reserved > a.cash {
                return Err(invalid(format_args!(
                    "account {} reserves more than its cash",
                    a.id
                )));
            }
            x.accounts.total_cash = x
                .accounts
                .total_cash
                .checked_add(a.cash)
                .ok_or_else(|| invalid("total cash overflows"))?;
            *x.accounts.open(a.id) = Account {
                open: true,
                cash: a.cash,
                reserved: a.reserved,
                holdings: a.holdings,
            };
        }
        let max_instruments = x.limits.max_instruments.min(ceiling.max_instruments);
        for i in state.instruments {
            x.rebuild_instrument(i, max_instruments)?;
        }
        x.check_invariants().map_err(invalid)?;
        Ok(x)
    }

    fn rebuild_instrument(&mut self, i: InstrumentV1, max: u32) -> Result<(), StateError> {
        let id = i.id as usize;
        if i.id >= max || self.instrument(i.id).is_ok() || i.tick == 0 {
            return Err(invalid(format_args!(
                "instrument {} is beyond max_instruments, listed twice or has tick 0",
                i.id
            )));
        }
        if self.instruments.len() <= id {
            self.instruments.resize_with(id + 1, || None);
        }
        let (tick, market_band, total_position) = (i.tick, i.market_band, i.total_position);
        let book = super::book::Book::default();
        self.instruments[id] = Some(Instrument {
            tick,
            market_band,
            total_position,
            book,
        });
        // Every level's total is a sum of these: if they all fit, the book's sums do.
        let mut lots = 0u64;
        for o in i.orders {
            if o.id == 0 || self.accounts.get(o.account).is_none() || self.index.contains(o.id) {
                return Err(invalid(format_args!(
                    "order {} is 0, listed twice or names a closed account",
                    o.id
                )));
            }
            lots = lots.checked_add(o.remaining).ok_or_else(|| {
                invalid(format_args!("instrument {}: resting lots overflow", i.id))
            })?;
            let order = Order {
                id: o.id,
                price: o.price,
                remaining: o.remaining,
                account: o.account,
                instrument: i.id,
                side: o.side,
                level: NIL,
                prev: NIL,
                next: NIL,
            };
            let slot = self.arena.orders.insert(order);
            self.index.insert(o.id, slot);
            let book = &mut self.instruments[id].as_mut().expect("just added").book;
            book.push(&mut self.arena, slot);
        }
        Ok(())
    }

    /// A stable 64-bit digest of the canonical saved state.
    pub(crate) fn hash(&self) -> u64 {
        let mut bytes = self.hash_scratch.take();
        self.save(&mut bytes)
            .expect("encoding into a Vec cannot fail");
        hash64(&bytes)
    }

    /// Ids of the instruments, ascending.
    pub fn instrument_ids(&self) -> impl Iterator<Item = u32> + '_ {
        let present = self
            .instruments
            .iter()
            .enumerate()
            .filter(|(_, i)| i.is_some());
        present.map(|(id, _)| id as u32)
    }

    /// The best bid and ask of `instrument`.
    pub fn top_of_book(&self, instrument: u32) -> Option<TopOfBook> {
        let i = self.instrument(instrument).ok()?;
        Some(i.book.top(&self.arena, instrument))
    }

    /// Up to `depth` (at most [`MAX_QUERY_DEPTH`]) levels per side of `instrument`.
    pub fn book_depth(&self, instrument: u32, depth: u32) -> Option<BookDepth> {
        let book = &self.instrument(instrument).ok()?.book;
        let depth = depth.min(MAX_QUERY_DEPTH) as usize;
        Some(BookDepth {
            instrument,
            bids: book.depth(&self.arena, Side::Buy, depth),
            asks: book.depth(&self.arena, Side::Sell, depth),
        })
    }

    /// Every resting order of `instrument`: bids then asks, each in priority order.
    pub fn orders(&self, instrument: u32) -> Option<Vec<OrderView>> {
        let book = &self.instrument(instrument).ok()?.book;
        let view = |slot: u32| {
            let o = self.arena.orders.get(slot);
            OrderView {
                id: o.id,
                account: o.account,
                side: o.side,
                price: o.price,
                remaining: o.remaining,
            }
        };
        let mut slots = book.order_slots(&self.arena, Side::Buy);
        slots.extend(book.order_slots(&self.arena, Side::Sell));
        Some(slots.into_iter().map(view).collect())
    }

    /// Balances of `account`.
    pub fn account_view(&self, account: u32) -> Option<AccountView> {
        let a = self.accounts.get(account)?;
        Some(AccountView {
            account,
            cash: a.cash,
            reserved: a.reserved,
            holdings: a.holdings.clone(),
            omitted: 0,
        })
    }

    /// Ids of the open accounts, ascending.
    pub fn account_ids(&self) -> impl Iterator<Item = u32> + '_ {
        let open = self
            .accounts
            .list
            .iter()
            .enumerate()
            .filter(|(_, a)| a.open);
        open.map(|(id, _)| id as u32)
    }

    /// Resting orders across all books.
    pub fn open_orders(&self) -> usize {
        self.index.len()
    }

    /// Sum of all accounts' cash.
    pub fn total_cash(&self) -> u64 {
        self.accounts.total_cash
    }
}

/// A 64-bit multiply-xorshift digest over little-endian words (stable on every machine).
fn hash64(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0x243F_6A88_85A3_08D3 ^ (bytes.len() as u64).wrapping_mul(K);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(K);
        h ^= h >> 29;
    }
    h ^= h >> 32;
    h.wrapping_mul(K) ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::App;
    use keel::engine::{MessageHeader, Output};
    use keel::{Processor, Typed};

    /// The state saved straight from the books encodes exactly as the copy `StateV1` does.
    #[test]
    fn the_streamed_state_encodes_as_state_v1() {
        let mut typed = Typed::<Exchange>::default();
        let mut commands = Typed::<Exchange>::setup(3);
        commands.extend((0..20_000).map(|i| Typed::<Exchange>::workload(3, i)));
        let mut buf = vec![0u8; 4096];
        for (i, command) in commands.iter().enumerate() {
            let sequence = i as u64 + 1;
            let header = MessageHeader {
                sequence,
                timestamp_ns: sequence,
                session_id: 0,
                correlation_id: sequence,
                kind: command.kind,
                version: command.version,
            };
            let message = keel::Message {
                header,
                payload: &command.payload,
            };
            typed.apply(&message, &mut Output::new(&mut buf));
        }
        let exchange = typed.service();
        let (mut streamed, mut copied) = (Vec::new(), Vec::new());
        exchange.save(&mut streamed).unwrap();
        save_serde(&exchange.canonical(), &mut copied).unwrap();
        assert!(exchange.instrument_ids().count() > 0 && streamed.len() > 1000);
        assert_eq!(streamed, copied);
        assert_eq!(exchange.hash(), hash64(&copied));
    }
}
