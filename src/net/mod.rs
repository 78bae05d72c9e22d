//! The network layer: clients reach the engine over TCP (`docs/PROTOCOL.md`).
//!
//! - [`frame`]: the wire format, as pure encoders and decoders.
//! - [`Server`]: one network thread (`mio`, non-blocking, pinned) that accepts sessions,
//!   checks and submits their requests into the input ring, and writes the responses from the
//!   output ring back to their sessions. Bounded everywhere: session slots, per-session buffers
//!   and timeouts are fixed at start by [`NetConfig`]; nothing is allocated per message.
//! - [`Client`]: a blocking, pipelined client.
//!
//! Wiring an engine and a server (see [`Server`] for a complete example): bind first (it
//! installs the waker that lets the business logic wake the network thread), start the engine,
//! start the server with the engine's submitter and response receiver; to stop, stop the
//! server first ([`Server::shutdown`] or a [`StopHandle`] plus [`Server::wait`]), then the engine.

mod client;
mod config;
mod event_loop;
pub mod frame;
mod server;
mod session;
mod stats;

pub use client::{
    Client, ClientError, ClientReceiver, ClientSender, OwnedReply, Reply, ReplyStatus,
};
pub use config::{accept_all, decodes_as, Invalid, NetConfig};
pub use frame::{ErrorCode, Welcome};
pub use server::{Binding, Server, StopHandle};
pub use stats::NetStats;
