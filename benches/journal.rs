//! Journal append throughput: 64 B and 256 B payloads, batch sizes 1, 64 and 4096, flush
//! policies `none` and `batch`. The policy in force is part of every benchmark's name.
//!
//! Each benchmark verifies afterwards that the journal holds exactly the records appended
//! (a full `verify` scan). Results depend on the storage: state the hardware with the figures.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel::journal::{verify, FlushPolicy, JournalConfig, JournalWriter, Record};

const CASES: [(FlushPolicy, u64); 5] = [
    (FlushPolicy::None, 1),
    (FlushPolicy::None, 64),
    (FlushPolicy::None, 4096),
    (FlushPolicy::Batch, 64),
    (FlushPolicy::Batch, 4096),
];

fn append(c: &mut Criterion) {
    for payload_bytes in [64usize, 256] {
        let mut group = c.benchmark_group(format!("journal_append_{payload_bytes}B"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        for (flush, batch) in CASES {
            group.throughput(Throughput::Elements(batch));
            let id = BenchmarkId::new(format!("flush={flush}"), format!("batch={batch}"));
            group.bench_function(id, |b| run_case(b, flush, batch, payload_bytes));
        }
        group.finish();
    }
}

fn run_case(b: &mut criterion::Bencher<'_>, flush: FlushPolicy, batch: u64, payload_bytes: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = JournalConfig::new(tmp.path());
    config.flush = flush;
    let mut writer = JournalWriter::open(&config).expect("open journal");
    let payload = vec![0xA5u8; payload_bytes];
    let mut seq = 0u64;
    b.iter(|| {
        for _ in 0..batch {
            seq += 1;
            let record = Record {
                sequence: seq,
                timestamp_ns: seq,
                session_id: 1,
                correlation_id: seq,
                kind: 1,
                version: 1,
                payload: &payload,
            };
            writer.append(&record).expect("append");
        }
        writer.end_batch().expect("end_batch");
    });
    writer.sync().expect("sync");
    drop(writer);
    let report = verify(tmp.path()).expect("verify");
    assert_eq!(
        report.last_sequence, seq,
        "journal holds every appended record"
    );
}

criterion_group!(benches, append);
criterion_main!(benches);
