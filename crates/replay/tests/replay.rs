//! `keel replay` against journals recorded by `keel::Engine` with a small test application
//! (a bank: deposits, withdrawals, balance and stats queries), including corrupt copies.
//! Every expectation is computed independently by applying the recorded commands directly.

mod data_dir_support;
use data_dir_support::{copy_tree, segments};
use keel::engine::{apply_message, Message, MessageHeader, Response, Status};
use keel::snapshot::{load_serde, save_serde, StateError};
use keel::Typed;
use keel::{Config, Engine, FlushPolicy, Outcome, Output, Processor, Submission, WaitStrategy};
use keel_replay::{self as replay, Exit, OutputLine};
use keel_services::{App, Command};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

const SEED: u64 = 7;
const ACCOUNTS: u32 = 8;
const DEPOSIT: u16 = 1;
const WITHDRAW: u16 = 2;
const BALANCE: u16 = 3;
const STATS: u16 = 4;
const INSUFFICIENT_FUNDS: u32 = 1;
const OVER_LIMIT: u32 = 2;
const UNSUPPORTED: u32 = 9;

#[derive(Serialize, Deserialize)]
struct Move {
    account: u32,
    amount: u64,
}

/// Deposit as encoded by version 2 clients.
#[derive(Serialize, Deserialize)]
struct DepositV2 {
    account: u32,
    amount: u64,
    memo: u32,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Debug)]
struct BankState {
    balances: Vec<u64>,
    deposited: u64,
    withdrawn: u64,
}

/// The test application. Version 1 reads only v1 deposits; version 2 also reads v2 deposits,
/// its clients send v2 deposits, and it refuses withdrawals above 500 (a behaviour change).
struct Bank<const V: u8> {
    s: BankState,
}

impl<const V: u8> Default for Bank<V> {
    fn default() -> Self {
        let balances = vec![0; ACCOUNTS as usize];
        Bank {
            s: BankState {
                balances,
                deposited: 0,
                withdrawn: 0,
            },
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Option<T> {
    keel::codec::decode(payload).ok()
}

impl<const V: u8> Bank<V> {
    fn deposit(&mut self, m: &Message<'_>) -> Option<Move> {
        match m.header.version {
            1 => decode::<Move>(m.payload),
            2 if V >= 2 => decode::<DepositV2>(m.payload).map(|d| Move {
                account: d.account,
                amount: d.amount,
            }),
            _ => None,
        }
    }

    fn balance_of(&mut self, account: u32) -> Option<&mut u64> {
        self.s.balances.get_mut(account as usize)
    }
}

impl<const V: u8> Processor for Bank<V> {
    fn apply(&mut self, m: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        match m.header.kind {
            DEPOSIT => {
                let Some(d) = self.deposit(m) else {
                    return Outcome::Rejected(UNSUPPORTED);
                };
                let Some(balance) = self.balance_of(d.account) else {
                    return Outcome::Rejected(UNSUPPORTED);
                };
                *balance += d.amount;
                let now = *balance;
                self.s.deposited += d.amount;
                out.encode(&now).unwrap();
                Outcome::Accepted
            }
            WITHDRAW => {
                let Some(w) = decode::<Move>(m.payload) else {
                    return Outcome::Rejected(UNSUPPORTED);
                };
                if V >= 2 && w.amount > 500 {
                    return Outcome::Rejected(OVER_LIMIT);
                }
                let Some(balance) = self.balance_of(w.account) else {
                    return Outcome::Rejected(UNSUPPORTED);
                };
                if *balance < w.amount {
                    return Outcome::Rejected(INSUFFICIENT_FUNDS);
                }
                *balance -= w.amount;
                let now = *balance;
                self.s.withdrawn += w.amount;
                out.encode(&now).unwrap();
                Outcome::Accepted
            }
            BALANCE => {
                let Some(account) = decode::<u32>(m.payload) else {
                    return Outcome::Rejected(UNSUPPORTED);
                };
                let Some(balance) = self.balance_of(account).copied() else {
                    return Outcome::Rejected(UNSUPPORTED);
                };
                out.set_kind(1);
                out.encode(&balance).unwrap();
                Outcome::Accepted
            }
            STATS => {
                out.set_kind(2);
                out.encode(&(self.s.deposited, self.s.withdrawn)).unwrap();
                Outcome::Accepted
            }
            _ => Outcome::Rejected(UNSUPPORTED),
        }
    }

    fn state_hash(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let words = self
            .s
            .balances
            .iter()
            .chain([&self.s.deposited, &self.s.withdrawn]);
        for byte in words.flat_map(|w| w.to_le_bytes()) {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), keel::codec::CodecError> {
        save_serde(&self.s, out)
    }

    fn load_state(&mut self, _schema: u32, bytes: &[u8]) -> Result<(), StateError> {
        self.s = load_serde(bytes)?;
        Ok(())
    }
}

fn deposit_command<const V: u8>(account: u32, amount: u64) -> Command {
    let mut payload = Vec::new();
    if V >= 2 {
        keel::codec::encode_to_vec(
            &DepositV2 {
                account,
                amount,
                memo: 42,
            },
            &mut payload,
        )
        .unwrap();
    } else {
        keel::codec::encode_to_vec(&Move { account, amount }, &mut payload).unwrap();
    }
    Command {
        kind: DEPOSIT,
        version: if V >= 2 { 2 } else { 1 },
        payload,
    }
}

fn command<T: Serialize>(kind: u16, value: &T) -> Command {
    let mut payload = Vec::new();
    keel::codec::encode_to_vec(value, &mut payload).unwrap();
    Command {
        kind,
        version: 1,
        payload,
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn kind_name(kind: u16) -> &'static str {
    match kind {
        DEPOSIT => "deposit",
        WITHDRAW => "withdraw",
        BALANCE => "balance",
        STATS => "stats",
        _ => "unknown",
    }
}

impl<const V: u8> App for Bank<V> {
    const NAME: &'static str = "bank";

    fn validate(kind: u16, _version: u16, _payload: &[u8]) -> Result<(), keel::service::Invalid> {
        match kind {
            DEPOSIT | WITHDRAW | BALANCE | STATS => Ok(()),
            _ => Err(keel::service::Invalid::UnknownKind),
        }
    }

    fn parse_command(words: &[String]) -> Result<Command, String> {
        let num = |i: usize| -> Result<u64, String> {
            words
                .get(i)
                .ok_or("missing argument")?
                .parse()
                .map_err(|e| format!("{e}"))
        };
        match words.first().map(String::as_str) {
            Some("deposit") => Ok(deposit_command::<V>(num(1)? as u32, num(2)?)),
            Some("withdraw") => Ok(command(
                WITHDRAW,
                &Move {
                    account: num(1)? as u32,
                    amount: num(2)?,
                },
            )),
            Some("balance") => Ok(command(BALANCE, &(num(1)? as u32))),
            Some("stats") => Ok(command(STATS, &())),
            _ => Err(Self::command_help().into()),
        }
    }

    fn command_help() -> &'static str {
        "deposit ACCOUNT AMOUNT\nwithdraw ACCOUNT AMOUNT\nbalance ACCOUNT\nstats"
    }

    fn describe_message(message: &Message<'_>) -> Value {
        let kind = kind_name(message.header.kind);
        let body = match message.header.kind {
            WITHDRAW => decode::<Move>(message.payload)
                .map(|m| json!({"account": m.account, "amount": m.amount})),
            DEPOSIT => Bank::<2>::default()
                .deposit(message)
                .map(|m| json!({"account": m.account, "amount": m.amount})),
            BALANCE => decode::<u32>(message.payload).map(|a| json!({"account": a})),
            _ => None,
        };
        json!({"kind": kind, "version": message.header.version, "body": body})
    }

    fn describe_response(request_kind: u16, response: &Response<'_>) -> Value {
        let status = format!("{:?}", response.header.status).to_lowercase();
        let body = match (response.header.status, request_kind) {
            (Status::Accepted, STATS) => decode::<(u64, u64)>(response.payload)
                .map(|(d, w)| json!({"deposited": d, "withdrawn": w})),
            (Status::Accepted, _) => decode::<u64>(response.payload).map(|b| json!({"balance": b})),
            _ => None,
        };
        json!({"status": status, "reason": response.header.reason, "body": body})
    }

    fn describe_state(&self) -> Value {
        json!({
            "accounts": self.s.balances.len(),
            "total": self.s.balances.iter().sum::<u64>(),
            "deposited": self.s.deposited,
            "withdrawn": self.s.withdrawn,
        })
    }

    fn workload(seed: u64, i: u64) -> Command {
        let r = splitmix(seed ^ splitmix(i));
        let account = (r % u64::from(ACCOUNTS)) as u32;
        let amount = (r >> 8) % 1000 + 1;
        match (r >> 40) % 20 {
            0 => command(BALANCE, &account),
            1..=7 => command(
                WITHDRAW,
                &Move {
                    account,
                    amount: amount + 100,
                },
            ),
            _ => deposit_command::<V>(account, amount),
        }
    }

    fn setup(_seed: u64) -> Vec<Command> {
        Vec::new()
    }
}

type V1 = Bank<1>;
type V2 = Bank<2>;

const MESSAGES: u64 = 5_100;
const SNAPSHOT_EVERY: u64 = 1_000;

/// A journal recorded by the engine: what went in, by sequence (`None`: a snapshot request).
struct Recorded {
    dir: tempfile::TempDir,
    by_sequence: Vec<Option<Command>>,
    sessions: Vec<u64>,
}

impl Recorded {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn last(&self) -> u64 {
        self.by_sequence.len() as u64 - 1
    }

    fn snapshot_sequences(&self) -> Vec<u64> {
        (1..=self.last())
            .filter(|&s| self.by_sequence[s as usize].is_none())
            .collect()
    }

    /// Applies message `sequence` (if not a control message) to `app`, directly.
    fn apply<A: App>(&self, app: &mut A, sequence: u64, buf: &mut [u8]) {
        if let Some(c) = &self.by_sequence[sequence as usize] {
            let header = MessageHeader {
                sequence,
                kind: c.kind,
                version: c.version,
                ..Default::default()
            };
            apply_message(
                app,
                &Message {
                    header,
                    payload: &c.payload,
                },
                buf,
            );
        }
    }

    /// The state after `at`, by applying the commands directly (no engine, no journal).
    fn state_at<A: App>(&self, at: u64) -> A {
        let mut app = A::default();
        let mut buf = vec![0u8; 4096];
        for sequence in 1..=at {
            self.apply(&mut app, sequence, &mut buf);
        }
        app
    }

    /// The first sequence `>= from` after which `f` holds on the directly computed state.
    fn first_where<A: App>(&self, from: u64, f: impl Fn(&A) -> bool) -> Option<u64> {
        let mut app = A::default();
        let mut buf = vec![0u8; 4096];
        for sequence in 0..=self.last() {
            if sequence > 0 {
                self.apply(&mut app, sequence, &mut buf);
            }
            if sequence >= from && f(&app) {
                return Some(sequence);
            }
        }
        None
    }
}

fn record<A: App>() -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let config = {
        let mut config = Config::with_data_dir(dir.path());
        config.ring_capacity = 1024;
        config.output_ring_capacity = 1024;
        config.segment_size_bytes = 128 << 10;
        config.flush = FlushPolicy::None;
        config.wait = WaitStrategy::PARK;
        config.discard_responses = true;
        config.snapshot_interval_messages = 0;
        config.snapshot_on_shutdown = false;
        config.snapshot_retain = 100;
        config
    };
    let mut engine = Engine::start(config, A::default()).unwrap();
    let mut by_sequence = vec![None];
    let mut sessions = vec![0];
    for i in 0..MESSAGES {
        let c = A::workload(SEED, i);
        let session_id = i % 3 + 1;
        let to = Submission {
            kind: c.kind,
            version: c.version,
            session_id,
            correlation_id: i,
        };
        let sequence = engine.submitter().submit(to, &c.payload).unwrap();
        assert_eq!(sequence, by_sequence.len() as u64);
        by_sequence.push(Some(c));
        sessions.push(session_id);
        if (i + 1) % SNAPSHOT_EVERY == 0 {
            let sequence = engine.request_snapshot().unwrap();
            assert_eq!(sequence, by_sequence.len() as u64);
            by_sequence.push(None);
            sessions.push(0);
        }
    }
    engine.shutdown().unwrap();
    Recorded {
        dir,
        by_sequence,
        sessions,
    }
}

/// Runs `keel replay --data-dir DIR WORDS...` as application `A`; returns exit and output.
fn replay_text<A: App>(dir: &Path, words: &[&str]) -> (Exit, String) {
    let mut all = vec!["--data-dir", dir.to_str().unwrap(), "--no-progress"];
    all.extend_from_slice(words);
    let args = replay::parse_args(&all).unwrap_or_else(|e| panic!("{all:?}: {e}"));
    let mut out = Vec::new();
    let exit = replay::run_with::<A>(&args, &mut out).unwrap_or_else(|e| panic!("{all:?}: {e}"));
    (exit, String::from_utf8(out).unwrap())
}

/// The same with `--json`: one document.
fn replay_json<A: App>(dir: &Path, words: &[&str]) -> (Exit, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(words);
    let (exit, out) = replay_text::<A>(dir, &all);
    (
        exit,
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")),
    )
}

/// The same with `--json`: JSON lines.
fn replay_lines<A: App>(dir: &Path, words: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(words);
    let (exit, out) = replay_text::<A>(dir, &all);
    assert_eq!(exit, Exit::Ok);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// (offset, sequence) of every record in a segment, walking the byte map of
/// docs/journal_format.md independently of the library.
fn records_in(segment: &Path) -> Vec<(u64, u64)> {
    let bytes = fs::read(segment).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let mut offset = 64;
    let mut out = Vec::new();
    while offset + 56 <= bytes.len() && u32_at(offset) == u32::from_le_bytes(*b"KREC") {
        let payload = u32_at(offset + 8) as usize;
        let sequence = u64::from_le_bytes(bytes[offset + 16..offset + 24].try_into().unwrap());
        out.push((offset as u64, sequence));
        offset += (56 + payload).next_multiple_of(8);
    }
    out
}

fn poke(path: &Path, offset: u64, f: impl FnOnce(&mut [u8])) {
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes[offset as usize..]);
    fs::write(path, bytes).unwrap();
}

fn hex(h: u64) -> String {
    format!("{h:#018x}")
}

#[test]
fn info_counts_segments_kinds_and_snapshots() {
    let rec = record::<V1>();
    let (exit, doc) = replay_json::<V1>(rec.path(), &["info"]);
    assert_eq!(exit, Exit::Ok);
    let j = &doc["journal"];
    assert_eq!(j["records"], rec.last());
    assert_eq!(
        (j["first_sequence"].as_u64(), j["last_sequence"].as_u64()),
        (Some(1), Some(rec.last()))
    );
    assert!(j["segments"].as_array().unwrap().len() >= 2, "{j}");
    assert_eq!(j["format_versions"], json!([1]));
    assert!(j["first_timestamp"]["ns"].as_u64() <= j["last_timestamp"]["ns"].as_u64());
    let mut expected = std::collections::BTreeMap::new();
    for c in &rec.by_sequence[1..] {
        let key = c.as_ref().map_or("control:snapshot", |c| kind_name(c.kind));
        *expected.entry(key.to_owned()).or_insert(0u64) += 1;
    }
    let counted: std::collections::BTreeMap<String, u64> = j["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_owned(),
                k["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counted, expected);
    let snaps = doc["snapshots"]["files"].as_array().unwrap();
    let seqs: Vec<u64> = snaps
        .iter()
        .map(|s| s["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, rec.snapshot_sequences());
    assert!(snaps.iter().all(|s| s["valid"] == true));
    let (exit, text) = replay_text::<V1>(rec.path(), &["info"]);
    assert_eq!(exit, Exit::Ok);
    assert!(
        text.contains("deposit") && text.contains("control:snapshot"),
        "{text}"
    );
}

#[test]
fn verify_sound_and_torn_tail_have_distinct_exits_and_places() {
    let rec = record::<V1>();
    let (exit, doc) = replay_json::<V1>(rec.path(), &["verify"]);
    assert_eq!((exit, exit.code()), (Exit::Ok, 0), "{doc}");
    assert_eq!(doc["verdict"], "sound");
    assert_eq!(doc["journal"]["last_sequence"], rec.last());

    // Torn tail, two ways: the last record's magic zeroed (interrupted publish), or its bytes
    // garbled (a partly persisted write). Both: exit 3, at that record.
    let segs = segments(rec.path());
    let last_seg = segs.last().unwrap();
    let &(offset, sequence) = records_in(last_seg).last().unwrap();
    assert_eq!(sequence, rec.last());
    for (damage, fill) in [(0usize, 0u8), (60, 0xEE)] {
        let copy = tempfile::tempdir().unwrap();
        copy_tree(rec.path(), copy.path());
        let seg = copy
            .path()
            .join("journal")
            .join(last_seg.file_name().unwrap());
        poke(&seg, offset, |b| b[damage..damage + 4].fill(fill));
        let (exit, doc) = replay_json::<V1>(copy.path(), &["verify"]);
        assert_eq!((exit, exit.code()), (Exit::TornTail, 3), "{doc}");
        let p = &doc["problems"][0];
        assert_eq!(p["severity"], "torn_tail");
        assert_eq!(p["file"], seg.display().to_string());
        assert_eq!(
            (p["offset"].as_u64(), p["sequence"].as_u64()),
            (Some(offset), Some(sequence))
        );
        // Every other command still reads the journal up to the tear.
        let (exit, doc) = replay_json::<V1>(copy.path(), &["info"]);
        assert_eq!(
            (exit, doc["journal"]["last_sequence"].as_u64()),
            (Exit::Ok, Some(sequence - 1))
        );
    }
}

/// A copy of the data directory `data` whose segment `segment` (a path in `data`) has a flipped
/// payload byte in its 101st record: the copy, that segment in it, the record's offset and
/// sequence.
fn damaged_copy(data: &Path, segment: &Path) -> (tempfile::TempDir, PathBuf, u64, u64) {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(data, copy.path());
    let first_seg = copy
        .path()
        .join("journal")
        .join(segment.file_name().unwrap());
    let (bad_offset, bad_sequence) = records_in(&first_seg)[100];
    poke(&first_seg, bad_offset + 57, |b| b[0] ^= 0x40);
    (copy, first_seg, bad_offset, bad_sequence)
}

#[test]
fn verify_corruption_names_every_damaged_place() {
    let rec = record::<V1>();
    let segs = segments(rec.path());
    // Corruption: a flipped byte mid-journal (valid records follow), and a second one in a
    // later segment: exit 4, both reported with file, offset and sequence.
    let (copy, first_seg, bad_offset, bad_sequence) = damaged_copy(rec.path(), &segs[0]);
    let later_seg = copy
        .path()
        .join("journal")
        .join(segs[segs.len() - 1].file_name().unwrap());
    let (later_offset, later_sequence) = records_in(&later_seg)[10];
    poke(&later_seg, later_offset + 30, |b| b[0] ^= 1);
    let (exit, doc) = replay_json::<V1>(copy.path(), &["verify"]);
    assert_eq!((exit, exit.code()), (Exit::JournalCorrupted, 4), "{doc}");
    let problems = doc["problems"].as_array().unwrap();
    let places: Vec<(String, u64, u64)> = problems
        .iter()
        .filter(|p| p["severity"] == "corruption")
        .map(|p| {
            (
                p["file"].as_str().unwrap().to_owned(),
                p["offset"].as_u64().unwrap(),
                p["sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        places,
        vec![
            (first_seg.display().to_string(), bad_offset, bad_sequence),
            (
                later_seg.display().to_string(),
                later_offset,
                later_sequence
            ),
        ]
    );
    let (exit, text) = replay_text::<V1>(copy.path(), &["verify"]);
    assert_eq!(exit, Exit::JournalCorrupted);
    assert!(
        text.contains(&format!("at offset {bad_offset}, sequence {bad_sequence}")),
        "{text}"
    );
    // A command that reads into the damage stops with the same status and place.
    let args = replay::parse_args(["--data-dir", copy.path().to_str().unwrap(), "dump"]).unwrap();
    let err = replay::run_with::<V1>(&args, &mut std::io::sink()).unwrap_err();
    assert_eq!(err.exit(), Exit::JournalCorrupted);
    assert!(
        err.to_string().contains(&format!("offset {bad_offset}")),
        "{err}"
    );
}

#[test]
fn verify_reports_a_corrupt_snapshot_and_state_falls_back() {
    let rec = record::<V1>();
    let snaps = snapshot_files(rec.path());
    let newest = snaps.last().unwrap();
    poke(newest, 60, |b| b[0] ^= 0xFF);
    let (exit, doc) = replay_json::<V1>(rec.path(), &["verify"]);
    assert_eq!((exit, exit.code()), (Exit::SnapshotCorrupted, 5), "{doc}");
    let p = &doc["problems"][0];
    assert_eq!(
        (p["severity"].as_str(), p["file"].as_str()),
        (Some("snapshot"), newest.to_str())
    );
    let at = rec.last().to_string();
    let (exit, doc) = replay_json::<V1>(rec.path(), &["state", "--at", &at]);
    assert_eq!(exit, Exit::Ok);
    let older = rec.snapshot_sequences()[snaps.len() - 2];
    assert_eq!(doc["snapshot"], older);
    assert_eq!(
        doc["state_hash"],
        hex(rec.state_at::<V1>(rec.last()).state_hash())
    );
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn dump_ranges_and_filters() {
    let rec = record::<V1>();
    let lines = replay_lines::<V1>(rec.path(), &["dump", "--from", "10", "--to", "20"]);
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (10..=20).collect::<Vec<_>>());
    for l in &lines {
        let c = rec.by_sequence[l["sequence"].as_u64().unwrap() as usize]
            .as_ref()
            .unwrap();
        assert_eq!(l["message"]["kind"], kind_name(c.kind));
        assert_eq!(l["kind"], c.kind);
    }
    let expect = |f: &dyn Fn(u64) -> bool| (1..=rec.last()).filter(|&s| f(s)).collect::<Vec<u64>>();
    let kind_is = |s: u64, k: u16| {
        rec.by_sequence[s as usize]
            .as_ref()
            .is_some_and(|c| c.kind == k)
    };
    let got = |words: &[&str]| -> Vec<u64> {
        let mut all = vec!["dump"];
        all.extend_from_slice(words);
        replay_lines::<V1>(rec.path(), &all)
            .iter()
            .map(|l| l["sequence"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        got(&["--kind", "deposit"]),
        expect(&|s| kind_is(s, DEPOSIT))
    );
    assert_eq!(got(&["--kind", "2"]), expect(&|s| kind_is(s, WITHDRAW)));
    assert_eq!(
        got(&["--kind", "control:snapshot"]),
        rec.snapshot_sequences()
    );
    assert_eq!(
        got(&["--session", "2", "--kind", "withdraw", "--kind", "3"]),
        expect(&|s| rec.sessions[s as usize] == 2 && (kind_is(s, WITHDRAW) || kind_is(s, BALANCE)))
    );
    assert_eq!(
        got(&["--from", "4000", "--limit", "5"]),
        (4000..4005).collect::<Vec<_>>()
    );
    // Time filters, by nanoseconds and by RFC 3339: exactly the records stamped in range.
    let all = replay_lines::<V1>(rec.path(), &["dump"]);
    let (t1, t2) = (&all[999], &all[2999]);
    let (n1, n2) = (
        t1["timestamp_ns"].as_u64().unwrap(),
        t2["timestamp_ns"].as_u64().unwrap(),
    );
    let in_range: Vec<u64> = all
        .iter()
        .filter(|l| (n1..=n2).contains(&l["timestamp_ns"].as_u64().unwrap()))
        .map(|l| l["sequence"].as_u64().unwrap())
        .collect();
    assert!(in_range.contains(&1000) && in_range.contains(&3000));
    assert_eq!(
        got(&["--since", &n1.to_string(), "--until", &n2.to_string()]),
        in_range
    );
    let (r1, r2) = (
        t1["timestamp"].as_str().unwrap(),
        t2["timestamp"].as_str().unwrap(),
    );
    assert_eq!(got(&["--since", r1, "--until", r2]), in_range);
    let (exit, text) = replay_text::<V1>(rec.path(), &["dump", "--to", "3"]);
    assert_eq!((exit, text.lines().count()), (Exit::Ok, 3), "{text}");
}

#[test]
fn state_with_and_without_snapshots_is_equal_and_answers_queries() {
    let rec = record::<V1>();
    for at in [0, 1, 1001, 2500, rec.last()] {
        let at_s = at.to_string();
        let (exit, with) = replay_json::<V1>(rec.path(), &["state", "--at", &at_s, "balance", "3"]);
        assert_eq!(exit, Exit::Ok);
        let (_, without) =
            replay_json::<V1>(rec.path(), &["state", "--at", &at_s, "--full", "balance 3"]);
        let direct = rec.state_at::<V1>(at);
        assert_eq!(with["state_hash"], hex(direct.state_hash()), "at {at}");
        assert_eq!(with["state_hash"], without["state_hash"]);
        assert_eq!(with["state"], direct.describe_state());
        assert_eq!(without["snapshot"], Value::Null);
        assert_eq!(without["replayed"], at);
        let query = &with["query"];
        assert_eq!(query["response"]["body"]["balance"], direct.s.balances[3]);
        assert_eq!(query["changed_state"], false);
        assert_eq!(query, &without["query"]);
    }
    let (_, doc) = replay_json::<V1>(rec.path(), &["state", "--at", "2500"]);
    assert_eq!(doc["snapshot"], rec.snapshot_sequences()[1]);
    // Without --at: the end of the journal. A command that changes the state is reported.
    let (_, end) = replay_json::<V1>(rec.path(), &["state", "deposit", "1", "5"]);
    assert_eq!(end["sequence"], rec.last());
    assert_eq!(end["query"]["changed_state"], true);
    let (exit, text) = replay_text::<V1>(rec.path(), &["state", "--at", "50", "stats"]);
    assert_eq!(exit, Exit::Ok);
    assert!(
        text.contains("state hash") && text.contains("deposited"),
        "{text}"
    );
}

#[test]
fn find_hash_with_and_without_bisect() {
    let rec = record::<V1>();
    // A deposit after the second snapshot: deposits always change the (monotone) totals, so
    // the state at `target` occurs once.
    let target = (2200..rec.last())
        .find(|&s| {
            rec.by_sequence[s as usize]
                .as_ref()
                .is_some_and(|c| c.kind == DEPOSIT)
        })
        .unwrap();
    let hash = hex(rec.state_at::<V1>(target).state_hash());
    for bisect in [false, true] {
        let mut words = vec!["find", "--hash", &hash];
        if bisect {
            words.push("--bisect");
        }
        let (exit, doc) = replay_json::<V1>(rec.path(), &words);
        assert_eq!(
            (exit, doc["sequence"].as_u64()),
            (Exit::Ok, Some(target)),
            "{doc}"
        );
    }
}

#[test]
fn find_monotone_field_condition_with_and_without_bisect() {
    let rec = record::<V1>();
    let target = (2200..rec.last())
        .find(|&s| {
            rec.by_sequence[s as usize]
                .as_ref()
                .is_some_and(|c| c.kind == DEPOSIT)
        })
        .unwrap();
    // deposited >= the total at `target`: monotone, so bisecting gives the same answer.
    let wanted = rec.state_at::<V1>(target).s.deposited;
    let first = rec
        .first_where::<V1>(0, |b| b.s.deposited >= wanted)
        .unwrap();
    let wanted = wanted.to_string();
    let base = [
        "find",
        "--query",
        "stats",
        "--field",
        "/body/deposited",
        "--ge",
        &wanted,
    ];
    let (exit, plain) = replay_json::<V1>(rec.path(), &base);
    assert_eq!(
        (exit, plain["sequence"].as_u64()),
        (Exit::Ok, Some(first)),
        "{plain}"
    );
    assert_eq!(plain["value"], rec.state_at::<V1>(first).s.deposited);
    let mut with_bisect = base.to_vec();
    with_bisect.push("--bisect");
    let (exit, bisected) = replay_json::<V1>(rec.path(), &with_bisect);
    assert_eq!(
        (exit, bisected["sequence"].as_u64()),
        (Exit::Ok, Some(first)),
        "{bisected}"
    );
    assert!(
        bisected["replayed"].as_u64() < plain["replayed"].as_u64(),
        "{bisected}"
    );
    assert_eq!(bisected["bisect_start"], rec.snapshot_sequences()[1]);
}

#[test]
fn find_other_conditions_not_found_and_mutating_queries() {
    let rec = record::<V1>();
    // A balance going below a value (not monotone), from a later start.
    let (exit, doc) = replay_json::<V1>(
        rec.path(),
        &[
            "find",
            "--from",
            "3000",
            "--query",
            "balance",
            "5",
            "--field",
            "/body/balance",
            "--lt",
            "100",
        ],
    );
    let expected = rec.first_where::<V1>(2999, |b| b.s.balances[5] < 100);
    assert_eq!(doc["sequence"].as_u64(), expected, "{doc}");
    assert_eq!(exit == Exit::Ok, expected.is_some());
    // Never true: exit 8. A query that changes the state is refused.
    let (exit, _) = replay_json::<V1>(
        rec.path(),
        &[
            "find",
            "--query",
            "stats",
            "--field",
            "/body/deposited",
            "--gt",
            "1e18",
        ],
    );
    assert_eq!((exit, exit.code()), (Exit::NotFound, 8));
    let args = replay::parse_args([
        "--data-dir",
        rec.path().to_str().unwrap(),
        "find",
        "--query",
        "deposit 1 1",
        "--eq",
        "x",
    ])
    .unwrap();
    let err = replay::run_with::<V1>(&args, &mut std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[test]
fn outputs_save_and_diff_equal_copies() {
    let rec = record::<V1>();
    let saved = rec.path().join("outputs.jsonl");
    let (exit, doc) =
        replay_json::<V1>(rec.path(), &["outputs", "--save", saved.to_str().unwrap()]);
    assert_eq!(
        (exit, doc["outputs"].as_u64()),
        (Exit::Ok, Some(rec.last()))
    );
    let text = fs::read_to_string(&saved).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"format": "keel-replay-outputs", "version": 1, "app": "bank", "from": 1})
    );
    let outputs: Vec<OutputLine> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(outputs.len() as u64, rec.last());
    // The printed lines are the saved ones.
    let printed = replay_lines::<V1>(rec.path(), &["outputs", "--from", "5", "--to", "9"]);
    let printed: Vec<OutputLine> = printed
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    assert_eq!(printed, outputs[4..9]);

    let (exit, doc) =
        replay_json::<V1>(rec.path(), &["diff", "--against", saved.to_str().unwrap()]);
    assert_eq!(
        (exit, doc["equal"].as_bool(), doc["count"].as_u64()),
        (Exit::Ok, Some(true), Some(rec.last()))
    );
    let copy = tempfile::tempdir().unwrap();
    copy_tree(rec.path(), copy.path());
    let copy_s = copy.path().to_str().unwrap();
    let (exit, _) = replay_json::<V1>(rec.path(), &["diff", "--other", copy_s]);
    assert_eq!(exit, Exit::Ok);
    let (exit, _) = replay_json::<V1>(
        rec.path(),
        &["diff", "--other", copy_s, "--checkpoint", "500"],
    );
    assert_eq!(exit, Exit::Ok);
}

#[test]
fn diff_finds_the_first_difference_of_other_versions() {
    let rec = record::<V1>();
    let saved = rec.path().join("outputs.jsonl");
    let (exit, _) = replay_json::<V1>(rec.path(), &["outputs", "--save", saved.to_str().unwrap()]);
    assert_eq!(exit, Exit::Ok);
    // New code (version 2 refuses withdrawals over 500) against the saved outputs of v1.
    let first_change = (1..=rec.last())
        .find(|&s| {
            let c = rec.by_sequence[s as usize].as_ref();
            c.is_some_and(|c| {
                c.kind == WITHDRAW && decode::<Move>(&c.payload).unwrap().amount > 500
            })
        })
        .unwrap();
    let (exit, doc) =
        replay_json::<V2>(rec.path(), &["diff", "--against", saved.to_str().unwrap()]);
    assert_eq!((exit, exit.code()), (Exit::Mismatch, 7), "{doc}");
    let d = &doc["first_difference"];
    assert_eq!(d["sequence"], first_change);
    assert_eq!(
        (d["this"]["status"].as_str(), d["this"]["reason"].as_u64()),
        (Some("rejected"), Some(2))
    );
    assert_ne!(d["other"]["reason"], OVER_LIMIT);

    // A journal recorded by version 2 (its clients send v2 deposits), replayed by v1 code.
    let other = record::<V2>();
    let first_deposit = (1..=rec.last())
        .find(|&s| {
            other.by_sequence[s as usize]
                .as_ref()
                .is_some_and(|c| c.kind == DEPOSIT)
        })
        .unwrap();
    let (exit, doc) = replay_json::<V1>(
        rec.path(),
        &["diff", "--other", other.path().to_str().unwrap()],
    );
    assert_eq!(exit, Exit::Mismatch);
    assert_eq!(doc["first_difference"]["sequence"], first_deposit);
    assert_eq!(doc["first_difference"]["other"]["reason"], UNSUPPORTED);
    let (exit, doc) = replay_json::<V1>(
        rec.path(),
        &[
            "diff",
            "--other",
            other.path().to_str().unwrap(),
            "--checkpoint",
            "100",
        ],
    );
    // The first state difference, not the checkpoint that showed it.
    assert_eq!(
        (exit, doc["first_difference"]["sequence"].as_u64()),
        (Exit::Mismatch, Some(first_deposit))
    );
    // Version 2 code reads both journals alike.
    let (exit, _) = replay_json::<V2>(
        rec.path(),
        &[
            "diff",
            "--other",
            other.path().to_str().unwrap(),
            "--checkpoint",
            "100",
        ],
    );
    assert_eq!(exit, Exit::Ok);
}

#[test]
fn check_passes_and_nothing_is_modified() {
    let rec = record::<V1>();
    let fingerprint = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<(PathBuf, Vec<u8>)> = ["journal", "snapshots"]
            .iter()
            .flat_map(|d| fs::read_dir(dir.join(d)).unwrap())
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = fingerprint(rec.path());
    let (exit, doc) = replay_json::<V1>(rec.path(), &["check"]);
    assert_eq!(exit, Exit::Ok, "{doc}");
    assert_eq!(
        doc["full_replay"]["state_hash"],
        hex(rec.state_at::<V1>(rec.last()).state_hash())
    );
    let snaps = doc["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), rec.snapshot_sequences().len());
    assert!(
        snaps
            .iter()
            .all(|s| s["status"] == "ok" && s["outputs_equal"] == true),
        "{doc}"
    );
    let (exit, text) = replay_text::<V1>(rec.path(), &["check"]);
    assert_eq!(exit, Exit::Ok);
    assert!(text.contains("verdict: deterministic"), "{text}");
    for words in [
        &["info"][..],
        &["verify"],
        &["dump"],
        &["state", "stats"],
        &["outputs"],
    ] {
        replay_text::<V1>(rec.path(), words);
    }
    assert_eq!(
        before,
        fingerprint(rec.path()),
        "replay modified the files it read"
    );
}

#[test]
fn verify_of_a_live_journal_reports_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let config = {
        let mut config = Config::with_data_dir(dir.path());
        config.ring_capacity = 64;
        config.output_ring_capacity = 64;
        config.segment_size_bytes = 128 << 10;
        config.wait = WaitStrategy::PARK;
        config.discard_responses = true;
        config
    };
    let mut engine = Engine::start(config, V1::default()).unwrap();
    for i in 0..50 {
        let c = V1::workload(SEED, i);
        let to = Submission {
            kind: c.kind,
            version: c.version,
            ..Default::default()
        };
        engine.submitter().submit(to, &c.payload).unwrap();
    }
    while engine.journaled_sequence() < 50 {
        std::thread::yield_now();
    }
    let (exit, doc) = replay_json::<V1>(dir.path(), &["verify"]);
    assert_eq!((exit, exit.code()), (Exit::Locked, 6), "{doc}");
    assert_eq!(doc["journal"]["records"], 50);
    // Other commands need no lock.
    let (exit, doc) = replay_json::<V1>(dir.path(), &["state", "--at", "50"]);
    assert_eq!((exit, doc["replayed"].as_u64()), (Exit::Ok, Some(50)));
    engine.shutdown().unwrap();
    let (exit, _) = replay_json::<V1>(dir.path(), &["verify"]);
    assert_eq!(exit, Exit::Ok);
}

/// Prints the text output of every command (run by hand: `-- --ignored --nocapture`).
#[test]
#[ignore]
fn demo_text_output() {
    let rec = record::<V1>();
    let segs = segments(rec.path());
    let (offset, _) = records_in(&segs[0])[100];
    let copy = tempfile::tempdir().unwrap();
    copy_tree(rec.path(), copy.path());
    poke(
        &copy
            .path()
            .join("journal")
            .join(segs[0].file_name().unwrap()),
        offset + 57,
        |b| b[0] ^= 1,
    );
    poke(snapshot_files(copy.path()).last().unwrap(), 60, |b| {
        b[0] ^= 1
    });
    for words in [
        &["info"][..],
        &["verify"],
        &["dump", "--from", "1000", "--to", "1003"],
        &["state", "--at", "2500", "balance", "2"],
        &[
            "find",
            "--query",
            "stats",
            "--field",
            "/body/deposited",
            "--ge",
            "100000",
            "--bisect",
        ],
        &["find", "--hash", "0x1234"],
        &["outputs", "--from", "7", "--to", "9"],
        &["diff", "--other", copy.path().to_str().unwrap()],
        &["check"],
    ] {
        println!("==== keel replay {}", words.join(" "));
        demo_run(rec.path(), words);
    }
    for words in [
        &["verify"][..],
        &["info"],
        &["state", "--at", "4500"],
        &["check"],
    ] {
        println!("==== CORRUPT COPY keel replay {}", words.join(" "));
        demo_run(copy.path(), words);
    }
}

fn demo_run(dir: &Path, words: &[&str]) {
    let mut all = vec!["--data-dir", dir.to_str().unwrap(), "--no-progress"];
    all.extend_from_slice(words);
    let args = replay::parse_args(&all).unwrap();
    let mut out = Vec::new();
    match replay::run_with::<V1>(&args, &mut out) {
        Ok(exit) => println!("{}(exit {})", String::from_utf8_lossy(&out), exit.code()),
        Err(e) => println!(
            "{}ERROR {e} (exit {})",
            String::from_utf8_lossy(&out),
            e.exit().code()
        ),
    }
}

/// Progress bars and replay speed on 3 M messages (run by hand under a terminal).
#[test]
#[ignore]
fn demo_progress_and_speed() {
    let dir = tempfile::tempdir().unwrap();
    let config = {
        let mut config = Config::with_data_dir(dir.path());
        config.segment_size_bytes = 8 << 20;
        config.flush = FlushPolicy::None;
        config.wait = WaitStrategy::PARK;
        config.discard_responses = true;
        config.snapshot_on_shutdown = false;
        config
    };
    let mut engine = Engine::start(config, V1::default()).unwrap();
    for i in 0..3_000_000 {
        let c = V1::workload(SEED, i);
        let to = Submission {
            kind: c.kind,
            version: c.version,
            ..Default::default()
        };
        engine.submitter().submit(to, &c.payload).unwrap();
    }
    engine.shutdown().unwrap();
    let args = replay::parse_args(["--data-dir", dir.path().to_str().unwrap(), "check"]).unwrap();
    let t = std::time::Instant::now();
    let exit = replay::run_with::<V1>(&args, &mut std::io::stdout()).unwrap();
    eprintln!("check: {exit:?} in {:?}", t.elapsed());
}

/// The real applications through the same commands (run by hand while they evolve).
#[test]
#[ignore]
fn demo_real_apps() {
    fn go<A: App>(queries: &[&[&str]]) {
        let dir = tempfile::tempdir().unwrap();
        let config = {
            let mut config = Config::with_data_dir(dir.path());
            config.segment_size_bytes = 1 << 20;
            config.flush = FlushPolicy::None;
            config.wait = WaitStrategy::PARK;
            config.discard_responses = true;
            config.snapshot_interval_messages = 2_000;
            config
        };
        let mut engine = Engine::start(config, A::default()).unwrap();
        let commands = A::setup(SEED)
            .into_iter()
            .chain((0..10_000).map(|i| A::workload(SEED, i)));
        for c in commands {
            let to = Submission {
                kind: c.kind,
                version: c.version,
                ..Default::default()
            };
            engine.submitter().submit(to, &c.payload).unwrap();
        }
        engine.shutdown().unwrap();
        for q in queries {
            println!("==== {} keel replay {}", A::NAME, q.join(" "));
            demo_run_as::<A>(dir.path(), q);
        }
    }
    go::<keel::Typed<keel_services::bookstore::Bookstore>>(&[
        &["info"],
        &["verify"],
        &["dump", "--to", "3"],
        &["state", "--at", "5000", "book", "3"],
        &[
            "find", "--query", "book 3", "--field", "stock", "--lt", "50",
        ],
        &["outputs", "--from", "100", "--to", "102"],
        &["check"],
    ]);
    go::<keel::Typed<keel_services::exchange::Exchange>>(&[
        &["info"],
        &["dump", "--from", "500", "--to", "502"],
        &["state", "--at", "5000"],
        &["check"],
    ]);
}

fn demo_run_as<A: App>(dir: &Path, words: &[&str]) {
    let mut all = vec!["--data-dir", dir.to_str().unwrap(), "--no-progress"];
    all.extend_from_slice(words);
    let args = replay::parse_args(&all).unwrap();
    let mut out = Vec::new();
    match replay::run_with::<A>(&args, &mut out) {
        Ok(exit) => println!("{}(exit {})", String::from_utf8_lossy(&out), exit.code()),
        Err(e) => println!(
            "{}ERROR {e} (exit {})",
            String::from_utf8_lossy(&out),
            e.exit().code()
        ),
    }
}

/// A bookstore journal of `commands` (shell words, as `keel` parses them), one per sequence.
fn record_bookstore(commands: &[&str]) -> tempfile::TempDir {
    use keel_services::bookstore::Bookstore;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.flush = FlushPolicy::None;
    config.wait = WaitStrategy::PARK;
    config.discard_responses = true;
    config.snapshot_on_shutdown = false;
    let mut engine = Engine::start(config, Typed::new(Bookstore::default())).unwrap();
    for (i, words) in commands.iter().enumerate() {
        let words: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        let c = Typed::<Bookstore>::parse_command(&words).unwrap();
        let to = Submission {
            kind: c.kind,
            version: c.version,
            session_id: 1,
            correlation_id: i as u64,
        };
        engine.submitter().submit(to, &c.payload).unwrap();
    }
    engine.shutdown().unwrap();
    dir
}

/// Runs `keel replay` on a bookstore journal; returns the exit status, or the error.
fn bookstore_replay(dir: &Path, words: &[&str]) -> Result<(Exit, String), replay::ReplayError> {
    let mut all = vec!["--data-dir", dir.to_str().unwrap(), "--no-progress"];
    all.extend_from_slice(words);
    let args = replay::parse_args(&all).unwrap_or_else(|e| panic!("{all:?}: {e}"));
    let mut out = Vec::new();
    let exit =
        replay::run_with::<keel::Typed<keel_services::bookstore::Bookstore>>(&args, &mut out)?;
    Ok((exit, String::from_utf8(out).unwrap()))
}

const BOOKSTORE_ORDERS: [&str; 4] = [
    "add-book 1 1000 10 Dune",
    "order 7 1 1 1000",
    "order 8 1 1 1000",
    "restock 1 5",
];

#[test]
fn find_accepts_a_plain_field_name_and_refuses_an_unknown_field() {
    let dir = record_bookstore(&BOOKSTORE_ORDERS);
    for field in ["stock", "/response/stock"] {
        let words = [
            "--json", "find", "--query", "book", "1", "--field", field, "--lt", "9",
        ];
        let (exit, out) = bookstore_replay(dir.path(), &words).unwrap();
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (exit, &doc["sequence"]),
            (Exit::Ok, &json!(3)),
            "{field}: {doc}"
        );
        assert_eq!(doc["value"], 8, "{doc}");
    }
    let words = [
        "find", "--query", "book", "1", "--field", "stok", "--lt", "9",
    ];
    let err = bookstore_replay(dir.path(), &words).unwrap_err();
    assert_eq!(err.exit(), Exit::Usage, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("stok") && message.contains("stock"),
        "{message}"
    );
}

#[test]
fn dump_refuses_an_unknown_kind_and_accepts_both_spellings() {
    let dir = record_bookstore(&BOOKSTORE_ORDERS);
    let sequences = |kind: &str| -> Vec<u64> {
        let (exit, out) =
            bookstore_replay(dir.path(), &["--json", "dump", "--kind", kind]).unwrap();
        assert_eq!(exit, Exit::Ok);
        out.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["sequence"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(sequences("place-order"), [2, 3]);
    assert_eq!(sequences("place_order"), [2, 3]);
    assert_eq!(sequences("restock"), [4]);
    let err = bookstore_replay(dir.path(), &["dump", "--kind", "cancel"]).unwrap_err();
    assert_eq!(err.exit(), Exit::Usage, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("cancel")
            && message.contains("cancel-order")
            && message.contains("restock"),
        "{message}"
    );
}

#[test]
fn diff_checkpoint_reports_the_first_differing_sequence() {
    let this = record_bookstore(&BOOKSTORE_ORDERS);
    let mut changed = BOOKSTORE_ORDERS;
    changed[0] = "add-book 1 1000 11 Dune";
    let other = record_bookstore(&changed);
    let copy = tempfile::tempdir().unwrap();
    copy_tree(this.path(), copy.path());
    for every in ["1000000", "2", "1"] {
        let other = other.path().to_str().unwrap();
        let words = ["--json", "diff", "--other", other, "--checkpoint", every];
        let (exit, out) = bookstore_replay(this.path(), &words).unwrap();
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(exit, Exit::Mismatch, "{doc}");
        assert_eq!(
            doc["first_difference"]["sequence"], 1,
            "every {every}: {doc}"
        );
    }
    let words = [
        "diff",
        "--other",
        copy.path().to_str().unwrap(),
        "--checkpoint",
        "3",
    ];
    let (exit, out) = bookstore_replay(this.path(), &words).unwrap();
    assert_eq!(exit, Exit::Ok, "{out}");
}

#[test]
fn dump_continue_past_damage_reports_it_and_reads_the_next_segment() {
    let rec = record::<V1>();
    let segs = segments(rec.path());
    let (copy, _, bad_offset, bad_sequence) = damaged_copy(rec.path(), &segs[0]);
    let next_first = records_in(&segs[1])[0].1;
    let words = [
        "--json",
        "dump",
        "--continue-past-damage",
        "--to",
        &next_first.to_string(),
    ];
    let (exit, out) = replay_text::<V1>(copy.path(), &words);
    assert_eq!((exit, exit.code()), (Exit::JournalCorrupted, 4), "{out}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sequences: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["sequence"].as_u64())
        .collect();
    let mut expected: Vec<u64> = (1..bad_sequence).collect();
    expected.push(next_first);
    assert_eq!(sequences, expected);
    let damage = &lines[bad_sequence as usize - 1];
    assert_eq!(damage["continues_at"], next_first, "{damage}");
    let reason = damage["damage"].as_str().unwrap();
    assert!(reason.contains(&format!("offset {bad_offset}")), "{reason}");
    // Without the flag, dump still stops at the damage.
    let args = replay::parse_args(["--data-dir", copy.path().to_str().unwrap(), "dump"]).unwrap();
    let err = replay::run_with::<V1>(&args, &mut std::io::sink()).unwrap_err();
    assert_eq!(err.exit(), Exit::JournalCorrupted);
}
