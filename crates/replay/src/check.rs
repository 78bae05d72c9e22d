//! `keel replay check`: replay is deterministic.
//!
//! Replays the whole journal twice from the empty state (the two runs must agree: this catches
//! randomness, clocks, `HashMap` order), recording the state hash at every snapshot's
//! sequence. Then, for every snapshot: its restored state must have the hash the full replay
//! had at that sequence, and snapshot + the journal after it must end with the same hash and
//! produce the same outputs as the full replay did after that sequence. Outputs are compared
//! through an order-independent digest (a wrapping sum of per-message hashes), so the suffix
//! after a snapshot is the total minus the prefix, with no outputs kept in memory.

use std::io::Write;

use serde_json::{json, Value};

use super::ctx::Ctx;
use super::error::{Exit, ReplayError};
use super::files::{list_snapshots, restore_bound, SnapFile};
use super::info::text;
use super::replayer::{empty_state, Flow, Replay, Step};
use keel_services::App;

/// A 64-bit hash of one message's output, its sequence and the one its reply names included.
fn output_digest(step: &Step<'_>) -> u64 {
    let a = &step.applied;
    let mut header = [0u8; 15];
    header[..8].copy_from_slice(&step.reply_sequence.to_le_bytes());
    header[8] = a.status as u8;
    header[9..13].copy_from_slice(&a.reason.to_le_bytes());
    header[13..15].copy_from_slice(&a.kind.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header), step.payload);
    mix(step.record.sequence ^ (u64::from(crc) << 32) ^ u64::from(crc))
}

/// splitmix64's finalizer: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a replay ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct End {
    last: u64,
    hash: u64,
    outputs: u64,
}

/// (sequence, state hash, output digest so far) at each snapshot's sequence.
type Seen = Vec<(u64, u64, u64)>;

/// Replays `replay` to the end, summing output digests; at each of `points` (ascending)
/// records (sequence, state hash, digest so far).
fn replay_to_end<A: App>(
    replay: &mut Replay<A>,
    points: &[u64],
) -> Result<(End, Seen), ReplayError> {
    let mut digest = 0u64;
    let mut seen = Vec::with_capacity(points.len());
    let mut next = points.iter().copied().peekable();
    while next.next_if(|&p| p < replay.applied).is_some() {}
    if next.next_if_eq(&replay.applied).is_some() {
        seen.push((replay.applied, replay.app.state_hash(), 0));
    }
    replay.run_to(None, |app, step| {
        digest = digest.wrapping_add(output_digest(step));
        if next.next_if_eq(&step.record.sequence).is_some() {
            seen.push((step.record.sequence, app.state_hash(), digest));
        }
        Ok(Flow::Continue)
    })?;
    let end = End {
        last: replay.applied,
        hash: replay.app.state_hash(),
        outputs: digest,
    };
    Ok((end, seen))
}

fn hex(h: u64) -> String {
    format!("{h:#018x}")
}

/// Checks one snapshot against the full replay.
fn check_snapshot<A: App>(
    ctx: &Ctx<'_>,
    file: &SnapFile,
    full: End,
    at: Option<&(u64, u64, u64)>,
) -> Result<Value, ReplayError> {
    let base = json!({"file": file.path.display().to_string(), "sequence": file.sequence});
    let (Some(&(_, full_hash, prefix)), true) = (at, file.sequence <= full.last) else {
        return Ok(merge(
            base,
            json!({"status": "beyond_end",
            "reason": "snapshot is beyond the end of the journal: records it saw are gone, and \
                recovery refuses to start (`keel replay verify` reports it)"}),
        ));
    };
    let (app, once) = match restore_bound::<A>(file, &ctx.journal, &ctx.dedup) {
        Ok(restored) => (restored.app, restored.once),
        Err(reason) => return Ok(merge(base, json!({"status": "unusable", "reason": reason}))),
    };
    let restored_hash = app.state_hash();
    let mut tail = Replay::start(ctx, &ctx.journal, (app, once), file.sequence)?;
    tail.show_progress(ctx, "snapshot + tail", Some(full.last));
    let (end, _) = replay_to_end(&mut tail, &[])?;
    let outputs_equal = end.outputs == full.outputs.wrapping_sub(prefix);
    let ok = restored_hash == full_hash
        && end
            == End {
                outputs: end.outputs,
                ..full
            }
        && outputs_equal;
    Ok(merge(
        base,
        json!({
            "status": if ok { "ok" } else { "mismatch" },
            "restored_hash": hex(restored_hash),
            "full_replay_hash_at_snapshot": hex(full_hash),
            "tail_messages": tail.replayed,
            "tail_end_hash": hex(end.hash),
            "tail_last_sequence": end.last,
            "outputs_equal": outputs_equal,
        }),
    ))
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Runs `check`.
pub(crate) fn run<A: App>(ctx: &mut Ctx<'_>) -> Result<Exit, ReplayError> {
    let files = list_snapshots(&ctx.snapshots)?;
    let points: Vec<u64> = files.iter().map(|f| f.sequence).collect();
    let journal = ctx.journal.clone();
    let mut first = Replay::<A>::start(ctx, &journal, empty_state(ctx)?, 0)?;
    first.show_progress(ctx, "full replay 1/2", None);
    let (full, seen) = replay_to_end(&mut first, &points)?;
    drop(first);
    let mut second = Replay::<A>::start(ctx, &journal, empty_state(ctx)?, 0)?;
    second.show_progress(ctx, "full replay 2/2", Some(full.last));
    let (again, _) = replay_to_end(&mut second, &[])?;
    drop(second);
    let mut snapshots = Vec::new();
    for file in &files {
        let at = seen.iter().find(|p| p.0 == file.sequence);
        snapshots.push(check_snapshot::<A>(ctx, file, full, at)?);
    }
    let status = |s: &str| snapshots.iter().any(|v| v["status"] == s);
    let exit = if again != full || status("mismatch") {
        Exit::Mismatch
    } else if status("unusable") {
        Exit::SnapshotCorrupted
    } else {
        Exit::Ok
    };
    let doc = json!({
        "deterministic": exit != Exit::Mismatch,
        "full_replay": {"last_sequence": full.last, "state_hash": hex(full.hash),
                        "second_run_state_hash": hex(again.hash),
                        "second_run_outputs_equal": again.outputs == full.outputs},
        "snapshots": snapshots,
        "exit_code": exit.code(),
    });
    if ctx.json {
        ctx.document(&doc)?;
    } else {
        print_text(ctx.out, &doc)?;
    }
    Ok(exit)
}

fn print_text(out: &mut dyn Write, doc: &Value) -> Result<(), ReplayError> {
    let f = &doc["full_replay"];
    writeln!(
        out,
        "full replay: {} messages, state hash {} (second run: {}, outputs {})",
        f["last_sequence"],
        text(&f["state_hash"]),
        text(&f["second_run_state_hash"]),
        if f["second_run_outputs_equal"] == true {
            "equal"
        } else {
            "DIFFERENT"
        }
    )?;
    let snapshots = doc["snapshots"].as_array().map_or(&[][..], Vec::as_slice);
    if snapshots.is_empty() {
        writeln!(out, "no snapshots: nothing to compare with")?;
    }
    for s in snapshots {
        write!(
            out,
            "snapshot {:>10}  {:<10}",
            s["sequence"],
            text(&s["status"])
        )?;
        match s["status"].as_str() {
            Some("ok" | "mismatch") => writeln!(
                out,
                "restored {} (full replay there {}), + {} messages -> {}, outputs {}",
                text(&s["restored_hash"]),
                text(&s["full_replay_hash_at_snapshot"]),
                s["tail_messages"],
                text(&s["tail_end_hash"]),
                if s["outputs_equal"] == true {
                    "equal"
                } else {
                    "DIFFERENT"
                }
            )?,
            _ => writeln!(out, "{}", text(&s["reason"]))?,
        }
    }
    let verdict = if doc["deterministic"] == true {
        "deterministic"
    } else {
        "NOT deterministic"
    };
    writeln!(out, "verdict: {verdict} (exit {})", doc["exit_code"])?;
    Ok(())
}
