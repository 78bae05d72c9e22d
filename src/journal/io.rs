//! The I/O seam: every file-system operation the writer performs that can fail or that decides
//! durability, behind one small trait so tests can inject failures (redb's `StorageBackend`
//! idea). Stores into the mapping itself are memory writes and do not go through here.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::segment::SegmentSync;

/// File operations of the journal writer. [`RealIo`] is the real implementation; a test can wrap
/// it and fail chosen calls. Every method must either fully succeed or return the error.
pub trait SegmentIo: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` (which must not exist), allocates `len_bytes` for real (no sparse holes, so
    /// stores into a mapping of it cannot hit a full disk) and makes the allocation durable.
    fn create_allocated(&self, path: &Path, len_bytes: u64) -> io::Result<File>;
    /// Makes `[offset, offset + len)` of a mapped segment durable (`msync(MS_SYNC)`).
    fn sync_range(&self, segment: &SegmentSync, offset: usize, len: usize) -> io::Result<()>;
    /// Makes a whole file's data durable (`fdatasync`).
    fn sync_file(&self, file: &File) -> io::Result<()>;
    /// Writes zeros over the first `len_bytes` of an allocated `file` in writes of
    /// `ZERO_FILL_CHUNK_BYTES`, writing back each `ZERO_FILL_WRITE_BACK_BYTES` before the
    /// next, then makes them durable with [`SegmentIo::sync_file`] (`SegmentPrep::Zeroed`).
    /// Provided: an implementation that injects faults into `sync_file` injects them here too.
    fn fill_zeros(&self, file: &File, len_bytes: u64) -> io::Result<()> {
        let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES];
        let mut offset = 0;
        while offset < len_bytes {
            let end = len_bytes.min(offset + ZERO_FILL_WRITE_BACK_BYTES);
            write_zeros(file, offset..end, &zeros)?;
            write_back(file, offset..end)?;
            offset = end;
        }
        self.sync_file(file)
    }
    /// Writes `len_bytes` zeros at `offset` of an allocated `file`, in writes of at most
    /// `ZERO_FILL_CHUNK_BYTES` (a zeroed step of `SegmentPrep::Adaptive` calls it once per
    /// such write), made durable later with [`SegmentIo::sync_file`]. Provided: an
    /// implementation that injects faults overrides it to fail zero fills in the active segment.
    fn write_zeros_at(&self, file: &File, offset: u64, len_bytes: usize) -> io::Result<()> {
        static ZEROS: [u8; ZERO_FILL_CHUNK_BYTES] = [0; ZERO_FILL_CHUNK_BYTES];
        write_zeros(file, offset..offset + len_bytes as u64, &ZEROS)
    }
    /// Makes creates, renames and removals in `dir` durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Renames `from` to `to` (same directory), replacing nothing.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Told after each spare segment was prepared (allocated, filled, mapped, pre-faulted),
    /// with how long that took: an engine's metrics count it. Provided: does nothing.
    fn segment_prepared(&self, _elapsed: std::time::Duration) {}
}

/// Size of each write of a zero fill. Where the page cache holds a file in large folios
/// (ext4 on Linux 6.18 here), a buffered write creates folios of about its own size, and a
/// folio is written back whole: this size is then the least that every later sync of the
/// segment writes. Left to the fault-in readahead, folios grow to 2 MiB, and at 100 k
/// records/s each sync wrote 1-2 MiB to make ~2.5 KB durable. 16 KiB prepares a 256 MiB
/// segment about twice as fast as 4 KiB did, for the same acknowledgement latency.
pub const ZERO_FILL_CHUNK_BYTES: usize = 16 << 10;

/// How much of a zero fill is written before it is written back (`sync_file_range`, no cache
/// flush) and waited for. The fill runs while the syncer commits the active segment on the
/// same device; left to one `fdatasync` at the end, 256 MiB of zeros could queue ahead of a
/// commit. At 1 M records/s, ack p99.9 over 8 s runs (2 rollovers each) was 3.5-5.5 ms in 1 MiB
/// steps against 4.2-8.9 ms with one `fdatasync` (and 6-14 ms in 4 and 16 MiB steps).
pub const ZERO_FILL_WRITE_BACK_BYTES: u64 = 1 << 20;

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

impl SegmentIo for RealIo {
    fn create_allocated(&self, path: &Path, len_bytes: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        if let Err(err) = allocate(&file, len_bytes) {
            // Free whatever was allocated; the caller reports `err`, not a cleanup failure.
            let _ = fs::remove_file(path);
            return Err(err);
        }
        file.sync_all()?;
        Ok(file)
    }

    fn sync_range(&self, segment: &SegmentSync, offset: usize, len: usize) -> io::Result<()> {
        segment.flush_range(offset, len)
    }

    fn sync_file(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

/// Asks the kernel to drop `file`'s cached pages (`posix_fadvise(POSIX_FADV_DONTNEED)`): it
/// drops the clean pages nobody maps and leaves the rest. Advisory, so it is no part of the
/// seam: it can neither lose data nor change what is durable.
pub(crate) fn release_cached_pages(file: &File) -> io::Result<()> {
    rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).map_err(io::Error::from)
}

/// `fallocate(fd, 0, 0, len)`; on file systems without it, writes zeros instead. Either way the
/// blocks exist afterwards, which `File::set_len` alone would not guarantee.
fn allocate(file: &File, len_bytes: u64) -> io::Result<()> {
    match fs4::fs_std::FileExt::allocate(file, len_bytes) {
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            write_zeros(file, 0..len_bytes, &vec![0u8; 1 << 20])
        }
        other => other,
    }
}

/// Writes zeros over `range` of `file`, one write of at most `zeros.len()` bytes at a time.
pub(crate) fn write_zeros(
    file: &File,
    range: std::ops::Range<u64>,
    zeros: &[u8],
) -> io::Result<()> {
    debug_assert!(zeros.iter().all(|&b| b == 0));
    let mut offset = range.start;
    while offset < range.end {
        let n = (range.end - offset).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}

/// Writes `range` of `file` back and waits for it (`sync_file_range`), without a cache flush
/// or a metadata commit: bounds how much of a zero fill is queued at the device at once. Not
/// a durability step (the caller syncs at the end), so it is no part of the seam.
pub(crate) fn write_back(file: &File, range: std::ops::Range<u64>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain syscall on a descriptor `file` keeps open; no memory is passed.
    let rc = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            range.start as i64,
            (range.end - range.start) as i64,
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A seam for the crate's own tests: the real file system, counting whole-file syncs and
/// failing chosen kinds of sync (with `EIO`) once asked to.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FaultyIo {
    /// `sync_file` calls so far.
    pub(crate) file_syncs: std::sync::atomic::AtomicUsize,
    /// Fail every `sync_file` from now on.
    pub(crate) fail_file_syncs: std::sync::atomic::AtomicBool,
    /// Fail every `sync_range` from now on.
    pub(crate) fail_range_syncs: std::sync::atomic::AtomicBool,
    /// `write_zeros_at` calls so far.
    pub(crate) zero_writes: std::sync::atomic::AtomicUsize,
    /// Fail every `write_zeros_at` from now on.
    pub(crate) fail_zero_writes: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl SegmentIo for FaultyIo {
    fn create_allocated(&self, path: &Path, len_bytes: u64) -> io::Result<File> {
        RealIo.create_allocated(path, len_bytes)
    }
    fn sync_range(&self, segment: &SegmentSync, offset: usize, len: usize) -> io::Result<()> {
        if self
            .fail_range_syncs
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealIo.sync_range(segment, offset, len)
    }
    fn sync_file(&self, file: &File) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        self.file_syncs.fetch_add(1, Ordering::Relaxed);
        if self.fail_file_syncs.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealIo.sync_file(file)
    }
    fn write_zeros_at(&self, file: &File, offset: u64, len_bytes: usize) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        self.zero_writes.fetch_add(1, Ordering::Relaxed);
        if self.fail_zero_writes.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealIo.write_zeros_at(file, offset, len_bytes)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealIo.sync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealIo.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealIo.remove(path)
    }
}
