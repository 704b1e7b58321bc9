//! The change streams: for each logical time at which a table changed, one Parquet file
//! under `OUT/changes/<table>/` holding the table's columns plus `time` and `diff`
//! (contract "Outputs"), written by the table's writer ([`super::table_sink`]). Summing
//! diffs per row gives the table.

use crate::error_text::one_line;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tidemark_dataflows::model::tables::{Cell, TableSpec};

use super::manifest::Written;
use crate::sink::arrow_rows::changes_to_batch;

/// The directory of a table's change stream.
pub fn changes_dir(out: &Path, table: &str) -> PathBuf {
    out.join("changes").join(table)
}

/// The file holding the changes of one logical time, written by worker `writer`.
pub fn change_file(out: &Path, table: &str, time: u64, writer: usize) -> PathBuf {
    changes_dir(out, table).join(format!("part-{time:010}-w{writer:04}.parquet"))
}

/// Checks the change files of `table`, which worker `writer` writes, against the
/// manifest before the sink writes anything, and returns the time after which it
/// writes: `resume_after`, or earlier when a file of a completed time is missing,
/// damaged or stray, so that the replay writes it (and every later time) again.
pub(super) fn checked_resume_point(
    out: &Path,
    table: &str,
    writer: usize,
    resume_after: Option<u64>,
) -> Option<u64> {
    let check =
        match super::manifest::check(out, &changes_dir(out, table), table, writer, resume_after) {
            Ok(check) => check,
            Err(error) => super::fail(
                out,
                format!("checking the change files of {table}: {}", one_line(&error)),
            ),
        };
    let Some(from) = check.rewrite_from else {
        return resume_after;
    };
    tracing::warn!(
        "changes/{table}: {} missing, {} damaged and {} stray change files of completed times; writing its changes again from logical time {from} out of the write-ahead log",
        check.missing,
        check.damaged,
        check.strays
    );
    from.checked_sub(1)
}

/// Writes the change file of logical time `time` and lists it in the manifest; the
/// error names the file. The file is written atomically (temporary name, then rename),
/// and the checkpoint flushes the file system before it records a time as completed, so
/// the files of a completed time survive a machine crash too.
pub fn write_change_file(
    out: &Path,
    spec: TableSpec,
    writer: usize,
    time: u64,
    changes: &[(Vec<Cell>, i64)],
) -> std::result::Result<(), String> {
    let path = change_file(out, spec.name, time, writer);
    write_changes(&path, spec, changes, time)
        .and_then(|written| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("part");
            super::manifest::record(out, spec.name, writer, name, &written)
        })
        .map_err(|error| format!("cannot write {}: {}", path.display(), one_line(&error)))
}

/// Writes one change file (temporary name, then rename); returns what the manifest
/// records.
fn write_changes(
    path: &Path,
    spec: TableSpec,
    changes: &[(Vec<Cell>, i64)],
    time: u64,
) -> Result<Written> {
    let batch = changes_to_batch(&spec, time, changes)?;
    let dir = path.parent().context("change file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("part")
    ));
    // Change files are read whole (`report`, tests, users' scans of the stream), so
    // dictionary pages and column statistics, which cost 40% of the encoding, are left
    // out; the Delta tables keep both for readers that skip files.
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
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
