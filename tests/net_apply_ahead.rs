//! Responses are released as soon as their messages are journaled, with no timer in the path:
//! round trips over loopback in apply-ahead and durable mode under every flush policy with the
//! network timer tick set far beyond any wait the test allows; the response receiver's wake
//! hook, set by an embedding host after the engine started; and a server that listens only
//! once the engine has recovered.
//!
//! Timings are asserted only against the tick, with a margin of at least three times: a reply
//! that waited for the tick would take 30 s; every one here must come far sooner.

mod net_support;

use keel::engine::WakeHookAlreadySet;
use keel::net::{Client, NetConfig, Server};
use keel::{ApplyMode, Config, Engine, FlushPolicy, Submission};
use net_support::*;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Far longer than the test may take: a reply that waits for it fails the test.
const TICK: Duration = Duration::from_secs(30);
const POLICIES: [FlushPolicy; 3] = [
    FlushPolicy::Batch,
    FlushPolicy::IntervalMs(5),
    FlushPolicy::None,
];

fn config(dir: &std::path::Path, mode: ApplyMode, flush: FlushPolicy) -> Config {
    let mut config = engine_config(dir);
    config.mode = mode;
    config.flush = flush;
    config
}

fn slow_tick_net() -> NetConfig {
    {
        let mut net = net_config();
        net.timer_tick = TICK;
        net
    }
}

/// A client whose reads give up well before the tick would have released a held reply.
fn client(node: &Node) -> Client {
    let client = Client::connect(node.addr, None).expect("connect");
    client.set_read_timeout(Some(TICK / 3)).unwrap();
    client
}

/// 20 sequential round trips, then 500 pipelined requests; all must come back long before the
/// tick. Returns the sum added.
fn round_trips_within_the_tick(mode: ApplyMode, flush: FlushPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        config(dir.path(), mode, flush),
        slow_tick_net(),
        Counter::default(),
    );
    let mut client = client(&node);
    let start = Instant::now();
    let mut total = 0;
    for i in 1..=20u64 {
        total += i;
        assert_eq!(add(&mut client, i), total, "{mode:?} {flush}");
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < TICK / 3,
        "{mode:?} {flush}: 20 round trips took {elapsed:?}, the tick is {TICK:?}"
    );
    for i in 1..=500u64 {
        client.queue(ADD, 1, &i.to_le_bytes()).unwrap();
        total += i;
    }
    let mut last = 0;
    for _ in 0..500 {
        let reply = client
            .recv()
            .expect("every pipelined reply, before the tick");
        last = u64::from_le_bytes(reply.payload[..8].try_into().unwrap());
    }
    assert_eq!(last, total, "{mode:?} {flush}");
    drop(client);
    let (state, stats) = node.stop();
    assert_eq!(state.total, total);
    assert_eq!(stats.responses, 520);
}

#[test]
fn apply_ahead_replies_never_wait_for_the_timer_tick() {
    for flush in POLICIES {
        round_trips_within_the_tick(ApplyMode::ApplyAhead, flush);
    }
}

#[test]
fn durable_replies_never_wait_for_the_timer_tick() {
    for flush in POLICIES {
        round_trips_within_the_tick(ApplyMode::Durable, flush);
    }
}

/// An embedding host starts the engine, then takes the responses and sets its hook (so the
/// hook comes after the engine's threads are running), and parks until the hook wakes it:
/// each park is as long as the tick, so a missing wake fails the time bound.
fn hook_wakes_a_parked_host(mode: ApplyMode, flush: FlushPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::start(config(dir.path(), mode, flush), Counter::default()).unwrap();
    let mut submitter = engine.take_submitter().unwrap();
    let mut responses = engine.take_responses().unwrap();
    let host = thread::current();
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    responses
        .set_wake_hook(Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            host.unpark();
        }))
        .unwrap();
    assert_eq!(
        responses.set_wake_hook(Arc::new(|| {})),
        Err(WakeHookAlreadySet),
        "a second hook is refused"
    );
    let start = Instant::now();
    for i in 1..=20u64 {
        let to = Submission {
            kind: ADD,
            version: 1,
            ..Submission::default()
        };
        let sequence = submitter.submit(to, &i.to_le_bytes()).unwrap();
        while responses.delivered_sequence() < sequence {
            responses.try_poll(|_| {});
            if responses.delivered_sequence() < sequence {
                thread::park_timeout(TICK);
                let elapsed = start.elapsed();
                assert!(
                    elapsed < TICK / 3,
                    "{mode:?} {flush}: no wake for sequence {sequence} after {elapsed:?}"
                );
            }
        }
    }
    assert!(calls.load(Ordering::Relaxed) >= 20, "{mode:?} {flush}");
    drop(submitter);
    responses.drain_until_closed();
    assert_eq!(engine.shutdown().unwrap().total, 210);
}

#[test]
fn the_receivers_hook_wakes_a_host_that_set_it_after_the_engine_started() {
    for mode in [ApplyMode::ApplyAhead, ApplyMode::Durable] {
        for flush in POLICIES {
            hook_wakes_a_parked_host(mode, flush);
        }
    }
}

/// A loopback address nobody listens on (bound, then released).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn nobody_can_connect_until_the_recovered_engine_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), ApplyMode::ApplyAhead, FlushPolicy::Batch);
    let mut engine = Engine::start(config.clone(), Counter::default()).unwrap();
    let server = Server::start(net_config(), &mut engine, validate).unwrap();
    let mut first = Client::connect(server.local_addr(), None).unwrap();
    add(&mut first, 5);
    drop(first);
    server.shutdown().unwrap();
    engine.shutdown().unwrap();

    // Restart: the engine recovers before anything listens on the address.
    let addr = free_addr();
    let mut engine = Engine::start(config, Counter::default()).unwrap();
    assert_eq!(engine.recovered_sequence(), 1);
    let refused = TcpStream::connect(addr).expect_err("nothing listens before Server::start");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let net = {
        let mut net = slow_tick_net();
        net.listen_addr = addr;
        net
    };
    let server = Server::start(net, &mut engine, validate).unwrap();
    assert_eq!(server.local_addr(), addr);
    let mut client = Client::connect(addr, None).expect("ready: the listener accepts");
    client.set_read_timeout(Some(TICK / 3)).unwrap();
    assert_eq!(add(&mut client, 2), 7, "served from the recovered state");
    drop(client);
    server.shutdown().unwrap();
    engine.shutdown().unwrap();
}

#[test]
fn a_server_refuses_what_it_cannot_serve_and_leaves_the_engine_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), ApplyMode::ApplyAhead, FlushPolicy::None);
    let mut engine = Engine::start(config, Counter::default()).unwrap();

    // The address is taken: nothing is taken from the engine.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let net = {
        let mut net = net_config();
        net.listen_addr = taken.local_addr().unwrap();
        net
    };
    Server::start(net, &mut engine, validate).expect_err("address in use");

    // A receiver that already has a hook: the server needs its own.
    let submitter = engine
        .take_submitter()
        .expect("kept after the failed start");
    let responses = engine
        .take_responses()
        .expect("kept after the failed start");
    responses.set_wake_hook(Arc::new(|| {})).unwrap();
    let error = Server::start_with(net_config(), submitter, responses, validate)
        .expect_err("the receiver's hook is taken");
    assert!(error.to_string().contains("wake hook"), "{error}");

    // Taken already: Server::start says to use start_with.
    let error = Server::start(net_config(), &mut engine, validate).expect_err("taken");
    assert!(error.to_string().contains("start_with"), "{error}");
    engine.shutdown().unwrap();
}

#[test]
fn a_server_on_the_hosts_listener_leaves_it_bound_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), ApplyMode::ApplyAhead, FlushPolicy::Batch);
    let mut engine = Engine::start(config, Counter::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let submitter = engine.take_submitter().unwrap();
    let responses = engine.take_responses().unwrap();
    let mut net = net_config();
    net.listen_addr = free_addr(); // not used: the server takes the given listener
    let server = Server::start_on(
        listener.try_clone().unwrap(),
        net,
        submitter,
        responses,
        validate,
    )
    .unwrap();
    assert_eq!(server.local_addr(), addr);
    let mut client = Client::connect(addr, None).unwrap();
    assert_eq!(add(&mut client, 3), 3);
    drop(client);
    server.shutdown().unwrap();
    // The host's clone still holds the address: a connection waits in its backlog.
    let waiting = TcpStream::connect(addr).expect("the host's listener is still bound");
    listener.set_nonblocking(false).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    assert_eq!(accepted.peer_addr().unwrap(), waiting.local_addr().unwrap());
    engine.shutdown().unwrap();
}
