//! The engine's figures in the Prometheus text format: a `prometheus-client` collector that
//! reads [`Metrics`] once per scrape. The names and their meaning are listed in
//! docs/OPERATIONS.md ("Metrics").

use keel::engine::{Log2Histogram, Metrics, MetricsSnapshot};
use keel::net::NetStats;
use keel_cluster::{NodeGauges, NodeObserver, Role};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Nanosecond histograms are shown from 2^6 ns (64 ns: an apply) to 2^36 ns (~69 s), in
/// seconds.
const NS_BUCKETS: (usize, usize) = (6, 36);
/// Batch sizes from 1 to 2^20 records.
const RECORD_BUCKETS: (usize, usize) = (0, 20);

/// The registry `GET /metrics` encodes: every name starts with `keel_`.
pub fn registry(metrics: Metrics) -> Registry {
    let mut registry = Registry::with_prefix("keel");
    registry.register_collector(Box::new(EngineCollector(metrics)));
    registry
}

/// The registry of a cluster node's `GET /metrics`: the engine's figures (of the engine
/// running at scrape time: a node restarts its engine when it steps down) and the cluster's
/// gauges (`keel_cluster_*`).
pub fn cluster_registry(observer: NodeObserver) -> Registry {
    let mut registry = Registry::with_prefix("keel");
    registry.register_collector(Box::new(ClusterCollector(observer)));
    registry
}

/// The whole exposition, in the Prometheus text format (version 0.0.4).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct EngineCollector(Metrics);

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_engine(&mut encoder, &self.0.read())
    }
}

#[derive(Debug)]
struct ClusterCollector(NodeObserver);

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = self.0.read();
        let m = gauges.metrics.read();
        encode_engine(&mut encoder, &m)?;
        // A leader's network server publishes into the engine's ring itself: the ring's
        // position is the last sequence fed.
        let fed = gauges.status.last_sequence.max(m.published);
        encode_cluster(&mut encoder, &gauges, fed)
    }
}

fn encode_engine(e: &mut DescriptorEncoder, m: &MetricsSnapshot) -> Result_ {
    encode_positions(e, m)?;
    encode_journal(e, m)?;
    encode_logic(e, m)?;
    encode_snapshots(e, m)?;
    if let Some(net) = &m.net {
        encode_net(e, net)?;
    }
    Ok(())
}

/// The cluster's gauges: role, term, leader, commit, this node's positions and, on the
/// leader, each follower's matched durable sequence and lag.
fn encode_cluster(e: &mut DescriptorEncoder, g: &NodeGauges, fed: u64) -> Result_ {
    let s = &g.status;
    let role = match s.role {
        Role::Leader => "leader",
        Role::Promoting => "promoting",
        Role::Follower if g.candidate => "candidate",
        _ => "follower",
    };
    let roles = ["leader", "promoting", "candidate", "follower"].map(|r| (r, u64::from(r == role)));
    let help = "1 for this node's role now: leader (serves clients), promoting (elected, \
                catching up), candidate (campaigning), follower.";
    labelled(e, ("cluster_role", help, MetricType::Gauge), "role", &roles)?;
    gauge(e, "cluster_term", "The term this node knows.", s.term)?;
    let help = "The leader's node id as this node knows it (0: unknown).";
    gauge(e, "cluster_leader_id", help, s.leader.unwrap_or(0))?;
    let help = "The commit sequence: the leader's own, or the one a follower was told.";
    gauge(e, "cluster_commit_sequence", help, s.commit)?;
    let positions = [("fed", fed), ("durable", s.durable), ("applied", s.applied)];
    let help = "This node's positions: last sequence fed to its engine, durable in its \
                journal, applied by its processor.";
    labelled(
        e,
        ("cluster_node_sequence", help, MetricType::Gauge),
        "position",
        &positions,
    )?;
    let ids: Vec<String> = g.followers.iter().map(|f| f.id.to_string()).collect();
    let matched: Vec<(&str, u64)> = ids
        .iter()
        .zip(&g.followers)
        .map(|(id, f)| (id.as_str(), f.matched))
        .collect();
    let help = "On the leader: the last sequence each follower holds durably that matches \
                the leader's journal (this term).";
    let name = ("cluster_follower_matched_sequence", help, MetricType::Gauge);
    labelled(e, name, "node", &matched)?;
    let lag: Vec<(&str, u64)> = ids
        .iter()
        .zip(&g.followers)
        .map(|(id, f)| (id.as_str(), fed.saturating_sub(f.matched)))
        .collect();
    let help = "On the leader: records it holds that each follower does not hold durably yet.";
    labelled(
        e,
        ("cluster_follower_lag_messages", help, MetricType::Gauge),
        "node",
        &lag,
    )
}

type Result_ = Result<(), std::fmt::Error>;

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: impl EncodeGaugeValue) -> Result_ {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result_ {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)
}

/// One family of values told apart by one label.
fn labelled(
    e: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    key: &str,
    values: &[(&str, u64)],
) -> Result_ {
    let mut family = e.encode_descriptor(name, help, None, kind)?;
    for (label, v) in values {
        let labels = [(key, *label)];
        let mut metric = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => {
                metric.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(v, None)?
            }
            _ => metric.encode_gauge(v)?,
        }
    }
    Ok(())
}

/// A [`Log2Histogram`] as a Prometheus histogram: buckets `2^lo ..= 2^hi` (smaller values in
/// the first, larger ones only in `+Inf`), each bound times `scale`.
fn histogram(
    e: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    h: &Log2Histogram,
    (lo, hi): (usize, usize),
    scale: f64,
) -> Result_ {
    let mut buckets: Vec<(f64, u64)> = (lo..=hi)
        .map(|i| (Log2Histogram::upper_bound(i) as f64 * scale, h.buckets[i]))
        .collect();
    buckets[0].1 += h.buckets[..lo].iter().sum::<u64>();
    buckets.push((f64::INFINITY, h.buckets[hi + 1..].iter().sum()));
    e.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum as f64 * scale,
            h.count(),
            &buckets,
            None,
        )
}

fn seconds(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

fn encode_positions(e: &mut DescriptorEncoder, m: &MetricsSnapshot) -> Result_ {
    gauge(
        e,
        "uptime_seconds",
        "Time since the engine started.",
        seconds(m.uptime_ns),
    )?;
    let sequences = [
        ("published", m.published),
        ("journaled", m.journaled),
        ("durable", m.durable),
        ("applied", m.applied),
    ];
    let help = "Last sequence each stage has reached (published into the input ring, \
                appended to the journal, durable under the flush policy, applied).";
    labelled(
        e,
        ("sequence", help, MetricType::Gauge),
        "stage",
        &sequences,
    )?;
    let lags = [
        ("journal", m.published.saturating_sub(m.journaled)),
        ("sync", m.journaled.saturating_sub(m.durable)),
        ("apply", m.published.saturating_sub(m.applied)),
    ];
    let help = "Messages a stage is behind: journal = published - journaled, sync = \
                journaled - durable, apply = published - applied.";
    labelled(e, ("lag_messages", help, MetricType::Gauge), "stage", &lags)?;
    let capacity = [("input", m.input_capacity), ("output", m.output_capacity)];
    let help = "Slots of each ring (output 0: no output ring).";
    labelled(
        e,
        ("ring_slots", help, MetricType::Gauge),
        "ring",
        &capacity,
    )?;
    let fill = [
        ("journaler", m.published.saturating_sub(m.journaled)),
        ("logic", m.input_fill),
        ("responses", m.output_fill),
    ];
    let help = "Ring slots each stage still has to handle: the journaler and the business \
                logic on the input ring, the response reader on the output ring.";
    labelled(
        e,
        ("ring_fill_slots", help, MetricType::Gauge),
        "stage",
        &fill,
    )
}

fn encode_journal(e: &mut DescriptorEncoder, m: &MetricsSnapshot) -> Result_ {
    let help = "Records per batch the journaler took from the input ring.";
    let name = ("journal_batch_records", help);
    histogram(e, name, &m.journal_batch_records, RECORD_BUCKETS, 1.0)?;
    let help = "Duration of each journal sync (msync of appended records).";
    let name = ("journal_sync_seconds", help);
    histogram(e, name, &m.journal_sync_ns, NS_BUCKETS, 1e-9)?;
    let help = "Duration of each journal segment preparation (allocate, fill, map, pre-fault).";
    let name = ("segment_prepare_seconds", help);
    histogram(e, name, &m.segment_prep_ns, NS_BUCKETS, 1e-9)
}

fn encode_logic(e: &mut DescriptorEncoder, m: &MetricsSnapshot) -> Result_ {
    let help = "Apply time of every 64th message (sequence a multiple of 64).";
    histogram(e, ("apply_seconds", help), &m.apply_ns, NS_BUCKETS, 1e-9)?;
    let reasons: Vec<(String, u64)> = m
        .rejected_by_reason
        .iter()
        .map(|(reason, n)| (reason.to_string(), *n))
        .chain((m.rejected_other > 0).then(|| ("other".to_string(), m.rejected_other)))
        .collect();
    let reasons: Vec<(&str, u64)> = reasons.iter().map(|(r, n)| (r.as_str(), *n)).collect();
    let help = "Messages the business logic rejected, by reason code (other: codes >= 256).";
    labelled(
        e,
        ("rejected", help, MetricType::Counter),
        "reason",
        &reasons,
    )?;
    let help = "Messages whose apply panicked (answered Failed).";
    counter(e, "failed", help, m.failed)
}

fn encode_snapshots(e: &mut DescriptorEncoder, m: &MetricsSnapshot) -> Result_ {
    let outcomes = [
        ("written", m.snapshots_written),
        ("failed", m.snapshots_failed),
        ("skipped", m.snapshots_skipped),
    ];
    let help = "Snapshots by outcome (skipped: the previous one was still being written).";
    labelled(
        e,
        ("snapshots", help, MetricType::Counter),
        "outcome",
        &outcomes,
    )?;
    let help = "Sequence of the newest snapshot written.";
    gauge(e, "snapshot_sequence", help, m.snapshot_sequence)?;
    let help = "Business-logic pause of the last snapshot capture.";
    gauge(
        e,
        "snapshot_capture_seconds",
        help,
        seconds(m.snapshot_capture_ns),
    )?;
    let help = "Longest business-logic pause of any snapshot capture.";
    let max = seconds(m.snapshot_capture_max_ns);
    gauge(e, "snapshot_capture_max_seconds", help, max)?;
    let help = "Duration of the last snapshot write (file, fsync, rename, directory fsync).";
    gauge(
        e,
        "snapshot_write_seconds",
        help,
        seconds(m.snapshot_write_ns),
    )?;
    let help = "Size of the last snapshot's state.";
    gauge(e, "snapshot_state_bytes", help, m.snapshot_state_bytes)?;
    let help = "Last sequence the snapshot replica applied (0 without a replica).";
    gauge(e, "snapshot_replica_applied", help, m.replica_applied)?;
    let help = "The snapshot replica's last capture, on its own thread.";
    let replica_capture = seconds(m.replica_capture_ns);
    gauge(e, "snapshot_replica_capture_seconds", help, replica_capture)?;
    let help = "Journal segments retired (archived or deleted) by journal retention.";
    counter(e, "journal_segments_retired", help, m.segments_retired)?;
    let help = "Journal retention passes that failed (the next pass retries).";
    counter(e, "journal_retention_failed", help, m.retention_failed)
}

fn encode_net(e: &mut DescriptorEncoder, n: &NetStats) -> Result_ {
    gauge(e, "sessions", "Client sessions open now.", n.active)?;
    let connections = [("accepted", n.accepted), ("rejected", n.rejected)];
    let help = "Connections accepted, or refused because every session slot was in use.";
    labelled(
        e,
        ("connections", help, MetricType::Counter),
        "outcome",
        &connections,
    )?;
    counter(e, "handshakes", "Successful handshakes.", n.handshakes)?;
    let help = "Requests published into the engine.";
    counter(e, "requests", help, n.requests)?;
    let help = "Requests refused before the engine (unknown kind or version, undecodable, \
                too large, snapshot busy).";
    counter(e, "requests_refused", help, n.refused)?;
    counter(
        e,
        "responses",
        "Responses queued to their sessions.",
        n.responses,
    )?;
    let help = "Responses whose session was gone or over its output limit.";
    counter(e, "responses_dropped", help, n.responses_dropped)?;
    let help = "Times the input ring was full and the server stopped reading (back-pressure).";
    counter(e, "input_full", help, n.input_full)?;
    let closed = [
        ("clean", n.closed),
        ("mid_frame", n.closed_mid_frame),
        ("disconnect", n.disconnects),
        ("protocol_error", n.protocol_errors),
        ("unauthorized", n.unauthorized),
        ("timeout", n.timeouts),
        ("slow_consumer", n.slow_consumers),
    ];
    let help = "Sessions ended, by how.";
    labelled(
        e,
        ("sessions_closed", help, MetricType::Counter),
        "reason",
        &closed,
    )
}
