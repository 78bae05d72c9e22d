//! Application queries on a rebuilt state.
//!
//! A query is an ordinary application command, parsed with `App::parse_command`, applied to the
//! rebuilt state with `apply_message` as if it were the message right after the state's last
//! sequence (sequence `SEQ + 1`, the timestamp of record `SEQ`, session 0, correlation id 0);
//! its response is shown with `App::describe_response`. Read-only commands (a book's stock, an
//! order book) leave the state unchanged; `state` also accepts a command that changes it (a
//! "what if", reported as such), `find` refuses one.

use serde_json::Value;

use super::error::ReplayError;
use keel::engine::{
    apply_message, Message, MessageHeader, Response, ResponseHeader, Status, CONTROL_KIND_MIN,
};
use keel_services::{App, Command};

/// A parsed query.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// The words, as given.
    pub(crate) words: Vec<String>,
    /// The message they parse to.
    pub(crate) command: Command,
}

/// One evaluation of a query: the response header and its payload.
pub(crate) struct Answer<'b> {
    pub(crate) header: ResponseHeader,
    pub(crate) payload: &'b [u8],
}

impl Answer<'_> {
    /// The response, as `App::describe_response` takes it.
    pub(crate) fn response(&self) -> Response<'_> {
        Response {
            header: self.header,
            payload: self.payload,
        }
    }
}

impl Query {
    /// Parses `words` (each may hold several words separated by spaces) as the application
    /// parses shell commands.
    pub(crate) fn parse<A: App>(words: &[String]) -> Result<Self, ReplayError> {
        let words: Vec<String> = words
            .iter()
            .flat_map(|w| w.split_whitespace())
            .map(str::to_owned)
            .collect();
        if words.is_empty() {
            return Err(ReplayError::Query(format!(
                "no query given; {} commands:\n{}",
                A::NAME,
                A::command_help()
            )));
        }
        let command = A::parse_command(&words).map_err(ReplayError::Query)?;
        if command.kind >= CONTROL_KIND_MIN {
            return Err(ReplayError::Query(format!(
                "kind {:#06x} is an engine control message",
                command.kind
            )));
        }
        Ok(Query { words, command })
    }

    /// Applies the query to `app`, the state after sequence `after` (whose record was stamped
    /// `timestamp_ns`), writing the response into `buf`.
    pub(crate) fn apply<'b, A: App>(
        &self,
        app: &mut A,
        after: u64,
        timestamp_ns: u64,
        buf: &'b mut [u8],
    ) -> Answer<'b> {
        let header = MessageHeader {
            sequence: after + 1,
            timestamp_ns,
            session_id: 0,
            correlation_id: 0,
            kind: self.command.kind,
            version: self.command.version,
        };
        let message = Message {
            header,
            payload: &self.command.payload,
        };
        let applied = apply_message(app, &message, buf);
        let header = ResponseHeader {
            sequence: after + 1,
            session_id: 0,
            correlation_id: 0,
            status: applied.status,
            reason: applied.reason,
            kind: applied.kind,
        };
        let payload: &'b [u8] = buf;
        Answer {
            header,
            payload: &payload[..applied.len],
        }
    }

    /// The answer as JSON.
    pub(crate) fn describe<A: App>(&self, answer: &Answer<'_>) -> Value {
        A::describe_response(self.command.kind, &answer.response())
    }
}

/// `accepted`, `rejected`, `failed` or `already-answered`.
pub(crate) fn status_name(status: Status) -> &'static str {
    match status {
        Status::Accepted => "accepted",
        Status::Rejected => "rejected",
        Status::Failed => "failed",
        Status::AlreadyAnswered => "already-answered",
    }
}
