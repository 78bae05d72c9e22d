//! `keel replay dump`: decoded messages, one per line, filtered by sequence, time, session and
//! kind. Reads the journal only; nothing is replayed.

use std::path::Path;

use serde_json::{json, Value};

use super::args::DumpArgs;
use super::ctx::Ctx;
use super::error::{Exit, ReplayError};
use super::files::{list_segments, open_reader};
use super::info::name_in;
use super::time::{format_ns, parse_time};
use keel::engine::{message_of, Message, MessageHeader, CONTROL_KIND_MIN, CONTROL_SNAPSHOT};
use keel::journal::{JournalError, Record};
use keel_services::App;

/// The filters of one dump.
struct Filter {
    since: Option<u64>,
    until: Option<u64>,
    sessions: Vec<u64>,
    /// Kinds asked for by number or name (empty: all).
    kinds: Vec<u16>,
    /// `--kind control`: every engine control message.
    control: bool,
}

impl Filter {
    fn new<A: App>(args: &DumpArgs) -> Result<Self, ReplayError> {
        let time = |t: &Option<String>| t.as_deref().map(parse_time).transpose();
        let since = time(&args.since).map_err(ReplayError::Usage)?;
        let until = time(&args.until).map_err(ReplayError::Usage)?;
        let mut filter = Filter {
            since,
            until,
            sessions: args.session.clone(),
            kinds: Vec::new(),
            control: false,
        };
        let mut known = None;
        for kind in &args.kind {
            match kind.parse::<u16>() {
                Ok(number) => filter.kinds.push(number),
                Err(_) if spelling(kind) == "control" => filter.control = true,
                Err(_) if spelling(kind) == "control:snapshot" => {
                    filter.kinds.push(CONTROL_SNAPSHOT);
                }
                Err(_) => {
                    let known = known.get_or_insert_with(kind_names::<A>);
                    filter.kinds.push(kind_number::<A>(known, kind)?);
                }
            }
        }
        Ok(filter)
    }

    /// Whether `record` passes the filters.
    fn passes(&self, record: &Record<'_>) -> bool {
        let t = record.timestamp_ns;
        let no_kind_filter = self.kinds.is_empty() && !self.control;
        self.since.is_none_or(|s| t >= s)
            && self.until.is_none_or(|u| t <= u)
            && (self.sessions.is_empty() || self.sessions.contains(&record.session_id))
            && (no_kind_filter
                || self.kinds.contains(&record.kind)
                || (self.control && record.kind >= CONTROL_KIND_MIN))
    }
}

/// A kind name as compared: lower case, `_` and `-` alike (`place_order` is `place-order`).
fn spelling(name: &str) -> String {
    name.trim().to_lowercase().replace('_', "-")
}

/// The application's message kinds and their names, learnt from its description of an empty
/// message of each kind (`App` has no list of kinds); `unknown` and unnamed kinds are left out.
fn kind_names<A: App>() -> Vec<(u16, String)> {
    (0..CONTROL_KIND_MIN)
        .filter_map(|kind| {
            let header = MessageHeader {
                sequence: 1,
                timestamp_ns: 0,
                session_id: 0,
                correlation_id: 0,
                kind,
                version: 1,
            };
            let description = A::describe_message(&Message {
                header,
                payload: &[],
            });
            let name = name_in(&description)?;
            (name != "unknown").then(|| (kind, name.to_owned()))
        })
        .collect()
}

/// The number of the kind called `name` (either spelling), or an error listing the names.
fn kind_number<A: App>(known: &[(u16, String)], name: &str) -> Result<u16, ReplayError> {
    let wanted = spelling(name);
    known
        .iter()
        .find(|(_, n)| spelling(n) == wanted)
        .map(|&(kind, _)| kind)
        .ok_or_else(|| ReplayError::UnknownKind {
            kind: name.to_owned(),
            app: A::NAME,
            available: known
                .iter()
                .map(|(k, n)| format!("{n} ({k})"))
                .chain(["control".to_owned(), "control:snapshot".to_owned()])
                .collect(),
        })
}

/// One message as JSON: the record's header and the application's description.
fn describe<A: App>(record: &Record<'_>) -> Value {
    let message = match record.kind {
        CONTROL_SNAPSHOT => json!({"control": "snapshot"}),
        k if k >= CONTROL_KIND_MIN => json!({"control": k}),
        _ => A::describe_message(&message_of(record)),
    };
    json!({
        "sequence": record.sequence,
        "timestamp_ns": record.timestamp_ns,
        "timestamp": format_ns(record.timestamp_ns),
        "session_id": record.session_id,
        "correlation_id": record.correlation_id,
        "kind": record.kind,
        "version": record.version,
        "message": message,
    })
}

/// Runs `dump`.
pub(crate) fn run<A: App>(ctx: &mut Ctx<'_>, args: &DumpArgs) -> Result<Exit, ReplayError> {
    let filter = Filter::new::<A>(args)?;
    let from = args.range.from.unwrap_or(1);
    let to = args.range.to.unwrap_or(u64::MAX);
    if to < from {
        return Err(ReplayError::Usage(format!(
            "--to {to} is before --from {from}"
        )));
    }
    let mut printed = 0u64;
    let mut start = from;
    let mut exit = Exit::Ok;
    while start <= to {
        let damage = match print_stretch::<A>(ctx, &filter, args, start, to, &mut printed) {
            Err(ReplayError::Journal(e @ JournalError::Corrupted { .. }))
                if args.continue_past_damage =>
            {
                e
            }
            other => return other.map(|()| exit),
        };
        exit = Exit::JournalCorrupted;
        let next = next_segment_after(&ctx.journal, &damage)?;
        report_damage(ctx, &damage, next)?;
        let Some(next) = next.filter(|&n| n > start) else {
            break;
        };
        start = next;
    }
    Ok(exit)
}

/// Prints the records from `start` to `to` that pass the filters, up to the end of the
/// journal or the first damage (an error).
fn print_stretch<A: App>(
    ctx: &mut Ctx<'_>,
    filter: &Filter,
    args: &DumpArgs,
    start: u64,
    to: u64,
    printed: &mut u64,
) -> Result<(), ReplayError> {
    let mut reader = open_reader(&ctx.journal)?;
    reader.seek(start)?;
    while let Some(record) = reader.next()? {
        if record.sequence > to || args.limit.is_some_and(|l| *printed >= l) {
            break;
        }
        if !filter.passes(&record) {
            continue;
        }
        let line = describe::<A>(&record);
        if ctx.json {
            ctx.json_line(&line)?;
        } else {
            let utc = format_ns(record.timestamp_ns);
            writeln!(
                ctx.out,
                "{:>10}  {utc}  {}",
                record.sequence, line["message"]
            )?;
        }
        *printed += 1;
    }
    Ok(())
}

/// The first sequence of the segment after the one holding `damage` (`None`: it is the last).
fn next_segment_after(journal: &Path, damage: &JournalError) -> Result<Option<u64>, ReplayError> {
    let JournalError::Corrupted { segment, .. } = damage else {
        return Ok(None);
    };
    let segments = list_segments(journal)?;
    let damaged = segments
        .iter()
        .find(|s| &s.path == segment)
        .map_or(0, |s| s.first_sequence);
    Ok(segments
        .iter()
        .map(|s| s.first_sequence)
        .find(|&first| first > damaged))
}

/// `--continue-past-damage`: says, in the output stream, what is damaged and where the dump
/// goes on.
fn report_damage(
    ctx: &mut Ctx<'_>,
    damage: &JournalError,
    next: Option<u64>,
) -> Result<(), ReplayError> {
    if ctx.json {
        let line = json!({"damage": damage.to_string(), "continues_at": next});
        return ctx.json_line(&line);
    }
    let goes_on = next.map_or("nothing follows".to_owned(), |n| {
        format!("continuing at sequence {n}, the next segment")
    });
    writeln!(ctx.out, "---- damaged: {damage}; {goes_on}")?;
    Ok(())
}
