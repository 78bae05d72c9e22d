//! The one binary codec keel writes to disk and to the wire.
//!
//! bincode 2 with an explicit configuration: little-endian, fixed-width integers; decoding
//! untrusted bytes is bounded (messages by a fixed limit, saved states by their own size). Every file header records `CODEC_ID` so a future codec change
//! is detected instead of misread. Nothing else in keel calls bincode directly.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Identifies this codec (bincode 2, fixed-int, little-endian) in file and frame headers.
pub(crate) const CODEC_ID: u16 = 1;

/// The single bincode configuration used everywhere.
pub(crate) const CONFIG: bincode::config::Configuration<
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

/// The length of `value`'s encoding, measured by encoding it into a counter (no buffer, no
/// allocation).
pub(crate) fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, CONFIG)?;
    Ok(size.bytes_written)
}

/// Encodes `value` onto the end of `out` (allocates as `out` grows; not for the hot path).
pub fn encode_to_vec<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<usize, CodecError> {
    let before = out.len();
    bincode::serde::encode_into_std_write(value, out, CONFIG)?;
    Ok(out.len() - before)
}

/// A stable 64-bit hash of `value`'s encoding, streamed through the encoder (no buffer, no
/// allocation): equal values hash equal on every machine and in every process. If `value`
/// fails to encode, the hash covers the bytes before the failure (deterministic all the same).
pub(crate) fn hash<T: Serialize>(value: &T) -> u64 {
    let mut hasher = StreamHasher::default();
    let _ = bincode::serde::encode_into_writer(value, &mut hasher, CONFIG);
    hasher.finish()
}

/// Hashes a byte stream one 8-byte little-endian word at a time: each word is folded into the
/// state with a 64×64→128-bit multiply, the tail word is zero-padded, and the length and a
/// splitmix64 finalizer end it. Not cryptographic: a digest to compare states.
#[derive(Default)]
struct StreamHasher {
    state: u64,
    word: [u8; 8],
    word_len: usize,
    total_bytes: u64,
}

impl StreamHasher {
    const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
    const MULTIPLIER: u64 = 0xA076_1D64_78BD_642F;

    #[inline]
    fn mix_word(&mut self, word: u64) {
        let product = u128::from(self.state ^ word ^ Self::SEED) * u128::from(Self::MULTIPLIER);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }

    fn finish(mut self) -> u64 {
        if self.word_len > 0 {
            self.word[self.word_len..].fill(0);
            self.mix_word(u64::from_le_bytes(self.word));
        }
        let mut z = self.state ^ self.total_bytes;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl bincode::enc::write::Writer for StreamHasher {
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.total_bytes += bytes.len() as u64;
        if self.word_len > 0 {
            let take = (8 - self.word_len).min(bytes.len());
            self.word[self.word_len..self.word_len + take].copy_from_slice(&bytes[..take]);
            self.word_len += take;
            bytes = &bytes[take..];
            if self.word_len < 8 {
                return Ok(());
            }
            self.mix_word(u64::from_le_bytes(self.word));
            self.word_len = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.mix_word(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.word[..rest.len()].copy_from_slice(rest);
        self.word_len = rest.len();
        Ok(())
    }
}

/// Most bytes a message decode may claim for strings and collections: a hostile payload that
/// declares a huge length fails with an error instead of allocating it.
pub(crate) const MESSAGE_DECODE_LIMIT_BYTES: usize = 1 << 20;

/// Same wire format as [`CONFIG`], with `MESSAGE_DECODE_LIMIT_BYTES` enforced on decode.
const MESSAGE_CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<MESSAGE_DECODE_LIMIT_BYTES>,
> = CONFIG.with_limit::<MESSAGE_DECODE_LIMIT_BYTES>();

/// Decodes exactly one `T` from all of `bytes` (a message or response payload: untrusted, so
/// bounded by `MESSAGE_DECODE_LIMIT_BYTES`); trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, MESSAGE_CONFIG)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            trailing: bytes.len() - used,
        });
    }
    Ok(value)
}

/// bincode's limit is a compile-time constant, counted up from zero as the decoder claims
/// bytes; `decode_state` gets a runtime budget by claiming all but that budget up front.
const STATE_LIMIT_BYTES: usize = usize::MAX;

/// Same wire format as [`CONFIG`], with a limit so the decoder counts its claims.
const STATE_CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<STATE_LIMIT_BYTES>,
> = CONFIG.with_limit::<STATE_LIMIT_BYTES>();

/// Decodes a whole saved state (a snapshot) from all of `bytes`; trailing bytes are an error.
///
/// Checksums only catch accidental damage, so the state is still treated as untrusted: the
/// decoder may claim at most `bytes.len()` bytes in all. In keel's configuration (fixed-width
/// integers, serde) every claim is for bytes the decoder then reads — an integer its width,
/// a string or byte buffer its length — so a valid state never reaches the budget, and a
/// string or buffer that declares more than the input holds is refused *before* it is
/// allocated (bincode allocates a string's bytes before reading them). Collections are not
/// claimed up front; serde caps their preallocation and each element must be read. The size
/// of `bytes` itself is bounded by the caller (`Config::snapshot_max_state_bytes`).
pub(crate) fn decode_state<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = decode_state_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            trailing: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Decodes one `T` from the front of a saved state whose remainder the caller decodes itself;
/// returns it and the bytes it used. The same budget as `decode_state`: the decoder may
/// claim at most `bytes.len()` bytes.
pub fn decode_state_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    use bincode::de::{Decode, Decoder, DecoderImpl};
    let mut reader = StateReader { rest: bytes };
    let mut decoder = DecoderImpl::new(&mut reader, STATE_CONFIG, ());
    decoder.claim_bytes_read(STATE_LIMIT_BYTES - bytes.len())?;
    let bincode::serde::Compat(value) = bincode::serde::Compat::<T>::decode(&mut decoder)?;
    Ok((value, bytes.len() - reader.rest.len()))
}

/// A slice reader that tells how much is left (bincode's own keeps that private).
struct StateReader<'a> {
    rest: &'a [u8],
}

impl bincode::de::read::Reader for StateReader<'_> {
    #[inline]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let Some((head, tail)) = self.rest.split_at_checked(bytes.len()) else {
            return Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: bytes.len() - self.rest.len(),
            });
        };
        bytes.copy_from_slice(head);
        self.rest = tail;
        Ok(())
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.rest.get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.rest = self.rest.get(n..).unwrap_or_default();
    }
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
    fn a_state_may_claim_no_more_than_it_holds() {
        // A string claiming 2^62 bytes, or just one byte more than follows: refused before
        // the string is allocated. A claim that fits decodes.
        let mut bytes = (1u64 << 62).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        assert!(decode_state::<String>(&bytes).is_err());
        bytes[..8].copy_from_slice(&4u64.to_le_bytes());
        assert!(decode_state::<String>(&bytes).is_err());
        bytes[..8].copy_from_slice(&3u64.to_le_bytes());
        assert_eq!(decode_state::<String>(&bytes).unwrap(), "abc");
        bytes.push(0);
        assert!(matches!(
            decode_state::<String>(&bytes),
            Err(CodecError::Trailing { trailing: 1 })
        ));
    }

    #[test]
    fn a_state_round_trips_at_exactly_its_budget() {
        let s = Sample {
            a: 1,
            b: 2,
            c: (0..=255).collect(),
        };
        let mut v = Vec::new();
        encode_to_vec(&s, &mut v).unwrap();
        assert_eq!(decode_state::<Sample>(&v).unwrap(), s);
        let nested: Vec<(String, Vec<u64>, Option<char>)> = vec![
            ("é".into(), vec![1, 2], Some('€')),
            (String::new(), vec![], None),
        ];
        v.clear();
        encode_to_vec(&nested, &mut v).unwrap();
        assert_eq!(
            decode_state::<Vec<(String, Vec<u64>, Option<char>)>>(&v).unwrap(),
            nested
        );
    }

    #[test]
    fn the_hash_depends_on_the_bytes_not_on_how_they_were_written() {
        let s = Sample {
            a: 7,
            b: -3,
            c: (0..=20).collect(),
        };
        let mut v = Vec::new();
        encode_to_vec(&s, &mut v).unwrap();
        // Hash the same bytes written in every split: one write, then pieces of each size.
        let whole = hash(&s);
        for piece in 1..v.len() {
            let mut hasher = StreamHasher::default();
            for chunk in v.chunks(piece) {
                bincode::enc::write::Writer::write(&mut hasher, chunk).unwrap();
            }
            assert_eq!(hasher.finish(), whole, "pieces of {piece}");
        }
        assert_ne!(hash(&(1u64, 2u64)), hash(&(2u64, 1u64)));
        assert_ne!(hash(&[0u8; 3]), hash(&[0u8; 4]), "the length counts");
        // Pinned: the hash is part of snapshot headers, so it may never change.
        assert_eq!(hash(&(1u64, 2u64)), 0x2546_9df5_70a9_c738);
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
