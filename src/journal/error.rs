//! Journal errors: I/O kept apart from corruption, each corruption with its place and reason.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong opening, writing, reading or verifying a journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// An operating-system error without a more specific meaning.
    #[error("journal I/O error: {0}")]
    Io(#[from] io::Error),
    /// An operating-system error on a named file.
    #[error("journal I/O error on {path}: {source}")]
    FileIo {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The journal is damaged before its tail. Nothing was modified.
    #[error("journal corrupted in {segment} at offset {offset} (expected sequence {expected_sequence}): {reason}")]
    Corrupted {
        /// Segment file holding the damage.
        segment: PathBuf,
        /// Byte offset of the damaged entry within the segment.
        offset: u64,
        /// Sequence the journal expected at that point.
        expected_sequence: u64,
        /// What is wrong.
        reason: CorruptionReason,
    },
    /// Another writer (or a `verify`) holds the journal directory's lock.
    #[error("journal directory {dir} is locked by another process or writer")]
    Locked {
        /// The journal directory.
        dir: PathBuf,
    },
    /// A segment could not be allocated: no space (or quota) left. Nothing was acknowledged.
    #[error("disk full allocating {needed_bytes} bytes for {path}: {source}")]
    DiskFull {
        /// The file being allocated.
        path: PathBuf,
        /// How many bytes were requested.
        needed_bytes: u64,
        /// The underlying error (ENOSPC or EDQUOT).
        source: io::Error,
    },
    /// `append` was given a sequence other than the next one.
    #[error("sequence mismatch: expected {expected}, got {got}")]
    SequenceMismatch {
        /// The sequence the journal needs next.
        expected: u64,
        /// The sequence offered.
        got: u64,
    },
    /// The payload exceeds the configured maximum.
    #[error("record payload of {payload_bytes} bytes exceeds the maximum of {max_payload_bytes}")]
    RecordTooLarge {
        /// Payload size offered.
        payload_bytes: usize,
        /// Configured maximum.
        max_payload_bytes: u32,
    },
    /// The configuration is unusable.
    #[error("invalid journal configuration: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: String,
    },
    /// A file in the journal directory ends in `.seg` but is not named by a sequence.
    #[error("unexpected segment file name {path}")]
    BadFileName {
        /// The offending file.
        path: PathBuf,
    },
    /// A segment was written by a format or codec this code cannot read.
    #[error("segment {segment} has format version {format_version} codec {codec_id}; this build reads versions {} and {} codec {}", super::format::FORMAT_VERSION_UNNAMED, super::format::FORMAT_VERSION, crate::codec::CODEC_ID)]
    UnsupportedFormat {
        /// The segment file.
        segment: PathBuf,
        /// Format version found in its header.
        format_version: u16,
        /// Codec id found in its header.
        codec_id: u16,
    },
    /// The journal was written by another service than the one opening it (the name in its
    /// segment headers). Nothing was modified.
    #[error("journal segment {segment} was written by service {found:?}, not {expected:?}: point --data-dir at {expected}'s data, or open it as {found}")]
    WrongService {
        /// The newest segment naming a service.
        segment: PathBuf,
        /// The service its header names.
        found: String,
        /// The service opening the journal.
        expected: String,
    },
    /// Journal retention could not retire a segment, or its marker is unreadable.
    #[error("journal retention: {path}: {reason}")]
    Retention {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The journal has no segments, but keel retired its history before a sequence: starting
    /// empty would discard that history. See `docs/fault_model.md`, "Retention".
    #[error(
        "refusing to open: the journal in {dir} holds no segments, but its retention marker says sequences 1..={last_retired} were retired ({where_to}) after snapshots covered them; the journal alone cannot rebuild that state. Restore the journal's segments and snapshots, or accept the loss with `keel admin accept-loss`"
    )]
    HistoryRetired {
        /// The journal directory.
        dir: PathBuf,
        /// The last retired sequence.
        last_retired: u64,
        /// Where the retired segments went.
        where_to: String,
    },
    /// `JournalWriter::truncate_after` was asked to cut before the journal's first sequence
    /// (its oldest segment, or its retention marker): the history there is gone. Nothing was
    /// modified.
    #[error("cannot truncate after sequence {sequence}: the journal starts at {first_sequence}")]
    TruncateBeforeStart {
        /// The sequence after which the cut was asked.
        sequence: u64,
        /// The journal's first sequence.
        first_sequence: u64,
    },
    /// A truncation (or finishing an interrupted one) found the segment that must keep the
    /// record it cuts after unable to: damaged, or without the record.
    #[error("cannot truncate after sequence {sequence} in {segment}: {reason}")]
    Truncation {
        /// The segment that should hold the record.
        segment: PathBuf,
        /// The sequence after which the cut was asked.
        sequence: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier sync or write failed; the writer refuses to continue. Reopen to recover.
    #[error("journal writer stopped after an earlier failure ({cause}); reopen to recover")]
    Poisoned {
        /// The first failure, as text.
        cause: String,
    },
}

/// What kind of damage a soft fault is: what an interrupted write can leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    /// No published entry (magic word is zero).
    #[error("no record (zero magic)")]
    Unwritten,
    /// The magic word is neither a record nor an end marker.
    #[error("bad magic {found:#010x}")]
    BadMagic {
        /// The word found.
        found: u32,
    },
    /// The length runs past the end of the segment (or an end marker has a payload).
    #[error("impossible payload length {payload_bytes}")]
    BadLength {
        /// The length found.
        payload_bytes: u32,
    },
    /// The CRC does not match the bytes.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum {
        /// CRC stored in the record.
        stored: u32,
        /// CRC of the bytes as read.
        computed: u32,
    },
    /// The segment header is missing, has a bad magic or a bad CRC.
    #[error("invalid segment header")]
    BadSegmentHeader,
    /// A record whose checksum holds but whose reserved field or padding is not zero: not
    /// the form a journal writes (a record received for replication).
    #[error("record not in the form a journal writes (reserved field or padding not zero)")]
    NotCanonical,
}

/// Why a journal is corrupted (as opposed to merely having a torn tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionReason {
    /// Damage that would be a torn tail, but valid data follows it.
    #[error("{damage}, but valid data follows: {evidence}")]
    DamagedBeforeValidData {
        /// The damage found.
        damage: Damage,
        /// The valid data found after it.
        evidence: Evidence,
    },
    /// A record (or marker, or segment) does not continue the sequence.
    #[error("sequence gap: expected {expected}, found {found}")]
    SequenceGap {
        /// The sequence expected here.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// A record's `prev_crc` does not match the previous record's CRC.
    #[error("hash chain broken: expected prev_crc {expected:#010x}, found {found:#010x}")]
    ChainBreak {
        /// CRC of the previous record.
        expected: u32,
        /// `prev_crc` stored in this record.
        found: u32,
    },
    /// Reserved bytes of a CRC-valid record or marker are not zero.
    #[error("reserved bytes are not zero")]
    ReservedNotZero,
    /// The file name and the header disagree on the first sequence.
    #[error("file named for sequence {name_sequence} but header says {header_sequence}")]
    NameMismatch {
        /// Sequence in the file name.
        name_sequence: u64,
        /// Sequence in the header.
        header_sequence: u64,
    },
    /// The file size and the header disagree.
    #[error("header says {header_bytes} bytes but the file has {file_bytes}")]
    SizeMismatch {
        /// Size in the header.
        header_bytes: u64,
        /// Size of the file.
        file_bytes: u64,
    },
    /// The oldest segment's header is torn and nothing valid follows, but it does not start the
    /// journal (older segments were removed): the hash chain cannot be continued from it.
    #[error("the oldest segment's header is torn; its chain seed is lost")]
    ChainSeedLost,
    /// An end marker with no record before it in its segment: it names the segment itself as
    /// the next one. The writer never seals an empty segment; a reader following the marker
    /// would re-enter the same file forever.
    #[error("end marker names this segment's own first sequence {next_sequence} as the next")]
    EndMarkerDoesNotAdvance {
        /// The sequence the marker names (the segment's first).
        next_sequence: u64,
    },
    /// The last segment is sealed by an end marker, but the segment it names does not exist.
    /// The writer makes a segment's successor durable before it seals the segment, so this is
    /// no crash: the file was deleted (or lost), with whatever records it held.
    #[error(
        "sealed, but the next segment {next_sequence:020}.seg is missing: records from \
         {next_sequence} on may have been acknowledged and are gone; restore the file, or \
         accept the loss with `keel admin accept-loss`"
    )]
    SuccessorMissing {
        /// The sequence the end marker names: the missing segment's first sequence.
        next_sequence: u64,
    },
    /// A sealed segment has non-zero bytes after its end marker.
    #[error("non-zero byte at offset {offset} after the end marker")]
    NonZeroAfterEndMarker {
        /// Offset of the first non-zero byte.
        offset: u64,
    },
}

/// Valid data found after a soft fault: proof that the fault is not the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// First sequence (file name) of the segment holding the valid data.
    pub segment_first_sequence: u64,
    /// Offset of the valid data in that segment.
    pub offset: u64,
    /// What was found.
    pub kind: EvidenceKind,
}

/// The kind of valid data found after a soft fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvidenceKind {
    /// A record with a valid CRC.
    Record {
        /// Its sequence.
        sequence: u64,
    },
    /// An end-of-segment marker with a valid CRC.
    EndMarker {
        /// The next sequence it names.
        next_sequence: u64,
    },
    /// A valid segment header.
    SegmentHeader {
        /// Its first sequence.
        first_sequence: u64,
    },
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seg = self.segment_first_sequence;
        let at = self.offset;
        match self.kind {
            EvidenceKind::Record { sequence } => {
                write!(f, "record {sequence} at offset {at} of segment {seg:020}")
            }
            EvidenceKind::EndMarker { next_sequence } => {
                write!(
                    f,
                    "end marker (next {next_sequence}) at offset {at} of segment {seg:020}"
                )
            }
            EvidenceKind::SegmentHeader { first_sequence } => {
                write!(f, "valid header of later segment {first_sequence:020}")
            }
        }
    }
}

/// Whether an I/O error means "no space left" (ENOSPC, or EDQUOT for quotas).
pub(crate) fn is_disk_full(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Wraps an I/O error with the path it concerns.
pub(crate) fn file_io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.into();
    move |source| JournalError::FileIo { path, source }
}
