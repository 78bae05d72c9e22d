//! The wire format of `docs/PROTOCOL.md`: pure encoders and decoders over byte slices. No I/O,
//! no allocation; every decoder checks sizes exactly, so the server and the client validate the
//! same way in both directions.
//!
//! Byte maps: each offset constant is the previous one plus the size of the field before it.

use crate::engine::{ResponseHeader, Status};

/// Bytes of the length prefix of every frame.
pub const LEN_BYTES: usize = 4;
/// Bytes of the frame type that follows the length prefix.
pub(crate) const TYPE_BYTES: usize = 1;
/// The protocol version this build speaks (and the newest it accepts; version 1 clients are
/// served too, without exactly-once).
pub const PROTOCOL_VERSION: u16 = 2;
/// The first protocol version whose `HELLO` carries a client id.
pub(crate) const CLIENT_ID_VERSION: u16 = 2;
/// First four bytes of every `HELLO` body.
pub(crate) const MAGIC: [u8; 4] = *b"KEEL";
/// Longest shared-secret token a `HELLO` may carry.
pub(crate) const MAX_TOKEN_BYTES: usize = 256;
/// Longest text an `ERROR` frame carries (longer texts are cut).
pub const MAX_ERROR_TEXT_BYTES: usize = 200;

/// Frame type: client hello.
pub(crate) const HELLO: u8 = 0x01;
/// Frame type: client request.
pub(crate) const REQUEST: u8 = 0x02;
/// Frame type: client ping.
pub(crate) const PING: u8 = 0x03;
/// Frame type: server welcome.
pub(crate) const WELCOME: u8 = 0x81;
/// Frame type: server response.
pub(crate) const RESPONSE: u8 = 0x82;
/// Frame type: server pong.
pub(crate) const PONG: u8 = 0x83;
/// Frame type: server error.
pub(crate) const ERROR: u8 = 0x84;

// HELLO body: magic[4] | protocol_version u16 | token_len u16 | token.
const HELLO_MAGIC: usize = 0;
const HELLO_VERSION: usize = HELLO_MAGIC + MAGIC.len();
const HELLO_TOKEN_LEN: usize = HELLO_VERSION + 2;
/// Fixed part of a `HELLO` body.
pub(crate) const HELLO_HEADER_BYTES: usize = HELLO_TOKEN_LEN + 2;
/// Bytes of the client id that ends a version 2 `HELLO` body, after the token.
pub(crate) const HELLO_CLIENT_ID_BYTES: usize = 8;

// REQUEST body: correlation_id u64 | kind u16 | version u16 | payload.
const REQ_CORRELATION: usize = 0;
const REQ_KIND: usize = REQ_CORRELATION + 8;
const REQ_VERSION: usize = REQ_KIND + 2;
/// Fixed part of a `REQUEST` body.
pub(crate) const REQUEST_HEADER_BYTES: usize = REQ_VERSION + 2;

// WELCOME body.
const WEL_VERSION: usize = 0;
const WEL_CODEC: usize = WEL_VERSION + 2;
const WEL_SESSION: usize = WEL_CODEC + 2;
const WEL_MAX_FRAME: usize = WEL_SESSION + 8;
const WEL_MAX_PAYLOAD: usize = WEL_MAX_FRAME + 4;
const WEL_MAX_RESPONSE: usize = WEL_MAX_PAYLOAD + 4;
const WEL_OUTPUT_LIMIT: usize = WEL_MAX_RESPONSE + 4;
const WEL_IDLE: usize = WEL_OUTPUT_LIMIT + 4;
/// Size of a `WELCOME` body.
pub(crate) const WELCOME_BYTES: usize = WEL_IDLE + 4;

// RESPONSE body: correlation u64 | sequence u64 | kind u16 | status u8 | reserved u8 |
// reason u32 | payload.
const RSP_CORRELATION: usize = 0;
const RSP_SEQUENCE: usize = RSP_CORRELATION + 8;
const RSP_KIND: usize = RSP_SEQUENCE + 8;
const RSP_STATUS: usize = RSP_KIND + 2;
const RSP_RESERVED: usize = RSP_STATUS + 1;
const RSP_REASON: usize = RSP_RESERVED + 1;
/// Fixed part of a `RESPONSE` body.
pub(crate) const RESPONSE_HEADER_BYTES: usize = RSP_REASON + 4;

// ERROR body: code u16 | fatal u8 | reserved u8 | correlation u64 | text.
const ERR_CODE: usize = 0;
const ERR_FATAL: usize = ERR_CODE + 2;
const ERR_RESERVED: usize = ERR_FATAL + 1;
const ERR_CORRELATION: usize = ERR_RESERVED + 1;
/// Fixed part of an `ERROR` body.
pub(crate) const ERROR_HEADER_BYTES: usize = ERR_CORRELATION + 8;

/// Size of a `PING` / `PONG` body (the nonce).
pub(crate) const NONCE_BYTES: usize = 8;

/// Bytes a request frame adds around its payload (type + request header).
pub(crate) const REQUEST_OVERHEAD_BYTES: usize = TYPE_BYTES + REQUEST_HEADER_BYTES;
/// Bytes a response frame adds around its payload, length prefix included.
pub(crate) const RESPONSE_OVERHEAD_BYTES: usize = LEN_BYTES + TYPE_BYTES + RESPONSE_HEADER_BYTES;
/// Largest encoded `ERROR` frame, length prefix included.
pub(crate) const MAX_ERROR_FRAME_BYTES: usize =
    LEN_BYTES + TYPE_BYTES + ERROR_HEADER_BYTES + MAX_ERROR_TEXT_BYTES;
/// The smallest `max_frame_bytes` a server may use: any valid `HELLO` must fit.
pub(crate) const MIN_MAX_FRAME_BYTES: usize =
    TYPE_BYTES + HELLO_HEADER_BYTES + MAX_TOKEN_BYTES + HELLO_CLIENT_ID_BYTES;

// The sizes docs/PROTOCOL.md states; a change here is a protocol change.
const _: () = assert!(HELLO_HEADER_BYTES == 8);
const _: () = assert!(REQUEST_HEADER_BYTES == 12);
const _: () = assert!(WELCOME_BYTES == 32);
const _: () = assert!(RESPONSE_HEADER_BYTES == 24);
const _: () = assert!(ERROR_HEADER_BYTES == 12);
const _: () = assert!(MIN_MAX_FRAME_BYTES == 273 && HELLO_CLIENT_ID_BYTES == 8);

/// An error code carried by an `ERROR` frame. A newtype, not an enum, so a client can hold
/// codes from a newer server: codes below 32 are fatal, codes from 32 are request-level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// A frame's length exceeds `max_frame_bytes`.
    pub const FRAME_TOO_LARGE: ErrorCode = ErrorCode(1);
    /// Empty frame, unknown or wrong-direction type, wrong body size, second `HELLO`.
    pub const MALFORMED: ErrorCode = ErrorCode(2);
    /// A request or ping before `HELLO`.
    pub const NOT_HANDSHAKEN: ErrorCode = ErrorCode(3);
    /// Bad magic or unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL: ErrorCode = ErrorCode(4);
    /// Wrong or missing token.
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(5);
    /// Every session slot is in use.
    pub const TOO_MANY_CONNECTIONS: ErrorCode = ErrorCode(6);
    /// No `HELLO` within the handshake timeout.
    pub const HANDSHAKE_TIMEOUT: ErrorCode = ErrorCode(7);
    /// No traffic within the idle timeout.
    pub const IDLE_TIMEOUT: ErrorCode = ErrorCode(8);
    /// A started frame was not completed within the read timeout.
    pub const READ_TIMEOUT: ErrorCode = ErrorCode(9);
    /// The client did not read its responses; its output limit was exceeded.
    pub const SLOW_CONSUMER: ErrorCode = ErrorCode(10);
    /// The server is shutting down or its engine stopped.
    pub const SERVER_STOPPING: ErrorCode = ErrorCode(11);
    /// No message of this kind.
    pub const UNKNOWN_KIND: ErrorCode = ErrorCode(32);
    /// The kind exists but this version is not decoded.
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(33);
    /// The payload does not decode.
    pub const UNDECODABLE: ErrorCode = ErrorCode(34);
    /// The payload exceeds the engine's message limit.
    pub const PAYLOAD_TOO_LARGE: ErrorCode = ErrorCode(35);
    /// A snapshot request while another one is still being written.
    pub const SNAPSHOT_BUSY: ErrorCode = ErrorCode(36);
    /// The requested snapshot could not be written (the server's log says why).
    pub const SNAPSHOT_FAILED: ErrorCode = ErrorCode(37);
    /// An exactly-once request id that was applied before, whose reply the server no longer
    /// holds: not applied again (docs/PROTOCOL.md, "Exactly once").
    pub const ALREADY_ANSWERED: ErrorCode = ErrorCode(38);
    /// This server is not the cluster's leader and does not take requests; the text names the
    /// leader's client address when known (`leader=HOST:PORT`).
    pub const NOT_LEADER: ErrorCode = ErrorCode(39);
    /// Another connection declared this connection's client id (the client reconnected):
    /// this older one is closed.
    pub const REPLACED: ErrorCode = ErrorCode(12);

    /// Whether the server closes the connection after sending it.
    pub fn is_fatal(self) -> bool {
        self.0 < 32
    }

    /// The name docs/PROTOCOL.md uses, or `"UNKNOWN"`.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 13] = [
            "UNKNOWN",
            "FRAME_TOO_LARGE",
            "MALFORMED",
            "NOT_HANDSHAKEN",
            "UNSUPPORTED_PROTOCOL",
            "UNAUTHORIZED",
            "TOO_MANY_CONNECTIONS",
            "HANDSHAKE_TIMEOUT",
            "IDLE_TIMEOUT",
            "READ_TIMEOUT",
            "SLOW_CONSUMER",
            "SERVER_STOPPING",
            "REPLACED",
        ];
        const REQUEST_NAMES: [&str; 8] = [
            "UNKNOWN_KIND",
            "UNSUPPORTED_VERSION",
            "UNDECODABLE",
            "PAYLOAD_TOO_LARGE",
            "SNAPSHOT_BUSY",
            "SNAPSHOT_FAILED",
            "ALREADY_ANSWERED",
            "NOT_LEADER",
        ];
        let n = usize::from(self.0);
        match n {
            1..=12 => NAMES[n],
            32..=39 => REQUEST_NAMES[n - 32],
            _ => NAMES[0],
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix exceeds the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// Limit in force.
        max: usize,
    },
    /// The length prefix is 0 (no type byte).
    #[error("empty frame")]
    Empty,
    /// Unknown frame type.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// The body size does not fit the frame type.
    #[error("frame type {frame_type:#04x} with a body of {len} bytes")]
    BadSize {
        /// Frame type.
        frame_type: u8,
        /// Body size.
        len: usize,
    },
    /// A `HELLO` without the `KEEL` magic.
    #[error("bad magic in HELLO")]
    BadMagic,
    /// A `RESPONSE` with a status byte other than 0, 1, 2.
    #[error("bad response status {0}")]
    BadStatus(u8),
}

impl FrameError {
    /// The error code a server answers this with.
    pub fn code(self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::FRAME_TOO_LARGE,
            FrameError::BadMagic => ErrorCode::UNSUPPORTED_PROTOCOL,
            _ => ErrorCode::MALFORMED,
        }
    }
}

/// `HELLO`: protocol version, token, and (from version 2) the client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Protocol version the client speaks.
    pub protocol_version: u16,
    /// Shared secret (may be empty).
    pub token: &'a [u8],
    /// The client's stable id for exactly-once (version 2; 0: none, and always 0 in a version
    /// 1 `HELLO`, which has no such field). Below 2^63.
    pub client_id: u64,
}

impl Hello<'_> {
    /// The server's handshake rules: protocol 1 or 2, a client id below 2^63, and `token`
    /// (when the server has one) given, compared in time independent of where it differs.
    /// The error is the fatal `ERROR`'s code and text.
    pub fn check(&self, token: Option<&[u8]>) -> Result<(), (ErrorCode, &'static str)> {
        if !(1..=PROTOCOL_VERSION).contains(&self.protocol_version) {
            let text = "this server speaks protocols 1 and 2";
            return Err((ErrorCode::UNSUPPORTED_PROTOCOL, text));
        }
        if self.client_id & crate::engine::CLIENT_SESSION_FLAG != 0 {
            return Err((ErrorCode::MALFORMED, "client id must be below 2^63"));
        }
        if token.is_some_and(|token| !same_secret(token, self.token)) {
            return Err((ErrorCode::UNAUTHORIZED, "token rejected"));
        }
        Ok(())
    }
}

/// Equal secrets, compared in time independent of where they differ.
fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    let diff = expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff == 0 && expected.len() == given.len()
}

/// `WELCOME`: the session and the limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Welcome {
    /// Protocol version the server speaks on this session.
    pub protocol_version: u16,
    /// Payload codec (`keel::codec::CODEC_ID`).
    pub codec_id: u16,
    /// This connection's session id.
    pub session_id: u64,
    /// Largest frame length the server accepts.
    pub max_frame_bytes: u32,
    /// Largest request payload.
    pub max_payload_bytes: u32,
    /// Largest response payload the server sends.
    pub max_response_bytes: u32,
    /// Output buffered for the session before it is disconnected.
    pub output_limit_bytes: u32,
    /// Idle timeout in milliseconds (0: none).
    pub idle_timeout_ms: u32,
}

/// `REQUEST`: one message for the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Chosen by the client.
    pub correlation_id: u64,
    /// Application message kind.
    pub kind: u16,
    /// Version of the kind's encoding.
    pub version: u16,
    /// Encoded message.
    pub payload: &'a [u8],
}

/// `RESPONSE`: the engine's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFrame<'a> {
    /// Of the request answered.
    pub correlation_id: u64,
    /// Journal position of the request.
    pub sequence: u64,
    /// Application response kind.
    pub kind: u16,
    /// Accepted, rejected or failed.
    pub status: Status,
    /// Reason code when rejected.
    pub reason: u32,
    /// Response payload.
    pub payload: &'a [u8],
}

/// `ERROR`: a refused request or the end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFrame<'a> {
    /// What went wrong.
    pub code: ErrorCode,
    /// Whether the server closes the connection after it.
    pub fatal: bool,
    /// The refused request's id, 0 for connection errors.
    pub correlation_id: u64,
    /// Explanation (UTF-8).
    pub text: &'a [u8],
}

/// Any decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Client hello.
    Hello(Hello<'a>),
    /// Client request.
    Request(Request<'a>),
    /// Client ping with its nonce.
    Ping(u64),
    /// Server welcome.
    Welcome(Welcome),
    /// Server response.
    Response(ResponseFrame<'a>),
    /// Server pong with the ping's nonce.
    Pong(u64),
    /// Server error.
    Error(ErrorFrame<'a>),
}

#[inline]
fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
#[inline]
fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}
#[inline]
fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
#[inline]
fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Writes the length prefix and type of a frame whose body is `body_len` bytes into `buf`,
/// returning the body slice and the total frame size, or `None` if `buf` is too small.
#[inline]
fn begin(buf: &mut [u8], frame_type: u8, body_len: usize) -> Option<(&mut [u8], usize)> {
    let total = LEN_BYTES + TYPE_BYTES + body_len;
    if buf.len() < total {
        return None;
    }
    put_u32(buf, 0, (TYPE_BYTES + body_len) as u32);
    buf[LEN_BYTES] = frame_type;
    Some((&mut buf[LEN_BYTES + TYPE_BYTES..total], total))
}

/// Encodes a `HELLO`: from protocol version 2 with the client id after the token (a version
/// 1 `HELLO` has none, and `client_id` is ignored). `None` if `buf` is too small or the token
/// longer than `MAX_TOKEN_BYTES`.
pub fn encode_hello(buf: &mut [u8], hello: &Hello<'_>) -> Option<usize> {
    let token = hello.token;
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let id_bytes = hello_client_id_bytes(hello.protocol_version);
    let (body, total) = begin(buf, HELLO, HELLO_HEADER_BYTES + token.len() + id_bytes)?;
    body[HELLO_MAGIC..HELLO_VERSION].copy_from_slice(&MAGIC);
    put_u16(body, HELLO_VERSION, hello.protocol_version);
    put_u16(body, HELLO_TOKEN_LEN, token.len() as u16);
    let id_at = HELLO_HEADER_BYTES + token.len();
    body[HELLO_HEADER_BYTES..id_at].copy_from_slice(token);
    if id_bytes != 0 {
        put_u64(body, id_at, hello.client_id);
    }
    Some(total)
}

/// Bytes of client id a `HELLO` of `protocol_version` ends with.
fn hello_client_id_bytes(protocol_version: u16) -> usize {
    if protocol_version >= CLIENT_ID_VERSION {
        HELLO_CLIENT_ID_BYTES
    } else {
        0
    }
}

/// Encodes a `REQUEST`. `None` if `buf` is too small.
pub fn encode_request(buf: &mut [u8], request: &Request<'_>) -> Option<usize> {
    let (body, total) = begin(buf, REQUEST, REQUEST_HEADER_BYTES + request.payload.len())?;
    put_u64(body, REQ_CORRELATION, request.correlation_id);
    put_u16(body, REQ_KIND, request.kind);
    put_u16(body, REQ_VERSION, request.version);
    body[REQUEST_HEADER_BYTES..].copy_from_slice(request.payload);
    Some(total)
}

/// Encodes a `PING` (`pong == false`) or `PONG` carrying `nonce`.
pub fn encode_ping(buf: &mut [u8], pong: bool, nonce: u64) -> Option<usize> {
    let (body, total) = begin(buf, if pong { PONG } else { PING }, NONCE_BYTES)?;
    put_u64(body, 0, nonce);
    Some(total)
}

/// Encodes a `WELCOME`.
pub fn encode_welcome(buf: &mut [u8], w: &Welcome) -> Option<usize> {
    let (body, total) = begin(buf, WELCOME, WELCOME_BYTES)?;
    put_u16(body, WEL_VERSION, w.protocol_version);
    put_u16(body, WEL_CODEC, w.codec_id);
    put_u64(body, WEL_SESSION, w.session_id);
    put_u32(body, WEL_MAX_FRAME, w.max_frame_bytes);
    put_u32(body, WEL_MAX_PAYLOAD, w.max_payload_bytes);
    put_u32(body, WEL_MAX_RESPONSE, w.max_response_bytes);
    put_u32(body, WEL_OUTPUT_LIMIT, w.output_limit_bytes);
    put_u32(body, WEL_IDLE, w.idle_timeout_ms);
    Some(total)
}

/// Encodes a `RESPONSE` from the engine's response header and payload.
#[inline]
pub fn encode_response(buf: &mut [u8], header: &ResponseHeader, payload: &[u8]) -> Option<usize> {
    let (body, total) = begin(buf, RESPONSE, RESPONSE_HEADER_BYTES + payload.len())?;
    put_u64(body, RSP_CORRELATION, header.correlation_id);
    put_u64(body, RSP_SEQUENCE, header.sequence);
    put_u16(body, RSP_KIND, header.kind);
    body[RSP_STATUS] = header.status as u8;
    body[RSP_RESERVED] = 0;
    put_u32(body, RSP_REASON, header.reason);
    body[RESPONSE_HEADER_BYTES..].copy_from_slice(payload);
    Some(total)
}

/// Encodes an `ERROR`; the text is cut to [`MAX_ERROR_TEXT_BYTES`] (at a UTF-8 boundary).
pub fn encode_error(
    buf: &mut [u8],
    code: ErrorCode,
    correlation_id: u64,
    text: &str,
) -> Option<usize> {
    let text = cut_utf8(text, MAX_ERROR_TEXT_BYTES);
    let (body, total) = begin(buf, ERROR, ERROR_HEADER_BYTES + text.len())?;
    put_u16(body, ERR_CODE, code.0);
    body[ERR_FATAL] = u8::from(code.is_fatal());
    body[ERR_RESERVED] = 0;
    put_u64(body, ERR_CORRELATION, correlation_id);
    body[ERROR_HEADER_BYTES..].copy_from_slice(text.as_bytes());
    Some(total)
}

fn cut_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The total size (length prefix included) of the frame at the start of `buf`, if all of it
/// is there. Rejects a length prefix above `max_frame_bytes` as soon as the prefix is in.
#[inline]
pub(crate) fn frame_len(buf: &[u8], max_frame_bytes: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < LEN_BYTES {
        return Ok(None);
    }
    let len = get_u32(buf, 0) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    let total = LEN_BYTES + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Splits the first complete frame off `buf`: the frame and the bytes it used, or `None` if it
/// is not complete yet.
#[inline]
pub fn split(buf: &[u8], max_frame_bytes: usize) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    match frame_len(buf, max_frame_bytes)? {
        Some(total) => Ok(Some((decode(&buf[LEN_BYTES..total])?, total))),
        None => Ok(None),
    }
}

/// Decodes one frame from its type byte and body (everything after the length prefix).
#[inline]
pub fn decode(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    let (&frame_type, body) = frame.split_first().ok_or(FrameError::Empty)?;
    let bad = || FrameError::BadSize {
        frame_type,
        len: body.len(),
    };
    let fits = |fixed: usize, exact: bool| {
        if body.len() < fixed || (exact && body.len() != fixed) {
            Err(bad())
        } else {
            Ok(())
        }
    };
    match frame_type {
        HELLO => decode_hello(body).ok_or_else(bad)?.map(Frame::Hello),
        REQUEST => fits(REQUEST_HEADER_BYTES, false).map(|()| Frame::Request(decode_request(body))),
        PING => fits(NONCE_BYTES, true).map(|()| Frame::Ping(get_u64(body, 0))),
        PONG => fits(NONCE_BYTES, true).map(|()| Frame::Pong(get_u64(body, 0))),
        WELCOME => fits(WELCOME_BYTES, true).map(|()| Frame::Welcome(decode_welcome(body))),
        RESPONSE => {
            fits(RESPONSE_HEADER_BYTES, false)?;
            decode_response(body).map(Frame::Response)
        }
        ERROR => fits(ERROR_HEADER_BYTES, false).map(|()| Frame::Error(decode_error(body))),
        other => Err(FrameError::UnknownType(other)),
    }
}

/// `None`: wrong size; `Some(Err)`: bad magic.
fn decode_hello(body: &[u8]) -> Option<Result<Hello<'_>, FrameError>> {
    if body.len() < HELLO_HEADER_BYTES {
        return None;
    }
    let token_len = usize::from(get_u16(body, HELLO_TOKEN_LEN));
    let protocol_version = get_u16(body, HELLO_VERSION);
    let id_bytes = hello_client_id_bytes(protocol_version);
    let id_at = HELLO_HEADER_BYTES + token_len;
    if token_len > MAX_TOKEN_BYTES || body.len() != id_at + id_bytes {
        return None;
    }
    if body[HELLO_MAGIC..HELLO_VERSION] != MAGIC {
        return Some(Err(FrameError::BadMagic));
    }
    Some(Ok(Hello {
        protocol_version,
        token: &body[HELLO_HEADER_BYTES..id_at],
        client_id: if id_bytes == 0 {
            0
        } else {
            get_u64(body, id_at)
        },
    }))
}

fn decode_request(body: &[u8]) -> Request<'_> {
    debug_assert!(body.len() >= REQUEST_HEADER_BYTES);
    Request {
        correlation_id: get_u64(body, REQ_CORRELATION),
        kind: get_u16(body, REQ_KIND),
        version: get_u16(body, REQ_VERSION),
        payload: &body[REQUEST_HEADER_BYTES..],
    }
}

fn decode_welcome(body: &[u8]) -> Welcome {
    debug_assert_eq!(body.len(), WELCOME_BYTES);
    Welcome {
        protocol_version: get_u16(body, WEL_VERSION),
        codec_id: get_u16(body, WEL_CODEC),
        session_id: get_u64(body, WEL_SESSION),
        max_frame_bytes: get_u32(body, WEL_MAX_FRAME),
        max_payload_bytes: get_u32(body, WEL_MAX_PAYLOAD),
        max_response_bytes: get_u32(body, WEL_MAX_RESPONSE),
        output_limit_bytes: get_u32(body, WEL_OUTPUT_LIMIT),
        idle_timeout_ms: get_u32(body, WEL_IDLE),
    }
}

fn decode_response(body: &[u8]) -> Result<ResponseFrame<'_>, FrameError> {
    debug_assert!(body.len() >= RESPONSE_HEADER_BYTES);
    let status = match body[RSP_STATUS] {
        0 => Status::Accepted,
        1 => Status::Rejected,
        2 => Status::Failed,
        other => return Err(FrameError::BadStatus(other)),
    };
    Ok(ResponseFrame {
        correlation_id: get_u64(body, RSP_CORRELATION),
        sequence: get_u64(body, RSP_SEQUENCE),
        kind: get_u16(body, RSP_KIND),
        status,
        reason: get_u32(body, RSP_REASON),
        payload: &body[RESPONSE_HEADER_BYTES..],
    })
}

fn decode_error(body: &[u8]) -> ErrorFrame<'_> {
    debug_assert!(body.len() >= ERROR_HEADER_BYTES);
    ErrorFrame {
        code: ErrorCode(get_u16(body, ERR_CODE)),
        fatal: body[ERR_FATAL] != 0,
        correlation_id: get_u64(body, ERR_CORRELATION),
        text: &body[ERROR_HEADER_BYTES..],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    const MAX: usize = 1 << 16;

    fn round_trip(buf: &[u8]) -> Frame<'_> {
        let (frame, used) = split(buf, MAX).unwrap().unwrap();
        assert_eq!(used, buf.len());
        // Every strict prefix is incomplete, never an error.
        for cut in 0..buf.len() {
            assert_eq!(frame_len(&buf[..cut], MAX).unwrap(), None);
        }
        frame
    }

    #[test]
    fn documented_example_bytes() {
        let mut buf = [0u8; 64];
        let v1 = Hello {
            protocol_version: 1,
            token: b"",
            client_id: 0,
        };
        let n = encode_hello(&mut buf, &v1).unwrap();
        assert_eq!(
            &buf[..n],
            &[9, 0, 0, 0, 1, b'K', b'E', b'E', b'L', 1, 0, 0, 0]
        );
        let v2 = Hello {
            protocol_version: 2,
            client_id: 0x0102,
            ..v1
        };
        let n = encode_hello(&mut buf, &v2).unwrap();
        assert_eq!(
            &buf[..n],
            &[17, 0, 0, 0, 1, b'K', b'E', b'E', b'L', 2, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]
        );
        let payload = 5u64.to_le_bytes();
        let r = Request {
            correlation_id: 1,
            kind: 1,
            version: 1,
            payload: &payload,
        };
        let n = encode_request(&mut buf, &r).unwrap();
        assert_eq!(&buf[..5], &[0x15, 0, 0, 0, REQUEST]);
        assert_eq!(n, 25);
        let h = ResponseHeader {
            sequence: 42,
            correlation_id: 1,
            ..ResponseHeader::default()
        };
        let n = encode_response(&mut buf, &h, &[]).unwrap();
        assert_eq!(&buf[..n][..5], &[0x19, 0, 0, 0, RESPONSE]);
        assert_eq!(&buf[13..21], &42u64.to_le_bytes());
    }

    #[test]
    fn limits_and_bad_frames() {
        let mut buf = [0u8; 16];
        assert_eq!(frame_len(&[0, 0, 0, 0], MAX), Err(FrameError::Empty));
        buf[..4].copy_from_slice(&(MAX as u32 + 1).to_le_bytes());
        assert!(matches!(
            frame_len(&buf[..4], MAX),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(decode(&[0x7f]), Err(FrameError::UnknownType(0x7f)));
        assert!(matches!(
            decode(&[PING, 1, 2]),
            Err(FrameError::BadSize { .. })
        ));
        let hello = [HELLO, b'K', b'E', b'E', b'X', 1, 0, 0, 0];
        assert_eq!(decode(&hello), Err(FrameError::BadMagic));
        assert_eq!(FrameError::BadMagic.code(), ErrorCode::UNSUPPORTED_PROTOCOL);
        let long = Hello {
            protocol_version: 1,
            token: &[0; MAX_TOKEN_BYTES + 1],
            client_id: 0,
        };
        assert!(encode_hello(&mut [0u8; 512], &long).is_none());
        assert!(encode_ping(&mut [0u8; 12], false, 1).is_none());
        assert_eq!(ErrorCode::SLOW_CONSUMER.name(), "SLOW_CONSUMER");
        assert_eq!(ErrorCode(999).name(), "UNKNOWN");
        assert!(ErrorCode(31).is_fatal() && !ErrorCode::UNDECODABLE.is_fatal());
    }

    #[test]
    fn error_text_is_cut_at_a_char_boundary() {
        let mut buf = [0u8; 512];
        let text = "é".repeat(150); // 300 bytes
        let n = encode_error(&mut buf, ErrorCode::MALFORMED, 0, &text).unwrap();
        let Frame::Error(e) = round_trip(&buf[..n]) else {
            panic!("not an error")
        };
        assert_eq!(e.text.len(), MAX_ERROR_TEXT_BYTES);
        assert!(std::str::from_utf8(e.text).is_ok());
        assert!(e.fatal);
    }

    proptest! {
        #[test]
        fn requests_and_responses_round_trip(
            correlation_id: u64, sequence: u64, kind: u16, version: u16, reason: u32,
            status in 0u8..3, payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut buf = vec![0u8; 400];
            let r = Request { correlation_id, kind, version, payload: &payload };
            let n = encode_request(&mut buf, &r).unwrap();
            prop_assert_eq!(round_trip(&buf[..n]), Frame::Request(r));
            let status = [Status::Accepted, Status::Rejected, Status::Failed][status as usize];
            let h = ResponseHeader { sequence, session_id: 9, correlation_id, status, reason, kind };
            let n = encode_response(&mut buf, &h, &payload).unwrap();
            let expected = ResponseFrame { correlation_id, sequence, kind, status, reason, payload: &payload };
            prop_assert_eq!(round_trip(&buf[..n]), Frame::Response(expected));
        }

        #[test]
        fn control_frames_round_trip(
            version: u16, token in proptest::collection::vec(any::<u8>(), 0..=256),
            nonce: u64, w in any::<(u64, u32, u32, u32, u32, u32)>(), code: u16, corr: u64,
        ) {
            let mut buf = vec![0u8; 600];
            let client_id = if version >= 2 { corr } else { 0 };
            let hello = Hello { protocol_version: version, token: &token, client_id };
            let n = encode_hello(&mut buf, &hello).unwrap();
            prop_assert_eq!(round_trip(&buf[..n]), Frame::Hello(hello));
            let n = encode_ping(&mut buf, true, nonce).unwrap();
            prop_assert_eq!(round_trip(&buf[..n]), Frame::Pong(nonce));
            let welcome = Welcome {
                protocol_version: version, codec_id: 1, session_id: w.0, max_frame_bytes: w.1,
                max_payload_bytes: w.2, max_response_bytes: w.3, output_limit_bytes: w.4,
                idle_timeout_ms: w.5,
            };
            let n = encode_welcome(&mut buf, &welcome).unwrap();
            prop_assert_eq!(round_trip(&buf[..n]), Frame::Welcome(welcome));
            let n = encode_error(&mut buf, ErrorCode(code), corr, "why").unwrap();
            let e = ErrorFrame { code: ErrorCode(code), fatal: code < 32, correlation_id: corr, text: b"why" };
            prop_assert_eq!(round_trip(&buf[..n]), Frame::Error(e));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = split(&bytes, 48);
            let _ = decode(&bytes);
        }
    }
}
