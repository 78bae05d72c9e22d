//! keel: an LMAX-style single-writer engine.
//!
//! All state lives in memory and is changed by one business-logic thread applying an ordered,
//! journaled stream of messages. The pipeline is
//! producer → [`ring`] → journaler ([`journal`]) → business logic ([`engine`]).
//! See `ARCHITECTURE.md` in the shared folder and `docs/` for the formats.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod bench;
pub mod codec;
pub mod journal;
pub mod ring;
