//! The `keel bench` subcommands of the engine-level harness: flags and entry points
//! (`pipeline`, `net`, `journal`, `recovery`, `compare`, and the no-argument default).

use super::output::{parse_sweep, ClientInfo, Knee, LatencyRun, LoadReport};
use super::pipeline::{self, PipelineSnapshots, PipelineSpec, SnapshotMode};
use super::report::saved::{self, OutArgs, SavedRun, Saving};
use super::rig::{BenchEngineArgs, Failure};
use clap::Args;
use clap::ValueEnum;
use keel::journal::SegmentPrep;
use keel::Typed;
use keel_services::bookstore::Bookstore;
use keel_services::exchange::Exchange;
use keel_services::units;
use keel_services::App;
use std::path::PathBuf;
use std::time::Duration;

/// Which of the two services built on keel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AppName {
    /// Books, prices, stock and orders.
    #[default]
    Bookstore,
    /// Limit order books, accounts and pre-trade risk.
    Exchange,
}

/// Rate, duration and reporting flags of the open-loop benchmarks.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The service to load.
    #[arg(long, value_enum, default_value_t = AppName::Bookstore)]
    pub app: AppName,
    /// Offered rate, messages per second (0: closed loop, as fast as possible).
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Measured time after the warm-up (e.g. 30s, 2m; a bare number is seconds).
    #[arg(long, alias = "seconds", value_name = "DURATION", value_parser = units::seconds_f64,
          default_value = "5s")]
    pub duration: f64,
    /// Unrecorded warm-up at the same rate.
    #[arg(long, value_name = "DURATION", value_parser = units::seconds_f64, default_value = "1s")]
    pub warmup: f64,
    /// Workload seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Raise the rate FROM:TO:STEP per second, one run per step; reports the knee.
    #[arg(long, value_name = "FROM:TO:STEP", value_parser = sweep_arg)]
    pub sweep: Option<Sweep>,
    /// The p99 bound that defines the knee of a sweep (e.g. 500us, 2ms; a bare number is µs).
    #[arg(long = "p99-bound", alias = "p99-bound-us", value_name = "DURATION",
          value_parser = units::micros_f64, default_value = "1ms")]
    pub p99_bound_us: f64,
    /// `--out DIR` and `--log-y`.
    #[command(flatten)]
    pub save: OutArgs,
    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// The rates of `--sweep FROM:TO:STEP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep(pub Vec<u64>);

fn sweep_arg(s: &str) -> Result<Sweep, String> {
    parse_sweep(s).map(Sweep)
}

impl LoadArgs {
    /// The rates to run: the sweep, or the single `--rate`.
    pub fn rates(&self) -> Vec<u64> {
        self.sweep
            .as_ref()
            .map_or_else(|| vec![self.rate], |s| s.0.clone())
    }
}

/// `keel bench pipeline`
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Rate, duration and reporting.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Messages of a closed-loop run (`--rate 0`), pre-encoded before timing.
    #[arg(long, default_value_t = 4_000_000)]
    pub messages: u64,
    /// Take a snapshot every N messages (0: none), as `keel serve` does.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub snapshot_interval_messages: u64,
    /// Who takes them: live (the business-logic thread pauses to capture) | replica (a
    /// second processor following the journal) | none. Comma-separated: one run of each,
    /// in turn, at every rate (e.g. none,live,replica).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "live")]
    pub snapshot_mode: Vec<SnapshotMode>,
    /// Engine choices.
    #[command(flatten)]
    pub engine: BenchEngineArgs,
}

/// `keel bench` with no subcommand: the canonical bookstore pipeline workload.
pub fn run_default() -> Result<(), Failure> {
    let args = PipelineArgs {
        load: LoadArgs {
            app: AppName::Bookstore,
            rate: 100_000,
            duration: 8.0,
            warmup: 2.0,
            seed: 42,
            sweep: None,
            p99_bound_us: 1000.0,
            save: OutArgs::default(),
            json: false,
        },
        messages: 4_000_000,
        snapshot_interval_messages: 0,
        snapshot_mode: vec![SnapshotMode::Live],
        engine: BenchEngineArgs::default(),
    };
    run_pipeline(&args)
}

/// `keel bench pipeline`: one run per rate, verified, printed, optionally written out.
pub fn run_pipeline(args: &PipelineArgs) -> Result<(), Failure> {
    match args.load.app {
        AppName::Bookstore => pipeline_runs::<Typed<Bookstore>>(args),
        AppName::Exchange => pipeline_runs::<Typed<Exchange>>(args),
    }
}

fn pipeline_runs<A: App>(args: &PipelineArgs) -> Result<(), Failure> {
    let l = &args.load;
    let disk = pipeline::disk_baseline(&args.engine)?;
    let mut runs: Vec<LatencyRun> = Vec::new();
    let modes = match args.snapshot_interval_messages {
        0 => &[SnapshotMode::None][..],
        _ => &args.snapshot_mode[..],
    };
    for rate in l.rates() {
        for &mode in modes {
            let snapshots = PipelineSnapshots {
                mode,
                interval_messages: args.snapshot_interval_messages,
            };
            let spec = PipelineSpec {
                rate,
                duration: Duration::from_secs_f64(l.duration),
                warmup: Duration::from_secs_f64(l.warmup),
                messages: args.messages,
                seed: l.seed,
                engine: args.engine.clone(),
                quiet: l.json,
                snapshots,
            };
            let mut run = pipeline::run::<A>(&spec)?;
            if snapshots.interval_messages != 0 {
                run.label = format!("{}-snapshots-{}", run.label, mode.name());
            }
            runs.push(run);
        }
    }
    let dir = args
        .engine
        .data_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let report = LoadReport {
        bench: "pipeline".into(),
        app: A::NAME.into(),
        seed: l.seed,
        run_info: Some(args.engine.run_info(&dir)),
        client: None,
        knee: l.sweep.as_ref().map(|_| Knee::find(&runs, l.p99_bound_us)),
        runs,
        disk,
    };
    let mut settings = load_settings(l);
    settings["closed_loop_messages"] = args.messages.into();
    finish(&report, l, settings)
}

/// The load flags, for `report.json`.
fn load_settings(l: &LoadArgs) -> serde_json::Value {
    serde_json::json!({
        "app": l.app.to_possible_value().map(|v| v.get_name().to_string()),
        "rates_per_sec": l.rates(),
        "duration_s": l.duration,
        "warmup_s": l.warmup,
        "seed": l.seed,
        "p99_bound_us": l.sweep.as_ref().map(|_| l.p99_bound_us),
    })
}

/// Prints the report (table or JSON) and writes `--out`.
pub fn finish(
    report: &LoadReport,
    load: &LoadArgs,
    settings: serde_json::Value,
) -> Result<(), Failure> {
    let title = match (&report.run_info, &report.client) {
        (Some(info), _) => format!(
            "keel bench {} --app {} (flush {}, wait {})",
            report.bench, report.app, info.flush, info.wait
        ),
        (None, Some(client)) => format!(
            "keel bench {} --app {} --connect {}",
            report.bench, report.app, client.server
        ),
        (None, None) => format!("keel bench {} --app {}", report.bench, report.app),
    };
    let named = report.saved_runs();
    let runs: Vec<SavedRun<'_>> = named
        .iter()
        .map(|(name, legend, recorder)| SavedRun {
            name,
            legend,
            recorder,
        })
        .collect();
    let saving = Saving {
        title: &title,
        runs: &runs,
        report,
        settings,
    };
    let written = saved::save(&load.save, &saving)?;
    if load.json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("report serializes")
        );
    } else {
        print!("{}", report.table());
    }
    eprint!("{}", saved::wrote_line(&written));
    Ok(())
}

/// `keel bench journal`
#[derive(Debug, Clone, Args)]
pub struct JournalArgs {
    /// Journal flush policy: none | batch | interval:DURATION (e.g. interval:5ms).
    #[arg(long, default_value = "batch", value_parser = units::flush_policy)]
    pub flush: keel::journal::FlushPolicy,
    /// How the appending thread waits for durable acknowledgements (as the business logic
    /// does in the engine): spin | yield | park | phased.
    #[arg(long, default_value = "phased")]
    pub wait: keel::ring::WaitStrategy,
    /// Offered records per second, open loop (ack latency from each batch's intended time);
    /// 0: closed loop, batches back to back.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Payload sizes, comma-separated (e.g. 64,256,1KiB).
    #[arg(long, value_name = "SIZES", value_delimiter = ',', value_parser = units::bytes_usize,
          default_value = "64,256")]
    pub payload: Vec<usize>,
    /// Records per batch (one `end_batch` each), comma-separated.
    #[arg(
        long,
        value_name = "COUNTS",
        value_delimiter = ',',
        default_value = "1,16,256,4096"
    )]
    pub batch: Vec<usize>,
    /// Most records per case.
    #[arg(long, default_value_t = 2_000_000)]
    pub messages: u64,
    /// Most time per case (e.g. 2s, 500ms).
    #[arg(long = "duration", alias = "seconds", value_name = "DURATION",
          value_parser = units::seconds_f64, default_value = "2s")]
    pub seconds: f64,
    /// Journal segment file size (e.g. 64MiB, 1G).
    #[arg(long = "segment-size", alias = "segment-size-bytes", value_name = "SIZE",
          value_parser = units::bytes, default_value = "256MiB")]
    pub segment_size_bytes: u64,
    /// How new segments are prepared: auto (adaptive when the flush policy syncs,
    /// huge-pages under none; use it) | adaptive (zeros written ahead at a bounded pace while
    /// the writer is slow, 2 MiB pages for the rest when it is fast) | expert, each worse at
    /// some load: zeroed (always zeroed: least throughput) | huge-pages (every sync writes
    /// whole 2 MiB pages) | allocated (deep in a segment a sync rewrites up to 2 MiB).
    #[arg(long, default_value_t = SegmentPrep::default())]
    pub segment_prep: SegmentPrep,
    /// Write the journals under DIR (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// `--out DIR` (a .hgrm of ack latency per case) and `--log-y`.
    #[command(flatten)]
    pub save: OutArgs,
}

/// `keel bench journal`: append throughput and durable-ack latency.
pub fn run_journal(args: &JournalArgs) -> Result<(), Failure> {
    let report = super::journal::run(&super::journal::JournalSpec {
        flush: args.flush,
        wait: args.wait,
        rate: (args.rate > 0).then(|| super::schedule::Schedule::new(args.rate)),
        payloads: args.payload.clone(),
        batches: args.batch.clone(),
        messages: args.messages,
        max_time: Duration::from_secs_f64(args.seconds),
        segment_size_bytes: args.segment_size_bytes,
        segment_prep: args.segment_prep,
        data_dir: args.data_dir.clone(),
    })?;
    let settings = serde_json::json!({
        "flush": args.flush.to_string(),
        "wait": args.wait.to_string(),
        "rate_per_sec": (args.rate > 0).then_some(args.rate),
        "payload_bytes": args.payload,
        "batch": args.batch,
        "messages": args.messages,
        "seconds": args.seconds,
        "segment_size_bytes": args.segment_size_bytes,
        "segment_prep": args.segment_prep.to_string(),
    });
    let written = report.save(&args.save, settings)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializes")
        );
    } else {
        print!("{}", report.table());
    }
    eprint!("{}", saved::wrote_line(&written));
    Ok(())
}

/// `keel bench recovery`
#[derive(Debug, Clone, Args)]
pub struct RecoveryArgs {
    /// The service whose state is rebuilt.
    #[arg(long, value_enum, default_value_t = AppName::Bookstore)]
    pub app: AppName,
    /// Workload messages in the journal.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Messages after the snapshot (the tail a restart replays).
    #[arg(long, default_value_t = 10_000)]
    pub tail: u64,
    /// Use a trivial processor that only counts (raw replay speed).
    #[arg(long)]
    pub no_op: bool,
    /// Payload size of each no-op message (e.g. 64, 1KiB).
    #[arg(long, value_name = "SIZE", value_parser = units::bytes_usize, default_value = "64")]
    pub payload: usize,
    /// Workload seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Engine choices.
    #[command(flatten)]
    pub engine: BenchEngineArgs,
}

/// `keel bench recovery`: replay, snapshot and restart times.
pub fn run_recovery(args: &RecoveryArgs) -> Result<(), Failure> {
    use super::recovery::{run, AppSource, NoOp, NoOpSource, RecoverySpec};
    let spec = RecoverySpec {
        messages: args.messages,
        tail: args.tail,
        seed: args.seed,
        noop_payload_bytes: args.payload,
        engine: args.engine.clone(),
    };
    let report = if args.no_op {
        let source = NoOpSource {
            messages: args.messages,
            payload_bytes: args.payload,
        };
        run::<NoOp>(&spec, "noop", &source)?
    } else {
        match args.app {
            AppName::Bookstore => run::<Typed<Bookstore>>(
                &spec,
                Typed::<Bookstore>::NAME,
                &AppSource::<Typed<Bookstore>>::new(args.seed, args.messages),
            )?,
            AppName::Exchange => run::<Typed<Exchange>>(
                &spec,
                Typed::<Exchange>::NAME,
                &AppSource::<Typed<Exchange>>::new(args.seed, args.messages),
            )?,
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializes")
        );
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// `keel bench net`
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// Rate, duration and reporting.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Address of a running `keel serve` (default: start one in-process on 127.0.0.1:0).
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<std::net::SocketAddr>,
    /// Client connections sharing the schedule.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Read the server's shared secret from the first line of this file (`--token` wins over
    /// it, and it over the KEEL_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,
    /// The server's shared secret itself (visible to `ps`: prefer --token-file or KEEL_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Engine choices of the in-process server.
    #[command(flatten)]
    pub engine: BenchEngineArgs,
}

/// `keel bench net`: open-loop load over TCP.
pub fn run_net(args: &NetArgs) -> Result<(), Failure> {
    match args.load.app {
        AppName::Bookstore => net_runs::<Typed<Bookstore>>(args),
        AppName::Exchange => net_runs::<Typed<Exchange>>(args),
    }
}

fn net_runs<A: App>(args: &NetArgs) -> Result<(), Failure> {
    use super::net_load::{run, LocalServer, NetSpec};
    let l = &args.load;
    let token = keel_services::token::resolve(args.token.as_deref(), args.token_file.as_deref())
        .map_err(|e| Failure::new(e.to_string()))?;
    let local = match args.connect {
        Some(addr) => {
            super::reach::check(addr, token.as_deref())?;
            None
        }
        None => Some(LocalServer::<A>::start(&args.engine, l.seed)?),
    };
    let addr = args
        .connect
        .or(local.as_ref().map(LocalServer::addr))
        .expect("one of the two");
    let mut runs = Vec::new();
    for rate in l.rates() {
        let spec = NetSpec {
            addr,
            connections: args.connections,
            rate,
            duration: Duration::from_secs_f64(l.duration),
            warmup: Duration::from_secs_f64(l.warmup),
            seed: l.seed,
            token: token.as_ref().map(|t| t.as_bytes().to_vec()),
            spin: args.engine.spin(),
            quiet: l.json,
        };
        runs.push(run::<A>(&spec)?);
    }
    if let Some(server) = local {
        let verified = server.finish()?;
        if let Some(last) = runs.last_mut() {
            last.verified = Some(verified);
        }
    }
    let dir = args
        .engine
        .data_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let (run_info, client) = match args.connect {
        None => (Some(args.engine.run_info(&dir)), None),
        Some(addr) => (
            None,
            Some(ClientInfo::detect(
                addr,
                args.connections,
                args.engine.spin(),
            )),
        ),
    };
    let report = LoadReport {
        bench: "net".into(),
        app: A::NAME.into(),
        seed: l.seed,
        run_info,
        client,
        knee: l.sweep.as_ref().map(|_| Knee::find(&runs, l.p99_bound_us)),
        runs,
        disk: None,
    };
    let mut settings = load_settings(l);
    settings["connections"] = args.connections.into();
    settings["server"] = args
        .connect
        .map_or_else(|| "in-process".to_string(), |a| a.to_string())
        .into();
    finish(&report, l, settings)
}

/// `keel bench compare`
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The service.
    #[arg(long, value_enum, default_value_t = AppName::Bookstore)]
    pub app: AppName,
    /// Workload messages (closed loop, pre-encoded).
    #[arg(long, default_value_t = 2_000_000)]
    pub messages: u64,
    /// Open loop: offer this many messages per second to each pipeline in turn and measure
    /// latency from each message's intended send time (default: closed loop; 0: closed loop).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Measured time per pipeline (open loop, after the warm-up; e.g. 10s).
    #[arg(long, alias = "seconds", value_name = "DURATION", value_parser = units::seconds_f64,
          default_value = "5s")]
    pub duration: f64,
    /// Unrecorded warm-up at the same rate (open loop).
    #[arg(long, value_name = "DURATION", value_parser = units::seconds_f64, default_value = "1s")]
    pub warmup: f64,
    /// Workload seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// `--out DIR` (with `--rate`: a .hgrm per pipeline) and `--log-y`.
    #[command(flatten)]
    pub save: OutArgs,
    /// Engine choices (flush and wait apply to all three pipelines).
    #[command(flatten)]
    pub engine: BenchEngineArgs,
}

impl CompareArgs {
    /// The open-loop spec, when `--rate` asks for one.
    pub fn open_loop(&self) -> Option<super::compare_open::OpenLoopSpec> {
        let rate = self.rate.filter(|&r| r > 0)?;
        Some(super::compare_open::OpenLoopSpec {
            rate,
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
            seed: self.seed,
        })
    }
}

/// `keel bench compare`: keel vs the disruptor crate vs crossbeam, same workload, closed loop
/// or (with `--rate`) open loop.
pub fn run_compare(args: &CompareArgs) -> Result<(), Failure> {
    if let Some(spec) = args.open_loop() {
        let report = match args.app {
            AppName::Bookstore => {
                super::compare_open::run::<Typed<Bookstore>>(&args.engine, &spec)?
            }
            AppName::Exchange => super::compare_open::run::<Typed<Exchange>>(&args.engine, &spec)?,
        };
        let written = report.save(&args.save)?;
        print_report(&report, args.json, || report.table())?;
        eprint!("{}", saved::wrote_line(&written));
        return Ok(());
    }
    use super::compare::run;
    let report = match args.app {
        AppName::Bookstore => run::<Typed<Bookstore>>(&args.engine, args.messages, args.seed)?,
        AppName::Exchange => run::<Typed<Exchange>>(&args.engine, args.messages, args.seed)?,
    };
    let saving = Saving {
        title: "keel bench compare (closed loop)",
        runs: &[],
        report: &report,
        settings: serde_json::json!({ "messages": args.messages, "seed": args.seed }),
    };
    let written = saved::save(&args.save, &saving)?;
    print_report(&report, args.json, || report.table())?;
    eprint!("{}", saved::wrote_line(&written));
    Ok(())
}

fn print_report<R: serde::Serialize>(
    report: &R,
    json: bool,
    table: impl FnOnce() -> String,
) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("serializes")
        );
    } else {
        print!("{}", table());
    }
    Ok(())
}
