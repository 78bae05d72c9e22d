//! Before loading a server given with `--connect`: one handshake, so an unreachable address is
//! reported as such (with the likely cause) before any measurement starts.

use super::rig::Failure;
use keel::net::{Client, ClientError, ErrorCode};
use std::io;
use std::net::SocketAddr;

/// Connects once to `addr` with `token` and closes; the error names the address and cause.
pub fn check(addr: SocketAddr, token: Option<&str>) -> Result<(), Failure> {
    let e = match Client::connect(addr, token.map(str::as_bytes)) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let text = match &e {
        ClientError::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            "connection refused — is `keel serve` running there? (without --connect the \
             benchmark starts its own server)"
                .to_string()
        }
        ClientError::Server { code, .. } if *code == ErrorCode::UNAUTHORIZED => {
            format!("{e} — pass the server's token with --token-file, KEEL_TOKEN or --token")
        }
        _ => e.to_string(),
    };
    Err(Failure::new(format!("connecting to {addr}: {text}")))
}
