//! Leader redirects: whether this server takes requests, or answers them with `NOT_LEADER`
//! and the leader's client address (docs/PROTOCOL.md, "Leader redirects").

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Whether this server is the leader of its cluster, shared between the network thread and
/// whoever knows (the cluster's election). A server starts as the leader (a server alone is
/// its own leader). While it is not, every `REQUEST` is answered with the request-level error
/// `NOT_LEADER`, whose text names the leader's client address when known
/// (`not the leader; leader=HOST:PORT`); connections stay open. Cloning shares the gate.
#[derive(Debug, Clone, Default)]
pub struct LeaderGate(Arc<Inner>);

/// Two gates are equal when they are the same gate (clones of one another).
impl PartialEq for LeaderGate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LeaderGate {}

#[derive(Debug, Default)]
struct Inner {
    /// Set while another node leads (or none is known); read once per request.
    follower: AtomicBool,
    leader: Mutex<Option<SocketAddr>>,
}

impl LeaderGate {
    /// Another node leads, at client address `leader` (`None`: unknown, e.g. during an
    /// election): requests are refused with `NOT_LEADER` from now on.
    pub fn set_leader(&self, leader: Option<SocketAddr>) {
        *self.0.leader.lock().unwrap_or_else(|e| e.into_inner()) = leader;
        self.0.follower.store(true, Ordering::Release);
    }

    /// This server leads: requests are taken from now on.
    pub fn set_self_leader(&self) {
        self.0.follower.store(false, Ordering::Release);
    }

    /// Whether this server takes requests.
    #[inline]
    pub fn is_leader(&self) -> bool {
        !self.0.follower.load(Ordering::Acquire)
    }

    /// The leader's client address, when another node leads and its address is known.
    pub fn leader(&self) -> Option<SocketAddr> {
        if self.is_leader() {
            return None;
        }
        *self.0.leader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `NOT_LEADER` text, written into `buf` (no allocation); returns its length.
    pub(crate) fn refusal_text(&self, buf: &mut [u8; 96]) -> usize {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = match self.leader() {
            Some(addr) => write!(cursor, "not the leader; leader={addr}"),
            None => write!(cursor, "not the leader; leader unknown"),
        };
        cursor.position() as usize
    }
}

/// The leader's address in a `NOT_LEADER` text, if it names one.
pub(crate) fn leader_in(text: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let at = text.find("leader=")? + "leader=".len();
    text[at..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_leader() {
        let gate = LeaderGate::default();
        assert!(gate.is_leader());
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        gate.set_leader(Some(addr));
        assert!(!gate.is_leader());
        let mut buf = [0u8; 96];
        let n = gate.refusal_text(&mut buf);
        assert_eq!(leader_in(&buf[..n]), Some(addr));
        gate.set_leader(None);
        let n = gate.refusal_text(&mut buf);
        assert_eq!(leader_in(&buf[..n]), None);
        gate.set_self_leader();
        assert!(gate.is_leader());
    }
}
