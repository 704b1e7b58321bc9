//! The change-stream sink in rows/s: typed rows to cells (`TableRow::cells`), cells to
//! an Arrow batch (`arrow_rows::changes_to_batch`), and the batch to Snappy Parquet,
//! as `sink::changes` does per table and logical time.
//!
//! `cargo bench --bench sink` (100,000 session rows; `TIDEMARK_BENCH_EVENTS` overrides).

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tidemark::sink::arrow_rows::changes_to_batch;
use tidemark_dataflows::metrics::sessions::SessionRow;
use tidemark_dataflows::metrics::window_activity::WindowRow;
use tidemark_dataflows::model::name::Name;
use tidemark_dataflows::model::tables::{Cell, TableRow, TableSpec};

fn session_rows(n: u64) -> Vec<SessionRow> {
    let users: Vec<Name> = (0..(n / 20).max(1))
        .map(|u| Name::new(&format!("u{u:07}")))
        .collect();
    (0..n)
        .map(|i| {
            let start = 1_735_689_600_000 + (i as i64) * 7_919;
            SessionRow {
                user_id: users[(i as usize * 7) % users.len()],
                start,
                session_id: None,
                end: start + (i as i64 % 3_600) * 1_000,
                actions: (i % 40) as i64 + 1,
            }
        })
        .collect()
}

fn window_rows(n: u64) -> Vec<WindowRow> {
    (0..n)
        .map(|i| WindowRow {
            start: 1_735_689_600_000 + i as i64 * 300_000,
            length_ms: 300_000,
            events: (i % 977) as i64,
            active_users: (i % 311) as i64,
            sessions_started: (i % 57) as i64,
        })
        .collect()
}

fn to_changes<R: TableRow>(rows: &[R]) -> Vec<(Vec<Cell>, i64)> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| (r.cells(), if i % 5 == 0 { -1 } else { 1 }))
        .collect()
}

fn write_parquet(spec: &TableSpec, changes: &[(Vec<Cell>, i64)]) -> usize {
    let batch = changes_to_batch(spec, 3, changes).expect("batch");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).expect("writer");
    writer.write(&batch).expect("write");
    writer.into_inner().expect("close").len()
}

fn sink(c: &mut Criterion) {
    let n = common::events(100_000, 1_000);
    let sessions = session_rows(n);
    let windows = window_rows(n);
    let session_changes = to_changes(&sessions);

    let mut group = c.benchmark_group("sink");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(n));
    group.bench_function("sessions: rows to cells", |b| {
        b.iter(|| to_changes(&sessions).len())
    });
    group.bench_function("sessions: cells to arrow batch", |b| {
        b.iter(|| {
            changes_to_batch(&SessionRow::SPEC, 3, &session_changes)
                .expect("batch")
                .num_rows()
        })
    });
    group.bench_function("sessions: cells to parquet (snappy)", |b| {
        b.iter(|| write_parquet(&SessionRow::SPEC, &session_changes))
    });
    group.bench_function("sessions: rows to parquet (whole sink path)", |b| {
        b.iter(|| write_parquet(&SessionRow::SPEC, &to_changes(&sessions)))
    });
    group.bench_function("window_activity: rows to parquet", |b| {
        b.iter(|| write_parquet(&WindowRow::SPEC, &to_changes(&windows)))
    });
    group.finish();
}

criterion_group!(benches, sink);
criterion_main!(benches);
