//! The harness's own logic (schedule, coordinated-omission accounting, `.hgrm` round trip,
//! knee, sweep parsing) and a short smoke run of every engine-level benchmark.

use keel::journal::FlushPolicy;
use keel::ring::WaitStrategy;
use keel::Typed;
use keel_bench::commands::CompareArgs;
use keel_bench::hgrm;
use keel_bench::latency::LatencyRecorder;
use keel_bench::output::{parse_sweep, Knee, LatencyRun};
use keel_bench::pipeline::{self, PipelineSnapshots, PipelineSpec, SnapshotMode};
use keel_bench::rig::BenchEngineArgs;
use keel_bench::schedule::{corrected_latency_ns, Schedule, Window};
use keel_services::bookstore::Bookstore;
use std::time::Duration;

#[test]
fn schedule_spaces_messages_evenly_and_counts_due() {
    let s = Schedule::new(1_000);
    assert_eq!(s.intended_ns(0), 0);
    assert_eq!(s.intended_ns(1), 1_000_000);
    assert_eq!(s.intended_ns(2_500), 2_500_000_000);
    assert_eq!(s.due_by(0), 1);
    assert_eq!(s.due_by(999_999), 1);
    assert_eq!(s.due_by(1_000_000), 2);
    // 3 per second does not divide 1e9: no drift, no rounding accumulation.
    let s = Schedule::new(3);
    assert_eq!(s.intended_ns(3), 1_000_000_000);
    assert_eq!(s.messages_in(Duration::from_secs(2)), 6);
    for i in 0..100 {
        assert_eq!(
            s.due_by(s.intended_ns(i)),
            i + 1,
            "message {i} is due at its time"
        );
    }
}

#[test]
fn warmup_window_skips_the_lead_in() {
    let s = Schedule::new(10_000);
    let w = Window::new(&s, Duration::from_millis(100), Duration::from_millis(500));
    assert_eq!(w.first_recorded, 1_000);
    assert_eq!(w.total, 6_000);
    assert_eq!(w.recorded(), 5_000);
    assert!(!w.records(999) && w.records(1_000));
    let none = Window::new(&s, Duration::ZERO, Duration::from_millis(1));
    assert_eq!((none.first_recorded, none.total), (0, 10));
}

/// A producer at 1000/s stalls 100 ms at message 100; the system answers 10 us after each
/// actual send. Measured from the intended time, the stall shows in the tail; measured from
/// the actual send (coordinated omission), it vanishes.
#[test]
fn coordinated_omission_is_charged_to_the_stalled_messages() {
    let s = Schedule::new(1_000);
    let stall_end = s.intended_ns(100) + 100_000_000;
    let (mut corrected, mut naive) = (LatencyRecorder::new(), LatencyRecorder::new());
    for i in 0..1_000 {
        let intended = s.intended_ns(i);
        let sent = if (100..200).contains(&i) {
            intended.max(stall_end)
        } else {
            intended
        };
        let received = sent + 10_000;
        corrected.record(corrected_latency_ns(intended, received));
        naive.record(received - sent);
    }
    let (c, n) = (corrected.summary(), naive.summary());
    assert!(c.p99_ns > 80_000_000, "corrected p99 {} ns", c.p99_ns);
    assert!(c.max_ns >= 100_000_000, "corrected max {} ns", c.max_ns);
    assert!(
        n.p99_ns < 20_000,
        "naive p99 {} ns hides the stall",
        n.p99_ns
    );
    assert_eq!(corrected_latency_ns(5, 3), 0, "never negative");
}

#[test]
fn hgrm_round_trip_keeps_percentiles_count_and_max() {
    let mut r = LatencyRecorder::new();
    for v in 1..=100_000u64 {
        r.record(v * 7);
    }
    let text = hgrm::write(r.histogram(), 1e3);
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    let parsed = hgrm::parse(&text).unwrap();
    assert_eq!(parsed.total_count, 100_000);
    let last = parsed.points.last().unwrap();
    assert_eq!(last.percentile, 1.0);
    assert_eq!(last.total_count, 100_000);
    assert!((parsed.max - r.histogram().max() as f64 / 1e3).abs() < 1e-3);
    assert!((parsed.mean - r.histogram().mean() / 1e3).abs() < 1e-3);
    for p in &parsed.points {
        let want = r.histogram().value_at_quantile(p.percentile) as f64 / 1e3;
        assert!(
            (p.value - want).abs() <= want * 0.002 + 1e-3,
            "{p:?} vs {want}"
        );
    }
    assert!(parsed
        .points
        .windows(2)
        .all(|w| w[0].percentile <= w[1].percentile));
    assert!(hgrm::parse("garbage\n").is_err());
}

fn run_at(rate: u64, p99_ns: u64) -> LatencyRun {
    let mut recorder = LatencyRecorder::new();
    recorder.record(p99_ns);
    LatencyRun {
        label: format!("rate-{rate}"),
        offered_per_sec: rate,
        achieved_per_sec: rate as f64,
        recorded: 1,
        latency: recorder.measured(),
        accepted: 1,
        rejected: 0,
        failed: 0,
        verified: None,
        recorder,
    }
}

#[test]
fn knee_is_the_first_rate_over_the_bound() {
    let runs = vec![
        run_at(100, 50_000),
        run_at(200, 90_000),
        run_at(300, 500_000),
    ];
    let k = Knee::find(&runs, 100.0);
    assert_eq!(
        (k.last_within_per_sec, k.first_over_per_sec),
        (Some(200), Some(300))
    );
    let k = Knee::find(&runs, 1_000.0);
    assert_eq!(
        (k.last_within_per_sec, k.first_over_per_sec),
        (Some(300), None)
    );
    assert_eq!(parse_sweep("100:300:100").unwrap(), vec![100, 200, 300]);
    assert!(parse_sweep("0:10:1").is_err() && parse_sweep("5:1:1").is_err());
    let line = Knee::find(&runs, 100.0).line();
    assert_eq!(
        line,
        "knee: p99 stayed within 100 us up to 200/s offered; over it from 300/s\n"
    );
    assert!(Knee::find(&runs, 10.0)
        .line()
        .contains("already at its first rate, 100/s"));
    assert!(Knee::find(&runs, 1e6).line().contains("none in this sweep"));
}

fn tiny_engine() -> BenchEngineArgs {
    BenchEngineArgs {
        flush: FlushPolicy::None,
        wait: WaitStrategy::Yield,
        ring_capacity: 1 << 12,
        segment_size_bytes: 4 << 20,
        ..BenchEngineArgs::default()
    }
}

#[test]
fn smoke_pipeline_open_and_closed_loop_verify_against_replay() {
    let mut spec = PipelineSpec {
        rate: 5_000,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        messages: 20_000,
        seed: 7,
        engine: tiny_engine(),
        quiet: true,
        snapshots: PipelineSnapshots::default(),
    };
    let open = pipeline::run::<Typed<Bookstore>>(&spec).unwrap();
    assert_eq!(open.recorded, 1_500);
    assert_eq!(open.accepted + open.rejected, 2_000);
    assert!(open.verified.is_some() && open.latency.unwrap().max_ns > 0);
    spec.rate = 0;
    let closed = pipeline::run::<Typed<Bookstore>>(&spec).unwrap();
    let v = closed.verified.unwrap();
    assert_eq!(v.journaled_messages, 20_000 + 1_000, "workload plus setup");
    assert!(closed.achieved_per_sec > 0.0);
    assert!(
        closed.latency.is_none(),
        "a closed-loop run measures no latency"
    );
}

#[test]
fn smoke_pipeline_with_live_and_replica_snapshots_verifies_against_replay() {
    for mode in [SnapshotMode::Live, SnapshotMode::Replica] {
        for rate in [5_000, 0] {
            let spec = PipelineSpec {
                rate,
                duration: Duration::from_millis(300),
                warmup: Duration::from_millis(100),
                messages: 20_000,
                seed: 7,
                engine: tiny_engine(),
                quiet: true,
                snapshots: PipelineSnapshots {
                    mode,
                    interval_messages: 500,
                },
            };
            let run = pipeline::run::<Typed<Bookstore>>(&spec).unwrap();
            assert!(run.verified.is_some(), "{mode:?} at {rate}/s");
        }
    }
}

#[test]
fn smoke_compare_tallies_match_the_reference() {
    let args = CompareArgs {
        app: keel_bench::AppName::Bookstore,
        messages: 20_000,
        rate: None,
        duration: 0.0,
        warmup: 0.0,
        seed: 3,
        json: true,
        save: Default::default(),
        engine: tiny_engine(),
    };
    assert!(args.open_loop().is_none(), "no --rate: closed loop");
    let report =
        keel_bench::compare::run::<Typed<Bookstore>>(&args.engine, args.messages, args.seed)
            .unwrap();
    assert_eq!(report.contenders.len(), 3);
    assert!(report.contenders.iter().all(|c| c.msgs_per_sec > 0.0));
}

fn keel(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "keel {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn smoke_cli_net_journal_recovery_and_out_dir() {
    let out = std::env::temp_dir().join(format!("keel-bench-test-out-{}", std::process::id()));
    let common = [
        "--flush",
        "none",
        "--wait",
        "yield",
        "--segment-size-bytes",
        "4194304",
    ];
    let mut net = vec![
        "bench",
        "net",
        "--rate",
        "2000",
        "--duration",
        "0.3",
        "--warmup",
        "0",
    ];
    net.extend([
        "--sweep",
        "1000:2000:1000",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    net.extend(common);
    let json: serde_json::Value = serde_json::from_str(&keel(&net)).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    assert!(json["knee"].is_object() && json["run_info"]["flush"] == "none");
    let text = std::fs::read_to_string(out.join("net-rate-1000.hgrm")).unwrap();
    assert_eq!(hgrm::parse(&text).unwrap().total_count, 300);
    assert!(std::fs::read_to_string(out.join("percentiles.svg"))
        .unwrap()
        .contains("<svg"));
    let _ = std::fs::remove_dir_all(&out);
    let j = keel(&[
        "bench",
        "journal",
        "--flush",
        "batch",
        "--batch",
        "1,64",
        "--messages",
        "2000",
        "--segment-size-bytes",
        "4194304",
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(j["cases"].as_array().unwrap().len(), 4);
    assert_eq!(j["run_info"]["flush"], "batch");
    let mut rec = vec!["bench", "recovery", "--messages", "20000", "--tail", "1000"];
    rec.extend(common);
    assert!(keel(&rec).contains("state hash (all paths)"));
    rec.push("--no-op");
    assert!(keel(&rec).contains("full replay msgs/s"));
}

#[test]
fn recovery_bench_refuses_a_directory_that_already_holds_a_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let args = ["bench", "recovery", "--messages", "2000", "--tail", "100"];
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .args(["--data-dir", dir, "--flush", "none", "--wait", "park"])
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let again = run();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already holds a journal"), "{stderr}");
}

/// `keel bench compare --rate`: the three pipelines on one fixed-rate schedule, each checked
/// against the reference; the report's structure, not its speed.
#[test]
fn smoke_compare_open_loop_reports_three_peers_on_one_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().to_str().unwrap();
    let out = keel(&[
        "bench",
        "compare",
        "--rate",
        "5000",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--flush",
        "none",
        "--wait",
        "yield",
        "--ring-capacity",
        "4096",
        "--segment-size-bytes",
        "4194304",
        "--json",
        "--out",
        saved,
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["mode"], "open-loop");
    for name in ["keel", "disruptor", "crossbeam"] {
        let text = std::fs::read_to_string(dir.path().join(format!("{name}.hgrm"))).unwrap();
        assert_eq!(hgrm::parse(&text).unwrap().total_count, 1500, "{name}");
    }
    assert!(dir.path().join("percentiles.png").exists());
    assert_eq!(json["offered_per_sec"], 5000);
    let contenders = json["contenders"].as_array().unwrap();
    assert_eq!(contenders.len(), 3, "keel, disruptor, crossbeam");
    assert!(contenders[0]["name"].as_str().unwrap().starts_with("keel"));
    assert_eq!(contenders[0]["keel_over_this"]["p99"], 1.0);
    for c in contenders {
        assert_eq!(c["offered_per_sec"], 5000, "{c}");
        assert_eq!(
            c["recorded"], 1500,
            "0.3 s at 5000/s, warm-up excluded: {c}"
        );
        assert!(c["achieved_per_sec"].as_f64().unwrap() > 0.0, "{c}");
        assert!(
            c["verified"].as_str().unwrap().contains("= reference"),
            "{c}"
        );
        let l = &c["latency"];
        let at = |k: &str| l[k].as_u64().unwrap();
        let ladder = [
            "p50_ns", "p90_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns",
        ];
        assert!(at("p50_ns") > 0, "{c}");
        assert!(
            ladder.windows(2).all(|w| at(w[0]) <= at(w[1])),
            "percentiles must not decrease: {l}"
        );
        assert_eq!(at("count"), 1500);
        for ratio in ["p50", "p99", "p999", "achieved"] {
            assert!(c["keel_over_this"][ratio].as_f64().unwrap() > 0.0, "{c}");
        }
    }
}
