//! The change-stream sink: for each logical time at which a table changed, one Parquet
//! file per worker under `OUT/changes/<table>/` holding the table's columns plus
//! `time` and `diff` (contract "Outputs"). Summing diffs per row gives the table.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tidemark_dataflows::tables::TableRow;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::SinkReport;
use crate::arrow_rows::{changes_to_batch, Change};

/// The directory of a table's change stream.
pub fn changes_dir(out: &Path, table: &str) -> PathBuf {
    out.join("changes").join(table)
}

/// The file holding one worker's changes of one logical time.
pub fn change_file(out: &Path, table: &str, time: u64, worker: usize) -> PathBuf {
    changes_dir(out, table).join(format!("part-{time:010}-w{worker:04}.parquet"))
}

/// Updates buffered per logical time, with the capability that holds the time open.
type Pending<R> = BTreeMap<
    u64,
    (
        timely::dataflow::operators::Capability<u64>,
        Vec<(R, isize)>,
    ),
>;

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
    rows.consolidate().inner.unary_frontier(
        Pipeline,
        &format!("ChangeSink({table})"),
        move |_cap, info| {
            let mut pending: Pending<R> = BTreeMap::new();
            let activator = scope.activator_for(info.address);
            move |(input, frontier), output| {
                let live = !frontier.frontier().is_empty() || !pending.is_empty();
                super::check_failure(&out, &activator, live);
                input.for_each(|cap, data| {
                    for (row, time, diff) in data.drain(..) {
                        pending
                            .entry(time)
                            .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                            .1
                            .push((row, diff));
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.frontier().less_equal(entry.key()) {
                        break;
                    }
                    let time = *entry.key();
                    let (cap, mut updates) = entry.remove();
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
                    if let Err(error) = write_changes::<R>(&path, &changes) {
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

/// Writes one change file atomically (temporary name, then rename). The checkpoint
/// flushes the file system before it records a time as completed, so the files of a
/// completed time survive a machine crash too.
fn write_changes<R: TableRow>(path: &Path, changes: &[Change]) -> Result<()> {
    let batch = changes_to_batch(&R::SPEC, changes)?;
    let dir = path.parent().context("change file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("part")
    ));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
