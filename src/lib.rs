//! keel: an LMAX-style single-writer engine.
//!
//! All state lives in memory and is changed by one business-logic thread applying an ordered,
//! journaled stream of messages; restart is snapshot + replay. The pipeline, in data-flow
//! order: a producer publishes into the pre-allocated [`ring`]; the journaler appends each
//! batch to memory-mapped segment files ([`journal`]); the business-logic thread applies each
//! journaled message to the application's [`Processor`] ([`engine`]) and captures
//! [`snapshot`]s. See `docs/` for the formats.
//!
//! Business logic is usually written as a typed [`Service`] (commands, reply, rejection and
//! state are Rust types; [`service`]) and run through the [`Typed`] adapter; the byte-level
//! [`Processor`] is there for zero-copy services. A counter, journaled and answered:
//!
//! ```
//! use keel::engine::MessageHeader;
//! use keel::{service, Config, Engine, Rejection, Service, Typed};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Add { pub amount: u64 }
//!
//! keel::commands! {
//!     pub enum CounterCommand {
//!         1 => Add(Add), // wire kind 1, version 1
//!     }
//! }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! pub enum CounterError { Overflow }
//!
//! impl Rejection for CounterError {
//!     fn code(&self) -> u32 { 1 }
//! }
//!
//! #[derive(Default)]
//! struct Counter { total: u64 }
//!
//! impl Service for Counter {
//!     type Command = CounterCommand;
//!     type Reply<'a> = u64;
//!     type Rejection = CounterError;
//!     type State = u64;
//!
//!     fn apply(&mut self, command: CounterCommand, _: &MessageHeader) -> Result<u64, CounterError> {
//!         let CounterCommand::Add(add) = command;
//!         self.total = self.total.checked_add(add.amount).ok_or(CounterError::Overflow)?;
//!         Ok(self.total)
//!     }
//!     fn state(&self) -> &u64 { &self.total }
//!     fn restore(&mut self, total: u64) { self.total = total }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mut engine = Engine::start(Config::with_data_dir(dir.path()), Typed::new(Counter::default()))?;
//! let mut responses = engine.take_responses().expect("not taken yet");
//! let add = |amount| CounterCommand::Add(Add { amount });
//! assert_eq!(service::call::<Counter>(engine.submitter(), &mut responses, &add(2))?, 2);
//! assert_eq!(service::call::<Counter>(engine.submitter(), &mut responses, &add(3))?, 5);
//! let overflow = service::call::<Counter>(engine.submitter(), &mut responses, &add(u64::MAX));
//! assert!(matches!(overflow, Err(keel::CallError::Rejected(CounterError::Overflow))));
//! assert_eq!(engine.shutdown()?.into_inner().total, 5);
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod codec;
pub mod ring;
pub mod journal;
pub mod engine;
pub mod snapshot;
pub mod service;
#[cfg(feature = "net")]
pub mod net;
pub mod error;

pub use engine::{
    ApplyMode, Client, ClientError, Config, Engine, Message, Outcome, Output, Processor, Producers,
    Reply, Response, Status, Submission, Submitter, Ticket,
};
pub use error::{ConfigError, Error, RecoveryError};
pub use journal::{FlushPolicy, SegmentPrep};
pub use ring::WaitStrategy;
pub use service::{CallError, Command, Rejection, Service, Typed};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
