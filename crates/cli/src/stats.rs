//! `keel stats`: scrapes a running server's metrics endpoint (`keel serve --metrics-listen`)
//! and prints the figures as a table, or as one JSON object.

use clap::Args;
use prometheus_parse::{Scrape, Value};
use serde_json::{json, Value as Json};
use std::time::Duration;

/// Flags of `keel stats`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Example:\n  keel serve --metrics-listen 127.0.0.1:7701 &\n  \
                        keel stats --connect 127.0.0.1:7701"
)]
pub struct StatsArgs {
    /// The server's metrics address (its `--metrics-listen`).
    #[arg(long, default_value = "127.0.0.1:7701")]
    pub connect: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `keel stats`.
pub fn run_stats(args: &StatsArgs) -> Result<(), String> {
    let text = scrape(&args.connect)?;
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("{}: not a Prometheus exposition: {e}", args.connect))?;
    let figures = figures(&Figures(&scrape));
    let text = if args.json {
        serde_json::to_string_pretty(&figures).unwrap_or_default() + "\n"
    } else {
        table(&figures)
    };
    // A closed pipe (`keel stats | head`) ends the output, not the process with a panic.
    match std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

/// `GET http://ADDR/metrics`.
pub fn scrape(addr: &str) -> Result<String, String> {
    let url = format!("http://{addr}/metrics");
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut response = agent.get(&url).call().map_err(|e| {
        format!(
            "cannot read {url}: {e} (is `keel serve --metrics-listen {addr}` running? \
             ADDR is the metrics address, not the client port)"
        )
    })?;
    response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("cannot read {url}: {e}"))
}

/// Lookups in a parsed scrape.
struct Figures<'a>(&'a Scrape);

impl Figures<'_> {
    /// Whether a sample is of `name` (`keel_` + name; counters end in `_total`).
    fn is(sample: &prometheus_parse::Sample, name: &str) -> bool {
        let metric = sample.metric.strip_prefix("keel_").unwrap_or("");
        metric == name || metric.strip_suffix("_total") == Some(name)
    }

    fn value(&self, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        self.0
            .samples
            .iter()
            .filter(|s| Self::is(s, name))
            .find(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .and_then(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
                _ => None,
            })
    }

    fn int(&self, name: &str, label: Option<(&str, &str)>) -> Json {
        self.value(name, label)
            .map_or(Json::Null, |v| json!(v as u64))
    }

    fn by_label(&self, name: &str, key: &str) -> Json {
        let pairs = self
            .0
            .samples
            .iter()
            .filter(|s| Self::is(s, name))
            .filter_map(|s| match (&s.value, s.labels.get(key)) {
                (Value::Counter(v) | Value::Gauge(v), Some(l)) => {
                    Some((l.to_string(), json!(*v as u64)))
                }
                _ => None,
            });
        Json::Object(pairs.collect())
    }

    /// Count, mean and bucket-bound p50 / p99 / p99.9 of a histogram, values times `scale`.
    fn histogram(&self, name: &str, scale: f64) -> Json {
        let full = format!("keel_{name}");
        let Some(Value::Histogram(buckets)) = self
            .0
            .samples
            .iter()
            .find(|s| s.metric == full)
            .map(|s| &s.value)
        else {
            return Json::Null;
        };
        let count = self.value(&format!("{name}_count"), None).unwrap_or(0.0);
        let sum = self.value(&format!("{name}_sum"), None).unwrap_or(0.0);
        let quantile = |q: f64| {
            let rank = (q * count).ceil().max(1.0);
            buckets
                .iter()
                .find(|b| b.count >= rank)
                .map(|b| b.less_than * scale)
                .filter(|v| v.is_finite() && count > 0.0)
        };
        let mean = (count > 0.0).then(|| sum / count * scale);
        json!({
            "count": count as u64,
            "mean": mean,
            "p50": quantile(0.5),
            "p99": quantile(0.99),
            "p999": quantile(0.999),
        })
    }
}

/// Every figure, by section (times in microseconds).
fn figures(f: &Figures<'_>) -> Json {
    let us = 1e6;
    json!({
        "uptime_s": f.value("uptime_seconds", None).map(|v| v.round() as u64),
        "sequence": f.by_label("sequence", "stage"),
        "lag_messages": f.by_label("lag_messages", "stage"),
        "ring_slots": f.by_label("ring_slots", "ring"),
        "ring_fill_slots": f.by_label("ring_fill_slots", "stage"),
        "journal_batch_records": f.histogram("journal_batch_records", 1.0),
        "journal_sync_us": f.histogram("journal_sync_seconds", us),
        "segment_prepare_us": f.histogram("segment_prepare_seconds", us),
        "apply_us": f.histogram("apply_seconds", us),
        "rejected_by_reason": f.by_label("rejected", "reason"),
        "failed": f.int("failed", None),
        "snapshots": f.by_label("snapshots", "outcome"),
        "snapshot_sequence": f.int("snapshot_sequence", None),
        "snapshot_capture_us": f.value("snapshot_capture_seconds", None).map(|v| v * us),
        "snapshot_write_us": f.value("snapshot_write_seconds", None).map(|v| v * us),
        "sessions": f.int("sessions", None),
        "connections": f.by_label("connections", "outcome"),
        "requests": f.int("requests", None),
        "requests_refused": f.int("requests_refused", None),
        "responses": f.int("responses", None),
        "sessions_closed": f.by_label("sessions_closed", "reason"),
    })
}

/// The order the table shows the figures in: the pipeline's, then snapshots and the network.
const TABLE_ORDER: [&str; 21] = [
    "uptime_s",
    "sequence",
    "lag_messages",
    "ring_slots",
    "ring_fill_slots",
    "journal_batch_records",
    "journal_sync_us",
    "segment_prepare_us",
    "apply_us",
    "rejected_by_reason",
    "failed",
    "snapshots",
    "snapshot_sequence",
    "snapshot_capture_us",
    "snapshot_write_us",
    "sessions",
    "connections",
    "requests",
    "requests_refused",
    "responses",
    "sessions_closed",
];

/// The figures as aligned `name  value` lines.
fn table(figures: &Json) -> String {
    let mut out = String::new();
    for name in TABLE_ORDER {
        let value = &figures[name];
        let shown = match value {
            Json::Null => "-".to_string(),
            Json::Object(fields) if fields.is_empty() => "-".to_string(),
            Json::Object(fields) => fields
                .iter()
                .map(|(k, v)| format!("{k} {}", plain(v)))
                .collect::<Vec<_>>()
                .join("  "),
            other => plain(other),
        };
        out.push_str(&format!("{name:<24} {shown}\n"));
    }
    out
}

/// A number without a float's noise: integers as integers, others to one decimal.
fn plain(v: &Json) -> String {
    match v {
        Json::Null => "-".to_string(),
        Json::Number(n) if n.is_u64() => n.to_string(),
        Json::Number(n) => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}
