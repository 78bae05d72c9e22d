//! Admin messages: instruments, and cash and position transfers in and out of accounts.

use super::book::Book;
use super::events::{Event, RejectReason};
use super::messages::{AddInstrument, CashTransfer, PositionTransfer};
use super::{Exchange, Instrument};

type Checked<T> = Result<T, RejectReason>;

impl Exchange {
    pub(crate) fn add_instrument(&mut self, a: &AddInstrument) -> Checked<()> {
        if a.instrument >= self.limits.max_instruments {
            return Err(RejectReason::InstrumentLimit);
        }
        if self.instrument(a.instrument).is_ok() {
            return Err(RejectReason::InstrumentExists);
        }
        if a.tick == 0 {
            return Err(RejectReason::InvalidTick);
        }
        let i = a.instrument as usize;
        if self.instruments.len() <= i {
            self.instruments.resize_with(i + 1, || None);
        }
        self.instruments[i] = Some(Instrument {
            tick: a.tick,
            market_band: a.market_band,
            total_position: 0,
            book: Book::default(),
        });
        self.events.push(Event::InstrumentAdded {
            instrument: a.instrument,
            tick: a.tick,
            market_band: a.market_band,
        });
        Ok(())
    }

    pub(crate) fn deposit_cash(&mut self, t: &CashTransfer) -> Checked<()> {
        if t.account >= self.limits.max_accounts {
            return Err(RejectReason::AccountLimit);
        }
        if t.amount == 0 {
            return Err(RejectReason::InvalidAmount);
        }
        let account = self.accounts.deposit(t.account, t.amount)?;
        let event = Event::Cash {
            account: t.account,
            cash: account.cash,
            reserved: account.reserved,
        };
        self.events.push(event);
        Ok(())
    }

    pub(crate) fn withdraw_cash(&mut self, t: &CashTransfer) -> Checked<()> {
        self.accounts
            .get(t.account)
            .ok_or(RejectReason::UnknownAccount)?;
        if t.amount == 0 {
            return Err(RejectReason::InvalidAmount);
        }
        let account = self.accounts.withdraw(t.account, t.amount)?;
        let event = Event::Cash {
            account: t.account,
            cash: account.cash,
            reserved: account.reserved,
        };
        self.events.push(event);
        Ok(())
    }

    pub(crate) fn deposit_position(&mut self, t: &PositionTransfer) -> Checked<()> {
        if t.account >= self.limits.max_accounts {
            return Err(RejectReason::AccountLimit);
        }
        let total = self.instrument(t.instrument)?.total_position;
        if t.qty == 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        let total = total
            .checked_add(t.qty)
            .ok_or(RejectReason::BalanceOverflow)?;
        self.instruments[t.instrument as usize]
            .as_mut()
            .expect("checked")
            .total_position = total;
        let holding = self.accounts.open(t.account).holding_mut(t.instrument);
        holding.qty += t.qty;
        let holding = *holding;
        self.push_position(t, holding);
        Ok(())
    }

    pub(crate) fn withdraw_position(&mut self, t: &PositionTransfer) -> Checked<()> {
        self.instrument(t.instrument)?;
        let account = self
            .accounts
            .get(t.account)
            .ok_or(RejectReason::UnknownAccount)?;
        if t.qty == 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        if account.free_position(t.instrument) < t.qty {
            return Err(RejectReason::InsufficientPosition);
        }
        let instrument = self.instruments[t.instrument as usize]
            .as_mut()
            .expect("checked");
        instrument.total_position -= t.qty;
        let holding = self.accounts.at(t.account).holding_mut(t.instrument);
        holding.qty -= t.qty;
        let holding = *holding;
        self.push_position(t, holding);
        Ok(())
    }

    fn push_position(&mut self, t: &PositionTransfer, h: super::events::Holding) {
        self.events.push(Event::Position {
            account: t.account,
            instrument: t.instrument,
            qty: h.qty,
            reserved: h.reserved,
        });
    }
}
