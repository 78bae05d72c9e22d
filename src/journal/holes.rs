//! Which ranges of a segment file may hold data, by its filesystem's account
//! (`lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)`), so that the scans for non-zero bytes after a
//! journal's end read only those: the unwritten rest of a segment is most of it, and reading
//! it through a mapping costs a page-cache page per 4 KiB, all zero.
//!
//! Exact, not a heuristic: a range the filesystem reports as a hole reads back as zeros. On
//! ext4 and xfs a hole is either unallocated or an allocated but unwritten extent
//! (`fallocate`) with no page-cache page in it; a page that is written through a mapping
//! (or only read) is in the page cache first, and from then on its range is data. A
//! filesystem without these seeks (they then fail with `EINVAL`, or answer "all data", as
//! the kernel's generic implementation does) has its files read whole.

use std::fs::File;
use std::ops::Range;

use rustix::fs::{seek, SeekFrom};
use rustix::io::Errno;

use super::format::PAGE_SIZE_BYTES;

const PAGE_BYTES: usize = PAGE_SIZE_BYTES as usize;

/// The ranges of the first `len` bytes of a file that may hold data, from an offset on, in
/// order: each starts where the filesystem reports data and ends where it reports the next
/// hole, both rounded outward to 4 KiB pages (never into bytes before the offset asked
/// for). Where the filesystem cannot tell, one range: everything from there to `len`.
///
/// Each range is asked for when the iterator reaches it, so a scan that stops early makes
/// no more seeks. What a range leaves out held no data when its seek answered (see
/// [`SegmentView::next_nonzero_word`](super::segment::SegmentView::next_nonzero_word) on
/// what that means for a live writer).
#[derive(Debug)]
pub(crate) struct DataRanges<'a> {
    file: &'a File,
    len: usize,
    next: usize,
}

impl<'a> DataRanges<'a> {
    pub(crate) fn new(file: &'a File, len: usize, from: usize) -> Self {
        Self {
            file,
            len,
            next: from,
        }
    }
}

impl Iterator for DataRanges<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let range = data_range(self.next, self.len, |at, to| lseek(self.file, at, to))?;
        self.next = range.end;
        Some(range)
    }
}

/// Which way a seek goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeekTo {
    Data,
    Hole,
}

/// What a seek answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seeked {
    /// The offset of the next data (or hole) at or after the one asked.
    At(usize),
    /// `ENXIO`: no data at or after the offset (or the offset is at or past the end).
    Nothing,
    /// Any other failure (no such seek on this filesystem): nothing is known.
    Unknown,
}

/// `lseek(fd, at, SEEK_DATA | SEEK_HOLE)`. Moves the descriptor's file position, which
/// nothing else uses (segments are read through their mapping).
fn lseek(file: &File, at: usize, to: SeekTo) -> Seeked {
    let at = at as u64;
    let pos = match to {
        SeekTo::Data => SeekFrom::Data(at),
        SeekTo::Hole => SeekFrom::Hole(at),
    };
    match seek(file, pos) {
        Ok(found) => usize::try_from(found).map_or(Seeked::Unknown, Seeked::At),
        Err(Errno::NXIO) => Seeked::Nothing,
        Err(_) => Seeked::Unknown,
    }
}

/// The first range at or after `from` (and before `len`) that may hold data, by `seek`'s
/// answers; `None` when there is none. The start is rounded down and the end up to a page
/// (start clipped to `from`, end to `len`): a filesystem answering in finer units costs a
/// few more bytes read, never a byte skipped. The range is at least a page long (or up to
/// `len`), so a caller stepping from range to range always moves on.
fn data_range(
    from: usize,
    len: usize,
    seek: impl Fn(usize, SeekTo) -> Seeked,
) -> Option<Range<usize>> {
    if from >= len {
        return None;
    }
    let data = match seek(from, SeekTo::Data) {
        Seeked::At(at) if at >= len => return None,
        Seeked::At(at) => at.max(from),
        Seeked::Nothing => return None,
        Seeked::Unknown => return Some(from..len),
    };
    let start = (data / PAGE_BYTES * PAGE_BYTES).max(from);
    let hole = match seek(data, SeekTo::Hole) {
        Seeked::At(at) => at.max(data).next_multiple_of(PAGE_BYTES),
        Seeked::Nothing | Seeked::Unknown => len,
    };
    let end = hole.max((start + 1).next_multiple_of(PAGE_BYTES)).min(len);
    Some(start..end)
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // expected lists of one range
mod tests {
    use super::*;

    const PAGE: usize = PAGE_BYTES;

    /// A seek over a file of `len` bytes whose data is in `extents`.
    fn fs(extents: &[Range<usize>], len: usize) -> impl Fn(usize, SeekTo) -> Seeked + '_ {
        move |at, to| {
            if at >= len {
                return Seeked::Nothing;
            }
            match to {
                SeekTo::Data => extents
                    .iter()
                    .find(|e| e.end > at)
                    .map_or(Seeked::Nothing, |e| Seeked::At(e.start.max(at))),
                SeekTo::Hole => Seeked::At(
                    extents
                        .iter()
                        .find(|e| e.contains(&at))
                        .map_or(at, |e| e.end),
                ),
            }
        }
    }

    fn all(extents: &[Range<usize>], len: usize, from: usize) -> Vec<Range<usize>> {
        let seek = fs(extents, len);
        let mut next = from;
        std::iter::from_fn(|| {
            let r = data_range(next, len, &seek)?;
            next = r.end;
            Some(r)
        })
        .take(100)
        .collect()
    }

    #[test]
    fn holes_are_left_out_and_data_is_rounded_outward_to_pages() {
        let len = 64 * PAGE;
        let extents = [
            0..2 * PAGE,
            10 * PAGE + 100..10 * PAGE + 200,
            63 * PAGE..len,
        ];
        assert_eq!(
            all(&extents, len, 0),
            [0..2 * PAGE, 10 * PAGE..11 * PAGE, 63 * PAGE..len]
        );
        // From inside a page: never before the offset asked for.
        assert_eq!(
            all(&extents, len, 10 * PAGE + 8),
            [10 * PAGE + 8..11 * PAGE, 63 * PAGE..len]
        );
        assert_eq!(all(&extents, len, 11 * PAGE), [63 * PAGE..len]);
        assert_eq!(all(&[0..PAGE], len, PAGE), []);
        assert_eq!(all(&extents, len, len), []);
    }

    #[test]
    fn a_filesystem_that_cannot_tell_has_everything_read() {
        assert_eq!(data_range(8, 100, |_, _| Seeked::Unknown), Some(8..100));
        let no_holes = |at, to| match to {
            SeekTo::Data => Seeked::At(at),
            SeekTo::Hole => Seeked::Unknown,
        };
        assert_eq!(data_range(8, 100, no_holes), Some(8..100));
    }

    #[test]
    fn a_range_always_moves_on() {
        // Data gone between the two seeks: the hole is where the data was.
        let gone = |at, _| Seeked::At(at);
        assert_eq!(data_range(PAGE, 8 * PAGE, gone), Some(PAGE..2 * PAGE));
        assert_eq!(
            data_range(PAGE + 8, 8 * PAGE, gone),
            Some(PAGE + 8..2 * PAGE)
        );
        // Answers past the end are clipped to it.
        let far = |_, to| match to {
            SeekTo::Data => Seeked::At(0),
            SeekTo::Hole => Seeked::At(1 << 40),
        };
        assert_eq!(data_range(0, 3 * PAGE + 5, far), Some(0..3 * PAGE + 5));
    }

    #[test]
    fn the_files_own_holes_are_reported() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut file = File::create(&path).unwrap();
        file.write_all(&[1u8; 100]).unwrap();
        file.set_len(1 << 20).unwrap();
        let file = File::open(&path).unwrap();
        let ranges: Vec<_> = DataRanges::new(&file, 1 << 20, 0).collect();
        // A filesystem with holes reports the one page written; any other, everything.
        assert!(ranges == [0..PAGE] || ranges == [0..1 << 20], "{ranges:?}");
    }
}
