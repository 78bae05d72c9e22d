//! `keel replay`: inspect and replay a recorded journal, read-only.
//!
//! When something odd happened in production, copy the journal and snapshots somewhere and ask:
//! what came in, in what order, and what did the state look like at each point? Every command
//! is generic over the application ([`App`]) and never modifies what it reads: the journal is
//! read with [`keel::journal::JournalReader`] (no lock, so a live journal can be read too),
//! `verify` uses [`keel::journal::verify`] (a shared lock), and snapshot files are opened
//! read-only. Replays go through the engine's exactly-once table ([`keel::engine::ExactlyOnce`],
//! restored from the snapshot a replay starts from) and [`keel::engine::apply_message`], the
//! code path of live apply and startup recovery, with one response buffer allocated up front:
//! a request resent by an exactly-once client is answered as the engine answered it, not
//! applied twice.
//!
//! # Synopsis
//!
//! ```text
//! keel replay [--app bookstore|exchange] [--data-dir DIR | --journal DIR --snapshots DIR]
//!             [--json] [--no-progress] [--max-response-bytes BYTES]
//!             [--dedup-clients N] [--dedup-window N] [--dedup-reply-size SIZE] <COMMAND>
//!
//!   info                       segments, sequence and time range, counts by kind, snapshots,
//!                              format version and codec
//!   verify                     every record and snapshot; exit 0/3/4/5/6 (below)
//!   dump    [--from SEQ] [--to SEQ] [--since TIME] [--until TIME] [--session ID]...
//!           [--kind K]... [--limit N] [--continue-past-damage]
//!   state   [--at SEQ] [--full] [QUERY...]
//!   find    (--hash HEX | --query WORDS... [--field NAME|JSON_POINTER]
//!            (--lt|--le|--gt|--ge|--eq|--ne) VALUE) [--bisect] [--from SEQ] [--to SEQ]
//!   find    (--where FIELD=VALUE... | --order ID | --customer ID) [--from SEQ] [--to SEQ]
//!   outputs [--from SEQ] [--to SEQ] [--save FILE]
//!   diff    (--other DIR [--checkpoint N] | --against FILE) [--from SEQ] [--to SEQ]
//!   check
//! ```
//!
//! `--data-dir` defaults to `.` (journal in `./journal`, snapshots in `./snapshots`). TIME is
//! nanoseconds since the Unix epoch or RFC 3339 (`2025-01-31T12:00:00.5Z`; no offset means
//! UTC). Sequences are inclusive; "the state at SEQ" is the state after message SEQ was
//! applied (0: the empty state). `--json` prints one JSON document, or JSON lines for the
//! streams (`dump`, `outputs`). Progress bars go to standard error, only on a terminal.
//!
//! # Exit status
//!
//! See [`Exit`]: 0 ok/sound, 1 error, 2 usage, 3 torn tail (a warning: a crash mid-append,
//! cut by the next writer), 4 journal corrupted, 5 snapshot unusable, 6 journal locked by a
//! live writer (`verify`), 7 difference (`diff`) or nondeterminism (`check`), 8 not found
//! (`find`). Any command that reads into corruption stops with 4 and names file, offset,
//! expected sequence and reason.
//!
//! # Exactly once
//!
//! The exactly-once table starts empty for a replay from sequence 1, and is restored from the
//! snapshot a replay starts from (format 3; older ones carry none). Its limits default to the
//! engine's; `--dedup-clients`, `--dedup-window` and `--dedup-reply-size` set them as
//! `keel serve` does. A journal replayed with other limits than it was served with differs
//! from what the engine did only after a client was evicted or a reply left its window. An
//! output ([`OutputLine`]) of a resent request answered with its original reply names the
//! sequence that applied it in `duplicate_of`.
//!
//! # Queries
//!
//! `state --at SEQ QUERY...` and `find --query` evaluate application queries on a rebuilt state:
//! the words are parsed with [`App::parse_command`], the message is applied with
//! `apply_message` as message `SEQ + 1` (timestamp of record `SEQ`, session 0, correlation 0),
//! and the response is shown with [`App::describe_response`]. Queries are commands that do not
//! change the state; `state` reports it when one does (a "what if"), `find` refuses it.
//!
//! `find` evaluates its condition at the start of the range and then after every message that
//! may have changed the state (rejected and control messages cannot), and re-describes a
//! query's response only when its raw bytes change. `--bisect` assumes a monotone condition
//! (false, then true for good) and binary-searches the snapshots in range for the last one
//! where it is false, replaying from there; with `--hash` it starts at the snapshot before the
//! first snapshot recorded with that hash (assuming that state occurs once).
//!
//! # Which application
//!
//! Journals written since format version 2 name their service in every segment header, so
//! `--app` is optional: [`main`] reads the name from the newest segment naming one. Older
//! journals name none and need `--app`. An `--app` that disagrees with the journal is refused
//! (exit 2) rather than decoding one service's messages as another's.
//!
//! # Searching
//!
//! `find --where FIELD=VALUE` (repeatable; `--order ID` and `--customer ID` are shorthands)
//! prints every message in the range whose request or response holds the value under one of
//! the keys the application declares for FIELD ([`App::searchable_fields`]), with its
//! response; exit 8 when none does. Responses are rebuilt by replaying (from the best
//! snapshot before `--from`), since some ids only appear there.
//!
//! # Use from the `keel` binary
//!
//! Add `Replay(keel_replay::ReplayArgs)` to the subcommands and call [`main`] (which
//! dispatches on `--app`, or on the service the journal names), or [`run`] for one
//! application type.

mod args;
mod check;
mod ctx;
mod dump;
mod error;
mod examples;
mod files;
mod find;
mod info;
mod outputs;
mod query;
mod replayer;
mod search;
mod state;
mod time;
mod verify;

pub use args::{
    AppName, DataArgs, DiffArgs, DumpArgs, FindArgs, OutputsArgs, RangeArgs, ReplayArgs,
    ReplayCommand, StateArgs,
};
pub use error::{Exit, ReplayError};
pub use outputs::OutputLine;

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use ctx::Ctx;
use keel::Typed;
use keel_services::bookstore::Bookstore;
use keel_services::exchange::Exchange;
use keel_services::App;

/// Runs one `keel replay` command for application `A`, printing to standard output.
pub fn run<A: App>(args: &ReplayArgs) -> Result<Exit, ReplayError> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = run_with::<A>(args, &mut out);
    let flushed = out.flush();
    let exit = result?;
    flushed?;
    Ok(exit)
}

/// Runs one `keel replay` command for application `A`, printing to `out`.
pub fn run_with<A: App>(args: &ReplayArgs, out: &mut dyn Write) -> Result<Exit, ReplayError> {
    let journal = args.data.journal_dir();
    match files::journal_service(&journal)? {
        Some(found) if found != A::NAME => {
            return Err(ReplayError::WrongApp {
                journal,
                found,
                asked: A::NAME,
            })
        }
        _ => {}
    }
    let mut ctx = Ctx::new(args, out);
    if args.max_response_bytes == 0 {
        return Err(ReplayError::Usage(
            "--max-response-bytes must be positive".into(),
        ));
    }
    ctx.exactly_once()?;
    let exit = match &args.command {
        ReplayCommand::Info => info::run::<A>(&mut ctx),
        ReplayCommand::Verify => verify::run::<A>(&mut ctx),
        ReplayCommand::Dump(a) => dump::run::<A>(&mut ctx, a),
        ReplayCommand::State(a) => state::run::<A>(&mut ctx, a),
        ReplayCommand::Find(a) if search::requested(a) => search::run::<A>(&mut ctx, a),
        ReplayCommand::Find(a) => find::run::<A>(&mut ctx, a),
        ReplayCommand::Outputs(a) => outputs::run_outputs::<A>(&mut ctx, a),
        ReplayCommand::Diff(a) => outputs::run_diff::<A>(&mut ctx, a),
        ReplayCommand::Check => check::run::<A>(&mut ctx),
    }?;
    ctx.out.flush()?;
    Ok(exit)
}

/// [`run`], with errors printed on standard error: the process exit code.
pub fn main_for<A: App>(args: &ReplayArgs) -> ExitCode {
    match run::<A>(args) {
        Ok(exit) => exit.into(),
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel replay: error: {e}");
            e.exit().into()
        }
    }
}

/// `keel replay` for the application named by `--app`, or else by the journal's segment
/// headers: the process exit code. A mismatch between the two is refused (in [`run_with`]).
pub fn main(args: &ReplayArgs) -> ExitCode {
    match args.app.map_or_else(|| detect_app(args), Ok) {
        Ok(AppName::Bookstore) => main_for::<Typed<Bookstore>>(args),
        Ok(AppName::Exchange) => main_for::<Typed<Exchange>>(args),
        Err(e) => {
            eprintln!("keel replay: error: {e}");
            e.exit().into()
        }
    }
}

/// The application the journal's segment headers name.
pub fn detect_app(args: &ReplayArgs) -> Result<AppName, ReplayError> {
    let journal = args.data.journal_dir();
    match files::journal_service(&journal)? {
        Some(name) if name == <Typed<Bookstore> as App>::NAME => Ok(AppName::Bookstore),
        Some(name) if name == <Typed<Exchange> as App>::NAME => Ok(AppName::Exchange),
        Some(found) => Err(ReplayError::UnsupportedApp { journal, found }),
        None => Err(ReplayError::UnknownApp { journal }),
    }
}

/// Parses `keel replay` arguments (without the program name) — for tests and embedding.
pub fn parse_args<I, T>(words: I) -> Result<ReplayArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{Args, FromArgMatches};
    let command = ReplayArgs::augment_args(clap::Command::new("keel-replay").no_binary_name(true));
    let matches = command.try_get_matches_from(words)?;
    ReplayArgs::from_arg_matches(&matches)
}
