//! The typed layer without an engine: the table, the byte maps of `docs/SERVICES.md`, every
//! response case, and the state defaults.

use super::{decode_response, CallError, Command, Rejection, Service, Typed};
use crate::engine::{apply_message, MessageHeader, ResponseHeader};
use crate::service::Invalid;
use crate::snapshot::StateError;
use crate::{Message, Processor, Response, Status};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposit {
    account: u64,
    amount: u64,
}

/// Version 1 of kind 1: whole units of 100.
#[derive(Serialize, Deserialize)]
pub struct DepositV1 {
    account: u64,
    units: u32,
}

impl From<DepositV1> for Deposit {
    fn from(v1: DepositV1) -> Self {
        Deposit {
            account: v1.account,
            amount: u64::from(v1.units) * 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdraw {
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explode;

crate::commands! {
    /// The test service's commands.
    #[derive(Debug, Clone, PartialEq)]
    pub enum TestCommand {
        1 => Deposit(Deposit) version 2 { 1 => DepositV1 },
        2 => Withdraw(Withdraw),
        /// Answers with a view borrowed from the state.
        7 => History(History),
        9 => Explode(Explode),
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum TestError {
    Closed,
    InsufficientFunds { balance: u64 },
}

impl Rejection for TestError {
    fn code(&self) -> u32 {
        match self {
            TestError::Closed => 1,
            TestError::InsufficientFunds { .. } => 2,
        }
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer<'a> {
    Balance(u64),
    History(Cow<'a, [u64]>),
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    balance: u64,
    deposits: Vec<u64>,
}

impl Service for Account {
    type Command = TestCommand;
    type Reply<'a> = Answer<'a>;
    type Rejection = TestError;
    type State = Account;

    fn apply(&mut self, command: TestCommand, _: &MessageHeader) -> Result<Answer<'_>, TestError> {
        match command {
            TestCommand::Deposit(d) => {
                self.balance += d.amount;
                self.deposits.push(d.amount);
                Ok(Answer::Balance(self.balance))
            }
            TestCommand::Withdraw(w) => {
                let balance = self.balance;
                self.balance = balance
                    .checked_sub(w.amount)
                    .ok_or(TestError::InsufficientFunds { balance })?;
                Ok(Answer::Balance(self.balance))
            }
            TestCommand::History(_) => Ok(Answer::History(Cow::Borrowed(&self.deposits))),
            TestCommand::Explode(_) => {
                self.balance += 1;
                panic!("exploded")
            }
        }
    }

    fn state(&self) -> &Account {
        self
    }

    fn restore(&mut self, state: Account) {
        *self = state;
    }
}

fn deposit(account: u64, amount: u64) -> TestCommand {
    TestCommand::Deposit(Deposit { account, amount })
}

fn encode(command: &TestCommand) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = command.encode_into(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// Applies one message through the engine's own `apply_message` (panics caught, as live) and
/// decodes the response as a client would.
fn exchange(
    typed: &mut Typed<Account>,
    (kind, version): (u16, u16),
    payload: &[u8],
    buf: &mut [u8],
) -> (
    ResponseHeader,
    Result<Answer<'static>, CallError<TestError>>,
) {
    let header = MessageHeader {
        sequence: 1,
        kind,
        version,
        ..MessageHeader::default()
    };
    let applied = apply_message(typed, &Message { header, payload }, buf);
    let header = ResponseHeader {
        status: applied.status,
        reason: applied.reason,
        kind: applied.kind,
        ..ResponseHeader::default()
    };
    let payload = &buf[..applied.len];
    (
        header,
        decode_response::<Account>(&Response { header, payload }),
    )
}

#[test]
fn the_table_gives_kinds_versions_and_the_documented_bytes() {
    let command = deposit(7, 500);
    assert_eq!((command.kind(), command.version()), (1, 2));
    let to = command.submission();
    assert_eq!((to.kind, to.version, to.session_id), (1, 2, 0));
    let withdraw = TestCommand::Withdraw(Withdraw { amount: 1 });
    assert_eq!((withdraw.kind(), withdraw.version()), (2, 1));
    // docs/SERVICES.md: the variant's struct alone, no enum tag.
    let bytes = encode(&command);
    assert_eq!(
        bytes,
        [7, 0, 0, 0, 0, 0, 0, 0, 0xf4, 0x01, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(encode(&TestCommand::History(History)), Vec::<u8>::new());
    let mut small = [0u8; 8];
    assert!(command.encode_into(&mut small).is_err());
}

#[test]
fn decode_upcasts_old_versions_and_refuses_the_rest() {
    let bytes = encode(&deposit(7, 500));
    assert_eq!(TestCommand::decode(1, 2, &bytes), Ok(deposit(7, 500)));
    let mut v1 = [0u8; 12];
    crate::codec::encode_into(
        &DepositV1 {
            account: 7,
            units: 5,
        },
        &mut v1,
    )
    .unwrap();
    assert_eq!(TestCommand::decode(1, 1, &v1), Ok(deposit(7, 500)));
    assert_eq!(
        TestCommand::decode(1, 3, &bytes),
        Err(Invalid::UnsupportedVersion)
    );
    assert_eq!(TestCommand::decode(3, 1, &bytes), Err(Invalid::UnknownKind));
    assert_eq!(
        TestCommand::decode(1, 2, &bytes[..15]),
        Err(Invalid::Undecodable)
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        TestCommand::decode(1, 2, &trailing),
        Err(Invalid::Undecodable)
    );
    assert_eq!(TestCommand::validate(1, 1, &v1), Ok(()));
    assert_eq!(
        TestCommand::validate(1, 1, &bytes),
        Err(Invalid::Undecodable)
    );
}

#[test]
fn replies_and_rejections_are_encoded_values() {
    let mut typed = Typed::new(Account::default());
    let mut buf = [0u8; 256];
    let (header, answer) = exchange(&mut typed, (1, 2), &encode(&deposit(1, 300)), &mut buf);
    assert_eq!(
        (header.status, header.reason, header.kind),
        (Status::Accepted, 0, 0)
    );
    assert_eq!(answer.unwrap(), Answer::Balance(300));
    let withdraw = encode(&TestCommand::Withdraw(Withdraw { amount: 301 }));
    let (header, answer) = exchange(&mut typed, (2, 1), &withdraw, &mut buf);
    assert_eq!(
        (header.status, header.reason, header.kind),
        (Status::Rejected, 2, 0)
    );
    // docs/SERVICES.md: variant index 1, then balance = 300.
    assert_eq!(&buf[..12], &[1, 0, 0, 0, 0x2c, 0x01, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(
        answer,
        Err(CallError::Rejected(TestError::InsufficientFunds {
            balance: 300
        }))
    ));
    assert_eq!(typed.service().balance, 300, "a rejection changes nothing");
    let (_, answer) = exchange(&mut typed, (7, 1), &[], &mut buf);
    assert_eq!(answer.unwrap(), Answer::History(Cow::Owned(vec![300])));
}

#[test]
fn refusals_panics_and_oversized_answers_have_their_own_responses() {
    let mut typed = Typed::new(Account::default());
    let mut buf = [0u8; 64];
    for (kind, version, payload, reason, invalid) in [
        (3, 1, &[][..], 0xFFFF_FF01, Invalid::UnknownKind),
        (1, 9, &[][..], 0xFFFF_FF02, Invalid::UnsupportedVersion),
        (1, 2, &[1, 2, 3][..], 0xFFFF_FF03, Invalid::Undecodable),
    ] {
        let (header, answer) = exchange(&mut typed, (kind, version), payload, &mut buf);
        assert_eq!((header.status, header.reason), (Status::Rejected, reason));
        assert!(matches!(answer, Err(CallError::Refused(i)) if i == invalid));
    }
    let (header, answer) = exchange(&mut typed, (9, 1), &[], &mut buf);
    assert_eq!(header.status, Status::Failed);
    assert!(matches!(answer, Err(CallError::Failed(text)) if text == "exploded"));
    // Six deposits: the history (4 + 8 + 6 × 8 bytes) fits 64 bytes; a seventh does not.
    for _ in 0..6 {
        let _ = exchange(&mut typed, (1, 2), &encode(&deposit(1, 1)), &mut buf);
    }
    let (header, answer) = exchange(&mut typed, (7, 1), &[], &mut buf);
    assert_eq!(header.kind, 0);
    assert!(matches!(answer, Ok(Answer::History(h)) if h.len() == 6));
    let _ = exchange(&mut typed, (1, 2), &encode(&deposit(1, 1)), &mut buf);
    let (header, answer) = exchange(&mut typed, (7, 1), &[], &mut buf);
    assert_eq!((header.status, header.kind), (Status::Accepted, 1));
    assert!(matches!(
        answer,
        Err(CallError::TooLarge {
            status: Status::Accepted,
            reason: 0
        })
    ));
}

#[test]
fn the_state_defaults_round_trip_and_hash_stably() {
    let mut typed = Typed::new(Account::default());
    let empty_hash = typed.state_hash();
    let mut buf = [0u8; 256];
    let _ = exchange(&mut typed, (1, 2), &encode(&deposit(1, 300)), &mut buf);
    let hash = typed.state_hash();
    assert_ne!(hash, empty_hash);
    let mut saved = Vec::new();
    typed.save_state(&mut saved).unwrap();
    let mut expected = Vec::new();
    crate::snapshot::save_serde(typed.service(), &mut expected).unwrap();
    assert_eq!(saved, expected, "the state's codec encoding");
    assert_eq!(hash, crate::codec::hash(typed.service()));

    let mut restored = Typed::new(Account::default());
    restored.load_state(1, &saved).unwrap();
    assert_eq!(restored.service(), typed.service());
    assert_eq!(restored.state_hash(), hash);

    let mut untouched = Typed::new(Account::default());
    assert!(matches!(
        untouched.load_state(2, &saved),
        Err(StateError::UnsupportedSchema {
            found: 2,
            current: 1
        })
    ));
    assert!(untouched.load_state(1, &saved[..saved.len() - 1]).is_err());
    assert_eq!(untouched.service(), &Account::default());
}

/// A service whose rejection uses a code keel reserves.
#[derive(Default)]
struct Misnumbered;

#[derive(Debug, Serialize, Deserialize)]
struct Reserved;

impl Rejection for Reserved {
    fn code(&self) -> u32 {
        0xFFFF_FF01
    }
}

impl Service for Misnumbered {
    type Command = TestCommand;
    type Reply<'a> = ();
    type Rejection = Reserved;
    type State = ();

    fn apply(&mut self, _: TestCommand, _: &MessageHeader) -> Result<(), Reserved> {
        Err(Reserved)
    }

    fn state(&self) -> &() {
        &()
    }

    fn restore(&mut self, _: ()) {}
}

#[test]
fn a_rejection_with_a_reserved_code_fails_in_every_build() {
    let mut typed = Typed::new(Misnumbered);
    let header = MessageHeader {
        kind: 2,
        version: 1,
        ..MessageHeader::default()
    };
    let payload = encode(&TestCommand::Withdraw(Withdraw { amount: 1 }));
    let mut buf = [0u8; 128];
    let message = Message {
        header,
        payload: &payload,
    };
    let applied = apply_message(&mut typed, &message, &mut buf);
    assert_eq!((applied.status, applied.reason), (Status::Failed, 0));
}

/// A service keeping an older wire format: its own response kinds, a rejection payload that is
/// not the rejection's encoding, its own codes for refusals, and an answer too large rejected.
#[derive(Default)]
struct OwnWire(Account);

#[derive(Debug, Serialize, Deserialize)]
struct OwnError(u32);

impl Rejection for OwnError {
    fn code(&self) -> u32 {
        self.0
    }

    fn refused(invalid: Invalid) -> Option<Self> {
        Some(OwnError(100 + invalid as u32))
    }
}

impl Service for OwnWire {
    type Command = TestCommand;
    type Reply<'a> = Answer<'a>;
    type Rejection = OwnError;
    type State = Account;

    fn apply(
        &mut self,
        command: TestCommand,
        header: &MessageHeader,
    ) -> Result<Answer<'_>, OwnError> {
        self.0
            .apply(command, header)
            .map_err(|e| OwnError(e.code()))
    }

    fn state(&self) -> &Account {
        &self.0
    }

    fn restore(&mut self, state: Account) {
        self.0 = state;
    }

    fn write_reply(reply: &Answer<'_>, out: &mut crate::Output<'_>) -> Result<(), OwnError> {
        if out.encode(reply).is_err() {
            return Err(OwnError(16));
        }
        out.set_kind(7);
        Ok(())
    }

    fn write_rejection(rejection: &OwnError, out: &mut crate::Output<'_>) {
        if rejection.0 == 2 {
            out.write(&[0xAB]).unwrap();
            out.set_kind(9);
        }
    }
}

#[test]
fn a_service_may_keep_its_own_response_kinds_payloads_and_codes() {
    let mut typed = Typed::new(OwnWire::default());
    let mut buf = [0u8; 16];
    let mut send = |typed: &mut Typed<OwnWire>, (kind, version), payload: &[u8]| {
        let header = MessageHeader {
            sequence: 1,
            kind,
            version,
            ..MessageHeader::default()
        };
        let applied = apply_message(typed, &Message { header, payload }, &mut buf);
        (
            applied.status,
            applied.reason,
            applied.kind,
            buf[..applied.len].to_vec(),
        )
    };
    let (status, reason, kind, _) = send(&mut typed, (1, 2), &encode(&deposit(1, 5)));
    assert_eq!((status, reason, kind), (Status::Accepted, 0, 7));
    let withdraw = encode(&TestCommand::Withdraw(Withdraw { amount: 9 }));
    let rejected = send(&mut typed, (2, 1), &withdraw);
    assert_eq!(rejected, (Status::Rejected, 2, 9, vec![0xAB]));
    let refused = send(&mut typed, (3, 1), &[]);
    assert_eq!(refused, (Status::Rejected, 100, 0, vec![]));
    // The history (4 + 8 + 8 bytes) does not fit 16 bytes.
    let too_large = send(&mut typed, (7, 1), &[]);
    assert_eq!(too_large, (Status::Rejected, 16, 0, vec![]));
    assert_eq!(typed.0.balance, 5, "Typed dereferences to the service");
}
