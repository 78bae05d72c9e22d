//! Exactly-once for the [`Client`]: it keeps its client id and every request not answered
//! yet, finds the cluster's leader (following `NOT_LEADER` redirects, trying the next address
//! when one does not answer), and after a reconnect resends the unanswered requests with the
//! same ids, in order (docs/PROTOCOL.md, "Exactly once").
//!
//! The unanswered requests are kept as their encoded `REQUEST` frames in one buffer that grows
//! to the largest backlog and is then reused: no allocation per request.

use super::client::{append_request, payload_fits, reply_of, Client, ClientError, Reply};
use super::frame::{self, ErrorCode, Frame, Request};
use super::leader::leader_in;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Connection attempts (including redirects) before a call gives up.
const MAX_ATTEMPTS: u32 = 40;
/// First pause between attempts; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Bytes of answered requests kept at the front of the buffer before it is compacted.
const COMPACT_BYTES: usize = 64 << 10;

/// Where an exactly-once client reconnects and what it resends.
#[derive(Debug)]
pub(crate) struct Resume {
    addrs: Vec<SocketAddr>,
    token: Option<Vec<u8>>,
    client_id: u64,
    /// The address of the current connection, as an index into `addrs` (or a redirect).
    current: usize,
    /// Encoded `REQUEST` frames not answered yet, from `head`.
    frames: Vec<u8>,
    head: usize,
    /// Their request ids and frame sizes, oldest first.
    pending: VecDeque<(u64, usize)>,
}

impl Resume {
    /// Forgets the requests up to request id `answered` (the oldest in flight: answers are
    /// taken in request order).
    fn pop_through(&mut self, answered: Option<u64>) {
        let Some(answered) = answered else {
            return;
        };
        while let Some(&(id, len)) = self.pending.front() {
            if id > answered {
                break;
            }
            self.pending.pop_front();
            self.head += len;
        }
        if self.pending.is_empty() {
            self.head = 0;
            self.frames.clear();
        } else if self.head >= COMPACT_BYTES && self.head * 2 >= self.frames.len() {
            self.frames.drain(..self.head);
            self.head = 0;
        }
    }
}

/// What one frame from the server means for the requests in flight.
enum Next {
    /// Hand this answer (to this request id; `None`: no request's) to the caller.
    Deliver(Option<u64>),
    /// An answer to a request answered before (sent again on a later connection): skip.
    Stale,
    /// Not the leader: reconnect (to the leader, when named) and resend.
    Redirect(Option<SocketAddr>),
}

impl Client {
    /// Connects for exactly-once to the first of `addrs` (the cluster's client addresses)
    /// that answers, declaring `client_id` (non-zero, below 2^63; see
    /// [`Client::random_client_id`]). The client then keeps every request until it is
    /// answered; when the connection fails, or the server answers `NOT_LEADER`, it reconnects
    /// (to the leader the redirect names, else the next address; at most 40 attempts per call,
    /// with backoff from 5 ms to 500 ms; this first connection makes two rounds over `addrs`) and resends them with the same ids, in order. Request
    /// ids start at the current time in nanoseconds, so a process that reuses its client id
    /// continues above the ids of its predecessor. Replies keep coming in request order; a
    /// resent request the server applied before is answered with its original reply, or
    /// refused with `ALREADY_ANSWERED` when the server no longer holds that reply.
    /// [`Client::split`] leaves exactly-once behind.
    pub fn connect_exactly_once(
        addrs: &[SocketAddr],
        token: Option<&[u8]>,
        client_id: u64,
    ) -> Result<Client, ClientError> {
        if addrs.is_empty() || client_id == 0 || client_id >= 1 << 63 {
            let why = "exactly-once needs an address and a client id in 1..2^63";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why).into());
        }
        let resume = Resume {
            addrs: addrs.to_vec(),
            token: token.map(<[u8]>::to_vec),
            client_id,
            current: 0,
            frames: Vec::new(),
            head: 0,
            pending: VecDeque::new(),
        };
        // One round over the addresses, twice: a refused start fails fast.
        let attempts = 2 * resume.addrs.len() as u32;
        let (mut client, current) = reach(&resume, 0, None, attempts)?;
        client.resume = Some(Box::new(Resume { current, ..resume }));
        let first_id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        client.sender.next_correlation = first_id.max(1);
        Ok(client)
    }

    /// A random client id for [`Client::connect_exactly_once`] (non-zero, below 2^63), from
    /// the operating system's randomness.
    pub fn random_client_id() -> u64 {
        let mut bytes = [0u8; 8];
        let from_os = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .is_ok();
        let mut id = u64::from_le_bytes(bytes);
        if !from_os {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            id = hasher.finish();
        }
        (id >> 1).max(1)
    }

    /// The exactly-once client id (0 for a client without exactly-once).
    pub fn client_id(&self) -> u64 {
        self.resume.as_ref().map_or(0, |r| r.client_id)
    }

    /// `queue_with_id` for an exactly-once client: the frame is kept until answered.
    pub(super) fn queue_resumable(
        &mut self,
        correlation_id: u64,
        kind: u16,
        version: u16,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        payload_fits(payload, self.welcome.max_payload_bytes as usize)?;
        let resume = self.resume.as_mut().expect("exactly-once client");
        let request = Request {
            correlation_id,
            kind,
            version,
            payload,
        };
        let size = append_request(&mut resume.frames, &request);
        resume.pending.push_back((correlation_id, size));
        self.in_flight = resume.pending.len() as u64;
        if let Err(error) = self
            .sender
            .queue_with_id(correlation_id, kind, version, payload)
        {
            self.reconnect(None, error)?;
        }
        Ok(())
    }

    /// `flush` for an exactly-once client: a failed write reconnects and resends.
    pub(super) fn flush_resumable(&mut self) -> Result<(), ClientError> {
        match self.sender.flush() {
            Ok(()) => Ok(()),
            Err(error) => self.reconnect(None, error),
        }
    }

    /// `recv` for an exactly-once client (see [`Client::connect_exactly_once`]).
    pub(super) fn recv_resumable(&mut self) -> Result<Reply<'_>, ClientError> {
        // Stale answers consume input, so they end; reconnections are counted.
        let mut reconnects = 0u32;
        loop {
            self.flush_resumable()?;
            let (at, len) = match self.receiver.next_frame() {
                Ok(frame) => frame,
                Err(error) if is_timeout(&error) => return Err(error),
                Err(error) => {
                    self.reconnect_again(&mut reconnects, None, error)?;
                    continue;
                }
            };
            if self.receiver.buf[at] == frame::PONG {
                continue;
            }
            let answered = match self.classify(&self.receiver.decode(at, len)?) {
                Next::Deliver(id) => id,
                Next::Stale => continue,
                Next::Redirect(leader) => {
                    let error = ClientError::Server {
                        code: ErrorCode::NOT_LEADER,
                        message: "not the leader".into(),
                    };
                    self.reconnect_again(&mut reconnects, leader, error)?;
                    continue;
                }
            };
            let resume = self.resume.as_mut().expect("exactly-once client");
            resume.pop_through(answered);
            self.in_flight = resume.pending.len() as u64;
            return reply_of(self.receiver.decode(at, len)?);
        }
    }

    /// One more reconnection within one call: at most [`MAX_ATTEMPTS`] of them, each after a
    /// pause that grows with their number (two servers that name each other as leader during
    /// a change of leader are not hammered).
    fn reconnect_again(
        &mut self,
        reconnects: &mut u32,
        leader: Option<SocketAddr>,
        error: ClientError,
    ) -> Result<(), ClientError> {
        *reconnects += 1;
        if *reconnects > MAX_ATTEMPTS {
            return Err(error);
        }
        if *reconnects > 1 {
            std::thread::sleep((FIRST_BACKOFF * *reconnects).min(MAX_BACKOFF));
        }
        self.reconnect(leader, error)
    }

    /// What `frame` means for the oldest request in flight. A fatal error is delivered (as
    /// `Err` by `reply_of`) only when the server will not take requests from this client any
    /// more; else it reconnects.
    fn classify(&self, frame: &Frame<'_>) -> Next {
        let resume = self.resume.as_ref().expect("exactly-once client");
        let oldest = resume.pending.front().map_or(u64::MAX, |&(id, _)| id);
        // Answers are delivered in request order: only the oldest request's counts. After a
        // reconnection the answers to the first submissions of later requests can arrive
        // before the answers to the resent older ones (both are routed by client id); they
        // are skipped, and each later request is answered again, in order, through its
        // resend (from the engine's exactly-once window).
        let answer = |id: u64| {
            if id == oldest {
                Next::Deliver(Some(id))
            } else {
                Next::Stale
            }
        };
        match *frame {
            Frame::Error(e) if e.code == ErrorCode::NOT_LEADER => Next::Redirect(leader_in(e.text)),
            Frame::Error(e) if e.code.is_fatal() && reconnects(e.code) => Next::Redirect(None),
            Frame::Error(e) if !e.code.is_fatal() => answer(e.correlation_id),
            Frame::Response(r) => answer(r.correlation_id),
            _ => Next::Deliver(None),
        }
    }

    /// Connects again (to `leader` first when known, else the next address), bounded in
    /// attempts with backoff, and resends every unanswered request. `error`: why, returned
    /// when every attempt fails.
    fn reconnect(
        &mut self,
        leader: Option<SocketAddr>,
        error: ClientError,
    ) -> Result<(), ClientError> {
        let mut resume = self.resume.take().expect("exactly-once client");
        let next = match leader {
            Some(_) => resume.current,
            None => resume.current + 1,
        };
        let result = reach(&resume, next, leader, MAX_ATTEMPTS).and_then(|(mut fresh, current)| {
            fresh.sender.buf.clear();
            fresh
                .sender
                .buf
                .extend_from_slice(&resume.frames[resume.head..]);
            fresh.sender.flush()?;
            Ok((fresh, current))
        });
        let mut fresh = match result {
            Ok((fresh, current)) => {
                resume.current = current;
                fresh
            }
            Err(last) => {
                self.resume = Some(resume);
                tracing::debug!(%error, %last, "exactly-once client: no server reached");
                return Err(last);
            }
        };
        fresh.sender.next_correlation = self.sender.next_correlation;
        fresh.in_flight = resume.pending.len() as u64;
        fresh.resume = Some(resume);
        let old = std::mem::replace(self, fresh);
        old.close();
        Ok(())
    }
}

/// Whether a fatal error means "try again elsewhere" (the server stops, restarts, or this
/// connection was replaced or timed out) rather than "this client is refused".
fn reconnects(code: ErrorCode) -> bool {
    !matches!(
        code,
        ErrorCode::UNAUTHORIZED
            | ErrorCode::UNSUPPORTED_PROTOCOL
            | ErrorCode::MALFORMED
            | ErrorCode::FRAME_TOO_LARGE
    )
}

fn is_timeout(error: &ClientError) -> bool {
    matches!(error, ClientError::Io(e)
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Connects to `leader`, else to the addresses from index `from` on (cycling), with backoff,
/// in at most `attempts` attempts; returns the client and the index of the address that
/// answered. A refusal that another attempt cannot cure (`UNAUTHORIZED`) ends it at once.
fn reach(
    resume: &Resume,
    from: usize,
    leader: Option<SocketAddr>,
    attempts: u32,
) -> Result<(Client, usize), ClientError> {
    let mut backoff = FIRST_BACKOFF;
    let mut last = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        let (index, addr) = match leader.filter(|_| attempt == 0) {
            Some(addr) => (resume.current, addr),
            None => {
                let index = (from + attempt as usize) % resume.addrs.len();
                (index, resume.addrs[index])
            }
        };
        match Client::connect_as(addr, resume.token.as_deref(), resume.client_id) {
            Ok(client) => return Ok((client, index)),
            Err(error) if error.code().is_some_and(|code| !reconnects(code)) => return Err(error),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or(ClientError::Closed))
}
