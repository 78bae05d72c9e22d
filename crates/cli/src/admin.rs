//! `keel admin`: operator actions on a stopped server's data directory.

use clap::{Args, Subcommand};
use keel::engine::{accept_loss, Config};
use keel::error::Error;
use std::path::PathBuf;

/// `keel admin …`
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Accept that the journal lost data, so a server that refused to start can start again.
    ///
    /// Recovery refuses to start when a snapshot lies beyond the journal's end or is of another
    /// history, or when the last journal segment is sealed but its successor is missing: each
    /// means records that may have been acknowledged are gone. Restore the missing files if you
    /// can. Otherwise this command moves every snapshot the journal cannot vouch for into
    /// DATA_DIR/snapshots/quarantine/ (never deleted; no restart reads it) and lets the
    /// journal continue where it ends. Run `keel replay verify --data-dir DIR` first to see
    /// what is lost. The server must be stopped.
    ///
    /// Example: keel admin accept-loss --data-dir /var/lib/keel
    AcceptLoss(AcceptLossArgs),
}

/// Flags of `keel admin accept-loss`.
#[derive(Debug, Clone, Args)]
pub struct AcceptLossArgs {
    /// Data directory: the journal in DIR/journal, snapshots in DIR/snapshots.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
}

/// Runs a `keel admin` command.
pub fn run_admin(command: &AdminCommand) -> Result<(), Error> {
    match command {
        AdminCommand::AcceptLoss(args) => run_accept_loss(args),
    }
}

fn run_accept_loss(args: &AcceptLossArgs) -> Result<(), Error> {
    let config = Config::with_data_dir(&args.data_dir);
    let done = accept_loss(&config)?;
    if done.is_empty() {
        println!(
            "nothing to accept: the journal in {} (ending at sequence {}) vouches for every \
             snapshot",
            config.journal_dir.display(),
            done.journal_end
        );
        return Ok(());
    }
    if let Some(segment) = &done.sealed_end {
        println!(
            "accepted: the segments after {} are missing; the journal continues after \
             sequence {}",
            segment.display(),
            done.journal_end
        );
    }
    if let Some(last) = done.retired_given_up {
        println!(
            "accepted: the journal had no segments left after retention retired sequences \
             1..={last}; that history is given up and the journal starts empty"
        );
    }
    for (from, to, why) in &done.quarantined {
        println!("quarantined {} ({why}) -> {}", from.display(), to.display());
    }
    println!(
        "the engine will start from the journal's end at sequence {}",
        done.journal_end
    );
    Ok(())
}
