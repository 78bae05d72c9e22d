//! Reports of the open-loop benchmarks: one [`LatencyRun`] per offered rate, a table, JSON,
//! what `--out` saves, the knee of a sweep, a progress bar.

use super::disk::DiskBaseline;
use super::latency::{percentile_cells_or_dash, LatencyRecorder, Percentiles, PERCENTILE_HEADERS};
use super::report::{progress::with_rate, Table};
use super::rig::Verified;
use super::sysinfo::RunInfo;
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal as _;

/// One run at one offered rate.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRun {
    /// Short name (used for file names and legends), e.g. `rate-100000`.
    pub label: String,
    /// Offered rate, messages per second (0: closed loop, as fast as possible).
    pub offered_per_sec: u64,
    /// Responses received per second over the recorded window.
    pub achieved_per_sec: f64,
    /// Messages recorded (warm-up excluded).
    pub recorded: u64,
    /// Latency from intended send time to response, nanoseconds; `None` (JSON `null`) when
    /// not measured (a closed-loop run times throughput only).
    pub latency: Option<Percentiles>,
    /// Responses with status accepted / rejected / failed (whole run).
    pub accepted: u64,
    /// Rejected by the business logic (expected for some workload messages).
    pub rejected: u64,
    /// Failed (the processor panicked): should be 0.
    pub failed: u64,
    /// State hash check against a replay of the journal (None: not checkable, e.g. remote).
    pub verified: Option<Verified>,
    /// The full distribution.
    #[serde(skip)]
    pub recorder: LatencyRecorder,
}

/// Where p99 first exceeded the bound in a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Knee {
    /// The p99 bound, microseconds.
    pub p99_bound_us: f64,
    /// Highest offered rate whose p99 stayed within the bound (None: even the first did not).
    pub last_within_per_sec: Option<u64>,
    /// First offered rate whose p99 exceeded it (None: none did).
    pub first_over_per_sec: Option<u64>,
}

impl Knee {
    /// The knee of `runs` (in increasing rate) for `bound_us`.
    pub fn find(runs: &[LatencyRun], bound_us: f64) -> Knee {
        let over = |r: &LatencyRun| r.latency.is_some_and(|l| l.p99_ns as f64 / 1e3 > bound_us);
        let first_over = runs.iter().position(over);
        let within = match first_over {
            Some(k) => runs[..k].last(),
            None => runs.last(),
        };
        Knee {
            p99_bound_us: bound_us,
            last_within_per_sec: within.map(|r| r.offered_per_sec),
            first_over_per_sec: first_over.map(|k| runs[k].offered_per_sec),
        }
    }
}

/// A whole open-loop benchmark result.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `pipeline` or `net`.
    pub bench: String,
    /// Application.
    pub app: String,
    /// Workload seed.
    pub seed: u64,
    /// What it ran on; `None` when the server is remote (`bench net --connect`): its
    /// settings are not known here.
    pub run_info: Option<RunInfo>,
    /// The load generator's side, when the server is remote.
    pub client: Option<ClientInfo>,
    /// One per offered rate.
    pub runs: Vec<LatencyRun>,
    /// The knee, for sweeps.
    pub knee: Option<Knee>,
    /// The journal's disk measured on its own before the runs (in-process runs under a
    /// durable flush policy; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskBaseline>,
}

impl LoadReport {
    /// The headline table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "keel bench {} --app {} (seed {})\n",
            self.bench, self.app, self.seed
        );
        if let Some(info) = &self.run_info {
            out.push_str(&info.lines());
        }
        if let Some(client) = &self.client {
            out.push_str(&client.lines());
        }
        // Runs that took snapshots (`--snapshot-mode`) say who took them, first.
        let snapshot_mode =
            |r: &LatencyRun| r.label.split_once("-snapshots-").map(|(_, m)| m.to_owned());
        let with_modes = self.runs.iter().any(|r| snapshot_mode(r).is_some());
        let first: &[&str] = if with_modes { &["snapshots"] } else { &[] };
        let mut t = Table::new(
            &[
                first,
                &["offered/s", "achieved/s", "msgs"][..],
                &PERCENTILE_HEADERS,
                &["verified"],
            ]
            .concat(),
        );
        for r in &self.runs {
            let mut cells = row(r);
            if with_modes {
                cells.insert(0, snapshot_mode(r).unwrap_or_else(|| "none".into()));
            }
            t.row(cells);
        }
        out.push_str(&t.render());
        if let Some(k) = &self.knee {
            out.push_str(&k.line());
        }
        if let Some(disk) = &self.disk {
            out.push_str(&disk.line());
        }
        out
    }

    /// The runs as `--out` saves them.
    pub fn saved_runs(&self) -> Vec<(String, String, &LatencyRecorder)> {
        self.runs
            .iter()
            .map(|r| {
                let legend = format!("{} ({})", self.bench, offered(r.offered_per_sec));
                (r.label.clone(), legend, &r.recorder)
            })
            .collect()
    }
}

fn offered(rate: u64) -> String {
    if rate == 0 {
        "closed loop".into()
    } else {
        format!("{}/s", HumanCount(rate))
    }
}

impl Knee {
    /// The knee as a sentence, e.g. `knee: p99 stayed within 1000 us up to 200,000/s
    /// offered; over it from 300,000/s`.
    pub fn line(&self) -> String {
        let bound = self.p99_bound_us;
        let rate = |r: u64| format!("{}/s", HumanCount(r));
        match (self.last_within_per_sec, self.first_over_per_sec) {
            (Some(within), Some(over)) => format!(
                "knee: p99 stayed within {bound} us up to {} offered; over it from {}\n",
                rate(within),
                rate(over)
            ),
            (Some(within), None) => format!(
                "knee: none in this sweep: p99 stayed within {bound} us at every rate, up to {} \
                 offered\n",
                rate(within)
            ),
            (None, Some(over)) => format!(
                "knee: below this sweep: p99 was over {bound} us already at its first rate, {}\n",
                rate(over)
            ),
            (None, None) => "knee: no run measured latency\n".into(),
        }
    }
}

/// What `bench net --connect` knows of a run against a remote server: this machine, the
/// address and the load it offered; nothing of the server's settings.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    /// The server's address.
    pub server: String,
    /// This (the client's) machine's CPU model.
    pub client_cpu_model: String,
    /// Cores the client may run on.
    pub client_cores: usize,
    /// Connections sharing the schedule.
    pub connections: u64,
    /// Whether the senders busy-wait between sends (`--wait spin`) or sleep.
    pub send_wait: String,
}

impl ClientInfo {
    /// This machine as the client of `server`, with `connections` senders that busy-wait
    /// between sends when `spin`.
    pub fn detect(server: std::net::SocketAddr, connections: u64, spin: bool) -> Self {
        let hw = super::report::Hardware::detect(
            &super::affinity::CoreSet::detect(),
            super::Pins::default(),
        );
        ClientInfo {
            server: server.to_string(),
            client_cpu_model: hw.cpu_model,
            client_cores: hw.cores,
            connections,
            send_wait: if spin {
                "busy-wait between sends".into()
            } else {
                "sleep between sends".into()
            },
        }
    }

    /// Two lines for the top of the table, labelled as the client's.
    pub fn lines(&self) -> String {
        format!(
            "client: cpu: {} | cores: {} | {} connection(s), senders {}\n\
             server: {} (remote: its flush policy, wait strategy, pinning and disk are not \
             known here)\n",
            self.client_cpu_model, self.client_cores, self.connections, self.send_wait, self.server
        )
    }
}

fn row(r: &LatencyRun) -> Vec<String> {
    let l = &r.latency;
    let verified = match &r.verified {
        Some(v) => format!("ok {:#x}", v.engine_state_hash & 0xffff_ffff),
        None => "responses".into(),
    };
    let mut row = vec![
        offered(r.offered_per_sec),
        HumanCount(r.achieved_per_sec.round() as u64).to_string(),
        r.recorded.to_string(),
    ];
    row.extend(percentile_cells_or_dash(l.as_ref()));
    row.push(verified);
    row
}

/// A progress bar on stderr, hidden when `quiet` or when stderr is not a terminal.
pub fn progress(total: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}, {rate} ({eta})")
        .map_or_else(|_| ProgressStyle::default_bar(), with_rate);
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Parses `FROM:TO:STEP` (rates per second) into the list of rates.
pub fn parse_sweep(s: &str) -> Result<Vec<u64>, String> {
    let parts: Vec<u64> = s
        .split(':')
        .map(|p| p.replace('_', "").parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--sweep {s}: {e}"))?;
    let [from, to, step] = parts[..] else {
        return Err(format!("--sweep {s}: expected FROM:TO:STEP"));
    };
    if from == 0 || step == 0 || to < from {
        return Err(format!("--sweep {s}: need 0 < FROM <= TO and STEP > 0"));
    }
    Ok((0..)
        .map(|k| from + k * step)
        .take_while(|r| *r <= to)
        .collect())
}
