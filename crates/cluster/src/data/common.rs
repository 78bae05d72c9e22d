//! The common prefix of this node's journal and a peer's: the highest sequence where both hold
//! the same chain value. Chains are cumulative (each record's CRC covers the one before it), so
//! agreement is prefix-closed and a binary search over PROBE answers finds it.

use std::path::Path;

use super::frame::ChainStatus;
use super::log;
use super::DataError;

/// The highest sequence where the journal in `dir` (ending at `local_last`) and the peer's
/// (ending at `remote_last`, with chain `remote_chain` there) agree. `probe` asks the peer
/// what it holds at a sequence.
pub(crate) fn common_prefix(
    dir: &Path,
    local_last: u64,
    (remote_last, remote_chain): (u64, u32),
    mut probe: impl FnMut(u64) -> Result<ChainStatus, DataError>,
) -> Result<u64, DataError> {
    if remote_last <= local_last
        && log::chain_at(dir, remote_last)? == ChainStatus::Holds(remote_chain)
    {
        return Ok(remote_last);
    }
    let mut agree = |s: u64| -> Result<bool, DataError> {
        let local = log::chain_at(dir, s)?;
        if let ChainStatus::BeforeStart(first_sequence) = local {
            return Err(DataError::NeedsSnapshot { first_sequence });
        }
        let remote = probe(s)?;
        if let ChainStatus::BeforeStart(first_sequence) = remote {
            return Err(DataError::NeedsSnapshot { first_sequence });
        }
        Ok(matches!((local, remote), (ChainStatus::Holds(a), ChainStatus::Holds(b)) if a == b))
    };
    let hi = local_last.min(remote_last);
    if agree(hi)? {
        return Ok(hi);
    }
    // Invariant: agree(lo) (sequence 0, the chain seed, always agrees), !agree(hi).
    let (mut lo, mut hi) = (0u64, hi);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if agree(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}
