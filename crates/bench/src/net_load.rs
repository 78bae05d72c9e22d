//! `keel bench net`: the open-loop load over TCP against `keel serve` (or an in-process
//! server on 127.0.0.1:0). Several connections share one schedule: message `i` goes on
//! connection `i % C` at its intended time, and latency counts from that time to the reply.

use super::latency::LatencyRecorder;
use super::output::{progress, LatencyRun};
use super::pipeline::submit_setup;
use super::rig::{verify, BenchEngineArgs, DataDir, Failure, Verified};
use super::schedule::{corrected_latency_ns, since_ns, wait_until, Schedule, Window};
use keel::engine::{Config, Engine};
use keel::net::{Client, ClientReceiver, ClientSender, NetConfig, ReplyStatus, Server};
use keel_services::App;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One net run at one rate.
#[derive(Debug, Clone)]
pub struct NetSpec {
    /// Server address.
    pub addr: SocketAddr,
    /// Connections.
    pub connections: u64,
    /// Offered rate, messages per second (all connections together).
    pub rate: u64,
    /// Measured duration.
    pub duration: Duration,
    /// Unrecorded lead-in.
    pub warmup: Duration,
    /// Workload seed.
    pub seed: u64,
    /// Handshake token.
    pub token: Option<Vec<u8>>,
    /// Busy-wait allowed between sends.
    pub spin: bool,
    /// Hide the progress bar.
    pub quiet: bool,
}

/// An engine behind a server on 127.0.0.1:0, for runs without `--connect`.
pub struct LocalServer<A: App> {
    engine: Engine<A>,
    server: Server,
    config: Config,
    _dir: DataDir,
}

impl<A: App> LocalServer<A> {
    /// Starts the engine and the network thread, and applies `A::setup(seed)`.
    pub fn start(engine_args: &BenchEngineArgs, seed: u64) -> Result<Self, Failure> {
        let dir = DataDir::new(engine_args.data_dir.as_deref(), "net")?;
        let config = engine_args.config(dir.path());
        let net = {
            let mut net = NetConfig::default();
            net.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
            net.output_limit_bytes = 64 << 20;
            net.idle_timeout = None;
            net
        };
        let mut engine = Engine::start(config.clone(), A::default())?;
        let mut submitter = engine.take_submitter().expect("fresh engine");
        let mut responses = engine.take_responses().expect("fresh engine");
        let last = submit_setup::<A>(&mut submitter, seed)?;
        while responses.delivered_sequence() < last {
            responses.poll(Some(Instant::now() + Duration::from_millis(1)), |_| {});
        }
        let server = Server::start_with(net, submitter, responses, A::validate)?;
        Ok(LocalServer {
            engine,
            server,
            config,
            _dir: dir,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops the server and the engine, then checks the state against a replay.
    pub fn finish(self) -> Result<Verified, Failure> {
        self.server.shutdown()?;
        let state = self.engine.shutdown()?;
        verify::<A>(&self.config, state.state_hash())
    }
}

/// Per-connection result.
#[derive(Debug, Default)]
struct Received {
    recorder: LatencyRecorder,
    accepted: u64,
    rejected: u64,
    failed: u64,
    last_ns: u64,
}

/// One open-loop run over `spec.connections` connections.
pub fn run<A: App>(spec: &NetSpec) -> Result<LatencyRun, Failure> {
    let schedule = Schedule::new(spec.rate);
    let window = Window::new(&schedule, spec.warmup, spec.duration);
    let answered = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for c in 0..spec.connections {
        let client = Client::connect(spec.addr, spec.token.as_deref())?;
        let (tx, rx) = client.split();
        let lane = Lane {
            c,
            n: spec.connections,
            schedule,
            window,
            start,
        };
        let (seed, spin) = (spec.seed, spec.spin);
        senders.push(std::thread::spawn(move || send::<A>(tx, lane, seed, spin)));
        let counter = answered.clone();
        receivers.push(std::thread::spawn(move || receive(rx, lane, &counter)));
    }
    let bar = progress(window.total, spec.quiet, "replies");
    while receivers.iter().any(|r| !r.is_finished()) {
        bar.set_position(answered.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
    for s in senders {
        s.join().map_err(|_| Failure::new("sender panicked"))??;
    }
    let mut all = Received::default();
    for r in receivers {
        let got = r.join().map_err(|_| Failure::new("receiver panicked"))??;
        all.recorder.merge(&got.recorder);
        all.accepted += got.accepted;
        all.rejected += got.rejected;
        all.failed += got.failed;
        all.last_ns = all.last_ns.max(got.last_ns);
    }
    Ok(to_run(spec.rate, window, schedule, all))
}

fn to_run(rate: u64, window: Window, schedule: Schedule, all: Received) -> LatencyRun {
    let first_ns = schedule.intended_ns(window.first_recorded);
    let span_s = all.last_ns.saturating_sub(first_ns).max(1) as f64 / 1e9;
    LatencyRun {
        label: format!("net-rate-{rate}"),
        offered_per_sec: rate,
        achieved_per_sec: window.recorded() as f64 / span_s,
        recorded: all.recorder.count(),
        latency: all.recorder.measured(),
        accepted: all.accepted,
        rejected: all.rejected,
        failed: all.failed,
        verified: None,
        recorder: all.recorder,
    }
}

/// Connection `c` of `n`: it carries messages `c, c + n, c + 2n, ...` of the schedule.
#[derive(Debug, Clone, Copy)]
struct Lane {
    c: u64,
    n: u64,
    schedule: Schedule,
    window: Window,
    start: Instant,
}

impl Lane {
    /// Messages this lane carries.
    fn count(&self) -> u64 {
        (self.window.total + self.n - 1 - self.c) / self.n
    }
}

fn send<A: App>(mut tx: ClientSender, lane: Lane, seed: u64, spin: bool) -> Result<(), Failure> {
    let mut i = lane.c;
    while i < lane.window.total {
        let due = lane
            .schedule
            .due_by(since_ns(lane.start))
            .min(lane.window.total);
        if i >= due {
            tx.flush()?;
            wait_until(lane.start, lane.schedule.intended_ns(i), spin);
            continue;
        }
        while i < due {
            let c = A::workload(seed, i);
            tx.queue_with_id(i, c.kind, c.version, &c.payload)?;
            i += lane.n;
        }
    }
    tx.flush()?;
    Ok(())
}

fn receive(mut rx: ClientReceiver, lane: Lane, counter: &AtomicU64) -> Result<Received, Failure> {
    let mut got = Received::default();
    let mut expect = lane.c;
    for _ in 0..lane.count() {
        let reply = rx.recv()?;
        let now = since_ns(lane.start);
        if reply.correlation_id != expect {
            return Err(Failure(format!(
                "WRONG RESULT: reply {} where {expect} was expected",
                reply.correlation_id
            )));
        }
        if lane.window.records(expect) {
            let intended = lane.schedule.intended_ns(expect);
            got.recorder.record(corrected_latency_ns(intended, now));
        }
        match reply.status {
            ReplyStatus::Accepted => got.accepted += 1,
            ReplyStatus::Rejected(_) => got.rejected += 1,
            ReplyStatus::Failed | ReplyStatus::Refused(_) => got.failed += 1,
        }
        got.last_ns = now;
        expect += lane.n;
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(got)
}
