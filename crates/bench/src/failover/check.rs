//! The checks after a failover run, from the nodes' files alone:
//! - lost: answered (client id, request id) pairs missing from a node's journal (under
//!   protocol 2 a request is journaled with session id = client id with the top bit set,
//!   correlation id = request id);
//! - duplicated: whether a node's state applied some request twice. Independent of the
//!   engine's exactly-once table: a fresh processor replays the node's journal applying only
//!   the first record of each (client id, request id); a node whose state hash differs from it
//!   applied a duplicate (or lost one), and then every request journaled more than once is
//!   counted as a possible duplicate;
//! - the failover time of each kill, split by the events files into detect (kill → a survivor
//!   loses its leader), elect (→ a node is elected) and promote (→ it serves).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use keel::engine::{apply_message, message_of, CONTROL_KIND_MIN};
use keel::journal::JournalReader;
use keel_services::App;

use super::procs::{Event, EventKind};
use crate::rig::Failure;

/// The bit an exactly-once request's journaled session id carries over its client id (the
/// engine's exactly-once table keys on the rest).
const CLIENT_SESSION_FLAG: u64 = 1 << 63;

/// What one node's journal says.
#[derive(Debug, Clone, Default)]
pub struct JournalCheck {
    /// Records in the journal.
    pub records: u64,
    /// Last sequence.
    pub last_sequence: u64,
    /// (client id, request id) of every client record.
    pub requests: HashSet<(u64, u64)>,
    /// Requests journaled more than once (resent after a failover).
    pub journaled_twice: u64,
    /// State hash of a fresh processor applying each request once, in journal order.
    pub once_hash: u64,
}

/// Reads `journal_dir` and replays it with first-occurrence deduplication.
pub fn check_journal<A: App>(journal_dir: &Path) -> Result<JournalCheck, Failure> {
    let mut reader = JournalReader::open(journal_dir)?;
    let mut processor = A::default();
    let mut scratch = vec![0u8; 1 << 16];
    let mut seen: HashMap<(u64, u64), u32> = HashMap::new();
    let mut check = JournalCheck::default();
    while let Some(record) = reader.next()? {
        check.records += 1;
        check.last_sequence = record.sequence;
        if record.kind >= CONTROL_KIND_MIN {
            continue;
        }
        let key = (
            record.session_id & !CLIENT_SESSION_FLAG,
            record.correlation_id,
        );
        let count = seen.entry(key).or_insert(0);
        *count += 1;
        if *count > 1 {
            continue;
        }
        apply_message(&mut processor, &message_of(&record), &mut scratch);
    }
    check.journaled_twice = seen.values().filter(|c| **c > 1).count() as u64;
    check.requests = seen.into_keys().collect();
    check.once_hash = processor.state_hash();
    Ok(check)
}

/// One failover's times, ms.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FailoverTimes {
    /// Kill → a new leader serves.
    pub total_ms: f64,
    /// Kill → the first survivor notices the leader is gone.
    pub detect_ms: f64,
    /// Noticed → a node is elected.
    pub elect_ms: f64,
    /// Elected → it serves (caught up, term record journaled, client port open).
    pub promote_ms: f64,
}

/// The times of the failover that began at `kill_ns` (killing the leader of `old_term`), from
/// the surviving nodes' events.
pub fn failover_times(kill_ns: u64, old_term: u64, events: &[Vec<Event>]) -> Option<FailoverTimes> {
    let after = |kind: EventKind| {
        events
            .iter()
            .flatten()
            .filter(|e| e.kind == kind && e.unix_ns >= kill_ns && e.term > old_term)
            .min_by_key(|e| e.unix_ns)
            .copied()
    };
    let serving = after(EventKind::Serving)?;
    let elected = events
        .iter()
        .flatten()
        .filter(|e| e.kind == EventKind::Elected && e.term == serving.term)
        .map(|e| e.unix_ns)
        .min()
        .unwrap_or(serving.unix_ns);
    let lost = after(EventKind::LeaderLost).map_or(elected, |e| e.unix_ns.min(elected));
    let ms = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e6;
    Some(FailoverTimes {
        total_ms: ms(kill_ns, serving.unix_ns),
        detect_ms: ms(kill_ns, lost),
        elect_ms: ms(lost, elected),
        promote_ms: ms(elected, serving.unix_ns),
    })
}

/// p50 and max of `values`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Spread {
    /// Median.
    pub p50: f64,
    /// Largest.
    pub max: f64,
}

/// The median and the maximum (zeros when empty).
pub fn spread(values: impl Iterator<Item = f64>) -> Spread {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return Spread::default();
    }
    v.sort_by(f64::total_cmp);
    Spread {
        p50: v[v.len() / 2],
        max: v[v.len() - 1],
    }
}
