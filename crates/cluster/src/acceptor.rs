//! One acceptor per node on its cluster address: each connection's first byte says where it
//! goes (`b'E'`: the election, `b'D'`: the data plane); anything else is closed. Plain std
//! threads, so the data plane never waits on the election's runtime.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::election::{CHANNEL_DATA, CHANNEL_RAFT};

/// Longest wait for a connection's channel byte.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(2);

/// Where an accepted connection goes, its channel byte already read.
pub type Route = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// The running acceptor. Dropping it stops it.
pub struct Acceptor {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Accepts on `listener` until stopped: election connections go to `raft`, data
    /// connections to `data`. Each connection's channel byte is read on a short-lived thread
    /// of its own, so a silent peer delays nobody.
    pub fn start(listener: TcpListener, raft: Route, data: Route) -> std::io::Result<Acceptor> {
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("keel-cluster-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (raft, data) = (raft.clone(), data.clone());
                    let _ = std::thread::Builder::new()
                        .name("keel-cluster-channel".into())
                        .spawn(move || dispatch(stream, &raft, &data));
                }
            })?;
        Ok(Acceptor {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting (a connection to itself wakes the blocked accept) and joins.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let wake = match self.address {
                SocketAddr::V4(a) if a.ip().is_unspecified() => {
                    SocketAddr::from(([127, 0, 0, 1], a.port()))
                }
                other => other,
            };
            if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn dispatch(mut stream: TcpStream, raft: &Route, data: &Route) {
    let mut channel = [0u8; 1];
    let read = stream.set_read_timeout(Some(CHANNEL_TIMEOUT)).is_ok()
        && stream.read_exact(&mut channel).is_ok()
        && stream.set_read_timeout(None).is_ok();
    if !read {
        return;
    }
    match channel[0] {
        CHANNEL_RAFT => raft(stream),
        CHANNEL_DATA => data(stream),
        other => tracing::debug!(
            channel = other,
            "cluster connection with an unknown channel"
        ),
    }
}
