//! `--out DIR` of every latency benchmark: one `.hgrm` per run (HdrHistogram's
//! percentile-distribution text, values in microseconds), `report.json` (the command, its
//! settings and every figure, peers included) and the percentile plot as `percentiles.svg`
//! and `percentiles.png`.

use super::plot::{self, Plot, Series};
use crate::hgrm;
use crate::latency::LatencyRecorder;
use crate::rig::Failure;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// File name of the plot, without extension.
pub const PLOT_STEM: &str = "percentiles";
/// File name of the JSON report.
pub const REPORT_JSON: &str = "report.json";
/// Nanoseconds per unit of the values in the `.hgrm` files written here (microseconds).
pub const HGRM_UNIT_NS: f64 = 1e3;

/// The `--out` and `--log-y` flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutArgs {
    /// Write into DIR: a .hgrm per run, report.json, percentiles.svg and percentiles.png.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Plot latency on a logarithmic axis (with --out).
    #[arg(long, requires = "out")]
    pub log_y: bool,
}

/// One measured distribution to save.
#[derive(Debug, Clone, Copy)]
pub struct SavedRun<'a> {
    /// File stem of its `.hgrm` (letters, digits, `-`, `_`, `.`).
    pub name: &'a str,
    /// Legend text on the plot.
    pub legend: &'a str,
    /// The distribution, nanoseconds.
    pub recorder: &'a LatencyRecorder,
}

/// What one benchmark hands over to be saved.
#[derive(Debug, Clone)]
pub struct Saving<'a, R: Serialize> {
    /// Caption of the plot.
    pub title: &'a str,
    /// The distributions; those with no values get no file and no line.
    pub runs: &'a [SavedRun<'a>],
    /// The benchmark's report (what `--json` prints).
    pub report: &'a R,
    /// The settings in force, as the benchmark knows them.
    pub settings: Value,
}

/// Writes everything into `out.out` (when set) and returns the files written.
pub fn save<R: Serialize>(out: &OutArgs, saving: &Saving<'_, R>) -> Result<Vec<PathBuf>, Failure> {
    let Some(dir) = &out.out else {
        return Ok(Vec::new());
    };
    let in_dir = |e: &dyn std::fmt::Display| Failure(format!("--out {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| in_dir(&e))?;
    let mut written = Vec::new();
    let mut series = Vec::new();
    let mut files = Vec::new();
    for run in saving.runs.iter().filter(|r| r.recorder.count() > 0) {
        let text = hgrm::write(run.recorder.histogram(), HGRM_UNIT_NS);
        let path = dir.join(format!("{}.hgrm", file_stem(run.name)));
        std::fs::write(&path, &text).map_err(|e| in_dir(&e))?;
        let parsed = hgrm::parse(&text).map_err(|e| in_dir(&e))?;
        series.push(Series {
            label: run.legend.to_string(),
            points: parsed.points,
        });
        files.push(json!({
            "file": file_name(&path),
            "legend": run.legend,
            "count": run.recorder.count(),
        }));
        written.push(path);
    }
    let json_path = dir.join(REPORT_JSON);
    let report = report_json(saving, files);
    std::fs::write(&json_path, report).map_err(|e| in_dir(&e))?;
    written.push(json_path);
    if !series.is_empty() {
        written.extend(write_plots(dir, saving.title, &series, out.log_y)?);
    }
    Ok(written)
}

/// Writes `percentiles.svg` and `percentiles.png` of `series` into `dir`.
pub fn write_plots(
    dir: &Path,
    title: &str,
    series: &[Series],
    log_y: bool,
) -> Result<Vec<PathBuf>, Failure> {
    let plot = Plot {
        title,
        series,
        log_y,
    };
    let svg = dir.join(format!("{PLOT_STEM}.svg"));
    let png = dir.join(format!("{PLOT_STEM}.png"));
    plot::write_svg(&svg, &plot).map_err(|e| Failure(e.to_string()))?;
    plot::write_png(&png, &plot).map_err(|e| Failure(e.to_string()))?;
    Ok(vec![svg, png])
}

fn report_json<R: Serialize>(saving: &Saving<'_, R>, files: Vec<Value>) -> String {
    let report = serde_json::to_value(saving.report).expect("reports serialize");
    let command: Vec<String> = std::env::args().collect();
    let whole = json!({
        "command": command.join(" "),
        "settings": saving.settings,
        "hgrm_unit": "us",
        "hgrm": files,
        "report": report,
    });
    serde_json::to_string_pretty(&whole).expect("JSON values serialize")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `name` with every character other than letters, digits, `-`, `_` and `.` replaced by `_`.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One line naming what was written, for the terminal.
pub fn wrote_line(files: &[PathBuf]) -> String {
    let Some(dir) = files.first().and_then(|f| f.parent()) else {
        return String::new();
    };
    let names: Vec<String> = files.iter().map(|f| file_name(f)).collect();
    format!("wrote {}: {}\n", dir.display(), names.join(", "))
}
