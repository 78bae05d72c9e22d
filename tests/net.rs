//! The network layer end to end over 127.0.0.1: concurrent pipelined clients, back-pressure
//! from a slow business logic, a slow reader cut off, restart with reconnecting clients, the
//! token, the connection limit, and a round-trip latency figure.

mod net_support;

use keel::net::{Client, ClientError, ErrorCode, ReplyStatus};
use net_support::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Sends `n` requests keeping at most `window` in flight; checks every answer arrives once, in
/// order, with increasing sequences. Every 10th request is a REJECT. Returns the sum added.
fn pipeline(client: &mut Client, n: u64, window: u64) -> u64 {
    let (mut sent, mut got, mut last_sequence, mut sum) = (0u64, 0u64, 0u64, 0u64);
    while got < n {
        while sent < n && sent - got < window {
            sent += 1;
            let kind = if sent % 10 == 0 { REJECT } else { ADD };
            sum += if kind == ADD { sent } else { 0 };
            assert_eq!(client.queue(kind, 1, &sent.to_le_bytes()).unwrap(), sent);
        }
        let reply = client.recv().unwrap();
        got += 1;
        assert_eq!(reply.correlation_id, got, "answers in request order");
        assert!(
            reply.sequence > last_sequence,
            "sequences increase within a session"
        );
        last_sequence = reply.sequence;
        let expected = if got % 10 == 0 {
            ReplyStatus::Rejected(7)
        } else {
            ReplyStatus::Accepted
        };
        assert_eq!(reply.status, expected);
    }
    assert_eq!(client.in_flight(), 0);
    sum
}

#[test]
fn concurrent_pipelined_clients_get_every_answer_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine_config(dir.path()), net_config(), Counter::default());
    let (clients, per_client) = (4, 3_000u64);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let mut client = node.client();
            thread::spawn(move || pipeline(&mut client, per_client, 64))
        })
        .collect();
    let sum: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let (state, stats) = node.stop();
    assert_eq!(state.total, sum);
    assert_eq!(state.applied, clients * per_client);
    assert_eq!(stats.requests, clients * per_client);
    assert_eq!(stats.responses, clients * per_client);
    assert_eq!((stats.responses_dropped, stats.refused), (0, 0));
    assert_eq!(stats.handshakes, clients);
}

#[test]
fn back_pressure_from_a_slow_business_logic_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = {
        let mut config = engine_config(dir.path());
        config.ring_capacity = 16;
        config.output_ring_capacity = 16;
        config
    };
    let slow = Counter {
        delay: Duration::from_micros(100),
        ..Counter::default()
    };
    let node = Node::start(config, net_config(), slow);
    let (clients, per_client) = (3, 400u64);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let mut client = node.client();
            // Everything in flight at once: far more than the ring holds.
            thread::spawn(move || pipeline(&mut client, per_client, per_client))
        })
        .collect();
    let sum: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let (state, stats) = node.stop();
    assert_eq!((state.total, state.applied), (sum, clients * per_client));
    assert!(
        stats.input_full > 0,
        "the ring filled and reading paused: {stats:?}"
    );
    assert_eq!(stats.responses_dropped, 0);
}

/// The most a connection can hold unread in the kernel: the receiver's plus the sender's
/// largest socket buffers (Linux), plus margin.
fn unread_capacity_bytes() -> u64 {
    let max_of = |path: &str| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.split_whitespace()
            .last()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(8 << 20)
    };
    max_of("/proc/sys/net/ipv4/tcp_rmem") + max_of("/proc/sys/net/ipv4/tcp_wmem") + (1 << 20)
}

#[test]
fn a_slow_reader_is_disconnected_while_others_continue() {
    let dir = tempfile::tempdir().unwrap();
    let net = {
        let mut net = net_config();
        net.output_limit_bytes = 64 << 10;
        net
    };
    let node = Node::start(engine_config(dir.path()), net, Counter::default());
    let mut slow = node.client();
    // Answers of 4000 bytes, more than the socket buffers can ever hold plus the output limit.
    let n = unread_capacity_bytes() / 4_000 + 1_000;
    for _ in 0..n {
        // Once the server has cut the session off, sending fails: that is fine.
        if slow.queue(BIG, 1, &4_000u32.to_le_bytes()).is_err() {
            break;
        }
    }
    let _ = slow.flush();
    let mut good = node.client();
    let mut total = 0;
    for i in 1..=300 {
        total += i;
        assert_eq!(add(&mut good, i), total);
    }
    eventually("the slow reader to be cut off", || {
        node.server.stats().slow_consumers == 1
    });
    for i in 1..=100 {
        total += i;
        assert_eq!(
            add(&mut good, i),
            total,
            "others unaffected after the disconnect"
        );
    }
    // The slow reader finds what was sent before the cut, then the end of the session.
    let mut received = 0;
    let end = loop {
        match slow.recv() {
            Ok(_) => received += 1,
            Err(e) => break e,
        }
    };
    assert!(received < n, "{received}");
    assert!(
        matches!(
            end,
            ClientError::Server {
                code: ErrorCode::SLOW_CONSUMER,
                ..
            }
        ) | matches!(end, ClientError::Closed | ClientError::Io(_)),
        "{end:?}"
    );
    drop((slow, good));
    let (_, stats) = node.stop();
    assert!(stats.responses_dropped > 0);
}

/// Adds 1 per round trip, reconnecting (with retries) whenever the server goes away, until
/// `stop`. Returns how many adds were answered `Accepted`.
fn persistent_adder(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let mut accepted = 0;
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_mut() else {
            client = Client::connect(addr, None).ok();
            if client.is_none() {
                thread::sleep(Duration::from_millis(10));
            }
            continue;
        };
        match c.request(ADD, 1, &1u64.to_le_bytes()) {
            Ok(reply) => {
                assert_eq!(reply.status, ReplyStatus::Accepted);
                accepted += 1;
            }
            Err(e) => {
                let stopping = matches!(e.code(), Some(ErrorCode::SERVER_STOPPING));
                assert!(
                    stopping || matches!(e, ClientError::Closed | ClientError::Io(_)),
                    "{e:?}"
                );
                client = None;
            }
        }
    }
    accepted
}

#[test]
fn restart_on_the_same_data_keeps_state_and_clients_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine_config(dir.path()), net_config(), Counter::default());
    let addr = node.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let adders: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || persistent_adder(addr, stop))
        })
        .collect();
    eventually("some traffic", || node.server.stats().requests >= 200);
    let (first, _) = node.stop();
    assert!(first.total >= 200);

    let net = {
        let mut net = net_config();
        net.listen_addr = addr;
        net
    };
    let node = Node::start(engine_config(dir.path()), net, Counter::default());
    assert_eq!(
        node.engine.recovered_sequence(),
        first.applied,
        "journal replayed"
    );
    eventually("traffic after the restart", || {
        node.server.stats().requests >= 200
    });
    // Stop this time through a handle, as a Ctrl-C handler would.
    let handle = node.server.stop_handle();
    thread::spawn(move || handle.stop());
    let stats = node.server.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let state = node.engine.shutdown().unwrap();
    let accepted: u64 = adders.into_iter().map(|a| a.join().unwrap()).sum();
    // Every accepted add was applied exactly once across both runs, and nothing else was.
    assert_eq!(state.total, accepted);
    assert_eq!(state.applied, first.applied + stats.requests);
}

#[test]
fn a_token_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let net = {
        let mut net = net_config();
        net.token = Some(b"s3cret".to_vec());
        net
    };
    let node = Node::start(engine_config(dir.path()), net, Counter::default());
    for token in [
        None,
        Some(&b"wrong"[..]),
        Some(&b"s3cre"[..]),
        Some(&b"s3crett"[..]),
    ] {
        let refused = Client::connect(node.addr, token).unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::UNAUTHORIZED), "{token:?}");
    }
    let mut client = Client::connect(node.addr, Some(b"s3cret")).unwrap();
    assert_eq!(add(&mut client, 5), 5);
    let reply = client.request(REJECT, 1, &0u64.to_le_bytes()).unwrap();
    let response = reply.as_response(client.session_id()).unwrap();
    assert_eq!(response.header.status, keel::Status::Rejected);
    assert_eq!((response.header.reason, response.header.sequence), (7, 2));
    let (state, stats) = node.stop();
    assert_eq!((state.applied, stats.unauthorized), (2, 4));
}

#[test]
fn connections_beyond_the_limit_are_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let net = {
        let mut net = net_config();
        net.max_connections = 2;
        net
    };
    let node = Node::start(engine_config(dir.path()), net, Counter::default());
    let mut a = node.client();
    let b = node.client();
    let refused = Client::connect(node.addr, None).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::TOO_MANY_CONNECTIONS));
    assert_eq!(add(&mut a, 1), 1, "the admitted sessions keep working");
    b.close();
    eventually("the slot to be freed", || node.server.stats().active == 1);
    let mut c = node.client();
    assert_eq!(add(&mut c, 2), 3);
    drop((a, c));
    let (_, stats) = node.stop();
    assert_eq!(stats.rejected, 1);
}

#[test]
fn round_trip_latency_over_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine_config(dir.path()), net_config(), Counter::default());
    let mut client = node.client();
    let percentiles = |mut v: Vec<Duration>| {
        v.sort();
        let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
        (at(0.5), at(0.99))
    };
    for _ in 0..200 {
        add(&mut client, 1); // warm up
    }
    let requests: Vec<Duration> = (0..2_000)
        .map(|_| {
            let start = Instant::now();
            add(&mut client, 1);
            start.elapsed()
        })
        .collect();
    let pings: Vec<Duration> = (0..2_000).map(|_| client.ping().unwrap()).collect();
    let (r50, r99) = percentiles(requests);
    let (p50, p99) = percentiles(pings);
    eprintln!("loopback round trip through the engine (park waits): p50 {r50:?} p99 {r99:?}");
    eprintln!("loopback ping through the network thread only:       p50 {p50:?} p99 {p99:?}");
    assert!(r50 < Duration::from_millis(50), "{r50:?}");
    node.stop();
}

#[test]
fn a_reused_session_slot_never_receives_the_previous_sessions_answers() {
    let dir = tempfile::tempdir().unwrap();
    let net = {
        let mut net = net_config();
        net.max_connections = 1;
        net
    };
    let slow = Counter {
        delay: Duration::from_millis(2),
        ..Counter::default()
    };
    let node = Node::start(engine_config(dir.path()), net, slow);
    let mut first = node.client();
    let first_id = first.session_id();
    for _ in 0..50 {
        first.queue(ADD, 1, &1u64.to_le_bytes()).unwrap();
    }
    first.flush().unwrap();
    first.close(); // gone long before its 50 answers (100 ms of business logic) exist
    let mut second = loop {
        match Client::connect(node.addr, None) {
            Ok(client) => break client,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::TOO_MANY_CONNECTIONS)),
        }
        thread::sleep(Duration::from_millis(1));
    };
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Same slot (the only one), new id: the old session's answers cannot reach this one.
    assert_ne!(second.session_id(), first_id);
    // The first answer this session sees is its own, after all 50 of the previous session.
    let reply = second.request(ADD, 1, &1_000u64.to_le_bytes()).unwrap();
    assert_eq!((reply.correlation_id, reply.sequence), (1, 51));
    assert_eq!(reply.payload, 1_050u64.to_le_bytes());
    drop(second);
    let (_, stats) = node.stop();
    assert!(stats.responses_dropped > 0, "{stats:?}");
    assert_eq!(stats.responses + stats.responses_dropped, 51);
}

#[test]
fn a_split_client_sends_and_receives_on_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine_config(dir.path()), net_config(), Counter::default());
    let (mut sender, mut receiver) = node.client().split();
    let n = 5_000u64;
    let reader = thread::spawn(move || {
        let mut last = 0;
        for expected in 1..=n {
            let reply = receiver.recv().unwrap();
            assert_eq!(reply.correlation_id, expected);
            let total = u64::from_le_bytes(reply.payload.try_into().unwrap());
            assert_eq!(total, last + expected);
            last = total;
        }
        last
    });
    for i in 1..=n {
        sender.queue_with_id(i, ADD, 1, &i.to_le_bytes()).unwrap();
        if i % 100 == 0 {
            sender.flush().unwrap();
        }
    }
    sender.flush().unwrap();
    assert_eq!(reader.join().unwrap(), n * (n + 1) / 2);
    node.stop();
}

#[test]
fn apply_ahead_mode_serves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let config = {
        let mut config = engine_config(dir.path());
        config.mode = keel::ApplyMode::ApplyAhead;
        config
    };
    let node = Node::start(config, net_config(), Counter::default());
    let mut client = node.client();
    let sum = pipeline(&mut client, 2_000, 32);
    drop(client);
    let (state, _) = node.stop();
    assert_eq!(state.total, sum);
}

/// A journal that fails at one sequence.
struct FailingJournal {
    fail_at: u64,
}

impl keel::engine::JournalSink for FailingJournal {
    fn append(
        &mut self,
        record: &keel::journal::Record<'_>,
    ) -> Result<(), keel::journal::JournalError> {
        if record.sequence == self.fail_at {
            return Err(std::io::Error::other("injected journal failure").into());
        }
        Ok(())
    }
    fn end_batch(&mut self) -> Result<(), keel::journal::JournalError> {
        Ok(())
    }
    fn tick(&mut self) -> Result<(), keel::journal::JournalError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), keel::journal::JournalError> {
        Ok(())
    }
}

#[test]
fn when_the_engine_stops_the_server_tells_clients_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(dir.path());
    let journal = FailingJournal { fail_at: 20 };
    let mut engine = keel::Engine::start_with_sink(config, Counter::default(), journal, 0).unwrap();
    let server = keel::net::Server::start(net_config(), &mut engine, validate).unwrap();
    let mut client = Client::connect(server.local_addr(), None).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for i in 1..=100u64 {
        client.queue(ADD, 1, &i.to_le_bytes()).unwrap();
    }
    let mut answered = 0;
    let end = loop {
        match client.recv() {
            Ok(reply) => {
                assert_eq!(reply.status, ReplyStatus::Accepted);
                answered += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(
        answered < 20,
        "only journaled requests are answered: {answered}"
    );
    assert_eq!(end.code(), Some(ErrorCode::SERVER_STOPPING), "{end:?}");
    eventually("the network thread to end", || server.is_finished());
    server.wait().unwrap();
    let error = engine.shutdown().unwrap_err();
    assert!(error.to_string().contains("injected"), "{error}");
}

#[test]
fn session_ids_are_never_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for _run in 0..3 {
        let node = Node::start(engine_config(dir.path()), net_config(), Counter::default());
        for _ in 0..2 {
            let mut client = node.client();
            seen.push(client.session_id());
            add(&mut client, 1);
        }
        node.stop();
    }
    let mut reader = keel::journal::JournalReader::open(&dir.path().join("journal")).unwrap();
    let mut journaled = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        journaled.push(record.session_id);
    }
    // Each session (two per run, slot 0 reused) sent one message: six different ids.
    assert_eq!(journaled, seen);
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{seen:x?}");
}
