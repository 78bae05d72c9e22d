//! A local cluster of `keel serve --cluster` processes on loopback: free ports, one data
//! directory per node, start, SIGKILL, restart, SIGTERM; every child killed on drop (a panic
//! included).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::rig::Failure;

/// The events file each node writes in its data directory.
pub const EVENTS_FILE: &str = "cluster-events.jsonl";
/// The log each node's stderr goes to, in its data directory.
pub const LOG_FILE: &str = "serve.log";

/// One node's addresses and directory.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id (1-based).
    pub id: u64,
    /// Cluster address (election and data plane).
    pub cluster: SocketAddr,
    /// Client address.
    pub client: SocketAddr,
    /// Data directory.
    pub dir: PathBuf,
}

/// The cluster's processes; dropping it kills every child still running.
pub struct Procs {
    exe: PathBuf,
    nodes: Vec<NodeSpec>,
    extra: Vec<String>,
    /// Per node, a `--cluster` list of its own (peers reached through proxies, say).
    lists: Vec<Option<String>>,
    children: Vec<Option<Child>>,
}

/// Lowest port handed out (below it: well-known and registered services).
const FIRST_PORT: u16 = 10_000;
/// Where the next search for free ports starts, as an offset from [`FIRST_PORT`] (`None`
/// until the first search): searches take turns and each goes on where the last stopped,
/// so this process's nodes never share a port, even when their runs overlap.
static NEXT_PORT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);

/// `n` loopback addresses, free when asked (bound, then released for the child to bind),
/// below the kernel's ephemeral port range. A port from that range could be taken, while a
/// node is down or starting, as the local port of any outgoing connection: the node would
/// then fail to bind, or a peer dialing it could connect to itself.
pub fn free_addrs(n: usize) -> Result<Vec<SocketAddr>, Failure> {
    let first_ephemeral = ephemeral_range_start();
    let span = u32::from(first_ephemeral.saturating_sub(FIRST_PORT));
    if span < 1_000 {
        return bound_by_kernel(n);
    }
    let mut next = NEXT_PORT.lock().unwrap_or_else(|p| p.into_inner());
    let start = next.unwrap_or_else(|| std::process::id().wrapping_mul(7_919) % span);
    let mut addrs = Vec::with_capacity(n);
    let mut tried = 0;
    while addrs.len() < n && tried < span {
        let port = FIRST_PORT + ((start + tried) % span) as u16;
        tried += 1;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(addr).is_ok() {
            addrs.push(addr);
        }
    }
    *next = Some((start + tried) % span);
    if addrs.len() < n {
        return bound_by_kernel(n);
    }
    Ok(addrs)
}

/// The first port of the kernel's ephemeral range (Linux; 32768, its default, elsewhere).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `n` ports the kernel picks (from its ephemeral range): the fallback.
fn bound_by_kernel(n: usize) -> Result<Vec<SocketAddr>, Failure> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()?)
}

impl Procs {
    /// Plans `n` nodes under `root` (nothing started yet). `extra`: more `keel serve` flags
    /// (ack policy, flush policy).
    pub fn plan(exe: &Path, root: &Path, n: usize, extra: Vec<String>) -> Result<Procs, Failure> {
        let addrs = free_addrs(2 * n)?;
        let nodes = (0..n)
            .map(|i| NodeSpec {
                id: i as u64 + 1,
                cluster: addrs[2 * i],
                client: addrs[2 * i + 1],
                dir: root.join(format!("node{}", i + 1)),
            })
            .collect();
        Ok(Procs {
            exe: exe.to_owned(),
            nodes,
            extra,
            lists: vec![None; n],
            children: (0..n).map(|_| None).collect(),
        })
    }

    /// The nodes.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// Every client address.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.client).collect()
    }

    /// Gives node `index` its own `--cluster` list (its own entry must stay its cluster
    /// address: it binds it). For tests that put proxies between the nodes.
    pub fn set_cluster_list(&mut self, index: usize, list: String) {
        self.lists[index] = Some(list);
    }

    /// The `--cluster` list every node gets unless given its own.
    pub fn members(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.cluster))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `index` (its data directory kept from an earlier run, if any).
    pub fn start(&mut self, index: usize) -> Result<(), Failure> {
        let node = &self.nodes[index];
        std::fs::create_dir_all(&node.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join(LOG_FILE))?;
        let child = Command::new(&self.exe)
            .arg("serve")
            .args(["--node-id", &node.id.to_string()])
            .args([
                "--cluster",
                &self.lists[index].clone().unwrap_or_else(|| self.members()),
            ])
            .args(["--listen", &node.client.to_string()])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--stats-interval", "0"])
            .args(&self.extra)
            .env("RUST_LOG", "warn,keel_cluster=info,keel_cli=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Failure(format!("starting {}: {e}", self.exe.display())))?;
        self.children[index] = Some(child);
        Ok(())
    }

    /// Whether node `index` runs (as far as this harness knows).
    pub fn running(&self, index: usize) -> bool {
        self.children[index].is_some()
    }

    /// CPU time node `index` has used so far (user + system, all its threads), ms; `None` when
    /// it does not run or its `/proc` entry cannot be read.
    pub fn cpu_ms(&self, index: usize) -> Option<u64> {
        let child = self.children[index].as_ref()?;
        process_cpu_ms(&format!("/proc/{}/stat", child.id()))
    }

    /// SIGKILL to node `index`, and waits for it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to every running node, then waits for each (bounded; SIGKILL after `grace`).
    pub fn stop_all(&mut self, grace: Duration) {
        for child in self.children.iter().flatten() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) with a child's pid and a valid signal number.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + grace;
        for slot in &mut self.children {
            let Some(child) = slot.as_mut() else { continue };
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
            *slot = None;
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU time of this process (the load generator), ms.
pub fn own_cpu_ms() -> Option<u64> {
    process_cpu_ms("/proc/self/stat")
}

/// `utime + stime` of a `/proc/PID/stat` file, ms.
fn process_cpu_ms(stat: &str) -> Option<u64> {
    let ticks = cpu_ticks(&std::fs::read_to_string(stat).ok()?)?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_sec = u64::try_from(ticks_per_sec).ok().filter(|&t| t > 0)?;
    Some(ticks * 1000 / ticks_per_sec)
}

/// `utime + stime` (clock ticks) of a `/proc/PID/stat` line.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields are counted after its last
    // ')'. State is field 3; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A node's role events, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Wall clock, ns since the Unix epoch.
    pub unix_ns: u64,
    /// Which event.
    pub kind: EventKind,
    /// Its term.
    pub term: u64,
}

/// The events a node writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `leader-lost`
    LeaderLost,
    /// `elected`
    Elected,
    /// `serving`
    Serving,
    /// `following`
    Following,
    /// `stopped-serving`
    StoppedServing,
}

/// Reads a node's events file (missing: none).
pub fn read_events(dir: &Path) -> Vec<Event> {
    let Ok(text) = std::fs::read_to_string(dir.join(EVENTS_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let kind = match v.get("event")?.as_str()? {
                "leader-lost" => EventKind::LeaderLost,
                "elected" => EventKind::Elected,
                "serving" => EventKind::Serving,
                "following" => EventKind::Following,
                "stopped-serving" => EventKind::StoppedServing,
                _ => return None,
            };
            Some(Event {
                unix_ns: v.get("unix_ns")?.as_u64()?,
                kind,
                term: v.get("term")?.as_u64()?,
            })
        })
        .collect()
}

/// The node (index) serving the highest term now, by the events files of running nodes.
pub fn serving_leader(procs: &Procs) -> Option<(usize, u64)> {
    let mut best: Option<(usize, u64)> = None;
    for (index, node) in procs.nodes().iter().enumerate() {
        if !procs.running(index) {
            continue;
        }
        let events = read_events(&node.dir);
        let Some(last) = events.last() else { continue };
        if last.kind == EventKind::Serving && best.is_none_or(|(_, t)| last.term > t) {
            best = Some((index, last.term));
        }
    }
    best
}

/// Waits (bounded) until a running node serves a term above `above`.
pub fn wait_for_leader(procs: &Procs, above: u64, within: Duration) -> Option<(usize, u64)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some((index, term)) = serving_leader(procs) {
            if term > above {
                return Some((index, term));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Waits (bounded) until node `index`'s last event (a `stopped-serving` aside: a deposed
/// leader's server stops after it follows) is `following` in a term of at least `term`.
pub fn wait_following(procs: &Procs, index: usize, term: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let events = read_events(&procs.nodes()[index].dir);
        let last = events
            .iter()
            .rev()
            .find(|e| e.kind != EventKind::StoppedServing);
        if last.is_some_and(|e| e.kind == EventKind::Following && e.term >= term) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The last `state hash 0x… at sequence N` line of a node's log.
pub fn final_state(dir: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(dir.join(LOG_FILE)).ok()?;
    let line = text.lines().rev().find(|l| l.contains("state hash 0x"))?;
    let at = line.find("state hash 0x")? + "state hash 0x".len();
    let rest = &line[at..];
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    let hash = u64::from_str_radix(&hex, 16).ok()?;
    let sequence = rest
        .split("at sequence ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((hash, sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_fields_14_and_15_after_the_command_name() {
        let line = "4242 (keel (x) y) S 1 2 3 4 5 6 7 8 9 10 700 55 0 0 20 0 9";
        assert_eq!(cpu_ticks(line), Some(755));
        assert_eq!(cpu_ticks("4242 (keel) S 1 2"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(own_cpu_ms().is_some());
    }
}
