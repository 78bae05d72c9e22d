//! The load of a failover run: exactly-once clients, each with its own client id, across every
//! client address of the cluster. Open loop at a rate (latency from the intended send time),
//! or closed loop with a window of requests in flight. Every answered request is remembered
//! as (client id, request id) for the loss check.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::net::{Client, ClientError, ReplyStatus};
use keel_services::App;

use crate::latency::LatencyRecorder;
use crate::schedule::{since_ns, Schedule};

/// How long a receive waits before the sender looks at the schedule again.
const RECV_POLL: Duration = Duration::from_millis(1);
/// Requests in flight per client in closed loop.
const CLOSED_WINDOW: usize = 64;
/// Reconnection attempts of a client whose exactly-once reconnects all failed.
const MAX_REOPEN: u32 = 20;
/// Longest wait for the last answers once the load stops.
const DRAIN: Duration = Duration::from_secs(20);

/// What one client saw.
#[derive(Debug, Default)]
pub struct ClientResult {
    /// Its client id.
    pub client_id: u64,
    /// Request ids answered (applied: accepted, rejected or failed by the business logic).
    pub answered: Vec<u64>,
    /// Requests refused before the engine (e.g. `ALREADY_ANSWERED`).
    pub refused: u64,
    /// Requests sent and never answered (the run ended first).
    pub unanswered: u64,
    /// Latency of every answer, from its intended send time.
    pub latency: LatencyRecorder,
    /// Latency recorded after the warm-up only.
    pub measured: LatencyRecorder,
    /// Answers after the warm-up.
    pub measured_answers: u64,
    /// Errors the client reported (each followed by a reconnection).
    pub errors: Vec<String>,
}

/// One client's part of the load.
#[derive(Debug, Clone)]
pub struct Lane {
    /// Every client address.
    pub addrs: Vec<SocketAddr>,
    /// This client's index and the number of clients.
    pub index: u64,
    /// Clients.
    pub clients: u64,
    /// Total rate, per second (0: closed loop).
    pub rate: u64,
    /// Workload seed.
    pub seed: u64,
    /// Answers before this instant are not measured.
    pub measure_from: Instant,
}

/// Connects (exactly-once, a fresh random client id) and sends `A::setup` first.
pub fn setup<A: App>(addrs: &[SocketAddr], seed: u64) -> Result<(), ClientError> {
    let mut client = Client::connect_exactly_once(addrs, None, Client::random_client_id())?;
    for command in A::setup(seed) {
        client.request(command.kind, command.version, &command.payload)?;
    }
    Ok(())
}

/// Runs one client until `stop`, then waits (bounded) for its last answers.
pub fn drive<A: App>(lane: &Lane, stop: &AtomicBool) -> ClientResult {
    let client_id = Client::random_client_id();
    let mut result = ClientResult {
        client_id,
        ..ClientResult::default()
    };
    let Some(mut client) = open(&lane.addrs, client_id, &mut result) else {
        return result;
    };
    let schedule = Schedule::new(lane.rate.max(1) / lane.clients.max(1));
    let start = Instant::now();
    // Requests sent, oldest first: (request id, intended send time after `start`).
    let mut pending: VecDeque<(u64, u64)> = VecDeque::new();
    let mut sent = 0u64;
    let mut session = client.session_id();
    let mut drain_until: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if stopping && drain_until.is_none() {
            drain_until = Some(Instant::now() + DRAIN);
        }
        if drain_until.is_some_and(|d| pending.is_empty() || Instant::now() >= d) {
            break;
        }
        if !stopping {
            let due = if lane.rate == 0 {
                sent + CLOSED_WINDOW.saturating_sub(pending.len()) as u64
            } else {
                schedule.due_by(since_ns(start))
            };
            while sent < due {
                let i = sent * lane.clients + lane.index;
                let c = A::workload(lane.seed, i);
                let intended = if lane.rate == 0 {
                    since_ns(start)
                } else {
                    schedule.intended_ns(sent)
                };
                match client.queue(c.kind, c.version, &c.payload) {
                    Ok(id) => pending.push_back((id, intended)),
                    Err(e) => {
                        result.errors.push(e.to_string());
                        pending.clear();
                        match open(&lane.addrs, client_id, &mut result) {
                            Some(fresh) => client = fresh,
                            None => return result,
                        }
                    }
                }
                sent += 1;
            }
        }
        if let Err(e) = client.flush() {
            result.errors.push(e.to_string());
        }
        if session != client.session_id() {
            session = client.session_id();
            let _ = client.set_read_timeout(Some(RECV_POLL));
        }
        receive(&mut client, &mut pending, start, lane, &mut result);
    }
    result.unanswered = pending.len() as u64;
    result
}

/// Takes every answer available now (waiting at most [`RECV_POLL`] for the first).
fn receive(
    client: &mut Client,
    pending: &mut VecDeque<(u64, u64)>,
    start: Instant,
    lane: &Lane,
    result: &mut ClientResult,
) {
    if pending.is_empty() {
        std::thread::sleep(RECV_POLL);
        return;
    }
    loop {
        let reply = match client.recv() {
            Ok(reply) => reply,
            Err(ClientError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return;
            }
            Err(e) => {
                result.errors.push(e.to_string());
                std::thread::sleep(RECV_POLL);
                return;
            }
        };
        let (id, status) = (reply.correlation_id, reply.status);
        let now = since_ns(start);
        while let Some(&(front, intended)) = pending.front() {
            if front > id {
                break;
            }
            pending.pop_front();
            if front == id {
                let latency = now.saturating_sub(intended);
                result.latency.record(latency);
                if Instant::now() >= lane.measure_from {
                    result.measured.record(latency);
                    result.measured_answers += 1;
                }
                match status {
                    ReplyStatus::Refused(_) => result.refused += 1,
                    _ => result.answered.push(id),
                }
            }
        }
        if pending.is_empty() {
            return;
        }
    }
}

fn open(addrs: &[SocketAddr], client_id: u64, result: &mut ClientResult) -> Option<Client> {
    for _ in 0..MAX_REOPEN {
        match Client::connect_exactly_once(addrs, None, client_id) {
            Ok(client) => {
                let _ = client.set_read_timeout(Some(RECV_POLL));
                return Some(client);
            }
            Err(e) => {
                result.errors.push(e.to_string());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    None
}

/// Runs `clients` clients on threads until `stop`; their results.
pub fn run<A: App>(
    lanes: Vec<Lane>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<ClientResult>> {
    lanes
        .into_iter()
        .map(|lane| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("failover-client".into())
                .spawn(move || drive::<A>(&lane, &stop))
                .expect("spawn a load client")
        })
        .collect()
}
