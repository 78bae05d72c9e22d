//! openraft's type configuration for the election, and the aliases the other modules use.

use openraft::{BasicNode, LogId, StoredMembership};
use serde::{Deserialize, Serialize};

/// The election's state machine, which is also its snapshot: openraft's own log carries only
/// blank (new leader) and membership entries, so all there is to remember is how far the log
/// was applied and the membership it set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SmState {
    pub(crate) last_applied: Option<LogId<u64>>,
    pub(crate) last_membership: StoredMembership<u64, BasicNode>,
}

openraft::declare_raft_types!(
    /// The election's openraft types: no application entries (`D = ()`), u64 node ids, nodes
    /// named by their cluster address.
    pub(crate) Types:
        D = (),
        R = (),
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = SmState,
);

pub(crate) type Raft = openraft::Raft<Types>;
pub(crate) type Entry = openraft::Entry<Types>;
pub(crate) type Vote = openraft::Vote<u64>;
pub(crate) type Snapshot = openraft::Snapshot<Types>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<u64, BasicNode>;
pub(crate) type RaftStorageError = openraft::StorageError<u64>;
pub(crate) type RpcError =
    openraft::error::RPCError<u64, BasicNode, openraft::error::RaftError<u64>>;

#[cfg(test)]
mod tests {
    use super::Vote;

    /// Standard Raft's votes (openraft's `single-term-leader`): two candidates of one term are
    /// not ordered, so a node that voted for one refuses the other; a later term wins.
    #[test]
    fn a_vote_in_a_term_refuses_every_other_candidate_of_that_term() {
        assert_eq!(Vote::new(4, 3).partial_cmp(&Vote::new(4, 2)), None);
        assert_eq!(Vote::new(4, 2).partial_cmp(&Vote::new(4, 3)), None);
        assert!(Vote::new(5, 2) > Vote::new(4, 3));
    }
}
