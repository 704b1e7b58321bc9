//! Ingest: `Dataset::read` (parse + validate) per file format, in rows/s.
//!
//! `cargo bench --bench ingest` (100,000 events per format; `TIDEMARK_BENCH_EVENTS`
//! overrides). Under `cargo test` each format is read once from a tiny data set.

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tidemark_inputs::generator::OutputFormat;

fn ingest(c: &mut Criterion) {
    let events = common::events(100_000, 2_000);
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, format, gzip) in [
        ("parquet", OutputFormat::Parquet, false),
        ("csv", OutputFormat::Csv, false),
        ("csv.gz", OutputFormat::Csv, true),
        ("ndjson", OutputFormat::Ndjson, false),
        ("ndjson.gz", OutputFormat::Ndjson, true),
    ] {
        let mut cfg = common::config(events, format, gzip, false);
        // Few files, so per-file set-up does not dominate.
        cfg.files = 4;
        let data = common::generate(&cfg);
        let files: Vec<_> = data.event_files().into_iter().cloned().collect();
        let rows: u64 = files
            .iter()
            .map(|f| {
                let b = data.dataset.read(f);
                (b.events.len() + b.quarantine.len()) as u64
            })
            .sum();
        group.throughput(Throughput::Elements(rows));
        group.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| {
                    let mut n = 0usize;
                    for file in &files {
                        n += data.dataset.read(file).events.len();
                    }
                    n
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
