//! Accounts, reservations and settlement: the pre-trade risk side of the exchange.
//!
//! Every account has one cash balance and a position per instrument. A resting or executing
//! buy order reserves `limit price × remaining lots` of cash; a sell order reserves its
//! remaining lots of position. Free = held − reserved, and an order is accepted only when its
//! reservation fits in the free amount, so balances never go negative. Reservations are
//! released by fills (the buyer's at the order's own limit: the price improvement goes back
//! to free cash), cancels, reduces, and unfilled IOC / market remainders.
//!
//! Overflow: trades only move cash and lots between accounts, so no balance can exceed the
//! exchange-wide totals, and those are checked on every deposit.

use super::events::{Holding, RejectReason};
use serde::{Deserialize, Serialize};

/// One account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) open: bool,
    pub(crate) cash: u64,
    pub(crate) reserved: u64,
    /// Sorted by instrument id.
    pub(crate) holdings: Vec<Holding>,
}

impl Account {
    fn holding_index(&self, instrument: u32) -> Result<usize, usize> {
        self.holdings
            .binary_search_by_key(&instrument, |h| h.instrument)
    }

    /// The holding of `instrument` (zero when none).
    pub(crate) fn holding(&self, instrument: u32) -> Holding {
        match self.holding_index(instrument) {
            Ok(i) => self.holdings[i],
            Err(_) => Holding {
                instrument,
                qty: 0,
                reserved: 0,
            },
        }
    }

    /// The holding of `instrument`, created at zero when missing.
    pub(crate) fn holding_mut(&mut self, instrument: u32) -> &mut Holding {
        let i = match self.holding_index(instrument) {
            Ok(i) => i,
            Err(i) => {
                self.holdings.insert(
                    i,
                    Holding {
                        instrument,
                        qty: 0,
                        reserved: 0,
                    },
                );
                i
            }
        };
        &mut self.holdings[i]
    }

    /// Cash not reserved by orders.
    pub(crate) fn free_cash(&self) -> u64 {
        self.cash - self.reserved
    }

    /// Lots of `instrument` not reserved by orders.
    pub(crate) fn free_position(&self, instrument: u32) -> u64 {
        let h = self.holding(instrument);
        h.qty - h.reserved
    }
}

/// All accounts, indexed by id (ids are dense: `0..ExchangeLimits::max_accounts`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Accounts {
    pub(crate) list: Vec<Account>,
    /// Sum of every account's cash.
    pub(crate) total_cash: u64,
}

impl Accounts {
    /// The open account `id`.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&Account> {
        self.list.get(id as usize).filter(|a| a.open)
    }

    /// The open account `id`, mutably. Panics when it is not open (a broken invariant).
    #[inline]
    pub(crate) fn at(&mut self, id: u32) -> &mut Account {
        let account = &mut self.list[id as usize];
        debug_assert!(account.open);
        account
    }

    /// Account `id`, opened (at zero) when new. The caller checked the id limit.
    pub(crate) fn open(&mut self, id: u32) -> &mut Account {
        let i = id as usize;
        if self.list.len() <= i {
            self.list.resize_with(i + 1, Account::default);
        }
        let account = &mut self.list[i];
        account.open = true;
        account
    }

    /// Credits `amount` of cash to a new or existing account.
    pub(crate) fn deposit(&mut self, id: u32, amount: u64) -> Result<&Account, RejectReason> {
        let total = self
            .total_cash
            .checked_add(amount)
            .ok_or(RejectReason::BalanceOverflow)?;
        self.total_cash = total;
        let account = self.open(id);
        account.cash += amount;
        Ok(account)
    }

    /// Debits `amount` of free cash.
    pub(crate) fn withdraw(&mut self, id: u32, amount: u64) -> Result<&Account, RejectReason> {
        let free = self
            .get(id)
            .ok_or(RejectReason::UnknownAccount)?
            .free_cash();
        if free < amount {
            return Err(RejectReason::InsufficientCash);
        }
        self.total_cash -= amount;
        let account = self.at(id);
        account.cash -= amount;
        Ok(account)
    }

    /// Settles one trade of `qty` lots at `price`. The buyer's reservation was made at
    /// `buyer_limit` (≥ `price`) per lot; the seller's in lots.
    #[inline]
    pub(crate) fn settle(&mut self, trade: Settlement) {
        let notional = trade.price * trade.qty;
        let buyer = self.at(trade.buyer);
        buyer.reserved -= trade.buyer_limit * trade.qty;
        buyer.cash -= notional;
        buyer.holding_mut(trade.instrument).qty += trade.qty;
        let seller = self.at(trade.seller);
        seller.cash += notional;
        let holding = seller.holding_mut(trade.instrument);
        holding.qty -= trade.qty;
        holding.reserved -= trade.qty;
    }

    /// Reserves what an order of `qty` lots on `buy` side at `limit` needs (checked before).
    #[inline]
    pub(crate) fn reserve(&mut self, id: u32, instrument: u32, buy: bool, limit: u64, qty: u64) {
        let account = self.at(id);
        if buy {
            account.reserved += limit * qty;
        } else {
            account.holding_mut(instrument).reserved += qty;
        }
    }

    /// Releases what `qty` lots of an order on `buy` side at `limit` had reserved.
    #[inline]
    pub(crate) fn release(&mut self, id: u32, instrument: u32, buy: bool, limit: u64, qty: u64) {
        let account = self.at(id);
        if buy {
            account.reserved -= limit * qty;
        } else {
            account.holding_mut(instrument).reserved -= qty;
        }
    }
}

/// One trade, as the accounts see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settlement {
    pub(crate) instrument: u32,
    pub(crate) buyer: u32,
    pub(crate) buyer_limit: u64,
    pub(crate) seller: u32,
    pub(crate) price: u64,
    pub(crate) qty: u64,
}
