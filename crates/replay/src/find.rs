//! `keel replay find`: the first sequence after which a condition holds, replaying forward.
//!
//! The condition is checked on the state at the start of the range, then after each message
//! that may have changed the state: a rejected message leaves the state unchanged (an engine
//! invariant) and a control message never reaches the processor, so neither is checked again.
//! A query condition is also only re-described when the query's raw response changes. Queries
//! are assumed to depend on the state only (not on their own sequence or timestamp), and must
//! be read-only: the first evaluation checks that the state hash is unchanged.
//!
//! `--bisect` skips ahead over snapshots, assuming the condition is monotone (false, then true
//! for good): a binary search over the snapshots in range finds the last one where it is false,
//! and the replay starts there. For `--hash` the snapshot headers are scanned for the hash
//! instead, and the replay starts at the snapshot before the first one that has it (assuming
//! the state with that hash occurs only once).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{json, Value};

use super::args::FindArgs;
use super::ctx::Ctx;
use super::error::{Exit, ReplayError};
use super::files::{list_snapshots, read_snapshot_header, restore_bound, Restored, SnapFile};
use super::query::{Answer, Query};
use super::replayer::{timestamp_of, Flow, Replay};
use super::state::pretty;
use super::time::format_ns;
use keel::engine::{ExactlyOnce, Status, CONTROL_KIND_MIN};
use keel_services::App;

/// A comparison of a response field with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether `field op value`. Numbers compare as numbers, strings and booleans as such;
    /// other pairs are only equal or not. A missing field never satisfies a condition.
    fn holds(self, field: &Value, value: &Value) -> bool {
        let ord = order(field, value);
        let equal = ord.map_or(field == value, Ordering::is_eq);
        match self {
            Op::Eq => equal,
            Op::Ne => !equal,
            Op::Lt => ord == Some(Ordering::Less),
            Op::Le => ord.is_some_and(Ordering::is_le),
            Op::Gt => ord == Some(Ordering::Greater),
            Op::Ge => ord.is_some_and(Ordering::is_ge),
        }
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(x), int(y)) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Which part of a query's description a condition looks at (`--field`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// No `--field`: the whole description.
    Whole,
    /// `--field /a/b`: a JSON pointer into the whole description.
    Pointer(String),
    /// `--field stock` (or `a.b`): a field of the response's body, or failing that a
    /// top-level member of the description (`status`, `reason`).
    Name(String),
}

impl Field {
    fn parse(text: Option<&str>) -> Self {
        match text {
            None | Some("") => Field::Whole,
            Some(p) if p.starts_with('/') => Field::Pointer(p.to_owned()),
            Some(name) => Field::Name(name.replace('.', "/")),
        }
    }

    /// The field in `description` (a query's response as the application describes it).
    fn find<'v>(&self, description: &'v Value) -> Option<&'v Value> {
        let name = match self {
            Field::Whole => return Some(description),
            Field::Pointer(p) => return description.pointer(p),
            Field::Name(name) => name,
        };
        let bodies = description.as_object().into_iter().flatten();
        bodies
            .filter(|(_, v)| v.is_object())
            .find_map(|(k, _)| description.pointer(&format!("/{k}/{name}")))
            .or_else(|| description.pointer(&format!("/{name}")))
    }

    fn describe(&self) -> String {
        match self {
            Field::Whole => "(whole)".into(),
            Field::Pointer(p) => p.clone(),
            Field::Name(n) => n.replace('/', "."),
        }
    }
}

/// The field names `--field` accepts for `description`: body fields by plain name, then
/// top-level members.
fn field_names(description: &Value, names: &mut BTreeSet<String>) {
    let Some(members) = description.as_object() else {
        return;
    };
    for (key, value) in members {
        match value.as_object() {
            Some(body) => names.extend(body.keys().cloned()),
            None => {
                names.insert(key.clone());
            }
        }
    }
}

/// What is searched for.
enum Condition {
    Hash(u64),
    Field {
        query: Query,
        field: Field,
        op: Op,
        value: Value,
    },
}

impl Condition {
    fn parse<A: App>(args: &FindArgs) -> Result<Self, ReplayError> {
        if let Some(hex) = &args.hash {
            let digits = hex.trim_start_matches("0x").trim_start_matches("0X");
            return u64::from_str_radix(digits, 16)
                .map(Condition::Hash)
                .map_err(|e| ReplayError::Usage(format!("--hash {hex:?}: {e}")));
        }
        let ops = [
            (Op::Lt, &args.lt),
            (Op::Le, &args.le),
            (Op::Gt, &args.gt),
            (Op::Ge, &args.ge),
            (Op::Eq, &args.eq),
            (Op::Ne, &args.ne),
        ];
        let Some((op, Some(text))) = ops.into_iter().find(|(_, v)| v.is_some()) else {
            return Err(ReplayError::Usage(
                "--query needs one of --lt --le --gt --ge --eq --ne".into(),
            ));
        };
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()));
        Ok(Condition::Field {
            query: Query::parse::<A>(&args.query)?,
            field: Field::parse(args.field.as_deref()),
            op,
            value,
        })
    }

    fn describe(&self) -> String {
        match self {
            Condition::Hash(h) => format!("state hash == {h:#018x}"),
            Condition::Field {
                query,
                field,
                op,
                value,
            } => format!(
                "`{}` response {} {} {value}",
                query.words.join(" "),
                field.describe(),
                op.symbol()
            ),
        }
    }
}

/// The last raw query response and what it meant.
struct Cached {
    status: Status,
    reason: u32,
    kind: u16,
    payload: Vec<u8>,
    value: Option<Value>,
    holds: bool,
}

/// Evaluates the condition on states, reusing what it can.
struct Evaluator {
    condition: Condition,
    buf: Box<[u8]>,
    cache: Option<Cached>,
    checked_read_only: bool,
    evaluations: u64,
    /// What the responses described so far showed of `--field`.
    seen: Seen,
}

impl Evaluator {
    fn new(condition: Condition, max_response_bytes: usize) -> Self {
        Evaluator {
            condition,
            buf: vec![0; max_response_bytes].into(),
            cache: None,
            checked_read_only: false,
            evaluations: 0,
            seen: Seen::default(),
        }
    }

    /// The field's value (or the hash) when the condition holds on `app`, the state after
    /// `after` (stamped `timestamp_ns`).
    fn holds<A: App>(
        &mut self,
        app: &mut A,
        after: u64,
        timestamp_ns: u64,
    ) -> Result<Option<Value>, ReplayError> {
        self.evaluations += 1;
        let query = match &self.condition {
            Condition::Hash(target) => {
                let hash = app.state_hash();
                return Ok((hash == *target).then(|| json!(format!("{hash:#018x}"))));
            }
            Condition::Field { query, .. } => query,
        };
        let before = (!self.checked_read_only).then(|| app.state_hash());
        let answer = query.apply(app, after, timestamp_ns, &mut self.buf);
        if let Some(before) = before {
            if app.state_hash() != before {
                return Err(ReplayError::Query(format!(
                    "`{}` changed the state: find needs a read-only query",
                    query.words.join(" ")
                )));
            }
            self.checked_read_only = true;
        }
        let h = answer.header;
        let same = self.cache.as_ref().is_some_and(|c| {
            (c.status, c.reason, c.kind) == (h.status, h.reason, h.kind)
                && c.payload == answer.payload
        });
        if !same {
            let description = query.describe::<A>(&answer);
            let cached = judge(&self.condition, &mut self.seen, &description, &answer);
            self.cache = Some(cached.ok_or_else(|| self.unknown_field())?);
        }
        let cache = self.cache.as_ref().expect("just filled");
        Ok(cache
            .holds
            .then(|| cache.value.clone().unwrap_or(Value::Null)))
    }

    /// The error for a `--field` that the responses described so far do not hold.
    fn unknown_field(&self) -> ReplayError {
        let (field, query) = match &self.condition {
            Condition::Field { query, field, .. } => (field.describe(), query.words.join(" ")),
            Condition::Hash(_) => (String::new(), String::new()),
        };
        ReplayError::UnknownField {
            field,
            query,
            available: self.seen.names.iter().cloned().collect(),
        }
    }

    /// Whether the search ended without ever seeing `--field` (then the field is unknown).
    fn field_never_seen(&self) -> bool {
        matches!(self.condition, Condition::Field { .. }) && !self.seen.field
    }
}

/// What the responses described so far showed of `--field`.
#[derive(Default)]
struct Seen {
    /// Whether the field was present in one.
    field: bool,
    /// Their field names (for the error when the field never is).
    names: BTreeSet<String>,
}

/// Looks the field up in a newly described response. `None`: the response was accepted but
/// has no such field, a mistake in `--field` to report at once.
fn judge(
    condition: &Condition,
    seen: &mut Seen,
    description: &Value,
    answer: &Answer<'_>,
) -> Option<Cached> {
    let Condition::Field {
        field, op, value, ..
    } = condition
    else {
        unreachable!("only field conditions describe responses");
    };
    let found = field.find(description).cloned();
    field_names(description, &mut seen.names);
    seen.field |= found.is_some();
    if found.is_none() && answer.header.status == Status::Accepted {
        return None;
    }
    let h = answer.header;
    Some(Cached {
        status: h.status,
        reason: h.reason,
        kind: h.kind,
        payload: answer.payload.to_vec(),
        holds: found.as_ref().is_some_and(|f| op.holds(f, value)),
        value: found,
    })
}

/// Where the forward replay starts after bisecting: a restored snapshot (the state, its
/// exactly-once table and its sequence).
type Start<A> = Option<((A, ExactlyOnce), u64)>;

fn bisect<A: App>(
    ctx: &mut Ctx<'_>,
    ev: &mut Evaluator,
    base: u64,
    to: Option<u64>,
) -> Result<Start<A>, ReplayError> {
    let files: Vec<SnapFile> = list_snapshots(&ctx.snapshots)?
        .into_iter()
        .filter(|f| f.sequence > base && to.is_none_or(|to| f.sequence <= to))
        .collect();
    match ev.condition {
        Condition::Hash(target) => Ok(bisect_hash(ctx, &files, target)),
        Condition::Field { .. } => bisect_monotone(ctx, ev, files),
    }
}

/// Starts at the snapshot before the first whose header has the hash.
fn bisect_hash<A: App>(ctx: &mut Ctx<'_>, files: &[SnapFile], target: u64) -> Start<A> {
    let first = files
        .iter()
        .position(|f| read_snapshot_header(f).is_ok_and(|h| h.state_hash == target))?;
    for file in files[..first].iter().rev() {
        match restore_bound::<A>(file, &ctx.journal, &ctx.dedup) {
            Ok(r) => return Some(((r.app, r.once), file.sequence)),
            Err(reason) => ctx.warn(format!("{}: {reason}; skipped", file.path.display())),
        }
    }
    None
}

/// Binary search for the last snapshot where the (monotone) condition is false.
fn bisect_monotone<A: App>(
    ctx: &mut Ctx<'_>,
    ev: &mut Evaluator,
    mut files: Vec<SnapFile>,
) -> Result<Start<A>, ReplayError> {
    let (mut lo, mut hi) = (0, files.len());
    let mut best = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Restored { mut app, once, .. } =
            match restore_bound::<A>(&files[mid], &ctx.journal, &ctx.dedup) {
                Ok(restored) => restored,
                Err(reason) => {
                    ctx.warn(format!("{}: {reason}; skipped", files[mid].path.display()));
                    files.remove(mid);
                    hi -= 1;
                    continue;
                }
            };
        let sequence = files[mid].sequence;
        let timestamp_ns = timestamp_of(&ctx.journal, sequence)?;
        if ev.holds(&mut app, sequence, timestamp_ns)?.is_some() {
            hi = mid;
        } else {
            best = Some(((app, once), sequence));
            lo = mid + 1;
        }
    }
    Ok(best)
}

/// Where the condition first held.
struct Found {
    sequence: u64,
    timestamp_ns: u64,
    value: Value,
    message: Value,
}

/// Runs `find`.
pub(crate) fn run<A: App>(ctx: &mut Ctx<'_>, args: &FindArgs) -> Result<Exit, ReplayError> {
    let condition = Condition::parse::<A>(args)?;
    let from = args.range.from.unwrap_or(1);
    let to = args.range.to;
    if to.is_some_and(|to| to < from) {
        return Err(ReplayError::Usage("--to is before --from".into()));
    }
    let mut ev = Evaluator::new(condition, ctx.max_response_bytes);
    let (journal, snapshots) = (ctx.journal.clone(), ctx.snapshots.clone());
    let mut replay = Replay::<A>::rebuild(ctx, &journal, Some(&snapshots), from - 1)?;
    let start = replay.applied;
    if let Some(value) = ev.holds(&mut replay.app, start, replay.timestamp_ns)? {
        let found = Found {
            sequence: start,
            timestamp_ns: replay.timestamp_ns,
            value,
            message: Value::Null,
        };
        return report(ctx, &ev, &replay, Some(found), None);
    }
    let mut bisected = None;
    if args.bisect {
        if let Some((state, sequence)) = bisect::<A>(ctx, &mut ev, start, to)? {
            replay = Replay::start(ctx, &journal, state, sequence)?;
            replay.snapshot = Some(sequence);
        }
        bisected = Some(replay.applied);
    }
    let found = search(ctx, &mut ev, &mut replay, to)?;
    if found.is_none() && ev.field_never_seen() {
        return Err(ev.unknown_field());
    }
    report(ctx, &ev, &replay, found, bisected)
}

fn search<A: App>(
    ctx: &Ctx<'_>,
    ev: &mut Evaluator,
    replay: &mut Replay<A>,
    to: Option<u64>,
) -> Result<Option<Found>, ReplayError> {
    replay.show_progress(ctx, "searching", to);
    let mut found = None;
    replay.run_to(to, |app, step| {
        if !step.may_change_state() {
            return Ok(Flow::Continue);
        }
        let record = &step.record;
        let Some(value) = ev.holds(app, record.sequence, record.timestamp_ns)? else {
            return Ok(Flow::Continue);
        };
        let message = if record.kind >= CONTROL_KIND_MIN {
            json!({"control": record.kind})
        } else {
            A::describe_message(&step.message())
        };
        found = Some(Found {
            sequence: record.sequence,
            timestamp_ns: record.timestamp_ns,
            value,
            message,
        });
        Ok(Flow::Stop)
    })?;
    Ok(found)
}

fn report<A: App>(
    ctx: &mut Ctx<'_>,
    ev: &Evaluator,
    replay: &Replay<A>,
    found: Option<Found>,
    bisected: Option<u64>,
) -> Result<Exit, ReplayError> {
    let doc = json!({
        "condition": ev.condition.describe(),
        "found": found.is_some(),
        "sequence": found.as_ref().map(|f| f.sequence),
        "timestamp_ns": found.as_ref().map(|f| f.timestamp_ns),
        "timestamp": found.as_ref().map(|f| format_ns(f.timestamp_ns)),
        "value": found.as_ref().map(|f| f.value.clone()),
        "message": found.as_ref().map(|f| f.message.clone()),
        "searched_to": replay.applied,
        "bisect_start": bisected,
        "replayed": replay.replayed,
        "evaluations": ev.evaluations,
        "warnings": ctx.warnings,
    });
    if ctx.json {
        ctx.document(&doc)?;
    } else {
        print_text(ctx.out, &doc, found.as_ref())?;
    }
    Ok(if found.is_some() {
        Exit::Ok
    } else {
        Exit::NotFound
    })
}

fn print_text(out: &mut dyn Write, doc: &Value, found: Option<&Found>) -> Result<(), ReplayError> {
    let condition = doc["condition"].as_str().unwrap_or("");
    let Some(found) = found else {
        writeln!(
            out,
            "{condition}: never holds up to sequence {}",
            doc["searched_to"]
        )?;
        return Ok(());
    };
    writeln!(
        out,
        "{condition}: first holds after sequence {} ({})",
        found.sequence,
        format_ns(found.timestamp_ns)
    )?;
    writeln!(out, "value: {}", found.value)?;
    if found.message.is_null() {
        writeln!(out, "(already at the start of the range)")?;
    } else {
        writeln!(out, "message: {}", pretty(&found.message))?;
    }
    if let Some(start) = doc["bisect_start"].as_u64() {
        writeln!(out, "bisect: replay started after sequence {start}")?;
    }
    Ok(())
}
