//! The typed service layer end to end through the engine: typed calls, a rejection as a value,
//! a contained panic, a version-1 command upcast live and on replay, pipelined submits, and a
//! restart from snapshot + journal and from the journal alone with the same state hash.

use keel::engine::{MessageHeader, ResponseReceiver};
use keel::ring::Poll;
use keel::service::Invalid;
use keel::service::{call, decode_response, submit};
use keel::{CallError, Command, Config, Engine, FlushPolicy, Rejection, Service, Submission};
use keel::{Typed, WaitStrategy};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposit {
    pub cents: u64,
}

/// Version 1 of kind 1 counted whole units of 100 cents.
#[derive(Debug, Serialize, Deserialize)]
pub struct DepositV1 {
    pub units: u32,
}

impl From<DepositV1> for Deposit {
    fn from(v1: DepositV1) -> Self {
        Deposit {
            cents: u64::from(v1.units) * 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdraw {
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boom;

keel::commands! {
    #[derive(Debug, Clone, PartialEq)]
    pub enum WalletCommand {
        1 => Deposit(Deposit) version 2 { 1 => DepositV1 },
        2 => Withdraw(Withdraw),
        3 => Boom(Boom),
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum WalletError {
    InsufficientFunds { balance: u64 },
}

impl Rejection for WalletError {
    fn code(&self) -> u32 {
        7
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wallet {
    balance: u64,
    deposits: u64,
    booms: u64,
}

impl Service for Wallet {
    type Command = WalletCommand;
    type Reply<'a> = u64;
    type Rejection = WalletError;
    type State = Wallet;

    fn apply(&mut self, command: WalletCommand, _: &MessageHeader) -> Result<u64, WalletError> {
        match command {
            WalletCommand::Deposit(d) => {
                self.balance += d.cents;
                self.deposits += 1;
            }
            WalletCommand::Withdraw(w) => {
                let balance = self.balance;
                let short = WalletError::InsufficientFunds { balance };
                self.balance = balance.checked_sub(w.cents).ok_or(short)?;
            }
            WalletCommand::Boom(_) => {
                self.booms += 1; // changed before the panic: replay must reproduce it
                panic!("boom");
            }
        }
        Ok(self.balance)
    }

    fn state(&self) -> &Wallet {
        self
    }

    fn restore(&mut self, state: Wallet) {
        *self = state;
    }
}

fn config(dir: &Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 256;
    config.output_ring_capacity = 256;
    config.segment_size_bytes = 1 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::None;
    config.snapshot_interval_messages = 0;
    config.snapshot_on_shutdown = false;
    config
}

/// A host owning the engine and its responses.
struct Host {
    engine: Engine<Typed<Wallet>>,
    responses: ResponseReceiver,
}

impl Host {
    fn start(dir: &Path) -> Host {
        let mut engine = Engine::start(config(dir), Typed::new(Wallet::default())).unwrap();
        let responses = engine.take_responses().unwrap();
        Host { engine, responses }
    }

    fn call(&mut self, command: WalletCommand) -> Result<u64, CallError<WalletError>> {
        call::<Wallet>(self.engine.submitter(), &mut self.responses, &command)
    }

    /// Reads responses in order until `sequence`'s, and decodes it.
    fn answer(&mut self, sequence: u64) -> Result<u64, CallError<WalletError>> {
        let mut answer = None;
        while answer.is_none() {
            let poll = self.responses.poll(None, |r| {
                if r.header.sequence == sequence {
                    answer = Some(decode_response::<Wallet>(&r));
                }
            });
            assert!(
                !matches!(poll, Poll::Closed | Poll::Halted),
                "engine stopped"
            );
        }
        answer.unwrap()
    }

    /// Submits a version-1 deposit as an old client (or an old journal) has it.
    fn deposit_v1(&mut self, units: u32) -> Result<u64, CallError<WalletError>> {
        let to = Submission {
            kind: 1,
            version: 1,
            ..Submission::default()
        };
        let submitter = self.engine.submitter();
        let sequence = submitter.submit_encoded(to, &DepositV1 { units }).unwrap();
        self.answer(sequence)
    }

    /// Submits `count` deposits of 1 cent without waiting, then reads their answers in order.
    fn pipelined(&mut self, count: u64) {
        let first = self.engine.submitter().published() + 1;
        for _ in 0..count {
            submit(self.engine.submitter(), &deposit(1)).unwrap();
        }
        let mut answers = Vec::new();
        while (answers.len() as u64) < count {
            let poll = self.responses.poll(None, |r| {
                answers.push((r.header.sequence, decode_response::<Wallet>(&r).unwrap()))
            });
            assert!(
                !matches!(poll, Poll::Closed | Poll::Halted),
                "engine stopped"
            );
        }
        let sequences: Vec<u64> = answers.iter().map(|(s, _)| *s).collect();
        assert_eq!(sequences, (first..first + count).collect::<Vec<_>>());
        assert!(answers.windows(2).all(|w| w[1].1 == w[0].1 + 1));
    }

    fn stop(self) -> Wallet {
        drop(self.responses);
        self.engine.shutdown().unwrap().into_inner()
    }
}

fn deposit(cents: u64) -> WalletCommand {
    WalletCommand::Deposit(Deposit { cents })
}

#[test]
fn a_typed_service_runs_restarts_and_replays_old_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path());
    assert_eq!(host.call(deposit(150)).unwrap(), 150);
    let withdraw = WalletCommand::Withdraw(Withdraw { cents: 1_000 });
    assert!(matches!(
        host.call(withdraw),
        Err(CallError::Rejected(WalletError::InsufficientFunds {
            balance: 150
        }))
    ));
    let snapshot_at = host.engine.request_snapshot().unwrap();
    // After the snapshot: a version-1 command (upcast), a panic, pipelined submits.
    assert_eq!(host.deposit_v1(2).unwrap(), 350);
    let boom = host.call(WalletCommand::Boom(Boom));
    assert!(matches!(boom, Err(CallError::Failed(text)) if text == "boom"));
    host.pipelined(100);
    let withdraw = WalletCommand::Withdraw(Withdraw { cents: 50 });
    assert_eq!(host.call(withdraw).unwrap(), 400);
    let last = host.engine.submitter().published();
    let first = host.stop();
    let expected = Wallet {
        balance: 400,
        deposits: 102,
        booms: 1,
    };
    assert_eq!(first, expected);
    let hash = first.state_hash();

    // Restart: the snapshot, then the journal after it (the v1 deposit and the panic included).
    let host = Host::start(dir.path());
    let recovered = host.engine.recovered();
    assert_eq!(recovered.snapshot_sequence, snapshot_at);
    assert_eq!(recovered.replayed, last - snapshot_at);
    let restored = host.stop();
    assert_eq!((&restored, restored.state_hash()), (&expected, hash));

    // And from the journal alone: the same state, the same hash.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let host = Host::start(dir.path());
    assert_eq!(host.engine.recovered().snapshot_sequence, 0);
    let replayed = host.stop();
    assert_eq!((&replayed, replayed.state_hash()), (&expected, hash));
}

#[test]
fn unknown_kinds_and_versions_are_refused_before_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path());
    let messages: [(u16, u16, &[u8]); 3] = [(9, 1, &[]), (1, 3, &[0; 8]), (1, 2, &[1])];
    let mut refused = Vec::new();
    for (kind, version, payload) in messages {
        // The network server's validator refuses the same messages before the ring.
        assert!(WalletCommand::validate(kind, version, payload).is_err());
        let to = Submission {
            kind,
            version,
            ..Submission::default()
        };
        let sequence = host.engine.submitter().submit(to, payload).unwrap();
        match host.answer(sequence) {
            Err(CallError::Refused(invalid)) => refused.push(invalid),
            other => panic!("not refused: {other:?}"),
        }
    }
    let expected = [
        Invalid::UnknownKind,
        Invalid::UnsupportedVersion,
        Invalid::Undecodable,
    ];
    assert_eq!(refused, expected);
    assert_eq!(
        host.stop(),
        Wallet::default(),
        "the service saw none of them"
    );
    // Usable as the network server's validate hook as it is.
    let _hook: fn(u16, u16, &[u8]) -> Result<(), Invalid> = WalletCommand::validate;
}

#[test]
fn typed_calls_from_several_threads_through_clients() {
    const THREADS: u64 = 3;
    const DEPOSITS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.producers = keel::Producers::Multi;
    let engine = Engine::start(config, Typed::new(Wallet::default())).unwrap();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let client = engine.client().unwrap();
            s.spawn(move || {
                for _ in 0..DEPOSITS / 2 {
                    let balance = client.call_typed::<Wallet>(&deposit(100)).unwrap();
                    assert!(balance >= 100);
                    let ticket = client.submit_typed(&deposit(100)).unwrap();
                    let reply = ticket.wait().unwrap();
                    assert!(decode_response::<Wallet>(&reply.response()).unwrap() >= 100);
                }
            });
        }
    });
    let client = engine.client().unwrap();
    let total = THREADS * DEPOSITS * 100;
    let overdraw = WalletCommand::Withdraw(Withdraw { cents: total + 1 });
    match client.call_typed::<Wallet>(&overdraw) {
        Err(CallError::Rejected(WalletError::InsufficientFunds { balance })) => {
            assert_eq!(balance, total, "every deposit applied once");
        }
        other => panic!("not rejected: {other:?}"),
    }
    let everything = WalletCommand::Withdraw(Withdraw { cents: total });
    assert_eq!(client.call_typed::<Wallet>(&everything).unwrap(), 0);
    engine.shutdown().unwrap();
}
