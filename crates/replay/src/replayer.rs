//! Replaying a journal into an application: the best snapshot at or before a sequence, then the
//! journal after it, message by message through the engine's exactly-once table
//! ([`ExactlyOnce`], restored from the snapshot with the state) and `apply_message` — the same
//! code path as live apply and startup recovery, so a request resent by an exactly-once client
//! is answered, not applied twice — with one response buffer allocated up front.

use std::path::Path;

use super::ctx::{Ctx, Progress};
use super::error::ReplayError;
use super::files::{list_segments, list_snapshots, open_reader, restore_bound, Restored};
use keel::engine::{
    message_of, Applied, ExactlyOnce, Message, Response, ResponseHeader, Status, CONTROL_KIND_MIN,
};
use keel::journal::{JournalReader, Record};
use keel_services::App;

/// One replayed message: the record, what applying it decided, the sequence its reply names
/// and the response payload.
pub(crate) struct Step<'a> {
    pub(crate) record: Record<'a>,
    pub(crate) applied: Applied,
    /// The record's own sequence, or for a resent request answered from the exactly-once
    /// table the sequence of the message that applied it.
    pub(crate) reply_sequence: u64,
    pub(crate) payload: &'a [u8],
}

impl Step<'_> {
    /// The message as the processor saw it.
    pub(crate) fn message(&self) -> Message<'_> {
        message_of(&self.record)
    }

    /// The response as the engine would have published it.
    pub(crate) fn response(&self) -> Response<'_> {
        response_of(
            &self.record,
            (&self.applied, self.reply_sequence),
            self.payload,
        )
    }

    /// For a resent request answered with its original reply: the sequence of the message
    /// that applied it.
    pub(crate) fn duplicate_of(&self) -> Option<u64> {
        (self.reply_sequence != self.record.sequence).then_some(self.reply_sequence)
    }

    /// Whether the state may have changed. A rejected message leaves the state unchanged (an
    /// engine invariant), control messages never reach the processor, and neither does a
    /// resent request (answered from the exactly-once table, or `already-answered`).
    pub(crate) fn may_change_state(&self) -> bool {
        !matches!(
            self.applied.status,
            Status::Rejected | Status::AlreadyAnswered
        ) && self.record.kind < CONTROL_KIND_MIN
            && self.duplicate_of().is_none()
    }
}

/// The response to `record`, as the engine builds it: what applying it decided, and the
/// sequence the reply names.
pub(crate) fn response_of<'a>(
    record: &Record<'_>,
    (applied, reply_sequence): (&Applied, u64),
    payload: &'a [u8],
) -> Response<'a> {
    let header = ResponseHeader {
        sequence: reply_sequence,
        session_id: record.session_id,
        correlation_id: record.correlation_id,
        status: applied.status,
        reason: applied.reason,
        kind: applied.kind,
    };
    Response { header, payload }
}

/// Whether `run_to`'s caller wants more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// An application state being rebuilt from a journal.
pub(crate) struct Replay<A: App> {
    /// The state.
    pub(crate) app: A,
    /// The engine's exactly-once table that goes with it.
    once: ExactlyOnce,
    /// Last sequence applied (or the snapshot's sequence; 0 for the empty state).
    pub(crate) applied: u64,
    /// Timestamp of record `applied` (0 when not known yet).
    pub(crate) timestamp_ns: u64,
    /// The snapshot the state started from.
    pub(crate) snapshot: Option<u64>,
    /// Messages applied from the journal.
    pub(crate) replayed: u64,
    buf: Box<[u8]>,
    reader: JournalReader,
    progress: Progress,
}

impl<A: App> Replay<A> {
    /// Continues `app` and its exactly-once table `once`, which hold the state after
    /// `applied`, with the journal in `journal`.
    pub(crate) fn start(
        ctx: &Ctx<'_>,
        journal: &Path,
        (app, once): (A, ExactlyOnce),
        applied: u64,
    ) -> Result<Self, ReplayError> {
        let mut reader = open_reader(journal)?;
        reader.seek(applied + 1)?;
        Ok(Replay {
            app,
            once,
            applied,
            timestamp_ns: 0,
            snapshot: None,
            replayed: 0,
            buf: vec![0; ctx.max_response_bytes].into(),
            reader,
            progress: Progress::none(),
        })
    }

    /// The state after `at`: the newest usable snapshot at or before `at` (unless
    /// `use_snapshots` is false), then the journal up to `at`. Unusable snapshots are skipped
    /// with a warning; a journal that ends before `at` is an error.
    pub(crate) fn rebuild(
        ctx: &mut Ctx<'_>,
        journal: &Path,
        snapshots: Option<&Path>,
        at: u64,
    ) -> Result<Self, ReplayError> {
        let (state, from) = match snapshots {
            Some(dir) => best_snapshot::<A>(ctx, journal, dir, at)?,
            None => (empty_state(ctx)?, 0),
        };
        let mut replay = Replay::start(ctx, journal, state, from)?;
        replay.snapshot = snapshots.is_some().then_some(from).filter(|&s| s > 0);
        if at > from {
            replay.show_progress(ctx, "rebuilding state", Some(at));
        }
        replay.run_to(Some(at), |_, _| Ok(Flow::Continue))?;
        replay.progress = Progress::none();
        if replay.applied < at {
            return Err(ReplayError::Replay(format!(
                "the journal ends at sequence {}, before sequence {at}",
                replay.applied
            )));
        }
        replay.fill_timestamp(journal)?;
        Ok(replay)
    }

    /// Draws a progress bar for the replay up to `to` (the journal's end when `None`).
    pub(crate) fn show_progress(&mut self, ctx: &Ctx<'_>, label: &str, to: Option<u64>) {
        if ctx.progress {
            let end = to.or_else(|| journal_end(&ctx.journal));
            self.progress = ctx.progress_bar(label, self.applied, end);
        }
    }

    /// After a snapshot restore, looks up the timestamp of record `applied`.
    fn fill_timestamp(&mut self, journal: &Path) -> Result<(), ReplayError> {
        if self.timestamp_ns == 0 && self.applied > 0 {
            self.timestamp_ns = timestamp_of(journal, self.applied)?;
        }
        Ok(())
    }

    /// Applies messages until `to` (inclusive; the end of the journal when `None`) or until
    /// `each` says stop. `each` sees the state right after each message.
    pub(crate) fn run_to(
        &mut self,
        to: Option<u64>,
        mut each: impl FnMut(&mut A, &Step<'_>) -> Result<Flow, ReplayError>,
    ) -> Result<(), ReplayError> {
        let Replay {
            app,
            once,
            applied,
            timestamp_ns,
            replayed,
            buf,
            reader,
            progress,
            ..
        } = self;
        while to.is_none_or(|to| *applied < to) {
            let Some(step) = advance(reader, (app, once), buf, *applied + 1)? else {
                break;
            };
            *applied = step.record.sequence;
            *timestamp_ns = step.record.timestamp_ns;
            *replayed += 1;
            if *replayed % Progress::EVERY == 0 {
                progress.set(*applied);
            }
            if each(app, &step)? == Flow::Stop {
                break;
            }
        }
        Ok(())
    }

    /// Applies the next message, if the journal has one.
    pub(crate) fn step(&mut self) -> Result<Option<Step<'_>>, ReplayError> {
        let step = advance(
            &mut self.reader,
            (&mut self.app, &mut self.once),
            &mut self.buf,
            self.applied + 1,
        )?;
        if let Some(step) = &step {
            self.applied = step.record.sequence;
            self.timestamp_ns = step.record.timestamp_ns;
            self.replayed += 1;
            if self.replayed.is_multiple_of(Progress::EVERY) {
                self.progress.set(self.applied);
            }
        }
        Ok(step)
    }
}

/// Reads the next record, checks it is `expected`, and applies it as the engine does.
fn advance<'a, A: App>(
    reader: &'a mut JournalReader,
    (app, once): (&mut A, &mut ExactlyOnce),
    buf: &'a mut [u8],
    expected: u64,
) -> Result<Option<Step<'a>>, ReplayError> {
    let Some(record) = reader.next()? else {
        return Ok(None);
    };
    if record.sequence != expected {
        return Err(ReplayError::Replay(format!(
            "sequence {expected} is not in the journal (it continues at {}); \
             no usable snapshot covers the missing part",
            record.sequence
        )));
    }
    let (applied, reply_sequence) = once.apply(app, &message_of(&record), buf);
    let payload: &'a [u8] = buf;
    Ok(Some(Step {
        record,
        applied,
        reply_sequence,
        payload: &payload[..applied.len],
    }))
}

/// The timestamp of record `sequence` (0 when the journal does not hold it).
pub(crate) fn timestamp_of(journal: &Path, sequence: u64) -> Result<u64, ReplayError> {
    let mut reader = open_reader(journal)?;
    reader.seek(sequence)?;
    Ok(reader
        .next()?
        .filter(|r| r.sequence == sequence)
        .map_or(0, |r| r.timestamp_ns))
}

/// The empty state: the application's initial state and an empty exactly-once table.
pub(crate) fn empty_state<A: App>(ctx: &Ctx<'_>) -> Result<(A, ExactlyOnce), ReplayError> {
    Ok((A::default(), ctx.exactly_once()?))
}

/// The newest usable snapshot of `dir` at or before `at` that `journal` vouches for,
/// restored with its exactly-once table; or the empty state.
pub(crate) fn best_snapshot<A: App>(
    ctx: &mut Ctx<'_>,
    journal: &Path,
    dir: &Path,
    at: u64,
) -> Result<((A, ExactlyOnce), u64), ReplayError> {
    for file in list_snapshots(dir)?
        .iter()
        .rev()
        .filter(|f| f.sequence <= at)
    {
        match restore_bound::<A>(file, journal, &ctx.dedup) {
            Ok(Restored { app, once, .. }) => return Ok(((app, once), file.sequence)),
            Err(reason) => ctx.warn(format!(
                "snapshot {} is unusable ({reason}); using an older one",
                file.path.display()
            )),
        }
    }
    Ok((empty_state(ctx)?, 0))
}

/// The last sequence of the journal (0 when empty), found by reading only its last non-empty
/// segment.
pub(crate) fn last_sequence(dir: &Path) -> Result<u64, ReplayError> {
    let segments = list_segments(dir)?;
    for segment in segments.iter().rev() {
        let mut reader = open_reader(dir)?;
        reader.seek(segment.first_sequence)?;
        let mut last = None;
        while let Some(record) = reader.next()? {
            last = Some(record.sequence);
        }
        if let Some(last) = last {
            return Ok(last);
        }
    }
    Ok(0)
}

/// [`last_sequence`] for progress bars: `None` when it cannot be told.
pub(crate) fn journal_end(dir: &Path) -> Option<u64> {
    last_sequence(dir).ok().filter(|&last| last > 0)
}
