//! What every benchmark report states: the hardware it ran on, medians, and a plain-text table;
//! ratios ([`ratio`]), progress bars ([`progress`]), and what `--out` writes ([`saved`]: `.hgrm`
//! files, `report.json`, the percentile [`plot`]), and `keel bench plot` ([`plot_command`]).

pub mod plot;
pub mod plot_command;
pub mod progress;
pub mod ratio;
pub mod saved;

use super::affinity::CoreSet;
use super::Pins;
use serde::Serialize;
use std::fmt::Write as _;

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Hardware {
    /// `model name` from `/proc/cpuinfo`, or `"unknown"`.
    pub cpu_model: String,
    /// Cores this process may run on (read once before pinning).
    pub cores: usize,
    /// Logical CPUs reported by `std::thread::available_parallelism`.
    pub logical_cpus: usize,
    /// Where the two benchmark threads were pinned.
    pub pinning: Pins,
}

impl Hardware {
    /// Describes this machine and the pinning in use.
    pub fn detect(cores: &CoreSet, pinning: Pins) -> Self {
        Hardware {
            cpu_model: cpu_model(),
            cores: cores.len(),
            logical_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            pinning,
        }
    }

    /// One line for the top of a text report.
    pub fn line(&self) -> String {
        let pin = |core: Option<usize>| core.map_or("unpinned".to_string(), |c| c.to_string());
        format!(
            "cpu: {} | cores: {} | pinning: producer {}, consumer {}",
            self.cpu_model,
            self.cores,
            pin(self.pinning.producer),
            pin(self.pinning.consumer)
        )
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The median of `values` (mean of the middle two for an even count; 0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `x` in millions with one decimal, e.g. `152.3M`.
pub fn millions(x: f64) -> String {
    format!("{:.1}M", x / 1e6)
}

/// A plain-text table: the first column left-aligned, the rest right-aligned.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// Renders the table with a rule under the header.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                let cells = self.rows.iter().map(|r| r[c].len());
                cells.chain([self.header[c].len()]).max().unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            for (c, cell) in cells.iter().enumerate() {
                let sep = if c == 0 { "" } else { "  " };
                if c == 0 {
                    let _ = write!(out, "{cell:<w$}", w = widths[c]);
                } else {
                    let _ = write!(out, "{sep}{cell:>w$}", w = widths[c]);
                }
            }
            out.push('\n');
        };
        line(&self.header);
        line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
        for row in &self.rows {
            line(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["name", "value"]);
        t.row(vec!["keel".into(), "1".into()]);
        t.row(vec!["disruptor".into(), "22".into()]);
        let text = t.render();
        assert!(text.contains("keel           1\n"), "{text}");
        assert!(text.contains("disruptor     22\n"), "{text}");
    }
}
