//! Typed services: business logic written with Rust types, on the byte-level engine.
//!
//! A [`Service`] names its commands (an enum made by [`commands!`](crate::commands)), its
//! reply, its [`Rejection`] and its state; [`Typed`] turns it into a
//! [`Processor`](crate::Processor) that [`Engine::start`](crate::Engine::start) takes as it
//! is. Each command's wire kind and version are written once, in the `commands!` table; older
//! versions upcast with `Into`. Snapshots and the state hash come from the state's serde
//! encoding unless the service overrides them.
//! On the client side, [`call`] and [`submit`] send typed commands and [`decode_response`]
//! turns a [`Response`](crate::Response) back into `Result<Reply, CallError<Rejection>>`.
//!
//! How types map to messages and responses, byte by byte: `docs/SERVICES.md`. A service in
//! full: the crate-level example, and `examples/ledger.rs`.

mod client;
mod command;
mod typed;

#[cfg(test)]
mod tests;

pub use client::{call, decode_response, submit, CallError};
pub use command::Command;
pub use typed::Typed;

#[doc(hidden)]
pub use command::__check_table;
#[doc(hidden)]
pub use serde::{Serialize as __Serialize, Serializer as __Serializer};

use crate::codec::{self, CodecError};
use crate::engine::{MessageHeader, Output};
use crate::snapshot::{self, StateError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why keel refuses a message before it reaches the business logic: the network server's
/// validator (`keel::net::Server::start`) answers it with an error, the typed layer with a
/// reserved rejection code (`docs/SERVICES.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// No message of this kind.
    UnknownKind,
    /// The kind exists, this version is not decoded.
    UnsupportedVersion,
    /// The payload does not decode as the kind and version say.
    Undecodable,
}

/// Why a service refused a command: a value, sent to the client and reproduced on replay.
///
/// Usually an enum. The payload of a rejected response is its codec encoding (details such as
/// a current balance travel with it); its [`code`](Rejection::code) goes in the response's
/// `reason`, so a client can act on it without decoding the payload.
pub trait Rejection: Serialize + DeserializeOwned {
    /// The stable reason code: `1..=0xFFFF_FEFF`, never renumbered (journaled outcomes reach
    /// clients). Codes from `0xFFFF_FF00` are keel's own (see `docs/SERVICES.md`); a rejection
    /// with 0 or one of those is a bug in the service, answered `Failed` like a panic.
    fn code(&self) -> u32;

    /// The rejection that answers a message refused before `apply` (an unknown kind, an
    /// unsupported version, a payload that does not decode). Default: none, so keel answers
    /// with its own codes `0xFFFF_FF01..=0xFFFF_FF03` and no payload. A service whose clients
    /// already know its own codes for these cases returns them here.
    fn refused(invalid: Invalid) -> Option<Self> {
        let _ = invalid;
        None
    }
}

/// Business logic over Rust types. Runs on the engine's one business-logic thread and owns
/// all state; wrap it in [`Typed`] to run it in an [`Engine`](crate::Engine).
///
/// Determinism rules, as for every [`Processor`](crate::Processor): `apply` may depend only
/// on the state and the command (and the header's `timestamp_ns`): no clock, randomness, I/O
/// or `HashMap` iteration order.
pub trait Service: Send + 'static {
    /// Every command the service accepts: an enum made by [`commands!`](crate::commands).
    type Command: Command;

    /// What an accepted command answers. Most services use an owned type and ignore the
    /// lifetime (`type Reply<'a> = Balance;`); the lifetime lets a query answer with a view
    /// borrowed from the state, encoded into the response without copying it first.
    type Reply<'a>: Serialize
    where
        Self: 'a;

    /// Why a command was refused.
    type Rejection: Rejection;

    /// The whole state, as snapshots hold it. It must encode deterministically: `BTreeMap`
    /// or `Vec`, not `HashMap`.
    type State: Serialize + DeserializeOwned;

    /// Applies one command. `header` carries the message's sequence and `timestamp_ns` (the
    /// only clock the logic may read). A rejection must leave the state unchanged. A panic is
    /// contained: the sender gets a `Failed` response and the engine goes on.
    fn apply(
        &mut self,
        command: Self::Command,
        header: &MessageHeader,
    ) -> Result<Self::Reply<'_>, Self::Rejection>;

    /// The state to snapshot and hash.
    fn state(&self) -> &Self::State;

    /// Replaces the state with a restored one (rebuild anything derived from it here).
    fn restore(&mut self, state: Self::State);

    /// The schema version of the state [`save_state`](Service::save_state) writes. Bump it
    /// when the state's shape changes, and override `load_state` to upgrade older ones.
    fn schema_version(&self) -> u32 {
        1
    }

    /// Encodes the state for a snapshot. Default: the codec encoding of [`state`](Self::state).
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        snapshot::save_serde(self.state(), out)
    }

    /// Restores a state [`save_state`](Self::save_state) wrote. Default: refuses any schema
    /// version but the current one, decodes the state (bounded by its size) and calls
    /// [`restore`](Self::restore). On error the state must be left unchanged.
    fn load_state(&mut self, schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        let current = self.schema_version();
        if schema_version != current {
            return Err(StateError::UnsupportedSchema {
                found: schema_version,
                current,
            });
        }
        self.restore(snapshot::load_serde(bytes)?);
        Ok(())
    }

    /// A stable digest of the whole state. Default: a 64-bit hash of the codec encoding of
    /// [`state`](Self::state), streamed without a buffer (O(state) per call: the engine calls
    /// it per snapshot and recovery per restore; override it with a digest kept up to date
    /// per command when the state is large).
    fn state_hash(&self) -> u64 {
        codec::hash(self.state())
    }

    /// Writes the response to an accepted command. Default: the codec encoding of `reply`
    /// under response kind 0, or no payload under kind 1 when it does not fit
    /// `max_response_bytes`. Override it to keep a wire format that existed before the typed
    /// layer: a response kind per reply type, or a rejection when an answer does not fit
    /// (only for a reply that changed nothing: a rejection must leave the state as it was).
    /// A service that overrides it decodes its own responses (not [`decode_response`]).
    fn write_reply(reply: &Self::Reply<'_>, out: &mut Output<'_>) -> Result<(), Self::Rejection> {
        write_value(reply, out);
        Ok(())
    }

    /// Writes the payload and response kind of a rejection (its code is the response's
    /// `reason` whatever this writes). Default: the codec encoding of `rejection` under
    /// response kind 0, or no payload under kind 1 when it does not fit.
    fn write_rejection(rejection: &Self::Rejection, out: &mut Output<'_>) {
        write_value(rejection, out);
    }

    /// Makes the state's reserved memory resident (see
    /// [`Processor::prefault`](crate::Processor::prefault)). Default: nothing reserved.
    fn prefault(&mut self) {}
}

/// Encodes a reply or rejection as the response payload (`out` is empty: the service never
/// sees it); one that does not fit leaves the payload empty under [`KIND_OMITTED`].
#[inline]
fn write_value<T: Serialize>(value: &T, out: &mut Output<'_>) {
    debug_assert!(out.is_empty());
    if out.encode(value).is_ok() {
        out.set_kind(KIND_VALUE);
    } else {
        out.clear();
        out.set_kind(KIND_OMITTED);
    }
}

/// Reason codes keel itself sends for a message refused before `apply` (see
/// `docs/SERVICES.md`): one for each [`Invalid`](crate::service::Invalid).
const REFUSED_UNKNOWN_KIND: u32 = 0xFFFF_FF01;
const REFUSED_UNSUPPORTED_VERSION: u32 = 0xFFFF_FF02;
const REFUSED_UNDECODABLE: u32 = 0xFFFF_FF03;
/// The first reason code reserved for keel.
const RESERVED_CODE_MIN: u32 = 0xFFFF_FF00;

/// Response kind: the payload is the encoded reply or rejection.
const KIND_VALUE: u16 = 0;
/// Response kind: the reply or rejection did not fit `max_response_bytes`; no payload.
const KIND_OMITTED: u16 = 1;
