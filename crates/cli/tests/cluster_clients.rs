//! A 3-node cluster of the built `keel serve --cluster` on loopback, from the client's side:
//! every node listens on its client address; a follower answers `NOT_LEADER` naming the
//! leader's client address; an exactly-once client given a follower's address first reaches
//! the leader; `--metrics-listen` shows the cluster's gauges on the leader and on a follower.
//! Every wait is bounded in count and time; nothing asserts on speed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use keel::net::{Client, ErrorCode, ReplyStatus};
use keel_bench::failover::procs::{wait_for_leader, Procs, LOG_FILE};
use keel_services::bookstore::{AddBook, Payload};
use prometheus_parse::{Scrape, Value};

const WITHIN: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(20);

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keel"))
}

fn book(book: u32) -> keel_services::Command {
    AddBook {
        book,
        price_cents: 1_000,
        stock: 5,
        title: format!("book {book}"),
    }
    .command()
}

fn three_nodes(root: &Path, extra: &[&str]) -> Procs {
    let extra = extra.iter().map(|s| (*s).to_owned()).collect();
    let mut procs = Procs::plan(&exe(), root, 3, extra).unwrap();
    for index in 0..3 {
        procs.start(index).unwrap();
    }
    procs
}

/// A follower's answer to one request on a plain connection: the `NOT_LEADER` text, or
/// `None` if it answered something else (it leads after all, say).
fn refusal_from(addr: SocketAddr) -> Option<String> {
    let mut client = Client::connect(addr, None).ok()?;
    client.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let c = book(99);
    let reply = client.request(c.kind, c.version, &c.payload).ok()?;
    (reply.status == ReplyStatus::Refused(ErrorCode::NOT_LEADER))
        .then(|| String::from_utf8_lossy(&reply.payload).into_owned())
}

/// The leader (index, term) once a follower names it: elections can follow one another at
/// first, so this looks again until a follower's redirect and the events agree (bounded).
fn leader_named_by_a_follower(procs: &Procs) -> (usize, u64, usize) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let (leader, term) = wait_for_leader(procs, 0, WITHIN).expect("a leader");
        let follower = (leader + 1) % 3;
        let expected = format!("not the leader; leader={}", procs.nodes()[leader].client);
        let text = refusal_from(procs.nodes()[follower].client);
        if text.as_deref() == Some(expected.as_str()) {
            return (leader, term, follower);
        }
        assert!(
            Instant::now() < deadline,
            "follower {follower} never named leader {leader}: {text:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_follower_redirects_and_a_client_given_it_first_reaches_the_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let mut procs = three_nodes(tmp.path(), &[]);
    let (leader, _, follower) = leader_named_by_a_follower(&procs);
    let other = 3 - leader - follower;
    let nodes = procs.nodes();
    // The followers first: the client must not need to try its way to the leader.
    let addrs = [
        nodes[follower].client,
        nodes[other].client,
        nodes[leader].client,
    ];
    let mut client = Client::connect_exactly_once(&addrs, None, Client::random_client_id())
        .expect("a follower answers the handshake");
    for id in 0..10 {
        let c = book(id);
        let reply = client.request(c.kind, c.version, &c.payload).unwrap();
        assert_eq!(reply.status, ReplyStatus::Accepted, "book {id}");
    }
    client.close();
    // The other follower redirects too, and a follower's connection stays usable.
    let mut plain = Client::connect(nodes[other].client, None).unwrap();
    for _ in 0..3 {
        let c = book(50);
        let reply = plain.request(c.kind, c.version, &c.payload).unwrap();
        assert_eq!(reply.status, ReplyStatus::Refused(ErrorCode::NOT_LEADER));
        let text = String::from_utf8_lossy(&reply.payload).into_owned();
        assert!(text.ends_with(&nodes[leader].client.to_string()), "{text}");
    }
    plain.close();
    procs.stop_all(STOP_GRACE);
}

/// The metrics address from a node's log ("metrics: http://ADDR/metrics"), waited for.
fn metrics_addr(dir: &Path) -> SocketAddr {
    let deadline = Instant::now() + WITHIN;
    loop {
        let text = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
        let found = text.lines().find_map(|line| {
            let at = line.split("metrics: http://").nth(1)?;
            at.trim().strip_suffix("/metrics")?.parse().ok()
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics line in {}",
            dir.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn scrape(addr: SocketAddr) -> Scrape {
    let mut response = ureq::get(format!("http://{addr}/metrics")).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(scrape: &Scrape, name: &str, label: Option<(&str, &str)>) -> Option<u64> {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))?;
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v as u64),
        _ => None,
    }
}

/// Scrapes `addr` until `check` holds (bounded); returns the last scrape.
fn scrape_until(addr: SocketAddr, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WITHIN;
    loop {
        let s = scrape(addr);
        if check(&s) || Instant::now() >= deadline {
            return s;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn committed(s: &Scrape) -> u64 {
    value(s, "keel_cluster_commit_sequence", None).unwrap_or(0)
}

fn role(s: &Scrape, r: &str) -> Option<u64> {
    value(s, "keel_cluster_role", Some(("role", r)))
}

fn position(s: &Scrape, p: &str) -> Option<u64> {
    value(s, "keel_cluster_node_sequence", Some(("position", p)))
}

/// What one node's scrape says: it has role `is` (and not `is_not`), the term, the leader.
fn assert_node_view(s: &Scrape, (is, is_not): (&str, &str), term: u64, leader_id: u64) {
    assert_eq!(role(s, is), Some(1));
    assert_eq!(role(s, is_not), Some(0));
    assert_eq!(value(s, "keel_cluster_term", None), Some(term));
    assert_eq!(value(s, "keel_cluster_leader_id", None), Some(leader_id));
}

fn per_follower(s: &Scrape, name: &str, id: u64) -> Option<u64> {
    value(s, name, Some(("node", &id.to_string())))
}

/// Book ids `0..5` through an exactly-once client given `addrs`: with the term record, the
/// commit reaches at least 6.
fn five_books(addrs: &[SocketAddr]) {
    let mut client = Client::connect_exactly_once(addrs, None, Client::random_client_id()).unwrap();
    for id in 0..5 {
        let c = book(id);
        let reply = client.request(c.kind, c.version, &c.payload).unwrap();
        assert_eq!(reply.status, ReplyStatus::Accepted);
    }
    client.close();
}

/// The leader's scrape: its role, term, commit, positions, and each follower listed.
fn check_leader(procs: &Procs, leader: usize, follower: usize, term: u64) {
    let nodes = procs.nodes();
    let matched = "keel_cluster_follower_matched_sequence";
    let lagging = "keel_cluster_follower_lag_messages";
    let s = scrape_until(metrics_addr(&nodes[leader].dir), |s| {
        committed(s) >= 6 && per_follower(s, matched, nodes[follower].id) >= Some(committed(s))
    });
    assert_node_view(&s, ("leader", "follower"), term, nodes[leader].id);
    assert!(committed(&s) >= 6, "{:?}", committed(&s));
    for (index, node) in nodes.iter().enumerate() {
        let listed = (
            per_follower(&s, matched, node.id),
            per_follower(&s, lagging, node.id),
        );
        if index == leader {
            assert_eq!(listed, (None, None), "the leader is not its own follower");
        } else {
            assert!(
                listed.0.is_some() && listed.1.is_some(),
                "follower {} listed",
                node.id
            );
        }
    }
    assert!(position(&s, "durable").unwrap() >= 6);
    assert!(
        position(&s, "fed").unwrap() >= 6,
        "the server's submissions count"
    );
    assert!(value(&s, "keel_sequence", Some(("stage", "applied"))).is_some());
}

/// A follower's scrape: its role, the leader, the commit it was told, its own positions.
fn check_follower(procs: &Procs, leader: usize, follower: usize, term: u64) {
    let nodes = procs.nodes();
    let s = scrape_until(metrics_addr(&nodes[follower].dir), |s| {
        committed(s) >= 6 && position(s, "applied").unwrap_or(0) >= 6
    });
    assert_node_view(&s, ("follower", "leader"), term, nodes[leader].id);
    assert!(committed(&s) >= 6);
    assert!(position(&s, "durable").unwrap() >= 6);
    assert!(position(&s, "applied").unwrap() >= 6);
    let matched = value(&s, "keel_cluster_follower_matched_sequence", None);
    assert_eq!(matched, None, "a follower lists no followers");
}

#[test]
fn metrics_show_the_cluster_on_the_leader_and_on_a_follower() {
    let tmp = tempfile::tempdir().unwrap();
    let mut procs = three_nodes(tmp.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let (leader, _, follower) = leader_named_by_a_follower(&procs);
    let nodes = procs.nodes();
    five_books(&[nodes[follower].client, nodes[leader].client]);
    // A first election can be followed at once by another: check the gauges of a leadership
    // that a follower names and whose leader's gauges say the same term (bounded tries).
    let mut tries = 0;
    let (leader, term, follower) = loop {
        let (leader, term, follower) = leader_named_by_a_follower(&procs);
        let s = scrape_until(metrics_addr(&nodes[leader].dir), |s| committed(s) >= 6);
        tries += 1;
        if value(&s, "keel_cluster_term", None) == Some(term) || tries == 20 {
            break (leader, term, follower);
        }
        thread::sleep(Duration::from_millis(100));
    };
    check_leader(&procs, leader, follower, term);
    check_follower(&procs, leader, follower, term);
    procs.stop_all(STOP_GRACE);
}

#[test]
fn a_snapshot_replica_is_refused_in_a_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(exe())
        .args(["serve", "--node-id", "1", "--cluster", "1=127.0.0.1:1"])
        .arg("--snapshot-replica")
        .arg("--data-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--snapshot-replica is not available with --cluster"),
        "{stderr}"
    );
}
