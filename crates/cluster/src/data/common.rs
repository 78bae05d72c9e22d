//! The common prefix of this node's journal and a peer's: the highest sequence where both hold
//! the same chain value. Chains are cumulative (each record's CRC covers the one before it), so
//! agreement is prefix-closed and a binary search over PROBE answers finds it, within the range
//! both journals hold: from the later of their starts (less one: a journal holds the chain value
//! before its first record) to the earlier of their ends. When they disagree at the start of that
//! range, or the peer ends before this journal starts, the peer needs a snapshot.

use std::path::Path;

use super::frame::ChainStatus;
use super::log;
use super::DataError;

/// The highest sequence where the journal in `dir` (ending at `local_last`) and the peer's
/// (ending at `remote_last`, with chain `remote_chain` there) agree. `probe` asks the peer
/// what it holds at a sequence. `NeedsSnapshot` when no such sequence lies in both journals.
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
    let first_sequence = log::first_sequence(dir)?;
    let needs_snapshot = DataError::NeedsSnapshot { first_sequence };
    let mut hi = local_last.min(remote_last);
    let mut lo = first_sequence - 1;
    // The lowest sequence both hold: this journal's start, or the peer's if it starts later.
    let base_agrees = loop {
        if lo > hi {
            return Err(needs_snapshot);
        }
        let local = log::chain_at(dir, lo)?;
        match probe(lo)? {
            ChainStatus::BeforeStart(peer_first) if peer_first - 1 > lo => lo = peer_first - 1,
            remote => break same(local, remote),
        }
    };
    if !base_agrees {
        return Err(needs_snapshot);
    }
    let agree = |s: u64, probe: &mut dyn FnMut(u64) -> Result<ChainStatus, DataError>| {
        let local = log::chain_at(dir, s)?;
        let remote = probe(s)?;
        Ok::<bool, DataError>(same(local, remote))
    };
    if agree(hi, &mut probe)? {
        return Ok(hi);
    }
    // Invariant: agree(lo), !agree(hi); both journals hold every sequence between.
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if agree(mid, &mut probe)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Whether both journals hold a sequence with the same chain value.
fn same(local: ChainStatus, remote: ChainStatus) -> bool {
    matches!((local, remote), (ChainStatus::Holds(a), ChainStatus::Holds(b)) if a == b)
}
