//! The network thread: one `mio` poll loop doing all socket I/O without ever blocking on a
//! socket. Each turn it (1) drains the output ring into the sessions' send buffers, (2) writes
//! those buffers out, (3) reads and submits requests from sessions that have input, round robin,
//! until the input ring is full, (4) checks timeouts, then (5) sleeps in `epoll` until a socket,
//! the response receiver's wake hook, a stop request or the timer tick needs it. No response
//! waits for the tick: the engine's stage that makes responses available calls the hook.
//!
//! Back-pressure: when `try_submit` says the ring is full, the frame stays in its session's
//! receive buffer and no socket is read until the ring has room; TCP flow control then slows the
//! senders. The output ring is drained every turn regardless, so the business logic never waits
//! on the network, and a client that does not read is cut off at its output limit.

use super::admin::{self, Refusal, SnapshotRequest};
use super::config::Limits;
use super::foreign::Foreign;
use super::frame::{self, ErrorCode, Frame, Hello, Request};
use super::leader::LeaderGate;
use super::session::{Conn, Phase, Session, Sessions};
use super::stats::{Count, Counters};
use crate::engine::{
    Response, ResponseReceiver, Status, Submission, SubmitError, Submitter, CONTROL_KIND_MIN,
    CONTROL_SNAPSHOT,
};
use crate::ring::Poll as RingPoll;
use crate::service::Invalid;
use crate::snapshot::SnapshotStats;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const LISTENER: Token = Token(usize::MAX);
pub(crate) const WAKER: Token = Token(usize::MAX - 1);
/// Longest sleep while the input ring is full (its consumers do not wake us when they free
/// slots, only when they publish responses).
const BLOCKED_SLEEP: Duration = Duration::from_millis(1);
/// Longest sleep while waiting for the engine to drain after a stop (its end is not signalled).
const DRAIN_SLEEP: Duration = Duration::from_millis(2);
const EVENTS_CAPACITY: usize = 1024;

/// The application's check of a request before it may enter the engine.
pub(crate) type Validator = Box<dyn Fn(u16, u16, &[u8]) -> Result<(), Invalid> + Send>;

/// State shared between the network thread, the response receiver's wake hook and stop handles.
pub(crate) struct Shared {
    /// The network thread is (about to be) asleep in `epoll`.
    pub(crate) sleeping: AtomicBool,
    pub(crate) stop: AtomicBool,
    pub(crate) waker: Waker,
}

impl Shared {
    /// The response receiver's wake hook, called by the engine's stages after responses became
    /// available. One fence and one load unless the network thread sleeps; then one `eventfd`
    /// write.
    #[inline]
    pub(crate) fn wake_if_sleeping(&self) {
        // Pairs with the fence in `NetThread::sleep`: either we see `sleeping`, or the network
        // thread sees our responses when it re-checks the ring before sleeping.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::Relaxed) {
            let _ = self.waker.wake();
        }
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Serving.
    Running,
    /// Stop requested: input closed, waiting for the engine to answer everything submitted.
    Draining,
    /// All answers forwarded; every session told `SERVER_STOPPING`; flushing until `deadline`.
    Final { deadline: Instant },
}

/// What serving one session achieved.
enum Serve {
    /// It may have more input: keep it queued.
    Again,
    /// Nothing more to read for now (or it closed).
    Done,
    /// The input ring is full; its next frame waits in its buffer.
    Blocked,
}

/// What handling one frame decided.
enum Step {
    Done,
    /// A handshake that declared this exactly-once client id.
    Claimed(u64),
    Blocked,
    Fatal(ErrorCode, &'static str),
    EngineStopped,
}

/// What the frames in a receive buffer led to.
enum Frames {
    NeedMore,
    Blocked,
    Stop,
}

/// What a timer check found for one session.
enum Expiry {
    Close(ErrorCode, &'static str),
    Release,
}

/// Everything the handling of one request needs besides its session.
struct Ingress<'a> {
    submitter: &'a mut Submitter,
    validate: &'a Validator,
    limits: &'a Limits,
    counters: &'a Counters,
    /// The snapshot asked for over the network and not answered yet.
    snapshot: &'a mut Option<SnapshotRequest>,
    leader: &'a LeaderGate,
}

pub(crate) struct NetThread {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    submitter: Option<Submitter>,
    responses: ResponseReceiver,
    sessions: Sessions,
    validate: Validator,
    limits: Limits,
    counters: Arc<Counters>,
    /// The engine's snapshot counters (snapshot requests are answered from them).
    snapshots: Option<Arc<SnapshotStats>>,
    snapshot: Option<SnapshotRequest>,
    leader: LeaderGate,
    stage: Stage,
    /// The input ring was full at the last attempt.
    blocked: bool,
    /// When the last back-pressure episode ended (read timeouts are not charged during one).
    unblocked_at: Instant,
    output_closed: bool,
    engine_stopped: bool,
    next_tick: Instant,
}

/// The parts a `NetThread` is made of, prepared by `Server::start*`.
pub(crate) struct Parts {
    pub(crate) poll: Poll,
    pub(crate) listener: TcpListener,
    pub(crate) shared: Arc<Shared>,
    pub(crate) submitter: Submitter,
    pub(crate) responses: ResponseReceiver,
    pub(crate) validate: Validator,
    pub(crate) limits: Limits,
    pub(crate) counters: Arc<Counters>,
    pub(crate) leader: LeaderGate,
}

impl NetThread {
    /// Allocates every session buffer (on the calling thread, before serving).
    pub(crate) fn new(parts: Parts) -> Self {
        let now = Instant::now();
        let snapshots = (parts.submitter.metrics()).map(|m| m.snapshot_stats().clone());
        let next_tick = now + parts.limits.timer_tick;
        let sessions = Sessions::new(&parts.limits, now, parts.submitter.session_epoch());
        NetThread {
            poll: parts.poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listener: Some(parts.listener),
            shared: parts.shared,
            submitter: Some(parts.submitter),
            responses: parts.responses,
            sessions,
            validate: parts.validate,
            limits: parts.limits,
            counters: parts.counters,
            snapshots,
            snapshot: None,
            leader: parts.leader,
            stage: Stage::Running,
            blocked: false,
            unblocked_at: now,
            output_closed: false,
            engine_stopped: false,
            next_tick,
        }
    }

    /// Serves until stopped and every answer is forwarded. On an I/O error of the poll itself,
    /// closes the engine's input and drains its output before returning the error, so the
    /// engine can still shut down.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let result = self.serve();
        if result.is_err() {
            self.submitter = None;
            if !self.output_closed {
                self.responses.drain_until_closed();
            }
        }
        result
    }

    fn serve(&mut self) -> io::Result<()> {
        loop {
            let now = Instant::now();
            self.drain_responses(now);
            self.answer_snapshot();
            self.flush_dirty();
            self.advance_stage(now);
            if let Stage::Final { deadline } = self.stage {
                if self.sessions.active() == 0 || now >= deadline {
                    return Ok(());
                }
            }
            self.serve_input(now);
            self.flush_dirty();
            if now >= self.next_tick {
                self.check_timers(now);
                self.next_tick = now + self.limits.timer_tick;
            }
            let timeout = self.sleep_time(now);
            self.sleep(timeout, now)?;
        }
    }

    // ---- output: ring → session buffers → sockets ----

    /// Routes every response available now. Returns whether there were any.
    fn drain_responses(&mut self, now: Instant) -> bool {
        if self.output_closed {
            return false;
        }
        let (sessions, limits, counters) = (&mut self.sessions, &self.limits, &*self.counters);
        // The engine's answer to a snapshot request is not sent: `answer_snapshot` answers
        // once the snapshot is durable.
        let held = self.snapshot.map(|s| s.sequence);
        match self.responses.try_poll(|r| {
            if Some(r.header.sequence) != held {
                route(sessions, limits, counters, &r, now);
            }
        }) {
            RingPoll::Batch(n) => n > 0,
            RingPoll::Timeout => false,
            RingPoll::Closed | RingPoll::Halted => {
                self.output_closed = true;
                false
            }
        }
    }

    /// Answers the snapshot request in flight once the snapshot is durable or failed.
    fn answer_snapshot(&mut self) {
        let (Some(request), Some(stats)) = (self.snapshot, &self.snapshots) else {
            return;
        };
        let (sessions, limits, counters) = (&mut self.sessions, &self.limits, &*self.counters);
        if admin::answer_snapshot(request, stats, sessions, limits, counters) {
            self.snapshot = None;
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.sessions.dirty);
        for &slot in &dirty {
            self.sessions.slots[slot as usize].conn.dirty = false;
            self.flush(slot);
        }
        dirty.clear();
        debug_assert!(self.sessions.dirty.is_empty(), "flush marks nothing dirty");
        self.sessions.dirty = dirty;
    }

    /// Writes as much of the session's output as the socket takes; the rest waits for a
    /// writable event. A closing session's write side is shut once everything is out.
    fn flush(&mut self, slot: u32) {
        let conn = &mut self.sessions.slots[slot as usize].conn;
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        while !conn.output.is_empty() {
            match stream.write(conn.output.pending()) {
                Ok(n) if n > 0 => conn.output.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return self.drop_session(slot, Count::Disconnects),
            }
        }
        if conn.phase == Phase::Closing && !conn.write_shut {
            let _ = stream.shutdown(Shutdown::Write);
            conn.write_shut = true;
            if conn.peer_closed {
                self.drop_session(slot, Count::Closed);
            }
        }
    }

    // ---- input: sockets → frames → input ring ----

    /// Serves the ready sessions round robin, one read each per turn, until the ring is full.
    fn serve_input(&mut self, now: Instant) {
        let published = self.submitter.as_ref().map_or(0, Submitter::published);
        self.serve_sessions(now);
        if self.submitter.as_ref().map_or(0, Submitter::published) != published {
            self.leader.submitted();
        }
    }

    fn serve_sessions(&mut self, now: Instant) {
        let was_blocked = std::mem::replace(&mut self.blocked, false);
        let mut budget = self.sessions.ready.len();
        while budget > 0 {
            budget -= 1;
            let Some(slot) = self.sessions.ready.pop_front() else {
                break;
            };
            match self.service(slot, now) {
                Serve::Again => self.sessions.ready.push_back(slot),
                Serve::Done => self.sessions.slots[slot as usize].conn.queued = false,
                Serve::Blocked => {
                    self.sessions.ready.push_front(slot);
                    self.blocked = true;
                    break;
                }
            }
        }
        if self.blocked && !was_blocked {
            self.counters.bump(Count::InputFull);
        }
        if was_blocked && !self.blocked {
            self.unblocked_at = now;
        }
    }

    fn service(&mut self, slot: u32, now: Instant) -> Serve {
        match self.sessions.slots[slot as usize].conn.phase {
            Phase::Free => Serve::Done,
            Phase::Closing => self.discard_input(slot),
            // Once stopping, requests are no longer read; only closing sessions are served.
            Phase::Handshake | Phase::Open if self.stage != Stage::Running => Serve::Done,
            Phase::Handshake | Phase::Open => self.serve_session(slot, now),
        }
    }

    /// Processes buffered frames, reads once, processes again.
    fn serve_session(&mut self, slot: u32, now: Instant) -> Serve {
        match self.process_frames(slot, now) {
            Frames::NeedMore => {}
            Frames::Blocked => return Serve::Blocked,
            Frames::Stop => return Serve::Done,
        }
        if !self.read_some(slot) {
            return Serve::Done;
        }
        match self.process_frames(slot, now) {
            Frames::NeedMore => Serve::Again,
            Frames::Blocked => Serve::Blocked,
            Frames::Stop => Serve::Done,
        }
    }

    /// One read into the session's receive buffer. `false` when there is nothing to read now
    /// or the connection ended (then the session is gone).
    fn read_some(&mut self, slot: u32) -> bool {
        let want = frame::LEN_BYTES + self.limits.max_frame_bytes;
        let Session { input, conn } = &mut self.sessions.slots[slot as usize];
        let Some(stream) = conn.stream.as_mut() else {
            return false;
        };
        match stream.read(input.spare(want)) {
            Ok(0) => {
                let count = if input.is_empty() {
                    Count::Closed
                } else {
                    Count::ClosedMidFrame
                };
                self.drop_session(slot, count);
                false
            }
            Ok(n) => {
                input.commit(n);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => {
                self.drop_session(slot, Count::Disconnects);
                false
            }
        }
    }

    /// Reads and drops what a closing session still sends; frees it at end of stream once its
    /// last frames are out.
    fn discard_input(&mut self, slot: u32) -> Serve {
        let Session { input, conn } = &mut self.sessions.slots[slot as usize];
        input.clear();
        let Some(stream) = conn.stream.as_mut() else {
            return Serve::Done;
        };
        match stream.read(input.spare(usize::MAX)) {
            Ok(n) if n > 0 => Serve::Again,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Serve::Done,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Serve::Again,
            _ => {
                conn.peer_closed = true;
                if conn.write_shut {
                    self.drop_session(slot, Count::Closed);
                }
                Serve::Done
            }
        }
    }

    /// Handles every complete frame in the session's receive buffer, in order.
    fn process_frames(&mut self, slot: u32, now: Instant) -> Frames {
        loop {
            let Session { input, conn } = &mut self.sessions.slots[slot as usize];
            let (frame, used) = match frame::split(input.pending(), self.limits.max_frame_bytes) {
                Ok(Some(split)) => split,
                Ok(None) => {
                    conn.partial_since =
                        (!input.is_empty()).then(|| conn.partial_since.unwrap_or(now));
                    return Frames::NeedMore;
                }
                Err(e) => {
                    let foreign = (conn.phase == Phase::Handshake)
                        .then(|| Foreign::detect(input.pending()))
                        .flatten();
                    match foreign {
                        Some(foreign) => self.refuse_foreign(slot, foreign, now),
                        None => self.fatal(slot, e.code(), frame_error_text(e), now),
                    }
                    return Frames::Stop;
                }
            };
            let Some(submitter) = self.submitter.as_mut() else {
                return Frames::Stop;
            };
            let mut ingress = Ingress {
                submitter,
                validate: &self.validate,
                limits: &self.limits,
                counters: &self.counters,
                snapshot: &mut self.snapshot,
                leader: &self.leader,
            };
            let step = handle_frame(&mut ingress, conn, frame);
            match step {
                Step::Done | Step::Claimed(_) => {
                    input.consume(used);
                    (conn.partial_since, conn.last_activity) = (None, now);
                    if !conn.output.is_empty() {
                        self.sessions.mark_dirty(slot);
                    }
                    if let Step::Claimed(client) = step {
                        self.sessions.claim(slot, client, &self.limits, now);
                    }
                }
                Step::Blocked => return Frames::Blocked,
                Step::Fatal(code, text) => {
                    self.fatal(slot, code, text, now);
                    return Frames::Stop;
                }
                Step::EngineStopped => {
                    self.engine_stopped = true;
                    return Frames::Stop;
                }
            }
        }
    }

    // ---- connections ----

    fn accept_all(&mut self, now: Instant) {
        while let Some(listener) = self.listener.as_ref() {
            match listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, now: Instant) {
        let _ = stream.set_nodelay(true);
        let slot = match self.sessions.open(stream, now) {
            Ok(slot) => slot,
            Err(stream) => return self.reject(stream),
        };
        let stream = self.sessions.slots[slot as usize]
            .conn
            .stream
            .as_mut()
            .expect("just opened");
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(stream, Token(slot as usize), interest)
        {
            tracing::warn!(error = %e, "cannot register a connection");
            return self.drop_session(slot, Count::Disconnects);
        }
        self.counters.bump(Count::Accepted);
        self.counters
            .set(Count::Active, self.sessions.active() as u64);
        self.sessions.mark_ready(slot);
    }

    /// No free slot: say so, then close without taking a slot.
    fn reject(&mut self, mut stream: TcpStream) {
        let mut buf = [0u8; frame::MAX_ERROR_FRAME_BYTES];
        let text = "every session slot is in use; retry later";
        if let Some(n) = frame::encode_error(&mut buf, ErrorCode::TOO_MANY_CONNECTIONS, 0, text) {
            let _ = stream.write(&buf[..n]);
        }
        let _ = stream.shutdown(Shutdown::Write);
        // Read what already arrived (usually the HELLO), so the close is a FIN, not a reset
        // that could destroy the error frame in flight.
        let _ = stream.read(&mut buf);
        self.counters.bump(Count::Rejected);
    }

    /// Queues a fatal error for the session and starts closing it.
    fn fatal(&mut self, slot: u32, code: ErrorCode, text: &str, now: Instant) {
        self.counters.bump(Count::for_error(code));
        self.sessions
            .close_with(slot, &self.limits, code, text, now);
        self.sessions.slots[slot as usize].input.clear();
    }

    /// A client that speaks another protocol (HTTP, TLS, SSH): tell it in plain text (an HTTP
    /// 400 for HTTP), log it, count it and close.
    fn refuse_foreign(&mut self, slot: u32, foreign: Foreign, now: Instant) {
        self.counters.bump(Count::ForeignProtocol);
        let conn = &self.sessions.slots[slot as usize].conn;
        let peer = conn.stream.as_ref().and_then(|s| s.peer_addr().ok());
        tracing::warn!(
            "a client speaking {} connected from {}; keel speaks its own protocol (docs/PROTOCOL.md): \
             answered and closed",
            foreign.name(),
            peer.map_or_else(|| "an unknown address".to_string(), |p| p.to_string())
        );
        self.sessions
            .close_with_bytes(slot, &self.limits, foreign.reply(), now);
        self.sessions.slots[slot as usize].input.clear();
    }

    /// Frees the session now (its socket is closed).
    fn drop_session(&mut self, slot: u32, count: Count) {
        if let Some(mut stream) = self.sessions.release(slot) {
            let _ = self.poll.registry().deregister(&mut stream);
            self.counters.bump(count);
            self.counters
                .set(Count::Active, self.sessions.active() as u64);
        }
    }

    // ---- stopping ----

    fn advance_stage(&mut self, now: Instant) {
        if self.stage == Stage::Running
            && (self.shared.stop.load(Ordering::Acquire)
                || self.engine_stopped
                || self.output_closed)
        {
            self.begin_drain();
        }
        if self.stage == Stage::Draining && self.output_closed {
            self.begin_final(now);
        }
    }

    /// Stops accepting and reading; closes the engine's input so it drains and stops.
    fn begin_drain(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.submitter = None;
        self.stage = Stage::Draining;
        tracing::info!(
            sessions = self.sessions.active(),
            "network stopping: draining the engine"
        );
    }

    /// Every answer is forwarded: tell every session, then flush until done or the grace ends.
    /// Each session is queued once more so that one already hung up on is noticed without a
    /// new event.
    fn begin_final(&mut self, now: Instant) {
        let text = "server stopping; reconnect later";
        for slot in 0..self.sessions.slots.len() as u32 {
            self.sessions
                .close_with(slot, &self.limits, ErrorCode::SERVER_STOPPING, text, now);
            if self.sessions.slots[slot as usize].conn.phase == Phase::Closing {
                self.sessions.mark_ready(slot);
            }
        }
        self.stage = Stage::Final {
            deadline: now + self.limits.shutdown_grace,
        };
    }

    // ---- timers and sleeping ----

    fn check_timers(&mut self, now: Instant) {
        let reading = (!self.blocked).then_some(self.unblocked_at);
        for slot in 0..self.sessions.slots.len() as u32 {
            match expiry(
                &self.sessions.slots[slot as usize].conn,
                &self.limits,
                now,
                reading,
            ) {
                None => {}
                Some(Expiry::Close(code, text)) => self.fatal(slot, code, text, now),
                Some(Expiry::Release) => self.drop_session(slot, Count::Closed),
            }
        }
    }

    /// Until the next timer check, or less when something is due sooner (the end of the
    /// shutdown grace is one: it must not wait for a long `timer_tick`).
    fn sleep_time(&self, now: Instant) -> Duration {
        let until_tick = self.next_tick.saturating_duration_since(now);
        match self.stage {
            Stage::Running if self.blocked => BLOCKED_SLEEP,
            _ if !self.sessions.ready.is_empty() => Duration::ZERO,
            _ if self.snapshot.is_some() => until_tick.min(admin::SNAPSHOT_POLL),
            Stage::Draining => DRAIN_SLEEP,
            Stage::Final { deadline } => until_tick.min(deadline.saturating_duration_since(now)),
            Stage::Running => until_tick,
        }
    }

    /// Waits in `epoll` for at most `timeout`, announcing the sleep to the wake hook, then
    /// dispatches the events.
    fn sleep(&mut self, mut timeout: Duration, now: Instant) -> io::Result<()> {
        if !timeout.is_zero() {
            self.shared.sleeping.store(true, Ordering::Relaxed);
            // Pairs with the fence in `Shared::wake_if_sleeping` (Dekker): re-check the ring
            // after announcing the sleep, so a response published just before is not missed.
            fence(Ordering::SeqCst);
            if self.drain_responses(now) || self.shared.stop.load(Ordering::Relaxed) {
                timeout = Duration::ZERO;
            }
        }
        let result = self.poll.poll(&mut self.events, Some(timeout));
        self.shared.sleeping.store(false, Ordering::Relaxed);
        match result {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_all(now),
                WAKER => {}
                Token(slot) => self.on_socket(slot as u32, event),
            }
        }
        self.events = events;
        Ok(())
    }

    fn on_socket(&mut self, slot: u32, event: &mio::event::Event) {
        let Some(session) = self.sessions.slots.get(slot as usize) else {
            return;
        };
        if session.conn.phase == Phase::Free {
            return;
        }
        let has_output = !session.conn.output.is_empty();
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.sessions.mark_ready(slot);
        }
        if (event.is_writable() || event.is_error()) && has_output {
            self.sessions.mark_dirty(slot);
        }
    }
}

/// Appends one response to its session's send buffer, or drops it if the session is gone. A
/// session over its output limit is disconnected (`SLOW_CONSUMER`). Session 0 is the
/// embedding host (a message it submitted itself, such as a cluster's term record): no client
/// waits for that response, so it is not counted as dropped.
#[inline]
fn route(
    sessions: &mut Sessions,
    limits: &Limits,
    counters: &Counters,
    r: &Response<'_>,
    now: Instant,
) {
    if r.header.session_id == 0 {
        return;
    }
    let Some(slot) = sessions.lookup_open(r.header.session_id) else {
        counters.bump(Count::ResponsesDropped);
        return;
    };
    let conn = &mut sessions.slots[slot].conn;
    let size = frame::RESPONSE_OVERHEAD_BYTES + r.payload.len();
    let appended = if r.header.status == Status::AlreadyAnswered {
        already_answered(conn, limits, r.header.correlation_id)
    } else {
        let encode = |buf: &mut [u8]| frame::encode_response(buf, &r.header, r.payload);
        conn.output.append(limits.output_limit_bytes, size, encode)
    };
    if appended {
        conn.last_activity = now;
        counters.bump(Count::Responses);
        sessions.mark_dirty(slot as u32);
    } else {
        counters.bump(Count::ResponsesDropped);
        counters.bump(Count::SlowConsumers);
        let text = "output limit exceeded: the client does not read its responses";
        sessions.close_with(slot as u32, limits, ErrorCode::SLOW_CONSUMER, text, now);
    }
}

/// The engine's refusal of a duplicate whose reply it no longer holds, as the wire says it.
#[cold]
fn already_answered(conn: &mut Conn, limits: &Limits, correlation: u64) -> bool {
    let text = "applied before; its reply is no longer held";
    conn.push_error(limits, ErrorCode::ALREADY_ANSWERED, correlation, text)
}

/// The protocol state machine for one frame.
fn handle_frame(ingress: &mut Ingress<'_>, conn: &mut Conn, frame: Frame<'_>) -> Step {
    match (conn.phase, frame) {
        (Phase::Handshake, Frame::Hello(hello)) => handshake(ingress, conn, &hello),
        (Phase::Handshake, Frame::Request(_) | Frame::Ping(_)) => {
            Step::Fatal(ErrorCode::NOT_HANDSHAKEN, "send HELLO first")
        }
        (Phase::Open, Frame::Request(request)) => submit(ingress, conn, &request),
        (Phase::Open, Frame::Ping(nonce)) => {
            let limit = ingress.limits.output_limit_bytes;
            let pong = |buf: &mut [u8]| frame::encode_ping(buf, true, nonce);
            if conn.output.append(limit, frame::LEN_BYTES + 9, pong) {
                Step::Done
            } else {
                Step::Fatal(ErrorCode::SLOW_CONSUMER, "output limit exceeded")
            }
        }
        (Phase::Open, Frame::Hello(_)) => Step::Fatal(ErrorCode::MALFORMED, "second HELLO"),
        _ => Step::Fatal(
            ErrorCode::MALFORMED,
            "server-to-client frame type sent by a client",
        ),
    }
}

fn handshake(ingress: &mut Ingress<'_>, conn: &mut Conn, hello: &Hello<'_>) -> Step {
    let limits = ingress.limits;
    if let Err((code, text)) = hello.check(limits.token.as_deref()) {
        return Step::Fatal(code, text);
    }
    conn.client = hello.client_id;
    let mut welcome = limits.welcome(conn.journal_id());
    welcome.protocol_version = hello.protocol_version;
    let size = frame::LEN_BYTES + frame::TYPE_BYTES + frame::WELCOME_BYTES;
    let encode = |buf: &mut [u8]| frame::encode_welcome(buf, &welcome);
    if !conn.output.append(limits.output_limit_bytes, size, encode) {
        return Step::Fatal(ErrorCode::SLOW_CONSUMER, "output limit exceeded");
    }
    conn.phase = Phase::Open;
    ingress.counters.bump(Count::Handshakes);
    match conn.client {
        0 => Step::Done,
        client => Step::Claimed(client),
    }
}

/// Checks a request and publishes it into the input ring.
#[inline]
fn submit(ingress: &mut Ingress<'_>, conn: &mut Conn, request: &Request<'_>) -> Step {
    let Request {
        correlation_id,
        kind,
        version,
        payload,
    } = *request;
    if !ingress.leader.is_leader() {
        return not_leader(ingress, conn, correlation_id);
    }
    if kind == CONTROL_SNAPSHOT {
        return snapshot_step(ingress, conn, request);
    }
    let checked = if kind >= CONTROL_KIND_MIN {
        Err((
            ErrorCode::UNKNOWN_KIND,
            "kinds from 0xFF00 are reserved for the engine",
        ))
    } else if payload.len() > ingress.limits.max_payload_bytes {
        Err((
            ErrorCode::PAYLOAD_TOO_LARGE,
            "payload exceeds max_payload_bytes",
        ))
    } else {
        (ingress.validate)(kind, version, payload).map_err(|e| (e.code(), invalid_text(e)))
    };
    if let Err((code, text)) = checked {
        return refuse(ingress, conn, code, correlation_id, text);
    }
    let to = Submission {
        kind,
        version,
        session_id: conn.journal_id(),
        correlation_id,
    };
    match ingress.submitter.try_submit(to, payload) {
        Ok(_) => {
            ingress.counters.bump(Count::Requests);
            Step::Done
        }
        Err(SubmitError::Full) => Step::Blocked,
        Err(SubmitError::TooLarge { .. }) => {
            let text = "payload exceeds the engine's limit";
            refuse(
                ingress,
                conn,
                ErrorCode::PAYLOAD_TOO_LARGE,
                correlation_id,
                text,
            )
        }
        Err(_) => Step::EngineStopped,
    }
}

/// Refuses a request while another node leads, naming it when known.
#[cold]
fn not_leader(ingress: &Ingress<'_>, conn: &mut Conn, correlation: u64) -> Step {
    let mut text = [0u8; 96];
    let n = ingress.leader.refusal_text(&mut text);
    let text = std::str::from_utf8(&text[..n]).unwrap_or("not the leader");
    refuse(ingress, conn, ErrorCode::NOT_LEADER, correlation, text)
}

/// Submits a snapshot request (an admin request), or refuses it.
fn snapshot_step(ingress: &mut Ingress<'_>, conn: &mut Conn, request: &Request<'_>) -> Step {
    match admin::request_snapshot(ingress.submitter, ingress.snapshot, conn, request) {
        Ok(()) => {
            ingress.counters.bump(Count::Requests);
            Step::Done
        }
        Err(Refusal::Error(code, text)) => {
            refuse(ingress, conn, code, request.correlation_id, text)
        }
        Err(Refusal::Full) => Step::Blocked,
        Err(Refusal::Stopped) => Step::EngineStopped,
    }
}

/// Answers one request with a request-level error; the connection stays open.
fn refuse(
    ingress: &Ingress<'_>,
    conn: &mut Conn,
    code: ErrorCode,
    correlation: u64,
    text: &str,
) -> Step {
    if !conn.push_error(ingress.limits, code, correlation, text) {
        return Step::Fatal(ErrorCode::SLOW_CONSUMER, "output limit exceeded");
    }
    ingress.counters.bump(Count::Refused);
    Step::Done
}

fn invalid_text(invalid: Invalid) -> &'static str {
    match invalid {
        Invalid::UnknownKind => "unknown message kind",
        Invalid::UnsupportedVersion => "unsupported message version",
        Invalid::Undecodable => "payload does not decode as its kind and version",
    }
}

fn frame_error_text(e: frame::FrameError) -> &'static str {
    match e {
        frame::FrameError::TooLarge { .. } => "frame exceeds max_frame_bytes",
        frame::FrameError::Empty => "frame of length 0",
        frame::FrameError::UnknownType(_) => "unknown frame type",
        frame::FrameError::BadMagic => "not a keel client (bad magic)",
        _ => "frame body does not fit its type",
    }
}

/// Whether one of the session's timers ran out. `reading` is when the server last resumed
/// reading, or `None` while the input ring is full (read and idle timeouts are then paused).
fn expiry(conn: &Conn, limits: &Limits, now: Instant, reading: Option<Instant>) -> Option<Expiry> {
    match conn.phase {
        Phase::Free => None,
        Phase::Closing => (now >= conn.close_deadline).then_some(Expiry::Release),
        Phase::Handshake => (now >= conn.opened_at + limits.handshake_timeout).then_some(
            Expiry::Close(ErrorCode::HANDSHAKE_TIMEOUT, "no HELLO in time"),
        ),
        Phase::Open => {
            let resumed = reading?;
            if conn
                .partial_since
                .is_some_and(|t| now >= t.max(resumed) + limits.read_timeout)
            {
                return Some(Expiry::Close(
                    ErrorCode::READ_TIMEOUT,
                    "frame not completed in time",
                ));
            }
            let idle = limits.idle_timeout?;
            (now >= conn.last_activity.max(resumed) + idle)
                .then_some(Expiry::Close(ErrorCode::IDLE_TIMEOUT, "idle for too long"))
        }
    }
}
