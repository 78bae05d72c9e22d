//! `NetConfig`: every limit of the network layer, and the request validator's vocabulary.

use super::frame::{self, ErrorCode};
use crate::service::Invalid;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Limits and choices of the network server. All are fixed at start; buffers are allocated
/// once from them (`max_connections` × (`read_buffer_bytes` + `output_limit_bytes`)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetConfig {
    /// Address to listen on. Default `127.0.0.1:7700` (loopback only).
    pub listen_addr: SocketAddr,
    /// Sessions open at once; more connections get `TOO_MANY_CONNECTIONS`.
    pub max_connections: usize,
    /// Largest frame length accepted (capped to what the engine's `max_message_bytes` allows,
    /// and at least `frame::MIN_MAX_FRAME_BYTES`).
    pub max_frame_bytes: usize,
    /// Responses buffered per session before a client that does not read is disconnected
    /// (`SLOW_CONSUMER`). Raised to fit at least one largest response.
    pub output_limit_bytes: usize,
    /// Per-session receive buffer (raised to fit one largest frame).
    pub read_buffer_bytes: usize,
    /// A `HELLO` must arrive within this.
    pub handshake_timeout: Duration,
    /// A session with no traffic either way for this long is closed (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A frame that has started arriving must complete within this (slowloris defence).
    pub read_timeout: Duration,
    /// How long a closing connection may take to flush its last frames before it is dropped.
    pub close_linger: Duration,
    /// On shutdown, how long clients get to receive their last responses.
    pub shutdown_grace: Duration,
    /// Shared secret clients must present in `HELLO` (`None`: no check). At most 256 bytes.
    pub token: Option<Vec<u8>>,
    /// How often the network thread checks the timeouts above: their resolution, nothing
    /// else (responses and requests never wait for it). Default 50 ms; must not be zero.
    pub timer_tick: Duration,
    /// Core id the network thread is pinned to (`None`: not pinned).
    pub net_core: Option<usize>,
    /// Whether the server takes requests or redirects them to the cluster's leader
    /// (`NOT_LEADER`). Default: a new gate, leader (a server alone leads itself). Set a clone
    /// before `Server::start` to start as a follower; [`crate::net::Server::leadership`]
    /// returns it.
    pub leadership: super::LeaderGate,
}

impl NetConfig {
    /// The `WELCOME` a server with these settings states in front of an engine with
    /// `max_message_bytes` and `max_response_bytes` (session id 0): for a host that answers
    /// handshakes itself, such as a cluster node sending clients to its leader. Fails as
    /// the server's start would on settings out of range.
    pub fn welcome(
        &self,
        max_message_bytes: usize,
        max_response_bytes: usize,
    ) -> io::Result<frame::Welcome> {
        let sizes = EngineSizes {
            max_message_bytes,
            max_response_bytes,
        };
        Ok(Limits::derive(self, sizes)?.welcome(0))
    }

    /// The defaults, listening on `listen_addr` (`127.0.0.1:0` picks a free port).
    pub fn listening_on(listen_addr: SocketAddr) -> Self {
        NetConfig {
            listen_addr,
            ..NetConfig::default()
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 7700)),
            max_connections: 256,
            max_frame_bytes: 64 << 10,
            output_limit_bytes: 256 << 10,
            read_buffer_bytes: 64 << 10,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(60)),
            read_timeout: Duration::from_secs(10),
            close_linger: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(2),
            token: None,
            timer_tick: Duration::from_millis(50),
            net_core: None,
            leadership: super::LeaderGate::default(),
        }
    }
}

impl Invalid {
    /// The `ERROR` code sent to a network client.
    pub fn code(self) -> ErrorCode {
        match self {
            Invalid::UnknownKind => ErrorCode::UNKNOWN_KIND,
            Invalid::UnsupportedVersion => ErrorCode::UNSUPPORTED_VERSION,
            Invalid::Undecodable => ErrorCode::UNDECODABLE,
        }
    }
}

/// Checks that `payload` decodes exactly as a `T` with keel's codec: a building block for
/// application validators.
pub fn decodes_as<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<(), Invalid> {
    crate::codec::decode::<T>(payload)
        .map(|_| ())
        .map_err(|_| Invalid::Undecodable)
}

/// The engine's size limits the network limits must respect.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineSizes {
    /// `Config::max_message_bytes` (the submitter's).
    pub(crate) max_message_bytes: usize,
    /// `Config::max_response_bytes` (the response receiver's).
    pub(crate) max_response_bytes: usize,
}

/// The limits in force, derived once from the `NetConfig` and the engine's sizes.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_payload_bytes: usize,
    pub(crate) max_response_bytes: usize,
    /// Pending output allowed for responses; errors may use [`frame::MAX_ERROR_FRAME_BYTES`]
    /// more, so a closing session can always say why.
    pub(crate) output_limit_bytes: usize,
    pub(crate) read_buffer_bytes: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) read_timeout: Duration,
    pub(crate) close_linger: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) token: Option<Box<[u8]>>,
    pub(crate) timer_tick: Duration,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl Limits {
    /// Checks `net` against `engine` and derives the effective limits.
    pub(crate) fn derive(net: &NetConfig, engine: EngineSizes) -> io::Result<Limits> {
        if net.timer_tick.is_zero() {
            return Err(invalid("timer_tick must not be zero".into()));
        }
        if net.max_connections == 0 || net.max_connections > 1 << 20 {
            return Err(invalid(format!(
                "max_connections {} out of range",
                net.max_connections
            )));
        }
        if net
            .token
            .as_ref()
            .is_some_and(|t| t.len() > frame::MAX_TOKEN_BYTES)
        {
            return Err(invalid(format!(
                "token longer than {} bytes",
                frame::MAX_TOKEN_BYTES
            )));
        }
        let max_frame_bytes = net
            .max_frame_bytes
            .min(frame::REQUEST_OVERHEAD_BYTES + engine.max_message_bytes)
            .max(frame::MIN_MAX_FRAME_BYTES);
        let max_payload_bytes =
            (max_frame_bytes - frame::REQUEST_OVERHEAD_BYTES).min(engine.max_message_bytes);
        let largest_response = frame::RESPONSE_OVERHEAD_BYTES + engine.max_response_bytes;
        let output_limit_bytes = net.output_limit_bytes.max(largest_response);
        if output_limit_bytes > u32::MAX as usize / 2 {
            return Err(invalid(format!(
                "output_limit_bytes {output_limit_bytes} too large"
            )));
        }
        Ok(Limits {
            max_connections: net.max_connections,
            max_frame_bytes,
            max_payload_bytes,
            max_response_bytes: engine.max_response_bytes,
            output_limit_bytes,
            read_buffer_bytes: net
                .read_buffer_bytes
                .max(frame::LEN_BYTES + max_frame_bytes),
            handshake_timeout: net.handshake_timeout,
            idle_timeout: net.idle_timeout.filter(|d| !d.is_zero()),
            read_timeout: net.read_timeout,
            close_linger: net.close_linger,
            shutdown_grace: net.shutdown_grace,
            token: net.token.clone().map(Vec::into_boxed_slice),
            timer_tick: net.timer_tick,
        })
    }

    /// Capacity of each session's output buffer.
    pub(crate) fn output_capacity_bytes(&self) -> usize {
        self.output_limit_bytes + frame::MAX_ERROR_FRAME_BYTES
    }

    /// The `WELCOME` for `session_id`.
    pub(crate) fn welcome(&self, session_id: u64) -> frame::Welcome {
        let idle_ms = self
            .idle_timeout
            .map_or(0, |d| d.as_millis().clamp(1, u32::MAX as u128));
        frame::Welcome {
            protocol_version: frame::PROTOCOL_VERSION,
            codec_id: crate::codec::CODEC_ID,
            session_id,
            max_frame_bytes: self.max_frame_bytes as u32,
            max_payload_bytes: self.max_payload_bytes as u32,
            max_response_bytes: self.max_response_bytes as u32,
            output_limit_bytes: self.output_limit_bytes as u32,
            idle_timeout_ms: idle_ms as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_engine() {
        let engine = EngineSizes {
            max_message_bytes: 100,
            max_response_bytes: 5000,
        };
        let l = Limits::derive(&NetConfig::default(), engine).unwrap();
        // A HELLO with the longest token must still fit.
        assert_eq!(l.max_frame_bytes, frame::MIN_MAX_FRAME_BYTES);
        assert_eq!(l.max_payload_bytes, 100);
        let engine = EngineSizes {
            max_message_bytes: 1024,
            max_response_bytes: 4096,
        };
        let net = NetConfig {
            output_limit_bytes: 10,
            ..NetConfig::default()
        };
        let l = Limits::derive(&net, engine).unwrap();
        assert_eq!(l.max_frame_bytes, 13 + 1024);
        assert_eq!(l.max_payload_bytes, 1024);
        assert_eq!(l.output_limit_bytes, frame::RESPONSE_OVERHEAD_BYTES + 4096);
        assert_eq!(l.welcome(7).idle_timeout_ms, 60_000);
        let net = NetConfig {
            token: Some(vec![0; 300]),
            ..NetConfig::default()
        };
        assert!(Limits::derive(&net, engine).is_err());
        let net = NetConfig {
            timer_tick: Duration::ZERO,
            ..NetConfig::default()
        };
        assert!(Limits::derive(&net, engine).is_err());
        assert_eq!(decodes_as::<u32>(&[1, 2, 3]), Err(Invalid::Undecodable));
        assert_eq!(decodes_as::<u32>(&[1, 2, 3, 4]), Ok(()));
    }
}
