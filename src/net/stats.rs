//! Counters of the network thread, readable from any thread.

use super::frame::ErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the network layer has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections given a session slot.
    pub accepted: u64,
    /// Connections refused with `TOO_MANY_CONNECTIONS`.
    pub rejected: u64,
    /// Sessions open now.
    pub active: u64,
    /// Successful handshakes.
    pub handshakes: u64,
    /// Requests published into the engine.
    pub requests: u64,
    /// Requests refused before the engine (unknown kind, version, undecodable, too large).
    pub refused: u64,
    /// Responses queued to their sessions.
    pub responses: u64,
    /// Responses whose session was gone (or over its output limit).
    pub responses_dropped: u64,
    /// Times the input ring was full and reading stopped (back-pressure episodes).
    pub input_full: u64,
    /// Sessions closed for an oversized, malformed or premature frame or a bad `HELLO`.
    pub protocol_errors: u64,
    /// Sessions closed for a wrong token.
    pub unauthorized: u64,
    /// Sessions closed by a handshake, read or idle timeout.
    pub timeouts: u64,
    /// Sessions closed because they did not read their responses.
    pub slow_consumers: u64,
    /// Connections that ended cleanly (at a frame boundary, or after a fatal error).
    pub closed: u64,
    /// Connections that ended in the middle of a frame.
    pub closed_mid_frame: u64,
    /// Connections that failed with a socket error (reset, broken pipe).
    pub disconnects: u64,
    /// Connections that spoke another protocol (HTTP, TLS, SSH): answered in plain text and
    /// closed.
    pub foreign_protocol: u64,
}

#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub(crate) enum Count {
    Accepted,
    Rejected,
    Active,
    Handshakes,
    Requests,
    Refused,
    Responses,
    ResponsesDropped,
    InputFull,
    ProtocolErrors,
    Unauthorized,
    Timeouts,
    SlowConsumers,
    Closed,
    ClosedMidFrame,
    Disconnects,
    ForeignProtocol,
}

const COUNTS: usize = Count::ForeignProtocol as usize + 1;

impl Count {
    /// The counter a fatal error sent by the server adds to.
    pub(crate) fn for_error(code: ErrorCode) -> Count {
        match code {
            ErrorCode::UNAUTHORIZED => Count::Unauthorized,
            ErrorCode::HANDSHAKE_TIMEOUT | ErrorCode::IDLE_TIMEOUT | ErrorCode::READ_TIMEOUT => {
                Count::Timeouts
            }
            ErrorCode::SLOW_CONSUMER => Count::SlowConsumers,
            _ => Count::ProtocolErrors,
        }
    }
}

/// Written only by the network thread (plain load + store, no read-modify-write), read by
/// anyone with relaxed loads.
#[derive(Debug, Default)]
pub(crate) struct Counters([AtomicU64; COUNTS]);

impl Counters {
    #[inline]
    pub(crate) fn bump(&self, c: Count) {
        let cell = &self.0[c as usize];
        cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn set(&self, c: Count, value: u64) {
        self.0[c as usize].store(value, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> NetStats {
        let g = |c: Count| self.0[c as usize].load(Ordering::Relaxed);
        NetStats {
            accepted: g(Count::Accepted),
            rejected: g(Count::Rejected),
            active: g(Count::Active),
            handshakes: g(Count::Handshakes),
            requests: g(Count::Requests),
            refused: g(Count::Refused),
            responses: g(Count::Responses),
            responses_dropped: g(Count::ResponsesDropped),
            input_full: g(Count::InputFull),
            protocol_errors: g(Count::ProtocolErrors),
            unauthorized: g(Count::Unauthorized),
            timeouts: g(Count::Timeouts),
            slow_consumers: g(Count::SlowConsumers),
            closed: g(Count::Closed),
            closed_mid_frame: g(Count::ClosedMidFrame),
            disconnects: g(Count::Disconnects),
            foreign_protocol: g(Count::ForeignProtocol),
        }
    }
}
