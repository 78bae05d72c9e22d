//! The HdrHistogram plotter's percentile plot, as SVG and PNG: latency against percentile on
//! a log scale of 1/(1-p), so 0%, 90%, 99%, 99.9%, ... are evenly spaced; one line per
//! distribution, with a legend under the plot (never over a line).
//!
//! Nothing is clipped: the x axis runs one decade past the last finite percentile of any
//! series and each line ends at its maximum on the right edge (marked with a dot); the y axis
//! runs to a round value above the largest maximum. Values are read in microseconds and shown
//! in µs, or in ms when the largest is 10 ms or more; `log_y` puts them on a log scale (one
//! noisy run then no longer flattens the others).

use crate::hgrm::HgrmPoint;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Plot width, pixels.
pub const WIDTH_PX: u32 = 1100;
/// Plot height, pixels.
pub const HEIGHT_PX: u32 = 650;
/// Bytes per pixel of the bitmap the PNG is encoded from (RGB).
const RGB_BYTES: usize = 3;

/// Line colours, in legend order (the matplotlib "tab10" palette).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// The distribution, values in microseconds, in increasing percentile.
    pub points: Vec<HgrmPoint>,
}

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct Plot<'a> {
    /// Caption above the plot.
    pub title: &'a str,
    /// The lines, drawn in order.
    pub series: &'a [Series],
    /// Latency on a logarithmic axis.
    pub log_y: bool,
}

/// Drawing or writing a plot failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Nothing to draw.
    #[error("no latency was recorded, so there is nothing to plot")]
    Empty,
    /// The drawing library failed.
    #[error("drawing the plot: {0}")]
    Draw(String),
    /// The file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PNG encoder failed.
    #[error("encoding {path}: {source}")]
    Png {
        /// The file.
        path: PathBuf,
        /// Why.
        source: png::EncodingError,
    },
}

fn draw_err(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Writes the plot as an SVG file.
pub fn write_svg(path: &Path, plot: &Plot<'_>) -> Result<(), PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        draw(&root, plot)?;
        root.present().map_err(draw_err)?;
    }
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the plot as a PNG file (text drawn with the embedded DejaVu Sans font).
pub fn write_png(path: &Path, plot: &Plot<'_>) -> Result<(), PlotError> {
    let (w, h) = (WIDTH_PX as usize, HEIGHT_PX as usize);
    let mut rgb = vec![0u8; w * h * RGB_BYTES];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        draw(&root, plot)?;
        root.present().map_err(draw_err)?;
    }
    let png_err = |source| PlotError::Png {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH_PX, HEIGHT_PX);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

/// Registers DejaVu Sans as plotters' "sans-serif" once (the bitmap backend draws text with
/// ab_glyph from registered fonts only).
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Draw("the embedded font did not load".into()))
    }
}

/// The axes: where the x axis ends, the y unit and range.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axes {
    x_max: f64,
    unit: Unit,
    y_min: f64,
    y_max: f64,
}

/// The unit of the y axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Micros,
    Millis,
}

impl Unit {
    fn per_micro(self) -> f64 {
        match self {
            Unit::Micros => 1.0,
            Unit::Millis => 1e-3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Micros => "µs",
            Unit::Millis => "ms",
        }
    }
}

/// Where a finite percentile goes on the x axis: 1/(1-p).
pub fn x_of(percentile: f64) -> f64 {
    1.0 / (1.0 - percentile.clamp(0.0, 1.0 - 1e-15))
}

impl Axes {
    fn of(plot: &Plot<'_>) -> Option<Axes> {
        let points = || plot.series.iter().flat_map(|s| s.points.iter());
        let max_us = points().map(|p| p.value).fold(f64::NAN, f64::max);
        if max_us.is_nan() {
            return None;
        }
        let last_x = points()
            .filter(|p| p.percentile < 1.0)
            .map(|p| x_of(p.percentile))
            .fold(1.0, f64::max);
        // One decade past the last finite percentile: room for each line's step to its max.
        // (A tolerance: 1/(1 - 0.999) comes out a hair under 1000.)
        let decades = ((last_x.log10() + 1e-9).floor() as i32 + 1).max(2);
        let unit = if max_us >= 10_000.0 {
            Unit::Millis
        } else {
            Unit::Micros
        };
        let max = max_us * unit.per_micro();
        let (y_min, y_max) = if plot.log_y {
            let min_positive = points()
                .map(|p| p.value * unit.per_micro())
                .filter(|v| *v > 0.0)
                .fold(max, f64::min);
            let y_min = 10f64.powf(min_positive.max(1e-3).log10().floor());
            (y_min, log_ceiling(max.max(y_min * 2.0)))
        } else {
            (0.0, nice_ceiling(max.max(f64::MIN_POSITIVE) * 1.05))
        };
        Some(Axes {
            x_max: 10f64.powi(decades),
            unit,
            y_min,
            y_max,
        })
    }
}

/// The smallest 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^k at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let scale = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * scale)
        .find(|c| *c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * scale)
}

/// A round value a little above `v`, where a log axis ends.
fn log_ceiling(v: f64) -> f64 {
    nice_ceiling(v * 1.25).max(v)
}

/// 1 → "0%", 10 → "90%", 100 → "99%", 1000 → "99.9%", ...
pub fn percent_label(x: f64) -> String {
    let nines = x.log10().round().max(0.0) as usize;
    let p = 100.0 * (1.0 - 1.0 / x);
    if nines <= 2 {
        format!("{p:.0}%")
    } else {
        format!("{p:.prec$}%", prec = nines - 2)
    }
}

fn y_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-(v.abs().log10().floor()) as usize + 1).min(6);
        let s = format!("{v:.decimals$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// 1, 2, 5 × 10^k within `min..=max`.
fn log_ticks(min: f64, max: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(min.log10().floor());
    while decade <= max * (1.0 + 1e-9) {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t >= min * (1.0 - 1e-9) && t <= max * (1.0 + 1e-9) {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// The line of one series in plot coordinates: each finite percentile, then the max at the
/// right edge.
fn line_of(series: &Series, axes: &Axes) -> Vec<(f64, f64)> {
    let scale = axes.unit.per_micro();
    let y = |v: f64| (v * scale).max(axes.y_min);
    let mut line: Vec<(f64, f64)> = series
        .points
        .iter()
        .filter(|p| p.percentile < 1.0)
        .map(|p| (x_of(p.percentile), y(p.value)))
        .collect();
    if let Some(max) = series.points.iter().map(|p| p.value).reduce(f64::max) {
        line.push((axes.x_max, y(max)));
    }
    line
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &Plot<'_>) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    register_font()?;
    let axes = Axes::of(plot).ok_or(PlotError::Empty)?;
    root.fill(&WHITE).map_err(draw_err)?;
    let rows = plot.series.len().div_ceil(LEGEND_COLUMNS) as u32;
    let legend_px = rows * LEGEND_ROW_PX + 10;
    let (root, legend) = root.split_vertically(HEIGHT_PX.saturating_sub(legend_px));
    draw_legend(&legend, plot.series)?;
    let root = &root;
    let x_ticks: Vec<f64> = (0..=axes.x_max.log10().round() as i32)
        .map(|k| 10f64.powi(k))
        .collect();
    let x_range = (1f64..axes.x_max).log_scale().with_key_points(x_ticks);
    let y_desc = format!("latency ({})", axes.unit.name());
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(plot.title, ("sans-serif", 20))
        .margin(20)
        .margin_right(50)
        .x_label_area_size(50)
        .y_label_area_size(80);
    if plot.log_y {
        let y_range = (axes.y_min..axes.y_max)
            .log_scale()
            .with_key_points(log_ticks(axes.y_min, axes.y_max));
        let mut chart = builder
            .build_cartesian_2d(x_range, y_range)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc(y_desc)
            .x_label_formatter(&|x| percent_label(*x))
            .y_label_formatter(&|y| y_label(*y))
            .label_style(("sans-serif", 14))
            .light_line_style(WHITE)
            .draw()
            .map_err(draw_err)?;
        draw_lines(&mut chart, plot, &axes)
    } else {
        let mut chart = builder
            .build_cartesian_2d(x_range, axes.y_min..axes.y_max)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc(y_desc)
            .x_label_formatter(&|x| percent_label(*x))
            .y_label_formatter(&|y| y_label(*y))
            .label_style(("sans-serif", 14))
            .light_line_style(WHITE)
            .draw()
            .map_err(draw_err)?;
        draw_lines(&mut chart, plot, &axes)
    }
}

fn draw_lines<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    plot: &Plot<'_>,
    axes: &Axes,
) -> Result<(), PlotError>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in plot.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line = line_of(s, axes);
        let end = line.last().copied();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(draw_err)?;
        chart
            .draw_series(end.map(|p| Circle::new(p, 4, color.filled())))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// Legend entries per row under the plot.
const LEGEND_COLUMNS: usize = 3;
/// Height of one legend row, pixels.
const LEGEND_ROW_PX: u32 = 22;

/// The legend under the plot: a stroke of each line's colour and its label, row by row.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let column_px = (WIDTH_PX as i32 - 100) / LEGEND_COLUMNS as i32;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let x = 100 + (i % LEGEND_COLUMNS) as i32 * column_px;
        let y = 5 + (i / LEGEND_COLUMNS) as i32 * LEGEND_ROW_PX as i32 + 8;
        let stroke = PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3));
        area.draw(&stroke).map_err(draw_err)?;
        let style =
            TextStyle::from(("sans-serif", 14)).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            ));
        area.draw(&Text::new(s.label.clone(), (x + 32, y), style))
            .map_err(draw_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(max_us: f64) -> Series {
        let p = |value, percentile, total_count| HgrmPoint {
            value,
            percentile,
            total_count,
        };
        Series {
            label: "s".into(),
            points: vec![
                p(1.0, 0.0, 1),
                p(2.0, 0.9, 90),
                p(5.0, 0.999, 999),
                p(max_us, 1.0, 1000),
            ],
        }
    }

    #[test]
    fn percent_labels_follow_the_nines() {
        let labels: Vec<String> = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5]
            .into_iter()
            .map(percent_label)
            .collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn axes_leave_room_for_the_max_and_switch_to_ms() {
        let s = [series(40.0)];
        let plot = Plot {
            title: "t",
            series: &s,
            log_y: false,
        };
        let a = Axes::of(&plot).unwrap();
        // Last finite percentile 99.9% (x = 1000): the axis runs to 99.99%.
        assert_eq!(a.x_max, 1e4);
        assert_eq!((a.unit, a.y_min), (Unit::Micros, 0.0));
        assert!(a.y_max >= 40.0 && a.y_max <= 50.0, "{}", a.y_max);
        assert_eq!(line_of(&s[0], &a).last(), Some(&(1e4, 40.0)));
        let s = [series(25_000.0)];
        let log = Plot {
            title: "t",
            series: &s,
            log_y: true,
        };
        let a = Axes::of(&log).unwrap();
        assert_eq!(a.unit, Unit::Millis);
        assert!(a.y_min <= 0.001 && a.y_max >= 25.0, "{a:?}");
        assert!(log_ticks(a.y_min, a.y_max).contains(&10.0));
    }
}
