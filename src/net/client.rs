//! A blocking, pipelined client for the keel protocol: many requests may be in flight on one
//! connection; answers come back in the order the engine applied the requests.
//!
//! ```no_run
//! # fn main() -> Result<(), keel::net::ClientError> {
//! let mut client = keel::net::Client::connect("127.0.0.1:7700", None)?;
//! for i in 0..100u64 {
//!     client.queue(1, 1, &i.to_le_bytes())?; // buffered
//! }
//! for _ in 0..100 {
//!     let reply = client.recv()?; // flushes the queue first
//!     println!("{} -> seq {} {:?}", reply.correlation_id, reply.sequence, reply.status);
//! }
//! let reply = client.request(1, 1, &7u64.to_le_bytes())?; // one round trip
//! # let _ = reply; Ok(()) }
//! ```

use super::foreign::Foreign;
use super::frame::{self, ErrorCode, Frame, Request, Welcome};
use super::resume::Resume;
use crate::engine::{Response, ResponseHeader, Status};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long `connect` waits for the server's `WELCOME`.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);
/// Smallest send and receive buffers.
const MIN_BUFFER_BYTES: usize = 64 << 10;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Socket error (including a read timeout set with `set_read_timeout`).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The server sent a fatal `ERROR` and closed the connection.
    #[error("server error {code}: {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server closed the connection without an error frame.
    #[error("connection closed by the server")]
    Closed,
    /// The server sent something that is not valid protocol.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// The payload exceeds the server's `max_payload_bytes`.
    #[error("payload of {len} bytes exceeds the server's {max}-byte limit")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// The server's limit.
        max: usize,
    },
    /// A call that needs an idle connection (`request`, `ping`) found requests in flight.
    #[error("{0} requests still in flight")]
    InFlight(u64),
}

impl ClientError {
    /// The server's error code, if the server ended the connection with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How the server answered one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// Journaled and applied.
    Accepted,
    /// Journaled and refused by the business logic with this reason code.
    Rejected(u32),
    /// Journaled; the business logic failed on it (payload: diagnostic text).
    Failed,
    /// Refused by the server before the engine (request-level error; payload: text).
    Refused(ErrorCode),
}

/// One answer, borrowing the client's receive buffer until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The request's correlation id.
    pub correlation_id: u64,
    /// The request's journal sequence (0 when `Refused`).
    pub sequence: u64,
    /// Outcome.
    pub status: ReplyStatus,
    /// Application response kind (0 when `Refused`).
    pub kind: u16,
    /// Response payload, or the error text when `Refused`.
    pub payload: &'a [u8],
}

/// A [`Reply`] that owns its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedReply {
    /// The request's correlation id.
    pub correlation_id: u64,
    /// The request's journal sequence (0 when `Refused`).
    pub sequence: u64,
    /// Outcome.
    pub status: ReplyStatus,
    /// Application response kind.
    pub kind: u16,
    /// Response payload, or the error text when `Refused`.
    pub payload: Vec<u8>,
}

/// The engine's view of an answer (for `App::describe_response` and the like); `None` when the
/// request was refused before the engine.
fn engine_response(
    session_id: u64,
    correlation_id: u64,
    sequence: u64,
    status: ReplyStatus,
    kind: u16,
    payload: &[u8],
) -> Option<Response<'_>> {
    let (status, reason) = match status {
        ReplyStatus::Accepted => (Status::Accepted, 0),
        ReplyStatus::Rejected(reason) => (Status::Rejected, reason),
        ReplyStatus::Failed => (Status::Failed, 0),
        ReplyStatus::Refused(_) => return None,
    };
    let header = ResponseHeader {
        sequence,
        session_id,
        correlation_id,
        status,
        reason,
        kind,
    };
    Some(Response { header, payload })
}

impl OwnedReply {
    /// As the engine's `Response` sent to `session_id`; `None` when `Refused`.
    pub fn as_response(&self, session_id: u64) -> Option<Response<'_>> {
        let (c, s) = (self.correlation_id, self.sequence);
        engine_response(session_id, c, s, self.status, self.kind, &self.payload)
    }
}

impl<'a> Reply<'a> {
    /// As the engine's `Response` sent to `session_id`; `None` when `Refused`.
    pub fn as_response(&self, session_id: u64) -> Option<Response<'a>> {
        let (c, s) = (self.correlation_id, self.sequence);
        engine_response(session_id, c, s, self.status, self.kind, self.payload)
    }

    /// Copies the payload out.
    pub fn owned(&self) -> OwnedReply {
        OwnedReply {
            correlation_id: self.correlation_id,
            sequence: self.sequence,
            status: self.status,
            kind: self.kind,
            payload: self.payload.to_vec(),
        }
    }
}

pub(super) fn reply_of(frame: Frame<'_>) -> Result<Reply<'_>, ClientError> {
    match frame {
        Frame::Response(r) => Ok(Reply {
            correlation_id: r.correlation_id,
            sequence: r.sequence,
            status: match r.status {
                Status::Accepted => ReplyStatus::Accepted,
                Status::Rejected => ReplyStatus::Rejected(r.reason),
                Status::Failed => ReplyStatus::Failed,
                Status::AlreadyAnswered => ReplyStatus::Refused(ErrorCode::ALREADY_ANSWERED),
            },
            kind: r.kind,
            payload: r.payload,
        }),
        Frame::Error(e) if !e.code.is_fatal() => Ok(Reply {
            correlation_id: e.correlation_id,
            sequence: 0,
            status: ReplyStatus::Refused(e.code),
            kind: 0,
            payload: e.text,
        }),
        other => Err(unexpected(other)),
    }
}

fn unexpected(frame: Frame<'_>) -> ClientError {
    match frame {
        Frame::Error(e) => ClientError::Server {
            code: e.code,
            message: String::from_utf8_lossy(e.text).into_owned(),
        },
        other => {
            let name = match other {
                Frame::Hello(_) => "HELLO",
                Frame::Request(_) => "REQUEST",
                Frame::Ping(_) => "PING",
                Frame::Welcome(_) => "WELCOME",
                Frame::Response(_) => "RESPONSE",
                Frame::Pong(_) => "PONG",
                _ => "unknown",
            };
            ClientError::Protocol(format!("unexpected {name} frame"))
        }
    }
}

/// The sending half: frames requests into a buffer and writes them out.
#[derive(Debug)]
pub struct ClientSender {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) next_correlation: u64,
    max_payload_bytes: usize,
}

impl ClientSender {
    /// Buffers a request with the next correlation id (1, 2, 3, …) and returns that id.
    /// Nothing is written until [`ClientSender::flush`] (or the buffer fills).
    pub fn queue(&mut self, kind: u16, version: u16, payload: &[u8]) -> Result<u64, ClientError> {
        let id = self.next_correlation;
        self.queue_with_id(id, kind, version, payload)?;
        self.next_correlation += 1;
        Ok(id)
    }

    /// Buffers a request with a correlation id of the caller's choice.
    pub fn queue_with_id(
        &mut self,
        correlation_id: u64,
        kind: u16,
        version: u16,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        payload_fits(payload, self.max_payload_bytes)?;
        let size = frame::LEN_BYTES + frame::REQUEST_OVERHEAD_BYTES + payload.len();
        if self.buf.len() + size > self.buf.capacity() {
            self.flush()?;
        }
        let request = Request {
            correlation_id,
            kind,
            version,
            payload,
        };
        append_request(&mut self.buf, &request);
        Ok(())
    }

    /// Buffers a request and writes everything buffered. Returns its correlation id.
    pub fn send(&mut self, kind: u16, version: u16, payload: &[u8]) -> Result<u64, ClientError> {
        let id = self.queue(kind, version, payload)?;
        self.flush()?;
        Ok(id)
    }

    /// Writes everything buffered.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Bytes buffered and not written yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn ping(&mut self, nonce: u64) -> Result<(), ClientError> {
        let mut frame = [0u8; frame::LEN_BYTES + frame::TYPE_BYTES + frame::NONCE_BYTES];
        frame::encode_ping(&mut frame, false, nonce).expect("sized");
        self.flush()?;
        self.stream.write_all(&frame)?;
        Ok(())
    }
}

/// The receiving half: reads and decodes the server's frames.
#[derive(Debug)]
pub struct ClientReceiver {
    pub(super) stream: TcpStream,
    pub(super) buf: Box<[u8]>,
    start: usize,
    end: usize,
    max_frame_bytes: usize,
}

impl ClientReceiver {
    fn new(stream: TcpStream, max_response_bytes: usize) -> Self {
        let max_frame_bytes =
            (frame::TYPE_BYTES + frame::RESPONSE_HEADER_BYTES + max_response_bytes)
                .max(frame::MAX_ERROR_FRAME_BYTES)
                .max(frame::TYPE_BYTES + frame::WELCOME_BYTES);
        let capacity = MIN_BUFFER_BYTES.max(frame::LEN_BYTES + max_frame_bytes);
        ClientReceiver {
            stream,
            buf: vec![0; capacity].into(),
            start: 0,
            end: 0,
            max_frame_bytes,
        }
    }

    /// Waits for the next answer (a response or a request-level error). A fatal error from
    /// the server is `Err(ClientError::Server)`.
    pub fn recv(&mut self) -> Result<Reply<'_>, ClientError> {
        let (at, len) = loop {
            let (at, len) = self.next_frame()?;
            if self.buf[at] != frame::PONG {
                break (at, len);
            }
        };
        reply_of(self.decode(at, len)?)
    }

    /// Position and length (type byte onwards) of the next complete frame.
    pub(super) fn next_frame(&mut self) -> Result<(usize, usize), ClientError> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let framed = frame::frame_len(pending, self.max_frame_bytes).map_err(|e| {
                let text =
                    Foreign::detect(pending).map_or_else(|| e.to_string(), Foreign::server_text);
                ClientError::Protocol(text)
            })?;
            if let Some(total) = framed {
                let at = self.start + frame::LEN_BYTES;
                self.start += total;
                return Ok((at, total - frame::LEN_BYTES));
            }
            self.fill()?;
        }
    }

    pub(super) fn decode(&self, at: usize, len: usize) -> Result<Frame<'_>, ClientError> {
        frame::decode(&self.buf[at..at + len]).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn fill(&mut self) -> Result<(), ClientError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn expect_pong(&mut self, nonce: u64) -> Result<(), ClientError> {
        loop {
            let (at, len) = self.next_frame()?;
            match self.decode(at, len)? {
                Frame::Pong(n) if n == nonce => return Ok(()),
                Frame::Pong(_) => {}
                other => return Err(unexpected(other)),
            }
        }
    }
}

/// A connection to a keel server. Not shared between threads; [`Client::split`] gives a
/// sender and a receiver that can be.
#[derive(Debug)]
pub struct Client {
    pub(super) sender: ClientSender,
    pub(super) receiver: ClientReceiver,
    pub(super) welcome: Welcome,
    pub(super) in_flight: u64,
    /// Exactly-once: where to reconnect and what to resend (`Client::connect_exactly_once`).
    pub(super) resume: Option<Box<Resume>>,
}

impl Client {
    /// Connects, sends `HELLO` with `token` (if any) and waits for `WELCOME`. A refusal by the
    /// server (`UNAUTHORIZED`, `TOO_MANY_CONNECTIONS`, ...) is `Err(ClientError::Server)`.
    pub fn connect(addr: impl ToSocketAddrs, token: Option<&[u8]>) -> Result<Client, ClientError> {
        Client::connect_as(addr, token, 0)
    }

    /// Like [`Client::connect`], declaring `client_id` in `HELLO` (protocol 2; 0: none). The
    /// server journals this connection's requests under the client id, so a request resent
    /// with the same correlation id on a later connection is applied at most once. This call
    /// alone does not resend anything: [`Client::connect_exactly_once`] does.
    pub fn connect_as(
        addr: impl ToSocketAddrs,
        token: Option<&[u8]>,
        client_id: u64,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)?;
        if stream.local_addr()? == stream.peer_addr()? {
            // TCP's simultaneous open: nothing listens on a port of the ephemeral range, and
            // the kernel gave this socket that very port.
            let why = "connected to itself: nothing listens on that address";
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, why).into());
        }
        stream.set_nodelay(true)?;
        let mut hello = [0u8; frame::LEN_BYTES + frame::MIN_MAX_FRAME_BYTES];
        let declared = frame::Hello {
            protocol_version: frame::PROTOCOL_VERSION,
            token: token.unwrap_or_default(),
            client_id,
        };
        let n = frame::encode_hello(&mut hello, &declared).ok_or(ClientError::TooLarge {
            len: token.map_or(0, <[u8]>::len),
            max: frame::MAX_TOKEN_BYTES,
        })?;
        // A server that refuses us may already have closed: still read its error frame.
        let sent = (&stream).write_all(&hello[..n]);
        stream.set_read_timeout(Some(HANDSHAKE_WAIT))?;
        let mut receiver = ClientReceiver::new(stream.try_clone()?, 0);
        let welcome = match receiver
            .next_frame()
            .and_then(|(at, len)| receiver.decode(at, len))
        {
            Ok(Frame::Welcome(w)) => w,
            Ok(other) => return Err(unexpected(other)),
            Err(e) => return Err(sent.err().map_or(e, ClientError::Io)),
        };
        stream.set_read_timeout(None)?;
        Ok(Client::with_welcome(stream, receiver, welcome)?)
    }

    fn with_welcome(
        stream: TcpStream,
        old: ClientReceiver,
        welcome: Welcome,
    ) -> io::Result<Client> {
        let mut receiver = ClientReceiver::new(old.stream, welcome.max_response_bytes as usize);
        // Keep anything that arrived right behind the WELCOME.
        let rest = &old.buf[old.start..old.end];
        receiver.buf[..rest.len()].copy_from_slice(rest);
        receiver.end = rest.len();
        let max_frame = welcome.max_frame_bytes as usize;
        let sender = ClientSender {
            stream,
            buf: Vec::with_capacity(MIN_BUFFER_BYTES.max(frame::LEN_BYTES + max_frame)),
            next_correlation: 1,
            max_payload_bytes: welcome.max_payload_bytes as usize,
        };
        Ok(Client {
            sender,
            receiver,
            welcome,
            in_flight: 0,
            resume: None,
        })
    }

    /// What the server announced: session id and limits.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// This connection's session id.
    pub fn session_id(&self) -> u64 {
        self.welcome.session_id
    }

    /// Requests sent (or queued) and not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Buffers a request; returns its correlation id. See [`ClientSender::queue`].
    pub fn queue(&mut self, kind: u16, version: u16, payload: &[u8]) -> Result<u64, ClientError> {
        let id = self.sender.next_correlation;
        self.queue_with_id(id, kind, version, payload)?;
        self.sender.next_correlation = id + 1;
        Ok(id)
    }

    /// Buffers a request with the caller's correlation id.
    pub fn queue_with_id(
        &mut self,
        correlation_id: u64,
        kind: u16,
        version: u16,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        if self.resume.is_some() {
            return self.queue_resumable(correlation_id, kind, version, payload);
        }
        self.sender
            .queue_with_id(correlation_id, kind, version, payload)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Sends a request now (with everything queued before it); returns its correlation id.
    pub fn send(&mut self, kind: u16, version: u16, payload: &[u8]) -> Result<u64, ClientError> {
        let id = self.queue(kind, version, payload)?;
        self.flush()?;
        Ok(id)
    }

    /// Writes everything queued.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if self.resume.is_some() {
            return self.flush_resumable();
        }
        self.sender.flush()
    }

    /// Flushes, then waits for the next answer.
    pub fn recv(&mut self) -> Result<Reply<'_>, ClientError> {
        if self.resume.is_some() {
            return self.recv_resumable();
        }
        self.sender.flush()?;
        let reply = self.receiver.recv()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Ok(reply)
    }

    /// Sends one request and waits for its answer. Needs an idle connection.
    pub fn request(
        &mut self,
        kind: u16,
        version: u16,
        payload: &[u8],
    ) -> Result<OwnedReply, ClientError> {
        if self.in_flight != 0 {
            return Err(ClientError::InFlight(self.in_flight));
        }
        let id = self.send(kind, version, payload)?;
        let reply = self.recv()?;
        if reply.correlation_id != id {
            return Err(ClientError::Protocol(format!(
                "answer to {} for {id}",
                reply.correlation_id
            )));
        }
        Ok(reply.owned())
    }

    /// Round trip through the network thread only (not the engine). Needs an idle connection.
    pub fn ping(&mut self) -> Result<Duration, ClientError> {
        if self.in_flight != 0 {
            return Err(ClientError::InFlight(self.in_flight));
        }
        let start = Instant::now();
        let nonce = start.elapsed().as_nanos() as u64 ^ self.welcome.session_id;
        self.sender.ping(nonce)?;
        self.receiver.expect_pong(nonce)?;
        Ok(start.elapsed())
    }

    /// Bounds how long `recv` waits (`None`: forever). A timeout is `ClientError::Io` with
    /// kind `WouldBlock` or `TimedOut`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.receiver.stream.set_read_timeout(timeout)
    }

    /// Closes the connection (both directions).
    pub fn close(self) {
        let _ = self.sender.stream.shutdown(Shutdown::Both);
    }

    /// Splits into a sender and a receiver usable from two threads (in-flight counting is
    /// then the caller's job).
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        (self.sender, self.receiver)
    }
}

/// `TooLarge` when `payload` is over the server's `max` payload bytes.
pub(super) fn payload_fits(payload: &[u8], max: usize) -> Result<(), ClientError> {
    if payload.len() > max {
        return Err(ClientError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    Ok(())
}

/// Appends `request` to `buf` as one `REQUEST` frame; returns the frame's size in bytes.
pub(super) fn append_request(buf: &mut Vec<u8>, request: &Request<'_>) -> usize {
    let size = frame::LEN_BYTES + frame::REQUEST_OVERHEAD_BYTES + request.payload.len();
    let at = buf.len();
    buf.resize(at + size, 0);
    let n = frame::encode_request(&mut buf[at..], request).expect("sized above");
    debug_assert_eq!(n, size);
    size
}
