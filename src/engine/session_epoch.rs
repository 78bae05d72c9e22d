//! The restart epoch: a counter kept in the journal directory and advanced durably each time
//! an engine opens the journal. Session ids carry it (`net::session`), so a server restarted
//! on the same journal never hands out an id that an earlier run journaled.
//!
//! File `session.epoch` (not a segment; readers ignore it): 8 bytes epoch, 4 bytes CRC32C of
//! them, little-endian. Replaced atomically (write a temporary file, sync it, rename it,
//! sync the directory), under the journal writer's exclusive lock.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::journal::JournalError;

/// The epoch file's name in the journal directory.
pub(crate) const EPOCH_FILE_NAME: &str = "session.epoch";
const EPOCH_TMP_NAME: &str = "session.epoch.tmp";
const EPOCH_FILE_BYTES: usize = 12;

// Why: an 8-byte counter and its 4-byte CRC, nothing else.
const _: () = assert!(EPOCH_FILE_BYTES == size_of::<u64>() + size_of::<u32>());

/// Reads the epoch stored in `journal_dir` (0 when there is none), stores the next one
/// durably and returns it. Call with the journal writer's lock held.
pub(crate) fn advance(journal_dir: &Path) -> Result<u64, JournalError> {
    let path = journal_dir.join(EPOCH_FILE_NAME);
    let at = |source: io::Error| JournalError::FileIo {
        path: path.clone(),
        source,
    };
    let previous = match fs::read(&path) {
        Ok(bytes) => decode(&bytes).ok_or_else(|| {
            at(io::Error::new(
                io::ErrorKind::InvalidData,
                "the restart epoch file is damaged (expected 12 bytes with a valid CRC); \
                 remove it only if no session ids from earlier runs matter",
            ))
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(at(e)),
    };
    let next = previous.wrapping_add(1);
    let tmp = journal_dir.join(EPOCH_TMP_NAME);
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&encode(next))?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(journal_dir)?.sync_all()
    };
    write().map_err(at)?;
    Ok(next)
}

fn encode(epoch: u64) -> [u8; EPOCH_FILE_BYTES] {
    let mut bytes = [0u8; EPOCH_FILE_BYTES];
    bytes[..8].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..8]);
    bytes[8..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; EPOCH_FILE_BYTES] = bytes.try_into().ok()?;
    let (epoch, crc) = bytes.split_at(8);
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    if crc32c::crc32c(epoch) != crc {
        return None;
    }
    Some(u64::from_le_bytes(epoch.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_open_advances_the_epoch_durably() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(advance(dir.path()).unwrap(), 1);
        assert_eq!(advance(dir.path()).unwrap(), 2);
        assert_eq!(advance(dir.path()).unwrap(), 3);
        assert!(!dir.path().join(EPOCH_TMP_NAME).exists());
    }

    #[test]
    fn a_damaged_epoch_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        advance(dir.path()).unwrap();
        let path = dir.path().join(EPOCH_FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            advance(dir.path()),
            Err(JournalError::FileIo { .. })
        ));
    }
}
