//! The `keel` command. With no subcommand it serves the bookstore on 127.0.0.1:7700 with
//! ./journal and ./snapshots (`keel serve` with its defaults).
//!
//! One enum of subcommands ([`Command`]) and one `Args` struct per command. To add a command
//! (`serve`, `client`, `replay`), add a variant with its `Args` struct and a `run_*` function,
//! and one arm in [`main`].

mod admin;
mod client;
mod client_commands;
mod client_session;
mod completions;
mod config_file;
mod engine_args;
mod exposition;
mod help;
#[cfg(test)]
mod help_tests;
mod messages;
mod metrics_http;
mod serve;
mod serve_cluster;
mod stats;
mod status_log;

use admin::{run_admin, AdminCommand};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use client::{run_client, ClientArgs};
use keel::ring::WaitStrategy;
use keel_bench::{pingpong, ring, BenchError, PinRequest};
use keel_services::token;
use serve::{run_serve, ServeArgs};
use stats::{run_stats, StatsArgs};
use std::io::IsTerminal;
use std::process::ExitCode;

/// keel: an LMAX-style single-writer engine.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, after_help = help::KEEL)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// Every `keel` subcommand.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve an app over TCP (the default: the bookstore on 127.0.0.1:7700).
    #[command(args_override_self = true, after_help = help::SERVE)]
    Serve(ServeArgs),
    /// Send commands to a running server: one as arguments, or many, one per line, from a
    /// prompt or standard input.
    #[command(after_help = help::CLIENT)]
    Client(ClientArgs),
    /// Inspect, verify and re-run recorded journals (read-only).
    #[command(after_help = help::REPLAY)]
    Replay(keel_replay::ReplayArgs),
    /// Benchmarks of keel's ring against its peers, side by side in one run.
    /// With no subcommand: the canonical bookstore pipeline workload.
    #[command(after_help = help::BENCH)]
    Bench(BenchRoot),
    /// Operator actions: on a stopped server's data (accept-loss), on a running one (snapshot).
    #[command(subcommand, after_help = help::ADMIN)]
    Admin(AdminCommand),
    /// Print a running server's figures (from its `keel serve --metrics-listen` address).
    #[command(after_help = help::STATS)]
    Stats(StatsArgs),
    /// Print a shell completion script: bash, zsh or fish.
    #[command(after_help = help::COMPLETIONS)]
    Completions(completions::CompletionsArgs),
}

/// `keel bench [SUBCOMMAND]`
#[derive(Debug, Args)]
struct BenchRoot {
    #[command(subcommand)]
    command: Option<BenchCommand>,
}

/// `keel bench …`
#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// One producer → one consumer throughput (u64, batching on), verified, median of runs.
    #[command(after_help = help::BENCH_RING)]
    Ring(RingArgs),
    /// Round-trip latency over two rings, percentiles from an HdrHistogram.
    #[command(after_help = help::BENCH_PINGPONG)]
    Pingpong(PingPongArgs),
    /// In-process pipeline, open loop at --rate (latency from intended send time) or closed
    /// loop (--rate 0); verified against a replay of its journal.
    #[command(after_help = help::BENCH_PIPELINE)]
    Pipeline(keel_bench::commands::PipelineArgs),
    /// Journal append throughput (msgs/s, MB/s) and durable-ack latency per batch size.
    #[command(after_help = help::BENCH_JOURNAL)]
    Journal(keel_bench::commands::JournalArgs),
    /// Replay speed, snapshot write/load time and restart time of an N-message journal.
    #[command(after_help = help::BENCH_RECOVERY)]
    Recovery(keel_bench::commands::RecoveryArgs),
    /// Open-loop load over TCP against `keel serve` (--connect) or an in-process server.
    #[command(after_help = help::BENCH_NET)]
    Net(keel_bench::commands::NetArgs),
    /// The same workload through keel, the disruptor crate and crossbeam (+ a plain journal).
    #[command(after_help = help::BENCH_COMPARE)]
    Compare(keel_bench::commands::CompareArgs),
    /// A local cluster of `keel serve --cluster` processes: kill the leader again and again
    /// under exactly-once load; report losses, duplicates, failover times and state hashes.
    #[command(after_help = help::BENCH_FAILOVER)]
    Failover(keel_bench::failover::FailoverArgs),
    /// Overlay the latency of saved runs (the .hgrm files `--out` wrote) in one percentile plot.
    Plot(keel_bench::report::plot_command::PlotArgs),
}

/// Flags shared by the benchmarks.
#[derive(Debug, Args)]
struct CommonBenchArgs {
    /// How waiting threads wait: spin | yield | park | phased.
    #[arg(long, default_value = "spin")]
    wait: WaitStrategy,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Core for the producer / ping thread (default with spin and ≥ 2 cores: the first core).
    #[arg(long, value_name = "CORE")]
    pin_producer: Option<usize>,
    /// Core for the consumer / echo thread (default with spin and ≥ 2 cores: the second core).
    #[arg(long, value_name = "CORE")]
    pin_consumer: Option<usize>,
    /// Pin no thread.
    #[arg(long, conflicts_with_all = ["pin_producer", "pin_consumer"])]
    no_pin: bool,
}

impl CommonBenchArgs {
    fn pins(&self) -> PinRequest {
        PinRequest {
            producer: self.pin_producer,
            consumer: self.pin_consumer,
            disabled: self.no_pin,
        }
    }
}

/// `keel bench ring`
#[derive(Debug, Args)]
struct RingArgs {
    #[command(flatten)]
    common: CommonBenchArgs,
    /// Messages per run.
    #[arg(long, default_value_t = 100_000_000)]
    messages: u64,
    /// Ring (and queue) slots, a power of two.
    #[arg(long = "ring-capacity", alias = "ring-size", value_name = "SLOTS",
          default_value_t = 65_536, value_parser = power_of_two)]
    ring_size: usize,
    /// Messages the producer publishes per claim (1 = no producer batching).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    burst: u64,
    /// Runs per contender; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Contenders to run, comma-separated, in run order (ratios are against the first):
    /// keel, disruptor-crate (or disruptor), crossbeam-arrayqueue, crossbeam-channel.
    #[arg(long, value_delimiter = ',', value_parser = contender, default_value = "keel,disruptor-crate,crossbeam-arrayqueue,crossbeam-channel")]
    contenders: Vec<ring::Contender>,
    /// Producer threads. Above 1: keel's and the disruptor crate's multi-producer rings only,
    /// unpinned (use --wait yield when threads outnumber cores).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    producers: u64,
}

fn contender(s: &str) -> Result<ring::Contender, String> {
    ring::Contender::from_name(s).ok_or_else(|| format!("unknown contender {s:?}"))
}

/// `keel bench pingpong`
#[derive(Debug, Args)]
struct PingPongArgs {
    #[command(flatten)]
    common: CommonBenchArgs,
    /// Measured round trips (messages) per contender [default: 2000000; 100000 with
    /// park/phased].
    #[arg(long = "messages", alias = "iterations", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    iterations: Option<u64>,
    /// Unrecorded round trips first [default: 200000, at most --messages].
    #[arg(long = "warmup-messages", alias = "warmup", value_name = "N")]
    warmup: Option<u64>,
    /// Slots of each ring, a power of two.
    #[arg(long = "ring-capacity", alias = "ring-size", value_name = "SLOTS",
          default_value_t = 1024, value_parser = power_of_two)]
    ring_size: usize,
    #[command(flatten)]
    save: keel_bench::report::saved::OutArgs,
}

fn power_of_two(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n.is_power_of_two() => Ok(n),
        _ => Err(format!("{s} is not a power of two")),
    }
}

fn main() -> ExitCode {
    let args = match config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("keel: error: {e}");
            return ExitCode::from(2);
        }
    };
    let (cli, words) = parse_args(args);
    init_logging(matches!(cli.command, None | Some(Command::Serve(_))));
    let result = match cli.command {
        None => run_serve(&ServeArgs::parse_defaults()),
        Some(Command::Serve(args)) => run_serve(&args),
        Some(Command::Client(args)) => {
            return match run_client(&args, words) {
                Ok(code) => ExitCode::from(code as u8),
                Err(e) => {
                    eprintln!("keel: error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Replay(args)) => return keel_replay::main(&args),
        Some(Command::Admin(command)) => run_admin(&command),
        Some(Command::Stats(args)) => run_stats(&args),
        Some(Command::Completions(args)) => {
            completions::print(args.shell, &mut command_for(args.app))
        }
        Some(Command::Bench(BenchRoot { command })) => run_bench(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: a server its progress (info), the other commands only warnings.
/// `RUST_LOG` overrides.
fn init_logging(serving: bool) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if serving { "info" } else { "warn" })
            }),
        )
        .init();
}

/// Runs `keel bench [SUBCOMMAND]` (none: the canonical pipeline workload).
fn run_bench(command: Option<BenchCommand>) -> Result<(), String> {
    match command {
        None => keel_bench::commands::run_default().map_err(|e| e.to_string()),
        Some(BenchCommand::Pipeline(args)) => {
            keel_bench::commands::run_pipeline(&args).map_err(|e| e.to_string())
        }
        Some(BenchCommand::Compare(args)) => {
            keel_bench::commands::run_compare(&args).map_err(|e| e.to_string())
        }
        Some(BenchCommand::Net(args)) => {
            keel_bench::commands::run_net(&args).map_err(|e| e.to_string())
        }
        Some(BenchCommand::Journal(args)) => {
            keel_bench::commands::run_journal(&args).map_err(|e| e.to_string())
        }
        Some(BenchCommand::Recovery(args)) => {
            keel_bench::commands::run_recovery(&args).map_err(|e| e.to_string())
        }
        Some(BenchCommand::Failover(args)) => std::env::current_exe()
            .map_err(|e| format!("finding the keel executable: {e}"))
            .and_then(|exe| {
                keel_bench::failover::run_failover(&args, exe).map_err(|e| e.to_string())
            }),
        Some(BenchCommand::Ring(args)) => run_bench_ring(args).map_err(|e| e.to_string()),
        Some(BenchCommand::Pingpong(args)) => run_bench_pingpong(args),
        Some(BenchCommand::Plot(args)) => keel_bench::report::plot_command::run_plot(&args)
            .map(|written| eprint!("{}", keel_bench::report::saved::wrote_line(&written)))
            .map_err(|e| e.to_string()),
    }
}

/// The whole `keel` command, with `app`'s commands as `keel client` subcommands.
fn command_for(app: engine_args::AppName) -> clap::Command {
    Cli::command().mut_subcommand("client", |c| client_commands::add_to(c, app))
}

/// Parses the command line; for `keel client CMD …` also returns the command's words.
fn parse_args(args: Vec<std::ffi::OsString>) -> (Cli, Option<Vec<String>>) {
    let mut matches = command_for(client_commands::app_in_args(&args)).get_matches_from(args);
    if matches.subcommand_name() == Some("client") {
        let (_, mut client) = matches.remove_subcommand().expect("the client subcommand");
        let words = client_commands::take_words(&mut client);
        let args = ClientArgs::from_arg_matches_mut(&mut client).unwrap_or_else(|e| e.exit());
        let cli = Cli {
            command: Some(Command::Client(args)),
        };
        return (cli, words);
    }
    let cli = Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit());
    (cli, None)
}

fn run_bench_ring(args: RingArgs) -> Result<(), BenchError> {
    let ring_size = args.ring_size;
    let bench = ring::RingBench {
        messages: args.messages,
        ring_size,
        burst: usize::try_from(args.burst)
            .unwrap_or(usize::MAX)
            .min(ring_size),
        wait: args.common.wait,
        repeat: usize::try_from(args.repeat).unwrap_or(usize::MAX),
        pins: args.common.pins(),
        contenders: args.contenders,
        producers: args.producers as usize,
    };
    let report = ring::run(&bench)?;
    if args.common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn run_bench_pingpong(args: PingPongArgs) -> Result<(), String> {
    let wait = args.common.wait;
    let iterations = args
        .iterations
        .unwrap_or(pingpong::PingPongBench::default_iterations(wait));
    let bench = pingpong::PingPongBench {
        iterations,
        warmup: args
            .warmup
            .unwrap_or(pingpong::PingPongBench::default_warmup(iterations)),
        ring_size: args.ring_size,
        wait,
        pins: args.common.pins(),
    };
    let report = pingpong::run(&bench).map_err(|e| e.to_string())?;
    let written = report.save(&args.save).map_err(|e| e.to_string())?;
    if args.common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        print!("{}", report.table());
    }
    eprint!("{}", keel_bench::report::saved::wrote_line(&written));
    Ok(())
}
