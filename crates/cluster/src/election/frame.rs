//! The election's RPC frames on a `b'E'` connection.
//!
//! Byte map (little-endian): after the channel byte `b'E'` that opens the connection, the
//! caller sends request frames `[u32 len][u8 kind][body]` and reads one response frame
//! `[u32 len][u8 status][body]` for each, in order; `len` counts the kind (status) byte and the
//! body. Kinds: 1 vote, 2 append entries, 3 full snapshot; the body is the openraft request,
//! bincode (standard config) via serde. Status 0: the body is openraft's response; status 1:
//! the body is a UTF-8 message (the peer's openraft refused, e.g. it is shutting down).

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Channel byte of the election's connections.
pub const CHANNEL_RAFT: u8 = b'E';
/// Channel byte of the data plane's connections.
pub const CHANNEL_DATA: u8 = b'D';
const _: () = assert!(CHANNEL_RAFT != CHANNEL_DATA);
/// Channel byte of the election's connections in builds before one leader per term (their
/// RPC bodies do not decode here): refused, with a warning that names them.
pub const CHANNEL_RAFT_BEFORE_ONE_LEADER_PER_TERM: u8 = b'R';
const _: () = assert!(CHANNEL_RAFT_BEFORE_ONE_LEADER_PER_TERM != CHANNEL_RAFT);

pub(crate) const KIND_VOTE: u8 = 1;
pub(crate) const KIND_APPEND: u8 = 2;
pub(crate) const KIND_SNAPSHOT: u8 = 3;
pub(crate) const STATUS_OK: u8 = 0;
pub(crate) const STATUS_ERR: u8 = 1;
/// Largest frame accepted (`len`), a bound against a confused peer: openraft's entries here
/// are blank and membership entries, a snapshot is two log ids.
pub(crate) const MAX_FRAME_BYTES: usize = 1 << 20;
const _: () = assert!(MAX_FRAME_BYTES <= u32::MAX as usize);
const LEN_BYTES: usize = 4;
const _: () = assert!(LEN_BYTES == std::mem::size_of::<u32>());

/// What went wrong on an election connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetworkError {
    #[error("connect to node {target} at {addr}: {source}")]
    Connect {
        target: u64,
        addr: String,
        source: io::Error,
    },
    #[error("node {target}: {source}")]
    Io { target: u64, source: io::Error },
    #[error("node {target} did not answer within {timeout_ms} ms")]
    Timeout { target: u64, timeout_ms: u64 },
    #[error("node {target} refused: {message}")]
    Remote { target: u64, message: String },
    #[error("frame of {len} bytes, the limit is {MAX_FRAME_BYTES}")]
    FrameTooLarge { len: usize },
    #[error("codec: {0}")]
    Codec(String),
}

/// Writes one frame: `[u32 len][u8 tag][body]`.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    tag: u8,
    body: &[u8],
) -> io::Result<()> {
    let len = body.len() + 1;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            NetworkError::FrameTooLarge { len },
        ));
    }
    let mut buf = Vec::with_capacity(LEN_BYTES + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.push(tag);
    buf.extend_from_slice(body);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Reads one frame; returns its tag and body.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; LEN_BYTES];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            NetworkError::FrameTooLarge { len },
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    let tag = buf.remove(0);
    Ok((tag, buf))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, NetworkError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| NetworkError::Codec(e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, NetworkError> {
    let config = bincode::config::standard().with_limit::<MAX_FRAME_BYTES>();
    match bincode::serde::decode_from_slice(bytes, config) {
        Ok((value, _)) => Ok(value),
        Err(e) => Err(NetworkError::Codec(e.to_string())),
    }
}
