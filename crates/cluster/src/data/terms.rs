//! The `terms` file in a node's journal directory: one row per term record the journal holds,
//! (term, sequence of its term record), appended and fsynced when a term record is journaled
//! or received, cut when the journal is truncated. A node's last term is read from it, never
//! from a scan of the journal.
//!
//! Row: term u64 LE, first sequence u64 LE, CRC32C of those 16 bytes u32 LE, 4 zero bytes.
//! A torn last row (a crash mid-append) is dropped on open, as are rows beyond the journal's
//! end (appended before the journal held their record durably).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::durable::{replace_file, sync_dir};

/// File name in the journal directory.
pub const TERMS_FILE: &str = "terms";
const ROW_BYTES: usize = 24;
// Why: term, sequence, CRC and padding; the document says 24.
const _: () = assert!(ROW_BYTES == 8 + 8 + 4 + 4);

/// One row: the term and the sequence of its term record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermStart {
    /// The term.
    pub term: u64,
    /// Sequence of its term record.
    pub first_sequence: u64,
}

/// The rows of a terms file, in memory, and the file they are kept in.
#[derive(Debug)]
pub struct Terms {
    path: PathBuf,
    rows: Vec<TermStart>,
}

fn encode_row(row: TermStart) -> [u8; ROW_BYTES] {
    let mut b = [0u8; ROW_BYTES];
    b[..8].copy_from_slice(&row.term.to_le_bytes());
    b[8..16].copy_from_slice(&row.first_sequence.to_le_bytes());
    let crc = crc32c::crc32c(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_row(b: &[u8]) -> Option<TermStart> {
    let crc = u32::from_le_bytes(b[16..20].try_into().ok()?);
    if crc != crc32c::crc32c(&b[..16]) {
        return None;
    }
    Some(TermStart {
        term: u64::from_le_bytes(b[..8].try_into().ok()?),
        first_sequence: u64::from_le_bytes(b[8..16].try_into().ok()?),
    })
}

impl Terms {
    /// Reads the terms file of the journal in `journal_dir`, keeping rows up to
    /// `last_sequence` (the journal's end) and rewriting the file if it dropped any.
    pub fn open(journal_dir: &Path, last_sequence: u64) -> std::io::Result<Terms> {
        std::fs::create_dir_all(journal_dir)?;
        let path = journal_dir.join(TERMS_FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut rows: Vec<TermStart> = bytes
            .chunks_exact(ROW_BYTES)
            .map_while(decode_row)
            .collect();
        let whole = rows.len() * ROW_BYTES == bytes.len();
        let before = rows.len();
        rows.retain(|r| r.first_sequence <= last_sequence);
        let mut terms = Terms { path, rows };
        if !whole || rows_dropped(before, &terms) {
            terms.rewrite()?;
        }
        Ok(terms)
    }

    /// The row of the last term record at or before `sequence` in the terms file of
    /// `journal_dir`, read without changing the file (a shipper reads it while the engine
    /// appends; a torn last row is ignored).
    pub fn term_at(journal_dir: &Path, sequence: u64) -> std::io::Result<Option<TermStart>> {
        let bytes = match std::fs::read(journal_dir.join(TERMS_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(bytes
            .chunks_exact(ROW_BYTES)
            .map_while(decode_row)
            .take_while(|r| r.first_sequence <= sequence)
            .last())
    }

    /// Replaces the terms file of `journal_dir` with one holding `row` alone (none: empty),
    /// durably: a node that installed a snapshot keeps only the term its history ends in.
    pub fn replace(journal_dir: &Path, row: Option<TermStart>) -> std::io::Result<()> {
        let mut terms = Terms {
            path: journal_dir.join(TERMS_FILE),
            rows: row.into_iter().collect(),
        };
        terms.rewrite()
    }

    /// Term of the last term record (0: none).
    pub fn last_term(&self) -> u64 {
        self.rows.last().map_or(0, |r| r.term)
    }

    /// The last row, if any.
    pub fn last(&self) -> Option<TermStart> {
        self.rows.last().copied()
    }

    /// Appends a row and makes it durable.
    pub fn append(&mut self, row: TermStart) -> std::io::Result<()> {
        if self.rows.last() == Some(&row) {
            return Ok(());
        }
        let created = !self.path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&encode_row(row))?;
        f.sync_data()?;
        if created {
            sync_dir(self.path.parent().expect("in a directory"))?;
        }
        self.rows.push(row);
        Ok(())
    }

    /// Drops the rows of term records after `sequence` (the journal was truncated there).
    pub fn cut_after(&mut self, sequence: u64) -> std::io::Result<()> {
        let before = self.rows.len();
        self.rows.retain(|r| r.first_sequence <= sequence);
        if rows_dropped(before, self) {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Writes the rows to a temporary file, syncs it and renames it over the file.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let bytes: Vec<u8> = self.rows.iter().flat_map(|row| encode_row(*row)).collect();
        replace_file(&self.path, &self.path.with_extension("tmp"), &bytes)
    }
}

fn rows_dropped(before: usize, terms: &Terms) -> bool {
    terms.rows.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_reopen_and_are_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut terms = Terms::open(dir.path(), 0).expect("open");
        assert_eq!(terms.last_term(), 0);
        for (term, first_sequence) in [(1, 1), (2, 10), (5, 20)] {
            terms
                .append(TermStart {
                    term,
                    first_sequence,
                })
                .expect("append");
        }
        let terms = Terms::open(dir.path(), 25).expect("reopen");
        assert_eq!(terms.last_term(), 5);
        let mut terms = Terms::open(dir.path(), 15).expect("journal ends at 15");
        assert_eq!(terms.last_term(), 2);
        terms.cut_after(5).expect("cut");
        assert_eq!(Terms::open(dir.path(), 99).expect("open").last_term(), 1);
        // A torn last row is dropped.
        let path = dir.path().join(TERMS_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&[1, 2, 3]).expect("write");
        assert_eq!(Terms::open(dir.path(), 99).expect("open").last_term(), 1);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 24);
    }
}
