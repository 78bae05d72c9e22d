//! `keel replay find --where FIELD=VALUE` (and `--order ID`, `--customer ID`): every message
//! whose request or response names a value, among the fields the application declares
//! searchable ([`App::searchable_fields`]). Responses are rebuilt by replaying, since some
//! ids only appear there (an order id the service assigned).

use std::io::IsTerminal;

use serde_json::{json, Value};

use super::args::FindArgs;
use super::ctx::Ctx;
use super::error::{Exit, ReplayError};
use super::replayer::{Flow, Replay, Step};
use super::time::format_ns;
use keel_services::{App, SearchField};

/// One `FIELD=VALUE` term: the keys that hold the field and the value wanted.
#[derive(Debug, Clone)]
struct Term {
    field: SearchField,
    value: Value,
}

/// Whether `find` was asked to search rather than to find a condition.
pub(crate) fn requested(args: &FindArgs) -> bool {
    !args.matching.is_empty() || args.order.is_some() || args.customer.is_some()
}

/// The terms given, checked against the application's searchable fields.
fn terms<A: App>(args: &FindArgs) -> Result<Vec<Term>, ReplayError> {
    let mut given: Vec<(String, String)> = Vec::new();
    for word in &args.matching {
        let (field, value) = word.split_once('=').ok_or_else(|| {
            ReplayError::Usage(format!(
                "--where {word}: expected FIELD=VALUE, e.g. order=42"
            ))
        })?;
        given.push((field.trim().to_owned(), value.trim().to_owned()));
    }
    given.extend(args.order.iter().map(|v| ("order".to_owned(), v.clone())));
    given.extend(
        args.customer
            .iter()
            .map(|v| ("customer".to_owned(), v.clone())),
    );
    given
        .into_iter()
        .map(|(name, value)| {
            let field = A::searchable_fields()
                .iter()
                .find(|f| f.name == name)
                .copied()
                .ok_or_else(|| unknown_field::<A>(&name))?;
            let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            Ok(Term { field, value })
        })
        .collect()
}

fn unknown_field<A: App>(name: &str) -> ReplayError {
    let known: Vec<&str> = A::searchable_fields().iter().map(|f| f.name).collect();
    ReplayError::Usage(if known.is_empty() {
        format!("--where {name}: {} declares no searchable fields", A::NAME)
    } else {
        format!(
            "--where {name}: {} has no searchable field {name:?}; its fields are: {}",
            A::NAME,
            known.join(", ")
        )
    })
}

/// Whether `value` holds, at any depth, one of `keys` equal to `wanted`.
fn holds(value: &Value, keys: &[&str], wanted: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, field)| {
            (keys.contains(&key.as_str()) && field == wanted) || holds(field, keys, wanted)
        }),
        Value::Array(items) => items.iter().any(|item| holds(item, keys, wanted)),
        _ => false,
    }
}

/// The message and its response as one JSON line, when they satisfy every term.
fn matching<A: App>(step: &Step<'_>, terms: &[Term]) -> Option<Value> {
    let message = A::describe_message(&step.message());
    let response = A::describe_response(step.record.kind, &step.response());
    let all = terms.iter().all(|t| {
        holds(&message, t.field.keys, &t.value) || holds(&response, t.field.keys, &t.value)
    });
    let r = &step.record;
    all.then(|| {
        json!({
            "sequence": r.sequence,
            "timestamp_ns": r.timestamp_ns,
            "timestamp": format_ns(r.timestamp_ns),
            "session_id": r.session_id,
            "correlation_id": r.correlation_id,
            "message": message,
            "response": response,
        })
    })
}

fn print(ctx: &mut Ctx<'_>, line: &Value) -> Result<(), ReplayError> {
    if ctx.json {
        return ctx.json_line(line);
    }
    let response = &line["response"];
    let outcome = match response["reason"].as_str() {
        Some(reason) => format!("{} {reason}", response["status"].as_str().unwrap_or("?")),
        None => response["status"].as_str().unwrap_or("?").to_owned(),
    };
    writeln!(
        ctx.out,
        "{:>10}  {}  session {}  {}  -> {outcome}  {}",
        line["sequence"],
        line["timestamp"].as_str().unwrap_or(""),
        line["session_id"],
        line["message"],
        response["response"]
    )?;
    Ok(())
}

/// Runs the search: every match in the range, in order; exit 8 when there is none.
pub(crate) fn run<A: App>(ctx: &mut Ctx<'_>, args: &FindArgs) -> Result<Exit, ReplayError> {
    let terms = terms::<A>(args)?;
    let from = args.range.from.unwrap_or(1);
    let to = args.range.to;
    if to.is_some_and(|to| to < from) {
        return Err(ReplayError::Usage("--to is before --from".into()));
    }
    let (journal, snapshots) = (ctx.journal.clone(), ctx.snapshots.clone());
    let mut replay = Replay::<A>::rebuild(ctx, &journal, Some(&snapshots), from - 1)?;
    // Lines printed on a terminal would be garbled by a bar redrawn under them.
    if !std::io::stdout().is_terminal() {
        replay.show_progress(ctx, "searching", to);
    }
    let mut found = 0u64;
    replay.run_to(to, |_, step| {
        if let Some(line) = matching::<A>(step, &terms) {
            print(ctx, &line)?;
            found += 1;
        }
        Ok(Flow::Continue)
    })?;
    if found == 0 && !ctx.json {
        writeln!(ctx.out, "no message matches")?;
    }
    Ok(if found == 0 { Exit::NotFound } else { Exit::Ok })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_at_any_depth_under_the_declared_keys() {
        let v = json!({"events": [{"type": "trade", "maker_order": 7, "qty": 7}]});
        assert!(holds(&v, &["maker_order"], &json!(7)));
        assert!(!holds(&v, &["taker_order"], &json!(7)));
        assert!(!holds(&v, &["maker_order"], &json!(8)));
        assert!(!holds(&v, &["maker_order"], &json!("7")));
    }
}
