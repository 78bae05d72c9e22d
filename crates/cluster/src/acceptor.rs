//! One acceptor per node on its cluster address: each connection's first byte says where it
//! goes (`b'E'`: the election, `b'D'`: the data plane); anything else is closed. Plain std
//! threads, so the data plane never waits on the election's runtime.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::election::{CHANNEL_DATA, CHANNEL_RAFT, CHANNEL_RAFT_BEFORE_ONE_LEADER_PER_TERM};

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
        CHANNEL_RAFT_BEFORE_ONE_LEADER_PER_TERM => warn_earlier_build(&stream),
        other => tracing::debug!(
            channel = other,
            "cluster connection with an unknown channel"
        ),
    }
}

/// Warns (once per process: the peer retries every heartbeat) that a node of an earlier keel
/// build, whose election can make two leaders in one term, tries to reach this one.
fn warn_earlier_build(stream: &TcpStream) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::AcqRel) {
        tracing::warn!(
            peer = ?stream.peer_addr().ok(),
            "a node of an earlier keel build (election channel R, before one leader per term) \
             tries to reach this node; its connections are closed: run one build on every node"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_connection_on_the_earlier_election_channel_is_closed_unrouted() {
        let routed = Arc::new(AtomicUsize::new(0));
        let route = |count: Arc<AtomicUsize>| -> Route {
            Arc::new(move |_| {
                count.fetch_add(1, Ordering::AcqRel);
            })
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut acceptor =
            Acceptor::start(listener, route(routed.clone()), route(routed.clone())).unwrap();
        let mut stream = TcpStream::connect(acceptor.local_addr()).unwrap();
        stream
            .write_all(&[CHANNEL_RAFT_BEFORE_ONE_LEADER_PER_TERM])
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).unwrap(), 0, "closed by the node");
        assert_eq!(routed.load(Ordering::Acquire), 0);
        acceptor.stop();
    }
}
