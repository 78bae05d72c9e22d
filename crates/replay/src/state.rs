//! `keel replay state`: the state after a sequence (best snapshot + journal), its summary and
//! hash, and optionally one application query evaluated on it (see [`super::query`]).

use std::io::Write;

use serde_json::{json, Value};

use super::args::StateArgs;
use super::ctx::Ctx;
use super::error::{Exit, ReplayError};
use super::query::{status_name, Query};
use super::replayer::{last_sequence, Replay};
use super::time::format_ns;
use keel_services::App;

/// Evaluates `query` on the state in `replay`; reports whether it changed the state.
fn evaluate<A: App>(ctx: &Ctx<'_>, replay: &mut Replay<A>, query: &Query) -> Value {
    let before = replay.app.state_hash();
    let mut buf = vec![0u8; ctx.max_response_bytes];
    let answer = query.apply(
        &mut replay.app,
        replay.applied,
        replay.timestamp_ns,
        &mut buf,
    );
    let response = query.describe::<A>(&answer);
    let after = replay.app.state_hash();
    json!({
        "words": query.words,
        "evaluated_as_sequence": replay.applied + 1,
        "status": status_name(answer.header.status),
        "reason_code": answer.header.reason,
        "response": response,
        "changed_state": before != after,
        "state_hash_after": format!("{after:#018x}"),
    })
}

/// Runs `state`.
pub(crate) fn run<A: App>(ctx: &mut Ctx<'_>, args: &StateArgs) -> Result<Exit, ReplayError> {
    let query = if args.query.is_empty() {
        None
    } else {
        Some(Query::parse::<A>(&args.query)?)
    };
    let at = match args.at {
        Some(at) => at,
        None => last_sequence(&ctx.journal)?,
    };
    let (journal, snapshots) = (ctx.journal.clone(), ctx.snapshots.clone());
    let snapshots = (!args.full).then_some(snapshots.as_path());
    let mut replay = Replay::<A>::rebuild(ctx, &journal, snapshots, at)?;
    let hash = replay.app.state_hash();
    let summary = replay.app.describe_state();
    let query = query.map(|q| evaluate(ctx, &mut replay, &q));
    let doc = json!({
        "app": A::NAME,
        "sequence": at,
        "timestamp_ns": replay.timestamp_ns,
        "timestamp": format_ns(replay.timestamp_ns),
        "snapshot": replay.snapshot,
        "replayed": replay.replayed,
        "state_hash": format!("{hash:#018x}"),
        "state": summary,
        "query": query,
        "warnings": ctx.warnings,
    });
    if ctx.json {
        ctx.document(&doc)?;
    } else {
        print_text(ctx.out, &doc)?;
    }
    Ok(Exit::Ok)
}

fn print_text(out: &mut dyn Write, doc: &Value) -> Result<(), ReplayError> {
    let from = match doc["snapshot"].as_u64() {
        Some(s) => format!("snapshot {s}"),
        None => "the empty state".into(),
    };
    writeln!(
        out,
        "state after sequence {} ({}), from {from} + {} messages of the journal",
        doc["sequence"],
        doc["timestamp"].as_str().unwrap_or(""),
        doc["replayed"]
    )?;
    writeln!(
        out,
        "state hash {}",
        doc["state_hash"].as_str().unwrap_or("")
    )?;
    writeln!(out, "{}", pretty(&doc["state"]))?;
    let q = &doc["query"];
    if !q.is_null() {
        let words = q["words"].as_array().map_or(&[][..], Vec::as_slice);
        let words: Vec<&str> = words.iter().filter_map(Value::as_str).collect();
        writeln!(
            out,
            "query `{}` (applied as message {}): {}",
            words.join(" "),
            q["evaluated_as_sequence"],
            q["status"].as_str().unwrap_or("")
        )?;
        writeln!(out, "{}", pretty(&q["response"]))?;
        if q["changed_state"] == true {
            writeln!(
                out,
                "note: this command changed the state (hash now {}): it is not a read-only query; \
                 the summary above is from before it",
                q["state_hash_after"].as_str().unwrap_or("")
            )?;
        }
    }
    Ok(())
}

/// A JSON value, pretty-printed.
pub(crate) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
