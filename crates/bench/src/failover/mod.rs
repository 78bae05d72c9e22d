//! `keel bench failover`: a local cluster of `keel serve --cluster` processes on loopback,
//! driven by exactly-once clients across every client address, its leader killed with SIGKILL
//! at random (seeded) moments and restarted as a follower; then every node stopped and
//! checked: acknowledged requests lost, requests applied twice, failover times (detect /
//! elect / promote, from the nodes' events files), and every node's state hash.
//!
//! With `--failovers 0` it measures replication's cost instead: the same load against 1 and
//! 3 nodes (`--nodes 1,3`), open loop at `--rate` (p50/p99) and closed loop (throughput).

mod args;
mod check;
pub mod load;
pub mod procs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keel_services::App;
use serde::Serialize;

pub use self::args::{run_failover, FailoverArgs};
use self::check::{check_journal, failover_times, spread, FailoverTimes, Spread};
use self::load::{ClientResult, Lane};
use self::procs::{final_state, own_cpu_ms, read_events, wait_following, wait_for_leader, Procs};
use crate::latency::{LatencyRecorder, Percentiles};
use crate::rig::Failure;

/// Bound on waiting for a leader (first start, after a kill).
const LEADER_WITHIN: Duration = Duration::from_secs(30);
/// Bound on a restarted node's rejoining.
const REJOIN_WITHIN: Duration = Duration::from_secs(30);
/// Grace of SIGTERM at the end.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// Quiet time before the nodes are stopped: followers learn the last commit.
const SETTLE: Duration = Duration::from_millis(1500);

/// One failover run.
#[derive(Debug, Clone)]
pub struct FailoverSpec {
    /// The `keel` executable to run nodes with.
    pub exe: PathBuf,
    /// Nodes.
    pub nodes: usize,
    /// Leader kills.
    pub failovers: u64,
    /// Offered rate, per second (0: closed loop).
    pub rate: u64,
    /// Load clients (each its own client id).
    pub clients: u64,
    /// Seed of the kill moments and the workload.
    pub seed: u64,
    /// Load time when there are no failovers; warm-up before the first kill otherwise.
    pub duration: Duration,
    /// Unmeasured lead-in.
    pub warmup: Duration,
    /// A kill comes this long (ms, uniformly drawn) after the cluster is whole again.
    pub kill_after_ms: (u64, u64),
    /// Where the nodes' data goes (default: a temporary directory, removed afterwards).
    pub out: Option<PathBuf>,
    /// More `keel serve` flags (e.g. `--ack-policy all`, `--flush none`).
    pub serve_args: Vec<String>,
}

/// A node's end state.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEnd {
    /// Node id.
    pub node: u64,
    /// State hash printed at shutdown.
    pub state_hash: String,
    /// Sequence applied at shutdown.
    pub applied_sequence: u64,
    /// Last journaled sequence.
    pub journal_last_sequence: u64,
    /// State hash of a replay of its journal applying each request once.
    pub replay_once_hash: String,
    /// Answered requests its journal lacks.
    pub lost: u64,
    /// CPU time the node process used while measured (after the warm-up), ms; cost runs
    /// (`--failovers 0`) only, else 0.
    pub cpu_ms: u64,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// Nodes.
    pub nodes: usize,
    /// Offered rate (0: closed loop).
    pub rate: u64,
    /// Requests answered (applied) to the clients.
    pub acknowledged: u64,
    /// Answered requests missing from some node's journal at the end.
    pub lost: u64,
    /// Requests applied more than once (see the module docs).
    pub duplicated: u64,
    /// Requests journaled more than once (resends the exactly-once table answered).
    pub resent_journaled: u64,
    /// Requests refused before the engine (e.g. ALREADY_ANSWERED).
    pub refused: u64,
    /// Requests never answered (the run ended first).
    pub unanswered: u64,
    /// Leader kills.
    pub failovers: u64,
    /// Kill → a new leader serves, ms.
    pub failover_ms: Spread,
    /// Kill → a survivor notices, ms.
    pub detect_ms: Spread,
    /// Noticed → elected, ms.
    pub elect_ms: Spread,
    /// Elected → serving, ms.
    pub promote_ms: Spread,
    /// Every failover's times.
    pub each_failover: Vec<FailoverTimes>,
    /// All nodes end in the same state at the same sequence.
    pub hashes_equal: bool,
    /// Each node's end.
    pub node_states: Vec<NodeEnd>,
    /// Latency after the warm-up (from intended send times in open loop).
    pub latency: Option<Percentiles>,
    /// Answers per second after the warm-up.
    pub throughput_per_sec: f64,
    /// CPU time all node processes used per answer after the warm-up, µs (cores needed at a
    /// rate R: `R * cpu_us_per_answer / 1e6`); cost runs (`--failovers 0`) only, else 0.
    pub cpu_us_per_answer: f64,
    /// CPU time the load generator used per answer after the warm-up, µs.
    pub load_cpu_us_per_answer: f64,
    /// Client errors seen (each followed by a reconnect).
    pub client_errors: u64,
    /// Where the nodes' data is (when kept).
    pub data_dir: Option<PathBuf>,
}

/// Runs one failover (or cost) run of app `A`.
pub fn run<A: App>(spec: &FailoverSpec) -> Result<FailoverReport, Failure> {
    let temp;
    let root: &Path = match &spec.out {
        Some(out) => out,
        None => {
            temp = crate::rig::DataDir::new(None, "failover")?;
            temp.path()
        }
    };
    let root = root.join(format!("nodes{}-{}", spec.nodes, unix_ns()));
    let mut procs = Procs::plan(&spec.exe, &root, spec.nodes, spec.serve_args.clone())?;
    for index in 0..spec.nodes {
        procs.start(index)?;
    }
    let (_, term) = wait_for_leader(&procs, 0, LEADER_WITHIN)
        .ok_or_else(|| Failure::new("no leader within 30 s of the start"))?;
    let addrs = procs.client_addrs();
    load::setup::<A>(&addrs, spec.seed).map_err(|e| Failure(format!("setup: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let measure_from = started + spec.warmup;
    let lanes = (0..spec.clients)
        .map(|index| Lane {
            addrs: addrs.clone(),
            index,
            clients: spec.clients,
            rate: spec.rate,
            seed: spec.seed,
            measure_from,
        })
        .collect();
    let clients = load::run::<A>(lanes, &stop);
    std::thread::sleep(spec.warmup);
    let cpu_from = CpuMark::take(&procs);
    if spec.failovers == 0 {
        std::thread::sleep(spec.duration);
    }
    let kills = kill_leaders(spec, &mut procs, term)?;
    let measured_for = started.elapsed().saturating_sub(spec.warmup);
    // A killed and restarted node's counter begins again: CPU time is a cost-run figure.
    let cpu_used = match spec.failovers {
        0 => cpu_from.used(&procs),
        _ => CpuMark::unknown(procs.nodes().len()),
    };
    stop.store(true, Ordering::Release);
    let results: Vec<ClientResult> = clients
        .into_iter()
        .map(|c| c.join().map_err(|_| Failure::new("a load client panicked")))
        .collect::<Result<_, _>>()?;
    std::thread::sleep(SETTLE);
    procs.stop_all(STOP_GRACE);
    let report = report::<A>(spec, &procs, &results, &kills, measured_for, &cpu_used)?;
    if spec.out.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(FailoverReport {
        data_dir: spec.out.as_ref().map(|_| root.clone()),
        ..report
    })
}

/// Kills the serving leader `spec.failovers` times, each time waiting (bounded) for the next
/// leader and for the killed node's return as a follower; the kills' (time, term).
fn kill_leaders(
    spec: &FailoverSpec,
    procs: &mut Procs,
    mut term: u64,
) -> Result<Vec<(u64, u64)>, Failure> {
    let mut kills = Vec::new();
    let mut rng = spec.seed | 1;
    for _ in 0..spec.failovers {
        let (low, high) = spec.kill_after_ms;
        let wait = low + next(&mut rng) % (high.saturating_sub(low) + 1);
        std::thread::sleep(Duration::from_millis(wait));
        let Some((leader, leader_term)) =
            wait_for_leader(procs, term.saturating_sub(1), LEADER_WITHIN)
        else {
            break;
        };
        let kill_ns = unix_ns();
        procs.kill(leader);
        kills.push((kill_ns, leader_term));
        let Some((_, next_term)) = wait_for_leader(procs, leader_term, LEADER_WITHIN) else {
            break;
        };
        term = next_term;
        procs.start(leader)?;
        wait_following(procs, leader, term, REJOIN_WITHIN);
    }
    Ok(kills)
}

fn report<A: App>(
    spec: &FailoverSpec,
    procs: &Procs,
    results: &[ClientResult],
    kills: &[(u64, u64)],
    measured_for: Duration,
    cpu_used: &CpuMark,
) -> Result<FailoverReport, Failure> {
    let acknowledged: u64 = results.iter().map(|r| r.answered.len() as u64).sum();
    let mut node_states = Vec::new();
    let mut lost_any = std::collections::HashSet::new();
    let mut duplicated = 0;
    let mut resent = 0;
    for (index, node) in procs.nodes().iter().enumerate() {
        let journal = check_journal::<A>(&node.dir.join("journal"))?;
        let mut lost = 0;
        for r in results {
            for id in &r.answered {
                if !journal.requests.contains(&(r.client_id, *id)) {
                    lost += 1;
                    lost_any.insert((r.client_id, *id));
                }
            }
        }
        let (hash, applied) = final_state(&node.dir).unwrap_or((0, 0));
        if hash != journal.once_hash || applied != journal.last_sequence {
            duplicated = duplicated.max(journal.journaled_twice.max(1));
        }
        resent = resent.max(journal.journaled_twice);
        node_states.push(NodeEnd {
            node: node.id,
            state_hash: format!("{hash:#018x}"),
            applied_sequence: applied,
            journal_last_sequence: journal.last_sequence,
            replay_once_hash: format!("{:#018x}", journal.once_hash),
            lost,
            cpu_ms: cpu_used.nodes_ms[index].unwrap_or(0),
        });
    }
    let hashes_equal = node_states.windows(2).all(|w| {
        w[0].state_hash == w[1].state_hash && w[0].applied_sequence == w[1].applied_sequence
    });
    let events: Vec<_> = procs.nodes().iter().map(|n| read_events(&n.dir)).collect();
    let each: Vec<FailoverTimes> = kills
        .iter()
        .filter_map(|(kill_ns, term)| failover_times(*kill_ns, *term, &events))
        .collect();
    let mut latency = LatencyRecorder::new();
    for r in results {
        latency.merge(&r.measured);
    }
    let measured: u64 = results.iter().map(|r| r.measured_answers).sum();
    let per_answer_us = |ms: u64| ms as f64 * 1e3 / measured.max(1) as f64;
    let nodes_cpu_ms: u64 = cpu_used.nodes_ms.iter().flatten().sum();
    Ok(FailoverReport {
        nodes: spec.nodes,
        rate: spec.rate,
        acknowledged,
        lost: lost_any.len() as u64,
        duplicated,
        resent_journaled: resent,
        refused: results.iter().map(|r| r.refused).sum(),
        unanswered: results.iter().map(|r| r.unanswered).sum(),
        failovers: kills.len() as u64,
        failover_ms: spread(each.iter().map(|t| t.total_ms)),
        detect_ms: spread(each.iter().map(|t| t.detect_ms)),
        elect_ms: spread(each.iter().map(|t| t.elect_ms)),
        promote_ms: spread(each.iter().map(|t| t.promote_ms)),
        each_failover: each,
        hashes_equal,
        node_states,
        latency: latency.measured(),
        throughput_per_sec: measured as f64 / measured_for.as_secs_f64().max(1e-3),
        cpu_us_per_answer: per_answer_us(nodes_cpu_ms),
        load_cpu_us_per_answer: per_answer_us(cpu_used.load_ms.unwrap_or(0)),
        client_errors: results.iter().map(|r| r.errors.len() as u64).sum(),
        data_dir: None,
    })
}

impl FailoverReport {
    /// A short table of the run.
    pub fn table(&self) -> String {
        let lat = self.latency.map_or_else(
            || "-".to_owned(),
            |l| {
                format!(
                    "p50 {:.0} us, p99 {:.0} us, max {:.0} us",
                    l.p50_ns as f64 / 1e3,
                    l.p99_ns as f64 / 1e3,
                    l.max_ns as f64 / 1e3
                )
            },
        );
        let cpu = match self.failovers {
            0 => format!(
                " | cpu per answer: nodes {:.1} us, load {:.1} us",
                self.cpu_us_per_answer, self.load_cpu_us_per_answer
            ),
            _ => String::new(),
        };
        let hashes: Vec<String> = self
            .node_states
            .iter()
            .map(|n| {
                format!(
                    "node {}: {} at {}",
                    n.node, n.state_hash, n.applied_sequence
                )
            })
            .collect();
        format!(
            "nodes {} | rate {} | acknowledged {} | lost {} | duplicated {} | resent {} | \
             failovers {}\nfailover ms p50 {:.0} max {:.0} (detect p50 {:.0}, elect p50 {:.0}, \
             promote p50 {:.0})\nlatency {lat} | throughput {:.0}/s{cpu}\nhashes equal: {} ({})\n",
            self.nodes,
            self.rate,
            self.acknowledged,
            self.lost,
            self.duplicated,
            self.resent_journaled,
            self.failovers,
            self.failover_ms.p50,
            self.failover_ms.max,
            self.detect_ms.p50,
            self.elect_ms.p50,
            self.promote_ms.p50,
            self.throughput_per_sec,
            self.hashes_equal,
            hashes.join("; ")
        )
    }
}

/// CPU time per node process and of the load generator: a mark, then what was used since.
struct CpuMark {
    nodes_ms: Vec<Option<u64>>,
    load_ms: Option<u64>,
}

impl CpuMark {
    fn take(procs: &Procs) -> CpuMark {
        CpuMark {
            nodes_ms: (0..procs.nodes().len()).map(|i| procs.cpu_ms(i)).collect(),
            load_ms: own_cpu_ms(),
        }
    }

    fn unknown(nodes: usize) -> CpuMark {
        CpuMark {
            nodes_ms: vec![None; nodes],
            load_ms: None,
        }
    }

    /// What was used since this mark.
    fn used(&self, procs: &Procs) -> CpuMark {
        let now = CpuMark::take(procs);
        let since = |from: Option<u64>, to: Option<u64>| to?.checked_sub(from?);
        CpuMark {
            nodes_ms: self
                .nodes_ms
                .iter()
                .zip(&now.nodes_ms)
                .map(|(a, b)| since(*a, *b))
                .collect(),
            load_ms: since(self.load_ms, now.load_ms),
        }
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// xorshift64: the kill moments from the seed.
fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}
