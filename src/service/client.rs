//! The host's side of a typed service: submit commands, read typed replies.

use super::command::Payload;
use super::typed::refusal_of;
use super::{Command, Service, KIND_OMITTED, RESERVED_CODE_MIN};
use crate::codec::{self, CodecError};
use crate::engine::{Client, ClientError, ResponseReceiver, SubmitError, Submitter, Ticket};
use crate::ring::Poll;
use crate::service::Invalid;
use crate::{Response, Status};
use serde::de::DeserializeOwned;

/// Why a typed call did not return a reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError<R> {
    /// The service rejected the command; the state is unchanged.
    #[error("rejected: {0:?}")]
    Rejected(R),
    /// keel refused the message before the service saw it (a kind or version this build does
    /// not know, or a payload that does not decode); the state is unchanged.
    #[error("refused before apply: {0:?}")]
    Refused(Invalid),
    /// The service panicked applying the command (contained; replay reproduces it). Holds the
    /// panic message.
    #[error("the service failed: {0}")]
    Failed(String),
    /// The reply or rejection did not fit `Config::max_response_bytes`. The command was
    /// applied when `status` is `Accepted`; rejected with `reason` when `Rejected`.
    #[error("the answer did not fit max_response_bytes (status {status:?}, reason {reason})")]
    TooLarge {
        /// Whether the command was applied.
        status: Status,
        /// The rejection code, when rejected.
        reason: u32,
    },
    /// The payload does not decode as this service's reply or rejection (a response of
    /// another service, or of another build).
    #[error("the response does not decode: {0}")]
    Undecodable(#[source] CodecError),
    /// An exactly-once request id applied before, whose reply the engine no longer holds
    /// (docs/engine.md, "Exactly once"); it was not applied again.
    #[error("applied before; its reply is no longer held")]
    AlreadyAnswered,
    /// The command could not be submitted.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// An in-process [`Client`] could not submit the command or wait for its reply.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The engine stopped before answering.
    #[error("the engine stopped before answering")]
    Closed,
}

/// Turns the response to a command of service `S` into its reply, or why there is none.
pub fn decode_response<S: Service>(
    response: &Response<'_>,
) -> Result<S::Reply<'static>, CallError<S::Rejection>>
where
    S::Reply<'static>: DeserializeOwned,
{
    let header = &response.header;
    if header.status == Status::Rejected && header.reason >= RESERVED_CODE_MIN {
        let refused = refusal_of(header.reason).unwrap_or(Invalid::Undecodable);
        return Err(CallError::Refused(refused));
    }
    if header.kind == KIND_OMITTED && header.status != Status::Failed {
        return Err(CallError::TooLarge {
            status: header.status,
            reason: header.reason,
        });
    }
    match header.status {
        Status::Accepted => codec::decode(response.payload).map_err(CallError::Undecodable),
        Status::Rejected => match codec::decode(response.payload) {
            Ok(rejection) => Err(CallError::Rejected(rejection)),
            Err(error) => Err(CallError::Undecodable(error)),
        },
        Status::Failed => Err(CallError::Failed(
            String::from_utf8_lossy(response.payload).into_owned(),
        )),
        Status::AlreadyAnswered => Err(CallError::AlreadyAnswered),
    }
}

/// Submits `command` (kind, version and encoded payload; session 0, correlation 0) and
/// returns its sequence, without waiting for the reply. Waits while the input ring is full.
/// Does not allocate.
pub fn submit<C: Command>(submitter: &mut Submitter, command: &C) -> Result<u64, SubmitError> {
    submitter.submit_encoded(command.submission(), &Payload(command))
}

/// Submits `command` to service `S` and waits for its reply.
///
/// For a host that owns both the engine's submitter and its response receiver: responses are
/// read in order up to this command's, so those of earlier commands nobody read are skipped.
pub fn call<S: Service>(
    submitter: &mut Submitter,
    responses: &mut ResponseReceiver,
    command: &S::Command,
) -> Result<S::Reply<'static>, CallError<S::Rejection>>
where
    S::Reply<'static>: DeserializeOwned,
{
    let sequence = submit(submitter, command)?;
    let mut answer = None;
    loop {
        let poll = responses.poll(None, |response| {
            if response.header.sequence == sequence {
                answer = Some(decode_response::<S>(&response));
            }
        });
        if let Some(answer) = answer {
            return answer;
        }
        if matches!(poll, Poll::Closed | Poll::Halted) {
            return Err(CallError::Closed);
        }
    }
}

/// Typed calls from any thread, through an in-process [`Client`] (an engine with
/// `Config::producers = Producers::Multi`). The command is encoded straight into its ring
/// slot and the reply decoded from its reply slot: no allocation on the way in; on the way
/// out only what the reply type's own decoding allocates.
impl Client {
    /// Submits `command` to service `S` and waits for its decoded reply:
    /// `client.call_typed::<Ledger>(&LedgerCommand::Balance { account: 7 })`.
    pub fn call_typed<S: Service>(
        &self,
        command: &S::Command,
    ) -> Result<S::Reply<'static>, CallError<S::Rejection>>
    where
        S::Reply<'static>: DeserializeOwned,
    {
        let reply = self.submit_typed(command)?.wait()?;
        decode_response::<S>(&reply.response())
    }

    /// Submits `command` without waiting; its [`Ticket`] gives the reply, which
    /// [`decode_response`] turns into the service's reply or rejection.
    pub fn submit_typed<C: Command>(&self, command: &C) -> Result<Ticket<'_>, ClientError> {
        self.submit_encoded(command.submission(), &Payload(command), true)
    }
}
