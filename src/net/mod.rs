//! The network layer: clients reach the engine over TCP (`docs/PROTOCOL.md`).
//!
//! - [`frame`]: the wire format, as pure encoders and decoders.
//! - [`Server`]: one network thread (`mio`, non-blocking, pinned) that accepts sessions,
//!   checks and submits their requests into the input ring, and writes the responses from the
//!   output ring back to their sessions. Bounded everywhere: session slots, per-session buffers
//!   and timeouts are fixed at start by [`NetConfig`]; nothing is allocated per message.
//! - [`Client`]: a blocking, pipelined client.
//!
//! Wiring an engine and a server (see [`Server`] for a complete example): start the engine
//! (it recovers from the journal), then [`Server::start`] it; only then is the port bound, so a
//! client never reaches a recovering engine. The server sets the response receiver's wake hook,
//! through which the engine wakes the network thread as soon as responses are releasable. To
//! stop, stop the server first ([`Server::shutdown`] or a [`StopHandle`] plus [`Server::wait`]),
//! then the engine.

mod admin;
mod client;
mod config;
mod event_loop;
mod foreign;
mod leader;
mod resume;
pub mod frame;
mod server;
mod session;
mod stats;

pub use client::{
    Client, ClientError, ClientReceiver, ClientSender, OwnedReply, Reply, ReplyStatus,
};
pub use config::{decodes_as, NetConfig};
pub use frame::{ErrorCode, Welcome};
pub use leader::LeaderGate;
pub use server::{Server, StopHandle};
pub(crate) use stats::Counters;
pub use stats::NetStats;
