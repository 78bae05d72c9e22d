//! Replication across processes: 3-node clusters of the built `keel serve --cluster` on
//! loopback. The leader killed with SIGKILL under exactly-once load (no acknowledged request
//! lost, none applied twice, every node in the same state); an old leader cut off from its
//! peers by proxies this test owns acknowledges nothing after its term ends; a follower
//! restarted from an empty data directory catches up, from the leader's journal or, when the
//! leader's retention deleted the segments it needs, through a snapshot transfer; a request
//! resent after a failover gets its original reply. Every wait is bounded in count and time; nothing asserts on speed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use keel::journal::JournalReader;
use keel::net::{Client, ReplyStatus};
use keel::Typed;
use keel_bench::failover::procs::{
    final_state, read_events, wait_following, wait_for_leader, EventKind, Procs, EVENTS_FILE,
};
use keel_bench::failover::{run, FailoverReport, FailoverSpec};
use keel_services::bookstore::{AddBook, BookInfo, Bookstore, Payload, PlaceOrder, QueryBook};

const WITHIN: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(20);

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keel"))
}

fn failover_run(root: &Path, failovers: u64) -> FailoverReport {
    let spec = FailoverSpec {
        exe: exe(),
        nodes: 3,
        failovers,
        rate: 500,
        clients: 2,
        seed: 11,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(500),
        kill_after_ms: (100, 800),
        out: Some(root.to_owned()),
        serve_args: vec!["--ack-policy".into(), "majority".into()],
    };
    run::<Typed<Bookstore>>(&spec).expect("the failover run completes")
}

fn assert_safe(report: &FailoverReport, failovers: u64) {
    let text = serde_json::to_string_pretty(report).unwrap();
    assert_eq!(report.failovers, failovers, "{text}");
    assert!(report.acknowledged > 0, "{text}");
    assert_eq!(report.lost, 0, "acknowledged requests lost: {text}");
    assert_eq!(report.duplicated, 0, "requests applied twice: {text}");
    assert!(report.hashes_equal, "nodes differ: {text}");
    assert_one_leader_per_term(report.data_dir.as_deref().expect("the run keeps its data"));
}

/// No term saw two nodes elected (each node writes its own `elected` events).
fn assert_one_leader_per_term(root: &Path) {
    let mut elected: std::collections::BTreeMap<u64, Vec<PathBuf>> = Default::default();
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        for event in read_events(&dir) {
            if event.kind == EventKind::Elected {
                elected.entry(event.term).or_default().push(dir.clone());
            }
        }
    }
    assert!(
        !elected.is_empty(),
        "no election seen under {}",
        root.display()
    );
    for (term, nodes) in &elected {
        assert_eq!(nodes.len(), 1, "term {term} elected {nodes:?}");
    }
}

#[test]
fn leader_killed_again_and_again_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let report = failover_run(tmp.path(), 3);
    assert_safe(&report, 3);
}

/// The soak: 50 failovers (run with `--ignored`; it prints its figures).
#[test]
#[ignore = "soak: 50 failovers, several minutes"]
fn soak_fifty_failovers() {
    let tmp = tempfile::tempdir().unwrap();
    let report = failover_run(tmp.path(), 50);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_safe(&report, 50);
}

fn book(book: u32, stock: u64) -> keel_services::Command {
    AddBook {
        book,
        price_cents: 1_000,
        stock,
        title: format!("book {book}"),
    }
    .command()
}

/// The stock of `book`, asked of the cluster (exactly-once client over every address).
fn stock_of(addrs: &[SocketAddr], book: u32) -> Option<u64> {
    let mut client = Client::connect_exactly_once(addrs, None, Client::random_client_id()).ok()?;
    let c = QueryBook { book }.command();
    let reply = client.request(c.kind, c.version, &c.payload).ok()?;
    if reply.status != ReplyStatus::Accepted {
        return None;
    }
    let info: BookInfo<'static> = keel::codec::decode(&reply.payload).ok()?;
    Some(info.stock)
}

fn three_nodes(root: &Path) -> Procs {
    let mut procs = Procs::plan(&exe(), root, 3, Vec::new()).unwrap();
    for index in 0..3 {
        procs.start(index).unwrap();
    }
    procs
}

/// Every node stopped; their (state hash, sequence) at shutdown.
fn stop_and_states(procs: &mut Procs) -> Vec<(u64, u64)> {
    procs.stop_all(STOP_GRACE);
    procs
        .nodes()
        .iter()
        .map(|n| final_state(&n.dir).expect("each node prints its state hash"))
        .collect()
}

#[test]
fn a_resent_request_gets_its_original_reply_after_a_failover() {
    let tmp = tempfile::tempdir().unwrap();
    let mut procs = three_nodes(tmp.path());
    let (leader, term) = wait_for_leader(&procs, 0, WITHIN).expect("a leader");
    let addrs = procs.client_addrs();
    let client_id = Client::random_client_id();
    let mut client = Client::connect_exactly_once(&addrs, None, client_id).unwrap();
    let add = book(0, 10);
    assert_eq!(
        client
            .request(add.kind, add.version, &add.payload)
            .unwrap()
            .status,
        ReplyStatus::Accepted
    );
    let order = PlaceOrder {
        customer: 1,
        book: 0,
        quantity: 1,
        seen_price_cents: 1_000,
    }
    .command();
    let request_id = client
        .queue(order.kind, order.version, &order.payload)
        .unwrap();
    let first = client.recv().unwrap().owned();
    assert_eq!(first.status, ReplyStatus::Accepted, "{first:?}");
    client.close();

    procs.kill(leader);
    let (_, new_term) = wait_for_leader(&procs, term, WITHIN).expect("a new leader");
    assert!(new_term > term);
    let mut again = Client::connect_exactly_once(&addrs, None, client_id).unwrap();
    again
        .queue_with_id(request_id, order.kind, order.version, &order.payload)
        .unwrap();
    let second = again.recv().unwrap().owned();
    assert_eq!(
        (second.status, second.kind, &second.payload),
        (first.status, first.kind, &first.payload),
        "the resend is answered with the original reply"
    );
    again.close();
    assert_eq!(stock_of(&addrs, 0), Some(9), "the order was applied once");
    procs.start(leader).unwrap();
    assert!(wait_following(&procs, leader, new_term, WITHIN));
    assert_eq!(stock_of(&addrs, 0), Some(9));
}

/// The last sequence in `dir`'s journal (0 when empty or unreadable).
fn journal_end(dir: &Path) -> u64 {
    let Ok(mut reader) = JournalReader::open(&dir.join("journal")) else {
        return 0;
    };
    let mut last = 0;
    while let Ok(Some(record)) = reader.next() {
        last = record.sequence;
    }
    last
}

/// Waits (bounded) until every node's journal ends at the same sequence, at least `at_least`.
fn wait_journals_equal(procs: &Procs, at_least: u64) -> bool {
    let deadline = Instant::now() + WITHIN;
    while Instant::now() < deadline {
        let ends: Vec<u64> = procs.nodes().iter().map(|n| journal_end(&n.dir)).collect();
        if ends.iter().all(|e| *e == ends[0] && *e >= at_least) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_follower_restarted_from_an_empty_disk_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut procs = three_nodes(tmp.path());
    let (leader, term) = wait_for_leader(&procs, 0, WITHIN).expect("a leader");
    let addrs = procs.client_addrs();
    let mut client =
        Client::connect_exactly_once(&addrs, None, Client::random_client_id()).unwrap();
    for b in 0..50 {
        let c = book(b, 100);
        client.request(c.kind, c.version, &c.payload).unwrap();
    }
    let follower = (leader + 1) % 3;
    procs.kill(follower);
    let dir = procs.nodes()[follower].dir.clone();
    std::fs::remove_dir_all(&dir).unwrap();
    for b in 50..80 {
        let c = book(b, 100);
        client.request(c.kind, c.version, &c.payload).unwrap();
    }
    procs.start(follower).unwrap();
    assert!(wait_following(&procs, follower, term, WITHIN));
    for b in 80..100 {
        let c = book(b, 100);
        client.request(c.kind, c.version, &c.payload).unwrap();
    }
    client.close();
    let leader_end = journal_end(&procs.nodes()[leader].dir);
    assert!(leader_end >= 100);
    assert!(
        wait_journals_equal(&procs, leader_end),
        "the emptied follower caught up"
    );
    thread::sleep(Duration::from_millis(500)); // the last commit reaches the followers
    let states = stop_and_states(&mut procs);
    assert!(
        states.iter().all(|s| *s == states[0]),
        "every node in the same state: {states:?}"
    );
    assert!(dir.join(EVENTS_FILE).exists());
}

/// First sequence of the oldest segment in `dir`'s journal (1 when none).
fn journal_start(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("journal"))
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let name = e.ok()?.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".seg")?.parse::<u64>().ok()
                })
                .min()
                .unwrap_or(1)
        })
        .unwrap_or(1)
}

/// Adds books `range` with long titles (about 330 journal bytes each), 50 requests in flight.
fn add_books(client: &mut Client, range: std::ops::Range<u32>) {
    let ids: Vec<u32> = range.collect();
    for batch in ids.chunks(50) {
        for b in batch {
            let c = AddBook {
                book: *b,
                price_cents: 1_000,
                stock: 100,
                title: format!("{b:0250}"),
            }
            .command();
            client.queue(c.kind, c.version, &c.payload).unwrap();
        }
        for _ in batch {
            assert_eq!(client.recv().unwrap().status, ReplyStatus::Accepted);
        }
    }
}

#[test]
fn a_follower_restarted_from_an_empty_disk_catches_up_through_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = [
        "--segment-size=262144",
        "--snapshot-interval-messages=500",
        "--snapshot-retain=1",
        "--journal-retention=delete",
    ];
    let extra = extra.iter().map(|a| (*a).to_owned()).collect();
    let mut procs = Procs::plan(&exe(), tmp.path(), 3, extra).unwrap();
    for index in 0..3 {
        procs.start(index).unwrap();
    }
    let (leader, term) = wait_for_leader(&procs, 0, WITHIN).expect("a leader");
    let addrs = procs.client_addrs();
    // Elected is not yet serving (promotion comes first): connect again, bounded.
    let deadline = Instant::now() + WITHIN;
    let mut client = loop {
        match Client::connect_exactly_once(&addrs, None, Client::random_client_id()) {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("no leader serves: {e}"),
        }
    };
    add_books(&mut client, 0..50);
    let follower = (leader + 1) % 3;
    procs.kill(follower);
    let dir = procs.nodes()[follower].dir.clone();
    std::fs::remove_dir_all(&dir).unwrap();
    let leader_dir = procs.nodes()[leader].dir.clone();
    let mut next = 50;
    let deadline = Instant::now() + WITHIN;
    while journal_start(&leader_dir) <= 100 {
        assert!(
            Instant::now() < deadline && next < 20_000,
            "the leader retires its start"
        );
        add_books(&mut client, next..next + 500);
        next += 500;
        thread::sleep(Duration::from_millis(100));
    }
    procs.start(follower).unwrap();
    assert!(wait_following(&procs, follower, term, WITHIN));
    add_books(&mut client, next..next + 20);
    client.close();
    let leader_end = journal_end(&leader_dir);
    assert!(
        wait_journals_equal(&procs, leader_end),
        "the emptied follower caught up"
    );
    assert!(
        journal_start(&dir) > 100,
        "its journal starts after the snapshot it installed"
    );
    thread::sleep(Duration::from_millis(500)); // the last commit reaches the followers
    let states = stop_and_states(&mut procs);
    assert!(
        states.iter().all(|s| *s == states[0]),
        "every node in the same state: {states:?}"
    );
}

/// A TCP proxy the test owns: forwards to `target` until cut (then drops every connection
/// and refuses new ones) and again once healed.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

/// Longest life of a proxy's accept loop.
const PROXY_LIFE: Duration = Duration::from_secs(600);

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            cut: Arc::default(),
            live: Arc::default(),
            stop: Arc::default(),
        };
        let (cut, live, stop) = (proxy.cut.clone(), proxy.live.clone(), proxy.stop.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + PROXY_LIFE;
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                let Ok((inbound, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                if cut.load(Ordering::Acquire) {
                    continue; // dropped: the peer sees the connection close
                }
                let _ = inbound.set_nonblocking(false);
                let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                else {
                    continue;
                };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let mut conns = live.lock().unwrap();
                conns.push(inbound.try_clone().unwrap());
                conns.push(outbound.try_clone().unwrap());
                pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                pipe(outbound, inbound);
            }
        });
        proxy
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut();
    }
}

/// Copies `from` into `to` until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}

fn is_timeout(e: &keel::net::ClientError) -> bool {
    matches!(e, keel::net::ClientError::Io(e)
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Proxies between every two nodes: `proxies[i][j]` is node i's way to node j.
struct Mesh {
    proxies: Vec<Vec<Option<Proxy>>>,
}

impl Mesh {
    /// Puts a proxy on every path of `procs`' nodes (before they start).
    fn between(procs: &mut Procs) -> Mesh {
        let real: Vec<SocketAddr> = procs.nodes().iter().map(|n| n.cluster).collect();
        let n = real.len();
        let proxies: Vec<Vec<Option<Proxy>>> = (0..n)
            .map(|i| {
                real.iter()
                    .enumerate()
                    .map(|(j, to)| (i != j).then(|| Proxy::start(*to)))
                    .collect()
            })
            .collect();
        for (i, row) in proxies.iter().enumerate() {
            let list: Vec<String> = row
                .iter()
                .zip(&real)
                .enumerate()
                .map(|(j, (proxy, addr))| match proxy {
                    Some(p) => format!("{}={}", j + 1, p.addr),
                    None => format!("{}={addr}", j + 1),
                })
                .collect();
            procs.set_cluster_list(i, list.join(","));
        }
        Mesh { proxies }
    }

    /// Cuts (or heals) every path to and from `node`.
    fn isolate(&self, node: usize, cut: bool) {
        for (i, row) in self.proxies.iter().enumerate() {
            for (j, proxy) in row.iter().enumerate() {
                match proxy {
                    Some(p) if i == node || j == node => {
                        if cut {
                            p.cut();
                        } else {
                            p.heal();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Reads answers on `client` for a while: none may acknowledge a request.
fn assert_no_acknowledgement(client: &mut Client) {
    for _ in 0..10 {
        match client.recv() {
            Ok(reply) => assert!(
                !matches!(
                    reply.status,
                    ReplyStatus::Accepted | ReplyStatus::Rejected(_)
                ),
                "an isolated old leader acknowledged a request: {reply:?}"
            ),
            Err(e) if is_timeout(&e) => {}
            Err(_) => break, // closed: no acknowledgement either
        }
    }
}

/// The serving leader and a plain connection to it, on which `first` was applied (accepted,
/// or rejected because an earlier attempt whose answer was lost applied it). A first
/// election can be followed at once by another (every node proposes the first membership),
/// so a leader that answers `NOT_LEADER` (or whose connection fails) is looked up again,
/// within [`WITHIN`].
fn connect_to_leader(procs: &Procs, first: &keel_services::Command) -> (usize, u64, Client) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let (leader, term) = wait_for_leader(procs, 0, WITHIN).expect("a leader");
        let attempt = Client::connect(procs.nodes()[leader].client, None).and_then(|mut c| {
            let status = c.request(first.kind, first.version, &first.payload)?.status;
            Ok((c, status))
        });
        match attempt {
            // Rejected by the business logic: an earlier attempt was applied (its answer lost
            // to the next election), and this leader serves.
            Ok((client, ReplyStatus::Accepted | ReplyStatus::Rejected(_))) => {
                return (leader, term, client)
            }
            _ if Instant::now() < deadline => {
                eprintln!("leader {leader} of term {term} did not take the request; looking again");
                thread::sleep(Duration::from_millis(50));
            }
            Ok((_, status)) => panic!("no serving leader took the first request: {status:?}"),
            Err(e) => panic!("no serving leader accepted a connection: {e}"),
        }
    }
}

#[test]
fn an_isolated_old_leader_acknowledges_nothing_after_its_term() {
    let tmp = tempfile::tempdir().unwrap();
    let mut procs = Procs::plan(&exe(), tmp.path(), 3, Vec::new()).unwrap();
    let mesh = Mesh::between(&mut procs);
    for index in 0..3 {
        procs.start(index).unwrap();
    }
    let (old, term, mut client) = connect_to_leader(&procs, &book(0, 10));

    // Every path to and from the old leader is cut; its clients still reach it.
    mesh.isolate(old, true);
    let late = book(1, 10);
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    client.send(late.kind, late.version, &late.payload).unwrap();
    let (_, new_term) = wait_for_leader(&procs, term, WITHIN).expect("the others elect");
    assert!(new_term > term);
    // Through the new term and a while after it, the old leader acknowledges nothing.
    assert_no_acknowledgement(&mut client);
    client.close();
    mesh.isolate(old, false);
    assert!(
        wait_following(&procs, old, new_term, WITHIN),
        "the old leader rejoins as a follower"
    );
    let addrs = procs.client_addrs();
    assert_eq!(
        stock_of(&addrs, 0),
        Some(10),
        "the acknowledged book is kept"
    );
    assert_eq!(
        stock_of(&addrs, 1),
        None,
        "the unacknowledged book is nowhere"
    );
    let end = journal_end(&procs.nodes()[(old + 1) % 3].dir);
    assert!(
        wait_journals_equal(&procs, end),
        "the old leader's suffix was replaced"
    );
    thread::sleep(Duration::from_millis(500));
    let states = stop_and_states(&mut procs);
    assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
}
