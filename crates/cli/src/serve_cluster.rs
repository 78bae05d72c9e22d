//! `keel serve --node-id N --cluster 1=H:P,2=H:P,3=H:P`: one node of a replicated cluster
//! (keel_cluster::Cluster). It listens on `--listen` for its whole life: it serves clients
//! while it leads and answers them `NOT_LEADER` naming the leader otherwise; it writes its
//! role events to `<data-dir>/cluster-events.jsonl`, serves `--metrics-listen` (the engine's
//! figures and the cluster's gauges), and at shutdown prints the state hash of everything
//! committed it applied, like a single node.

use crate::messages;
use crate::metrics_http::MetricsEndpoint;
use crate::serve::ServeArgs;
use keel_cluster::{Cluster, ClusterConfig};
use keel_services::App;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// The events file's name in the data directory.
pub const EVENTS_FILE: &str = "cluster-events.jsonl";

/// Why `--snapshot-replica` is refused with `--cluster` (docs/REPLICATION.md).
const SNAPSHOT_REPLICA_REFUSED: &str = "--snapshot-replica is not available with --cluster: \
     a cluster node halts, truncates and restarts its engine as its role changes, which the \
     snapshot replica does not follow (docs/REPLICATION.md, \"Snapshots in a cluster\")";

/// `--cluster`: node id → cluster address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members(pub BTreeMap<u64, SocketAddr>);

/// Parses `1=HOST:PORT,2=HOST:PORT,...` (1 to 7 nodes, distinct ids).
pub fn parse_members(s: &str) -> Result<Members, String> {
    let mut members = BTreeMap::new();
    for item in s.split(',').filter(|i| !i.trim().is_empty()) {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?}: a node id is a positive integer"))?;
        if id == 0 {
            return Err("node ids start at 1".into());
        }
        let address = address
            .trim()
            .to_socket_addrs()
            .map_err(|e| format!("{address:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{address:?}: no address"))?;
        if members.insert(id, address).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if members.is_empty() || members.len() > 7 {
        return Err("a cluster has 1 to 7 nodes".into());
    }
    Ok(Members(members))
}

/// Parses `--election-timeout-ms MIN:MAX`: 30 <= MIN < MAX <= 60000.
pub fn parse_election_timeout(s: &str) -> Result<(u64, u64), String> {
    let (min, max) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected MIN:MAX in ms, e.g. 150:300"))?;
    let ms = |v: &str| -> Result<u64, String> {
        v.trim()
            .parse()
            .map_err(|_| format!("{v:?}: a whole number of ms"))
    };
    let (min, max) = (ms(min)?, ms(max)?);
    if !(30..=60_000).contains(&min) || !(30..=60_000).contains(&max) || min >= max {
        return Err(format!(
            "{s:?}: expected 30 <= MIN < MAX <= 60000 (ms); the heartbeat is MIN/3"
        ));
    }
    Ok((min, max))
}

/// The kernel's ephemeral port range (Linux; `None` where it cannot be read).
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
}

/// Warns when a port this node binds lies in the kernel's ephemeral range.
fn warn_if_ephemeral(ours: &[SocketAddr]) {
    let risky = in_ephemeral_range(ours, ephemeral_range());
    if !risky.is_empty() {
        tracing::warn!(
            addresses = ?risky,
            "these ports lie in the kernel's ephemeral range (ip_local_port_range): an \
             outgoing connection may take one while this node is down, and its restart then \
             fails to bind; prefer ports below the range (docs/REPLICATION.md, \"Connections\")"
        );
    }
}

/// The addresses among `addrs` whose port (not 0: the system picks) lies in `range`.
fn in_ephemeral_range(addrs: &[SocketAddr], range: Option<(u16, u16)>) -> Vec<SocketAddr> {
    let Some((first, last)) = range else {
        return Vec::new();
    };
    addrs
        .iter()
        .copied()
        .filter(|a| a.port() != 0 && (first..=last).contains(&a.port()))
        .collect()
}

/// Runs the node until SIGINT, SIGTERM or SIGHUP, then stops it and prints its state hash.
pub fn serve<A: App>(args: &ServeArgs, node_id: u64, members: &Members) -> Result<(), String> {
    if args.snapshot_replica {
        return Err(SNAPSHOT_REPLICA_REFUSED.into());
    }
    if !members.0.contains_key(&node_id) {
        return Err(format!(
            "--node-id {node_id} is not one of --cluster's nodes"
        ));
    }
    let (config, net) = args.prepare()?;
    let data_dir = &args.engine.data_dir;
    let mut cluster_config = ClusterConfig::new(node_id, members.0.clone(), config, net);
    cluster_config.ack_policy = args.ack_policy;
    let (timeout_min_ms, timeout_max_ms) = args.election_timeout_ms;
    cluster_config.election_timeout_min_ms = timeout_min_ms;
    cluster_config.election_timeout_max_ms = timeout_max_ms;
    cluster_config.heartbeat_ms = timeout_min_ms / 3;
    cluster_config.events_path = Some(data_dir.join(EVENTS_FILE));
    warn_if_ephemeral(&[members.0[&node_id], cluster_config.net.listen_addr]);
    let validate: keel_cluster::cluster::Validate = Arc::new(A::validate);
    let cluster = Cluster::start(cluster_config, A::default, validate)
        .map_err(|e| format!("starting cluster node {node_id}: {e}"))?;
    let endpoint = args
        .metrics_listen
        .map(|addr| {
            let registry = crate::exposition::cluster_registry(cluster.observer());
            MetricsEndpoint::start_registry(addr, registry)
        })
        .transpose()
        .map_err(|e| format!("--metrics-listen: {e}"))?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop.send(());
    }) {
        tracing::warn!(error = %e, "could not install the SIGINT/SIGTERM/SIGHUP handler");
    }
    eprintln!(
        "keel serve: {} node {node_id} of {} (cluster address {}, ack policy {}); clients on \
         {} (served while it leads, else sent to the leader)",
        A::NAME,
        members.0.len(),
        cluster.cluster_addr(),
        args.ack_policy,
        cluster.client_addr()
    );
    if let Some(endpoint) = &endpoint {
        eprintln!("  metrics: http://{}/metrics", endpoint.local_addr());
    }
    eprintln!(
        "  events: {} | stop: Ctrl-C",
        data_dir.join(EVENTS_FILE).display()
    );
    let _ = stopped.recv();
    drop(endpoint);
    let status = cluster.node().status();
    let (state, stats) = cluster
        .shutdown()
        .map_err(|e| format!("stopping the node: {e}"))?;
    eprintln!("stopping: {}", messages::net_summary(&stats));
    match state {
        Some(state) => eprintln!(
            "stopped cleanly; state hash {:#018x} at sequence {}",
            state.state_hash(),
            status.applied
        ),
        None => eprintln!("stopped; the engine was down"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_the_ephemeral_range_are_named() {
        let addrs: Vec<std::net::SocketAddr> = ["127.0.0.1:7701", "127.0.0.1:41473", "0.0.0.0:0"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let named = in_ephemeral_range(&addrs, Some((32_768, 60_999)));
        assert_eq!(named, vec![addrs[1]]);
        assert!(in_ephemeral_range(&addrs, None).is_empty());
    }

    #[test]
    fn members_parse() {
        let m = parse_members("1=127.0.0.1:7710,2=127.0.0.1:7711").unwrap();
        assert_eq!(m.0.len(), 2);
        assert!(parse_members("1=127.0.0.1:1,1=127.0.0.1:2").is_err());
        assert!(parse_members("0=127.0.0.1:1").is_err());
        assert!(parse_members("x").is_err());
    }

    #[test]
    fn election_timeouts_parse_within_bounds() {
        assert_eq!(parse_election_timeout("100:200"), Ok((100, 200)));
        for bad in ["200:100", "150:150", "10:100", "100", "a:b", "100:70000"] {
            assert!(parse_election_timeout(bad).is_err(), "{bad}");
        }
    }
}
