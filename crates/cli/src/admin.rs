//! `keel admin`: operator actions: on a stopped server's data directory (`accept-loss`), and
//! on a running server (`snapshot`).

use clap::{Args, Subcommand};
use keel::engine::{accept_loss, Config, CONTROL_SNAPSHOT};
use keel::net::{Client, ReplyStatus};
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
    /// Ask a running server to take a snapshot now, and wait until it is durable.
    ///
    /// The request is journaled like any message, so the snapshot holds everything sent
    /// before it. Prints the snapshot's sequence (its file is `SNAPSHOT_DIR/<sequence>.snap`).
    /// When the server has a token, give it (--token-file, KEEL_TOKEN or --token).
    #[command(
        after_help = "Examples:\n  keel admin snapshot --connect 127.0.0.1:7700\n  \
                            keel admin snapshot --connect 127.0.0.1:7700 --token-file /etc/keel/token"
    )]
    Snapshot(SnapshotArgs),
}

/// Flags of `keel admin snapshot`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// The server's address (its --listen).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub connect: String,
    /// Read the shared secret from the first line of this file (`--token` wins over it, and
    /// it over the KEEL_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The shared secret itself (visible to `ps`: prefer --token-file or KEEL_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
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
        AdminCommand::Snapshot(args) => run_snapshot(args),
    }
}

/// Sends a snapshot request and waits for the answer (once the snapshot is durable).
fn run_snapshot(args: &SnapshotArgs) -> Result<(), String> {
    let token = crate::token::resolve(args.token.as_deref(), args.token_file.as_deref())
        .map_err(|e| e.to_string())?;
    let mut client = Client::connect(&args.connect, token.as_ref().map(String::as_bytes))
        .map_err(|e| crate::messages::connect_failed(&args.connect, &e))?;
    let reply = client
        .request(CONTROL_SNAPSHOT, 1, &[])
        .map_err(|e| format!("snapshot request to {}: {e}", args.connect))?;
    match reply.status {
        ReplyStatus::Accepted => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "snapshot_sequence": reply.sequence })
                );
            } else {
                println!("snapshot at sequence {} is durable", reply.sequence);
            }
            Ok(())
        }
        ReplyStatus::Refused(code) => Err(format!(
            "the server refused the snapshot: {}: {}",
            code.name(),
            String::from_utf8_lossy(&reply.payload)
        )),
        _ => Err(format!(
            "unexpected answer to a snapshot request (sequence {})",
            reply.sequence
        )),
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
