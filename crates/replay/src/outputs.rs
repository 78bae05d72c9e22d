//! `keel replay outputs` and `keel replay diff`: re-run recorded messages through the current
//! code and compare what it answers.
//!
//! Saved outputs file (`outputs --save FILE`), format `keel-replay-outputs` version 1, JSON
//! lines: first a header `{"format":"keel-replay-outputs","version":1,"app":NAME,"from":SEQ}`,
//! then one [`OutputLine`] per message, in sequence order, with fields in this order:
//! `sequence`, `session_id`, `correlation_id`, `request_kind`, `status`
//! (`accepted`/`rejected`/`failed`/`already-answered`), `reason`, `kind` (response kind),
//! `payload` (lowercase hex), `duplicate_of` (only for a request resent by an exactly-once
//! client and answered with its original reply: the sequence that applied it) and `response`
//! (`App::describe_response`, for people). Two outputs are equal when all fields but
//! `response` are.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::args::{DiffArgs, OutputsArgs, RangeArgs};
use super::ctx::Ctx;
use super::error::{io_at, Exit, ReplayError};
use super::query::status_name;
use super::replayer::{Flow, Replay, Step};
use keel_services::App;

const FORMAT_NAME: &str = "keel-replay-outputs";
const FORMAT_VERSION: u32 = 1;

/// First line of a saved outputs file.
#[derive(Debug, Serialize, Deserialize)]
struct FileHeader {
    format: String,
    version: u32,
    app: String,
    from: u64,
}

/// One output, as saved and compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputLine {
    /// Sequence of the message answered.
    pub sequence: u64,
    /// Session of the message.
    pub session_id: u64,
    /// Correlation id of the message.
    pub correlation_id: u64,
    /// Kind of the message.
    pub request_kind: u16,
    /// `accepted`, `rejected`, `failed`, or `already-answered` (a resent request whose reply
    /// the exactly-once table no longer held).
    pub status: String,
    /// Rejection reason (0 unless rejected).
    pub reason: u32,
    /// Response kind.
    pub kind: u16,
    /// Response payload, lowercase hex.
    pub payload: String,
    /// A request resent by an exactly-once client, answered with its original reply instead
    /// of applied again: the sequence of the message that applied it (the sequence its
    /// response names). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<u64>,
    /// The application's description of the response (not compared).
    #[serde(default)]
    pub response: Value,
}

impl OutputLine {
    fn of<A: App>(step: &Step<'_>) -> Self {
        let r = &step.record;
        OutputLine {
            sequence: r.sequence,
            session_id: r.session_id,
            correlation_id: r.correlation_id,
            request_kind: r.kind,
            status: status_name(step.applied.status).to_owned(),
            reason: step.applied.reason,
            kind: step.applied.kind,
            payload: hex(step.payload),
            duplicate_of: step.duplicate_of(),
            response: A::describe_response(r.kind, &step.response()),
        }
    }

    /// Whether `step` produced this output (cheap: no allocation).
    fn matches(&self, step: &Step<'_>) -> bool {
        let r = &step.record;
        (
            self.sequence,
            self.session_id,
            self.correlation_id,
            self.request_kind,
        ) == (r.sequence, r.session_id, r.correlation_id, r.kind)
            && self.status == status_name(step.applied.status)
            && (self.reason, self.kind) == (step.applied.reason, step.applied.kind)
            && hex_eq(&self.payload, step.payload)
            && self.duplicate_of == step.duplicate_of()
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_eq(hex: &str, bytes: &[u8]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hex = hex.as_bytes();
    hex.len() == bytes.len() * 2
        && bytes.iter().zip(hex.chunks(2)).all(|(b, h)| {
            h[0] == DIGITS[usize::from(b >> 4)] && h[1] == DIGITS[usize::from(b & 15)]
        })
}

fn range(args: &RangeArgs) -> Result<(u64, Option<u64>), ReplayError> {
    let from = args.from.unwrap_or(1);
    if args.to.is_some_and(|to| to < from) {
        return Err(ReplayError::Usage("--to is before --from".into()));
    }
    Ok((from, args.to))
}

/// Runs `outputs`.
pub(crate) fn run_outputs<A: App>(
    ctx: &mut Ctx<'_>,
    args: &OutputsArgs,
) -> Result<Exit, ReplayError> {
    let (from, to) = range(&args.range)?;
    let (journal, snapshots) = (ctx.journal.clone(), ctx.snapshots.clone());
    let mut replay = Replay::<A>::rebuild(ctx, &journal, Some(&snapshots), from - 1)?;
    let mut save = match &args.save {
        Some(path) => Some(open_save::<A>(path, from)?),
        None => None,
    };
    // Lines printed on a terminal would be garbled by a bar redrawn under them.
    if save.is_some() || !std::io::stdout().is_terminal() {
        replay.show_progress(ctx, "outputs", to);
    }
    let mut count = 0u64;
    replay.run_to(to, |_, step| {
        let line = OutputLine::of::<A>(step);
        if let Some(w) = save.as_mut() {
            serde_json::to_writer(&mut *w, &line).map_err(std::io::Error::from)?;
            writeln!(w)?;
        } else if ctx.json {
            ctx.json_line(&line.to_json())?;
        } else {
            let copy = line
                .duplicate_of
                .map_or(String::new(), |s| format!("  (resent: the reply of {s})"));
            writeln!(
                ctx.out,
                "{:>10}  {:<8}  reason {:<4}  {}{copy}",
                line.sequence, line.status, line.reason, line.response
            )?;
        }
        count += 1;
        Ok(Flow::Continue)
    })?;
    let (Some(path), Some(mut w)) = (&args.save, save) else {
        return Ok(Exit::Ok);
    };
    w.flush()?;
    let doc = json!({"saved": path.display().to_string(), "outputs": count,
                     "from": from, "to": replay.applied});
    if ctx.json {
        ctx.document(&doc)?;
    } else {
        let (file, to) = (path.display(), replay.applied);
        writeln!(
            ctx.out,
            "wrote {count} outputs (sequences {from}..={to}) to {file}"
        )?;
    }
    Ok(Exit::Ok)
}

fn open_save<A: App>(path: &Path, from: u64) -> Result<BufWriter<File>, ReplayError> {
    let mut w = BufWriter::new(File::create(path).map_err(io_at(path))?);
    let header = FileHeader {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        app: A::NAME.into(),
        from,
    };
    serde_json::to_writer(&mut w, &header).map_err(std::io::Error::from)?;
    writeln!(w)?;
    Ok(w)
}

/// The first place two runs disagree.
struct Difference {
    sequence: u64,
    this: Value,
    other: Value,
}

/// Runs `diff`.
pub(crate) fn run_diff<A: App>(ctx: &mut Ctx<'_>, args: &DiffArgs) -> Result<Exit, ReplayError> {
    let (from, to) = range(&args.range)?;
    let (baseline, compared, difference) = match (&args.other, &args.against) {
        (Some(dir), _) => {
            let (compared, d) = diff_other::<A>(ctx, dir, from, to, args.checkpoint)?;
            (dir.clone(), compared, d)
        }
        (None, Some(file)) => {
            let (compared, d) = diff_against::<A>(ctx, file, from, to)?;
            (file.clone(), compared, d)
        }
        (None, None) => return Err(ReplayError::Usage("diff needs --other or --against".into())),
    };
    report(ctx, &baseline, args.checkpoint, compared, difference)
}

fn report(
    ctx: &mut Ctx<'_>,
    baseline: &Path,
    checkpoint: Option<u64>,
    compared: u64,
    difference: Option<Difference>,
) -> Result<Exit, ReplayError> {
    let what = if checkpoint.is_some() {
        "state hashes"
    } else {
        "outputs"
    };
    let doc = json!({
        "baseline": baseline.display().to_string(),
        "compared": what,
        "checkpoint_every": checkpoint,
        "count": compared,
        "equal": difference.is_none(),
        "first_difference": difference.as_ref().map(|d| json!({
            "sequence": d.sequence, "this": d.this, "other": d.other,
        })),
        "warnings": ctx.warnings,
    });
    if ctx.json {
        ctx.document(&doc)?;
    } else if let Some(d) = &difference {
        writeln!(ctx.out, "first difference at sequence {}", d.sequence)?;
        writeln!(ctx.out, "  this:  {}", d.this)?;
        writeln!(ctx.out, "  other: {}", d.other)?;
    } else {
        let base = baseline.display();
        writeln!(ctx.out, "equal: {compared} {what} compared with {base}")?;
    }
    Ok(if difference.is_some() {
        Exit::Mismatch
    } else {
        Exit::Ok
    })
}

/// Where the other copy's journal and snapshots are: a data directory or a journal directory.
fn other_dirs(dir: &Path) -> (PathBuf, Option<PathBuf>) {
    if dir.join("journal").is_dir() {
        (dir.join("journal"), Some(dir.join("snapshots")))
    } else {
        (dir.to_owned(), None)
    }
}

fn ended(sequence: u64) -> Value {
    json!({"journal_ends_before": sequence})
}

fn diff_other<A: App>(
    ctx: &mut Ctx<'_>,
    dir: &Path,
    from: u64,
    to: Option<u64>,
    checkpoint: Option<u64>,
) -> Result<(u64, Option<Difference>), ReplayError> {
    let (journal, snapshots) = (ctx.journal.clone(), ctx.snapshots.clone());
    let (other_journal, other_snapshots) = other_dirs(dir);
    if let Some(found) = super::files::journal_service(&other_journal)?.filter(|f| f != A::NAME) {
        return Err(ReplayError::WrongApp {
            journal: other_journal,
            found,
            asked: A::NAME,
        });
    }
    let mut this = Replay::<A>::rebuild(ctx, &journal, Some(&snapshots), from - 1)?;
    let mut other =
        Replay::<A>::rebuild(ctx, &other_journal, other_snapshots.as_deref(), from - 1)?;
    this.show_progress(ctx, "comparing", to);
    let Some(every) = checkpoint else {
        return diff_outputs(&mut this, &mut other, to);
    };
    let (compared, difference) = diff_checkpoints(&mut this, &mut other, to, every)?;
    let Some((last_equal, difference)) = difference else {
        return Ok((compared, None));
    };
    drop((this, other));
    let dirs = [(journal, Some(snapshots)), (other_journal, other_snapshots)];
    let first = first_hash_difference::<A>(ctx, &dirs, last_equal, difference.sequence)?;
    Ok((compared, Some(first.unwrap_or(difference))))
}

/// The first message whose output differs, comparing every message.
fn diff_outputs<A: App>(
    this: &mut Replay<A>,
    other: &mut Replay<A>,
    to: Option<u64>,
) -> Result<(u64, Option<Difference>), ReplayError> {
    let mut compared = 0;
    while to.is_none_or(|to| this.applied < to) {
        let sequence = this.applied + 1;
        let (a, b) = match (this.step()?, other.step()?) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => break,
            (a, _) => return Ok((compared, Some(one_ended(sequence, a.is_some())))),
        };
        compared += 1;
        if !same_output(&a, &b) {
            let (this, other) = (OutputLine::of::<A>(&a), OutputLine::of::<A>(&b));
            let (this, other) = (this.to_json(), other.to_json());
            let d = Difference {
                sequence,
                this,
                other,
            };
            return Ok((compared, Some(d)));
        }
    }
    Ok((compared, None))
}

/// A difference at `sequence` where one journal has ended (`this_present`: the other one).
fn one_ended(sequence: u64, this_present: bool) -> Difference {
    let (this, other) = if this_present {
        (json!("present"), ended(sequence))
    } else {
        (ended(sequence), json!("present"))
    };
    Difference {
        sequence,
        this,
        other,
    }
}

/// Compares state hashes at the start, every `every` messages and at the end. A difference
/// comes with the last sequence where the hashes were still equal (`from - 1` when they
/// differ at the start: then that is the difference), for [`first_hash_difference`].
fn diff_checkpoints<A: App>(
    this: &mut Replay<A>,
    other: &mut Replay<A>,
    to: Option<u64>,
    every: u64,
) -> Result<(u64, Option<(u64, Difference)>), ReplayError> {
    let mut compared = 1;
    let mut last_equal = this.applied;
    if let Some(d) = hash_difference(this, other) {
        return Ok((compared, Some((last_equal, d))));
    }
    while to.is_none_or(|to| this.applied < to) {
        let sequence = this.applied + 1;
        let (a, b) = (this.step()?.is_some(), other.step()?.is_some());
        if !a && !b {
            break;
        }
        if a != b {
            return Ok((compared, Some((last_equal, one_ended(sequence, a)))));
        }
        if sequence.is_multiple_of(every) {
            compared += 1;
            if let Some(d) = hash_difference(this, other) {
                return Ok((compared, Some((last_equal, d))));
            }
            last_equal = sequence;
        }
    }
    if this.applied != last_equal {
        compared += 1;
        let difference = hash_difference(this, other);
        return Ok((compared, difference.map(|d| (last_equal, d))));
    }
    Ok((compared, None))
}

/// The first sequence after `last_equal` and before `found` (where a checkpoint or the end
/// of one journal showed a difference) after which the state hashes differ: both journals
/// are rebuilt at `last_equal` and compared after every message. `None`: none before `found`.
fn first_hash_difference<A: App>(
    ctx: &mut Ctx<'_>,
    dirs: &[(PathBuf, Option<PathBuf>); 2],
    last_equal: u64,
    found: u64,
) -> Result<Option<Difference>, ReplayError> {
    if found <= last_equal + 1 {
        return Ok(None);
    }
    let [(journal, snapshots), (other_journal, other_snapshots)] = dirs;
    let mut this = Replay::<A>::rebuild(ctx, journal, snapshots.as_deref(), last_equal)?;
    let mut other =
        Replay::<A>::rebuild(ctx, other_journal, other_snapshots.as_deref(), last_equal)?;
    while this.applied + 1 < found {
        if this.step()?.is_none() || other.step()?.is_none() {
            return Ok(None);
        }
        if let Some(d) = hash_difference(&this, &other) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

fn same_output(a: &Step<'_>, b: &Step<'_>) -> bool {
    let (x, y) = (&a.record, &b.record);
    (x.sequence, x.session_id, x.correlation_id, x.kind)
        == (y.sequence, y.session_id, y.correlation_id, y.kind)
        && (a.applied, a.reply_sequence) == (b.applied, b.reply_sequence)
        && a.payload == b.payload
}

fn hash_difference<A: App>(this: &Replay<A>, other: &Replay<A>) -> Option<Difference> {
    let (a, b) = (this.app.state_hash(), other.app.state_hash());
    (a != b).then(|| Difference {
        sequence: this.applied,
        this: json!({"state_hash": format!("{a:#018x}")}),
        other: json!({"state_hash": format!("{b:#018x}")}),
    })
}

/// Reads the saved outputs file line by line.
struct Saved {
    lines: std::io::Lines<BufReader<File>>,
    path: PathBuf,
    number: u64,
}

impl Saved {
    fn open<A: App>(ctx: &mut Ctx<'_>, path: &Path) -> Result<Self, ReplayError> {
        let file = File::open(path).map_err(io_at(path))?;
        let mut saved = Saved {
            lines: BufReader::new(file).lines(),
            path: path.to_owned(),
            number: 0,
        };
        let header: FileHeader = saved
            .next_json()?
            .ok_or_else(|| saved.bad("empty file".into()))?;
        if header.format != FORMAT_NAME || header.version != FORMAT_VERSION {
            let found = format!("{} version {}", header.format, header.version);
            return Err(saved.bad(format!(
                "not a {FORMAT_NAME} version {FORMAT_VERSION} file ({found})"
            )));
        }
        if header.app != A::NAME {
            ctx.warn(format!(
                "{} was saved by app {:?}, comparing with {:?}",
                path.display(),
                header.app,
                A::NAME
            ));
        }
        Ok(saved)
    }

    fn next_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, ReplayError> {
        let Some(line) = self.lines.next() else {
            return Ok(None);
        };
        self.number += 1;
        let line = line.map_err(io_at(&self.path))?;
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| self.bad(e.to_string()))
    }

    fn bad(&self, reason: String) -> ReplayError {
        ReplayError::Replay(format!(
            "{} line {}: {reason}",
            self.path.display(),
            self.number
        ))
    }
}

fn diff_against<A: App>(
    ctx: &mut Ctx<'_>,
    path: &Path,
    from: u64,
    to: Option<u64>,
) -> Result<(u64, Option<Difference>), ReplayError> {
    let mut saved = Saved::open::<A>(ctx, path)?;
    let mut line: Option<OutputLine> = saved.next_json()?;
    while line.as_ref().is_some_and(|l| l.sequence < from) {
        line = saved.next_json()?;
    }
    let Some(first) = line.as_ref().map(|l| l.sequence) else {
        return Ok((0, None));
    };
    let (journal, snapshots) = (ctx.journal.clone(), ctx.snapshots.clone());
    let mut replay = Replay::<A>::rebuild(ctx, &journal, Some(&snapshots), first - 1)?;
    replay.show_progress(ctx, "comparing", to);
    let mut compared = 0;
    while let Some(expected) = line.take().filter(|l| to.is_none_or(|to| l.sequence <= to)) {
        if expected.sequence <= replay.applied {
            return Err(saved.bad(format!("sequence {} out of order", expected.sequence)));
        }
        replay.run_to(Some(expected.sequence - 1), |_, _| Ok(Flow::Continue))?;
        let sequence = expected.sequence;
        let Some(step) = replay.step()? else {
            let this = ended(sequence);
            return Ok((
                compared,
                Some(Difference {
                    sequence,
                    this,
                    other: expected.to_json(),
                }),
            ));
        };
        compared += 1;
        if !expected.matches(&step) {
            let this = OutputLine::of::<A>(&step).to_json();
            return Ok((
                compared,
                Some(Difference {
                    sequence,
                    this,
                    other: expected.to_json(),
                }),
            ));
        }
        line = saved.next_json()?;
    }
    Ok((compared, None))
}
