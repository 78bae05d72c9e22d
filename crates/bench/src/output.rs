//! Reports of the open-loop benchmarks: one [`LatencyRun`] per offered rate, a table, JSON,
//! `.hgrm` files and a percentile plot under `--out`, the knee of a sweep, a progress bar.

use super::latency::{percentile_cells, LatencyRecorder, Percentiles, PERCENTILE_HEADERS};
use super::report::Table;
use super::rig::{Failure, Verified};
use super::sysinfo::RunInfo;
use super::{hgrm, plot};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal as _;
use std::path::Path;

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
    /// Latency from intended send time to response, nanoseconds.
    pub latency: Percentiles,
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
        let over = |r: &LatencyRun| r.latency.p99_ns as f64 / 1e3 > bound_us;
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
    /// What it ran on.
    pub run_info: RunInfo,
    /// One per offered rate.
    pub runs: Vec<LatencyRun>,
    /// The knee, for sweeps.
    pub knee: Option<Knee>,
}

impl LoadReport {
    /// The headline table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "keel bench {} --app {} (seed {})\n",
            self.bench, self.app, self.seed
        );
        out.push_str(&self.run_info.lines());
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
            let rate = |r: Option<u64>| r.map_or("-".to_string(), |r| r.to_string());
            out.push_str(&format!(
                "knee (p99 > {} us): last within {} /s, first over {} /s\n",
                k.p99_bound_us,
                rate(k.last_within_per_sec),
                rate(k.first_over_per_sec)
            ));
        }
        out
    }

    /// Writes `<label>.hgrm` per run, `percentiles.svg` with every run, and `report.json`.
    pub fn write_out(&self, dir: &Path) -> Result<(), Failure> {
        std::fs::create_dir_all(dir)?;
        let mut series = Vec::new();
        for r in &self.runs {
            let text = hgrm::write(r.recorder.histogram(), 1e3);
            std::fs::write(dir.join(format!("{}.hgrm", r.label)), &text)?;
            let parsed = hgrm::parse(&text).map_err(Failure)?;
            series.push(plot::Series {
                label: format!("{} ({})", r.label, offered(r.offered_per_sec)),
                points: parsed.points,
            });
        }
        let title = format!(
            "keel bench {} --app {} (flush {}, wait {})",
            self.bench, self.app, self.run_info.flush, self.run_info.wait
        );
        plot::write_svg(&dir.join("percentiles.svg"), &title, &series).map_err(Failure)?;
        let json = serde_json::to_string_pretty(self).expect("report serializes");
        std::fs::write(dir.join("report.json"), json)?;
        Ok(())
    }
}

fn offered(rate: u64) -> String {
    if rate == 0 {
        "closed loop".into()
    } else {
        format!("{rate}/s")
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
        format!("{:.0}", r.achieved_per_sec),
        r.recorded.to_string(),
    ];
    row.extend(percentile_cells(l));
    row.push(verified);
    row
}

/// A progress bar on stderr, hidden when `quiet` or when stderr is not a terminal.
pub fn progress(total: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
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
