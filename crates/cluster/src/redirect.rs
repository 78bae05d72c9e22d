//! The client address of a node that does not serve clients (a follower, a candidate, a
//! leader still promoting): it speaks keel's client protocol (docs/PROTOCOL.md) far enough to
//! send each client to the leader. `HELLO` is checked (protocol version, token) and answered
//! with `WELCOME`, `PING` with `PONG`, and every `REQUEST` with the request-level error
//! `NOT_LEADER`, whose text names the leader's client address when known
//! (`not the leader; leader=HOST:PORT`, else `not the leader; leader unknown`: the text the
//! network server's `LeaderGate` sends). Nothing reaches the engine: a follower's engine is fed
//! by the data plane only.
//!
//! The listener is bound once, for the life of the node. While the node serves, the redirector
//! is paused and the network server accepts from a clone of the same listener; connections
//! that arrive during a hand-over wait in the backlog instead of being refused.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel::net::frame::{self, Frame, Welcome};
use keel::net::{ErrorCode, NetConfig};

use crate::node::Redirect;

/// How often the accept loop looks for connections and at its flags.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// How often a connection's thread looks at the stop flag while it waits for input.
const READ_POLL: Duration = Duration::from_millis(100);
/// Connections answered at once (each has a thread; a redirected client leaves at once).
const MAX_CONNECTIONS: usize = 64;
/// Who the clients are sent to, asked once per refused request.
pub type Target = Arc<dyn Fn() -> Redirect + Send + Sync>;

/// What each connection is answered with.
struct Settings {
    token: Option<Vec<u8>>,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
    welcome: Welcome,
    max_frame_bytes: usize,
    target: Target,
}

/// A running redirector (see the module's documentation).
pub struct Redirector {
    listener: TcpListener,
    /// Whether the accept loop takes connections; held while it accepts one.
    accepting: Arc<Mutex<bool>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Redirector {
    /// Answers on `listener` (already bound) with `net`'s token and timeouts; the `WELCOME`
    /// states the limits the network server would (`max_message_bytes` and
    /// `max_response_bytes` of the engine). Starts accepting at once.
    pub fn start(
        listener: TcpListener,
        net: &NetConfig,
        (max_message_bytes, max_response_bytes): (usize, usize),
        target: Target,
    ) -> io::Result<Redirector> {
        listener.set_nonblocking(true)?;
        let welcome = net.welcome(max_message_bytes, max_response_bytes)?;
        let max_frame_bytes = welcome.max_frame_bytes as usize;
        let settings = Arc::new(Settings {
            token: net.token.clone(),
            handshake_timeout: net.handshake_timeout,
            idle_timeout: net.idle_timeout.filter(|d| !d.is_zero()),
            welcome,
            max_frame_bytes,
            target,
        });
        let accepting = Arc::new(Mutex::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let listener = listener.try_clone()?;
            let (accepting, stop) = (accepting.clone(), stop.clone());
            std::thread::Builder::new()
                .name("keel-redirect".into())
                .spawn(move || accept_loop(&listener, &accepting, &stop, &settings))?
        };
        Ok(Redirector {
            listener,
            accepting,
            stop,
            accept: Some(accept),
        })
    }

    /// The address it answers on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A clone of the listener, for the network server that takes over while the node leads.
    pub fn listener(&self) -> io::Result<TcpListener> {
        self.listener.try_clone()
    }

    /// Stops accepting; returns once no accept is under way (connections already accepted
    /// are still answered, until their clients leave).
    pub fn pause(&self) {
        *lock(&self.accepting) = false;
    }

    /// Accepts again (the node stopped serving).
    pub fn resume(&self) {
        *lock(&self.accepting) = true;
    }

    /// Stops accepting and answering; waits for its threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Accepts while allowed, one thread per connection (at most [`MAX_CONNECTIONS`]); at the
/// end waits for the connections' threads.
fn accept_loop(
    listener: &TcpListener,
    accepting: &Mutex<bool>,
    stop: &Arc<AtomicBool>,
    settings: &Arc<Settings>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let accepted = {
            let allowed = lock(accepting);
            if *allowed {
                listener.accept().ok()
            } else {
                None
            }
        };
        let Some((stream, _)) = accepted else {
            std::thread::sleep(ACCEPT_POLL);
            continue;
        };
        threads.retain(|t| !t.is_finished());
        if open.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let text = "every session slot is in use; retry later";
            refuse(stream, ErrorCode::TOO_MANY_CONNECTIONS, text);
            continue;
        }
        open.fetch_add(1, Ordering::AcqRel);
        let (settings, stop, done) = (settings.clone(), stop.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("keel-redirect-conn".into())
            .spawn(move || {
                if let Err(e) = answer(stream, &settings, &stop) {
                    tracing::debug!(error = %e, "redirected connection ended");
                }
                done.fetch_sub(1, Ordering::AcqRel);
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(_) => {
                open.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Sends one fatal error and closes.
fn refuse(mut stream: TcpStream, code: ErrorCode, text: &str) {
    let mut buf = [0u8; 256];
    if let Some(n) = frame::encode_error(&mut buf, code, 0, text) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.write_all(&buf[..n]);
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// What a connection's frame led to.
enum Step {
    Continue,
    Close,
}

/// One connection: frames in, answers out, until the client leaves, a timeout, or a stop.
fn answer(mut stream: TcpStream, settings: &Settings, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_POLL))?;
    let here = stream.local_addr()?;
    let mut input = Vec::with_capacity(frame::LEN_BYTES + settings.max_frame_bytes);
    let mut chunk = vec![0u8; 16 << 10];
    let mut open = false;
    let mut last = Instant::now();
    loop {
        if stop.load(Ordering::Acquire) {
            let text = "server stopping; reconnect later";
            return close(&mut stream, ErrorCode::SERVER_STOPPING, text);
        }
        let limit = if open {
            settings.idle_timeout
        } else {
            Some(settings.handshake_timeout)
        };
        if limit.is_some_and(|limit| last.elapsed() >= limit) {
            let (code, text) = if open {
                (ErrorCode::IDLE_TIMEOUT, "idle for too long")
            } else {
                (ErrorCode::HANDSHAKE_TIMEOUT, "no HELLO in time")
            };
            return close(&mut stream, code, text);
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        input.extend_from_slice(&chunk[..n]);
        last = Instant::now();
        loop {
            let (step, used) = match frame::split(&input, settings.max_frame_bytes) {
                Ok(Some((frame, used))) => (
                    on_frame(&mut stream, settings, here, &mut open, frame)?,
                    used,
                ),
                Ok(None) => break,
                Err(e) => return close(&mut stream, e.code(), "malformed frame"),
            };
            input.drain(..used);
            if let Step::Close = step {
                let _ = stream.shutdown(Shutdown::Write);
                return Ok(());
            }
        }
    }
}

/// Answers one frame.
fn on_frame(
    stream: &mut TcpStream,
    settings: &Settings,
    here: SocketAddr,
    open: &mut bool,
    frame: Frame<'_>,
) -> io::Result<Step> {
    let mut out = [0u8; 512];
    let fatal = |stream: &mut TcpStream, code: ErrorCode, text: &str| {
        send_error(stream, code, 0, text).map(|()| Step::Close)
    };
    match (*open, frame) {
        (false, Frame::Hello(hello)) => match hello.check(settings.token.as_deref()) {
            Err((code, text)) => fatal(stream, code, text),
            Ok(()) => {
                let welcome = Welcome {
                    protocol_version: hello.protocol_version,
                    ..settings.welcome
                };
                let n = frame::encode_welcome(&mut out, &welcome).expect("a WELCOME fits");
                stream.write_all(&out[..n])?;
                *open = true;
                Ok(Step::Continue)
            }
        },
        (false, Frame::Request(_) | Frame::Ping(_)) => {
            fatal(stream, ErrorCode::NOT_HANDSHAKEN, "send HELLO first")
        }
        (true, Frame::Request(request)) => {
            let text = refusal_text((settings.target)(), here);
            send_error(stream, ErrorCode::NOT_LEADER, request.correlation_id, &text)?;
            Ok(Step::Continue)
        }
        (true, Frame::Ping(nonce)) => {
            let n = frame::encode_ping(&mut out, true, nonce).expect("a PONG fits");
            stream.write_all(&out[..n])?;
            Ok(Step::Continue)
        }
        (true, Frame::Hello(_)) => fatal(stream, ErrorCode::MALFORMED, "second HELLO"),
        _ => fatal(
            stream,
            ErrorCode::MALFORMED,
            "server-to-client frame type sent by a client",
        ),
    }
}

/// `NOT_LEADER`'s text (the network server's `LeaderGate` words it the same way).
fn refusal_text(target: Redirect, here: SocketAddr) -> String {
    match target {
        Redirect::Leader(addr) => format!("not the leader; leader={addr}"),
        Redirect::ThisNode => format!("not the leader; leader={here}"),
        Redirect::Unknown => "not the leader; leader unknown".to_owned(),
    }
}

fn send_error(
    stream: &mut TcpStream,
    code: ErrorCode,
    correlation: u64,
    text: &str,
) -> io::Result<()> {
    let mut buf = [0u8; 256];
    let n = frame::encode_error(&mut buf, code, correlation, text).expect("an ERROR fits");
    stream.write_all(&buf[..n])
}

fn close(stream: &mut TcpStream, code: ErrorCode, text: &str) -> io::Result<()> {
    send_error(stream, code, 0, text)?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel::net::frame::Hello;

    #[test]
    fn refusals_name_the_leader() {
        let here: SocketAddr = "127.0.0.1:7701".parse().unwrap();
        let leader: SocketAddr = "127.0.0.1:7702".parse().unwrap();
        assert_eq!(
            refusal_text(Redirect::Leader(leader), here),
            "not the leader; leader=127.0.0.1:7702"
        );
        assert_eq!(
            refusal_text(Redirect::ThisNode, here),
            "not the leader; leader=127.0.0.1:7701"
        );
        assert!(refusal_text(Redirect::Unknown, here).ends_with("leader unknown"));
        let hello = |token| Hello {
            protocol_version: frame::PROTOCOL_VERSION,
            token,
            client_id: 0,
        };
        assert!(hello(b"abc").check(Some(b"abc")).is_ok());
        assert!(hello(b"abd").check(Some(b"abc")).is_err());
        assert!(hello(b"abcd").check(Some(b"abc")).is_err());
    }
}
