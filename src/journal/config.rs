//! Journal configuration: where, how big, how durable.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::JournalError;
use super::format::{
    segment_holds, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_SEGMENT_SIZE_BYTES, MAX_SEGMENT_SIZE_BYTES,
    MIN_SEGMENT_SIZE_BYTES, PAGE_SIZE_BYTES, SERVICE_NAME_BYTES,
};
use super::retention::JournalRetention;

/// When appended records are made durable. See `docs/journal_format.md` for the guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// Never sync on the hot path: survives a process crash, not a power loss.
    None,
    /// One `msync` per batch (group commit): a batch is durable when `end_batch` returns.
    #[default]
    Batch,
    /// Sync at the end of a batch or on `tick` when at least this many milliseconds passed
    /// since the last sync.
    IntervalMs(u32),
}

/// `FlushPolicy::from_str` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid flush policy {input:?}: expected none, batch or interval:MS (MS >= 1)")]
pub struct ParseFlushPolicyError {
    input: String,
}

impl FromStr for FlushPolicy {
    type Err = ParseFlushPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFlushPolicyError {
            input: s.to_owned(),
        };
        match s {
            "none" => Ok(Self::None),
            "batch" => Ok(Self::Batch),
            _ => {
                let ms = s.strip_prefix("interval:").ok_or_else(err)?;
                let ms = ms.strip_suffix("ms").unwrap_or(ms);
                match ms.parse::<u32>() {
                    Ok(ms) if ms >= 1 => Ok(Self::IntervalMs(ms)),
                    _ => Err(err()),
                }
            }
        }
    }
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Batch => f.write_str("batch"),
            Self::IntervalMs(ms) => write!(f, "interval:{ms}"),
        }
    }
}

/// How a new segment file is prepared before the writer uses it: which blocks the file
/// system holds, and in what units the page cache holds and writes back the mapping. Every
/// variant allocates the whole file ahead of use (never sparse); they trade sustained
/// throughput against what each group-commit sync writes. Measured figures:
/// `docs/journal_format.md`, "Segment preparation".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentPrep {
    /// By flush policy: `Adaptive` when the policy syncs (`batch`, `interval:MS`), `HugePages`
    /// under `none`, where nothing is synced on the append path and only preparation speed
    /// and writeback efficiency count. See [`SegmentPrep::resolve`].
    #[default]
    Auto,
    /// The segment is prepared a few MiB ahead of the writer, in 2 MiB steps, each the way
    /// the writer's rate of the moment calls for: zeroed (as `Zeroed`, 8 MiB ahead) while it
    /// writes less than ~200 MB/s, so every sync is small and a pure data overwrite; with
    /// huge pages (as `HugePages`, 16 MiB ahead) while it writes more, so writeback costs
    /// the least per byte. A new segment is prepared in the kind of the moment: zeroed only
    /// as far as its first 8 MiB, or with huge pages whole. See `docs/journal_format.md`.
    Adaptive,
    /// `fallocate` only, page sizes left to the kernel: the blocks are allocated but
    /// unwritten (a sync that first writes a block also commits that metadata change), and the
    /// fault-in readahead grows the page cache's folios up to 2 MiB as the segment is faulted
    /// in, each written back whole: a sync deep in a segment rewrites up to 2 MiB however
    /// little changed, so at low rates the disk writes far more than the records.
    Allocated,
    /// `fallocate`, and the mapping asks for transparent huge pages (`MADV_HUGEPAGE`): 2 MiB
    /// folios mapped by one entry each, so writing back 2 MiB write-protects one entry and
    /// flushes the other cores' TLBs once instead of 512 times. The most records per second
    /// under sustained load; but every sync writes whole 2 MiB folios, which costs latency
    /// and write volume at low rates (at 1,000 records/s, one per sync: 6 GB in 3 s). For
    /// sustained high rates only. Behaves like `Allocated` where huge pages are unavailable
    /// (`/sys/kernel/mm/transparent_hugepage/enabled` = `never`).
    HugePages,
    /// `fallocate`, then zeros written through the page cache in 16 KiB writes and synced (off
    /// the append path, by the preparer): a sync is then a pure data overwrite of the 16 KiB
    /// folios it touches, so an acknowledgement costs about one `fdatasync`. Every byte
    /// reaches the disk twice (zeros, then records), and small folios make writeback dear
    /// per byte: the lowest sustained throughput.
    Zeroed,
}

impl SegmentPrep {
    /// The preparation used under `flush`: `Auto` resolved, any other returned as it is.
    pub fn resolve(self, flush: FlushPolicy) -> SegmentPrep {
        match (self, flush) {
            (Self::Auto, FlushPolicy::None) => Self::HugePages,
            (Self::Auto, FlushPolicy::Batch | FlushPolicy::IntervalMs(_)) => Self::Adaptive,
            (prep, _) => prep,
        }
    }
}

/// `SegmentPrep::from_str` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid segment preparation {input:?}: expected auto, adaptive, allocated, huge-pages or zeroed")]
pub struct ParseSegmentPrepError {
    input: String,
}

impl FromStr for SegmentPrep {
    type Err = ParseSegmentPrepError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "adaptive" => Ok(Self::Adaptive),
            "allocated" => Ok(Self::Allocated),
            "huge-pages" => Ok(Self::HugePages),
            "zeroed" => Ok(Self::Zeroed),
            _ => Err(ParseSegmentPrepError {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for SegmentPrep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Adaptive => "adaptive",
            Self::Allocated => "allocated",
            Self::HugePages => "huge-pages",
            Self::Zeroed => "zeroed",
        })
    }
}

/// Everything the journal writer needs to know, fixed at open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalConfig {
    /// Journal directory (created if missing).
    pub dir: PathBuf,
    /// Size of each new segment file: a multiple of 4096, at least 16 KiB.
    pub segment_size_bytes: u64,
    /// Flush policy applied by `end_batch` and `tick`.
    pub flush: FlushPolicy,
    /// Largest payload `append` accepts; a record of this size must fit in a segment.
    pub max_payload_bytes: u32,
    /// How each new segment is prepared (existing segments are used as they are).
    pub segment_prep: SegmentPrep,
    /// Name of the service writing the journal, recorded in each new segment's header (at
    /// most 20 bytes of UTF-8, no NUL). The writer refuses a journal whose segments name
    /// another service (`WrongService`). Empty: unnamed, nothing recorded or checked.
    pub service_name: String,
    /// Schema version of the service's state, recorded in each new segment's header.
    pub service_schema_version: u32,
    /// What happens to segments no retained snapshot needs any more (applied by the engine's
    /// snapshot thread; the writer itself never removes a segment). Default `Keep`.
    pub retention: JournalRetention,
}

impl JournalConfig {
    /// Defaults: 64 MiB segments, `batch` flushing, 64 KiB largest payload, `Auto` preparation.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            flush: FlushPolicy::Batch,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            segment_prep: SegmentPrep::default(),
            service_name: String::new(),
            service_schema_version: 0,
            retention: JournalRetention::Keep,
        }
    }

    /// The segment preparation used under this config's flush policy (`Auto` resolved).
    pub fn segment_prep_in_force(&self) -> SegmentPrep {
        self.segment_prep.resolve(self.flush)
    }

    /// Checks the limits; called by `JournalWriter::open`.
    pub fn validate(&self) -> Result<(), JournalError> {
        let size = self.segment_size_bytes;
        let reason = if !size.is_multiple_of(PAGE_SIZE_BYTES) {
            format!("segment_size_bytes {size} is not a multiple of {PAGE_SIZE_BYTES}")
        } else if !(MIN_SEGMENT_SIZE_BYTES..=MAX_SEGMENT_SIZE_BYTES).contains(&size) {
            format!(
                "segment_size_bytes {size} outside {MIN_SEGMENT_SIZE_BYTES}..={MAX_SEGMENT_SIZE_BYTES}"
            )
        } else if !segment_holds(size, self.max_payload_bytes) {
            format!(
                "max_payload_bytes {} does not fit in a segment of {size} bytes",
                self.max_payload_bytes
            )
        } else if self.flush == FlushPolicy::IntervalMs(0) {
            "flush interval must be at least 1 ms".to_owned()
        } else if self.service_name.len() > SERVICE_NAME_BYTES || self.service_name.contains('\0') {
            format!(
                "service name {:?} is longer than {SERVICE_NAME_BYTES} bytes or holds a NUL",
                self.service_name
            )
        } else {
            return Ok(());
        };
        Err(JournalError::InvalidConfig { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policy_parses_and_displays() {
        for (text, policy) in [
            ("none", FlushPolicy::None),
            ("batch", FlushPolicy::Batch),
            ("interval:5", FlushPolicy::IntervalMs(5)),
        ] {
            assert_eq!(text.parse::<FlushPolicy>(), Ok(policy));
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!("interval:7ms".parse(), Ok(FlushPolicy::IntervalMs(7)));
        for bad in [
            "",
            "Batch",
            "interval:",
            "interval:0",
            "interval:-1",
            "interval:x",
        ] {
            assert!(bad.parse::<FlushPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_prep_parses_and_displays() {
        for prep in [
            SegmentPrep::Auto,
            SegmentPrep::Adaptive,
            SegmentPrep::Allocated,
            SegmentPrep::HugePages,
            SegmentPrep::Zeroed,
        ] {
            assert_eq!(prep.to_string().parse::<SegmentPrep>(), Ok(prep));
        }
        assert!("Zeroed".parse::<SegmentPrep>().is_err());
    }

    #[test]
    fn auto_adapts_when_the_policy_syncs_and_maps_huge_pages_when_it_does_not() {
        let auto = SegmentPrep::default();
        assert_eq!(auto, SegmentPrep::Auto);
        assert_eq!(auto.resolve(FlushPolicy::Batch), SegmentPrep::Adaptive);
        assert_eq!(
            auto.resolve(FlushPolicy::IntervalMs(5)),
            SegmentPrep::Adaptive
        );
        assert_eq!(auto.resolve(FlushPolicy::None), SegmentPrep::HugePages);
        let chosen = SegmentPrep::Allocated;
        assert_eq!(chosen.resolve(FlushPolicy::None), SegmentPrep::Allocated);
    }

    #[test]
    fn config_limits() {
        let ok = JournalConfig::new("/tmp/x");
        assert!(ok.validate().is_ok());
        let odd = JournalConfig {
            segment_size_bytes: 70_000,
            ..ok.clone()
        };
        assert!(odd.validate().is_err());
        let tiny = JournalConfig {
            segment_size_bytes: 8192,
            ..ok.clone()
        };
        assert!(tiny.validate().is_err());
        let big = JournalConfig {
            segment_size_bytes: 64 << 10,
            max_payload_bytes: 64 << 10,
            ..ok
        };
        assert!(big.validate().is_err());
    }
}
