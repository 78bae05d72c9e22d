//! `keel replay` on a journal with requests resent by exactly-once clients: the engine applied
//! each once (its deduplication table answered the copies), and a replay — from the start, or
//! from a snapshot carrying the table — rebuilds the engine's state and shows each copy's
//! original reply.

use keel::engine::{Message, Response};
use keel::snapshot::{load_file, SnapshotFile, StateError};
use keel::{Config, Engine, FlushPolicy, Outcome, Output, Processor, Submission, WaitStrategy};
use keel_replay::{self as replay, Exit, OutputLine};
use keel_services::{App, Command};
use serde_json::{json, Value};
use std::path::Path;

/// The bit of a journaled session id that marks an exactly-once client.
const CLIENT: u64 = 1 << 63;
const ADD: u16 = 1;
/// Replies the engine keeps per client (its default `dedup_window`).
const WINDOW: u64 = 8;

/// Adds each message's amount to a total, counting messages; replies with the running total.
/// Any second apply of a request changes its hash.
#[derive(Default)]
struct Tally {
    total: u64,
    applied: u64,
}

impl Processor for Tally {
    fn apply(&mut self, m: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        let Ok(amount) = m.payload.try_into().map(u64::from_le_bytes) else {
            return Outcome::Rejected(1);
        };
        self.total += amount;
        self.applied += 1;
        out.write(&self.total.to_le_bytes()).unwrap();
        Outcome::Accepted
    }

    fn state_hash(&self) -> u64 {
        self.total.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.applied
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), keel::codec::CodecError> {
        out.extend_from_slice(&self.total.to_le_bytes());
        out.extend_from_slice(&self.applied.to_le_bytes());
        Ok(())
    }

    fn load_state(&mut self, _schema: u32, bytes: &[u8]) -> Result<(), StateError> {
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        (self.total, self.applied) = (word(0), word(8));
        Ok(())
    }
}

fn add(amount: u64) -> Command {
    Command {
        kind: ADD,
        version: 1,
        payload: amount.to_le_bytes().to_vec(),
    }
}

impl App for Tally {
    const NAME: &'static str = "tally";

    fn parse_command(words: &[String]) -> Result<Command, String> {
        match words {
            [add_word, n] if add_word == "add" => n.parse().map(add).map_err(|e| format!("{e}")),
            _ => Err(Self::command_help().into()),
        }
    }

    fn validate(kind: u16, _version: u16, payload: &[u8]) -> Result<(), keel::service::Invalid> {
        match (kind, payload.len()) {
            (ADD, 8) => Ok(()),
            _ => Err(keel::service::Invalid::UnknownKind),
        }
    }

    fn command_help() -> &'static str {
        "add AMOUNT"
    }

    fn describe_message(message: &Message<'_>) -> Value {
        let amount = message.payload.try_into().map(u64::from_le_bytes).ok();
        json!({"type": "add", "amount": amount})
    }

    fn describe_response(_request_kind: u16, response: &Response<'_>) -> Value {
        let total = response.payload.try_into().map(u64::from_le_bytes).ok();
        json!({"status": format!("{:?}", response.header.status), "total": total})
    }

    fn describe_state(&self) -> Value {
        json!({"total": self.total, "applied": self.applied})
    }

    fn workload(_seed: u64, i: u64) -> Command {
        add(i + 1)
    }

    fn setup(_seed: u64) -> Vec<Command> {
        Vec::new()
    }
}

/// What the recording did: the engine's final state hash, the snapshot sequences, and for
/// each journaled copy of a request (sequence) the sequence that applied it (`None`: its
/// reply had left the window, `already-answered`).
struct Recorded {
    dir: tempfile::TempDir,
    state_hash: u64,
    snapshots: Vec<u64>,
    copies: Vec<(u64, Option<u64>)>,
}

/// One exactly-once client's requests: their ids and the sequences that applied them.
struct Client {
    id: u64,
    next_request: u64,
    applied_at: Vec<u64>,
}

impl Client {
    fn new(id: u64) -> Self {
        Client {
            id,
            next_request: 1,
            applied_at: vec![0],
        }
    }
}

fn submit(engine: &mut Engine<Tally>, session_id: u64, request: u64, amount: u64) -> u64 {
    let to = Submission {
        kind: ADD,
        version: 1,
        session_id,
        correlation_id: request,
    };
    let payload = amount.to_le_bytes();
    engine.submitter().submit(to, &payload).unwrap()
}

/// Three exactly-once clients and plain sessions. Every round each client sends 4 new
/// requests; from round 3 on it first resends the first of the round before last (the oldest
/// of its window of 8 replies) and its very first (out of the window). A snapshot follows
/// rounds 3 and 6: the resends right after it need the table it carries.
fn record() -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.ring_capacity = 256;
    config.output_ring_capacity = 256;
    config.flush = FlushPolicy::None;
    config.wait = WaitStrategy::PARK;
    config.discard_responses = true;
    config.snapshot_interval_messages = 0;
    config.snapshot_on_shutdown = false;
    config.snapshot_retain = 10;
    let mut engine = Engine::start(config, Tally::default()).unwrap();
    let mut clients: Vec<Client> = (1..=3).map(Client::new).collect();
    let (mut snapshots, mut copies) = (Vec::new(), Vec::new());
    for round in 1..=8u64 {
        for client in &mut clients {
            if round > 2 {
                let old = (round - 2) * 4 + 1;
                let amount = client.id * 1000 + old;
                let at = submit(&mut engine, CLIENT | client.id, old, amount);
                copies.push((at, Some(client.applied_at[old as usize])));
                let at = submit(&mut engine, CLIENT | client.id, 1, client.id * 1000 + 1);
                let held = client.next_request - 1 <= WINDOW;
                copies.push((at, held.then_some(client.applied_at[1])));
            }
            for _ in 0..4 {
                let request = client.next_request;
                let amount = client.id * 1000 + request;
                let at = submit(&mut engine, CLIENT | client.id, request, amount);
                client.applied_at.push(at);
                client.next_request += 1;
            }
            submit(&mut engine, 1000 + client.id, round, 1);
        }
        if round % 3 == 0 {
            snapshots.push(engine.request_snapshot().unwrap());
        }
    }
    let state = engine.shutdown().unwrap();
    assert_eq!(Config::default().dedup_window as u64, WINDOW);
    assert_eq!(state.applied, 3 * 8 * 5, "each request applied once");
    Recorded {
        dir,
        state_hash: state.state_hash(),
        snapshots,
        copies,
    }
}

fn replay_json(dir: &Path, words: &[&str]) -> (Exit, String) {
    let data = dir.to_str().unwrap();
    let mut all = vec!["--data-dir", data, "--no-progress", "--json"];
    all.extend_from_slice(words);
    let args = replay::parse_args(&all).unwrap_or_else(|e| panic!("{all:?}: {e}"));
    let mut out = Vec::new();
    let exit =
        replay::run_with::<Tally>(&args, &mut out).unwrap_or_else(|e| panic!("{all:?}: {e}"));
    (exit, String::from_utf8(out).unwrap())
}

fn document(dir: &Path, words: &[&str]) -> Value {
    let (exit, out) = replay_json(dir, words);
    assert_eq!(exit, Exit::Ok, "{words:?}: {out}");
    serde_json::from_str(&out).unwrap()
}

fn hex(h: u64) -> String {
    format!("{h:#018x}")
}

#[test]
fn a_replay_applies_resent_requests_once_as_the_engine_did() {
    let rec = record();
    let dir = rec.dir.path();
    // The snapshots carry the table (format 3, a non-empty exactly-once section).
    for &sequence in &rec.snapshots {
        let path = dir
            .join("snapshots")
            .join(keel::snapshot::file_name(sequence));
        let loaded = load_file(&SnapshotFile { sequence, path }, u64::MAX).unwrap();
        assert_eq!(loaded.header.format_version, 3);
        assert!(
            !loaded.dedup().is_empty(),
            "snapshot {sequence} holds a table"
        );
    }
    let from_snapshot = document(dir, &["state"]);
    assert_eq!(from_snapshot["snapshot"], json!(rec.snapshots.last()));
    assert_eq!(from_snapshot["state_hash"], hex(rec.state_hash));
    let full = document(dir, &["state", "--full"]);
    assert_eq!(full["snapshot"], Value::Null);
    assert_eq!(full["state_hash"], hex(rec.state_hash));
    // From the older snapshot too: resends of requests applied before it follow it.
    let at = rec.snapshots[0] + 20;
    let before = document(dir, &["state", "--full", "--at", &at.to_string()]);
    let after_first = document(dir, &["state", "--at", &at.to_string()]);
    assert_eq!(after_first["snapshot"], json!(rec.snapshots[0]));
    assert_eq!(after_first["state_hash"], before["state_hash"]);
    // Without the table every copy is applied again: the test can tell.
    let off = document(dir, &["--dedup-clients", "0", "state", "--full"]);
    assert_ne!(off["state_hash"], hex(rec.state_hash));
    let check = document(dir, &["check"]);
    assert_eq!(check["deterministic"], true, "{check}");
}

#[test]
fn outputs_show_a_copy_answered_with_its_original_reply() {
    let rec = record();
    let (exit, out) = replay_json(rec.dir.path(), &["outputs"]);
    assert_eq!(exit, Exit::Ok);
    let lines: Vec<OutputLine> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_sequence = |s: u64| lines.iter().find(|l| l.sequence == s).unwrap();
    for &(copy, original) in &rec.copies {
        let line = by_sequence(copy);
        assert_eq!(line.duplicate_of, original, "copy at {copy}");
        match original {
            Some(original) => {
                let first = by_sequence(original);
                assert_eq!(
                    (&line.status, &line.payload),
                    (&first.status, &first.payload)
                );
                assert_eq!(first.duplicate_of, None);
            }
            None => assert_eq!(line.status, "already-answered"),
        }
    }
    let copies = lines.iter().filter(|l| l.duplicate_of.is_some()).count();
    let answered = rec.copies.iter().filter(|c| c.1.is_some()).count();
    assert_eq!(copies, answered);
    assert!(answered > 0 && answered < rec.copies.len());
    // The field is left out of lines that are not copies.
    assert!(out
        .lines()
        .next()
        .is_some_and(|l| !l.contains("duplicate_of")));
}

#[test]
fn the_limits_are_checked_as_the_server_checks_them() {
    let rec = record();
    let data = rec.dir.path().to_str().unwrap();
    let args = replay::parse_args(["--data-dir", data, "--dedup-window", "0", "state"]).unwrap();
    let err = replay::run_with::<Tally>(&args, &mut Vec::new()).unwrap_err();
    assert_eq!(err.exit(), Exit::Usage, "{err}");
    let args = replay::parse_args(["--data-dir", data, "--dedup-reply-size", "1KiB", "state"]);
    assert_eq!(args.unwrap().dedup_reply_bytes, 1024);
}

#[test]
fn the_default_limits_are_the_servers() {
    let args = replay::parse_args(["state"]).unwrap();
    let config = Config::default();
    assert_eq!(
        (
            args.dedup_clients,
            args.dedup_window,
            args.dedup_reply_bytes
        ),
        (
            config.dedup_clients,
            config.dedup_window,
            config.dedup_reply_bytes as u64
        )
    );
}

/// What `keel replay` prints on such a journal (run by hand with `--nocapture`).
#[test]
#[ignore = "a demonstration, run by hand"]
fn demo_exactly_once_output() {
    let rec = record();
    let dir = rec.dir.path().to_str().unwrap();
    let (copy, _) = rec.copies[rec.copies.len() / 2];
    let (from, to) = ((copy - 1).to_string(), (copy + 1).to_string());
    println!("engine state hash {}", hex(rec.state_hash));
    for words in [
        &["state"][..],
        &["state", "--full"],
        &["--dedup-clients", "0", "state", "--full"],
        &["outputs", "--from", &from, "--to", &to],
        &["--json", "outputs", "--from", &from, "--to", &to],
        &["check"],
    ] {
        println!("==== keel replay {}", words.join(" "));
        let mut all = vec!["--data-dir", dir, "--no-progress"];
        all.extend_from_slice(words);
        let args = replay::parse_args(&all).unwrap();
        let mut out = Vec::new();
        let exit = replay::run_with::<Tally>(&args, &mut out).unwrap();
        println!("{}(exit {})", String::from_utf8_lossy(&out), exit.code());
    }
}
