//! The public face of the network layer: bind, start, stop.

use super::config::{Invalid, Limits, NetConfig};
use super::event_loop::{NetThread, Parts, Shared, LISTENER, WAKER};
use super::stats::{Counters, NetStats};
use crate::engine::{Config, Cores, OutputWaker, ResponseReceiver, Submitter};
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
/// Started in two steps, because the engine must be configured with the server's waker before
/// it starts, and the server needs the engine's submitter and response receiver:
///
/// ```no_run
/// # use keel::net::{accept_all, NetConfig, Server};
/// # use keel::{Config, Engine, Message, Outcome, Output, Processor};
/// # #[derive(Default)] struct App;
/// # impl Processor for App {
/// #     fn apply(&mut self, _: &Message<'_>, _: &mut Output<'_>) -> Outcome { Outcome::Accepted }
/// #     fn state_hash(&self) -> u64 { 0 }
/// #     fn save_state(&self, _: &mut Vec<u8>) -> Result<(), keel::codec::CodecError> { Ok(()) }
/// #     fn load_state(&mut self, _: u32, _: &[u8]) -> Result<(), keel::snapshot::StateError> { Ok(()) }
/// # }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = Config::default();
/// let bound = Server::bind(NetConfig::default(), &mut config)?; // installs the output waker
/// let mut engine = Engine::start(config, App)?;
/// let server = bound.start(
///     engine.take_submitter().expect("submitter"),
///     engine.take_responses().expect("responses"),
///     accept_all,
/// )?;
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
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// A bound, not yet serving, server: the listening socket exists (connections wait in its
/// backlog) and the engine config carries the waker. Call [`Binding::start`] once the engine
/// has started.
pub struct Binding {
    poll: Poll,
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Limits,
    cores: Cores,
    net_core: Option<usize>,
    local_addr: SocketAddr,
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

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listening socket of `net` and installs the server's output waker in
    /// `engine` (replacing any). The limits are checked against `engine`'s message sizes.
    pub fn bind(net: NetConfig, engine: &mut Config) -> io::Result<Binding> {
        let limits = Limits::derive(&net, engine)?;
        let cores = Cores::detect(); // before any engine thread pins itself
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(net.listen_addr)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let shared = Arc::new(Shared {
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            waker: Waker::new(poll.registry(), WAKER)?,
        });
        let waker = shared.clone();
        engine.output_waker = Some(OutputWaker(Arc::new(move || waker.wake_if_sleeping())));
        let local_addr = listener.local_addr()?;
        tracing::info!(%local_addr, max_connections = limits.max_connections, "listening");
        Ok(Binding {
            poll,
            listener,
            shared,
            limits,
            cores,
            net_core: engine.pinning.net_core,
            local_addr,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        self.thread.as_ref().map_or(true, JoinHandle::is_finished)
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

impl Binding {
    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Allocates every session buffer and starts the network thread (pinned to
    /// `Config::pinning.net_core`). `validate(kind, version, payload)` checks each request
    /// before it may enter the engine; what it refuses never reaches the business logic.
    pub fn start(
        self,
        submitter: Submitter,
        responses: ResponseReceiver,
        validate: impl Fn(u16, u16, &[u8]) -> Result<(), Invalid> + Send + 'static,
    ) -> io::Result<Server> {
        let Binding {
            poll,
            listener,
            shared,
            mut limits,
            cores,
            net_core,
            local_addr,
        } = self;
        limits.max_payload_bytes = limits.max_payload_bytes.min(submitter.max_message_bytes());
        let counters = Arc::new(Counters::default());
        let thread = NetThread::new(Parts {
            poll,
            listener,
            shared: shared.clone(),
            submitter,
            responses,
            validate: Box::new(validate),
            limits,
            counters: counters.clone(),
        });
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
        Ok(Server {
            local_addr,
            shared,
            counters,
            thread: Some(handle),
        })
    }
}
