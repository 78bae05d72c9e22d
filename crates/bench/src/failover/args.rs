//! `keel bench failover`'s flags and its command.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use keel::Typed;
use keel_services::bookstore::Bookstore;
use keel_services::units;

use super::{run, FailoverReport, FailoverSpec};
use crate::rig::Failure;

/// `keel bench failover`
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// Nodes of the local cluster; a comma-separated list runs each size in turn, in one
    /// invocation (e.g. 1,3 with --failovers 0: replication's cost).
    #[arg(long, value_delimiter = ',', default_value = "3",
          value_parser = clap::value_parser!(u64).range(1..=7))]
    pub nodes: Vec<u64>,
    /// Times the leader is killed (SIGKILL) and restarted as a follower.
    #[arg(long, default_value_t = 5)]
    pub failovers: u64,
    /// Offered rate of bookstore orders per second, open loop (0: closed loop, as fast as
    /// the clients' windows allow).
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Also run each size closed loop (for throughput), after the open-loop run.
    #[arg(long)]
    pub closed_loop: bool,
    /// Load clients, each with its own client id, each across every client address.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub clients: u64,
    /// Seed of the kill moments and of the workload.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Load time of a run without failovers (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = units::seconds_f64, default_value = "5s")]
    pub duration: f64,
    /// Unmeasured lead-in (before the first kill).
    #[arg(long, value_name = "DURATION", value_parser = units::seconds_f64, default_value = "1s")]
    pub warmup: f64,
    /// A kill comes between MIN and MAX ms after the cluster is whole again (uniform, seeded).
    #[arg(long, value_name = "MIN:MAX", default_value = "200:1500", value_parser = kill_window)]
    pub kill_after_ms: (u64, u64),
    /// The nodes' ack policy: majority | all | leader.
    #[arg(long, default_value = "majority")]
    pub ack_policy: String,
    /// The nodes' journal flush policy (none | batch | interval:DURATION).
    #[arg(long, default_value = "batch")]
    pub flush: String,
    /// How the nodes' threads wait (spin | yield | park | phased | auto; `keel serve --wait`).
    /// The local cluster's nodes share this machine's cores, so the default is `park`: it
    /// leaves the cores to the work instead of to spinning.
    #[arg(long, default_value = "park")]
    pub wait: String,
    /// The nodes' election timeout range, ms (`keel serve --election-timeout-ms`).
    #[arg(long, value_name = "MIN:MAX", default_value = "150:300")]
    pub election_timeout_ms: String,
    /// Keep the nodes' data directories (journals, events, logs) under DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn kill_window(s: &str) -> Result<(u64, u64), String> {
    let (low, high) = s.split_once(':').ok_or("expected MIN:MAX (ms)")?;
    let low: u64 = low
        .parse()
        .map_err(|_| format!("{low:?} is not a number"))?;
    let high: u64 = high
        .parse()
        .map_err(|_| format!("{high:?} is not a number"))?;
    if low > high {
        return Err("MIN must not exceed MAX".into());
    }
    Ok((low, high))
}

/// Runs `keel bench failover` with the nodes run by `exe` (the `keel` binary).
pub fn run_failover(args: &FailoverArgs, exe: PathBuf) -> Result<(), Failure> {
    let mut reports: Vec<FailoverReport> = Vec::new();
    for &nodes in &args.nodes {
        let mut rates = vec![args.rate];
        if args.closed_loop && args.rate != 0 {
            rates.push(0);
        }
        for rate in rates {
            let spec = FailoverSpec {
                exe: exe.clone(),
                nodes: nodes as usize,
                failovers: args.failovers,
                rate,
                clients: args.clients,
                seed: args.seed,
                duration: Duration::from_secs_f64(args.duration),
                warmup: Duration::from_secs_f64(args.warmup),
                kill_after_ms: args.kill_after_ms,
                out: args.out.clone(),
                serve_args: vec![
                    "--ack-policy".into(),
                    args.ack_policy.clone(),
                    "--flush".into(),
                    args.flush.clone(),
                    "--wait".into(),
                    args.wait.clone(),
                    "--election-timeout-ms".into(),
                    args.election_timeout_ms.clone(),
                ],
            };
            let report = run::<Typed<Bookstore>>(&spec)?;
            if !args.json {
                print!("{}", report.table());
            }
            reports.push(report);
        }
    }
    if args.json {
        let text = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&serde_json::json!({ "runs": reports }))
        };
        println!("{}", text.expect("the report serializes"));
    }
    if reports
        .iter()
        .any(|r| r.lost > 0 || r.duplicated > 0 || !r.hashes_equal)
    {
        return Err(Failure::new(
            "WRONG RESULT: acknowledged requests lost, requests applied twice, or nodes differ",
        ));
    }
    Ok(())
}
