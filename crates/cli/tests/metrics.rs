//! `keel serve --metrics-listen`: a real server process, driven by the keel client, scraped
//! over HTTP (`ureq`) and parsed as Prometheus text (`prometheus-parse`); then `keel stats`
//! reads the same endpoint.

mod serve_support;

use keel::net::{Client, ReplyStatus};
use keel_services::bookstore::{AddBook, Payload, PlaceOrder};
use prometheus_parse::{Sample, Scrape, Value};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const ORDERS: u64 = 130;
const STOCK: u64 = 5;

/// The metrics address from the serve banner ("metrics: http://ADDR/metrics"), waited for.
fn metrics_addr(served: &serve_support::Served) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = served.stderr.lock().unwrap().iter().find_map(|line| {
            let at = line.split("metrics: http://").nth(1)?;
            at.trim().strip_suffix("/metrics")?.parse().ok()
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(Instant::now() < deadline, "no metrics line in the banner");
        thread::sleep(Duration::from_millis(20));
    }
}

fn scrape(addr: SocketAddr) -> Scrape {
    let mut response = ureq::get(format!("http://{addr}/metrics")).call().unwrap();
    let content_type = response.headers().get("content-type").unwrap();
    assert!(content_type.to_str().unwrap().starts_with("text/plain"));
    let text = response.body_mut().read_to_string().unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn sample<'a>(scrape: &'a Scrape, name: &str, label: Option<(&str, &str)>) -> &'a Sample {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
}

fn number(scrape: &Scrape, name: &str, label: Option<(&str, &str)>) -> u64 {
    match sample(scrape, name, label).value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v as u64,
        ref other => panic!("{name} is not a number: {other:?}"),
    }
}

/// One book with `STOCK` copies, then `ORDERS` orders of one copy: `STOCK` accepted, the rest
/// rejected (out of stock). The client stays connected.
fn drive(addr: SocketAddr) -> Client {
    let mut client = Client::connect(addr, None).unwrap();
    let book = AddBook {
        book: 1,
        price_cents: 1_000,
        stock: STOCK,
        title: "Dune".into(),
    }
    .command();
    let reply = client
        .request(book.kind, book.version, &book.payload)
        .unwrap();
    assert_eq!(reply.status, ReplyStatus::Accepted);
    for customer in 0..ORDERS {
        let order = PlaceOrder {
            customer,
            book: 1,
            quantity: 1,
            seen_price_cents: 1_000,
        }
        .command();
        client
            .request(order.kind, order.version, &order.payload)
            .unwrap();
    }
    client
}

#[test]
fn metrics_reflect_the_requests_and_keel_stats_prints_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut command = serve_support::bookstore(tmp.path());
    command.args(["--metrics-listen", "127.0.0.1:0", "--stats-interval", "1s"]);
    let served = serve_support::spawn(command);
    let metrics = metrics_addr(&served);
    let client = drive(served.addr);
    let requests = ORDERS + 1;

    let scrape = scrape(metrics);
    assert_eq!(number(&scrape, "keel_requests_total", None), requests);
    assert_eq!(number(&scrape, "keel_responses_total", None), requests);
    assert_eq!(number(&scrape, "keel_sessions", None), 1);
    let applied = Some(("stage", "applied"));
    assert_eq!(number(&scrape, "keel_sequence", applied), requests);
    assert_eq!(
        number(&scrape, "keel_sequence", Some(("stage", "durable"))),
        requests
    );
    let out_of_stock = Some(("reason", "2"));
    let rejected = number(&scrape, "keel_rejected_total", out_of_stock);
    assert_eq!(rejected, ORDERS - STOCK);
    assert_eq!(number(&scrape, "keel_failed_total", None), 0);
    assert_eq!(
        number(&scrape, "keel_lag_messages", Some(("stage", "apply"))),
        0
    );
    assert_eq!(
        number(&scrape, "keel_ring_slots", Some(("ring", "input"))),
        1024
    );
    // Histograms: every batch journaled, synced at least once, and sequences 64 and 128
    // had their apply timed.
    let batches = number(&scrape, "keel_journal_batch_records_count", None);
    assert!((1..=requests).contains(&batches), "{batches} batches");
    let records = number(&scrape, "keel_journal_batch_records_sum", None);
    assert_eq!(records, requests, "every record in some batch");
    assert!(number(&scrape, "keel_journal_sync_seconds_count", None) >= 1);
    assert_eq!(number(&scrape, "keel_apply_seconds_count", None), 2);
    let Value::Histogram(buckets) = &sample(&scrape, "keel_apply_seconds", None).value else {
        panic!("keel_apply_seconds is a histogram");
    };
    assert_eq!(
        buckets.last().map(|b| b.count as u64),
        Some(2),
        "+Inf holds all"
    );

    let stats = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["stats", "--json", "--connect", &metrics.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(stats.status.success(), "{stats:?}");
    let json: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(json["requests"], requests);
    assert_eq!(json["sequence"]["applied"], requests);
    assert_eq!(json["rejected_by_reason"]["2"], rejected);
    assert_eq!(json["sessions"], 1);
    let table = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["stats", "--connect", &metrics.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains(&format!("requests                 {requests}")),
        "{table}"
    );

    drop(client);
    stop(served);
}

/// SIGTERM, and the server stops cleanly.
fn stop(mut served: serve_support::Served) {
    let pid = served.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = served.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn keel_stats_names_the_address_it_cannot_reach() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["stats", "--connect", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr.to_string()), "{err}");
    assert!(err.contains("--metrics-listen"), "{err}");
}
