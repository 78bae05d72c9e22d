//! Snapshot file format: one header, then the processor's state encoded with `keel::codec`.
//!
//! Byte map (all integers little-endian):
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
//! |     44 |    4 | header_crc       | CRC32C of bytes 0..44                            |
//! |     48 |    … | state            | `state_len` bytes                                |

/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"KEELSNAP";
/// Version of this layout.
pub const FORMAT_VERSION: u16 = 1;

const MAGIC_OFFSET: usize = 0;
const FORMAT_OFFSET: usize = MAGIC_OFFSET + 8;
const CODEC_OFFSET: usize = FORMAT_OFFSET + 2;
const SCHEMA_OFFSET: usize = CODEC_OFFSET + 2;
const SEQUENCE_OFFSET: usize = SCHEMA_OFFSET + 4;
const HASH_OFFSET: usize = SEQUENCE_OFFSET + 8;
const LEN_OFFSET: usize = HASH_OFFSET + 8;
const STATE_CRC_OFFSET: usize = LEN_OFFSET + 8;
const HEADER_CRC_OFFSET: usize = STATE_CRC_OFFSET + 4;
/// Size of the header; the state follows.
pub const HEADER_BYTES: usize = HEADER_CRC_OFFSET + 4;

// The header is 8-byte aligned so the state starts aligned (cheap to map and read).
const _: () = assert!(HEADER_BYTES == 48 && HEADER_BYTES % 8 == 0);

/// The decoded header of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
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
}

/// Encodes `header` (pure).
pub fn encode_header(header: &SnapshotHeader) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    b[MAGIC_OFFSET..FORMAT_OFFSET].copy_from_slice(&MAGIC);
    b[FORMAT_OFFSET..CODEC_OFFSET].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[CODEC_OFFSET..SCHEMA_OFFSET].copy_from_slice(&header.codec_id.to_le_bytes());
    b[SCHEMA_OFFSET..SEQUENCE_OFFSET].copy_from_slice(&header.schema_version.to_le_bytes());
    b[SEQUENCE_OFFSET..HASH_OFFSET].copy_from_slice(&header.sequence.to_le_bytes());
    b[HASH_OFFSET..LEN_OFFSET].copy_from_slice(&header.state_hash.to_le_bytes());
    b[LEN_OFFSET..STATE_CRC_OFFSET].copy_from_slice(&header.state_len.to_le_bytes());
    b[STATE_CRC_OFFSET..HEADER_CRC_OFFSET].copy_from_slice(&header.state_crc.to_le_bytes());
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

/// Decodes and checks a snapshot header (magic, header CRC, format version, codec) from the
/// first [`HEADER_BYTES`] of `b` (pure). The state is not looked at.
pub fn decode_header(b: &[u8]) -> Result<SnapshotHeader, String> {
    if b.len() < HEADER_BYTES {
        return Err(format!(
            "file of {} bytes is shorter than the header",
            b.len()
        ));
    }
    let b = &b[..HEADER_BYTES];
    if b[..8] != MAGIC {
        return Err("bad magic".into());
    }
    if crc32c::crc32c(&b[..HEADER_CRC_OFFSET]) != u32_at(b, HEADER_CRC_OFFSET) {
        return Err("header checksum mismatch".into());
    }
    let format = u16_at(b, FORMAT_OFFSET);
    if format != FORMAT_VERSION {
        return Err(format!(
            "format version {format}, this build reads {FORMAT_VERSION}"
        ));
    }
    let header = SnapshotHeader {
        codec_id: u16_at(b, CODEC_OFFSET),
        schema_version: u32_at(b, SCHEMA_OFFSET),
        sequence: u64_at(b, SEQUENCE_OFFSET),
        state_hash: u64_at(b, HASH_OFFSET),
        state_len: u64_at(b, LEN_OFFSET),
        state_crc: u32_at(b, STATE_CRC_OFFSET),
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
/// and CRC. Returns the header and the state bytes, or the reason it is unusable.
pub fn decode(file: &[u8]) -> Result<(SnapshotHeader, &[u8]), String> {
    let header = decode_header(file)?;
    let state = &file[HEADER_BYTES..];
    if state.len() as u64 != header.state_len {
        return Err(format!(
            "state is {} bytes, header says {}",
            state.len(),
            header.state_len
        ));
    }
    if crc32c::crc32c(state) != header.state_crc {
        return Err("state checksum mismatch".into());
    }
    Ok((header, state))
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
            (h.sequence, h.schema_version, state),
            (42, 3, &b"some state bytes"[..])
        );
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let file = sample();
        for byte in 0..file.len() {
            for bit in 0..8 {
                let mut bad = file.clone();
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
