//! One JSON shape: every JSON document `keel replay` prints for the bookstore and the
//! exchange (`dump`, `state` and its queries, `find`, `outputs`, `info`, `verify`, `check`,
//! `diff`) spells enum values the documented way (kebab-case, docs/PROTOCOL.md "JSON shape"),
//! never as the Rust variant (`UnknownBook`, `Open`, `Gtc`, `{"Trade": …}`). The text outputs
//! print no Rust variant name either. `keel client --json` prints the same response objects
//! (`App::describe_response`), covered here through `outputs` and `state` queries.

use keel::{Config, Engine, FlushPolicy, Submission, WaitStrategy};
use keel_replay::{self as replay};
use keel_services::bookstore::{
    self, Kind, OrderStatus, RejectDetail, ResponseKind as BookstoreResponseKind,
};
use keel_services::exchange::{self, CancelReason, OrderType, Report, Side, RESPONSE_EVENTS};
use keel_services::json::NAMED_FIELDS;
use keel_services::{App, Command};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

type BookstoreApp = keel::Typed<bookstore::Bookstore>;
type ExchangeApp = keel::Typed<exchange::Exchange>;

/// The variant name a `Debug` rendering starts with (`Trade { .. }` gives `Trade`).
fn variant(debug: String) -> String {
    debug
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// A journal of `commands` (shell words) then `raw` messages (kind, version, payload) then
/// `workload` messages of the canonical workload, with snapshots along the way.
fn record<A: App>(
    commands: &[&str],
    raw: &[(u16, u16, &[u8])],
    workload: u64,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.flush = FlushPolicy::None;
    config.wait = WaitStrategy::PARK;
    config.discard_responses = true;
    config.snapshot_interval_messages = 400;
    let mut engine = Engine::start(config, A::default()).unwrap();
    let parsed = commands.iter().map(|words| {
        let words: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        A::parse_command(&words).unwrap_or_else(|e| panic!("{words:?}: {e}"))
    });
    let raw = raw.iter().map(|&(kind, version, payload)| Command {
        kind,
        version,
        payload: payload.to_vec(),
    });
    let generated = A::setup(3)
        .into_iter()
        .chain((0..workload).map(|i| A::workload(3, i)));
    for (i, c) in parsed.chain(raw).chain(generated).enumerate() {
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

/// What `keel replay WORDS` prints for journal `dir`.
fn replay_out<A: App>(dir: &Path, words: &[&str]) -> String {
    let mut all = vec!["--data-dir", dir.to_str().unwrap(), "--no-progress"];
    all.extend_from_slice(words);
    let args = replay::parse_args(&all).unwrap_or_else(|e| panic!("{all:?}: {e}"));
    let mut out = Vec::new();
    replay::run_with::<A>(&args, &mut out).unwrap_or_else(|e| panic!("{all:?}: {e}"));
    String::from_utf8(out).unwrap()
}

/// Every command whose JSON is checked, then run again as text.
fn commands<'a>(queries: &[&'a [&'a str]], other: &'a str) -> Vec<Vec<&'a str>> {
    let mut all: Vec<Vec<&str>> = vec![
        vec!["info"],
        vec!["verify"],
        vec!["dump"],
        vec!["state"],
        vec!["state", "--at", "20"],
        vec!["outputs"],
        vec!["check"],
        vec!["diff", "--other", other],
        vec!["find", "--order", "1"],
    ];
    all.extend(queries.iter().map(|q| q.to_vec()));
    all
}

/// Walks `value`: every object key and string value goes to `strings`; the values of the
/// named fields must be kebab-case.
fn walk(value: &Value, strings: &mut Vec<String>, context: &str) {
    match value {
        Value::Object(map) => {
            for (key, field) in map {
                strings.push(key.clone());
                if let (true, Value::String(name)) = (NAMED_FIELDS.contains(&key.as_str()), field) {
                    let kebab = name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                    assert!(kebab, "{context}: {key} = {name:?} is not kebab-case");
                }
                walk(field, strings, context);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, strings, context)),
        Value::String(text) => strings.push(text.clone()),
        _ => {}
    }
}

/// Runs every command as JSON and as text on `dir`; fails on a Rust variant spelling.
fn check_outputs<A: App>(dir: &Path, queries: &[&[&str]], variants: &BTreeSet<String>) {
    let other = dir.to_str().unwrap();
    for words in commands(queries, other) {
        let context = format!("{} keel replay --json {}", A::NAME, words.join(" "));
        let mut json_words = vec!["--json"];
        json_words.extend_from_slice(&words);
        let out = replay_out::<A>(dir, &json_words);
        let documents: Vec<Value> = match serde_json::from_str(&out) {
            Ok(one) => vec![one],
            Err(_) => out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{context}: {e}: {l}")))
                .collect(),
        };
        assert!(!documents.is_empty(), "{context}: no output");
        for d in &documents {
            if let Some(summary) = d["state"]["state_hash"].as_str() {
                assert_eq!(d["state_hash"], summary, "{context}: one hash spelling");
            }
            // A `reason` is a name, its number a `reason_code` (as in every response).
            let query_reason = &d["query"]["reason"];
            assert!(
                query_reason.is_null() || query_reason.is_string(),
                "{context}"
            );
        }
        let mut strings = Vec::new();
        documents
            .iter()
            .for_each(|d| walk(d, &mut strings, &context));
        for s in &strings {
            assert!(
                !variants.contains(s),
                "{context}: prints the Rust variant {s:?}"
            );
        }
        let text = replay_out::<A>(dir, &words);
        for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            assert!(
                !variants.contains(word),
                "{} keel replay {}: prints the Rust variant {word:?}:\n{text}",
                A::NAME,
                words.join(" ")
            );
        }
    }
}

#[test]
fn bookstore_json_and_text_spell_every_enum_value_in_kebab_case() {
    let dir = record::<BookstoreApp>(
        &[
            "add-book 1 1999 5 dune",
            "add-book 1 1999 5 dune",
            "add-book 100000 1 1 too-far",
            "book 1",
            "book 9",
            "order 7 1 2 1999",
            "order 7 1 9 1999",
            "order 7 1 1 1000",
            "order 7 1 0 1999",
            "order-status 1",
            "orders 7",
            "cancel 8 1",
            "cancel 7 1",
            "cancel 7 1",
            "cancel 7 99",
            "order-status 1",
            "price 1 0",
            "restock 1 3",
            "order 3 1 1 1999",
        ],
        &[(99, 1, b"?"), (Kind::AddBook.number(), 1, b"bad")],
        1_000,
    );
    let mut variants: BTreeSet<String> = BTreeSet::new();
    let reasons = bookstore::RejectReason::ALL.iter();
    variants.extend(reasons.map(|r| variant(format!("{r:?}"))));
    variants.extend(Kind::ALL.iter().map(|k| variant(format!("{k:?}"))));
    let response_kinds = (0..=16).filter_map(BookstoreResponseKind::from_u16);
    variants.extend(response_kinds.map(|k| variant(format!("{k:?}"))));
    let statuses = [OrderStatus::Open, OrderStatus::Cancelled];
    variants.extend(statuses.iter().map(|s| variant(format!("{s:?}"))));
    let details = [
        RejectDetail::CurrentPrice {
            book: 1,
            price_cents: 1,
        },
        RejectDetail::Available { book: 1, stock: 1 },
        RejectDetail::Limit { limit: 1 },
    ];
    variants.extend(details.iter().map(|d| variant(format!("{d:?}"))));
    assert!(variants.contains("UnknownBook") && variants.contains("Open"));
    check_outputs::<BookstoreApp>(
        dir.path(),
        &[
            &["state", "book", "1"],
            &["state", "book", "9"],
            &["state", "order-status", "1"],
            &["state", "order-status", "2"],
            &["state", "orders", "3"],
            &["state", "price", "1", "0"],
            &["find", "--where", "book=1"],
            &["find", "--customer", "7"],
            &[
                "find", "--query", "book 1", "--field", "stock", "--lt", "1000000",
            ],
        ],
        &variants,
    );
}

const EXCHANGE_COMMANDS: [&str; 26] = [
    "add-instrument 1 1 100",
    "add-instrument 1 1 100",
    "add-instrument 2 0 100",
    "deposit 1 1000000",
    "deposit 2 1000000",
    "deposit 3 0",
    "withdraw 1 10",
    "withdraw 9 10",
    "deposit-position 2 1 100",
    "withdraw-position 2 1 1",
    "place 1 1 buy 100 5",
    "place 1 1 buy 100 5 gtc 42",
    "place 1 1 buy 100 5 gtc 42",
    "place 2 1 sell 100 3 ioc",
    "place 2 1 sell 99 10 ioc",
    "place 2 1 sell 100 500 fok",
    "place 2 1 sell 0 1 market",
    "place 1 1 buy 0 5",
    "place-v1 1 1 buy 90 1",
    "move 1 42 95",
    "reduce 1 42 1",
    "cancel 1 42",
    "cancel 1 42",
    "cancel 2 1",
    "book 1",
    "balance 1",
];

/// The exchange's Rust variant spellings: reasons, sides, order types, cancel reasons, and
/// every request and event the journal in `dir` (recorded from [`EXCHANGE_COMMANDS`]) holds,
/// as decoded by the exchange itself.
fn exchange_variants(dir: &Path) -> BTreeSet<String> {
    let mut variants: BTreeSet<String> = BTreeSet::new();
    let reasons = exchange::RejectReason::ALL.iter();
    variants.extend(reasons.map(|r| variant(format!("{r:?}"))));
    let small = [
        format!("{:?}", Side::Buy),
        format!("{:?}", Side::Sell),
        format!("{:?}", OrderType::Gtc),
        format!("{:?}", OrderType::Ioc),
        format!("{:?}", OrderType::Fok),
        format!("{:?}", OrderType::Market),
        format!("{:?}", CancelReason::Requested),
        format!("{:?}", CancelReason::Unfilled),
    ];
    variants.extend(small.into_iter().map(variant));
    for words in EXCHANGE_COMMANDS {
        let words: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        let c = ExchangeApp::parse_command(&words).unwrap();
        let request = exchange::Request::decode(c.kind, c.version, &c.payload).unwrap();
        variants.insert(variant(format!("{request:?}")));
    }
    let outputs = replay_out::<ExchangeApp>(dir, &["--json", "outputs"]);
    for line in outputs.lines() {
        let line: replay::OutputLine = serde_json::from_str(line).unwrap();
        if line.kind != RESPONSE_EVENTS || line.payload.is_empty() {
            continue;
        }
        let bytes: Vec<u8> = (0..line.payload.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line.payload[i..i + 2], 16).unwrap())
            .collect();
        let report: Report = keel::codec::decode(&bytes).unwrap();
        let events = report.events.iter();
        variants.extend(events.map(|e| variant(format!("{e:?}"))));
    }
    variants
}

#[test]
fn exchange_json_and_text_spell_every_enum_value_in_kebab_case() {
    let raw: [(u16, u16, &[u8]); 2] = [(99, 1, b"?"), (1, 1, b"bad")];
    let dir = record::<ExchangeApp>(&EXCHANGE_COMMANDS, &raw, 1_000);
    let variants = exchange_variants(dir.path());
    for name in [
        "Trade",
        "Cancelled",
        "Accepted",
        "Rejected",
        "Gtc",
        "InvalidPrice",
    ] {
        assert!(variants.contains(name), "the journal lacks {name}");
    }
    check_outputs::<ExchangeApp>(
        dir.path(),
        &[
            &["state", "book", "1"],
            &["state", "balance", "1"],
            &["state", "cancel", "1", "42"],
            &["state", "place", "1", "1", "sell", "0", "1", "fok"],
            &["find", "--where", "instrument=1"],
            &["find", "--customer", "1"],
            &[
                "find",
                "--query",
                "balance 1",
                "--field",
                "cash",
                "--gt",
                "0",
            ],
        ],
        &variants,
    );
}
