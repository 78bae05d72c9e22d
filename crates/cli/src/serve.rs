//! `keel serve`: run an app's engine behind the network thread until Ctrl-C (SIGINT), SIGTERM
//! or SIGHUP, then stop cleanly (stop the network, drain the rings, sync the journal,
//! snapshot, join) and exit 0. The `ctrlc` crate's `termination` feature adds SIGTERM and
//! SIGHUP to its SIGINT handler.

use super::engine_args::{AppName, EngineArgs};
use crate::messages;
use crate::metrics_http::MetricsEndpoint;
use crate::status_log::StatusLog;
use clap::Args;
use keel::engine::Engine;
use keel::net::{NetConfig, Server};
use keel::Typed;
use keel_services::bookstore::Bookstore;
use keel_services::exchange::Exchange;
use keel_services::units;
use keel_services::App;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `keel serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(long, value_enum, default_value_t = AppName::Bookstore)]
    pub app: AppName,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Most concurrent client connections.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Shared secret clients must present in their handshake.
    #[arg(long)]
    pub token: Option<String>,
    /// Close connections idle this long (e.g. 90s, 5m; 0: never).
    #[arg(long = "idle-timeout", alias = "idle-timeout-secs", value_name = "DURATION",
          value_parser = units::whole_seconds, default_value = "60s")]
    pub idle_timeout_secs: u64,
    /// Per-session limit of unsent responses before a slow client is disconnected.
    #[arg(long = "output-limit", alias = "output-limit-bytes", value_name = "SIZE",
          value_parser = units::bytes_usize, default_value = "256KiB")]
    pub output_limit_bytes: usize,
    /// Take snapshots from a replica that follows the journal on its own thread: the business
    /// logic never pauses to capture its state. Costs a second copy of the state in memory
    /// and a second apply of every message (docs/SNAPSHOTS.md).
    #[arg(long)]
    pub snapshot_replica: bool,
    /// Read the shared secret from the first line of this file (`--token` wins over it, and
    /// it over the KEEL_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics (off unless given).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log one info line of rates, lags and fsync p99 this often (e.g. 10s, 500ms; 0: never).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::status_log::parse_interval)]
    pub stats_interval: Duration,
    /// Read flags from this TOML file first: each key is a flag's name without the dashes
    /// (max-connections = 512); flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id in its cluster (with --cluster).
    #[arg(long, value_name = "N", requires = "cluster")]
    pub node_id: Option<u64>,
    /// Run as one node of a replicated cluster: every node's id and cluster address
    /// (election and replication; clients keep using --listen), e.g.
    /// 1=10.0.0.1:7710,2=10.0.0.2:7710,3=10.0.0.3:7710. This node leads or follows; the
    /// leader serves clients, the others answer NOT_LEADER naming it. See
    /// docs/REPLICATION.md.
    #[arg(long, value_name = "ID=HOST:PORT,...", value_parser = crate::serve_cluster::parse_members,
          requires = "node_id")]
    pub cluster: Option<crate::serve_cluster::Members>,
    /// With --cluster: when a client's reply may leave the leader: majority (durable on a
    /// majority of nodes) | all (on every node) | leader (on the leader alone: a failover
    /// may lose acknowledged messages).
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "majority",
        requires = "cluster"
    )]
    pub ack_policy: keel_cluster::AckPolicy,
    /// With --cluster: the election timeout range in ms, shared out among the nodes (in node
    /// id order each takes the first quarter of its own slot of MIN..MAX, so no two nodes
    /// campaign at once). A follower that hears no leader for its slot's end (the leader's
    /// lease) plus its timeout starts an election: with 3 nodes and 150:300, about 315, 415
    /// or 515 ms after the leader's last heartbeat (sent every MIN/3 ms). Shorter fails over
    /// sooner; shorter than the network's and the machines' pauses elects needlessly. Every
    /// node should use the same range.
    #[arg(
        long,
        value_name = "MIN:MAX",
        default_value = "150:300",
        value_parser = crate::serve_cluster::parse_election_timeout,
        requires = "cluster"
    )]
    pub election_timeout_ms: (u64, u64),
    /// Engine limits and choices.
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl ServeArgs {
    /// `keel serve` with every default (what `keel` with no subcommand runs).
    pub fn parse_defaults() -> ServeArgs {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            serve: ServeArgs,
        }
        <Defaults as clap::Parser>::parse_from(["keel"]).serve
    }

    /// The engine's and the network's settings, with the shared secret resolved and the data
    /// directories created (the error is the sentence to print).
    pub(crate) fn prepare(&self) -> Result<(keel::engine::Config, NetConfig), String> {
        let config = self.engine.config();
        let token = crate::token::resolve(self.token.as_deref(), self.token_file.as_deref())
            .map_err(|e| e.to_string())?;
        let data_dir = &self.engine.data_dir;
        for dir in [&config.journal_dir, &config.snapshot_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| messages::data_dir_failed(data_dir, dir, &e))?;
        }
        Ok((config, self.net_config(token)))
    }

    /// The network settings, with the shared secret resolved from `--token`, `--token-file`
    /// or `KEEL_TOKEN`.
    pub(crate) fn net_config(&self, token: Option<String>) -> NetConfig {
        {
            let mut net = NetConfig::default();
            net.listen_addr = self.listen;
            net.max_connections = self.max_connections;
            net.token = token.map(String::into_bytes);
            net.idle_timeout =
                (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs));
            net.output_limit_bytes = self.output_limit_bytes;
            net.net_core = self.engine.pin_net;
            net
        }
    }
}

/// Runs `keel serve` until SIGINT, SIGTERM or SIGHUP, then shuts down cleanly. The error is
/// the sentence to print (naming the path or address concerned).
pub fn run_serve(args: &ServeArgs) -> Result<(), String> {
    match args.app {
        AppName::Bookstore => serve::<Typed<Bookstore>>(args),
        AppName::Exchange => serve::<Typed<Exchange>>(args),
    }
}

fn serve<A: App>(args: &ServeArgs) -> Result<(), String> {
    if let (Some(members), Some(node_id)) = (&args.cluster, args.node_id) {
        return crate::serve_cluster::serve::<A>(args, node_id, members);
    }
    let (config, net) = args.prepare()?;
    let data_dir = &args.engine.data_dir;
    // Recovery first: the port is bound only once the engine is live.
    let started = if args.snapshot_replica {
        Engine::start_with_replica(config.clone(), A::default(), A::default)
    } else {
        Engine::start(config.clone(), A::default())
    };
    let mut engine = started.map_err(|e| messages::engine_failed(data_dir, &e))?;
    let server = Server::start(net, &mut engine, A::validate)
        .map_err(|e| messages::listen_failed(args.listen, &e))?;
    let endpoint = args
        .metrics_listen
        .map(|addr| MetricsEndpoint::start(addr, engine.metrics()))
        .transpose()
        .map_err(|e| format!("--metrics-listen: {e}"))?;
    let status = StatusLog::start(engine.metrics(), Some(args.stats_interval))
        .map_err(|e| format!("starting the stats log: {e}"))?;
    let stop = server.stop_handle();
    if let Err(e) = ctrlc::set_handler(move || stop.stop()) {
        tracing::warn!(error = %e, "could not install the SIGINT/SIGTERM/SIGHUP handler");
    }
    print_banner::<A>(args, &server, &engine, &config);
    if let Some(endpoint) = &endpoint {
        eprintln!("  metrics: http://{}/metrics", endpoint.local_addr());
    }
    let stats = server
        .wait()
        .map_err(|e| format!("the network thread failed: {e}"))?;
    drop((status, endpoint));
    eprintln!("stopping: {}", messages::net_summary(&stats));
    let state = engine
        .shutdown()
        .map_err(|e| format!("stopping the engine: {e}"))?;
    eprintln!("stopped cleanly; state hash {:#018x}", state.state_hash());
    Ok(())
}

fn print_banner<A: App>(
    args: &ServeArgs,
    server: &Server,
    engine: &Engine<A>,
    config: &keel::engine::Config,
) {
    let r = engine.recovered();
    eprintln!(
        "keel serve: {} ready, listening on {}",
        A::NAME,
        server.local_addr()
    );
    eprintln!(
        "  journal {} | snapshots {} | flush {} | wait {} | mode {}",
        config.journal_dir.display(),
        config.snapshot_dir.display(),
        config.flush,
        config.wait,
        match config.mode {
            keel::engine::ApplyMode::ApplyAhead => "apply-ahead",
            _ => "durable",
        }
    );
    eprintln!(
        "  recovered: snapshot at {}, {} messages replayed, last sequence {}",
        r.snapshot_sequence, r.replayed, r.last_sequence
    );
    eprintln!(
        "  talk to it: keel client --app {} --connect {} {}",
        A::NAME,
        server.local_addr(),
        A::command_help()
            .lines()
            .next()
            .and_then(|l| l.split("  ").next())
            .unwrap_or("")
    );
    eprintln!(
        "  all commands: keel client --app {} --help; a session: keel client --app {} --connect {}",
        A::NAME,
        A::NAME,
        server.local_addr()
    );
    eprintln!("  stop: Ctrl-C (drains, syncs the journal, writes a snapshot)");
    let _ = args;
}
