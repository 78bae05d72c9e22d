//! Versioning: a journal and snapshot written by an *older* version of an application (message
//! version 1, state schema 1), kept as golden files in tests/golden/ledger-v1/, must replay with
//! the current code (message version 2, state schema 2) to the expected state hash, both from
//! the snapshot and by full replay.
//!
//! `LedgerV1` below is the old code, kept only to regenerate the golden files:
//! `cargo test --release --test versioning -- --ignored write_golden_files`.

use keel::codec::{self, CodecError};
use keel::snapshot::{load_serde, save_serde, StateError};
use keel::{
    Config, Engine, FlushPolicy, Message, Outcome, Output, Processor, Submission, WaitStrategy,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const CREDIT: u16 = 1;

/// The hash the golden files must replay to with today's code.
const EXPECTED_HASH: u64 = 0x2012_368d;

/// Version 1 of the Credit message: 32-bit amounts.
#[derive(Serialize, Deserialize)]
struct CreditV1 {
    account: u32,
    amount: i32,
}

/// Version 2: 64-bit amounts and a memo id.
#[derive(Serialize, Deserialize)]
struct CreditV2 {
    account: u32,
    amount: i64,
    memo: u32,
}

impl From<CreditV1> for CreditV2 {
    fn from(v1: CreditV1) -> Self {
        CreditV2 {
            account: v1.account,
            amount: i64::from(v1.amount),
            memo: 0,
        }
    }
}

/// State schema 1.
#[derive(Default, Serialize, Deserialize, PartialEq, Debug)]
struct LedgerStateV1 {
    balances: BTreeMap<u32, i32>,
}

/// The old application (schema 1, message version 1): the golden files' author.
#[derive(Default)]
struct LedgerV1 {
    state: LedgerStateV1,
}

impl Processor for LedgerV1 {
    fn apply(&mut self, message: &Message<'_>, _out: &mut Output<'_>) -> Outcome {
        let Ok(c) = codec::decode::<CreditV1>(message.payload) else {
            return Outcome::Rejected(1);
        };
        *self.state.balances.entry(c.account).or_default() += c.amount;
        Outcome::Accepted
    }
    fn state_hash(&self) -> u64 {
        0
    }
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(&self.state, out)
    }
    fn load_state(&mut self, _: u32, bytes: &[u8]) -> Result<(), StateError> {
        self.state = load_serde(bytes)?;
        Ok(())
    }
}

/// State schema 2: 64-bit balances and a count of applied credits.
#[derive(Default, Serialize, Deserialize, PartialEq, Debug)]
struct LedgerState {
    balances: BTreeMap<u32, i64>,
    credits: u64,
}

/// The current application.
#[derive(Default)]
struct Ledger {
    state: LedgerState,
}

impl Ledger {
    /// Decodes any supported version of Credit and upcasts it to the current one.
    fn decode_credit(message: &Message<'_>) -> Option<CreditV2> {
        match message.header.version {
            1 => codec::decode::<CreditV1>(message.payload)
                .ok()
                .map(CreditV2::from),
            2 => codec::decode::<CreditV2>(message.payload).ok(),
            _ => None,
        }
    }
}

impl Processor for Ledger {
    fn apply(&mut self, message: &Message<'_>, _out: &mut Output<'_>) -> Outcome {
        let Some(c) = Self::decode_credit(message) else {
            return Outcome::Rejected(1);
        };
        *self.state.balances.entry(c.account).or_default() += c.amount;
        self.state.credits += 1;
        Outcome::Accepted
    }
    fn state_hash(&self) -> u64 {
        let mut bytes = Vec::new();
        save_serde(&self.state, &mut bytes).unwrap();
        u64::from(crc32c::crc32c(&bytes))
    }
    fn schema_version(&self) -> u32 {
        2
    }
    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(&self.state, out)
    }
    fn load_state(&mut self, schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        self.state = match schema_version {
            // Upgrade: widen balances; the credit count before the upgrade is unknown, so it
            // restarts from the number of accounts (documented app rule, deterministic).
            1 => {
                let old: LedgerStateV1 = load_serde(bytes)?;
                let credits = old.balances.len() as u64;
                let balances = old
                    .balances
                    .into_iter()
                    .map(|(k, v)| (k, i64::from(v)))
                    .collect();
                LedgerState { balances, credits }
            }
            2 => load_serde(bytes)?,
            found => return Err(StateError::UnsupportedSchema { found, current: 2 }),
        };
        Ok(())
    }
}

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ledger-v1")
}

fn config(dir: &Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 64;
    config.output_ring_capacity = 64;
    config.segment_size_bytes = 128 << 10;
    config.max_message_bytes = 256;
    config.wait = WaitStrategy::Yield;
    config.flush = FlushPolicy::Batch;
    config.snapshot_interval_messages = 0;
    config.snapshot_on_shutdown = false;
    config.discard_responses = true;
    config
}

/// Copies the golden journal segments and snapshots (nothing else) into a scratch directory.
fn copy_golden(to: &Path, with_snapshots: bool) {
    for sub in ["journal", "snapshots"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        if sub == "snapshots" && !with_snapshots {
            continue;
        }
        for entry in std::fs::read_dir(golden().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".seg") || name.ends_with(".snap") {
                std::fs::copy(&path, to.join(sub).join(name)).unwrap();
            }
        }
    }
}

fn credit_v1(account: u32, amount: i32) -> Vec<u8> {
    let mut v = Vec::new();
    codec::encode_to_vec(&CreditV1 { account, amount }, &mut v).unwrap();
    v
}

/// The state the golden journal must rebuild, computed independently of the files.
fn expected() -> LedgerState {
    let mut balances = BTreeMap::new();
    for i in 0..300u32 {
        *balances.entry(i % 17).or_insert(0i64) += i64::from(i as i32 * 3 - 200);
    }
    // 200 credits before the schema-1 snapshot: upgraded count = 17 accounts; then 100 more.
    LedgerState {
        balances,
        credits: 17 + 100,
    }
}

#[test]
#[ignore = "regenerates tests/golden; run by hand only when changing the golden workload"]
fn write_golden_files() {
    let dir = golden();
    let _ = std::fs::remove_dir_all(&dir);
    let mut engine = Engine::start(config(&dir), LedgerV1::default()).unwrap();
    let to = Submission {
        kind: CREDIT,
        version: 1,
        session_id: 1,
        correlation_id: 0,
    };
    for i in 0..300u32 {
        engine
            .submitter()
            .submit(to, &credit_v1(i % 17, i as i32 * 3 - 200))
            .unwrap();
        if i == 199 {
            engine.request_snapshot().unwrap();
        }
    }
    engine.shutdown().unwrap();
}

#[test]
fn old_snapshot_and_journal_replay_to_the_expected_state() {
    let dir = tempfile::tempdir().unwrap();
    copy_golden(dir.path(), true);
    let engine = Engine::start(config(dir.path()), Ledger::default()).unwrap();
    // The schema-1 snapshot was taken after the control message at sequence 201.
    assert_eq!(engine.recovered().snapshot_sequence, 201);
    assert_eq!(engine.recovered().replayed, 100);
    let ledger = engine.shutdown().unwrap();
    assert_eq!(ledger.state, expected());
    assert_eq!(ledger.state_hash(), EXPECTED_HASH);
}

#[test]
fn old_journal_alone_replays_with_upcast_messages() {
    let dir = tempfile::tempdir().unwrap();
    copy_golden(dir.path(), false);
    let engine = Engine::start(config(dir.path()), Ledger::default()).unwrap();
    assert_eq!(
        (
            engine.recovered().snapshot_sequence,
            engine.recovered().replayed
        ),
        (0, 301)
    );
    let ledger = engine.shutdown().unwrap();
    assert_eq!(ledger.state.balances, expected().balances);
    assert_eq!(ledger.state.credits, 300);
}

#[test]
fn new_messages_continue_after_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    copy_golden(dir.path(), true);
    let mut engine = Engine::start(config(dir.path()), Ledger::default()).unwrap();
    let mut v2 = Vec::new();
    codec::encode_to_vec(
        &CreditV2 {
            account: 1,
            amount: 1 << 40,
            memo: 9,
        },
        &mut v2,
    )
    .unwrap();
    let to = Submission {
        kind: CREDIT,
        version: 2,
        session_id: 1,
        correlation_id: 0,
    };
    assert_eq!(engine.submitter().submit(to, &v2).unwrap(), 302);
    let ledger = engine.shutdown().unwrap();
    assert_eq!(
        ledger.state.balances[&1],
        expected().balances[&1] + (1 << 40)
    );
}
