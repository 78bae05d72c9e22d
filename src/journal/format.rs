//! On-disk byte layout of segments and records, and the pure encode/check leaves.
//!
//! The byte maps below mirror `docs/journal_format.md`. Each offset constant is the previous one
//! plus a `size_of`, so the maps cannot drift apart silently; the `const _` blocks pin the sizes
//! the document states. Everything here works on byte slices: no I/O, no `unsafe`.

use std::mem::size_of;

use super::error::{CorruptionReason, Damage};

/// Version of the on-disk format described in `docs/journal_format.md`.
pub const FORMAT_VERSION: u16 = 2;
/// The format before segment headers named their service: the same layout with the service
/// fields reserved (zero). Still read; such segments name no service.
pub(crate) const FORMAT_VERSION_UNNAMED: u16 = 1;
/// Bytes of the service name in a segment header (UTF-8, zero-padded).
pub(crate) const SERVICE_NAME_BYTES: usize = 20;
/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"KEELJNL\0");
/// Magic word of a record; written last, it publishes the record.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"KREC");
/// Magic word of the end-of-segment marker.
pub const END_MAGIC: u32 = u32::from_le_bytes(*b"KEND");
/// Page size the segment size must be a multiple of.
pub const PAGE_SIZE_BYTES: u64 = 4096;
/// Every record starts and ends on this alignment.
pub const RECORD_ALIGN_BYTES: usize = 8;

// ---- Segment header byte map (docs/journal_format.md, "Segment header") ----
const SH_MAGIC: usize = 0;
const SH_FORMAT_VERSION: usize = SH_MAGIC + size_of::<u64>();
const SH_CODEC_ID: usize = SH_FORMAT_VERSION + size_of::<u16>();
const SH_HEADER_SIZE: usize = SH_CODEC_ID + size_of::<u16>();
const SH_FIRST_SEQUENCE: usize = SH_HEADER_SIZE + size_of::<u32>();
const SH_SEGMENT_SIZE: usize = SH_FIRST_SEQUENCE + size_of::<u64>();
const SH_PREV_CRC: usize = SH_SEGMENT_SIZE + size_of::<u64>();
const SH_SERVICE_NAME: usize = SH_PREV_CRC + size_of::<u32>();
const SH_SERVICE_SCHEMA: usize = SH_SERVICE_NAME + SERVICE_NAME_BYTES;
const SH_CRC: usize = SH_SERVICE_SCHEMA + size_of::<u32>();
/// Size of the segment header; the first record starts here.
pub const SEGMENT_HEADER_SIZE: usize = SH_CRC + size_of::<u32>();

// Why: the document and every existing file say 64; a change here is a format change.
const _: () = assert!(SEGMENT_HEADER_SIZE == 64);
// Why: version 2 fills what version 1 reserved (24 bytes at 36), so both share one layout.
const _: () = assert!(SH_SERVICE_NAME == 36 && SH_CRC - SH_SERVICE_NAME == 24);
// Why: the header CRC covers exactly the bytes before it.
const _: () = assert!(SH_CRC == SEGMENT_HEADER_SIZE - size_of::<u32>());
// Why: the first record must be 8-aligned so its magic word can be loaded atomically.
const _: () = assert!(SEGMENT_HEADER_SIZE.is_multiple_of(RECORD_ALIGN_BYTES));

// ---- Record header byte map (docs/journal_format.md, "Record") ----
const R_MAGIC: usize = 0;
const R_CRC: usize = R_MAGIC + size_of::<u32>();
const R_PAYLOAD_BYTES: usize = R_CRC + size_of::<u32>();
const R_PREV_CRC: usize = R_PAYLOAD_BYTES + size_of::<u32>();
const R_SEQUENCE: usize = R_PREV_CRC + size_of::<u32>();
const R_TIMESTAMP_NS: usize = R_SEQUENCE + size_of::<u64>();
const R_SESSION_ID: usize = R_TIMESTAMP_NS + size_of::<u64>();
const R_CORRELATION_ID: usize = R_SESSION_ID + size_of::<u64>();
const R_KIND: usize = R_CORRELATION_ID + size_of::<u64>();
const R_VERSION: usize = R_KIND + size_of::<u16>();
const R_RESERVED: usize = R_VERSION + size_of::<u16>();
/// Size of a record header; the payload starts here.
pub const RECORD_HEADER_SIZE: usize = R_RESERVED + size_of::<u32>();
/// The CRC covers every byte of the record from here on (everything after the CRC itself).
const R_CRC_START: usize = R_CRC + size_of::<u32>();
/// The end-of-segment marker is a record header with no payload.
pub const END_MARKER_SIZE: usize = RECORD_HEADER_SIZE;

/// Sum of the header's field sizes, counted independently of the offsets above.
const RECORD_FIELDS_BYTES: usize =
    5 * size_of::<u32>() + 4 * size_of::<u64>() + 2 * size_of::<u16>();
// Why: no padding: the header is exactly the sum of its fields.
const _: () = assert!(RECORD_HEADER_SIZE == RECORD_FIELDS_BYTES);
// Why: the document says 56; a change here is a format change.
const _: () = assert!(RECORD_HEADER_SIZE == 56);
// Why: payloads and the records after them stay 8-aligned.
const _: () = assert!(RECORD_HEADER_SIZE.is_multiple_of(RECORD_ALIGN_BYTES));
// Why: the magic is the first, naturally aligned word: the atomic publication flag.
const _: () = assert!(R_MAGIC == 0 && R_CRC_START == R_PAYLOAD_BYTES);

/// Smallest segment accepted (tests use 64 KiB; production uses the default).
pub const MIN_SEGMENT_SIZE_BYTES: u64 = 16 * 1024;
/// Largest segment accepted: a segment is mapped whole.
pub const MAX_SEGMENT_SIZE_BYTES: u64 = 1 << 40;
/// Default segment size.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;
/// Default largest payload.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u32 = 64 << 10;

// Why: segments are allocated and mapped in whole pages.
const _: () = assert!(MIN_SEGMENT_SIZE_BYTES.is_multiple_of(PAGE_SIZE_BYTES));
const _: () = assert!(DEFAULT_SEGMENT_SIZE_BYTES.is_multiple_of(PAGE_SIZE_BYTES));
// Why: even the smallest segment holds its header, one empty record and the end marker.
const _: () = assert!(
    MIN_SEGMENT_SIZE_BYTES as usize >= SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + END_MARKER_SIZE
);
// Why: the default largest message fits in a default segment, with room for the end marker.
const _: () = assert!(segment_holds(
    DEFAULT_SEGMENT_SIZE_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES
));
// Why: offsets inside a segment are `usize`; a whole segment must be addressable.
const _: () = assert!(usize::BITS >= 64);

/// One message as journaled. Borrowed payload; no allocation to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Position in the journal, contiguous from 1.
    pub sequence: u64,
    /// Receive time (message data, never read from a clock on replay).
    pub timestamp_ns: u64,
    /// Session the message came from.
    pub session_id: u64,
    /// Client-chosen id echoed in the response.
    pub correlation_id: u64,
    /// Message kind.
    pub kind: u16,
    /// Message version (for upcasting).
    pub version: u16,
    /// Encoded message body.
    pub payload: &'a [u8],
}

/// Header at the start of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version ([`FORMAT_VERSION`] when written by this code).
    pub format_version: u16,
    /// Codec of the payloads (`codec::CODEC_ID` when written by this code).
    pub codec_id: u16,
    /// Sequence of the first record in the segment.
    pub first_sequence: u64,
    /// Total size of the segment file.
    pub segment_size_bytes: u64,
    /// CRC of the last record of the previous segment (0 before sequence 1).
    pub prev_crc: u32,
    /// Name of the service that wrote the segment, zero-padded; all zero when unnamed (and in
    /// format version 1). Read it with [`SegmentHeader::service_name`].
    service_name: [u8; SERVICE_NAME_BYTES],
    /// Schema version of the service that wrote the segment (0 when unnamed).
    pub service_schema_version: u32,
}

/// Where the hash chain stands: what the next record must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// Sequence the next record must have.
    pub next_sequence: u64,
    /// `prev_crc` the next record must have.
    pub prev_crc: u32,
}

impl Chain {
    /// The chain before the first record of a journal.
    pub const GENESIS: Chain = Chain {
        next_sequence: 1,
        prev_crc: 0,
    };
}

/// A checked entry at some offset; borrows nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A valid record in its place.
    Record {
        sequence: u64,
        crc: u32,
        size_bytes: usize,
    },
    /// A valid end-of-segment marker; the next segment starts at `next_sequence`.
    End { next_sequence: u64 },
}

/// Why an entry could not be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// What an interrupted write can leave: a torn tail if nothing valid follows.
    Soft(Damage),
    /// Valid on its own but wrong here: always corruption.
    Hard(CorruptionReason),
}

/// Whether a segment of `segment_size_bytes` holds a record of `max_payload_bytes`.
pub const fn segment_holds(segment_size_bytes: u64, max_payload_bytes: u32) -> bool {
    let needed =
        SEGMENT_HEADER_SIZE + record_size_bytes(max_payload_bytes as usize) + END_MARKER_SIZE;
    needed as u64 <= segment_size_bytes
}

/// Bytes a record with `payload_bytes` of payload takes, padding included.
#[inline]
pub const fn record_size_bytes(payload_bytes: usize) -> usize {
    (RECORD_HEADER_SIZE + payload_bytes + RECORD_ALIGN_BYTES - 1) & !(RECORD_ALIGN_BYTES - 1)
}

#[inline]
fn put_u16(dst: &mut [u8], at: usize, v: u16) {
    dst[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
fn put_u32(dst: &mut [u8], at: usize, v: u32) {
    dst[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
fn put_u64(dst: &mut [u8], at: usize, v: u64) {
    dst[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
#[inline]
fn get_u16(src: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([src[at], src[at + 1]])
}
#[inline]
fn get_u32(src: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&src[at..at + 4]);
    u32::from_le_bytes(b)
}
#[inline]
fn get_u64(src: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&src[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Encodes `rec` into `dst` (exactly `record_size_bytes(payload)` long) chained to `prev_crc`.
/// Writes every byte except the magic word, which the caller publishes last. Returns the CRC.
#[inline]
pub fn encode_record(dst: &mut [u8], rec: &Record<'_>, prev_crc: u32) -> u32 {
    let payload_bytes = rec.payload.len();
    debug_assert_eq!(dst.len(), record_size_bytes(payload_bytes));
    debug_assert!(u32::try_from(payload_bytes).is_ok());
    put_u32(dst, R_PAYLOAD_BYTES, payload_bytes as u32);
    put_u32(dst, R_PREV_CRC, prev_crc);
    put_u64(dst, R_SEQUENCE, rec.sequence);
    put_u64(dst, R_TIMESTAMP_NS, rec.timestamp_ns);
    put_u64(dst, R_SESSION_ID, rec.session_id);
    put_u64(dst, R_CORRELATION_ID, rec.correlation_id);
    put_u16(dst, R_KIND, rec.kind);
    put_u16(dst, R_VERSION, rec.version);
    put_u32(dst, R_RESERVED, 0);
    let payload_end = RECORD_HEADER_SIZE + payload_bytes;
    dst[RECORD_HEADER_SIZE..payload_end].copy_from_slice(rec.payload);
    dst[payload_end..].fill(0);
    let crc = crc32c::crc32c(&dst[R_CRC_START..]);
    put_u32(dst, R_CRC, crc);
    crc
}

/// Encodes the end-of-segment marker into `dst` (exactly [`END_MARKER_SIZE`] long), magic
/// excluded. `next_sequence` is the first sequence of the next segment.
pub fn encode_end_marker(dst: &mut [u8], next_sequence: u64, prev_crc: u32) {
    let marker = Record {
        sequence: next_sequence,
        timestamp_ns: 0,
        session_id: 0,
        correlation_id: 0,
        kind: 0,
        version: 0,
        payload: &[],
    };
    encode_record(dst, &marker, prev_crc);
}

/// Reads the magic word from the first bytes of an entry.
#[inline]
pub fn magic_of(header: &[u8]) -> u32 {
    get_u32(header, R_MAGIC)
}

/// From the header of a published entry (`magic != 0`) and the bytes available to the end of the
/// segment, the entry's total size. Checks magic and that the entry leaves room for the marker.
#[inline]
pub(crate) fn entry_size_bytes(header: &[u8], available_bytes: usize) -> Result<usize, Damage> {
    debug_assert!(header.len() >= RECORD_HEADER_SIZE);
    let payload_bytes = get_u32(header, R_PAYLOAD_BYTES);
    match magic_of(header) {
        0 => Err(Damage::Unwritten),
        RECORD_MAGIC => {
            let size = record_size_bytes(payload_bytes as usize);
            if size + END_MARKER_SIZE > available_bytes {
                return Err(Damage::BadLength { payload_bytes });
            }
            Ok(size)
        }
        END_MAGIC if payload_bytes != 0 || available_bytes < END_MARKER_SIZE => {
            Err(Damage::BadLength { payload_bytes })
        }
        END_MAGIC => Ok(END_MARKER_SIZE),
        found => Err(Damage::BadMagic { found }),
    }
}

/// Checks an entry's CRC only (no chain): `bytes` is exactly the entry.
pub(crate) fn check_crc(bytes: &[u8]) -> Result<(), Damage> {
    let stored = get_u32(bytes, R_CRC);
    let computed = crc32c::crc32c(&bytes[R_CRC_START..]);
    if stored == computed {
        Ok(())
    } else {
        Err(Damage::BadChecksum { stored, computed })
    }
}

/// The sequence field of an entry.
pub(crate) fn sequence_of(bytes: &[u8]) -> u64 {
    get_u64(bytes, R_SEQUENCE)
}

/// Fully checks one entry (`bytes` is exactly the entry, as sized by [`entry_size_bytes`])
/// against the chain: CRC, reserved fields, sequence, `prev_crc`.
pub(crate) fn check_entry(bytes: &[u8], chain: Chain) -> Result<Entry, Fault> {
    check_crc(bytes).map_err(Fault::Soft)?;
    check_entry_links(bytes, chain)
}

/// Everything [`check_entry`] checks but the CRC: reserved fields, sequence, `prev_crc`. For
/// entries a reader steps over without returning them (seeking), so their payloads are never
/// hashed; the first entry returned is fully checked and must chain to the stored CRC of the
/// one before it.
#[inline]
pub(crate) fn check_entry_links(bytes: &[u8], chain: Chain) -> Result<Entry, Fault> {
    let sequence = get_u64(bytes, R_SEQUENCE);
    let prev_crc = get_u32(bytes, R_PREV_CRC);
    if get_u32(bytes, R_RESERVED) != 0 {
        return Err(Fault::Hard(CorruptionReason::ReservedNotZero));
    }
    if sequence != chain.next_sequence {
        let reason = CorruptionReason::SequenceGap {
            expected: chain.next_sequence,
            found: sequence,
        };
        return Err(Fault::Hard(reason));
    }
    if prev_crc != chain.prev_crc {
        let reason = CorruptionReason::ChainBreak {
            expected: chain.prev_crc,
            found: prev_crc,
        };
        return Err(Fault::Hard(reason));
    }
    if magic_of(bytes) == END_MAGIC {
        if bytes[R_TIMESTAMP_NS..RECORD_HEADER_SIZE]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(Fault::Hard(CorruptionReason::ReservedNotZero));
        }
        return Ok(Entry::End {
            next_sequence: sequence,
        });
    }
    Ok(Entry::Record {
        sequence,
        crc: get_u32(bytes, R_CRC),
        size_bytes: bytes.len(),
    })
}

impl<'a> Record<'a> {
    /// Appends this record to `out` byte for byte as a journal holds it after a record whose
    /// CRC is `prev_crc` (magic word included), and returns its CRC: how a replication leader
    /// ships its journal. [`Record::split_checked`] reads it back.
    pub fn encode_to(&self, out: &mut Vec<u8>, prev_crc: u32) -> u32 {
        let start = out.len();
        out.resize(start + record_size_bytes(self.payload.len()), 0);
        let dst = &mut out[start..];
        let crc = encode_record(dst, self, prev_crc);
        put_u32(dst, R_MAGIC, RECORD_MAGIC);
        crc
    }

    /// Splits the first record off `bytes` (as [`Record::encode_to`] wrote it) and checks it
    /// on its own: magic word, length, CRC, and that it is in the one form a journal writes
    /// (zero reserved field and padding), so journaling it again gives the same bytes.
    /// Returns the record, the CRC it chains to (`prev_crc`), its own CRC and the bytes after
    /// it; the sequence and the chain are the caller's to check.
    pub fn split_checked(bytes: &'a [u8]) -> Result<(Record<'a>, u32, u32, &'a [u8]), Damage> {
        if bytes.len() < RECORD_HEADER_SIZE {
            return Err(Damage::BadLength { payload_bytes: 0 });
        }
        match magic_of(bytes) {
            RECORD_MAGIC => {}
            0 => return Err(Damage::Unwritten),
            found => return Err(Damage::BadMagic { found }),
        }
        let payload_bytes = get_u32(bytes, R_PAYLOAD_BYTES);
        let size = record_size_bytes(payload_bytes as usize);
        if bytes.len() < size {
            return Err(Damage::BadLength { payload_bytes });
        }
        let (entry, rest) = bytes.split_at(size);
        check_crc(entry)?;
        let padding = &entry[RECORD_HEADER_SIZE + payload_bytes as usize..];
        if get_u32(entry, R_RESERVED) != 0 || padding.iter().any(|&b| b != 0) {
            return Err(Damage::NotCanonical);
        }
        let links = (get_u32(entry, R_PREV_CRC), get_u32(entry, R_CRC));
        Ok((decode_record(entry), links.0, links.1, rest))
    }
}

/// Decodes the fields of a record already checked by [`check_entry`].
#[inline]
pub fn decode_record(bytes: &[u8]) -> Record<'_> {
    let (header, rest) = bytes.split_at(RECORD_HEADER_SIZE);
    // A fixed-size header: the field reads below need no bounds checks.
    let header: &[u8; RECORD_HEADER_SIZE] = header.try_into().expect("split at the header size");
    let payload_bytes = get_u32(header, R_PAYLOAD_BYTES) as usize;
    Record {
        sequence: get_u64(header, R_SEQUENCE),
        timestamp_ns: get_u64(header, R_TIMESTAMP_NS),
        session_id: get_u64(header, R_SESSION_ID),
        correlation_id: get_u64(header, R_CORRELATION_ID),
        kind: get_u16(header, R_KIND),
        version: get_u16(header, R_VERSION),
        payload: &rest[..payload_bytes],
    }
}

/// The links of a record whose CRC is already known good (validated by the open-time scan or
/// by checksums ahead): `rest` runs from the record's published magic word to the end of the
/// segment. `Some((crc, size_bytes))` when it is a record that [`entry_size_bytes`] and
/// [`check_entry_links`] accept as the continuation of `chain` (record magic, room for it and
/// an end marker, reserved field zero, sequence and `prev_crc`); `None` for anything else,
/// which the caller then reads the long way, for the exact error. One pass over the fixed
/// header, for replay's per-record loop.
#[inline]
pub(crate) fn link_known_record(rest: &[u8], chain: Chain) -> Option<(u32, usize)> {
    let header: &[u8; RECORD_HEADER_SIZE] = rest.get(..RECORD_HEADER_SIZE)?.try_into().ok()?;
    let size = record_size_bytes(get_u32(header, R_PAYLOAD_BYTES) as usize);
    let linked = magic_of(header) == RECORD_MAGIC
        && size + END_MARKER_SIZE <= rest.len()
        && get_u32(header, R_RESERVED) == 0
        && get_u64(header, R_SEQUENCE) == chain.next_sequence
        && get_u32(header, R_PREV_CRC) == chain.prev_crc;
    linked.then(|| (get_u32(header, R_CRC), size))
}

impl SegmentHeader {
    /// A header for a new segment written by this code.
    pub fn new(first_sequence: u64, segment_size_bytes: u64, prev_crc: u32) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            codec_id: crate::codec::CODEC_ID,
            first_sequence,
            segment_size_bytes,
            prev_crc,
            service_name: [0; SERVICE_NAME_BYTES],
            service_schema_version: 0,
        }
    }

    /// This header naming the service that writes the segment: `name` (at most 20 bytes of
    /// UTF-8, without NUL; longer names are cut at a character boundary, which
    /// `JournalConfig::validate` prevents) and its schema version.
    pub fn with_service(mut self, name: &str, schema_version: u32) -> Self {
        let mut end = name.len().min(SERVICE_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        self.service_name = [0; SERVICE_NAME_BYTES];
        self.service_name[..end].copy_from_slice(&name.as_bytes()[..end]);
        self.service_schema_version = schema_version;
        self
    }

    /// The name of the service that wrote the segment; empty when it named none (format
    /// version 1, or an unnamed processor).
    pub fn service_name(&self) -> &str {
        let len = self
            .service_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(SERVICE_NAME_BYTES);
        std::str::from_utf8(&self.service_name[..len]).unwrap_or("")
    }

    /// Encodes the header, CRC included.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_SIZE] {
        let mut b = [0u8; SEGMENT_HEADER_SIZE];
        put_u64(&mut b, SH_MAGIC, SEGMENT_MAGIC);
        put_u16(&mut b, SH_FORMAT_VERSION, self.format_version);
        put_u16(&mut b, SH_CODEC_ID, self.codec_id);
        put_u32(&mut b, SH_HEADER_SIZE, SEGMENT_HEADER_SIZE as u32);
        put_u64(&mut b, SH_FIRST_SEQUENCE, self.first_sequence);
        put_u64(&mut b, SH_SEGMENT_SIZE, self.segment_size_bytes);
        put_u32(&mut b, SH_PREV_CRC, self.prev_crc);
        b[SH_SERVICE_NAME..SH_SERVICE_SCHEMA].copy_from_slice(&self.service_name);
        put_u32(&mut b, SH_SERVICE_SCHEMA, self.service_schema_version);
        let crc = crc32c::crc32c(&b[..SH_CRC]);
        put_u32(&mut b, SH_CRC, crc);
        b
    }

    /// Decodes and checks magic, CRC, declared header size, and the service fields (zero in
    /// format version 1; a UTF-8 name followed only by zeros otherwise). Version and codec
    /// are returned as found; the caller decides whether it can read them.
    pub fn decode(bytes: &[u8]) -> Result<Self, Damage> {
        if bytes.len() < SEGMENT_HEADER_SIZE
            || get_u64(bytes, SH_MAGIC) != SEGMENT_MAGIC
            || get_u32(bytes, SH_CRC) != crc32c::crc32c(&bytes[..SH_CRC])
            || get_u32(bytes, SH_HEADER_SIZE) as usize != SEGMENT_HEADER_SIZE
        {
            return Err(Damage::BadSegmentHeader);
        }
        let mut service_name = [0u8; SERVICE_NAME_BYTES];
        service_name.copy_from_slice(&bytes[SH_SERVICE_NAME..SH_SERVICE_SCHEMA]);
        let service_schema_version = get_u32(bytes, SH_SERVICE_SCHEMA);
        let malformed = match get_u16(bytes, SH_FORMAT_VERSION) {
            FORMAT_VERSION_UNNAMED => bytes[SH_SERVICE_NAME..SH_CRC].iter().any(|&b| b != 0),
            FORMAT_VERSION => !service_name_is_valid(&service_name),
            _ => false,
        };
        if malformed {
            return Err(Damage::BadSegmentHeader);
        }
        Ok(Self {
            service_name,
            service_schema_version,
            format_version: get_u16(bytes, SH_FORMAT_VERSION),
            codec_id: get_u16(bytes, SH_CODEC_ID),
            first_sequence: get_u64(bytes, SH_FIRST_SEQUENCE),
            segment_size_bytes: get_u64(bytes, SH_SEGMENT_SIZE),
            prev_crc: get_u32(bytes, SH_PREV_CRC),
        })
    }
}

/// A stored service name: UTF-8 without NUL, then zeros only.
fn service_name_is_valid(stored: &[u8; SERVICE_NAME_BYTES]) -> bool {
    let len = stored.iter().position(|&b| b == 0).unwrap_or(stored.len());
    stored[len..].iter().all(|&b| b == 0) && std::str::from_utf8(&stored[..len]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(payload: &[u8]) -> Record<'_> {
        Record {
            sequence: 7,
            timestamp_ns: 11,
            session_id: 13,
            correlation_id: 17,
            kind: 19,
            version: 23,
            payload,
        }
    }

    fn encoded(rec: &Record<'_>, prev_crc: u32) -> (Vec<u8>, u32) {
        let mut buf = vec![0u8; record_size_bytes(rec.payload.len())];
        let crc = encode_record(&mut buf, rec, prev_crc);
        buf[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        (buf, crc)
    }

    #[test]
    fn byte_map_matches_the_document() {
        assert_eq!(
            (R_CRC, R_PAYLOAD_BYTES, R_PREV_CRC, R_SEQUENCE),
            (4, 8, 12, 16)
        );
        assert_eq!(
            (R_TIMESTAMP_NS, R_SESSION_ID, R_CORRELATION_ID),
            (24, 32, 40)
        );
        assert_eq!((R_KIND, R_VERSION, R_RESERVED), (48, 50, 52));
        assert_eq!(
            (SH_FORMAT_VERSION, SH_CODEC_ID, SH_HEADER_SIZE),
            (8, 10, 12)
        );
        assert_eq!(
            (SH_FIRST_SEQUENCE, SH_SEGMENT_SIZE, SH_PREV_CRC),
            (16, 24, 32)
        );
        assert_eq!((SH_SERVICE_NAME, SH_SERVICE_SCHEMA, SH_CRC), (36, 56, 60));
        assert_eq!(&RECORD_MAGIC.to_le_bytes(), b"KREC");
    }

    #[test]
    fn record_round_trip_and_chain_checks() {
        let rec = sample(b"hello");
        let (buf, crc) = encoded(&rec, 99);
        assert_eq!(buf.len(), 64);
        assert_eq!(entry_size_bytes(&buf, 1 << 20), Ok(64));
        let chain = Chain {
            next_sequence: 7,
            prev_crc: 99,
        };
        let want = Entry::Record {
            sequence: 7,
            crc,
            size_bytes: 64,
        };
        assert_eq!(check_entry(&buf, chain), Ok(want));
        assert_eq!(decode_record(&buf), rec);
        let gap = Chain {
            next_sequence: 8,
            prev_crc: 99,
        };
        let reason = CorruptionReason::SequenceGap {
            expected: 8,
            found: 7,
        };
        assert_eq!(check_entry(&buf, gap), Err(Fault::Hard(reason)));
        let other = Chain {
            next_sequence: 7,
            prev_crc: 98,
        };
        let reason = CorruptionReason::ChainBreak {
            expected: 98,
            found: 99,
        };
        assert_eq!(check_entry(&buf, other), Err(Fault::Hard(reason)));
    }

    #[test]
    fn soft_faults() {
        let (mut buf, _) = encoded(&sample(&[1; 40]), 0);
        assert!(matches!(
            entry_size_bytes(&buf, buf.len()),
            Err(Damage::BadLength { .. })
        ));
        buf[60] ^= 1;
        let chain = Chain {
            next_sequence: 7,
            prev_crc: 0,
        };
        assert!(matches!(
            check_entry(&buf, chain),
            Err(Fault::Soft(Damage::BadChecksum { .. }))
        ));
        buf[0] = 0;
        assert!(matches!(
            entry_size_bytes(&buf, 1 << 20),
            Err(Damage::BadMagic { .. })
        ));
        buf[..4].fill(0);
        assert_eq!(entry_size_bytes(&buf, 1 << 20), Err(Damage::Unwritten));
    }

    #[test]
    fn end_marker_round_trip() {
        let mut buf = [0u8; END_MARKER_SIZE];
        encode_end_marker(&mut buf, 42, 5);
        buf[..4].copy_from_slice(&END_MAGIC.to_le_bytes());
        assert_eq!(entry_size_bytes(&buf, END_MARKER_SIZE), Ok(END_MARKER_SIZE));
        let chain = Chain {
            next_sequence: 42,
            prev_crc: 5,
        };
        assert_eq!(
            check_entry(&buf, chain),
            Ok(Entry::End { next_sequence: 42 })
        );
    }

    #[test]
    fn segment_header_round_trip_and_damage() {
        let h = SegmentHeader::new(4097, 1 << 16, 0xdead_beef);
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[20] ^= 0x10;
        assert_eq!(SegmentHeader::decode(&b), Err(Damage::BadSegmentHeader));
        assert_eq!(
            SegmentHeader::decode(&[0u8; 64]),
            Err(Damage::BadSegmentHeader)
        );
    }

    #[test]
    fn shipped_records_split_back_and_refuse_damage() {
        let mut out = Vec::new();
        let first = out.len();
        let crc1 = sample(b"hello").encode_to(&mut out, 99);
        let crc2 = sample(b"").encode_to(&mut out, crc1);
        assert_eq!(&out[first..], {
            let (a, _) = encoded(&sample(b"hello"), 99);
            let (b, _) = encoded(&sample(b""), crc1);
            [a, b].concat()
        });
        let (rec, prev, crc, rest) = Record::split_checked(&out).expect("well formed");
        assert_eq!((rec, prev, crc), (sample(b"hello"), 99, crc1));
        let (rec, prev, crc, rest) = Record::split_checked(rest).expect("well formed");
        assert_eq!((rec, prev, crc, rest.len()), (sample(b""), crc1, crc2, 0));
        let cut = &out[..RECORD_HEADER_SIZE + 2];
        assert_eq!(
            Record::split_checked(cut).map(|r| r.0),
            Err(Damage::BadLength { payload_bytes: 5 })
        );
        let mut flipped = out.clone();
        flipped[R_SEQUENCE] ^= 1;
        assert!(matches!(
            Record::split_checked(&flipped),
            Err(Damage::BadChecksum { .. })
        ));
        // A nonzero reserved field with a matching CRC: valid bytes, but not what a journal
        // writes, so journaling the record again would not reproduce them.
        let mut odd = out.clone();
        put_u32(&mut odd, R_RESERVED, 1);
        let crc = crc32c::crc32c(&odd[R_CRC_START..record_size_bytes(5)]);
        put_u32(&mut odd, R_CRC, crc);
        assert_eq!(
            Record::split_checked(&odd).map(|r| r.0),
            Err(Damage::NotCanonical)
        );
    }

    proptest! {
        #[test]
        fn any_record_round_trips(
            seq in 1u64.., ts: u64, sess: u64, corr: u64, kind: u16, version: u16, prev: u32,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let rec = Record { sequence: seq, timestamp_ns: ts, session_id: sess,
                correlation_id: corr, kind, version, payload: &payload };
            let (buf, crc) = encoded(&rec, prev);
            prop_assert_eq!(buf.len() % RECORD_ALIGN_BYTES, 0);
            let chain = Chain { next_sequence: seq, prev_crc: prev };
            let entry = check_entry(&buf, chain);
            prop_assert_eq!(entry, Ok(Entry::Record { sequence: seq, crc, size_bytes: buf.len() }));
            prop_assert_eq!(decode_record(&buf), rec);
        }

        #[test]
        fn any_flipped_bit_after_the_magic_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..100), bit in 32usize..1280,
        ) {
            let (mut buf, _) = encoded(&sample(&payload), 3);
            let bit = bit % (buf.len() * 8);
            prop_assume!(bit >= 32);
            buf[bit / 8] ^= 1 << (bit % 8);
            let chain = Chain { next_sequence: 7, prev_crc: 3 };
            let size = entry_size_bytes(&buf, 1 << 20);
            let ok = size == Ok(buf.len()) && check_entry(&buf, chain).is_ok();
            prop_assert!(!ok);
        }
    }
}
