//! The HdrHistogram plotter's percentile plot as an SVG: latency against percentile on a log
//! scale of 1/(1-p), so 90%, 99%, 99.9%, ... are evenly spaced. One line per distribution.

use super::hgrm::HgrmPoint;
use plotters::prelude::*;
use std::path::Path;

/// Right edge of the x axis: 1/(1-p) = 10^6, i.e. 99.9999%.
const X_MAX: f64 = 1e6;

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// The distribution (values in microseconds).
    pub points: Vec<HgrmPoint>,
}

/// Where a point goes on the x axis: 1/(1-p), with 100% drawn at the right edge.
pub fn x_of(percentile: f64) -> f64 {
    if percentile >= 1.0 {
        X_MAX
    } else {
        (1.0 / (1.0 - percentile)).clamp(1.0, X_MAX)
    }
}

fn percent_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let nines = x.log10().round() as usize;
    if nines <= 1 {
        format!("{p:.0}%")
    } else {
        format!("{p:.prec$}%", prec = nines - 2)
    }
}

/// Writes the percentile plot of every series to `path` (SVG).
pub fn write_svg(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.value))
        .fold(1.0f64, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..X_MAX).log_scale(), 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_label_formatter(&percent_label)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points = s.points.iter().map(|p| (x_of(p.percentile), p.value));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
