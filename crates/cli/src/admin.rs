//! `keel admin`: operator actions on a stopped server's data directory.

use clap::{Args, Subcommand};
use keel::engine::{accept_loss, Config};
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
    #[command(
        after_help = "Examples:\n  keel replay verify --data-dir /var/lib/keel\n  \
                            keel admin accept-loss --data-dir /var/lib/keel"
    )]
    AcceptLoss(AcceptLossArgs),
}

/// Flags of `keel admin accept-loss`.
#[derive(Debug, Clone, Args)]
pub struct AcceptLossArgs {
    /// Data directory: the journal in DIR/journal, snapshots in DIR/snapshots.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
}

/// Runs a `keel admin` command; the error is the sentence to print.
pub fn run_admin(command: &AdminCommand) -> Result<(), String> {
    match command {
        AdminCommand::AcceptLoss(args) => run_accept_loss(args),
    }
}

fn run_accept_loss(args: &AcceptLossArgs) -> Result<(), String> {
    let config = Config::with_data_dir(&args.data_dir);
    if let Err(e) = std::fs::metadata(&config.journal_dir) {
        return Err(format!(
            "--data-dir {}: no journal at {} ({}) — give the directory `keel serve --data-dir` \
             used",
            args.data_dir.display(),
            config.journal_dir.display(),
            e.to_string()
                .split(" (os error")
                .next()
                .unwrap_or_default()
                .to_lowercase()
        ));
    }
    let done =
        accept_loss(&config).map_err(|e| format!("--data-dir {}: {e}", args.data_dir.display()))?;
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
    for (from, to, why) in &done.quarantined {
        println!("quarantined {} ({why}) -> {}", from.display(), to.display());
    }
    println!(
        "the engine will start from the journal's end at sequence {}",
        done.journal_end
    );
    Ok(())
}
