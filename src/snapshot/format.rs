//! Snapshot file format: one header, then the processor's state encoded with `keel::codec`.
//!
//! Byte map of format version 2 (all integers little-endian):
//!
//! | offset | size | field            | meaning                                          |
//! |-------:|-----:|------------------|--------------------------------------------------|
//! |      0 |    8 | magic            | `b"KEELSNAP"`                                    |
//! |      8 |    2 | format_version   | this layout, [`FORMAT_VERSION`]                  |
//! |     10 |    2 | codec_id         | [`crate::codec::CODEC_ID`] used for the state    |
//! |     12 |    4 | schema_version   | the application's state schema version           |
//! |     16 |    8 | sequence         | last message applied before the capture          |
//! |     24 |    8 | state_hash       | `Processor::state_hash()` at capture             |
//! |     32 |    8 | state_len        | bytes of state after the header                  |
//! |     40 |    4 | state_crc        | CRC32C of the state bytes                        |
//! |     44 |    4 | journal_chain    | the journal's chain value at `sequence`          |
//! |     48 |    4 | dedup_len        | bytes of the exactly-once section after the state |
//! |     52 |    4 | header_crc       | CRC32C of bytes 0..52                            |
//! |     56 |    … | state            | `state_len` bytes                                |
//! |      … |    … | exactly-once     | `dedup_len` bytes (its own CRC32C at its end)    |
//!
//! The exactly-once section is the engine's deduplication table (its byte map is in
//! docs/SNAPSHOTS.md); `dedup_len` 0 means none. Format version 2 is the same with `dedup_len`
//! reserved (zero): it is still read, with an empty table.
//!
//! `journal_chain` binds the snapshot to the history it was taken from: it is the CRC32C of the
//! journal record `sequence` (the value the next record's `prev_crc` repeats), or the chain seed
//! (0) for sequence 0. Recovery uses a snapshot only when the journal holds `sequence` with
//! that value (`docs/fault_model.md`, "Snapshots are bound to their journal").
//!
//! Format version 1 (written before the binding existed) is the same up to offset 44, where its
//! `header_crc` (of bytes 0..44) ends a 48-byte header; it is still read, with no chain value
//! (`SnapshotHeader::journal_chain` is `None`), and recovery never restores it.

/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"KEELSNAP";
/// Version of the layout this build writes.
pub(crate) const FORMAT_VERSION: u16 = 3;
/// The version before the exactly-once section (`dedup_len` reserved, zero): read.
const FORMAT_VERSION_NO_DEDUP: u16 = 2;
/// The version before the journal binding: read, never restored.
pub const FORMAT_VERSION_UNBOUND: u16 = 1;

const MAGIC_OFFSET: usize = 0;
const FORMAT_OFFSET: usize = MAGIC_OFFSET + 8;
const CODEC_OFFSET: usize = FORMAT_OFFSET + 2;
const SCHEMA_OFFSET: usize = CODEC_OFFSET + 2;
const SEQUENCE_OFFSET: usize = SCHEMA_OFFSET + 4;
const HASH_OFFSET: usize = SEQUENCE_OFFSET + 8;
const LEN_OFFSET: usize = HASH_OFFSET + 8;
const STATE_CRC_OFFSET: usize = LEN_OFFSET + 8;
const CHAIN_OFFSET: usize = STATE_CRC_OFFSET + 4;
const DEDUP_LEN_OFFSET: usize = CHAIN_OFFSET + 4;
const HEADER_CRC_OFFSET: usize = DEDUP_LEN_OFFSET + 4;
/// Size of the header; the state follows.
pub const HEADER_BYTES: usize = HEADER_CRC_OFFSET + 4;

/// Format 1 ended with its header CRC where format 2 keeps the chain value.
const V1_HEADER_CRC_OFFSET: usize = CHAIN_OFFSET;
/// Size of a format 1 header.
pub const V1_HEADER_BYTES: usize = V1_HEADER_CRC_OFFSET + 4;

// Both headers are 8-byte aligned so the state starts aligned (cheap to map and read).
const _: () = assert!(HEADER_BYTES == 56 && HEADER_BYTES.is_multiple_of(8));
const _: () = assert!(V1_HEADER_BYTES == 48 && V1_HEADER_BYTES.is_multiple_of(8));

/// The decoded header of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Layout version: 3 for the layout written now, 2 (no exactly-once section) or 1 (no
    /// journal chain value) for an older file.
    pub format_version: u16,
    /// Codec of the state bytes.
    pub codec_id: u16,
    /// Application state schema version.
    pub schema_version: u32,
    /// Last applied sequence.
    pub sequence: u64,
    /// State hash at capture.
    pub state_hash: u64,
    /// Length of the state bytes.
    pub state_len: u64,
    /// CRC32C of the state bytes.
    pub state_crc: u32,
    /// The journal's chain value at `sequence` (`None`: a format 1 file, which has none).
    pub journal_chain: Option<u32>,
    /// Bytes of the exactly-once section after the state (0: none; always 0 before format 3).
    pub dedup_len: u32,
}

impl SnapshotHeader {
    /// Bytes before the state in a file of this header's format.
    pub fn header_bytes(&self) -> usize {
        if self.format_version == FORMAT_VERSION_UNBOUND {
            V1_HEADER_BYTES
        } else {
            HEADER_BYTES
        }
    }
}

/// Encodes `header` in the current format (pure). Its `format_version` is ignored, and its
/// `journal_chain` must be set: a snapshot is never written without its binding.
pub fn encode_header(header: &SnapshotHeader) -> [u8; HEADER_BYTES] {
    let chain = header
        .journal_chain
        .expect("a snapshot is written with the journal's chain value");
    let mut b = [0u8; HEADER_BYTES];
    b[MAGIC_OFFSET..FORMAT_OFFSET].copy_from_slice(&MAGIC);
    b[FORMAT_OFFSET..CODEC_OFFSET].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[CODEC_OFFSET..SCHEMA_OFFSET].copy_from_slice(&header.codec_id.to_le_bytes());
    b[SCHEMA_OFFSET..SEQUENCE_OFFSET].copy_from_slice(&header.schema_version.to_le_bytes());
    b[SEQUENCE_OFFSET..HASH_OFFSET].copy_from_slice(&header.sequence.to_le_bytes());
    b[HASH_OFFSET..LEN_OFFSET].copy_from_slice(&header.state_hash.to_le_bytes());
    b[LEN_OFFSET..STATE_CRC_OFFSET].copy_from_slice(&header.state_len.to_le_bytes());
    b[STATE_CRC_OFFSET..CHAIN_OFFSET].copy_from_slice(&header.state_crc.to_le_bytes());
    b[CHAIN_OFFSET..DEDUP_LEN_OFFSET].copy_from_slice(&chain.to_le_bytes());
    b[DEDUP_LEN_OFFSET..HEADER_CRC_OFFSET].copy_from_slice(&header.dedup_len.to_le_bytes());
    let crc = crc32c::crc32c(&b[..HEADER_CRC_OFFSET]);
    b[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes and checks a snapshot header (magic, format version, header CRC, codec) from the
/// start of `b` (pure): format 2, or format 1 with no chain value. The state is not looked at.
pub fn decode_header(b: &[u8]) -> Result<SnapshotHeader, String> {
    if b.len() < V1_HEADER_BYTES {
        return Err(format!(
            "file of {} bytes is shorter than the header",
            b.len()
        ));
    }
    if b[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let format = u16_at(b, FORMAT_OFFSET);
    let (len, crc_at) = match format {
        FORMAT_VERSION | FORMAT_VERSION_NO_DEDUP => (HEADER_BYTES, HEADER_CRC_OFFSET),
        FORMAT_VERSION_UNBOUND => (V1_HEADER_BYTES, V1_HEADER_CRC_OFFSET),
        other => {
            return Err(format!(
                "format version {other}, this build reads {FORMAT_VERSION_UNBOUND} to \
                 {FORMAT_VERSION}"
            ))
        }
    };
    if b.len() < len {
        return Err(format!(
            "file of {} bytes is shorter than the header",
            b.len()
        ));
    }
    if crc32c::crc32c(&b[..crc_at]) != u32_at(b, crc_at) {
        return Err("header checksum mismatch".into());
    }
    let bound = format != FORMAT_VERSION_UNBOUND;
    let dedup_len = if format == FORMAT_VERSION {
        u32_at(b, DEDUP_LEN_OFFSET)
    } else {
        0
    };
    if format == FORMAT_VERSION_NO_DEDUP && u32_at(b, DEDUP_LEN_OFFSET) != 0 {
        return Err("reserved header bytes are not zero".into());
    }
    let header = SnapshotHeader {
        format_version: format,
        codec_id: u16_at(b, CODEC_OFFSET),
        schema_version: u32_at(b, SCHEMA_OFFSET),
        sequence: u64_at(b, SEQUENCE_OFFSET),
        state_hash: u64_at(b, HASH_OFFSET),
        state_len: u64_at(b, LEN_OFFSET),
        state_crc: u32_at(b, STATE_CRC_OFFSET),
        journal_chain: bound.then(|| u32_at(b, CHAIN_OFFSET)),
        dedup_len,
    };
    if header.codec_id != crate::codec::CODEC_ID {
        return Err(format!(
            "codec {}, this build reads {}",
            header.codec_id,
            crate::codec::CODEC_ID
        ));
    }
    Ok(header)
}

/// Validates and decodes a whole snapshot file (pure): header checks, then the state length
/// and CRC. Returns the header and the state bytes, or the reason it is unusable. The
/// exactly-once section after the state ([`dedup_section`]) is checked against the CRC32C
/// that ends it.
pub fn decode(file: &[u8]) -> Result<(SnapshotHeader, &[u8]), String> {
    let header = decode_header(file)?;
    let body = &file[header.header_bytes()..];
    let expected = header.state_len.checked_add(u64::from(header.dedup_len));
    if Some(body.len() as u64) != expected {
        return Err(format!(
            "state and exactly-once section are {} bytes, header says {} and {}",
            body.len(),
            header.state_len,
            header.dedup_len
        ));
    }
    let state = &body[..header.state_len as usize];
    if crc32c::crc32c(state) != header.state_crc {
        return Err("state checksum mismatch".into());
    }
    let dedup = dedup_section(&header, file);
    if !dedup.is_empty() {
        let crc_at = dedup
            .len()
            .checked_sub(4)
            .ok_or("exactly-once section too short")?;
        if crc32c::crc32c(&dedup[..crc_at]) != u32_at(dedup, crc_at) {
            return Err("exactly-once section checksum mismatch".into());
        }
    }
    Ok((header, state))
}

/// The exactly-once section of a whole snapshot file `decode` accepted (empty: none).
pub(crate) fn dedup_section<'a>(header: &SnapshotHeader, file: &'a [u8]) -> &'a [u8] {
    let start = header.header_bytes() + header.state_len as usize;
    &file[start..start + header.dedup_len as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let state = b"some state bytes".to_vec();
        let header = SnapshotHeader {
            codec_id: crate::codec::CODEC_ID,
            schema_version: 3,
            sequence: 42,
            state_hash: 0xdead_beef,
            state_len: state.len() as u64,
            state_crc: crc32c::crc32c(&state),
            format_version: FORMAT_VERSION,
            journal_chain: Some(0x1234_5678),
            dedup_len: 0,
        };
        let mut file = encode_header(&header).to_vec();
        file.extend_from_slice(&state);
        file
    }

    #[test]
    fn round_trip() {
        let file = sample();
        let (h, state) = decode(&file).unwrap();
        assert_eq!(
            (h.sequence, h.schema_version, h.journal_chain, state),
            (42, 3, Some(0x1234_5678), &b"some state bytes"[..])
        );
    }

    /// A format 1 file: the same fields up to the state CRC, then its header CRC.
    fn sample_v1() -> Vec<u8> {
        let current = sample();
        let mut file = current[..V1_HEADER_CRC_OFFSET].to_vec();
        file[FORMAT_OFFSET..CODEC_OFFSET].copy_from_slice(&FORMAT_VERSION_UNBOUND.to_le_bytes());
        let crc = crc32c::crc32c(&file);
        file.extend_from_slice(&crc.to_le_bytes());
        file.extend_from_slice(&current[HEADER_BYTES..]);
        file
    }

    #[test]
    fn a_format_1_file_reads_without_a_chain_value() {
        let file = sample_v1();
        let (h, state) = decode(&file).unwrap();
        assert_eq!(
            (
                h.format_version,
                h.sequence,
                h.journal_chain,
                h.header_bytes()
            ),
            (FORMAT_VERSION_UNBOUND, 42, None, V1_HEADER_BYTES)
        );
        assert_eq!(state, b"some state bytes");
    }

    /// A format 3 file with an exactly-once section (5 bytes and its CRC32C) after the state.
    fn sample_with_dedup() -> Vec<u8> {
        let state = b"some state bytes".to_vec();
        let mut dedup = b"table".to_vec();
        let crc = crc32c::crc32c(&dedup);
        dedup.extend_from_slice(&crc.to_le_bytes());
        let header = SnapshotHeader {
            codec_id: crate::codec::CODEC_ID,
            schema_version: 3,
            sequence: 42,
            state_hash: 1,
            state_len: state.len() as u64,
            state_crc: crc32c::crc32c(&state),
            format_version: FORMAT_VERSION,
            journal_chain: Some(7),
            dedup_len: dedup.len() as u32,
        };
        let mut file = encode_header(&header).to_vec();
        file.extend_from_slice(&state);
        file.extend_from_slice(&dedup);
        file
    }

    /// A format 2 file: format 3 with the word at offset 48 reserved (zero).
    fn sample_v2() -> Vec<u8> {
        let mut file = sample();
        file[FORMAT_OFFSET..CODEC_OFFSET].copy_from_slice(&FORMAT_VERSION_NO_DEDUP.to_le_bytes());
        let crc = crc32c::crc32c(&file[..HEADER_CRC_OFFSET]);
        file[HEADER_CRC_OFFSET..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        file
    }

    #[test]
    fn the_exactly_once_section_follows_the_state_and_format_2_has_none() {
        let file = sample_with_dedup();
        let (h, state) = decode(&file).unwrap();
        assert_eq!(state, b"some state bytes");
        assert_eq!(&dedup_section(&h, &file)[..5], b"table");
        let file = sample_v2();
        let (h, state) = decode(&file).unwrap();
        assert_eq!(
            (h.format_version, h.dedup_len),
            (FORMAT_VERSION_NO_DEDUP, 0)
        );
        assert_eq!(state, b"some state bytes");
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        for file in [sample(), sample_v1(), sample_v2(), sample_with_dedup()] {
            refuses_every_flip_and_truncation(&file);
        }
    }

    fn refuses_every_flip_and_truncation(file: &[u8]) {
        for byte in 0..file.len() {
            for bit in 0..8 {
                let mut bad = file.to_vec();
                bad[byte] ^= 1 << bit;
                assert!(decode(&bad).is_err(), "flip at {byte}:{bit} accepted");
            }
        }
        for len in 0..file.len() {
            assert!(
                decode(&file[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
    }
}
