//! Journal: pre-allocated, memory-mapped segment files of checksummed, hash-chained records.
//!
//! The journal is the truth; memory is a cache of it. One [`JournalWriter`] per directory
//! appends records (no allocation, no syscall except at rollover) and makes them durable once
//! per batch according to its [`FlushPolicy`]. [`JournalReader`]s iterate from any sequence,
//! validating every record, and can follow a live writer. [`verify`] checks a journal without
//! modifying it. The byte format, the recovery rules and the assumptions about the storage are
//! in `docs/journal_format.md`.
//!
//! Module map: `format` (byte maps, pure encode/check), `segment` (the mmap, the only `unsafe`),
//! `holes` (which ranges of a segment file may hold data), `io` (the injectable I/O seam),
//! `dir` (names, listing, lock), `prepare` (background spare segment), `lead` (the active
//! segment prepared a few MiB ahead of its writer), `commit` (group commit on a syncer
//! thread), `recovery` (scan, torn tail versus corruption), `progress` (a scan's progress, for
//! a replay that follows it), `retention` (retiring old segments, the retention marker),
//! `writer`, `reader`, `ahead` (the reader's checksums computed ahead on a helper thread),
//! `truncate` (cutting a suffix off for replication), `start` (an empty journal starting
//! after a snapshot's sequence, for replication).

mod ahead;
mod chain;
mod commit;
mod config;
mod dir;
mod error;
mod format;
mod holes;
mod io;
mod lead;
mod prepare;
mod progress;
mod reader;
mod recovery;
mod retention;
mod segment;
mod start;
mod sync_handle;
mod truncate;
mod writer;

pub(crate) use chain::{chain_at, ChainAt};
pub use commit::DurableWaker;
pub use config::{
    FlushPolicy, JournalConfig, ParseFlushPolicyError, ParseSegmentPrepError, SegmentPrep,
};
pub use error::{CorruptionReason, Damage, Evidence, EvidenceKind, JournalError};
pub use format::{record_size_bytes, Record, SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_SIZE};

pub use io::{RealIo, SegmentIo};
pub(crate) use progress::{FinishOnDrop, ScanProgress};
pub use reader::JournalReader;
pub use recovery::{verify, TailState, VerifyReport};
pub(crate) use retention::{retire_before, Retired};
pub use retention::{JournalRetention, RetiredHistory};
pub use segment::SegmentSync;
pub use sync_handle::JournalSyncHandle;
pub use writer::{JournalOpening, JournalWriter};
