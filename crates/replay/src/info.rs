//! `keel replay info`: what a journal and its snapshots hold, without replaying anything.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};

use super::ctx::{Ctx, Progress};
use super::error::{Exit, ReplayError};
use super::files::{
    list_segments, list_snapshots, open_reader, read_snapshot, retired_json, retired_text,
    SegmentInfo, SnapFile,
};
use super::time::format_ns;
use keel::engine::{message_of, CONTROL_KIND_MIN, CONTROL_SNAPSHOT};
use keel::journal::{JournalError, Record};
use keel_services::App;

/// What one pass over the records found.
#[derive(Default)]
struct Scan {
    first: Option<u64>,
    last: u64,
    records: u64,
    first_ns: u64,
    last_ns: u64,
    /// kind → (count, name).
    kinds: BTreeMap<u16, (u64, Option<String>)>,
    /// Corruption that stopped the pass.
    corruption: Option<String>,
}

/// Where a message description may name its kind (`App` has no kind-name method): the first
/// of these that holds a string.
const KIND_NAME_POINTERS: [&str; 5] = ["/type", "/kind", "/name", "/header/name", "/header/kind"];

/// The name of a message kind, from the application's description of one such message.
pub(crate) fn kind_name<A: App>(record: &Record<'_>) -> Option<String> {
    match record.kind {
        CONTROL_SNAPSHOT => Some("control:snapshot".into()),
        k if k >= CONTROL_KIND_MIN => Some("control".into()),
        _ => name_in(&A::describe_message(&message_of(record))).map(str::to_owned),
    }
}

/// The kind name in a message's description, if it gives one.
pub(crate) fn name_in(description: &Value) -> Option<&str> {
    KIND_NAME_POINTERS
        .iter()
        .find_map(|p| description.pointer(p).and_then(Value::as_str))
}

fn scan<A: App>(ctx: &Ctx<'_>) -> Result<Scan, ReplayError> {
    let mut scan = Scan::default();
    let mut reader = open_reader(&ctx.journal)?;
    let progress = ctx.progress_bar("reading", 0, None);
    loop {
        let record = match reader.next() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e @ JournalError::Corrupted { .. }) => {
                scan.corruption = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if scan.first.is_none() {
            scan.first = Some(record.sequence);
            scan.first_ns = record.timestamp_ns;
        }
        scan.last = record.sequence;
        scan.last_ns = record.timestamp_ns;
        scan.records += 1;
        if scan.records % Progress::EVERY == 0 {
            progress.set(scan.records);
        }
        let entry = scan.kinds.entry(record.kind).or_insert((0, None));
        if entry.0 == 0 {
            entry.1 = kind_name::<A>(&record);
        }
        entry.0 += 1;
    }
    Ok(scan)
}

/// The newest segment header naming a service: name and schema version (null when none does).
fn newest_service(segments: &[SegmentInfo]) -> Value {
    segments
        .iter()
        .rev()
        .filter_map(|s| s.header.as_ref().ok())
        .find(|h| !h.service_name().is_empty())
        .map_or(
            Value::Null,
            |h| json!({"name": h.service_name(), "schema_version": h.service_schema_version}),
        )
}

fn segment_json(s: &SegmentInfo) -> Value {
    let (format_version, codec_id, error) = match &s.header {
        Ok(h) => (json!(h.format_version), json!(h.codec_id), Value::Null),
        Err(e) => (Value::Null, Value::Null, json!(e)),
    };
    let (service, schema) = match &s.header {
        Ok(h) if !h.service_name().is_empty() => {
            (json!(h.service_name()), json!(h.service_schema_version))
        }
        _ => (Value::Null, Value::Null),
    };
    json!({
        "file": s.path.display().to_string(),
        "first_sequence": s.first_sequence,
        "size_bytes": s.size_bytes,
        "format_version": format_version,
        "codec_id": codec_id,
        "service": service,
        "service_schema_version": schema,
        "header_error": error,
    })
}

fn snapshot_json(f: &SnapFile) -> Value {
    let (valid, schema, hash, error) = match read_snapshot(f) {
        Ok(data) => (
            true,
            json!(data.header.schema_version),
            json!(format!("{:#018x}", data.header.state_hash)),
            Value::Null,
        ),
        Err(e) => (false, Value::Null, Value::Null, json!(e)),
    };
    json!({
        "file": f.path.display().to_string(),
        "sequence": f.sequence,
        "size_bytes": f.size_bytes,
        "valid": valid,
        "schema_version": schema,
        "state_hash": hash,
        "error": error,
    })
}

fn journal_json(
    ctx: &Ctx<'_>,
    segments: &[SegmentInfo],
    scan: &Scan,
    retired: Option<Value>,
) -> Value {
    let versions = |f: fn(&keel::journal::SegmentHeader) -> u16| {
        let mut v: Vec<u16> = segments
            .iter()
            .filter_map(|s| s.header.as_ref().ok().map(f))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let kinds: Vec<Value> = scan
        .kinds
        .iter()
        .map(|(kind, (count, name))| json!({"kind": kind, "name": name, "count": count}))
        .collect();
    let time = |ns: u64| json!({"ns": ns, "utc": format_ns(ns)});
    json!({
        "dir": ctx.journal.display().to_string(),
        "format_versions": versions(|h| h.format_version),
        "codec_ids": versions(|h| h.codec_id),
        "service": newest_service(segments),
        "segments": segments.iter().map(segment_json).collect::<Vec<_>>(),
        "records": scan.records,
        "first_sequence": scan.first,
        "last_sequence": scan.first.map(|_| scan.last),
        "first_timestamp": scan.first.map(|_| time(scan.first_ns)),
        "last_timestamp": scan.first.map(|_| time(scan.last_ns)),
        "kinds": kinds,
        "corruption": scan.corruption,
        "retired": retired,
    })
}

/// Runs `info`.
pub(crate) fn run<A: App>(ctx: &mut Ctx<'_>) -> Result<Exit, ReplayError> {
    let segments = list_segments(&ctx.journal)?;
    let scan = scan::<A>(ctx)?;
    let snapshots: Vec<Value> = list_snapshots(&ctx.snapshots)?
        .iter()
        .map(snapshot_json)
        .collect();
    let doc = json!({
        "app": A::NAME,
        "journal": journal_json(ctx, &segments, &scan, retired_json(&ctx.journal)?),
        "snapshots": {
            "dir": ctx.snapshots.display().to_string(),
            "files": snapshots,
        },
    });
    if ctx.json {
        ctx.document(&doc)?;
    } else {
        print_text(ctx.out, &doc)?;
    }
    Ok(if scan.corruption.is_some() {
        Exit::JournalCorrupted
    } else {
        Exit::Ok
    })
}

fn print_text(out: &mut dyn Write, doc: &Value) -> Result<(), ReplayError> {
    let j = &doc["journal"];
    writeln!(out, "journal    {}", text(&j["dir"]))?;
    writeln!(
        out,
        "  format   version {}, codec {} (flush policy is not recorded on disk)",
        text(&j["format_versions"]),
        text(&j["codec_ids"])
    )?;
    match j["service"]["name"].as_str() {
        Some(name) => writeln!(
            out,
            "  service  {name} (schema version {})",
            j["service"]["schema_version"]
        )?,
        None => writeln!(
            out,
            "  service  not recorded (format version 1, or an unnamed service)"
        )?,
    }
    let segments = j["segments"].as_array().map_or(&[][..], Vec::as_slice);
    writeln!(out, "  segments {}", segments.len())?;
    if !j["retired"].is_null() {
        writeln!(out, "  retired  {}", retired_text(&j["retired"]))?;
    }
    for s in segments {
        write!(
            out,
            "    {}  first {}  {} bytes",
            text(&s["file"]),
            s["first_sequence"],
            s["size_bytes"]
        )?;
        match s["header_error"].as_str() {
            Some(e) => writeln!(out, "  header: {e}")?,
            None => writeln!(out)?,
        }
    }
    match (j["first_sequence"].as_u64(), j["last_sequence"].as_u64()) {
        (Some(first), Some(last)) => {
            writeln!(
                out,
                "  records  {} (sequences {first}..={last})",
                j["records"]
            )?;
            let (a, b) = (&j["first_timestamp"], &j["last_timestamp"]);
            writeln!(out, "  time     {} .. {}", text(&a["utc"]), text(&b["utc"]))?;
            writeln!(out, "           {} .. {} ns", a["ns"], b["ns"])?;
        }
        _ => writeln!(out, "  records  none")?,
    }
    writeln!(out, "  kinds")?;
    for k in j["kinds"].as_array().map_or(&[][..], Vec::as_slice) {
        let name = k["name"].as_str().unwrap_or("?");
        writeln!(out, "    {:>5}  {name:<24} {}", k["kind"], k["count"])?;
    }
    if let Some(c) = j["corruption"].as_str() {
        writeln!(out, "  CORRUPTED: {c} (counts stop there)")?;
    }
    print_snapshots(out, &doc["snapshots"])
}

fn print_snapshots(out: &mut dyn Write, s: &Value) -> Result<(), ReplayError> {
    let files = s["files"].as_array().map_or(&[][..], Vec::as_slice);
    writeln!(
        out,
        "snapshots  {} ({} files)",
        text(&s["dir"]),
        files.len()
    )?;
    for f in files {
        write!(
            out,
            "    {}  sequence {}  {} bytes  ",
            text(&f["file"]),
            f["sequence"],
            f["size_bytes"]
        )?;
        if f["valid"] == true {
            writeln!(
                out,
                "valid, schema {}, hash {}",
                f["schema_version"],
                text(&f["state_hash"])
            )?;
        } else {
            writeln!(out, "INVALID: {}", text(&f["error"]))?;
        }
    }
    Ok(())
}

/// A JSON value as plain text (strings without quotes, arrays comma-separated).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}
