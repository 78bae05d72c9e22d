//! The snapshot reader: `SnapshotStore::load` (header, checksums, name) on arbitrary files,
//! then each application's `Processor::load_state` on arbitrary state bytes. Nothing may
//! panic or allocate without bound; a state that loads must survive save → load with the same
//! `state_hash` and the same bytes (the snapshot is canonical).
//!
//! Input: byte 0 is a set of flags. Without `WRAP` the rest is the whole file. With `WRAP` the
//! harness writes a valid header (schema version from the next byte) around the rest, so the
//! fuzzer reaches the application decoders past the CRCs.
//!
//! Shared by the fuzz target `snapshot_reader` and `tests/fuzz_regressions.rs`, which replays
//! every input in `fuzz/regressions/snapshot_reader/`.

use keel::snapshot::{file_name, SnapshotStore};
use keel::Processor;
use keel::Typed;
use keel_services::bookstore::{Bookstore, BookstoreLimits};
use keel_services::exchange::{Exchange, ExchangeLimits};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const WRAP: u8 = 1;
const EXCHANGE: u8 = 2;
const SEQUENCE: u64 = 7;

/// The scratch directory this process uses (under `/dev/shm` when there is one).
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    crate::scratch::dir(&DIR, "snapshot")
}

fn small_bookstore() -> Typed<Bookstore> {
    Typed::new(Bookstore::new(BookstoreLimits {
        max_books: 64,
        max_orders: 1024,
        max_customers: 64,
        ..BookstoreLimits::default()
    }))
}

fn small_exchange() -> Typed<Exchange> {
    Typed::new(Exchange::with_limits(ExchangeLimits {
        max_instruments: 16,
        max_accounts: 64,
        max_open_orders: 1024,
        max_price_levels: 256,
        ..ExchangeLimits::default()
    }))
}

/// One fuzz input: see the module docs.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let dir = dir();
    let store = SnapshotStore::open(dir, 1).unwrap();
    for file in store.list().unwrap() {
        fs::remove_file(file.path).unwrap();
    }
    if flags & WRAP != 0 {
        let Some((&schema, state)) = rest.split_first() else {
            return;
        };
        store
            .write(SEQUENCE, 0, u32::from(schema % 4), 0, state)
            .unwrap();
    } else {
        fs::write(dir.join(file_name(SEQUENCE)), rest).unwrap();
    }
    let files = store.list().unwrap();
    let Ok(snapshot) = store.load(&files[0]) else {
        return;
    };
    assert_eq!(snapshot.header.sequence, SEQUENCE);
    let schema = snapshot.header.schema_version;
    if flags & EXCHANGE != 0 {
        round_trip(small_exchange(), small_exchange, schema, snapshot.state());
    } else {
        round_trip(small_bookstore(), small_bookstore, schema, snapshot.state());
    }
}

/// Loads `state`; if it loads, saving and loading it again gives the same hash and bytes.
fn round_trip<P: Processor>(mut first: P, fresh: fn() -> P, schema: u32, state: &[u8]) {
    if first.load_state(schema, state).is_err() {
        return;
    }
    let hash = first.state_hash();
    let mut saved = Vec::new();
    first.save_state(&mut saved).expect("a loaded state saves");
    let mut second = fresh();
    second
        .load_state(first.schema_version(), &saved)
        .expect("a saved state loads");
    assert_eq!(second.state_hash(), hash, "save → load changed the state");
    let mut again = Vec::new();
    second.save_state(&mut again).unwrap();
    assert_eq!(again, saved, "the saved state is not canonical");
}
