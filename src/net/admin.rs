//! Admin requests over the wire: a `REQUEST` of kind [`CONTROL_SNAPSHOT`] asks for a snapshot
//! now (`docs/PROTOCOL.md`, "Admin requests").
//!
//! The request goes into the input ring like any other message, so the business logic
//! captures the snapshot in journal order, right after everything submitted before it. The
//! engine's own response to the control message is not sent: the network thread holds the
//! request and answers once the snapshot thread reports the file durable (a `RESPONSE` whose
//! sequence is the snapshot's) or failed (`ERROR SNAPSHOT_FAILED`). One snapshot request is
//! in flight at a time; another meanwhile is refused with `SNAPSHOT_BUSY`.

use super::config::Limits;
use super::frame::{self, ErrorCode, Request};
use super::session::{Conn, Sessions};
use super::stats::{Count, Counters};
use crate::engine::{ResponseHeader, Status, Submission, SubmitError, Submitter, CONTROL_SNAPSHOT};
use crate::snapshot::SnapshotStats;
use std::sync::Arc;
use std::time::Duration;

/// How often the network thread looks for the outcome of a snapshot it waits for (the
/// snapshot thread does not wake it).
pub(crate) const SNAPSHOT_POLL: Duration = Duration::from_millis(5);

/// A snapshot asked for over the network, waiting to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotRequest {
    session_id: u64,
    correlation_id: u64,
    /// The control message's sequence: the snapshot's.
    pub(crate) sequence: u64,
}

/// Why a snapshot request was not submitted.
pub(crate) enum Refusal {
    /// Answer with this request-level error.
    Error(ErrorCode, &'static str),
    /// The input ring is full: retry later.
    Full,
    /// The engine stopped.
    Stopped,
}

/// Submits a snapshot request, or says why not.
pub(crate) fn request_snapshot(
    submitter: &mut Submitter,
    pending: &mut Option<SnapshotRequest>,
    conn: &Conn,
    request: &Request<'_>,
) -> Result<(), Refusal> {
    if submitter.metrics().is_none() {
        let text = "this server cannot take snapshots on request";
        return Err(Refusal::Error(ErrorCode::UNKNOWN_KIND, text));
    }
    if request.version != 1 || !request.payload.is_empty() {
        let text = "a snapshot request is version 1 with an empty payload";
        return Err(Refusal::Error(ErrorCode::UNDECODABLE, text));
    }
    if pending.is_some() {
        let text = "a snapshot asked for earlier is still being written; retry";
        return Err(Refusal::Error(ErrorCode::SNAPSHOT_BUSY, text));
    }
    let to = Submission {
        kind: CONTROL_SNAPSHOT,
        version: 1,
        session_id: conn.id,
        correlation_id: request.correlation_id,
    };
    match submitter.try_submit(to, &[]) {
        Ok(sequence) => {
            *pending = Some(SnapshotRequest {
                session_id: conn.id,
                correlation_id: request.correlation_id,
                sequence,
            });
            Ok(())
        }
        Err(SubmitError::Full) => Err(Refusal::Full),
        Err(_) => Err(Refusal::Stopped),
    }
}

/// Answers the pending snapshot request once its outcome is known; returns whether the
/// request is settled (answered, or its session gone).
pub(crate) fn answer_snapshot(
    request: SnapshotRequest,
    stats: &Arc<SnapshotStats>,
    sessions: &mut Sessions,
    limits: &Limits,
    counters: &Counters,
) -> bool {
    let Some(written) = stats.requested_outcome(request.sequence) else {
        return false;
    };
    let Some(slot) = sessions.lookup_open(request.session_id) else {
        return true;
    };
    let conn = &mut sessions.slots[slot].conn;
    let queued = if written {
        let header = ResponseHeader {
            sequence: request.sequence,
            session_id: request.session_id,
            correlation_id: request.correlation_id,
            status: Status::Accepted,
            reason: 0,
            kind: CONTROL_SNAPSHOT,
        };
        let encode = |buf: &mut [u8]| frame::encode_response(buf, &header, &[]);
        let size = frame::RESPONSE_OVERHEAD_BYTES;
        conn.output.append(limits.output_limit_bytes, size, encode)
    } else {
        let text = "the snapshot could not be written; the server's log says why";
        conn.push_error(
            limits,
            ErrorCode::SNAPSHOT_FAILED,
            request.correlation_id,
            text,
        )
    };
    if queued {
        counters.bump(Count::Responses);
        sessions.mark_dirty(slot as u32);
    } else {
        counters.bump(Count::ResponsesDropped);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes docs/PROTOCOL.md shows for a snapshot request and its answer.
    #[test]
    fn a_snapshot_request_and_its_answer_are_the_documented_bytes() {
        let mut buf = [0u8; 64];
        let request = Request {
            correlation_id: 7,
            kind: CONTROL_SNAPSHOT,
            version: 1,
            payload: &[],
        };
        let n = frame::encode_request(&mut buf, &request).unwrap();
        let documented = "0d000000 02 0700000000000000 01ff 0100";
        assert_eq!(hex(&buf[..n]), documented.replace(' ', ""));
        let header = ResponseHeader {
            sequence: 42,
            session_id: 1,
            correlation_id: 7,
            status: Status::Accepted,
            reason: 0,
            kind: CONTROL_SNAPSHOT,
        };
        let n = frame::encode_response(&mut buf, &header, &[]).unwrap();
        let documented = "19000000 82 0700000000000000 2a00000000000000 01ff 00 00 00000000";
        assert_eq!(hex(&buf[..n]), documented.replace(' ', ""));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
