//! keel: an LMAX-style single-writer engine.
//!
//! All state lives in memory and is changed by one business-logic thread applying an ordered,
//! journaled stream of messages; restart is snapshot + replay. The pipeline, in data-flow
//! order: a producer publishes into the pre-allocated [`ring`]; the journaler appends each
//! batch to memory-mapped segment files ([`journal`]); the business-logic thread applies each
//! journaled message to the application's [`Processor`] ([`engine`]) and captures
//! [`snapshot`]s. See `docs/` for the formats.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod codec;
pub mod ring;
pub mod journal;
pub mod engine;
pub mod snapshot;
pub mod net;
pub mod apps;
pub mod replay;
pub mod bench;
pub mod cli;
pub mod error;

pub use engine::{
    ApplyMode, Client, ClientError, Config, Engine, Message, Outcome, Output, Processor, Producers,
    Reply, Response, Status, Submission, Submitter, Ticket,
};
pub use error::Error;
pub use journal::{FlushPolicy, SegmentPrep};
pub use ring::WaitStrategy;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
