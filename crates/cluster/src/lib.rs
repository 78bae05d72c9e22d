//! Hot standby replication and failover for keel (docs/REPLICATION.md).
//!
//! The leader ships its journal's records, byte-identical, to followers that validate, append
//! and apply them; a client's reply leaves the leader when the acknowledgement policy holds.
//! Leader election, terms and fencing come from openraft, on threads of their own: the engine's
//! hot path never touches an async runtime.
//!
//! Module map: `election` (openraft: who leads, in which term), `data` (the data plane:
//! shipping, following, acknowledgements, commit, promotion), `node` (a cluster node: its
//! engine and its role, driven by leadership reports), `acceptor` (the cluster address: one
//! acceptor routing each connection by its channel byte), `redirect` (the client address while
//! the node does not serve: `NOT_LEADER` naming the leader), `cluster` (a whole node:
//! election, data plane, the client address: the network server while leading, the
//! redirector otherwise).

pub mod acceptor;
pub mod cluster;
pub mod data;
mod durable;
pub mod election;
pub mod node;
pub mod redirect;

pub use cluster::{Cluster, ClusterConfig, ClusterError, ClusterEvent};
pub use data::AckPolicy;
pub use node::{
    FollowerStatus, LeaderHandle, Leadership, Node, NodeConfig, NodeError, NodeGauges,
    NodeObserver, NodeStatus, Peer, Redirect, Role,
};

/// Refuses a connection that reached itself: a dial to a port of the kernel's ephemeral range
/// where nothing listens can be given that very port as its own (TCP's simultaneous open), and
/// would then read back what it writes.
pub(crate) fn refuse_self_connect(
    local: std::io::Result<std::net::SocketAddr>,
    peer: std::io::Result<std::net::SocketAddr>,
) -> std::io::Result<()> {
    if local? == peer? {
        let why = "connected to itself: nothing listens on that address";
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            why,
        ));
    }
    Ok(())
}
