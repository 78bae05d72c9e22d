//! The data plane's frames: `[u32 len][u8 type][body]`, little-endian, `len` counting the type
//! byte and the body. Pure encode and decode, every length checked; the byte maps are in
//! docs/REPLICATION.md, "Data plane", and the offsets below follow them.

use std::mem::size_of;

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = size_of::<u32>();
/// Bytes before a frame's body: the length and the type.
pub const FRAME_HEADER_BYTES: usize = LEN_BYTES + size_of::<u8>();
/// Longest client address a HELLO carries.
pub const MAX_ADDRESS_BYTES: usize = 255;

/// Frame type bytes.
mod kind {
    pub const HELLO: u8 = 1;
    pub const POSITION: u8 = 2;
    pub const PROBE: u8 = 3;
    pub const CHAIN: u8 = 4;
    pub const TRUNCATE: u8 = 5;
    pub const RECORDS: u8 = 6;
    pub const COMMIT: u8 = 7;
    pub const ACK: u8 = 8;
    pub const REJECT: u8 = 9;
    pub const PULL: u8 = 10;
    pub const PULL_END: u8 = 11;
    pub const SNAPSHOT_BEGIN: u8 = 12;
    pub const SNAPSHOT_CHUNK: u8 = 13;
    pub const SNAPSHOT_END: u8 = 14;
}

/// Fixed body sizes (docs/REPLICATION.md byte maps). HELLO and RECORDS are variable: these are
/// their fixed parts.
const HELLO_FIXED_BYTES: usize = 3 * size_of::<u64>() + size_of::<u16>();
const POSITION_BYTES: usize = 3 * size_of::<u64>() + size_of::<u32>();
const SEQUENCE_BYTES: usize = size_of::<u64>();
const CHAIN_BYTES: usize = size_of::<u64>() + size_of::<u8>() + size_of::<u64>();
const RECORDS_FIXED_BYTES: usize = 2 * size_of::<u64>() + size_of::<u32>();
const COMMIT_BYTES: usize = 2 * size_of::<u64>();
const ACK_BYTES: usize = 3 * size_of::<u64>();
const SNAPSHOT_BEGIN_BYTES: usize = 5 * size_of::<u64>() + size_of::<u32>();
const SNAPSHOT_CHUNK_FIXED_BYTES: usize = size_of::<u64>();
const SNAPSHOT_END_BYTES: usize = size_of::<u64>() + size_of::<u32>();
/// Most snapshot bytes one SNAPSHOT_CHUNK carries.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

// Why: docs/REPLICATION.md states these sizes; a change here is a wire format change.
const _: () = assert!(HELLO_FIXED_BYTES == 26 && POSITION_BYTES == 28 && CHAIN_BYTES == 17);
const _: () = assert!(RECORDS_FIXED_BYTES == 20 && COMMIT_BYTES == 16 && ACK_BYTES == 24);
const _: () = assert!(
    SNAPSHOT_BEGIN_BYTES == 44 && SNAPSHOT_CHUNK_FIXED_BYTES == 8 && SNAPSHOT_END_BYTES == 12
);
// Why: a whole chunk frame stays below the frame limit.
const _: () = assert!(
    FRAME_HEADER_BYTES + SNAPSHOT_CHUNK_FIXED_BYTES + SNAPSHOT_CHUNK_BYTES
        < super::wire::MAX_FRAME_BYTES
);
// Why: the address length travels as a u16 and stays short.
const _: () = assert!(MAX_ADDRESS_BYTES <= u16::MAX as usize);

/// What a follower's journal holds at a probed sequence (CHAIN's status byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainStatus {
    /// It holds the sequence; the value is the chain (CRC32C of that record, 0 at sequence 0).
    Holds(u32),
    /// It ends before the sequence; the value is its last sequence.
    BeyondEnd(u64),
    /// It starts after the sequence; the value is its first sequence.
    BeforeStart(u64),
}

/// One decoded frame, borrowing the buffer it was read into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Leader → follower, first frame of a connection: who leads, in which term.
    Hello {
        /// The leader's term.
        term: u64,
        /// The leader's node id.
        leader_id: u64,
        /// Sequence of the leader's term record (0 while it is promoting): records before it
        /// are earlier terms' history, which the follower may apply as soon as it holds them.
        term_start: u64,
        /// The leader's client address (for redirects); may be empty.
        client_address: &'a str,
    },
    /// Follower → leader: where its journal ends.
    Position {
        /// Term of the last term record in its journal (0: none).
        last_term: u64,
        /// Last sequence in its journal.
        last_sequence: u64,
        /// Chain value at `last_sequence`.
        chain: u32,
        /// Last sequence durable in its journal.
        durable: u64,
    },
    /// Leader → follower: what does your journal hold at this sequence?
    Probe {
        /// The probed sequence.
        sequence: u64,
    },
    /// Follower → leader: the answer to a PROBE.
    Chain {
        /// The probed sequence.
        sequence: u64,
        /// What the journal holds there.
        status: ChainStatus,
    },
    /// Leader → follower: remove every record after this sequence.
    Truncate {
        /// The last sequence kept.
        after_sequence: u64,
    },
    /// Leader → follower (or source → promoting leader): journal records, exactly as journaled.
    Records {
        /// The sender's term.
        term: u64,
        /// The leader's commit (0 from a promotion source).
        commit: u64,
        /// Number of records in `records`.
        count: u32,
        /// The records' bytes, back to back (each self-delimiting).
        records: &'a [u8],
    },
    /// Leader → follower: the commit moved, or nothing to ship (heartbeat).
    Commit {
        /// The leader's term.
        term: u64,
        /// The leader's commit.
        commit: u64,
    },
    /// Follower → leader: how far its journal is durable and its processor applied.
    Ack {
        /// The term the follower follows.
        term: u64,
        /// Its last durable sequence.
        durable: u64,
        /// Its last applied sequence.
        applied: u64,
    },
    /// Follower → leader: your term is stale; mine is this.
    Reject {
        /// The follower's fence term.
        fence_term: u64,
    },
    /// Promoting leader → source: ship me your records from this sequence on.
    Pull {
        /// First sequence wanted.
        from_sequence: u64,
    },
    /// Source → promoting leader: everything up to this sequence was sent.
    PullEnd {
        /// The source's last sequence.
        last_sequence: u64,
    },
    /// Leader → follower: a snapshot file follows (the follower needs records the leader's
    /// journal no longer holds); SNAPSHOT_CHUNKs, then SNAPSHOT_END, then RECORDS from
    /// `sequence + 1`.
    SnapshotBegin {
        /// The leader's term.
        term: u64,
        /// The snapshot's sequence (the last message it covers).
        sequence: u64,
        /// Bytes of the snapshot file.
        total_bytes: u64,
        /// Term of the last term record at or before `sequence` (0: none).
        history_term: u64,
        /// Sequence of that term record (0: none).
        history_term_start: u64,
        /// The journal's chain value at `sequence`.
        chain: u32,
    },
    /// Leader → follower: bytes of the snapshot file, in order.
    SnapshotChunk {
        /// Offset of `bytes` in the file.
        offset: u64,
        /// At most [`SNAPSHOT_CHUNK_BYTES`].
        bytes: &'a [u8],
    },
    /// Leader → follower: the whole file was sent.
    SnapshotEnd {
        /// The snapshot's sequence (as in SNAPSHOT_BEGIN).
        sequence: u64,
        /// CRC32C of the whole file.
        crc: u32,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than the frame needs.
    #[error("frame too short: {needed} bytes needed, {found} found")]
    Short {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        found: usize,
    },
    /// The frame's length exceeds the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Declared length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A fixed-size frame of the wrong size.
    #[error("frame type {kind}: body of {found} bytes, {expected} expected")]
    BadLength {
        /// Frame type.
        kind: u8,
        /// Expected body size.
        expected: usize,
        /// Found body size.
        found: usize,
    },
    /// Unknown frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// Unknown CHAIN status byte.
    #[error("unknown chain status {0}")]
    BadStatus(u8),
    /// The HELLO's client address is not UTF-8 or too long.
    #[error("bad client address in HELLO")]
    BadAddress,
}

/// Little-endian field reader over a body whose length was checked.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("N bytes")
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// The whole length of the frame starting `bytes` (prefix included), once its prefix is there.
/// Checks it against `max_frame_bytes`.
pub fn frame_len(bytes: &[u8], max_frame_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = bytes.get(..LEN_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Err(FrameError::Short {
            needed: 1,
            found: 0,
        });
    }
    if len + LEN_BYTES > max_frame_bytes {
        return Err(FrameError::TooLong {
            len: len + LEN_BYTES,
            max: max_frame_bytes,
        });
    }
    Ok(Some(len + LEN_BYTES))
}

/// Decodes one whole frame (`bytes` is exactly the frame, length prefix included).
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Short {
            needed: FRAME_HEADER_BYTES,
            found: bytes.len(),
        });
    }
    let declared = u32::from_le_bytes(bytes[..LEN_BYTES].try_into().expect("4 bytes")) as usize;
    if declared + LEN_BYTES != bytes.len() {
        return Err(FrameError::Short {
            needed: declared + LEN_BYTES,
            found: bytes.len(),
        });
    }
    let kind = bytes[LEN_BYTES];
    decode_body(kind, &bytes[FRAME_HEADER_BYTES..])
}

fn fixed(kind: u8, body: &[u8], expected: usize) -> Result<Fields<'_>, FrameError> {
    if body.len() == expected {
        Ok(Fields(body))
    } else {
        Err(FrameError::BadLength {
            kind,
            expected,
            found: body.len(),
        })
    }
}

fn at_least(kind: u8, body: &[u8], expected: usize) -> Result<Fields<'_>, FrameError> {
    if body.len() >= expected {
        Ok(Fields(body))
    } else {
        Err(FrameError::BadLength {
            kind,
            expected,
            found: body.len(),
        })
    }
}

fn decode_body(k: u8, body: &[u8]) -> Result<Frame<'_>, FrameError> {
    Ok(match k {
        kind::HELLO => decode_hello(body)?,
        kind::POSITION => {
            let mut f = fixed(k, body, POSITION_BYTES)?;
            Frame::Position {
                last_term: f.u64(),
                last_sequence: f.u64(),
                chain: f.u32(),
                durable: f.u64(),
            }
        }
        kind::PROBE => Frame::Probe {
            sequence: fixed(k, body, SEQUENCE_BYTES)?.u64(),
        },
        kind::CHAIN => decode_chain(body)?,
        kind::TRUNCATE => Frame::Truncate {
            after_sequence: fixed(k, body, SEQUENCE_BYTES)?.u64(),
        },
        kind::RECORDS => {
            let mut f = at_least(k, body, RECORDS_FIXED_BYTES)?;
            let (term, commit, count) = (f.u64(), f.u64(), f.u32());
            Frame::Records {
                term,
                commit,
                count,
                records: f.rest(),
            }
        }
        kind::COMMIT => {
            let mut f = fixed(k, body, COMMIT_BYTES)?;
            Frame::Commit {
                term: f.u64(),
                commit: f.u64(),
            }
        }
        kind::ACK => {
            let mut f = fixed(k, body, ACK_BYTES)?;
            Frame::Ack {
                term: f.u64(),
                durable: f.u64(),
                applied: f.u64(),
            }
        }
        kind::REJECT => Frame::Reject {
            fence_term: fixed(k, body, SEQUENCE_BYTES)?.u64(),
        },
        kind::PULL => Frame::Pull {
            from_sequence: fixed(k, body, SEQUENCE_BYTES)?.u64(),
        },
        kind::PULL_END => Frame::PullEnd {
            last_sequence: fixed(k, body, SEQUENCE_BYTES)?.u64(),
        },
        kind::SNAPSHOT_BEGIN | kind::SNAPSHOT_CHUNK | kind::SNAPSHOT_END => {
            decode_snapshot(k, body)?
        }
        other => return Err(FrameError::UnknownType(other)),
    })
}

fn decode_hello(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut f = at_least(kind::HELLO, body, HELLO_FIXED_BYTES)?;
    let (term, leader_id, term_start) = (f.u64(), f.u64(), f.u64());
    let len = f.u16() as usize;
    let rest = f.rest();
    if rest.len() != len {
        return Err(FrameError::BadLength {
            kind: kind::HELLO,
            expected: HELLO_FIXED_BYTES + len,
            found: body.len(),
        });
    }
    if len > MAX_ADDRESS_BYTES {
        return Err(FrameError::BadAddress);
    }
    let client_address = std::str::from_utf8(rest).map_err(|_| FrameError::BadAddress)?;
    Ok(Frame::Hello {
        term,
        leader_id,
        term_start,
        client_address,
    })
}

fn decode_snapshot(k: u8, body: &[u8]) -> Result<Frame<'_>, FrameError> {
    Ok(match k {
        kind::SNAPSHOT_BEGIN => {
            let mut f = fixed(k, body, SNAPSHOT_BEGIN_BYTES)?;
            Frame::SnapshotBegin {
                term: f.u64(),
                sequence: f.u64(),
                total_bytes: f.u64(),
                history_term: f.u64(),
                history_term_start: f.u64(),
                chain: f.u32(),
            }
        }
        kind::SNAPSHOT_CHUNK => decode_chunk(body)?,
        kind::SNAPSHOT_END => {
            let mut f = fixed(k, body, SNAPSHOT_END_BYTES)?;
            Frame::SnapshotEnd {
                sequence: f.u64(),
                crc: f.u32(),
            }
        }
        _ => return Err(FrameError::UnknownType(k)),
    })
}

fn decode_chunk(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut f = at_least(kind::SNAPSHOT_CHUNK, body, SNAPSHOT_CHUNK_FIXED_BYTES)?;
    let offset = f.u64();
    let bytes = f.rest();
    if bytes.len() > SNAPSHOT_CHUNK_BYTES {
        return Err(FrameError::BadLength {
            kind: kind::SNAPSHOT_CHUNK,
            expected: SNAPSHOT_CHUNK_FIXED_BYTES + SNAPSHOT_CHUNK_BYTES,
            found: body.len(),
        });
    }
    Ok(Frame::SnapshotChunk { offset, bytes })
}

fn decode_chain(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut f = fixed(kind::CHAIN, body, CHAIN_BYTES)?;
    let (sequence, status, value) = (f.u64(), f.u8(), f.u64());
    let status = match status {
        0 => ChainStatus::Holds(u32::try_from(value).map_err(|_| FrameError::BadStatus(0))?),
        1 => ChainStatus::BeyondEnd(value),
        2 => ChainStatus::BeforeStart(value),
        other => return Err(FrameError::BadStatus(other)),
    };
    Ok(Frame::Chain { sequence, status })
}

/// Appends `frame`, encoded, to `out` (which it does not clear). For RECORDS, `records` are
/// copied; to build a RECORDS frame in place use [`begin_records`] and [`finish_records`].
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let start = begin(out, type_of(frame));
    match *frame {
        Frame::Hello {
            term,
            leader_id,
            term_start,
            client_address,
        } => {
            let address = &client_address.as_bytes()[..client_address.len().min(MAX_ADDRESS_BYTES)];
            put(out, &[term, leader_id, term_start]);
            out.extend_from_slice(&(address.len() as u16).to_le_bytes());
            out.extend_from_slice(address);
        }
        Frame::Position {
            last_term,
            last_sequence,
            chain,
            durable,
        } => {
            put(out, &[last_term, last_sequence]);
            out.extend_from_slice(&chain.to_le_bytes());
            put(out, &[durable]);
        }
        Frame::Probe { sequence } => put(out, &[sequence]),
        Frame::Chain { sequence, status } => {
            let (byte, value) = match status {
                ChainStatus::Holds(chain) => (0u8, u64::from(chain)),
                ChainStatus::BeyondEnd(last) => (1, last),
                ChainStatus::BeforeStart(first) => (2, first),
            };
            put(out, &[sequence]);
            out.push(byte);
            put(out, &[value]);
        }
        Frame::Truncate { after_sequence } => put(out, &[after_sequence]),
        Frame::Records {
            term,
            commit,
            count,
            records,
        } => {
            put(out, &[term, commit]);
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(records);
        }
        Frame::Commit { term, commit } => put(out, &[term, commit]),
        Frame::Ack {
            term,
            durable,
            applied,
        } => put(out, &[term, durable, applied]),
        Frame::Reject { fence_term } => put(out, &[fence_term]),
        Frame::Pull { from_sequence } => put(out, &[from_sequence]),
        Frame::PullEnd { last_sequence } => put(out, &[last_sequence]),
        Frame::SnapshotBegin { .. } | Frame::SnapshotChunk { .. } | Frame::SnapshotEnd { .. } => {
            encode_snapshot(frame, out)
        }
    }
    finish(out, start);
}

/// The bodies of the snapshot frames.
fn encode_snapshot(frame: &Frame<'_>, out: &mut Vec<u8>) {
    match *frame {
        Frame::SnapshotBegin {
            term,
            sequence,
            total_bytes,
            history_term,
            history_term_start,
            chain,
        } => {
            put(
                out,
                &[
                    term,
                    sequence,
                    total_bytes,
                    history_term,
                    history_term_start,
                ],
            );
            out.extend_from_slice(&chain.to_le_bytes());
        }
        Frame::SnapshotChunk { offset, bytes } => {
            put(out, &[offset]);
            out.extend_from_slice(bytes);
        }
        Frame::SnapshotEnd { sequence, crc } => {
            put(out, &[sequence]);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        _ => unreachable!("only snapshot frames"),
    }
}

fn type_of(frame: &Frame<'_>) -> u8 {
    match frame {
        Frame::Hello { .. } => kind::HELLO,
        Frame::Position { .. } => kind::POSITION,
        Frame::Probe { .. } => kind::PROBE,
        Frame::Chain { .. } => kind::CHAIN,
        Frame::Truncate { .. } => kind::TRUNCATE,
        Frame::Records { .. } => kind::RECORDS,
        Frame::Commit { .. } => kind::COMMIT,
        Frame::Ack { .. } => kind::ACK,
        Frame::Reject { .. } => kind::REJECT,
        Frame::Pull { .. } => kind::PULL,
        Frame::PullEnd { .. } => kind::PULL_END,
        Frame::SnapshotBegin { .. } => kind::SNAPSHOT_BEGIN,
        Frame::SnapshotChunk { .. } => kind::SNAPSHOT_CHUNK,
        Frame::SnapshotEnd { .. } => kind::SNAPSHOT_END,
    }
}

fn put(out: &mut Vec<u8>, values: &[u64]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Starts a frame of type `k` at the end of `out`; returns where it starts.
fn begin(out: &mut Vec<u8>, k: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    out.push(k);
    start
}

/// Writes the length prefix of the frame that starts at `start` and ends at `out`'s end.
fn finish(out: &mut [u8], start: usize) {
    let len = u32::try_from(out.len() - start - LEN_BYTES).expect("frames stay under 4 GiB");
    out[start..start + LEN_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// Starts a RECORDS frame in `out` (cleared first); append the records' bytes after it, then
/// call [`finish_records`] with their count.
pub fn begin_records(out: &mut Vec<u8>, term: u64, commit: u64) {
    out.clear();
    begin(out, kind::RECORDS);
    put(out, &[term, commit]);
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Bytes of a RECORDS frame begun with [`begin_records`] before its first record.
pub const RECORDS_PREFIX_BYTES: usize = FRAME_HEADER_BYTES + RECORDS_FIXED_BYTES;

/// Completes a RECORDS frame begun with [`begin_records`]: its count and length.
pub fn finish_records(out: &mut [u8], count: u32) {
    let at = FRAME_HEADER_BYTES + 2 * size_of::<u64>();
    out[at..at + size_of::<u32>()].copy_from_slice(&count.to_le_bytes());
    finish(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame<'_>) {
        let mut out = Vec::new();
        encode(&frame, &mut out);
        assert_eq!(frame_len(&out, 1 << 20), Ok(Some(out.len())));
        assert_eq!(decode(&out), Ok(frame));
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "{frame:?} cut at {cut}");
        }
    }

    #[test]
    fn every_frame_round_trips_and_refuses_truncation() {
        let records = [7u8; 24];
        for frame in [
            Frame::Hello {
                term: 3,
                leader_id: 2,
                term_start: 40,
                client_address: "127.0.0.1:7000",
            },
            Frame::Position {
                last_term: 2,
                last_sequence: 99,
                chain: 0xdead_beef,
                durable: 98,
            },
            Frame::Probe { sequence: 5 },
            Frame::Chain {
                sequence: 5,
                status: ChainStatus::Holds(9),
            },
            Frame::Chain {
                sequence: 5,
                status: ChainStatus::BeyondEnd(4),
            },
            Frame::Chain {
                sequence: 5,
                status: ChainStatus::BeforeStart(6),
            },
            Frame::Truncate { after_sequence: 4 },
            Frame::Records {
                term: 3,
                commit: 1,
                count: 1,
                records: &records,
            },
            Frame::Commit { term: 3, commit: 9 },
            Frame::Ack {
                term: 3,
                durable: 9,
                applied: 8,
            },
            Frame::Reject { fence_term: 4 },
            Frame::Pull { from_sequence: 10 },
            Frame::PullEnd { last_sequence: 12 },
            Frame::SnapshotBegin {
                term: 3,
                sequence: 4_000,
                total_bytes: 3 << 20,
                history_term: 2,
                history_term_start: 1_000,
                chain: 0xfeed_f00d,
            },
            Frame::SnapshotChunk {
                offset: 1 << 20,
                bytes: &records,
            },
            Frame::SnapshotChunk {
                offset: 0,
                bytes: &[],
            },
            Frame::SnapshotEnd {
                sequence: 4_000,
                crc: 0x1234_5678,
            },
        ] {
            round_trip(frame);
        }
    }

    #[test]
    fn byte_map_of_ack_matches_the_document() {
        let mut out = Vec::new();
        let ack = Frame::Ack {
            term: 1,
            durable: 2,
            applied: 3,
        };
        encode(&ack, &mut out);
        assert_eq!(&out[..5], &[25, 0, 0, 0, kind::ACK]);
        assert_eq!(&out[5..13], &1u64.to_le_bytes());
        assert_eq!(&out[13..21], &2u64.to_le_bytes());
        assert_eq!(&out[21..29], &3u64.to_le_bytes());
    }

    #[test]
    fn byte_map_of_the_snapshot_frames_matches_the_document() {
        let mut out = Vec::new();
        let begin = Frame::SnapshotBegin {
            term: 1,
            sequence: 2,
            total_bytes: 3,
            history_term: 4,
            history_term_start: 5,
            chain: 6,
        };
        encode(&begin, &mut out);
        assert_eq!(&out[..5], &[45, 0, 0, 0, kind::SNAPSHOT_BEGIN]);
        for (i, v) in [1u64, 2, 3, 4, 5].iter().enumerate() {
            assert_eq!(&out[5 + 8 * i..13 + 8 * i], &v.to_le_bytes());
        }
        assert_eq!(&out[45..49], &6u32.to_le_bytes());
        out.clear();
        encode(
            &Frame::SnapshotEnd {
                sequence: 7,
                crc: 8,
            },
            &mut out,
        );
        assert_eq!(&out[..5], &[13, 0, 0, 0, kind::SNAPSHOT_END]);
        assert_eq!(&out[5..13], &7u64.to_le_bytes());
        assert_eq!(&out[13..17], &8u32.to_le_bytes());
        out.clear();
        encode(
            &Frame::SnapshotChunk {
                offset: 9,
                bytes: b"ab",
            },
            &mut out,
        );
        assert_eq!(&out[..5], &[11, 0, 0, 0, kind::SNAPSHOT_CHUNK]);
        assert_eq!(&out[5..13], &9u64.to_le_bytes());
        assert_eq!(&out[13..], b"ab");
    }

    #[test]
    fn a_chunk_over_its_limit_is_refused() {
        let big = vec![0u8; SNAPSHOT_CHUNK_BYTES + 1];
        let mut out = Vec::new();
        encode(
            &Frame::SnapshotChunk {
                offset: 0,
                bytes: &big,
            },
            &mut out,
        );
        assert!(matches!(decode(&out), Err(FrameError::BadLength { .. })));
    }

    #[test]
    fn records_built_in_place_equal_records_encoded() {
        let records = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut built = Vec::new();
        begin_records(&mut built, 4, 5);
        assert_eq!(built.len(), RECORDS_PREFIX_BYTES);
        built.extend_from_slice(&records);
        finish_records(&mut built, 1);
        let mut encoded = Vec::new();
        let frame = Frame::Records {
            term: 4,
            commit: 5,
            count: 1,
            records: &records,
        };
        encode(&frame, &mut encoded);
        assert_eq!(built, encoded);
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        assert_eq!(decode(&[1, 0, 0, 0, 42]), Err(FrameError::UnknownType(42)));
        assert!(matches!(
            decode(&[2, 0, 0, 0, kind::ACK, 0]),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            frame_len(&[0xff, 0xff, 0xff, 0x7f], 1 << 20),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(frame_len(&[1, 0], 1 << 20), Ok(None));
    }
}
