//! The `keel` command's building blocks: clap argument groups shared by subcommands, and the
//! `serve` and `client` subcommands. `src/bin/keel.rs` only dispatches here.

mod admin;
mod client;
mod engine_args;
mod serve;

pub use admin::{run_admin, AcceptLossArgs, AdminCommand};
pub use client::{run_client, ClientArgs};
pub use engine_args::{AppName, EngineArgs, Preset};
pub use serve::{run_serve, ServeArgs};
