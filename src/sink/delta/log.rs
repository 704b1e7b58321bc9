//! The Delta sink's I/O through delta-rs: opening a table and reading its log, its
//! data files and its last `txn` version, writing data files and committing them with
//! a `txn` in one atomic log entry, and VACUUM. Everything async is driven here, on one
//! process-wide runtime, so the rest of the sink is plain synchronous code.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use arrow::array::RecordBatch;
use arrow::compute::cast;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove, StructField, Transaction};
use deltalake::logstore::LogStoreRef;
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::table::config::TablePropertiesExt;
use deltalake::table::state::DeltaTableState;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::DeltaTable;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use tidemark_dataflows::model::tables::{Cell, ColumnType, TableSpec};
use url::Url;

use super::layout::{app_id, delta_type};
use crate::sink::arrow_rows::{batch_to_changes, schema};

/// A table's log as last read or written: its store and the snapshot of its latest
/// version.
pub(super) type LogState = (LogStoreRef, DeltaTableState);

/// The process-wide runtime that drives delta-rs' async calls from worker threads.
pub(super) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tidemark-delta")
        .enable_all()
        .build()
        .context("starting the Delta Lake I/O runtime")?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// The URL of an existing directory.
pub(super) fn dir_url(dir: &Path) -> Result<Url> {
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    Url::from_directory_path(&canonical)
        .map_err(|()| anyhow!("{} is not a usable directory path", canonical.display()))
}

/// Opens the Delta table in `dir`; `None` when `dir` holds no Delta table (yet).
async fn open_table(dir: &Path) -> Result<Option<DeltaTable>> {
    if !dir.join("_delta_log").is_dir() {
        return Ok(None);
    }
    let table = DeltaTable::try_from_url(dir_url(dir)?).await?;
    Ok(table.version().is_some().then_some(table))
}

/// The last logical time committed to the Delta table in `table_dir` (the version of
/// its `tidemark-<table>` txn, `<table>` being the directory's name); `None` when the
/// directory holds no Delta table or no commit of tidemark.
pub fn last_committed_version(table_dir: &Path) -> Result<Option<u64>> {
    let table = table_dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no table name", table_dir.display()))?;
    let app = app_id(table);
    runtime()?
        .block_on(async {
            let Some(table) = open_table(table_dir).await? else {
                return Ok::<_, anyhow::Error>(None);
            };
            let version = table
                .snapshot()?
                .transaction_version(table.log_store().as_ref(), app)
                .await?;
            Ok(version.map(|v| v as u64))
        })
        .with_context(|| {
            format!(
                "reading the last commit of the Delta table at {}",
                table_dir.display()
            )
        })
}

/// The current contents of the Delta table in `table_dir` as rows of `spec` (sorted; a row
/// with multiplicity n appears n times), read from the snapshot's active files. Empty
/// when the directory holds no Delta table.
pub fn read_delta_table(table_dir: &Path, spec: &TableSpec) -> Result<Vec<Vec<Cell>>> {
    let files = runtime()?.block_on(async {
        let Some(table) = open_table(table_dir).await? else {
            return Ok::<_, anyhow::Error>(Vec::new());
        };
        Ok(table
            .snapshot()?
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect())
    })?;
    let mut rows = Vec::new();
    for path in files {
        rows.extend(read_data_file(&table_dir.join(&path), spec)?);
    }
    rows.sort();
    Ok(rows)
}

/// Reads one Parquet data file of a Delta table into rows of `spec` (timestamps of any
/// unit are brought back to milliseconds).
pub(super) fn read_data_file(path: &Path, spec: &TableSpec) -> Result<Vec<Vec<Cell>>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?
        .build()?;
    let target = schema(spec, false);
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let columns = target
            .fields()
            .iter()
            .map(|field| {
                let column = batch.column_by_name(field.name()).with_context(|| {
                    format!("{} has no column `{}`", path.display(), field.name())
                })?;
                Ok(cast(column, field.data_type())?)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(target.clone(), columns)?;
        rows.extend(
            batch_to_changes(spec, &batch, false)
                .with_context(|| format!("in {}", path.display()))?
                .into_iter()
                .map(|(row, _, _)| row),
        );
    }
    Ok(rows)
}

/// Checks that a data file the log lists is there with the size the log records: a
/// missing or truncated file would otherwise make readers fail, or lose its rows at the
/// next rewrite of its bucket.
pub(super) fn check_data_file(path: &Path, size: i64) -> Result<()> {
    let found = std::fs::metadata(path)
        .with_context(|| format!("data file {} listed in the log", path.display()))?
        .len();
    if i64::try_from(found).ok() != Some(size) {
        bail!(
            "data file {} has {found} bytes but the log records {size}: it was damaged",
            path.display()
        );
    }
    Ok(())
}

/// A data file of the table, as the log knows it.
#[derive(Clone, Debug)]
pub(super) struct DataFile {
    /// Its path, relative to the table's directory.
    pub path: String,
    /// Its size in bytes, as the log records it.
    pub size: i64,
}

impl DataFile {
    /// The action that removes it from the table.
    fn remove(&self, now_ms: i64) -> Action {
        Action::Remove(Remove {
            path: self.path.clone(),
            data_change: true,
            deletion_timestamp: Some(now_ms),
            extended_file_metadata: Some(true),
            partition_values: Some(HashMap::new()),
            size: Some(self.size),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
        })
    }
}

/// An existing table as [`load`] finds it.
pub(super) struct Loaded {
    /// Its log.
    pub state: LogState,
    /// The version of its `txn` with the sink's app id: the last logical time committed.
    pub last_time: Option<u64>,
    /// Its live data files.
    pub files: Vec<DataFile>,
}

/// The table in `dir` with its last `txn` version for `app`; `None` when `dir` holds no
/// Delta table yet.
pub(super) fn load(dir: &Path, app: &str) -> Result<Option<Loaded>> {
    runtime()?.block_on(async {
        let Some(table) = open_table(dir).await? else {
            return Ok(None);
        };
        let log_store = table.log_store();
        let snapshot = table.snapshot()?.clone();
        let last = snapshot
            .transaction_version(log_store.as_ref(), app)
            .await?;
        let files = snapshot
            .log_data()
            .iter()
            .map(|f| DataFile {
                path: f.path().to_string(),
                size: f.size(),
            })
            .collect();
        Ok(Some(Loaded {
            state: (log_store, snapshot),
            last_time: last.map(|v| v as u64),
            files,
        }))
    })
}

/// Delta's VACUUM of the table in `dir`: deletes the data files removed more than
/// `retention` ago. Returns the log after it and how many files it deleted.
pub(super) fn vacuum(dir: &Path, retention: std::time::Duration) -> Result<(LogState, usize)> {
    let retention =
        chrono::Duration::from_std(retention).context("a vacuum retention within range")?;
    runtime()?.block_on(async {
        let table = open_table(dir)
            .await?
            .ok_or_else(|| anyhow!("the Delta table at {} is gone", dir.display()))?;
        let (table, metrics) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await?;
        let snapshot = table.snapshot()?.clone();
        Ok(((table.log_store(), snapshot), metrics.files_deleted.len()))
    })
}

/// How a table's Delta data files are encoded: Snappy, as delta-rs and Spark write
/// them, with dictionaries for the text columns only. Ids, dimensions and members
/// repeat, and their dictionaries keep the files small; counts, sums and instants are
/// mostly distinct, and building a dictionary for them, only to drop it when it grows
/// too large, took 3% of a backfill's instructions.
fn data_file_properties(spec: &TableSpec) -> WriterProperties {
    spec.columns
        .iter()
        .filter(|column| column.ty == ColumnType::Str)
        .fold(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_dictionary_enabled(false),
            |builder, column| {
                builder.set_column_dictionary_enabled(ColumnPath::from(column.name), true)
            },
        )
        .build()
}

/// One atomic commit of logical time `time` to the table of `spec` in `dir` (created
/// by this commit when `state` is `None`): removes the `removed` files, adds one new
/// data file set per batch of `written` (`None` adds nothing), and records a `txn` of
/// app id `app` and version `time`. Returns the log after the commit and the files
/// written for each batch, in order. Nothing is committed if any step fails.
pub(super) fn commit(
    dir: &Path,
    spec: &TableSpec,
    app: &str,
    state: Option<&LogState>,
    time: u64,
    removed: &[DataFile],
    written: &[Option<RecordBatch>],
) -> Result<(LogState, Vec<Vec<DataFile>>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let url = dir_url(dir)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut actions: Vec<Action> = removed.iter().map(|f| f.remove(now_ms)).collect();
    let txn = Transaction::new(app, time as i64);
    runtime()?.block_on(async {
        let mut writer = RecordBatchWriter::try_new(url.as_str(), schema(spec, false), None, None)?
            .with_writer_properties(data_file_properties(spec));
        let mut new_files = Vec::with_capacity(written.len());
        for batch in written {
            let mut files = Vec::new();
            if let Some(batch) = batch {
                writer.write(batch.clone()).await?;
                for add in writer.flush().await? {
                    files.push(DataFile {
                        path: add.path.clone(),
                        size: add.size,
                    });
                    actions.push(Action::Add(Add {
                        data_change: true,
                        ..add
                    }));
                }
            }
            new_files.push(files);
        }
        let properties = CommitProperties::default().with_application_transaction(txn);
        let state = match state {
            None => {
                let table = DeltaTable::try_from_url(url.clone()).await?;
                let table = table
                    .create()
                    .with_table_name(spec.name)
                    .with_save_mode(SaveMode::ErrorIfExists)
                    .with_columns(
                        spec.columns
                            .iter()
                            .map(|c| StructField::new(c.name, delta_type(c.ty), c.nullable)),
                    )
                    .with_actions(actions)
                    .with_commit_properties(properties)
                    .await?;
                let snapshot = table.snapshot()?.clone();
                (table.log_store(), snapshot)
            }
            Some((log_store, snapshot)) => {
                let operation = DeltaOperation::StreamingUpdate {
                    output_mode: OutputMode::Update,
                    query_id: app.to_string(),
                    epoch_id: time as i64,
                };
                // delta-rs lists the whole `_delta_log` to clean up expired log files
                // after every commit unless told otherwise: O(commits) per commit. Clean
                // up only at the commits that also write a checkpoint, as Spark does.
                let version = snapshot.version() + 1;
                let interval = snapshot.table_config().checkpoint_interval().get();
                let properties =
                    properties.with_cleanup_expired_logs(Some((version + 1) % interval == 0));
                let finalized = CommitBuilder::from(properties)
                    .with_actions(actions)
                    .build(Some(snapshot), log_store.clone(), operation)
                    .await?;
                (log_store.clone(), finalized.snapshot())
            }
        };
        Ok((state, new_files))
    })
}
