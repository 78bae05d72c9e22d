//! How `keel replay` ends: exit statuses with stable numbers, and the errors that stop a command.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use keel::journal::JournalError;

/// The exit status of `keel replay`. The numbers are stable: scripts may test them.
///
/// When several apply (`verify` found a torn tail *and* a bad snapshot), the most severe one
/// wins, in this order: 9, 4, 5, 6, 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Exit {
    /// 0: done; for `verify` and `check`, everything is sound.
    Ok = 0,
    /// 1: an error stopped the command (I/O, a gap, a query that does not parse, …).
    Error = 1,
    /// 2: bad command line (clap uses 2 as well).
    Usage = 2,
    /// 3: `verify`: the journal ends in a torn write (a crash mid-append). Everything before it
    /// is sound; the next writer cuts the tail. A warning, not corruption.
    TornTail = 3,
    /// 4: the journal is corrupted before its tail; file, offset, sequence and reason are
    /// reported. Any command that reads past the damage ends with this status.
    JournalCorrupted = 4,
    /// 5: a snapshot is unusable (bad checksum, does not load, wrong hash). The journal is
    /// sound or only torn; recovery falls back to an older snapshot or a full replay.
    SnapshotCorrupted = 5,
    /// 6: `verify`: a live writer holds the journal's lock, so the tail cannot be judged;
    /// the records were still checked without the lock.
    Locked = 6,
    /// 7: `diff` found a difference, or `check` found that replay is not deterministic.
    Mismatch = 7,
    /// 8: `find`: the condition never became true in the range replayed.
    NotFound = 8,
    /// 9: `verify`: the journal no longer holds what a snapshot saw (the snapshot lies beyond
    /// its end, or is of another history): acknowledged data is gone, and recovery refuses to
    /// start until the journal is restored or the loss accepted (`keel admin accept-loss`).
    HistoryLost = 9,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Severity used to combine statuses: the higher one is reported.
    pub(crate) fn severity(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::TornTail => 1,
            Exit::Locked => 2,
            Exit::SnapshotCorrupted => 3,
            Exit::JournalCorrupted => 4,
            Exit::HistoryLost => 5,
            _ => 6,
        }
    }

    /// The more severe of `self` and `other`.
    pub(crate) fn max(self, other: Exit) -> Exit {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// What stops a `keel replay` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Reading the journal failed, or it is corrupted (the error names file, offset, sequence).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Reading a file or directory failed (the text names the path and a likely cause).
    #[error("{path}: {}", explain(source))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the output (standard output or `--save`) failed.
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
    /// The command line is unusable.
    #[error("{0}")]
    Usage(String),
    /// The journal cannot be replayed as asked (it ends too early, a sequence is missing).
    #[error("{0}")]
    Replay(String),
    /// A query could not be parsed or evaluated.
    #[error("query: {0}")]
    Query(String),
    /// `find --field` names a field the query's response does not have.
    #[error(
        "--field {field}: `{query}` responds without such a field; its fields are: {} \
         (give a field name, `a.b` for a nested one, or a JSON pointer such as /response/a)",
        available.join(", ")
    )]
    UnknownField {
        /// The field as given.
        field: String,
        /// The query's words.
        query: String,
        /// The field names its responses have.
        available: Vec<String>,
    },
    /// The journal's segment headers name another service than the one asked for.
    #[error(
        "the journal in {journal} was written by {found}, not {asked}: drop --app (the service \
         is read from the journal) or pass --app {found}"
    )]
    WrongApp {
        /// The journal directory.
        journal: PathBuf,
        /// The service the journal names.
        found: String,
        /// The application asked for.
        asked: &'static str,
    },
    /// No `--app`, and the journal does not name its service.
    #[error(
        "the journal in {journal} does not name the service that wrote it (written before \
         journal format version 2, or no journal there): pass --app bookstore|exchange"
    )]
    UnknownApp {
        /// The journal directory.
        journal: PathBuf,
    },
    /// The journal names a service `keel replay` does not know.
    #[error("the journal in {journal} was written by {found}, which keel replay cannot decode (it knows bookstore and exchange)")]
    UnsupportedApp {
        /// The journal directory.
        journal: PathBuf,
        /// The service the journal names.
        found: String,
    },
    /// `dump --kind` names no message kind of the application.
    #[error("--kind {kind}: {app} has no such message kind; its kinds are: {}", available.join(", "))]
    UnknownKind {
        /// The kind as given.
        kind: String,
        /// The application's name.
        app: &'static str,
        /// The kind names it has.
        available: Vec<String>,
    },
}

impl ReplayError {
    /// The exit status this error ends the command with.
    pub fn exit(&self) -> Exit {
        match self {
            ReplayError::Journal(JournalError::Corrupted { .. }) => Exit::JournalCorrupted,
            ReplayError::Journal(JournalError::Locked { .. }) => Exit::Locked,
            ReplayError::Usage(_)
            | ReplayError::UnknownField { .. }
            | ReplayError::UnknownKind { .. }
            | ReplayError::WrongApp { .. }
            | ReplayError::UnknownApp { .. } => Exit::Usage,
            _ => Exit::Error,
        }
    }

    /// Whether this is a closed output pipe (`keel replay dump | head`): not worth reporting.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ReplayError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An I/O error as words, with the likely cause for the common kinds.
fn explain(e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => {
            " — is --data-dir (or --journal) a keel data directory? `keel serve --data-dir DIR` \
             writes DIR/journal and DIR/snapshots"
        }
        io::ErrorKind::PermissionDenied => " — run as a user who may read it",
        io::ErrorKind::NotADirectory => " — give the directory, not a file in it",
        _ => "",
    };
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    let text: String = chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect());
    format!("{text}{hint}")
}
