//! The command line of `keel replay`: one `Args` struct, one subcommand enum.

use std::path::PathBuf;

use crate::examples;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};

/// `keel replay`: inspect and replay a recorded journal, read-only.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The application that recorded the journal [default: the service the journal's segment
    /// headers name; journals older than format version 2 need it].
    #[arg(long, value_enum, global = true)]
    pub app: Option<AppName>,
    /// Where the journal and snapshots are.
    #[command(flatten)]
    pub data: DataArgs,
    /// Print one JSON document (JSON lines for `dump` and `outputs`) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Never draw progress bars (they are drawn on standard error, only on a terminal and
    /// never with --json).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Response buffer for each replayed message; match the server's --max-response-size
    /// (the default is the server's default).
    #[arg(long = "max-response-size", alias = "max-response-bytes", global = true,
          value_name = "SIZE", value_parser = keel_services::units::bytes_usize,
          default_value = "4KiB")]
    pub max_response_bytes: usize,
    /// Exactly-once: clients tracked at once (0: off). Replays apply resent requests as the
    /// engine did, with its table; match the server's --dedup-* limits (the defaults are the
    /// server's): with other limits a replay can differ from what the server did, but only
    /// after a client was evicted or a reply left its window. See docs/engine.md, "Exactly
    /// once".
    #[arg(long, global = true, value_name = "N", default_value_t = 1024)]
    pub dedup_clients: usize,
    /// Exactly-once: replies kept per client; match the server's --dedup-window.
    #[arg(long, global = true, value_name = "N", default_value_t = 8)]
    pub dedup_window: usize,
    /// Exactly-once: largest reply kept for a resent request; match the server's
    /// --dedup-reply-size.
    #[arg(long = "dedup-reply-size", global = true, value_name = "SIZE",
          value_parser = keel_services::units::bytes, default_value = "256")]
    pub dedup_reply_bytes: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: ReplayCommand,
}

/// The applications `keel replay` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppName {
    /// Books, prices, stock and orders.
    Bookstore,
    /// Limit order books, accounts and pre-trade risk.
    Exchange,
}

/// Data directories: `--data-dir DIR`, or `--journal DIR` and `--snapshots DIR`.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data directory: the journal in DIR/journal, snapshots in DIR/snapshots.
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    pub data_dir: PathBuf,
    /// Journal directory [default: DATA_DIR/journal].
    #[arg(long, global = true, value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Snapshot directory [default: DATA_DIR/snapshots]; a missing one means no snapshots.
    #[arg(long, global = true, value_name = "DIR")]
    pub snapshots: Option<PathBuf>,
}

impl DataArgs {
    /// The journal directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.journal
            .clone()
            .unwrap_or_else(|| self.data_dir.join("journal"))
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshots
            .clone()
            .unwrap_or_else(|| self.data_dir.join("snapshots"))
    }
}

/// The `keel replay` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ReplayCommand {
    /// Segments, sequence and time range, message counts by kind, snapshots, format versions.
    #[command(after_help = examples::INFO)]
    Info,
    /// Check every record and snapshot; exit 0 sound, 3 torn tail, 4 journal corrupted,
    /// 5 snapshot unusable, 6 locked by a live writer.
    #[command(after_help = examples::VERIFY)]
    Verify,
    /// Decoded messages, one per line, with sequence and timestamp.
    #[command(after_help = examples::DUMP)]
    Dump(DumpArgs),
    /// Rebuild the state after a sequence; print its summary and hash, and answer a query.
    #[command(after_help = examples::STATE)]
    State(StateArgs),
    /// The first sequence after which a condition holds, replaying forward.
    #[command(after_help = examples::FIND)]
    Find(FindArgs),
    /// Re-run messages through the current code and print (or save) their outputs.
    #[command(after_help = examples::OUTPUTS)]
    Outputs(OutputsArgs),
    /// Compare outputs (or state hashes) with another journal copy or a saved outputs file.
    #[command(after_help = examples::DIFF)]
    Diff(DiffArgs),
    /// Determinism: full replay and each snapshot + tail give the same hash and outputs.
    #[command(after_help = examples::CHECK)]
    Check,
}

/// A sequence range `--from SEQ --to SEQ`, both inclusive.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct RangeArgs {
    /// First sequence [default: 1].
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    pub from: Option<u64>,
    /// Last sequence [default: the end of the journal].
    #[arg(long, value_name = "SEQ")]
    pub to: Option<u64>,
}

/// `keel replay dump`
#[derive(Debug, Clone, Default, Args)]
pub struct DumpArgs {
    /// Sequence range.
    #[command(flatten)]
    pub range: RangeArgs,
    /// Only messages stamped at or after TIME (nanoseconds since the epoch, or RFC 3339 such
    /// as 2025-01-31T12:00:00.5Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only messages stamped at or before TIME (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only messages from this session (repeatable).
    #[arg(long, value_name = "ID")]
    pub session: Vec<u64>,
    /// Only messages of this kind: a number, or the name the application gives it
    /// (repeatable).
    #[arg(long, value_name = "K")]
    pub kind: Vec<String>,
    /// Stop after this many messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// At a damaged record, report the damage and go on with the next segment (as `verify`
    /// reads on) instead of stopping; the exit status is still 4.
    #[arg(long)]
    pub continue_past_damage: bool,
}

/// `keel replay state`
#[derive(Debug, Clone, Default, Args)]
pub struct StateArgs {
    /// The state after this sequence [default: the end of the journal]; 0 is the empty state.
    #[arg(long, value_name = "SEQ")]
    pub at: Option<u64>,
    /// Ignore snapshots: replay the whole journal from sequence 1.
    #[arg(long)]
    pub full: bool,
    /// A query to run on the rebuilt state, as the application parses commands (e.g.
    /// `book 7`); it is applied as the message after SEQ and its response is printed.
    #[arg(
        value_name = "QUERY",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub query: Vec<String>,
}

/// `keel replay find`
#[derive(Debug, Clone, Default, Args)]
#[command(group(
    ArgGroup::new("condition")
        .required(true)
        .multiple(true)
        .args(["hash", "query", "matching", "order", "customer"])
))]
#[command(group(
    ArgGroup::new("compare").multiple(false).args(["lt", "le", "gt", "ge", "eq", "ne"])
))]
pub struct FindArgs {
    /// Condition: the state hash equals HEX (as `state` prints it, 0x optional).
    #[arg(long, value_name = "HEX", conflicts_with = "query")]
    pub hash: Option<String>,
    /// Condition: this query's response (e.g. `--query book 7`, or one quoted string).
    #[arg(long, value_name = "WORDS", num_args = 1.., requires = "compare")]
    pub query: Vec<String>,
    /// The response field to compare: its name, e.g. `stock` (`a.b` for a nested one), or a
    /// JSON pointer into the whole description, e.g. `/response/stock` [default: the whole
    /// response]. A field the response does not have is an error listing the ones it has.
    #[arg(long, value_name = "FIELD", requires = "query")]
    pub field: Option<String>,
    /// The field is less than VALUE (a JSON value; bare words are strings).
    #[arg(
        long,
        value_name = "VALUE",
        requires = "query",
        allow_hyphen_values = true
    )]
    pub lt: Option<String>,
    /// The field is less than or equal to VALUE.
    #[arg(
        long,
        value_name = "VALUE",
        requires = "query",
        allow_hyphen_values = true
    )]
    pub le: Option<String>,
    /// The field is greater than VALUE.
    #[arg(
        long,
        value_name = "VALUE",
        requires = "query",
        allow_hyphen_values = true
    )]
    pub gt: Option<String>,
    /// The field is greater than or equal to VALUE.
    #[arg(
        long,
        value_name = "VALUE",
        requires = "query",
        allow_hyphen_values = true
    )]
    pub ge: Option<String>,
    /// The field equals VALUE.
    #[arg(
        long,
        value_name = "VALUE",
        requires = "query",
        allow_hyphen_values = true
    )]
    pub eq: Option<String>,
    /// The field exists and differs from VALUE.
    #[arg(
        long,
        value_name = "VALUE",
        requires = "query",
        allow_hyphen_values = true
    )]
    pub ne: Option<String>,
    /// Search instead: print every message whose request or response has FIELD equal to
    /// VALUE, among the fields the application declares (bookstore: order, customer, book;
    /// exchange: order, customer or account, instrument). Repeatable: all must hold.
    #[arg(long = "where", value_name = "FIELD=VALUE",
          conflicts_with_all = ["hash", "query", "bisect"])]
    pub matching: Vec<String>,
    /// Search: messages about this order id (`--where order=ID`).
    #[arg(long, value_name = "ID", conflicts_with_all = ["hash", "query", "bisect"])]
    pub order: Option<String>,
    /// Search: messages about this customer (`--where customer=ID`; the exchange's account).
    #[arg(long, value_name = "ID", conflicts_with_all = ["hash", "query", "bisect"])]
    pub customer: Option<String>,
    /// Skip ahead by bisecting over snapshots. Assumes the condition is monotone: once true,
    /// it stays true (for --hash: the state with that hash occurs once).
    #[arg(long)]
    pub bisect: bool,
    /// Sequence range to search.
    #[command(flatten)]
    pub range: RangeArgs,
}

/// `keel replay outputs`
#[derive(Debug, Clone, Default, Args)]
pub struct OutputsArgs {
    /// Sequence range.
    #[command(flatten)]
    pub range: RangeArgs,
    /// Write the outputs to FILE as JSON lines (format `keel-replay-outputs` version 1)
    /// instead of printing them; `diff --against FILE` reads it.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
}

/// `keel replay diff`
#[derive(Debug, Clone, Default, Args)]
#[command(group(ArgGroup::new("baseline").required(true).args(["other", "against"])))]
pub struct DiffArgs {
    /// Another copy of the journal: a data directory (with journal/ and snapshots/) or a
    /// journal directory. Both are replayed through the current code.
    #[arg(long, value_name = "DIR")]
    pub other: Option<PathBuf>,
    /// An outputs file written by `outputs --save` (e.g. by an older build).
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
    /// Compare state hashes every N messages (and at the end) instead of outputs.
    #[arg(long, value_name = "N", requires = "other",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint: Option<u64>,
    /// Sequence range.
    #[command(flatten)]
    pub range: RangeArgs,
}
