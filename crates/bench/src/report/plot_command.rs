//! `keel bench plot DIR…`: overlays saved runs (the `.hgrm` files that `--out` wrote, or any
//! HdrHistogram percentile-distribution files) in one percentile plot.

use super::plot::Series;
use super::saved::{self, REPORT_JSON};
use crate::hgrm;
use crate::rig::Failure;
use std::path::{Path, PathBuf};

/// `keel bench plot`
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Example:\n  keel bench pipeline --rate 50000 --out runs/a\n  \
    keel bench pipeline --rate 50000 --flush none --out runs/b\n  \
    keel bench plot runs/a runs/b --out runs --log-y"
)]
pub struct PlotArgs {
    /// Directories written by --out (every .hgrm in each), or .hgrm files.
    #[arg(required = true, value_name = "DIR|FILE")]
    pub inputs: Vec<PathBuf>,
    /// Write percentiles.svg and percentiles.png into DIR.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Plot latency on a logarithmic axis.
    #[arg(long)]
    pub log_y: bool,
    /// Caption of the plot.
    #[arg(long, default_value = "latency by percentile")]
    pub title: String,
    /// Unit of the values in the .hgrm files: us (keel's) or ms (wrk2's).
    #[arg(long, value_name = "UNIT", default_value = "us", value_parser = ["us", "ms"])]
    pub hgrm_unit: String,
}

/// One `.hgrm` found, with its legend.
#[derive(Debug, Clone)]
struct Found {
    path: PathBuf,
    legend: String,
}

/// `keel bench plot`: reads every input and writes the overlay; returns the files written.
pub fn run_plot(args: &PlotArgs) -> Result<Vec<PathBuf>, Failure> {
    let prefix = args.inputs.len() > 1;
    let mut series = Vec::new();
    for input in &args.inputs {
        for found in hgrm_files(input, prefix)? {
            let text = std::fs::read_to_string(&found.path)
                .map_err(|e| Failure(format!("reading {}: {e}", found.path.display())))?;
            let mut parsed = hgrm::parse(&text)
                .map_err(|e| Failure(format!("{}: {e}", found.path.display())))?;
            if args.hgrm_unit == "ms" {
                parsed.points.iter_mut().for_each(|p| p.value *= 1e3);
            }
            series.push(Series {
                label: found.legend,
                points: parsed.points,
            });
        }
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure(format!("--out {}: {e}", args.out.display())))?;
    saved::write_plots(&args.out, &args.title, &series, args.log_y)
}

/// The `.hgrm` files of `input`: the file itself, or those of a directory in the order its
/// `report.json` lists them (else by name), with the legends recorded there.
fn hgrm_files(input: &Path, prefix: bool) -> Result<Vec<Found>, Failure> {
    let name = input.file_name().map_or_else(
        || input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if input.is_file() {
        let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned());
        return Ok(vec![Found {
            path: input.to_path_buf(),
            legend: stem.unwrap_or(name),
        }]);
    }
    let listed = std::fs::read_dir(input)
        .map_err(|e| Failure(format!("reading {}: {e}", input.display())))?;
    let mut paths: Vec<PathBuf> = listed
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hgrm"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Failure(format!("{}: no .hgrm file", input.display())));
    }
    let legends = recorded_legends(input);
    let mut found: Vec<(usize, Found)> = paths
        .into_iter()
        .map(|path| {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let at = legends.iter().position(|(f, _)| *f == file);
            let legend = at.map_or_else(
                || file.trim_end_matches(".hgrm").to_string(),
                |k| legends[k].1.clone(),
            );
            let legend = if prefix {
                format!("{name}: {legend}")
            } else {
                legend
            };
            (at.unwrap_or(usize::MAX), Found { path, legend })
        })
        .collect();
    found.sort_by_key(|(at, _)| *at);
    Ok(found.into_iter().map(|(_, f)| f).collect())
}

/// `(file, legend)` pairs from `dir/report.json`, empty when absent or unreadable.
fn recorded_legends(dir: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(dir.join(REPORT_JSON)) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    json["hgrm"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|f| Some((f["file"].as_str()?.into(), f["legend"].as_str()?.into())))
                .collect()
        })
        .unwrap_or_default()
}
