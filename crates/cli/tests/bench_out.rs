//! What `--out DIR` writes for each latency benchmark (`.hgrm`, `report.json`, SVG and PNG
//! plots), `keel bench plot` over saved runs, and tables that print no unmeasured figure.
//! Tiny runs, parking or yielding waits, nothing pinned; no timing is asserted.

mod serve_support;

use keel_bench::hgrm;
use std::path::Path;

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

fn keel(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "keel {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// Parses `dir/name` and checks it as the HdrHistogram plotter would read it: percentiles
/// and values never decrease, counts climb to the footer's total, the last line is 100% at
/// the footer's max.
fn check_hgrm(dir: &Path, name: &str, count: u64) -> hgrm::Hgrm {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    assert!(
        text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"),
        "{text}"
    );
    let h = hgrm::parse(&text).unwrap();
    assert_eq!(h.total_count, count, "{name}");
    for w in h.points.windows(2) {
        assert!(w[0].percentile < w[1].percentile, "{name}: {w:?}");
        assert!(w[0].value <= w[1].value, "{name}: {w:?}");
        assert!(w[0].total_count <= w[1].total_count, "{name}: {w:?}");
    }
    let last = h.points.last().unwrap();
    assert_eq!((last.percentile, last.total_count), (1.0, count));
    assert!(
        (last.value - h.max).abs() < 1e-3,
        "{name}: {last:?} max {}",
        h.max
    );
    assert!(h.mean > 0.0 && h.mean <= h.max);
    let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
    assert_eq!(footer.len(), 3, "{text}");
    assert!(footer[2].starts_with("#[Buckets ="), "{text}");
    h
}

/// Both plots exist and are what they claim: a PNG (magic, size) and an SVG with one legend
/// entry per series.
fn check_plots(dir: &Path, legends: &[&str]) {
    let png = std::fs::read(dir.join("percentiles.png")).unwrap();
    assert!(png.starts_with(PNG_MAGIC), "not a PNG");
    assert!(png.len() > 10_000, "a plot, not an empty image");
    let svg = std::fs::read_to_string(dir.join("percentiles.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // Each text element's content stands on a line of its own.
    let texts: Vec<&str> = svg.lines().map(str::trim).collect();
    for legend in legends {
        assert!(texts.contains(legend), "legend {legend:?} missing");
    }
    assert!(svg.matches("<polyline").count() >= legends.len());
    assert!(
        svg.matches("<circle").count() >= legends.len(),
        "each max marked"
    );
    for tick in ["0%", "90%", "99%", "99.9%"] {
        assert!(texts.contains(&tick), "tick {tick} missing");
    }
}

fn report_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// A short open-loop run: 1,000/s for 0.2 s, no warm-up.
const SHORT_OPEN_LOOP: [&str; 6] = ["--rate", "1000", "--duration", "0.2", "--warmup", "0"];

const ENGINE: [&str; 8] = [
    "--flush",
    "none",
    "--wait",
    "park",
    "--ring-capacity",
    "4096",
    "--segment-size-bytes",
    "4194304",
];

/// `keel bench pipeline --sweep … --out a`, checked.
fn save_pipeline_sweep(a: &Path) {
    let mut args = vec![
        "bench",
        "pipeline",
        "--sweep",
        "1000:2000:1000",
        "--duration",
        "0.2",
        "--warmup",
        "0",
        "--out",
        a.to_str().unwrap(),
    ];
    args.extend(ENGINE);
    let (table, stderr) = keel(&args);
    assert!(table.contains("knee: "), "{table}");
    assert!(
        stderr.contains("wrote ") && stderr.contains("percentiles.png"),
        "{stderr}"
    );
    check_hgrm(a, "rate-1000.hgrm", 200);
    check_hgrm(a, "rate-2000.hgrm", 400);
    check_plots(a, &["pipeline (1,000/s)", "pipeline (2,000/s)"]);
    let json = report_json(a);
    assert!(json["command"].as_str().unwrap().contains("--sweep"));
    assert_eq!(
        json["settings"]["rates_per_sec"],
        serde_json::json!([1000, 2000])
    );
    assert_eq!(json["hgrm"][0]["file"], "rate-1000.hgrm");
    assert_eq!(json["report"]["runs"][1]["latency"]["count"], 400);
    assert_eq!(json["report"]["run_info"]["flush"], "none");
    // Acknowledgements under `none` never wait for the disk: no probe of it.
    assert!(json["report"].get("disk").is_none(), "{json}");
    assert!(!table.contains("disk, same run"), "{table}");
}

/// Under a durable flush, `keel bench pipeline` measures the disk first and prints it under
/// the table and in the JSON, with the ideal group commit's ack beside the sync itself.
#[test]
fn pipeline_under_a_durable_flush_reports_the_disk_and_the_group_commit_floor() {
    let mut args = vec!["bench", "pipeline", "--json", "--flush", "batch"];
    args.extend(SHORT_OPEN_LOOP);
    args.extend(&ENGINE[2..]);
    let (json, _) = keel(&args);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let disk = &json["disk"];
    assert!(
        disk["fdatasync_4k"]["count"].as_u64().unwrap() > 0,
        "{json}"
    );
    let floor = &disk["group_commit_ack"];
    assert!(floor["count"].as_u64().unwrap() > 0, "{json}");
    assert!(floor["p50_ns"].as_u64().unwrap() <= floor["p99_ns"].as_u64().unwrap());
    assert!(disk["write_mb_per_sec"].as_f64().unwrap() > 0.0);
}

/// `keel bench pingpong --out b --log-y`, checked.
fn save_pingpong(b: &Path) {
    keel(&[
        "bench",
        "pingpong",
        "--wait",
        "yield",
        "--no-pin",
        "--iterations",
        "2000",
        "--warmup",
        "100",
        "--out",
        b.to_str().unwrap(),
        "--log-y",
    ]);
    for name in ["keel", "disruptor-crate", "crossbeam-arrayqueue"] {
        check_hgrm(b, &format!("{name}.hgrm"), 2000);
    }
    check_plots(b, &["keel (keel yield)", "disruptor-crate (yield_now)"]);
    let peers = report_json(b);
    let results = peers["report"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "keel and both peers");
    assert_eq!(results[0]["keel_over_this_p50"], 1.0);
    assert!(results[1]["keel_over_this_p999"].as_f64().unwrap() > 0.0);
}

#[test]
fn pipeline_and_pingpong_save_runs_and_plot_overlays_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    save_pipeline_sweep(&a);
    save_pingpong(&b);
    let (_, stderr) = keel(&[
        "bench",
        "plot",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        c.to_str().unwrap(),
        "--log-y",
    ]);
    assert!(stderr.contains("percentiles.svg"), "{stderr}");
    check_plots(
        &c,
        &[
            "a: pipeline (1,000/s)",
            "a: pipeline (2,000/s)",
            "b: keel (keel yield)",
            "b: crossbeam-arrayqueue (yield_now)",
        ],
    );
}

#[test]
fn closed_loop_prints_no_latency_and_journal_saves_ack_latency() {
    let tmp = tempfile::tempdir().unwrap();
    let closed = tmp.path().join("closed");
    let mut args = vec![
        "bench",
        "pipeline",
        "--rate",
        "0",
        "--messages",
        "20000",
        "--out",
        closed.to_str().unwrap(),
    ];
    args.extend(ENGINE);
    let (table, _) = keel(&args);
    let row = table
        .lines()
        .find(|l| l.starts_with("closed loop"))
        .unwrap();
    assert!(!row.contains("0.00"), "{row}");
    assert_eq!(
        row.split_whitespace().filter(|c| *c == "-").count(),
        6,
        "{row}"
    );
    let json = report_json(&closed);
    assert!(json["report"]["runs"][0]["latency"].is_null());
    assert!(json["hgrm"].as_array().unwrap().is_empty());
    assert!(
        !closed.join("percentiles.svg").exists(),
        "nothing measured, nothing plotted"
    );
    args.push("--json");
    let (stdout, _) = keel(&args);
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(printed["runs"][0]["latency"].is_null());

    let j = tmp.path().join("journal");
    keel(&[
        "bench",
        "journal",
        "--flush",
        "batch",
        "--wait",
        "park",
        "--payload",
        "64",
        "--batch",
        "1,16",
        "--messages",
        "600",
        "--segment-size-bytes",
        "4194304",
        "--out",
        j.to_str().unwrap(),
    ]);
    check_hgrm(&j, "ack-p64-b1.hgrm", 600);
    check_hgrm(&j, "ack-p64-b16.hgrm", 600 / 16 + 1);
    check_plots(&j, &["64 B, batch 1", "64 B, batch 16"]);
    assert_eq!(
        report_json(&j)["settings"]["batch"],
        serde_json::json!([1, 16])
    );
}

/// Against a remote server the client states what it knows (its machine, the address, the
/// load) under its own labels, and no engine setting it cannot know.
#[test]
fn net_connect_prints_the_client_side_only() {
    let data = tempfile::tempdir().unwrap();
    let mut served = serve_support::spawn(serve_support::bookstore(data.path()));
    let addr = served.addr.to_string();
    let out = data.path().join("out");
    let run = |json: bool| {
        let mut args = vec![
            "bench",
            "net",
            "--connect",
            &addr,
            "--connections",
            "1",
            "--wait",
            "park",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(SHORT_OPEN_LOOP);
        if json {
            args.push("--json");
        }
        keel(&args).0
    };
    let table = run(false);
    let json: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    let _ = served.child.kill();
    let _ = served.child.wait();
    assert!(table.contains("client: cpu: "), "{table}");
    assert!(
        table.contains(&format!("server: {addr} (remote")),
        "{table}"
    );
    for unknown in ["flush:", "segments:", "journal:", "pinning:"] {
        assert!(!table.contains(unknown), "{unknown} in {table}");
    }
    assert!(json["run_info"].is_null());
    assert_eq!(json["client"]["server"], addr.as_str());
    assert_eq!(json["client"]["connections"], 1);
    check_hgrm(&out, "net-rate-1000.hgrm", 200);
    assert_eq!(report_json(&out)["settings"]["server"], addr.as_str());
}
