//! The Delta Lake sink: every written table is also a Delta Lake table at
//! `OUT/tables/<table>/` holding the table's current contents (contract "Outputs").
//!
//! Design:
//! - All workers' updates of a table are exchanged to worker 0 of the cluster, which
//!   buffers them by their own logical time, consolidates them, and commits time `t` once
//!   the input frontier has passed `t`: one Delta commit per logical time at which the
//!   table changed, never an empty one. (No `consolidate()` arrangement upstream: the
//!   per-time consolidation on worker 0 gives the same commits at half the run's cost.)
//! - The table's rows are split into buckets (see [`bucket_of`]): by the UTC day of the
//!   first instant key column, or the 31-day block of the first date key column, else by
//!   a stable hash of the first key column into [`HASH_BUCKETS`]. New data mostly lands
//!   in the latest days, so most commits touch few buckets. Each bucket is stored as its
//!   own data file(s). A commit rewrites only the buckets whose rows changed: it
//!   `Remove`s their old files and `Add`s the new ones in one atomic commit.
//! - Bounded memory: the committing worker knows every bucket's data files, but keeps
//!   the rows of only the [`CACHED_BUCKETS`] most recently committed buckets in memory
//!   (the least recently committed one is evicted first). A commit that touches a bucket
//!   whose rows are not cached reads them back from the bucket's own data file(s), so
//!   memory does not grow with the table (`sessions` grows with the events).
//! - Exactly once: each commit carries a `txn` action with app id `tidemark-<table>` and
//!   version = the logical time. On start the sink reads the last committed version and
//!   skips every time at or below it, so a restarted run never commits a time twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use arrow::array::RecordBatch;
use arrow::compute::cast;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, DataType as DeltaType, Remove, StructField, Transaction};
use deltalake::logstore::LogStoreRef;
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::table::config::TablePropertiesExt;
use deltalake::table::state::DeltaTableState;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::DeltaTable;
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tidemark_dataflows::tables::{Cell, ColumnType, TableRow, TableSpec};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use url::Url;

use super::delta_thread::DeltaCommitThread;
use super::SinkReport;
use crate::arrow_rows::{batch_to_changes, rows_to_batch, schema};

/// Number of hash buckets of a table with no instant or date key column.
pub const HASH_BUCKETS: u64 = 16;

/// Width of a bucket of a date-keyed table, in days.
pub const DATE_BUCKET_DAYS: i32 = 31;

/// Number of buckets whose rows the committing worker keeps in memory: the most recently
/// committed ones. The rows of any other bucket are read back from its data files when a
/// commit touches it.
pub const CACHED_BUCKETS: usize = 32;

/// The directory of a table's Delta table.
pub fn delta_dir(out: &Path, table: &str) -> PathBuf {
    out.join("tables").join(table)
}

/// The Delta `txn` application id of a table's commits.
pub fn app_id(table: &str) -> String {
    format!("tidemark-{table}")
}

/// The Delta type of a contract column type.
pub fn delta_type(ty: ColumnType) -> DeltaType {
    match ty {
        ColumnType::Str => DeltaType::STRING,
        ColumnType::Int => DeltaType::LONG,
        ColumnType::Float => DeltaType::DOUBLE,
        ColumnType::Bool => DeltaType::BOOLEAN,
        ColumnType::Timestamp => DeltaType::TIMESTAMP,
        ColumnType::Date => DeltaType::DATE,
    }
}

/// The bucket of a row, the same in every run and process: the UTC day of the table's
/// first instant key column, or the [`DATE_BUCKET_DAYS`]-day block of its first date key
/// column, or else a hash of its first key column into [`HASH_BUCKETS`] (so all rows of
/// one quarantined file share a bucket).
pub fn bucket_of(spec: &TableSpec, row: &[Cell]) -> i64 {
    let key = &spec.columns[..spec.key_len.min(spec.columns.len())];
    let time_key = key
        .iter()
        .position(|c| matches!(c.ty, ColumnType::Timestamp | ColumnType::Date));
    match time_key.map(|index| &row[index]) {
        Some(Cell::Timestamp(ms)) => ms.div_euclid(86_400_000),
        Some(Cell::Date(day)) => i64::from(day.div_euclid(DATE_BUCKET_DAYS)),
        Some(_) => i64::MIN,
        None => {
            let mut bytes = Vec::with_capacity(32);
            match row.first() {
                Some(Cell::Str(s)) => bytes.extend_from_slice(s.as_bytes()),
                Some(Cell::Int(v)) => bytes.extend_from_slice(&v.to_le_bytes()),
                Some(Cell::Float(v)) => bytes.extend_from_slice(&v.to_bits().to_le_bytes()),
                Some(Cell::Bool(v)) => bytes.push(u8::from(*v)),
                Some(Cell::Timestamp(v)) => bytes.extend_from_slice(&v.to_le_bytes()),
                Some(Cell::Date(v)) => bytes.extend_from_slice(&v.to_le_bytes()),
                Some(Cell::Null) | None => {}
            }
            (xxhash_rust::xxh3::xxh3_64(&bytes) % HASH_BUCKETS) as i64
        }
    }
}

/// The process-wide runtime that drives delta-rs' async calls from worker threads.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
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
fn dir_url(dir: &Path) -> Result<Url> {
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
fn read_data_file(path: &Path, spec: &TableSpec) -> Result<Vec<Vec<Cell>>> {
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
fn check_data_file(path: &Path, size: i64) -> Result<()> {
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
struct DataFile {
    path: String,
    size: i64,
}

impl DataFile {
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

/// The rows of the [`CACHED_BUCKETS`] most recently committed buckets.
#[derive(Default)]
struct RowCache {
    /// By bucket: when it was last committed (a tick of `clock`) and its rows (sorted,
    /// repeated by multiplicity; never empty).
    entries: HashMap<i64, (u64, RecordBatch)>,
    clock: u64,
}

impl RowCache {
    fn get(&self, bucket: i64) -> Option<&RecordBatch> {
        self.entries.get(&bucket).map(|(_, rows)| rows)
    }

    /// Records the rows of a bucket just committed (`None`: it is now empty), evicting
    /// the least recently committed buckets beyond [`CACHED_BUCKETS`].
    fn put(&mut self, bucket: i64, rows: Option<RecordBatch>) {
        let Some(rows) = rows else {
            self.entries.remove(&bucket);
            return;
        };
        self.clock += 1;
        self.entries.insert(bucket, (self.clock, rows));
        while self.entries.len() > CACHED_BUCKETS {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(bucket, _)| *bucket)
                .expect("the cache is not empty");
            self.entries.remove(&oldest);
        }
    }
}

/// What [`DeltaTableSink::commit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A new Delta version was committed.
    Committed {
        /// The Delta table version written.
        version: u64,
        /// Buckets rewritten.
        buckets: usize,
    },
    /// The time was at or below the last committed txn version: nothing was written.
    AlreadyCommitted,
    /// The changes summed to nothing: nothing was written.
    NoChange,
}

/// The committing side of one table's Delta table: the live data files of each bucket,
/// the rows of the [`CACHED_BUCKETS`] most recently committed buckets (the others are
/// read back from their files when needed), and the last committed logical time.
pub struct DeltaTableSink {
    spec: TableSpec,
    dir: PathBuf,
    app_id: String,
    state: Option<(LogStoreRef, DeltaTableState)>,
    last_time: Option<u64>,
    /// The data files of each non-empty bucket (files holding rows of one bucket only).
    buckets: BTreeMap<i64, Vec<DataFile>>,
    cache: RowCache,
    /// Files not laid out one bucket a file (written by something else): removed, and
    /// their rows rewritten, at the next commit.
    foreign: Vec<DataFile>,
    /// The rows of the `foreign` files by bucket, until the next commit rewrites every
    /// one of these buckets.
    foreign_rows: BTreeMap<i64, Vec<Vec<Cell>>>,
}

impl DeltaTableSink {
    /// Opens (or prepares to create) the Delta table of `spec` in `dir`, loading its
    /// data files (read once to find each one's bucket; no rows are kept, except those of
    /// files holding several buckets, until the next commit rewrites them) and its last
    /// committed logical time.
    pub fn open(dir: &Path, spec: TableSpec) -> Result<Self> {
        let mut sink = DeltaTableSink {
            spec,
            dir: dir.to_path_buf(),
            app_id: app_id(spec.name),
            state: None,
            last_time: None,
            buckets: BTreeMap::new(),
            cache: RowCache::default(),
            foreign: Vec::new(),
            foreign_rows: BTreeMap::new(),
        };
        let loaded = runtime()?.block_on(async {
            let Some(table) = open_table(dir).await? else {
                return Ok::<_, anyhow::Error>(None);
            };
            let log_store = table.log_store();
            let snapshot = table.snapshot()?.clone();
            let last = snapshot
                .transaction_version(log_store.as_ref(), &sink.app_id)
                .await?;
            let files: Vec<DataFile> = snapshot
                .log_data()
                .iter()
                .map(|f| DataFile {
                    path: f.path().to_string(),
                    size: f.size(),
                })
                .collect();
            Ok(Some((log_store, snapshot, last, files)))
        })?;
        let Some((log_store, snapshot, last, files)) = loaded else {
            return Ok(sink);
        };
        sink.last_time = last.map(|v| v as u64);
        sink.state = Some((log_store, snapshot));
        for file in &files {
            check_data_file(&dir.join(&file.path), file.size)?;
        }
        for file in files {
            let file_rows = read_data_file(&dir.join(&file.path), &spec)?;
            let mut buckets: Vec<i64> = file_rows.iter().map(|row| bucket_of(&spec, row)).collect();
            buckets.sort_unstable();
            buckets.dedup();
            if let [bucket] = buckets[..] {
                sink.buckets.entry(bucket).or_default().push(file);
            } else {
                for row in file_rows {
                    sink.foreign_rows
                        .entry(bucket_of(&spec, &row))
                        .or_default()
                        .push(row);
                }
                sink.foreign.push(file);
            }
        }
        Ok(sink)
    }

    /// Deletes the data files that commits removed more than `retention` ago (Delta's
    /// VACUUM, which records VACUUM START and END in the log), and returns how many it
    /// deleted. Readers of a version older than `retention` may then miss files; the
    /// current version is never touched.
    pub fn vacuum(&mut self, retention: std::time::Duration) -> Result<usize> {
        if self.state.is_none() {
            return Ok(0);
        }
        let retention =
            chrono::Duration::from_std(retention).context("a vacuum retention within range")?;
        let dir = self.dir.clone();
        let (log_store, snapshot, deleted) = runtime()?.block_on(async {
            let table = open_table(&dir)
                .await?
                .ok_or_else(|| anyhow!("the Delta table at {} is gone", dir.display()))?;
            let (table, metrics) = table
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .await?;
            let snapshot = table.snapshot()?.clone();
            Ok::<_, anyhow::Error>((table.log_store(), snapshot, metrics.files_deleted.len()))
        })?;
        self.state = Some((log_store, snapshot));
        Ok(deleted)
    }

    /// The last logical time committed, if any.
    pub fn last_time(&self) -> Option<u64> {
        self.last_time
    }

    /// The current contents (sorted rows, repeated by multiplicity): the cached buckets'
    /// rows from memory, the others read back from their data files.
    pub fn rows(&self) -> Result<Vec<Vec<Cell>>> {
        let buckets: BTreeSet<i64> = self
            .buckets
            .keys()
            .chain(self.foreign_rows.keys())
            .copied()
            .collect();
        let mut rows = Vec::new();
        for bucket in buckets {
            rows.extend(self.bucket_rows(bucket)?);
        }
        rows.sort();
        Ok(rows)
    }

    /// The current rows of `bucket` (repeated by multiplicity, in no particular order):
    /// from the cache, else read back from the bucket's data files (plus its rows in
    /// `foreign` files not rewritten yet).
    fn bucket_rows(&self, bucket: i64) -> Result<Vec<Vec<Cell>>> {
        if let Some(batch) = self.cache.get(bucket) {
            return Ok(batch_to_changes(&self.spec, batch, false)?
                .into_iter()
                .map(|(row, _, _)| row)
                .collect());
        }
        let mut rows = Vec::new();
        for file in self.buckets.get(&bucket).into_iter().flatten() {
            rows.extend(read_data_file(&self.dir.join(&file.path), &self.spec)?);
        }
        if let Some(foreign) = self.foreign_rows.get(&bucket) {
            rows.extend(foreign.iter().cloned());
        }
        Ok(rows)
    }

    /// Commits the changes (row, diff) of logical time `time` as one Delta version, with a
    /// txn of version `time`. A time at or below the last committed one is skipped. The
    /// rows of touched buckets that are not cached are read back from their data files;
    /// the rewritten buckets become the most recently committed ones in the cache.
    pub fn commit(
        &mut self,
        time: u64,
        mut changes: Vec<(Vec<Cell>, i64)>,
    ) -> Result<CommitOutcome> {
        if self.last_time.is_some_and(|last| time <= last) {
            return Ok(CommitOutcome::AlreadyCommitted);
        }
        let spec = self.spec;
        consolidate(&mut changes);
        let mut by_bucket: BTreeMap<i64, Vec<(Vec<Cell>, i64)>> = BTreeMap::new();
        for (row, diff) in changes {
            if diff != 0 {
                by_bucket
                    .entry(bucket_of(&spec, &row))
                    .or_default()
                    .push((row, diff));
            }
        }
        for bucket in self.foreign_rows.keys() {
            by_bucket.entry(*bucket).or_default();
        }
        // The new contents of every touched bucket; nothing is changed until the commit lands.
        let mut rewritten: Vec<(i64, Option<RecordBatch>)> = Vec::new();
        for (bucket, diffs) in by_bucket {
            let mut counts: BTreeMap<Vec<Cell>, i64> = BTreeMap::new();
            for row in self.bucket_rows(bucket)? {
                *counts.entry(row).or_insert(0) += 1;
            }
            let mut changed = self.foreign_rows.contains_key(&bucket);
            for (row, diff) in diffs {
                *counts.entry(row).or_insert(0) += diff;
                changed = true;
            }
            if !changed {
                continue;
            }
            let mut rows = Vec::new();
            for (row, count) in counts {
                if count < 0 {
                    bail!("row {row:?} would be in the table {count} times at time {time}");
                }
                rows.extend(std::iter::repeat_n(row, count as usize));
            }
            let batch = if rows.is_empty() {
                None
            } else {
                Some(rows_to_batch(&spec, &rows)?)
            };
            rewritten.push((bucket, batch));
        }
        if rewritten.is_empty() && self.foreign.is_empty() {
            return Ok(CommitOutcome::NoChange);
        }

        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let url = dir_url(&self.dir)?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = self.foreign.iter().map(|f| f.remove(now_ms)).collect();
        let mut new_files: Vec<(i64, Vec<DataFile>)> = Vec::new();
        let txn = Transaction::new(&self.app_id, time as i64);
        let state = self.state.take();
        let result = runtime()?.block_on(async {
            let mut writer =
                RecordBatchWriter::try_new(url.as_str(), schema(&spec, false), None, None)?;
            for (bucket, batch) in &rewritten {
                if let Some(old) = self.buckets.get(bucket) {
                    actions.extend(old.iter().map(|f| f.remove(now_ms)));
                }
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
                new_files.push((*bucket, files));
            }
            let properties = CommitProperties::default().with_application_transaction(txn);
            match &state {
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
                    Ok::<_, anyhow::Error>((table.log_store(), snapshot))
                }
                Some((log_store, snapshot)) => {
                    let operation = DeltaOperation::StreamingUpdate {
                        output_mode: OutputMode::Update,
                        query_id: self.app_id.clone(),
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
                    Ok((log_store.clone(), finalized.snapshot()))
                }
            }
        });
        let (log_store, snapshot) = match result {
            Ok(done) => done,
            Err(error) => {
                self.state = state;
                return Err(error);
            }
        };
        let version = snapshot.version();
        self.state = Some((log_store, snapshot));
        self.last_time = Some(time);
        self.foreign.clear();
        self.foreign_rows.clear();
        let buckets = rewritten.len();
        for ((bucket, rows), (_, files)) in rewritten.into_iter().zip(new_files) {
            if files.is_empty() {
                self.buckets.remove(&bucket);
                self.cache.put(bucket, None);
            } else {
                self.buckets.insert(bucket, files);
                self.cache.put(bucket, rows);
            }
        }
        Ok(CommitOutcome::Committed { version, buckets })
    }
}

/// Updates buffered by logical time, with the capability to report each time.
type Pending<R> = BTreeMap<u64, (Capability<u64>, Vec<(R, isize)>)>;

/// Writes `rows` as the Delta table `OUT/tables/<table>/`: every worker's updates are
/// exchanged to worker 0 of the cluster, which commits each completed logical time at
/// which the table changed as one Delta version, on the table's own commit thread (see
/// [`DeltaCommitThread`]). The returned stream carries a [`SinkReport`] per committed
/// time and holds that time open until the commit is done. A failed commit stops the
/// run with a message naming the table and its path.
pub fn delta_sink<'s, R>(
    rows: VecCollection<'s, u64, R>,
    out: &Path,
    retention: std::time::Duration,
) -> StreamVec<'s, u64, SinkReport>
where
    R: TableRow + ExchangeData + Hashable,
{
    let table = R::SPEC.name;
    let dir = delta_dir(out, table);
    let out = out.to_path_buf();
    let pact = Exchange::new(|_: &(R, u64, isize)| 0u64);
    let scope = rows.inner.scope();
    super::clear_failure(&out);
    rows.inner.unary_frontier(pact, &format!("DeltaSink({table})"), move |_cap, info| {
        let mut pending: Pending<R> = BTreeMap::new();
        // Times handed to the commit thread, with the capability to report each.
        let mut committing: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
        let mut thread: Option<DeltaCommitThread> = None;
        let activator = scope.activator_for(Rc::clone(&info.address));
        let wake = scope.worker().sync_activator_for(info.address.to_vec());
        move |(input, frontier), output| {
            let live = !frontier.frontier().is_empty() || !pending.is_empty() || !committing.is_empty();
            super::check_failure(&out, &activator, live);
            input.for_each(|cap, data| {
                for (row, time, diff) in data.drain(..) {
                    pending.entry(time).or_insert_with(|| (cap.delayed(&time, 0), Vec::new())).1.push((row, diff));
                }
            });
            while let Some(entry) = pending.first_entry() {
                if frontier.frontier().less_equal(entry.key()) {
                    break;
                }
                let time = *entry.key();
                let (cap, mut updates) = entry.remove();
                consolidate(&mut updates);
                if updates.is_empty() {
                    continue;
                }
                let thread = match &mut thread {
                    Some(thread) => thread,
                    None => thread.insert(DeltaCommitThread::start(dir.clone(), R::SPEC, wake.clone(), retention).unwrap_or_else(|error| {
                        super::fail(&out, format!("cannot write the Delta table `{table}` at {}: {error:#}", dir.display()))
                    })),
                };
                let changes: Vec<(Vec<Cell>, i64)> =
                    updates.iter().map(|(row, diff)| (row.cells(), *diff as i64)).collect();
                thread.submit(time, changes);
                committing.insert(time, cap);
            }
            for finished in thread.as_ref().map(DeltaCommitThread::take_finished).unwrap_or_default() {
                let Some(cap) = committing.remove(&finished.time) else {
                    continue;
                };
                match finished.outcome {
                    Ok(CommitOutcome::Committed { .. }) => {
                        output.session(&cap).give(SinkReport { table: table.to_string(), time: finished.time, rows: finished.rows });
                    }
                    Ok(CommitOutcome::AlreadyCommitted | CommitOutcome::NoChange) => {}
                    Err(message) => super::fail(&out, message),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_dataflows::tables::{DAILY_ACTIVE, SESSIONS};

    fn day(d: i32, n: i64) -> Vec<Cell> {
        vec![Cell::Date(d), Cell::Int(n)]
    }

    fn log_versions(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("_delta_log"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count()
    }

    fn sorted(mut rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
        rows.sort();
        rows
    }

    #[test]
    fn buckets_follow_time_keys_else_a_hash_of_the_first_key_column() {
        use tidemark_dataflows::tables::QUARANTINE;
        let day_ms = 86_400_000;
        let s = |start: i64| vec![Cell::Str("u".into()), Cell::Timestamp(start)];
        assert_eq!(bucket_of(&SESSIONS, &s(3 * day_ms)), 3);
        assert_eq!(bucket_of(&SESSIONS, &s(4 * day_ms - 1)), 3);
        assert_eq!(bucket_of(&SESSIONS, &s(-1)), -1);
        assert_eq!(bucket_of(&DAILY_ACTIVE, &day(30, 1)), 0);
        assert_eq!(bucket_of(&DAILY_ACTIVE, &day(31, 1)), 1);
        let q = |file: &str, row: i64| vec![Cell::Str(file.into()), Cell::Int(row)];
        assert_eq!(
            bucket_of(&QUARANTINE, &q("a.csv", 1)),
            bucket_of(&QUARANTINE, &q("a.csv", 9))
        );
        let hashed: BTreeSet<i64> = (0..100)
            .map(|i| bucket_of(&QUARANTINE, &q(&format!("f{i}"), 0)))
            .collect();
        assert!(hashed.len() > 8 && hashed.iter().all(|b| (0..HASH_BUCKETS as i64).contains(b)));
    }

    #[test]
    fn a_replayed_time_adds_no_commit_in_this_or_a_restarted_sink() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tables").join("daily_active");
        let mut sink = DeltaTableSink::open(&dir, DAILY_ACTIVE).unwrap();
        assert_eq!(sink.last_time(), None);
        assert!(
            !dir.exists(),
            "the directory is created on the first commit"
        );
        assert_eq!(last_committed_version(&dir).unwrap(), None);

        let first = vec![(day(1, 10), 1), (day(2, 20), 1)];
        assert!(matches!(
            sink.commit(0, first.clone()).unwrap(),
            CommitOutcome::Committed { version: 0, .. }
        ));
        assert_eq!(
            sink.commit(0, first.clone()).unwrap(),
            CommitOutcome::AlreadyCommitted
        );
        assert_eq!(log_versions(&dir), 1);

        let update = vec![(day(1, 10), -1), (day(1, 11), 1)];
        assert_eq!(
            sink.commit(1, update.clone()).unwrap(),
            CommitOutcome::Committed {
                version: 1,
                buckets: 1
            }
        );
        assert_eq!(
            sink.commit(1, update.clone()).unwrap(),
            CommitOutcome::AlreadyCommitted
        );
        assert_eq!(
            sink.commit(0, first).unwrap(),
            CommitOutcome::AlreadyCommitted
        );
        assert_eq!(log_versions(&dir), 2);
        assert_eq!(last_committed_version(&dir).unwrap(), Some(1));
        let expected = vec![day(1, 11), day(2, 20)];
        assert_eq!(read_delta_table(&dir, &DAILY_ACTIVE).unwrap(), expected);

        // A restart: the state comes back from the table, and replays are skipped.
        drop(sink);
        let mut sink = DeltaTableSink::open(&dir, DAILY_ACTIVE).unwrap();
        assert_eq!(sink.last_time(), Some(1));
        assert_eq!(sink.rows().unwrap(), expected);
        assert_eq!(
            sink.commit(1, update).unwrap(),
            CommitOutcome::AlreadyCommitted
        );
        assert_eq!(log_versions(&dir), 2);
        // Multiplicity: a row counted twice appears twice.
        assert_eq!(
            sink.commit(2, vec![(day(2, 20), -1), (day(3, 30), 2)])
                .unwrap(),
            CommitOutcome::Committed {
                version: 2,
                buckets: if bucket_of(&DAILY_ACTIVE, &day(2, 0))
                    == bucket_of(&DAILY_ACTIVE, &day(3, 0))
                {
                    1
                } else {
                    2
                }
            }
        );
        let expected = vec![day(1, 11), day(3, 30), day(3, 30)];
        assert_eq!(read_delta_table(&dir, &DAILY_ACTIVE).unwrap(), expected);
        assert_eq!(last_committed_version(&dir).unwrap(), Some(2));

        // Nothing to do: no commit.
        assert_eq!(
            sink.commit(3, vec![(day(5, 1), 1), (day(5, 1), -1)])
                .unwrap(),
            CommitOutcome::NoChange
        );
        assert_eq!(log_versions(&dir), 3);
        // A retraction of an absent row is an error and leaves the table as it was.
        assert!(sink.commit(4, vec![(day(9, 9), -1)]).is_err());
        assert_eq!(log_versions(&dir), 3);
        assert_eq!(sink.rows().unwrap(), expected);
        assert_eq!(read_delta_table(&dir, &DAILY_ACTIVE).unwrap(), expected);
    }

    #[test]
    fn a_commit_rewrites_only_the_changed_buckets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sessions");
        let session = |user: usize, start: i64, actions: i64| {
            vec![
                Cell::Str(format!("u{user}")),
                Cell::Timestamp(start),
                Cell::Null,
                Cell::Timestamp(start + 60_000),
                Cell::Float(60.0),
                Cell::Int(actions),
            ]
        };
        let mut sink = DeltaTableSink::open(&dir, SESSIONS).unwrap();
        let rows: Vec<Vec<Cell>> = (0..500)
            .map(|u| session(u, 1_700_000_000_000 + u as i64 * 3_600_000, 3))
            .collect();
        let days: BTreeSet<i64> = rows.iter().map(|r| bucket_of(&SESSIONS, r)).collect();
        assert_eq!(days.len(), 22, "500 hourly sessions span 22 UTC days");
        let outcome = sink
            .commit(0, rows.iter().map(|r| (r.clone(), 1)).collect())
            .unwrap();
        assert_eq!(
            outcome,
            CommitOutcome::Committed {
                version: 0,
                buckets: days.len()
            }
        );
        // Same key, new values: one bucket is rewritten, as one Remove and one Add.
        let changed = session(7, 1_700_000_000_000 + 7 * 3_600_000, 4);
        let outcome = sink
            .commit(5, vec![(rows[7].clone(), -1), (changed.clone(), 1)])
            .unwrap();
        assert_eq!(
            outcome,
            CommitOutcome::Committed {
                version: 1,
                buckets: 1
            }
        );
        let log = std::fs::read_to_string(dir.join("_delta_log").join(format!("{:020}.json", 1)))
            .unwrap();
        assert_eq!(log.matches("\"remove\"").count(), 1, "{log}");
        assert_eq!(log.matches("\"add\"").count(), 1, "{log}");
        assert!(
            log.contains("\"appId\":\"tidemark-sessions\"") && log.contains("\"version\":5"),
            "{log}"
        );
        let mut expected = rows.clone();
        expected[7] = changed;
        assert_eq!(
            read_delta_table(&dir, &SESSIONS).unwrap(),
            sorted(expected.clone())
        );
        // A restarted sink finds each file's bucket and again rewrites one.
        let mut sink = DeltaTableSink::open(&dir, SESSIONS).unwrap();
        assert!(sink.foreign.is_empty());
        let outcome = sink.commit(6, vec![(expected[0].clone(), -1)]).unwrap();
        assert_eq!(
            outcome,
            CommitOutcome::Committed {
                version: 2,
                buckets: 1
            }
        );
        expected.remove(0);
        assert_eq!(read_delta_table(&dir, &SESSIONS).unwrap(), sorted(expected));
    }

    /// Sums `changes` into `table` (row -> count), as the expected table contents.
    fn apply(table: &mut BTreeMap<Vec<Cell>, i64>, changes: &[(Vec<Cell>, i64)]) {
        for (row, diff) in changes {
            *table.entry(row.clone()).or_insert(0) += diff;
        }
        table.retain(|_, count| *count != 0);
    }

    fn expand(table: &BTreeMap<Vec<Cell>, i64>) -> Vec<Vec<Cell>> {
        table
            .iter()
            .flat_map(|(row, count)| std::iter::repeat_n(row.clone(), *count as usize))
            .collect()
    }

    #[test]
    fn buckets_beyond_the_cache_are_read_back_from_their_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("daily_active");
        let mut sink = DeltaTableSink::open(&dir, DAILY_ACTIVE).unwrap();
        let buckets = CACHED_BUCKETS as i32 + 8;
        // The first day of date bucket `b`.
        let first = |b: i32| b * DATE_BUCKET_DAYS;
        let mut expected: BTreeMap<Vec<Cell>, i64> = BTreeMap::new();

        // One commit filling more buckets than the cache holds: the lowest are evicted.
        let initial: Vec<(Vec<Cell>, i64)> = (0..buckets)
            .flat_map(|b| [(day(first(b), 1), 1), (day(first(b) + 1, 2), 1)])
            .collect();
        apply(&mut expected, &initial);
        assert_eq!(
            sink.commit(0, initial).unwrap(),
            CommitOutcome::Committed {
                version: 0,
                buckets: buckets as usize
            }
        );
        assert_eq!(sink.cache.entries.len(), CACHED_BUCKETS);
        assert!(sink.cache.get(0).is_none(), "bucket 0 was evicted");
        assert!(sink.cache.get(i64::from(buckets - 1)).is_some());

        // Touch every bucket once, in order, then bucket 0 again (evicted once more by
        // then): a commit per bucket, each changing a value and adding a row; the second
        // commit to bucket 0 also makes a row's multiplicity 2.
        let mut time = 0;
        for b in (0..buckets).chain([0]) {
            time += 1;
            let old = expected
                .keys()
                .find(|row| row[0] == Cell::Date(first(b)))
                .unwrap()
                .clone();
            let Cell::Int(n) = old[1] else { panic!() };
            let mut changes = vec![
                (old, -1),
                (day(first(b), n + 100), 1),
                (day(first(b) + 2 + (time % 29) as i32, 3), 1),
            ];
            if b == 0 {
                if time > 1 {
                    changes.push((day(first(b) + 1, 2), 1));
                }
                assert!(
                    sink.cache.get(0).is_none(),
                    "bucket 0 is read back from its file"
                );
            }
            apply(&mut expected, &changes);
            assert_eq!(
                sink.commit(time, changes).unwrap(),
                CommitOutcome::Committed {
                    version: time,
                    buckets: 1
                },
                "bucket {b}"
            );
            assert!(sink.cache.entries.len() <= CACHED_BUCKETS);
            assert_eq!(
                read_delta_table(&dir, &DAILY_ACTIVE).unwrap(),
                expand(&expected),
                "after the commit to bucket {b}"
            );
        }
        assert_eq!(expected[&day(first(0) + 1, 2)], 2);
        assert_eq!(sink.rows().unwrap(), expand(&expected));

        // A retraction of an absent row in an evicted bucket is still an error that
        // leaves the table as it was.
        assert!(sink.cache.get(1).is_none());
        assert!(sink
            .commit(time + 1, vec![(day(first(1), 999), -1)])
            .is_err());
        assert_eq!(
            read_delta_table(&dir, &DAILY_ACTIVE).unwrap(),
            expand(&expected)
        );

        // A bucket emptied by a commit leaves the table, the cache and the file list.
        let emptied: Vec<(Vec<Cell>, i64)> = expected
            .iter()
            .filter(|(row, _)| bucket_of(&DAILY_ACTIVE, row) == 2)
            .map(|(row, count)| (row.clone(), -count))
            .collect();
        apply(&mut expected, &emptied);
        time += 1;
        assert!(matches!(
            sink.commit(time, emptied).unwrap(),
            CommitOutcome::Committed { buckets: 1, .. }
        ));
        assert!(!sink.buckets.contains_key(&2) && sink.cache.get(2).is_none());

        // A restarted sink caches nothing and reads every bucket back.
        let mut sink = DeltaTableSink::open(&dir, DAILY_ACTIVE).unwrap();
        assert!(sink.cache.entries.is_empty() && sink.foreign.is_empty());
        assert_eq!(sink.rows().unwrap(), expand(&expected));
        let changes = vec![(day(first(3) + 5, 7), 1), (day(first(buckets), 8), 1)];
        apply(&mut expected, &changes);
        time += 1;
        assert!(matches!(
            sink.commit(time, changes).unwrap(),
            CommitOutcome::Committed { buckets: 2, .. }
        ));
        assert_eq!(
            read_delta_table(&dir, &DAILY_ACTIVE).unwrap(),
            expand(&expected)
        );
        assert_eq!(sink.rows().unwrap(), expand(&expected));
    }

    #[test]
    fn a_file_of_several_buckets_is_rewritten_bucket_by_bucket_at_the_next_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("daily_active");
        std::fs::create_dir_all(&dir).unwrap();
        // Buckets 0, 1 and 2 in one data file, as another writer might lay them out.
        let foreign_rows = vec![day(1, 1), day(40, 2), day(80, 3)];
        runtime().unwrap().block_on(async {
            let url = dir_url(&dir).unwrap();
            let mut writer =
                RecordBatchWriter::try_new(url.as_str(), schema(&DAILY_ACTIVE, false), None, None)
                    .unwrap();
            writer
                .write(rows_to_batch(&DAILY_ACTIVE, &foreign_rows).unwrap())
                .await
                .unwrap();
            let adds = writer.flush().await.unwrap();
            DeltaTable::try_from_url(url)
                .await
                .unwrap()
                .create()
                .with_table_name("daily_active")
                .with_columns(
                    DAILY_ACTIVE
                        .columns
                        .iter()
                        .map(|c| StructField::new(c.name, delta_type(c.ty), c.nullable)),
                )
                .with_actions(adds.into_iter().map(Action::Add))
                .await
                .unwrap();
        });
        let mut sink = DeltaTableSink::open(&dir, DAILY_ACTIVE).unwrap();
        assert_eq!(sink.last_time(), None);
        assert_eq!(sink.foreign.len(), 1);
        assert_eq!(sink.rows().unwrap(), foreign_rows);

        // A change to bucket 3 also rewrites buckets 0 to 2, a file each, and removes the
        // foreign file.
        let outcome = sink.commit(0, vec![(day(100, 4), 1)]).unwrap();
        assert_eq!(
            outcome,
            CommitOutcome::Committed {
                version: 1,
                buckets: 4
            }
        );
        let log = std::fs::read_to_string(dir.join("_delta_log").join(format!("{:020}.json", 1)))
            .unwrap();
        assert_eq!(log.matches("\"remove\"").count(), 1, "{log}");
        assert_eq!(log.matches("\"add\"").count(), 4, "{log}");
        let mut expected = foreign_rows.clone();
        expected.push(day(100, 4));
        assert_eq!(read_delta_table(&dir, &DAILY_ACTIVE).unwrap(), expected);
        assert!(sink.foreign.is_empty() && sink.foreign_rows.is_empty());
        assert_eq!(sink.rows().unwrap(), expected);

        // From then on a commit rewrites only what changed, in this sink or a restarted one.
        let mut sink = DeltaTableSink::open(&dir, DAILY_ACTIVE).unwrap();
        assert!(sink.foreign.is_empty());
        assert_eq!(
            sink.commit(1, vec![(day(40, 2), -1)]).unwrap(),
            CommitOutcome::Committed {
                version: 2,
                buckets: 1
            }
        );
        expected.remove(1);
        assert_eq!(read_delta_table(&dir, &DAILY_ACTIVE).unwrap(), expected);
        assert_eq!(sink.rows().unwrap(), expected);
    }
}
