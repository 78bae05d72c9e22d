//! The wire-frame decoder (`keel::net::frame`): arbitrary bytes, split into frames the way the
//! server and the client do, must never panic; every frame that decodes re-encodes to a frame
//! that decodes to the same value (the encoder and decoder agree on every byte map).
//!
//! Shared by the fuzz target `frame_decoder` and `tests/fuzz_regressions.rs`, which replays
//! every input in `fuzz/regressions/frame_decoder/`.

use keel::engine::ResponseHeader;
use keel::net::frame::{self, Frame};

/// One fuzz input: see the module docs.
pub fn run(data: &[u8]) {
    // The first two bytes choose the frame-size limit (as `max_frame_bytes` varies by config).
    let (limit, stream) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => return,
    };
    let mut at = 0;
    while at < stream.len() {
        match frame::split(&stream[at..], limit) {
            Ok(Some((decoded, used))) => {
                assert!(used > frame::LEN_BYTES && used <= frame::LEN_BYTES + limit);
                check_round_trip(&decoded);
                at += used;
            }
            // Incomplete, or an error the connection would be closed for.
            Ok(None) | Err(_) => break,
        }
    }
    // The body decoder alone, on the raw bytes.
    if let Ok(decoded) = frame::decode(stream) {
        check_round_trip(&decoded);
    }
}

fn check_round_trip(decoded: &Frame<'_>) {
    let mut buf = vec![0u8; 1 << 17];
    let n = match *decoded {
        Frame::Hello(h) => frame::encode_hello(&mut buf, &h),
        Frame::Request(r) => frame::encode_request(&mut buf, &r),
        Frame::Ping(nonce) => frame::encode_ping(&mut buf, false, nonce),
        Frame::Pong(nonce) => frame::encode_ping(&mut buf, true, nonce),
        Frame::Welcome(w) => frame::encode_welcome(&mut buf, &w),
        Frame::Response(r) => {
            let header = ResponseHeader {
                sequence: r.sequence,
                session_id: 0,
                correlation_id: r.correlation_id,
                status: r.status,
                reason: r.reason,
                kind: r.kind,
            };
            frame::encode_response(&mut buf, &header, r.payload)
        }
        Frame::Error(e) => {
            // The encoder takes UTF-8 text of at most MAX_ERROR_TEXT_BYTES and derives `fatal`
            // from the code; only frames it could have produced round-trip exactly.
            let Ok(text) = std::str::from_utf8(e.text) else {
                return;
            };
            if text.len() > frame::MAX_ERROR_TEXT_BYTES || e.fatal != e.code.is_fatal() {
                return;
            }
            frame::encode_error(&mut buf, e.code, e.correlation_id, text)
        }
    };
    let n = n.expect("a decoded frame re-encodes");
    let (again, used) = frame::split(&buf[..n], usize::MAX)
        .expect("re-encoded frame is valid")
        .expect("re-encoded frame is complete");
    assert_eq!(used, n);
    assert_eq!(&again, decoded);
}
