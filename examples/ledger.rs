//! A bank-account ledger on keel's typed service layer: open, deposit, withdraw (refused when
//! funds are short), transfer, balance. It runs some commands, stops, restarts from the same
//! data directory (snapshot + journal replay) and checks that the balances survived.
//!
//! `cargo run --example ledger`

use keel::{engine::MessageHeader, service::call, CallError, Config, Engine, Rejection, Service};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, error::Error};

#[derive(Serialize, Deserialize)]
pub struct Account(pub u64);
#[derive(Serialize, Deserialize)]
pub struct Amount {
    pub account: u64,
    pub cents: u64,
}
#[derive(Serialize, Deserialize)]
pub struct Transfer {
    pub from: u64,
    pub to: u64,
    pub cents: u64,
}

keel::commands! {
    /// Every ledger command under its wire kind (all at version 1): kind => Variant(payload).
    pub enum LedgerCommand {
        1 => Open(Account),
        2 => Deposit(Amount),
        3 => Withdraw(Amount),
        4 => Transfer(Transfer),
        5 => Balance(Account),
    }
}
use LedgerCommand as C;

/// Why the ledger refuses a command. The codes are stable: they reach clients.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum LedgerError {
    NoSuchAccount { account: u64 },
    AccountExists,
    InsufficientFunds { balance: u64 },
    Overflow,
}

impl Rejection for LedgerError {
    fn code(&self) -> u32 {
        match self {
            LedgerError::NoSuchAccount { .. } => 1,
            LedgerError::AccountExists => 2,
            LedgerError::InsufficientFunds { .. } => 3,
            LedgerError::Overflow => 4,
        }
    }
}

/// Balances in cents by account: the whole state, snapshotted and hashed as it is (serde).
#[derive(Default)]
struct Ledger {
    balances: BTreeMap<u64, u64>,
}

impl Ledger {
    fn balance(&self, account: u64) -> Result<u64, LedgerError> {
        let missing = LedgerError::NoSuchAccount { account };
        self.balances.get(&account).copied().ok_or(missing)
    }
    fn debit(&self, account: u64, cents: u64) -> Result<u64, LedgerError> {
        let balance = self.balance(account)?;
        let short = LedgerError::InsufficientFunds { balance };
        balance.checked_sub(cents).ok_or(short)
    }
    fn credit(&self, account: u64, cents: u64) -> Result<u64, LedgerError> {
        let balance = self.balance(account)?;
        balance.checked_add(cents).ok_or(LedgerError::Overflow)
    }
    fn set(&mut self, account: u64, balance: u64) -> u64 {
        self.balances.insert(account, balance);
        balance
    }
}

impl Service for Ledger {
    type Command = LedgerCommand;
    /// Every command answers with the balance of the account it names (`from`, for a transfer).
    type Reply<'a> = u64;
    type Rejection = LedgerError;
    type State = BTreeMap<u64, u64>;

    /// Every check comes before any change: a rejected command leaves the state as it was.
    fn apply(&mut self, command: LedgerCommand, _: &MessageHeader) -> Result<u64, LedgerError> {
        match command {
            C::Open(a) if self.balances.contains_key(&a.0) => Err(LedgerError::AccountExists),
            C::Open(a) => Ok(self.set(a.0, 0)),
            C::Deposit(d) => Ok(self.set(d.account, self.credit(d.account, d.cents)?)),
            C::Withdraw(w) => Ok(self.set(w.account, self.debit(w.account, w.cents)?)),
            C::Transfer(t) if t.from == t.to => self.debit(t.from, t.cents).and(self.balance(t.to)),
            C::Transfer(t) => {
                let (left, credited) = (self.debit(t.from, t.cents)?, self.credit(t.to, t.cents)?);
                self.set(t.to, credited);
                Ok(self.set(t.from, left))
            }
            C::Balance(a) => self.balance(a.0),
        }
    }

    fn state(&self) -> &BTreeMap<u64, u64> {
        &self.balances
    }
    fn restore(&mut self, balances: BTreeMap<u64, u64>) {
        self.balances = balances;
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?; // under the system's temp dir, removed when dropped
    let mut config = Config::with_data_dir(dir.path());
    config.snapshot_interval_messages = 4; // a snapshot after message 4; the rest stays journaled
    config.snapshot_on_shutdown = false; // so the restart replays the journal after it
    let mut engine = Engine::start(config.clone(), keel::Typed::new(Ledger::default()))?;
    let mut responses = engine.take_responses().ok_or("responses taken")?;
    let mut send = |command| call::<Ledger>(engine.submitter(), &mut responses, &command);
    let deposit = |account, cents| C::Deposit(Amount { account, cents });
    let withdraw = |account, cents| C::Withdraw(Amount { account, cents });
    let transfer = |from, to, cents| C::Transfer(Transfer { from, to, cents });
    send(C::Open(Account(1)))?;
    send(C::Open(Account(2)))?;
    send(deposit(1, 10_000))?;
    let short = LedgerError::InsufficientFunds { balance: 0 };
    assert!(matches!(send(withdraw(2, 500)), Err(CallError::Rejected(e)) if e == short));
    assert_eq!(send(transfer(1, 2, 2_500))?, 7_500);
    assert_eq!(send(withdraw(1, 1_000))?, 6_500);
    let hash = engine.shutdown()?.into_inner().state_hash();

    let mut engine = Engine::start(config, keel::Typed::new(Ledger::default()))?; // snapshot + replay
    let recovered = engine.recovered();
    assert_eq!((recovered.snapshot_sequence, recovered.replayed), (4, 2));
    let mut responses = engine.take_responses().ok_or("responses taken")?;
    let mut send = |command| call::<Ledger>(engine.submitter(), &mut responses, &command);
    let (one, two) = (send(C::Balance(Account(1)))?, send(C::Balance(Account(2)))?);
    assert_eq!((one, two), (6_500, 2_500));
    assert_eq!(engine.shutdown()?.into_inner().state_hash(), hash);
    println!(
        "ledger: an overdraft refused ({short:?}); restarted from the snapshot at {} plus {} \
         journaled messages: balances {one} and {two} cents, state hash {hash:#x} as before",
        recovered.snapshot_sequence, recovered.replayed
    );
    Ok(())
}
