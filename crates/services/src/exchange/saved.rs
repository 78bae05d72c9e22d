//! The saved state written straight from the live books and accounts: serde views that
//! encode exactly as `state::StateV1` does (same fields, same order, same lengths), without
//! building that copy first. Saving a snapshot and hashing the state therefore allocate
//! nothing on the business-logic thread beyond the buffer they encode into.

use super::book::NIL;
use super::messages::Side;
use super::{Exchange, Instrument};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

/// The whole state, encoded as `StateV1`.
pub(super) struct SavedState<'a>(pub(super) &'a Exchange);

impl Serialize for SavedState<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("StateV1", 3)?;
        state.serialize_field("limits", &self.0.limits)?;
        state.serialize_field("instruments", &Instruments(self.0))?;
        state.serialize_field("accounts", &Accounts(self.0))?;
        state.end()
    }
}

/// Instruments by id, each as `InstrumentV1`.
struct Instruments<'a>(&'a Exchange);

impl Serialize for Instruments<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let present = || self.0.instruments.iter().enumerate();
        let present = move || present().filter_map(|(id, i)| Some((id as u32, i.as_ref()?)));
        let mut seq = serializer.serialize_seq(Some(present().count()))?;
        for (id, instrument) in present() {
            seq.serialize_element(&SavedInstrument {
                exchange: self.0,
                id,
                instrument,
            })?;
        }
        seq.end()
    }
}

struct SavedInstrument<'a> {
    exchange: &'a Exchange,
    id: u32,
    instrument: &'a Instrument,
}

impl Serialize for SavedInstrument<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let i = self.instrument;
        let mut state = serializer.serialize_struct("InstrumentV1", 5)?;
        state.serialize_field("id", &self.id)?;
        state.serialize_field("tick", &i.tick)?;
        state.serialize_field("market_band", &i.market_band)?;
        state.serialize_field("total_position", &i.total_position)?;
        state.serialize_field("orders", &Orders(self))?;
        state.end()
    }
}

/// A book's orders: bids then asks, each best price first, oldest first within a price.
struct Orders<'a>(&'a SavedInstrument<'a>);

impl Serialize for Orders<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (arena, book) = (&self.0.exchange.arena, &self.0.instrument.book);
        let levels = || {
            [Side::Buy, Side::Sell]
                .into_iter()
                .flat_map(|side| book.level_slots(arena, side))
                .map(|slot| arena.levels.get(slot))
        };
        let count: usize = levels().map(|level| level.count as usize).sum();
        let mut seq = serializer.serialize_seq(Some(count))?;
        for level in levels() {
            let mut slot = level.head;
            while slot != NIL {
                let o = arena.orders.get(slot);
                seq.serialize_element(&super::state::OrderView {
                    id: o.id,
                    account: o.account,
                    side: o.side,
                    price: o.price,
                    remaining: o.remaining,
                })?;
                slot = o.next;
            }
        }
        seq.end()
    }
}

/// Open accounts by id, each as `AccountV1`.
struct Accounts<'a>(&'a Exchange);

impl Serialize for Accounts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let open = || {
            let list = self.0.accounts.list.iter().enumerate();
            list.filter(|(_, a)| a.open)
        };
        let mut seq = serializer.serialize_seq(Some(open().count()))?;
        for (id, a) in open() {
            seq.serialize_element(&SavedAccount {
                id: id as u32,
                cash: a.cash,
                reserved: a.reserved,
                holdings: &a.holdings,
            })?;
        }
        seq.end()
    }
}

/// Encodes as `AccountV1`.
#[derive(Serialize)]
#[serde(rename = "AccountV1")]
struct SavedAccount<'a> {
    id: u32,
    cash: u64,
    reserved: u64,
    holdings: &'a [super::events::Holding],
}

/// The buffer the state hash encodes the state into, kept between hashes: hashing allocates
/// only when the state has outgrown every earlier one. A clone starts with an empty buffer.
#[derive(Debug, Default)]
pub(super) struct HashScratch(std::sync::Mutex<Vec<u8>>);

impl HashScratch {
    /// The buffer, emptied.
    pub(super) fn take(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // Cleared before each use: a panic while it was held leaves nothing to trust.
        let mut bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        bytes.clear();
        bytes
    }
}

impl Clone for HashScratch {
    fn clone(&self) -> Self {
        Self::default()
    }
}
