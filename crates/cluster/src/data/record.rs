//! Journal records on the wire, byte for byte as keel journals them (docs/journal_format.md,
//! "Record"): encoding a record read from the journal back into its journaled bytes, and
//! checking a received one (magic, length, CRC) before it goes near the engine.
//!
//! keel's own encoder is private to its journal; this mirror is pinned to the document's
//! byte map below, and `tests/replication.rs` compares whole journals byte for byte.

use std::mem::size_of;

use keel::journal::Record;

/// Magic word of a record: `b"KREC"`.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"KREC");
const ALIGN_BYTES: usize = 8;

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
/// Size of a record header; the payload follows.
pub const HEADER_BYTES: usize = R_RESERVED + size_of::<u32>();
/// The CRC covers the record from here on.
const R_CRC_START: usize = R_PAYLOAD_BYTES;

// Why: keel's journal format (version 2) says 56; a change there is a change here.
const _: () = assert!(HEADER_BYTES == 56 && R_KIND == 48 && R_RESERVED == 52);
const _: () = assert!(HEADER_BYTES == keel::journal::record_size_bytes(0));

/// A received record's checked identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Its sequence.
    pub sequence: u64,
    /// Its CRC: the chain value after it.
    pub crc: u32,
    /// The CRC it says precedes it.
    pub prev_crc: u32,
    /// Its size in bytes, padding included.
    pub size_bytes: usize,
}

/// Why received bytes are not a well-formed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than a header, or than the header's payload length says.
    #[error("record truncated: {needed} bytes needed, {found} left")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        found: usize,
    },
    /// Not a record's magic word.
    #[error("bad record magic {0:#010x}")]
    BadMagic(u32),
    /// The stored CRC is not the bytes' CRC.
    #[error("bad record checksum: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// Reserved bytes not zero.
    #[error("record reserved field not zero")]
    ReservedNotZero,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// Bytes a record with `payload_bytes` of payload takes, padding included.
pub fn size_bytes(payload_bytes: usize) -> usize {
    (HEADER_BYTES + payload_bytes + ALIGN_BYTES - 1) & !(ALIGN_BYTES - 1)
}

/// Appends `record` to `out` as the journal holds it after a record whose CRC is `prev_crc`;
/// returns its CRC.
pub fn encode(out: &mut Vec<u8>, record: &Record<'_>, prev_crc: u32) -> u32 {
    let start = out.len();
    let size = size_bytes(record.payload.len());
    out.resize(start + size, 0);
    let b = &mut out[start..];
    b[R_MAGIC..R_CRC].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    let payload_bytes = u32::try_from(record.payload.len()).expect("payloads fit a u32");
    b[R_PAYLOAD_BYTES..R_PREV_CRC].copy_from_slice(&payload_bytes.to_le_bytes());
    b[R_PREV_CRC..R_SEQUENCE].copy_from_slice(&prev_crc.to_le_bytes());
    b[R_SEQUENCE..R_TIMESTAMP_NS].copy_from_slice(&record.sequence.to_le_bytes());
    b[R_TIMESTAMP_NS..R_SESSION_ID].copy_from_slice(&record.timestamp_ns.to_le_bytes());
    b[R_SESSION_ID..R_CORRELATION_ID].copy_from_slice(&record.session_id.to_le_bytes());
    b[R_CORRELATION_ID..R_KIND].copy_from_slice(&record.correlation_id.to_le_bytes());
    b[R_KIND..R_VERSION].copy_from_slice(&record.kind.to_le_bytes());
    b[R_VERSION..R_RESERVED].copy_from_slice(&record.version.to_le_bytes());
    b[HEADER_BYTES..HEADER_BYTES + record.payload.len()].copy_from_slice(record.payload);
    let crc = crc32c::crc32c(&b[R_CRC_START..]);
    b[R_CRC..R_PAYLOAD_BYTES].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Splits the first record off `bytes` and checks it on its own (magic, length, reserved
/// field, CRC): the chain is the caller's to check.
pub fn split_checked(bytes: &[u8]) -> Result<(Checked, &[u8], &[u8]), RecordError> {
    if bytes.len() < HEADER_BYTES {
        return Err(RecordError::Truncated {
            needed: HEADER_BYTES,
            found: bytes.len(),
        });
    }
    let magic = u32_at(bytes, R_MAGIC);
    if magic != RECORD_MAGIC {
        return Err(RecordError::BadMagic(magic));
    }
    let size = size_bytes(u32_at(bytes, R_PAYLOAD_BYTES) as usize);
    if bytes.len() < size {
        return Err(RecordError::Truncated {
            needed: size,
            found: bytes.len(),
        });
    }
    let (record, rest) = bytes.split_at(size);
    if u32_at(record, R_RESERVED) != 0 {
        return Err(RecordError::ReservedNotZero);
    }
    let stored = u32_at(record, R_CRC);
    let computed = crc32c::crc32c(&record[R_CRC_START..]);
    if stored != computed {
        return Err(RecordError::BadChecksum { stored, computed });
    }
    let checked = Checked {
        sequence: u64_at(record, R_SEQUENCE),
        crc: stored,
        prev_crc: u32_at(record, R_PREV_CRC),
        size_bytes: size,
    };
    Ok((checked, record, rest))
}

/// The fields of a record checked by [`split_checked`].
pub fn decode(record: &[u8]) -> Record<'_> {
    let payload_bytes = u32_at(record, R_PAYLOAD_BYTES) as usize;
    Record {
        sequence: u64_at(record, R_SEQUENCE),
        timestamp_ns: u64_at(record, R_TIMESTAMP_NS),
        session_id: u64_at(record, R_SESSION_ID),
        correlation_id: u64_at(record, R_CORRELATION_ID),
        kind: u16_at(record, R_KIND),
        version: u16_at(record, R_VERSION),
        payload: &record[HEADER_BYTES..HEADER_BYTES + payload_bytes],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn round_trip_and_damage() {
        let mut out = Vec::new();
        let crc = encode(&mut out, &sample(b"hello"), 99);
        assert_eq!(out.len(), 64);
        let (checked, record, rest) = split_checked(&out).expect("well formed");
        assert_eq!(
            checked,
            Checked {
                sequence: 7,
                crc,
                prev_crc: 99,
                size_bytes: 64
            }
        );
        assert!(rest.is_empty());
        assert_eq!(decode(record), sample(b"hello"));
        let mut bad = out.clone();
        bad[60] ^= 1;
        assert!(matches!(
            split_checked(&bad),
            Err(RecordError::BadChecksum { .. })
        ));
        bad[0] = 0;
        assert!(matches!(split_checked(&bad), Err(RecordError::BadMagic(_))));
        assert!(matches!(
            split_checked(&out[..60]),
            Err(RecordError::Truncated { .. })
        ));
    }
}
