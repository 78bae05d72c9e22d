//! Shared by the network tests: a small counter processor with its validator, an engine +
//! server harness on 127.0.0.1, and raw-socket helpers for speaking (bad) protocol by hand.
#![allow(dead_code)]

use keel::codec::CodecError;
use keel::net::frame::{self, ErrorCode, Frame};
use keel::net::{decodes_as, Client, NetConfig, NetStats, ReplyStatus, Server};
use keel::service::Invalid;
use keel::snapshot::{load_serde, save_serde, StateError};
use keel::{Config, Engine, FlushPolicy, Message, Outcome, Output, Processor, WaitStrategy};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Payload `u64`: adds it to the total; the response is the new total (`u64`).
pub const ADD: u16 = 1;
/// Payload `u32` n: responds with n bytes (to fill a slow reader's buffers).
pub const BIG: u16 = 2;
/// Payload `u64`: always rejected with reason 7.
pub const REJECT: u16 = 3;

/// Sums values. `delay` (not state) makes every apply sleep; `seen` counts every message the
/// business logic was handed (to prove invalid ones never reach it).
#[derive(Debug, Default, Clone)]
pub struct Counter {
    pub total: u64,
    pub applied: u64,
    pub delay: Duration,
    pub seen: Option<Arc<AtomicU64>>,
    /// Holds the business logic before it applies message number `at` until opened.
    pub pause: Option<Arc<Pause>>,
}

/// A point where the business logic waits (bounded) until the test opens it.
#[derive(Debug, Default)]
pub struct Pause {
    pub at: u64,
    reached: std::sync::atomic::AtomicBool,
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Pause {
    pub fn at(at: u64) -> Arc<Pause> {
        Arc::new(Pause {
            at,
            ..Pause::default()
        })
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Whether the business logic has come to the pause.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Acquire)
    }

    fn wait(&self) {
        self.reached.store(true, Ordering::Release);
        let open = self.open.lock().unwrap();
        let (open, _) = self
            .opened
            .wait_timeout_while(open, Duration::from_secs(20), |open| !*open)
            .unwrap();
        assert!(*open, "the pause was never opened");
    }
}

impl Processor for Counter {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        if let Some(seen) = &self.seen {
            seen.fetch_add(1, Ordering::Relaxed);
        }
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if let Some(pause) = self.pause.as_ref().filter(|p| p.at == self.applied + 1) {
            pause.wait();
        }
        let payload = message.payload;
        let ok = match (message.header.kind, message.header.version) {
            (ADD, 1) => payload.len() == 8,
            (BIG, 1) => payload.len() == 4,
            (REJECT, 1) => true,
            _ => false,
        };
        assert!(ok, "the validator lets only valid messages through");
        self.applied += 1;
        match message.header.kind {
            ADD => {
                self.total += u64::from_le_bytes(payload.try_into().unwrap());
                out.encode(&self.total).unwrap();
                Outcome::Accepted
            }
            BIG => {
                let n = u32::from_le_bytes(payload.try_into().unwrap()) as usize;
                out.write(&vec![0xAB; n]).unwrap();
                Outcome::Accepted
            }
            _ => Outcome::Rejected(7),
        }
    }

    fn state_hash(&self) -> u64 {
        self.total ^ self.applied.rotate_left(32)
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(&(self.total, self.applied), out)
    }

    fn load_state(&mut self, _schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        let (total, applied) = load_serde(bytes)?;
        (self.total, self.applied) = (total, applied);
        Ok(())
    }
}

/// The application's request check: kinds 1..=3, version 1, payloads that decode.
pub fn validate(kind: u16, version: u16, payload: &[u8]) -> Result<(), Invalid> {
    if !(ADD..=REJECT).contains(&kind) {
        return Err(Invalid::UnknownKind);
    }
    if version != 1 {
        return Err(Invalid::UnsupportedVersion);
    }
    match kind {
        BIG => decodes_as::<u32>(payload),
        _ => decodes_as::<u64>(payload),
    }
}

/// An engine config for tests: small, parked waits (no spinning on 2 shared cores).
pub fn engine_config(dir: &Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.ring_capacity = 1024;
    config.output_ring_capacity = 1024;
    config.segment_size_bytes = 4 << 20;
    config.wait = WaitStrategy::PARK;
    config.flush = FlushPolicy::None;
    config.snapshot_interval_messages = 0;
    config
}

/// A net config on an ephemeral loopback port.
pub fn net_config() -> NetConfig {
    {
        let mut net = NetConfig::default();
        net.listen_addr = "127.0.0.1:0".parse().unwrap();
        net
    }
}

/// An engine and its server. The server is declared first so that it is dropped (stopped)
/// before the engine if a test panics: the engine cannot drain while the server holds its
/// submitter.
pub struct Node {
    pub server: Server,
    pub engine: Engine<Counter>,
    pub addr: SocketAddr,
}

impl Node {
    pub fn start(config: Config, net: NetConfig, processor: Counter) -> Node {
        let mut engine = Engine::start(config, processor).expect("engine");
        let server = Server::start(net, &mut engine, validate).expect("server");
        let addr = server.local_addr();
        Node {
            server,
            engine,
            addr,
        }
    }

    /// Stops the server, then the engine.
    pub fn stop(self) -> (Counter, NetStats) {
        let stats = self.server.shutdown().expect("server stops cleanly");
        let state = self.engine.shutdown().expect("engine stops cleanly");
        (state, stats)
    }

    pub fn client(&self) -> Client {
        let client = Client::connect(self.addr, None).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
    }
}

/// Adds `value` in one round trip; returns the new total.
pub fn add(client: &mut Client, value: u64) -> u64 {
    let reply = client.request(ADD, 1, &value.to_le_bytes()).expect("add");
    assert_eq!(reply.status, ReplyStatus::Accepted);
    u64::from_le_bytes(reply.payload[..8].try_into().unwrap())
}

/// Waits (bounded) until `f` holds.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- raw protocol, for bad input ----

/// A plain socket to the server with a bounded read timeout.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A `HELLO` without a client id.
pub fn hello(protocol_version: u16, token: &[u8]) -> frame::Hello<'_> {
    frame::Hello {
        protocol_version,
        token,
        client_id: 0,
    }
}

pub fn send_hello(s: &mut TcpStream, version: u16, token: &[u8]) {
    let mut buf = [0u8; 512];
    let n = frame::encode_hello(&mut buf, &hello(version, token)).unwrap();
    s.write_all(&buf[..n]).unwrap();
}

/// Connects and handshakes by hand.
pub fn raw_session(addr: SocketAddr) -> TcpStream {
    let mut s = raw(addr);
    send_hello(&mut s, frame::PROTOCOL_VERSION, b"");
    let body = read_frame(&mut s).expect("welcome");
    assert!(
        matches!(frame::decode(&body), Ok(Frame::Welcome(_))),
        "{body:?}"
    );
    s
}

pub fn request_bytes(correlation_id: u64, kind: u16, version: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 64 + payload.len()];
    let r = frame::Request {
        correlation_id,
        kind,
        version,
        payload,
    };
    let n = frame::encode_request(&mut buf, &r).unwrap();
    buf.truncate(n);
    buf
}

/// Reads one frame's type + body; `None` at end of stream.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return None;
    }
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// Reads frames until an `ERROR`; returns its code, correlation id and whether it is fatal.
pub fn expect_error(s: &mut TcpStream) -> (ErrorCode, u64, bool) {
    loop {
        let body = read_frame(s).expect("an error frame before the end of the stream");
        if let Ok(Frame::Error(e)) = frame::decode(&body) {
            return (e.code, e.correlation_id, e.fatal);
        }
    }
}

/// After a fatal error the server closes: the stream ends (or is reset), within the timeout.
pub fn expect_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("expected the server to close the connection: {e}"),
        }
    }
}
