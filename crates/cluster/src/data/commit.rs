//! The acknowledgement policy and the commit it yields: pure functions of the positions.

/// When a message counts as committed (its response may leave the leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckPolicy {
    /// Durable on a majority of the cluster's nodes, the leader included (default).
    #[default]
    Majority,
    /// Durable on the leader alone: a failover may lose acknowledged messages.
    Leader,
    /// Durable on every node of the cluster.
    All,
}

/// An ack policy name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ack policy {0:?} (majority, leader or all)")]
pub struct ParseAckPolicyError(pub String);

impl std::str::FromStr for AckPolicy {
    type Err = ParseAckPolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "majority" => Ok(AckPolicy::Majority),
            "leader" => Ok(AckPolicy::Leader),
            "all" => Ok(AckPolicy::All),
            other => Err(ParseAckPolicyError(other.to_owned())),
        }
    }
}

impl std::fmt::Display for AckPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AckPolicy::Majority => "majority",
            AckPolicy::Leader => "leader",
            AckPolicy::All => "all",
        })
    }
}

/// The commit `policy` allows, from the leader's local durable sequence and each follower's
/// matched durable sequence (one entry per other node of the cluster, 0 when unknown). `None`
/// while this term's term record (at `term_start`) is not yet covered: the commit must not
/// move by counting replicas of earlier terms' records alone (Raft's rule).
pub fn commit_of(
    policy: AckPolicy,
    leader_durable: u64,
    followers: &[u64],
    term_start: u64,
) -> Option<u64> {
    let commit = match policy {
        AckPolicy::Leader => leader_durable,
        AckPolicy::All => followers.iter().copied().fold(leader_durable, u64::min),
        AckPolicy::Majority => majority_durable(leader_durable, followers),
    };
    (commit >= term_start).then_some(commit)
}

/// The highest sequence durable on a majority of `1 + followers.len()` nodes.
fn majority_durable(leader_durable: u64, followers: &[u64]) -> u64 {
    const MAX_NODES: usize = 16;
    let mut all = [0u64; MAX_NODES];
    let n = 1 + followers.len();
    assert!(n <= MAX_NODES, "at most {MAX_NODES} nodes");
    all[0] = leader_durable;
    all[1..n].copy_from_slice(followers);
    let all = &mut all[..n];
    all.sort_unstable_by(|a, b| b.cmp(a));
    // The (n/2+1)-th largest: that many nodes hold at least it.
    all[n / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        use AckPolicy::*;
        assert_eq!(commit_of(Majority, 10, &[5, 0], 1), Some(5));
        assert_eq!(commit_of(Majority, 10, &[0, 0], 1), None);
        assert_eq!(commit_of(Majority, 10, &[12, 7], 1), Some(10));
        assert_eq!(commit_of(All, 10, &[12, 7], 1), Some(7));
        assert_eq!(commit_of(All, 10, &[12, 0], 1), None);
        assert_eq!(commit_of(Leader, 10, &[0, 0], 1), Some(10));
        // Not before this term's term record is covered.
        assert_eq!(commit_of(Majority, 10, &[8, 0], 9), None);
        assert_eq!(commit_of(Majority, 10, &[9, 0], 9), Some(9));
        assert_eq!(commit_of(Majority, 4, &[], 1), Some(4));
        assert_eq!(commit_of(Majority, 9, &[9, 3, 1, 0], 1), Some(3));
    }
}
