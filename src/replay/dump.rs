//! `keel replay dump`: decoded messages, one per line, filtered by sequence, time, session and
//! kind. Reads the journal only; nothing is replayed.

use serde_json::{json, Value};

use super::args::DumpArgs;
use super::ctx::Ctx;
use super::error::{Exit, ReplayError};
use super::info::kind_name;
use super::time::{format_ns, parse_time};
use crate::apps::App;
use crate::engine::{message_of, CONTROL_KIND_MIN, CONTROL_SNAPSHOT};
use crate::journal::{JournalReader, Record};

/// The filters of one dump.
struct Filter {
    since: Option<u64>,
    until: Option<u64>,
    sessions: Vec<u64>,
    kinds: Vec<u16>,
    kind_names: Vec<String>,
}

impl Filter {
    fn new(args: &DumpArgs) -> Result<Self, ReplayError> {
        let time = |t: &Option<String>| t.as_deref().map(parse_time).transpose();
        let since = time(&args.since).map_err(ReplayError::Usage)?;
        let until = time(&args.until).map_err(ReplayError::Usage)?;
        let (numbers, names): (Vec<&String>, Vec<&String>) =
            args.kind.iter().partition(|k| k.parse::<u16>().is_ok());
        Ok(Filter {
            since,
            until,
            sessions: args.session.clone(),
            kinds: numbers.iter().filter_map(|k| k.parse().ok()).collect(),
            kind_names: names.into_iter().cloned().collect(),
        })
    }

    /// Whether `record` passes the filters that need no decoding.
    fn header_passes(&self, record: &Record<'_>) -> bool {
        let t = record.timestamp_ns;
        let no_kind_filter = self.kinds.is_empty() && self.kind_names.is_empty();
        self.since.is_none_or(|s| t >= s)
            && self.until.is_none_or(|u| t <= u)
            && (self.sessions.is_empty() || self.sessions.contains(&record.session_id))
            && (no_kind_filter || self.kinds.contains(&record.kind) || !self.kind_names.is_empty())
    }

    /// Whether a record whose kind is called `name` passes the kind filters.
    fn name_passes(&self, kind: u16, name: Option<&str>) -> bool {
        self.kind_names.is_empty()
            || self.kinds.contains(&kind)
            || name.is_some_and(|n| self.kind_names.iter().any(|k| k == n))
    }
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
    let filter = Filter::new(args)?;
    let from = args.range.from.unwrap_or(1);
    let to = args.range.to.unwrap_or(u64::MAX);
    if to < from {
        return Err(ReplayError::Usage(format!(
            "--to {to} is before --from {from}"
        )));
    }
    let mut reader = JournalReader::open(&ctx.journal)?;
    reader.seek(from)?;
    let mut printed = 0u64;
    while let Some(record) = reader.next()? {
        if record.sequence > to || args.limit.is_some_and(|l| printed >= l) {
            break;
        }
        if !filter.header_passes(&record) {
            continue;
        }
        if !filter.kind_names.is_empty() {
            let name = kind_name::<A>(&record);
            if !filter.name_passes(record.kind, name.as_deref()) {
                continue;
            }
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
        printed += 1;
    }
    Ok(Exit::Ok)
}
