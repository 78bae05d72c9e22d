//! Bad input costs nothing but the offender's session: every case runs while a well-behaved
//! client keeps getting answers, and the business logic never sees an invalid message.

mod net_support;

use keel::net::frame::{self, ErrorCode};

/// Frame types as docs/PROTOCOL.md gives them: a client's ping, a server's pong.
const PING: u8 = 0x03;
const PONG: u8 = 0x83;
use keel::net::{Client, NetConfig, NetStats, ReplyStatus};
use net_support::*;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A well-behaved client adding 1 per round trip until stopped; returns its count. Every
/// answer must be right.
fn good_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut client = Client::connect(addr, None).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let reply = client.request(REJECT, 1, &0u64.to_le_bytes()).unwrap();
            assert_eq!(reply.status, ReplyStatus::Rejected(7));
            n += 1;
        }
        n
    })
}

struct Bench {
    node: Node,
    seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    good: thread::JoinHandle<u64>,
}

fn start(net: NetConfig) -> (Bench, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let processor = Counter {
        seen: Some(seen.clone()),
        ..Counter::default()
    };
    let node = Node::start(engine_config(dir.path()), net, processor);
    let stop = Arc::new(AtomicBool::new(false));
    let good = good_client(node.addr, stop.clone());
    (
        Bench {
            node,
            seen,
            stop,
            good,
        },
        dir,
    )
}

impl Bench {
    /// Stops the good client (it must have kept working) and the node; checks that the
    /// business logic saw exactly the valid messages.
    fn finish(self, valid_requests: u64) -> NetStats {
        thread::sleep(Duration::from_millis(20));
        self.stop.store(true, Ordering::Relaxed);
        let good = self.good.join().unwrap();
        assert!(good > 0);
        let (state, stats) = self.node.stop();
        assert_eq!(state.applied, good + valid_requests);
        assert_eq!(self.seen.load(Ordering::Relaxed), good + valid_requests);
        assert_eq!(stats.requests, good + valid_requests);
        stats
    }
}

/// Sends `bytes` on a fresh handshaken session (or a raw one) and expects a fatal `code`
/// followed by the end of the connection.
fn expect_fatal(addr: SocketAddr, handshake: bool, bytes: &[u8], code: ErrorCode) {
    let mut s = if handshake {
        raw_session(addr)
    } else {
        raw(addr)
    };
    s.write_all(bytes).unwrap();
    let (got, correlation, fatal) = expect_error(&mut s);
    assert_eq!((got, correlation, fatal), (code, 0, true), "sent {bytes:?}");
    expect_closed(&mut s);
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let (bench, _dir) = start(net_config());
    let addr = bench.node.addr;
    let limit = 13 + engine_config(std::path::Path::new(".")).max_message_bytes;
    let oversized = ((limit + 1) as u32).to_le_bytes();
    expect_fatal(addr, true, &oversized, ErrorCode::FRAME_TOO_LARGE);
    expect_fatal(addr, false, &oversized, ErrorCode::FRAME_TOO_LARGE);
    expect_fatal(addr, true, &[0, 0, 0, 0], ErrorCode::MALFORMED);
    expect_fatal(addr, true, &[1, 0, 0, 0, 0x7f], ErrorCode::MALFORMED);
    expect_fatal(addr, true, &[3, 0, 0, 0, PING, 1, 2], ErrorCode::MALFORMED);
    // A server-to-client frame type from a client.
    expect_fatal(
        addr,
        true,
        &[9, 0, 0, 0, PONG, 0, 0, 0, 0, 0, 0, 0, 0],
        ErrorCode::MALFORMED,
    );
    let mut hello = [0u8; 64];
    let n = frame::encode_hello(
        &mut hello,
        &net_support::hello(frame::PROTOCOL_VERSION, b""),
    )
    .unwrap();
    expect_fatal(addr, true, &hello[..n], ErrorCode::MALFORMED); // a second HELLO
    hello[5] = b'X';
    expect_fatal(addr, false, &hello[..n], ErrorCode::UNSUPPORTED_PROTOCOL); // bad magic
    let n = frame::encode_hello(&mut hello, &net_support::hello(99, b"")).unwrap();
    expect_fatal(addr, false, &hello[..n], ErrorCode::UNSUPPORTED_PROTOCOL);
    // Requests and pings before the handshake.
    let request = request_bytes(1, ADD, 1, &5u64.to_le_bytes());
    expect_fatal(addr, false, &request, ErrorCode::NOT_HANDSHAKEN);
    expect_fatal(
        addr,
        false,
        &[9, 0, 0, 0, PING, 0, 0, 0, 0, 0, 0, 0, 0],
        ErrorCode::NOT_HANDSHAKEN,
    );
    let stats = bench.finish(0);
    assert_eq!(stats.protocol_errors, 11);
}

#[test]
fn invalid_requests_are_refused_and_the_session_stays_open() {
    let (bench, _dir) = start(net_config());
    let mut client = Client::connect(bench.node.addr, None).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let cases: [(u16, u16, &[u8], ErrorCode); 6] = [
        (99, 1, &[0; 8], ErrorCode::UNKNOWN_KIND),
        (0, 1, &[0; 8], ErrorCode::UNKNOWN_KIND),
        // 0xFF02: the replication term record, journaled only by the cluster.
        (
            keel::engine::CONTROL_SNAPSHOT + 1,
            1,
            &[],
            ErrorCode::UNKNOWN_KIND,
        ),
        (ADD, 2, &[0; 8], ErrorCode::UNSUPPORTED_VERSION),
        (ADD, 1, &[1, 2, 3], ErrorCode::UNDECODABLE),
        (BIG, 1, &[0; 8], ErrorCode::UNDECODABLE),
    ];
    // Pipelined, interleaved with valid requests: each invalid one gets its own refusal.
    for (kind, version, payload, _) in cases {
        client.queue(kind, version, payload).unwrap();
        client.queue(ADD, 1, &1u64.to_le_bytes()).unwrap();
    }
    let mut refusals = Vec::new();
    let mut totals = Vec::new();
    for _ in 0..cases.len() * 2 {
        let reply = client.recv().unwrap();
        match reply.status {
            ReplyStatus::Refused(code) => refusals.push((reply.correlation_id, code)),
            ReplyStatus::Accepted => {
                totals.push(u64::from_le_bytes(reply.payload.try_into().unwrap()))
            }
            other => panic!("{other:?}"),
        }
    }
    let expected: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (2 * i as u64 + 1, c.3))
        .collect();
    assert_eq!(refusals, expected);
    assert_eq!(totals, (1..=cases.len() as u64).collect::<Vec<_>>());
    // Too large for the engine (but a legal frame): refused by the client library already.
    let big = vec![0u8; client.welcome().max_payload_bytes as usize + 1];
    assert!(client.send(ADD, 1, &big).is_err());
    assert_eq!(add(&mut client, 0), cases.len() as u64);
    let stats = bench.finish(cases.len() as u64 + 1);
    assert_eq!(stats.refused, cases.len() as u64);
}

#[test]
fn abrupt_disconnects_mid_frame_cost_nothing() {
    let (bench, _dir) = start(net_config());
    let addr = bench.node.addr;
    let request = request_bytes(1, ADD, 1, &5u64.to_le_bytes());
    for cut in [2, 5, request.len() - 1] {
        let mut s = raw_session(addr);
        s.write_all(&request[..cut]).unwrap();
        drop(s);
    }
    let mut s = raw(addr);
    s.write_all(&[20, 0]).unwrap(); // half a length prefix, before any HELLO
    drop(s);
    eventually("the four sessions to go", || {
        bench.node.server.stats().closed_mid_frame == 4
    });
    bench.finish(0);
}

#[test]
fn idle_slowloris_and_silent_connections_time_out() {
    let net = {
        let mut net = net_config();
        net.handshake_timeout = Duration::from_millis(300);
        net.idle_timeout = Some(Duration::from_millis(400));
        net.read_timeout = Duration::from_millis(300);
        // Long enough that the trickling client is still served (its bytes discarded) while
        // it reads its error, so the close is never a reset.
        net.close_linger = Duration::from_secs(1);
        net
    };
    let (bench, _dir) = start(net);
    let addr = bench.node.addr;
    let started = Instant::now();
    // Silent before the handshake.
    let mut silent = raw(addr);
    // Handshaken, then idle.
    let mut idle = raw_session(addr);
    // Slowloris: starts a frame and trickles it one byte at a time, too slowly.
    let mut slow = raw_session(addr);
    let request = request_bytes(1, ADD, 1, &5u64.to_le_bytes());
    for byte in &request[..8] {
        if slow.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(expect_error(&mut silent).0, ErrorCode::HANDSHAKE_TIMEOUT);
    assert_eq!(expect_error(&mut slow).0, ErrorCode::READ_TIMEOUT);
    assert_eq!(expect_error(&mut idle).0, ErrorCode::IDLE_TIMEOUT);
    for mut s in [silent, idle, slow] {
        expect_closed(&mut s);
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // A pinging client is not idle.
    let mut pinger = Client::connect(addr, None).unwrap();
    for _ in 0..8 {
        thread::sleep(Duration::from_millis(100));
        pinger.ping().unwrap();
    }
    let stats = bench.finish(0);
    assert_eq!(stats.timeouts, 3);
}

/// Sends `bytes` on a fresh connection and returns everything the server answers before
/// closing.
fn answer_to(addr: SocketAddr, bytes: &[u8]) -> String {
    use std::io::Read;
    let mut s = raw(addr);
    s.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn http_and_tls_clients_get_a_plain_answer_before_the_handshake_only() {
    let (bench, _dir) = start(net_config());
    let addr = bench.node.addr;
    let http = answer_to(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(http.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{http}");
    assert!(http.contains("keel's binary protocol"), "{http}");
    let tls = answer_to(
        addr,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
    );
    assert!(tls.starts_with("This is a keel server."), "{tls}");
    // After the handshake the same bytes are only an oversized frame of a keel client.
    expect_fatal(
        addr,
        true,
        b"GET / HTTP/1.1\r\n\r\n",
        ErrorCode::FRAME_TOO_LARGE,
    );
    let stats = bench.finish(0);
    assert_eq!(stats.foreign_protocol, 2);
    assert_eq!(stats.protocol_errors, 1);
}

#[test]
fn a_client_reaching_an_http_server_says_so() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut hello = [0u8; 64];
        let _ = s.read(&mut hello);
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let Err(e) = Client::connect(addr, None) else {
        panic!("an HTTP server is not a keel server");
    };
    server.join().unwrap();
    let text = e.to_string();
    assert!(text.contains("answered in HTTP"), "{text}");
    assert!(!text.contains("exceeds"), "{text}");
}
