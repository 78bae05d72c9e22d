//! The election's small files: one value per file, replaced atomically.
//!
//! Byte map (little-endian): magic `[u8; 8]` (names the file's role), format version u32,
//! body length u32, crc32c of the body u32, body (bincode of the value, standard config).
//! A write goes to `NAME.tmp`, is fsynced, renamed over `NAME`, and the directory is fsynced:
//! after a crash the file holds either the old value or the new one, never a mix.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StorageError;
use crate::durable::replace_file;

/// Bytes before the body: magic, version, body length, body crc.
pub(crate) const HEADER_BYTES: usize = 20;
const _: () = assert!(HEADER_BYTES == 8 + 4 + 4 + 4);
/// Format version of every election file. Version 1 held openraft's votes and log ids with a
/// node id in every leader id (several leaders per term); version 2 holds them as standard
/// Raft does (one leader per term), and its bodies do not decode as version 1's.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// Largest body accepted when reading (the files hold a vote, a few log entries, two log ids).
pub(crate) const MAX_BODY_BYTES: usize = 16 << 20;
const _: () = assert!(MAX_BODY_BYTES <= u32::MAX as usize);

/// One atomically replaced file: its path and the magic that names its role. Clones share
/// one write lock: writers take turns, and each writes the value as it is when its turn comes.
#[derive(Debug, Clone)]
pub(crate) struct AtomicFile {
    path: PathBuf,
    magic: [u8; 8],
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl AtomicFile {
    pub(crate) fn new(dir: &Path, name: &str, magic: [u8; 8]) -> Self {
        Self {
            path: dir.join(name),
            magic,
            writing: Arc::default(),
        }
    }

    /// Replaces the file with `value()` taken under the write lock, so the last write holds
    /// the newest value; the write and its fsyncs run on the runtime's blocking pool.
    pub(crate) async fn replace_with(
        &self,
        encode: impl FnOnce() -> Result<Vec<u8>, StorageError>,
    ) -> Result<(), StorageError> {
        let _turn = self.writing.lock().await;
        let bytes = encode()?;
        let file = self.clone();
        match tokio::task::spawn_blocking(move || file.write(&bytes)).await {
            Ok(result) => result,
            Err(e) => Err(StorageError::Interrupted(e.to_string())),
        }
    }

    /// The value stored, or `None` when the file does not exist yet.
    pub(crate) fn read<T: DeserializeOwned>(&self) -> Result<Option<T>, StorageError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let body = self.check(&bytes)?;
        let (value, _) = bincode::serde::decode_from_slice(body, bincode::config::standard())
            .map_err(|e| self.corrupt(format!("body does not decode: {e}")))?;
        Ok(Some(value))
    }

    /// Encodes `value` into the bytes [`Self::write`] stores.
    pub(crate) fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, StorageError> {
        let body =
            bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| {
                StorageError::Encode {
                    path: self.path.clone(),
                    reason: e.to_string(),
                }
            })?;
        if body.len() > MAX_BODY_BYTES {
            return Err(StorageError::Encode {
                path: self.path.clone(),
                reason: format!("{} bytes, more than {MAX_BODY_BYTES}", body.len()),
            });
        }
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Replaces the file with `bytes` (from [`Self::encode`]): durable when this returns.
    /// Blocking, and not serialized with other writers: [`Self::replace_with`] is both.
    fn write(&self, bytes: &[u8]) -> Result<(), StorageError> {
        replace_file(&self.path, &self.path.with_extension("tmp"), bytes).map_err(|e| self.io(e))
    }

    fn check<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], StorageError> {
        if bytes.len() < HEADER_BYTES {
            return Err(self.corrupt(format!("{} bytes, shorter than its header", bytes.len())));
        }
        if bytes[..8] != self.magic {
            return Err(self.corrupt("wrong magic".to_string()));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if version == 1 {
            return Err(self.corrupt(
                "format version 1, from a keel build whose election could make two leaders in \
                 one term; this build reads version 2 only and cannot carry that state over"
                    .to_string(),
            ));
        }
        if version != FORMAT_VERSION {
            return Err(self.corrupt(format!(
                "format version {version}, expected {FORMAT_VERSION}"
            )));
        }
        let len = word(12) as usize;
        let body = &bytes[HEADER_BYTES..];
        if body.len() != len {
            return Err(self.corrupt(format!("body of {} bytes, header says {len}", body.len())));
        }
        if crc32c::crc32c(body) != word(16) {
            return Err(self.corrupt("body checksum mismatch".to_string()));
        }
        Ok(body)
    }

    fn io(&self, source: io::Error) -> StorageError {
        StorageError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let f = AtomicFile::new(dir.path(), "vote", *b"KEELTEST");
        assert_eq!(f.read::<(u64, u64)>().unwrap(), None);
        f.write(&f.encode(&(7u64, 3u64)).unwrap()).unwrap();
        assert_eq!(f.read::<(u64, u64)>().unwrap(), Some((7, 3)));
        let mut bytes = fs::read(dir.path().join("vote")).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(dir.path().join("vote"), &bytes).unwrap();
        assert!(matches!(
            f.read::<(u64, u64)>(),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_file_of_format_version_1_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = AtomicFile::new(dir.path(), "vote", *b"KEELTEST");
        let mut bytes = f.encode(&(7u64, 3u64)).unwrap();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        fs::write(dir.path().join("vote"), &bytes).unwrap();
        let error = f.read::<(u64, u64)>().unwrap_err().to_string();
        assert!(error.contains("format version 1"), "{error}");
        assert!(error.contains("two leaders in one term"), "{error}");
    }
}
