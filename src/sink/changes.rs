//! The change-stream sink: for each logical time at which a table changed, one Parquet
//! file per worker under `OUT/changes/<table>/` holding the table's columns plus
//! `time` and `diff` (contract "Outputs"). Summing diffs per row gives the table.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tidemark_dataflows::model::tables::TableRow;
use tidemark_dataflows::operators::held::{hold_updates, HeldByTime, HeldUpdates};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::manifest::Written;
use super::SinkReport;
use crate::sink::arrow_rows::{changes_to_batch, Change};

/// The directory of a table's change stream.
pub fn changes_dir(out: &Path, table: &str) -> PathBuf {
    out.join("changes").join(table)
}

/// The file holding one worker's changes of one logical time.
pub fn change_file(out: &Path, table: &str, time: u64, worker: usize) -> PathBuf {
    changes_dir(out, table).join(format!("part-{time:010}-w{worker:04}.parquet"))
}

/// Writes `rows`' changes of each completed logical time. The returned stream carries a
/// [`SinkReport`] per written time and holds that time open until the file is on disk,
/// so a probe downstream sees a time complete only once every worker has written it.
/// Times up to `resume_after` are not written: a resumed run replays them only to
/// rebuild its state, and an earlier run already wrote their files.
pub fn change_stream_sink<'s, R>(
    rows: VecCollection<'s, u64, R>,
    out: PathBuf,
    worker: usize,
    resume_after: Option<u64>,
) -> StreamVec<'s, u64, SinkReport>
where
    R: TableRow + ExchangeData + Hashable,
{
    let table = R::SPEC.name;
    let scope = rows.inner.scope();
    super::clear_failure(&out);
    let workers = timely::dataflow::Scope::peers(&scope);
    let resume_after = checked_resume_point(&out, table, (worker, workers), resume_after);
    rows.consolidate().inner.unary_frontier(
        Pipeline,
        &format!("ChangeSink({table})"),
        move |_cap, info| {
            let mut pending: HeldUpdates<(R, isize)> = HeldByTime::default();
            let activator = scope.activator_for(info.address);
            move |(input, frontier), output| {
                let live = !frontier.frontier().is_empty() || !pending.is_empty();
                super::check_failure(&out, &activator, live);
                input.for_each(|cap, data| {
                    hold_updates(&mut pending, &cap, data, |row, _time, diff| (row, diff))
                });
                while let Some((time, cap, mut updates)) =
                    pending.pop_complete(|time| !frontier.frontier().less_equal(&time))
                {
                    if resume_after.is_some_and(|done| time <= done) {
                        continue;
                    }
                    consolidate(&mut updates);
                    if updates.is_empty() {
                        continue;
                    }
                    let changes: Vec<Change> = updates
                        .iter()
                        .map(|(row, diff)| (row.cells(), time, *diff as i64))
                        .collect();
                    let path = change_file(&out, table, time, worker);
                    let written = write_changes::<R>(&path, &changes, time).and_then(|written| {
                        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("part");
                        super::manifest::record(&out, table, worker, name, &written)
                    });
                    if let Err(error) = written {
                        // A sink that cannot write must not pretend it did: stop the run loudly.
                        super::fail(&out, format!("cannot write {}: {error:#}", path.display()));
                    }
                    output.session(&cap).give(SinkReport {
                        table: table.to_string(),
                        time,
                        rows: changes.len() as u64,
                    });
                }
            }
        },
    )
}

/// Checks this worker's change files of `table` against the manifest before the sink
/// writes anything, and returns the time after which it writes: `resume_after`, or
/// earlier when a file of a completed time is missing, damaged or stray, so that the
/// replay writes it (and every later time) again.
fn checked_resume_point(
    out: &Path,
    table: &str,
    (worker, workers): (usize, usize),
    resume_after: Option<u64>,
) -> Option<u64> {
    let check = match super::manifest::check(
        out,
        &changes_dir(out, table),
        table,
        (worker, workers),
        resume_after,
    ) {
        Ok(check) => check,
        Err(error) => super::fail(
            out,
            format!("checking the change files of {table}: {error:#}"),
        ),
    };
    let Some(from) = check.rewrite_from else {
        return resume_after;
    };
    tracing::warn!(
        "changes/{table} (worker {worker}): {} missing, {} damaged and {} stray change files of completed times; writing its changes again from logical time {from} out of the write-ahead log",
        check.missing,
        check.damaged,
        check.strays
    );
    from.checked_sub(1)
}

/// Writes one change file atomically (temporary name, then rename). The checkpoint
/// flushes the file system before it records a time as completed, so the files of a
/// completed time survive a machine crash too. Returns what the manifest records.
fn write_changes<R: TableRow>(path: &Path, changes: &[Change], time: u64) -> Result<Written> {
    let batch = changes_to_batch(&R::SPEC, changes)?;
    let dir = path.parent().context("change file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("part")
    ));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(Written {
        time,
        size: bytes.len() as u64,
        hash: xxhash_rust::xxh3::xxh3_64(&bytes),
    })
}
