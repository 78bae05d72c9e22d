//! The one binary codec keel writes to disk and to the wire.
//!
//! bincode 2 with an explicit configuration: little-endian, fixed-width integers, no limit
//! beyond the caller's buffer. Every file header records [`CODEC_ID`] so a future codec change
//! is detected instead of misread. Nothing else in keel calls bincode directly.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Identifies this codec (bincode 2, fixed-int, little-endian) in file and frame headers.
pub const CODEC_ID: u16 = 1;

/// The single bincode configuration used everywhere.
pub const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
> = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding();

/// Errors from encoding or decoding a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded (usually: the buffer is too small).
    #[error("encode failed: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a valid encoding of the expected type.
    #[error("decode failed: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// Decoding succeeded but left bytes unread.
    #[error("decode left {trailing} trailing bytes")]
    Trailing {
        /// How many bytes were not consumed.
        trailing: usize,
    },
}

/// Encodes `value` into `buf`, returning the number of bytes written. Does not allocate.
pub fn encode_into<T: Serialize>(value: &T, buf: &mut [u8]) -> Result<usize, CodecError> {
    Ok(bincode::serde::encode_into_slice(value, buf, CONFIG)?)
}

/// Encodes `value` onto the end of `out` (allocates as `out` grows; not for the hot path).
pub fn encode_to_vec<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<usize, CodecError> {
    let before = out.len();
    bincode::serde::encode_into_std_write(value, out, CONFIG)?;
    Ok(out.len() - before)
}

/// Most bytes a message decode may claim for strings and collections: a hostile payload that
/// declares a huge length fails with an error instead of allocating it.
pub const MESSAGE_DECODE_LIMIT_BYTES: usize = 1 << 20;

/// Same wire format as [`CONFIG`], with [`MESSAGE_DECODE_LIMIT_BYTES`] enforced on decode.
const MESSAGE_CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<MESSAGE_DECODE_LIMIT_BYTES>,
> = CONFIG.with_limit::<MESSAGE_DECODE_LIMIT_BYTES>();

/// Decodes exactly one `T` from all of `bytes` (a message or response payload: untrusted, so
/// bounded by [`MESSAGE_DECODE_LIMIT_BYTES`]); trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, MESSAGE_CONFIG)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            trailing: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Decodes a whole saved state (a snapshot, already checksummed): no size limit.
pub fn decode_state<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, CONFIG)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            trailing: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Decodes one `T` from the front of a saved state (already checksummed) whose remainder the
/// caller decodes itself; returns it and the bytes it used. Same limits as [`decode_state`].
pub fn decode_state_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    Ok(bincode::serde::decode_from_slice(bytes, CONFIG)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Sample {
        a: u32,
        b: i64,
        c: Vec<u8>,
    }

    #[test]
    fn integers_are_fixed_width_little_endian() {
        let mut buf = [0u8; 16];
        let n = encode_into(&0x0102_0304u32, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[4, 3, 2, 1]);
    }

    #[test]
    fn a_hostile_length_is_refused_without_allocating_it() {
        // A Vec<u8> claiming 2^60 elements, followed by nothing.
        let bytes = (1u64 << 60).to_le_bytes();
        assert!(decode::<Vec<u8>>(&bytes).is_err());
        assert!(decode::<String>(&bytes).is_err());
    }

    #[test]
    fn round_trip_and_trailing_rejected() {
        let s = Sample {
            a: 7,
            b: -3,
            c: vec![1, 2, 3],
        };
        let mut v = Vec::new();
        encode_to_vec(&s, &mut v).unwrap();
        assert_eq!(decode::<Sample>(&v).unwrap(), s);
        v.push(0);
        assert!(matches!(
            decode::<Sample>(&v),
            Err(CodecError::Trailing { trailing: 1 })
        ));
    }
}
