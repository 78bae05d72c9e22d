//! The journal while it runs: tailing readers (thread and process), the directory lock, flush
//! policies' sync counts, and injected I/O failures.

mod journal_support;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use journal_support::*;
use keel::journal::{
    verify, FlushPolicy, JournalError, JournalReader, JournalWriter, RealIo, SegmentIo, SegmentSync,
};

/// Real I/O with switches to fail chosen operations, and counters.
#[derive(Debug)]
struct FaultyIo {
    fail_sync: AtomicBool,
    fail_rename: AtomicBool,
    /// Allocations that may still succeed before they fail with ENOSPC.
    allocs_left: AtomicU64,
    range_syncs: AtomicU64,
    /// While set, `sync_range` waits (a slow disk).
    hold_syncs: AtomicBool,
}

impl FaultyIo {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            fail_sync: AtomicBool::new(false),
            fail_rename: AtomicBool::new(false),
            allocs_left: AtomicU64::new(u64::MAX),
            range_syncs: AtomicU64::new(0),
            hold_syncs: AtomicBool::new(false),
        })
    }
    fn syncs(&self) -> u64 {
        self.range_syncs.load(Ordering::SeqCst)
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl SegmentIo for FaultyIo {
    fn create_allocated(&self, path: &Path, len_bytes: u64) -> io::Result<File> {
        let left = self.allocs_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if left != u64::MAX {
            self.allocs_left.store(left - 1, Ordering::SeqCst);
        }
        RealIo.create_allocated(path, len_bytes)
    }
    fn sync_range(&self, segment: &SegmentSync, offset: usize, len: usize) -> io::Result<()> {
        self.range_syncs.fetch_add(1, Ordering::SeqCst);
        while self.hold_syncs.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(eio());
        }
        RealIo.sync_range(segment, offset, len)
    }
    fn sync_file(&self, file: &File) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(eio());
        }
        RealIo.sync_file(file)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(eio());
        }
        RealIo.sync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.fail_rename.load(Ordering::SeqCst) {
            return Err(eio());
        }
        RealIo.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealIo.remove(path)
    }
}

#[test]
fn reader_tails_a_live_writer_across_rollovers() {
    const N: u64 = 40_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let mut w = JournalWriter::open(&cfg(&dir, TINY_SEGMENT_BYTES, FlushPolicy::None)).unwrap();
    let reader_dir = dir.clone();
    let reader = thread::spawn(move || {
        let mut reader = JournalReader::open(&reader_dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = 0;
        let mut empty_polls = 0u64;
        while last < N {
            match reader.next().unwrap() {
                Some(r) => {
                    check(&r, last + 1);
                    last += 1;
                }
                None => {
                    empty_polls += 1;
                    assert!(Instant::now() < deadline, "reader stuck at {last}");
                    thread::yield_now();
                }
            }
        }
        empty_polls
    });
    let mut seq = 0;
    let mut rng = Rng(7);
    while seq < N {
        let n = (rng.below(64) + 1).min(N - seq);
        write(&mut w, seq + 1, seq + n, n);
        seq += n;
    }
    let empty_polls = reader.join().unwrap();
    assert!(segment_files(&dir).len() > 100);
    eprintln!("reader caught up with the writer {empty_polls} times");
}

/// Run by `reader_tails_from_another_process` in a child process.
#[test]
#[ignore = "child half of reader_tails_from_another_process"]
fn child_tailer() {
    let Ok(dir) = std::env::var("KEEL_TAIL_DIR") else {
        return;
    };
    let n: u64 = std::env::var("KEEL_TAIL_COUNT").unwrap().parse().unwrap();
    let mut reader = JournalReader::open(Path::new(&dir)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = 0;
    while last < n {
        match reader.next().unwrap() {
            Some(r) => {
                check(&r, last + 1);
                last += 1;
            }
            None => {
                assert!(Instant::now() < deadline, "child reader stuck at {last}");
                thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

#[test]
fn reader_tails_from_another_process() {
    const N: u64 = 5_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = JournalWriter::open(&cfg(dir, TINY_SEGMENT_BYTES, FlushPolicy::None)).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_tailer", "--ignored", "--quiet"])
        .env("KEEL_TAIL_DIR", dir)
        .env("KEEL_TAIL_COUNT", N.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seq = 0;
    while seq < N {
        write(&mut w, seq + 1, seq + 50, 50);
        seq += 50;
        thread::sleep(Duration::from_micros(200));
    }
    assert!(child.wait().unwrap().success(), "child reader failed");
}

#[test]
fn second_writer_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let config = cfg(tmp.path(), TINY_SEGMENT_BYTES, FlushPolicy::Batch);
    let mut w = JournalWriter::open(&config).unwrap();
    write(&mut w, 1, 10, 5);
    let err = JournalWriter::open(&config).unwrap_err();
    assert!(
        matches!(err, JournalError::Locked { ref dir } if dir == tmp.path()),
        "{err}"
    );
    assert!(matches!(
        verify(tmp.path()),
        Err(JournalError::Locked { .. })
    ));
    // Readers take no lock.
    assert_eq!(read_all(tmp.path()), 10);
    drop(w);
    assert_eq!(verify(tmp.path()).unwrap().last_sequence, 10);
    let w = JournalWriter::open(&config).unwrap();
    assert_eq!(w.last_sequence(), 10);
}

#[test]
fn flush_policies_sync_once_per_batch_never_per_record() {
    let tmp = tempfile::tempdir().unwrap();
    for (sub, policy) in [("b", FlushPolicy::Batch), ("n", FlushPolicy::None)] {
        let io = FaultyIo::new();
        let config = cfg(&tmp.path().join(sub), 1 << 20, policy);
        let mut w = JournalWriter::open_with_io(&config, io.clone()).unwrap();
        let base = io.syncs();
        for seq in 1..=100 {
            w.append(&rec(seq, &payload(seq))).unwrap();
        }
        assert_eq!(io.syncs(), base, "{policy}: no sync per record");
        w.end_batch().unwrap();
        wait_durable(&w, 100);
        let per_batch = u64::from(policy == FlushPolicy::Batch);
        assert_eq!(io.syncs(), base + per_batch, "{policy}");
        w.end_batch().unwrap();
        assert_eq!(
            io.syncs(),
            base + per_batch,
            "{policy}: nothing new, no sync"
        );
        w.sync().unwrap();
        assert_eq!(io.syncs(), base + 1, "{policy}: sync() is unconditional");
    }

    let io = FaultyIo::new();
    let config = cfg(&tmp.path().join("i"), 1 << 20, FlushPolicy::IntervalMs(100));
    let mut w = JournalWriter::open_with_io(&config, io.clone()).unwrap();
    let base = io.syncs();
    write(&mut w, 1, 10, 10);
    assert_eq!(io.syncs(), base, "interval not elapsed since open");
    w.tick().unwrap();
    assert_eq!(io.syncs(), base);
    thread::sleep(Duration::from_millis(120));
    w.tick().unwrap();
    assert_eq!(io.syncs(), base + 1, "due and dirty: one sync");
    w.tick().unwrap();
    assert_eq!(io.syncs(), base + 1, "clean: no sync");
}

/// Under `batch`, waits until the syncer made `sequence` durable (other policies: at once).
fn wait_durable(w: &JournalWriter, sequence: u64) {
    let Some(durable) = w.durable_sequence() else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while durable.load_acquire() < sequence {
        assert!(Instant::now() < deadline, "{sequence} never became durable");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn group_commit_overlaps_appends_with_syncs_and_coalesces_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let config = cfg(tmp.path(), 1 << 20, FlushPolicy::Batch);
    let io = FaultyIo::new();
    let mut w = JournalWriter::open_with_io(&config, io.clone()).unwrap();
    let durable = w.durable_sequence().expect("batch commits on the syncer");
    let base = io.syncs();
    io.hold_syncs.store(true, Ordering::SeqCst);
    // Three batches while the disk holds the first sync: appending never waits for it...
    for (from, to) in [(1, 10), (11, 20), (21, 30)] {
        write(&mut w, from, to, 10);
    }
    // ...and nothing is durable (nor may be acknowledged) before its sync completes.
    thread::sleep(Duration::from_millis(20));
    assert_eq!(durable.load_acquire(), 0);
    io.hold_syncs.store(false, Ordering::SeqCst);
    wait_durable(&w, 30);
    let syncs = io.syncs() - base;
    assert!(
        (1..=2).contains(&syncs),
        "batches appended during a sync share the next one: {syncs} syncs for 3 batches"
    );
    drop(w);
    assert_eq!(read_all(tmp.path()), 30);
}

#[test]
fn failed_sync_is_returned_and_poisons_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let config = cfg(tmp.path(), TINY_SEGMENT_BYTES, FlushPolicy::Batch);
    let io = FaultyIo::new();
    let mut w = JournalWriter::open_with_io(&config, io.clone()).unwrap();
    write(&mut w, 1, 20, 10);
    wait_durable(&w, 20);
    io.fail_sync.store(true, Ordering::SeqCst);
    w.append(&rec(21, &payload(21))).unwrap();
    // The syncer's failure reaches the writer at its next call (`tick` while idle).
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match w.end_batch().and_then(|()| w.tick()) {
            Ok(()) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            other => break other,
        }
    };
    assert!(matches!(first, Err(JournalError::Io(_))), "{first:?}");
    let durable = w.durable_sequence().unwrap().load_acquire();
    assert_eq!(durable, 20, "the failed batch never counts as durable");
    for result in [
        w.append(&rec(22, &payload(22))),
        w.end_batch(),
        w.sync(),
        w.tick(),
    ] {
        assert!(
            matches!(result, Err(JournalError::Poisoned { .. })),
            "{result:?}"
        );
    }
    drop(w);
    // Reopening re-runs recovery from what is on disk (here the page cache kept record 21).
    let w = JournalWriter::open(&config).unwrap();
    assert_eq!(w.last_sequence(), 21);
}

#[test]
fn failed_rename_at_rollover_poisons_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let config = cfg(tmp.path(), TINY_SEGMENT_BYTES, FlushPolicy::Batch);
    let io = FaultyIo::new();
    let mut w = JournalWriter::open_with_io(&config, io.clone()).unwrap();
    io.fail_rename.store(true, Ordering::SeqCst);
    let mut seq = 0;
    let err = loop {
        seq += 1;
        if let Err(err) = w.append(&rec(seq, &payload(seq))) {
            break err;
        }
    };
    assert!(matches!(err, JournalError::FileIo { .. }), "{err}");
    assert!(matches!(
        w.append(&rec(seq, &payload(seq))),
        Err(JournalError::Poisoned { .. })
    ));
    drop(w);
    let mut w = JournalWriter::open(&config).unwrap();
    assert_eq!(w.last_sequence(), seq - 1);
    write(&mut w, seq, seq + 100, 10);
    drop(w);
    assert_eq!(read_all(tmp.path()), seq + 100);
}

#[test]
fn failed_allocation_is_disk_full_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let config = cfg(
        &tmp.path().join("a"),
        TINY_SEGMENT_BYTES,
        FlushPolicy::Batch,
    );
    let io = FaultyIo::new();
    io.allocs_left.store(0, Ordering::SeqCst);
    let err = JournalWriter::open_with_io(&config, io.clone()).unwrap_err();
    assert!(matches!(err, JournalError::DiskFull { .. }), "{err}");

    // First segment allocates; the spare for the rollover does not.
    let io = FaultyIo::new();
    io.allocs_left.store(1, Ordering::SeqCst);
    let mut w = JournalWriter::open_with_io(&config, io.clone()).unwrap();
    let mut seq = 0;
    let err = loop {
        seq += 1;
        match w.append(&rec(seq, &payload(seq))) {
            Ok(()) => w.end_batch().unwrap(),
            Err(err) => break err,
        }
    };
    assert!(matches!(err, JournalError::DiskFull { .. }), "{err}");
    assert_eq!(
        w.last_sequence(),
        seq - 1,
        "the record that needed space was not written"
    );
    assert_eq!(read_all(&config.dir), seq - 1);
    // Space is back: the same record goes in, nothing was lost or duplicated.
    io.allocs_left.store(u64::MAX, Ordering::SeqCst);
    write(&mut w, seq, seq + 200, 10);
    drop(w);
    assert_eq!(read_all(&config.dir), seq + 200);
}
