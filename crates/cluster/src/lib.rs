//! Hot standby replication and failover for keel (docs/REPLICATION.md).
//!
//! The leader ships its journal's records, byte-identical, to followers that validate, append
//! and apply them; a client's reply leaves the leader when the acknowledgement policy holds.
//! Leader election, terms and fencing come from openraft, on threads of their own: the engine's
//! hot path never touches an async runtime.
//!
//! Module map: `election` (openraft: who leads, in which term), `data` (the data plane:
//! shipping, following, acknowledgements, commit, promotion), `node` (a cluster node: its
//! engine and its role, driven by leadership reports).

pub mod data;
pub mod election;
pub mod node;

pub use data::AckPolicy;
pub use node::{LeaderHandle, Leadership, Node, NodeConfig, NodeError, NodeStatus, Peer, Role};
