//! The public face of the network layer: start (from a started engine), stop.

use super::config::{EngineSizes, Limits, NetConfig};
use super::event_loop::{NetThread, Parts, Shared, Validator, LISTENER, WAKER};
use super::leader::LeaderGate;
use super::stats::{Counters, NetStats};
use crate::engine::{Cores, Engine, Processor, ResponseReceiver, Submitter};
use crate::service::Invalid;
use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The network server: one pinned thread that accepts TCP sessions, submits their requests
/// into the engine and writes the engine's responses back (see `docs/PROTOCOL.md`).
///
/// Started from a started engine, so it listens only once recovery is over: a client that
/// connects reaches a live engine. The server takes the engine's submitter and response
/// receiver, and sets the receiver's wake hook to its own waker.
///
/// ```no_run
/// # use keel::net::{NetConfig, Server};
/// # use keel::{Config, Engine, Message, Outcome, Output, Processor};
/// # #[derive(Default)] struct App;
/// # impl Processor for App {
/// #     fn apply(&mut self, _: &Message<'_>, _: &mut Output<'_>) -> Outcome { Outcome::Accepted }
/// #     fn state_hash(&self) -> u64 { 0 }
/// #     fn save_state(&self, _: &mut Vec<u8>) -> Result<(), keel::codec::CodecError> { Ok(()) }
/// #     fn load_state(&mut self, _: u32, _: &[u8]) -> Result<(), keel::snapshot::StateError> { Ok(()) }
/// # }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut engine = Engine::start(Config::default(), App)?; // recovers, then runs
/// let accept_all = |_: u16, _: u16, _: &[u8]| Ok(()); // or the app's validator
/// let server = Server::start(NetConfig::default(), &mut engine, accept_all)?; // binds, serves
/// let stop = server.stop_handle(); // e.g. moved into a Ctrl-C handler: `stop.stop()`
/// # stop.stop();
/// let stats = server.wait()?;      // returns once stopped and drained
/// let app = engine.shutdown()?;    // always after the server: it owns the submitter
/// # let _ = (stats, app);
/// # Ok(()) }
/// ```
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    leadership: LeaderGate,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// A bound listener and its poll, before the network thread runs.
struct Listening {
    poll: Poll,
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Limits,
    net_core: Option<usize>,
    local_addr: SocketAddr,
    leadership: LeaderGate,
}

/// Stops a running [`Server`] from any thread (for example a Ctrl-C handler). Cheap to clone.
#[derive(Clone)]
pub struct StopHandle(Arc<Shared>);

impl StopHandle {
    /// Asks the server to stop: it stops accepting and reading, closes the engine's input,
    /// forwards every remaining response, tells the clients `SERVER_STOPPING`, and exits.
    /// Returns at once; [`Server::wait`] waits for the end.
    pub fn stop(&self) {
        self.0.request_stop();
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopHandle")
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `net.listen_addr` and serves `engine`: takes its submitter and response
    /// receiver (an error, and nothing taken, if either was already taken: use
    /// [`Server::start_with`]). `validate(kind, version, payload)` checks each request before
    /// it may enter the engine; what it refuses never reaches the business logic. The listener
    /// exists only from here on; on success one `ready` line is logged (info) with the address.
    /// If binding fails, the engine keeps its submitter and receiver.
    pub fn start<P: Processor>(
        net: NetConfig,
        engine: &mut Engine<P>,
        validate: impl Fn(u16, u16, &[u8]) -> Result<(), Invalid> + Send + 'static,
    ) -> io::Result<Server> {
        let Some((submitter, responses)) = engine.take_submitter_and_responses() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the engine's submitter or response receiver was already taken (or the \
                 engine has Producers::Multi, whose replies go to clients): start the server \
                 with Server::start_with",
            ));
        };
        match Listening::open(&net, None, &submitter, &responses) {
            Ok(listening) => listening.serve(submitter, responses, Box::new(validate)),
            Err(e) => {
                engine.restore_submitter_and_responses(submitter, responses);
                Err(e)
            }
        }
    }

    /// [`Server::start`] for a host that took the engine's submitter and response receiver
    /// itself (to submit setup messages first, say). `responses` must not have a wake hook
    /// yet: the server sets its own. On an error both are dropped (the engine's input closes).
    pub fn start_with(
        net: NetConfig,
        submitter: Submitter,
        responses: ResponseReceiver,
        validate: impl Fn(u16, u16, &[u8]) -> Result<(), Invalid> + Send + 'static,
    ) -> io::Result<Server> {
        Listening::open(&net, None, &submitter, &responses)?.serve(
            submitter,
            responses,
            Box::new(validate),
        )
    }

    /// [`Server::start_with`] on a listener the host bound itself (`net.listen_addr` is not
    /// used): a host that keeps the client address bound across servers, and answers on it
    /// in between, hands the server a clone of its listener
    /// ([`std::net::TcpListener::try_clone`]). The server accepts from it until it stops, then
    /// closes its clone; connections the server did not accept stay in the backlog for the
    /// host. The listener is made non-blocking.
    pub fn start_on(
        listener: std::net::TcpListener,
        net: NetConfig,
        submitter: Submitter,
        responses: ResponseReceiver,
        validate: impl Fn(u16, u16, &[u8]) -> Result<(), Invalid> + Send + 'static,
    ) -> io::Result<Server> {
        Listening::open(&net, Some(listener), &submitter, &responses)?.serve(
            submitter,
            responses,
            Box::new(validate),
        )
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The gate that decides whether this server takes requests or answers them with
    /// `NOT_LEADER` naming the leader (`NetConfig::leadership`; default: leader). The cluster
    /// flips it as leadership changes.
    pub fn leadership(&self) -> LeaderGate {
        self.leadership.clone()
    }

    /// A handle that stops the server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.shared.clone())
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }

    /// Whether the network thread has ended (stopped, or the engine stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits until the server has stopped (through a [`StopHandle`], or because the engine
    /// stopped) and returns its final counters.
    pub fn wait(mut self) -> io::Result<NetStats> {
        self.join()
    }

    /// Stops the server and waits for it: see [`StopHandle::stop`].
    pub fn shutdown(self) -> io::Result<NetStats> {
        self.shared.request_stop();
        self.wait()
    }

    fn join(&mut self) -> io::Result<NetStats> {
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| io::Error::other("network thread panicked"))??;
        }
        Ok(self.counters.snapshot())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shared.request_stop();
            if let Err(e) = self.join() {
                tracing::error!(error = %e, "network thread ended with an error");
            }
        }
    }
}

impl Listening {
    /// Checks the limits against the engine's sizes, then binds (unless `bound` is given)
    /// and registers the listener.
    fn open(
        net: &NetConfig,
        bound: Option<std::net::TcpListener>,
        submitter: &Submitter,
        responses: &ResponseReceiver,
    ) -> io::Result<Listening> {
        if responses.has_wake_hook() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the response receiver already has a wake hook; the server needs its own",
            ));
        }
        let limits = Limits::derive(
            net,
            EngineSizes {
                max_message_bytes: submitter.max_message_bytes(),
                max_response_bytes: responses.max_response_bytes(),
            },
        )?;
        let poll = Poll::new()?;
        let mut listener = match bound {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                TcpListener::from_std(listener)
            }
            None => TcpListener::bind(net.listen_addr)?,
        };
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let shared = Arc::new(Shared {
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            waker: Waker::new(poll.registry(), WAKER)?,
        });
        let local_addr = listener.local_addr()?;
        Ok(Listening {
            poll,
            listener,
            shared,
            limits,
            net_core: net.net_core,
            local_addr,
            leadership: net.leadership.clone(),
        })
    }

    /// Hooks the server's waker into `responses`, allocates every session buffer and starts
    /// the network thread (pinned to `NetConfig::net_core`).
    fn serve(
        self,
        submitter: Submitter,
        responses: ResponseReceiver,
        validate: Validator,
    ) -> io::Result<Server> {
        let Listening {
            poll,
            listener,
            shared,
            limits,
            net_core,
            local_addr,
            leadership,
        } = self;
        let waker = shared.clone();
        responses
            .set_wake_hook(Arc::new(move || waker.wake_if_sleeping()))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let max_connections = limits.max_connections;
        let counters = Arc::new(Counters::default());
        if let Some(metrics) = submitter.metrics() {
            metrics.attach_net(counters.clone());
        }
        let thread = NetThread::new(Parts {
            poll,
            listener,
            shared: shared.clone(),
            submitter,
            responses,
            validate,
            limits,
            counters: counters.clone(),
            leader: leadership.clone(),
        });
        // The first caller fixed the set, before any engine thread pinned itself.
        let cores = Cores::detect();
        let handle = std::thread::Builder::new()
            .name("keel-net".into())
            .spawn(move || {
                cores.pin_current(net_core, "net");
                let result = thread.run();
                if let Err(e) = &result {
                    tracing::error!(error = %e, "network thread failed");
                }
                result
            })?;
        tracing::info!(%local_addr, max_connections, "ready");
        Ok(Server {
            local_addr,
            shared,
            counters,
            leadership,
            thread: Some(handle),
        })
    }
}
