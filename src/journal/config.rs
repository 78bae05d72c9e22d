//! Journal configuration: where, how big, how durable.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::JournalError;
use super::format::{
    segment_holds, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_SEGMENT_SIZE_BYTES, MAX_SEGMENT_SIZE_BYTES,
    MIN_SEGMENT_SIZE_BYTES, PAGE_SIZE_BYTES,
};

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

/// How the blocks of a new segment file are prepared before the writer uses it. Both allocate
/// the whole file ahead of use (never sparse); they trade sustained throughput against the
/// cost of each group-commit sync. Measured figures: `docs/journal_format.md`, "Segment fill".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentFill {
    /// `fallocate` only: the file system records the blocks as allocated but unwritten, so a
    /// sync that first writes a block also commits that metadata change, and the page cache
    /// may hold the file in large folios that each sync writes whole. Cheapest to prepare, and
    /// the most records per second under sustained load.
    #[default]
    Allocated,
    /// `fallocate`, then zeros written through the page cache in small writes and synced
    /// (off the append path, by the preparer): a sync is then a pure data overwrite of the
    /// few pages it touches, so an acknowledgement costs about one `fdatasync`. Every byte
    /// reaches the disk twice (zeros, then records), which caps sustained throughput lower.
    Zeroed,
}

/// `SegmentFill::from_str` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid segment fill {input:?}: expected allocated or zeroed")]
pub struct ParseSegmentFillError {
    input: String,
}

impl FromStr for SegmentFill {
    type Err = ParseSegmentFillError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allocated" => Ok(Self::Allocated),
            "zeroed" => Ok(Self::Zeroed),
            _ => Err(ParseSegmentFillError {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for SegmentFill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allocated => "allocated",
            Self::Zeroed => "zeroed",
        })
    }
}

/// Everything the journal writer needs to know, fixed at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Journal directory (created if missing).
    pub dir: PathBuf,
    /// Size of each new segment file: a multiple of 4096, at least 16 KiB.
    pub segment_size_bytes: u64,
    /// Flush policy applied by `end_batch` and `tick`.
    pub flush: FlushPolicy,
    /// Largest payload `append` accepts; a record of this size must fit in a segment.
    pub max_payload_bytes: u32,
    /// How each new segment's blocks are prepared (existing segments are used as they are).
    pub segment_fill: SegmentFill,
}

impl JournalConfig {
    /// Defaults: 64 MiB segments, `batch` flushing, 64 KiB largest payload, `allocated`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            flush: FlushPolicy::Batch,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            segment_fill: SegmentFill::Allocated,
        }
    }

    /// Checks the limits; called by `JournalWriter::open`.
    pub fn validate(&self) -> Result<(), JournalError> {
        let size = self.segment_size_bytes;
        let reason = if size % PAGE_SIZE_BYTES != 0 {
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
    fn segment_fill_parses_and_displays() {
        for fill in [SegmentFill::Allocated, SegmentFill::Zeroed] {
            assert_eq!(fill.to_string().parse::<SegmentFill>(), Ok(fill));
        }
        assert_eq!(SegmentFill::default(), SegmentFill::Allocated);
        assert!("Zeroed".parse::<SegmentFill>().is_err());
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
