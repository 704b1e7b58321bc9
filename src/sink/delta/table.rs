//! One table's Delta table as its committing worker keeps it: the live data files of
//! each bucket, the rows of recently committed buckets, and the last committed logical
//! time. [`DeltaTableSink::commit`] turns a logical time's changes into one Delta
//! version: [`super::plan`] says which buckets change, [`super::log`] writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use tidemark_dataflows::model::tables::{Cell, TableSpec};

use super::cache::RowCache;
use super::layout::{app_id, bucket_of};
use super::log::{self, check_data_file, read_data_file, DataFile, LogState};
use super::plan::plan_rewrites;
use crate::sink::arrow_rows::{batch_to_changes, rows_to_batch};

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
/// the rows of the [`super::CACHED_BUCKETS`] most recently committed buckets (the
/// others are read back from their files when needed), and the last committed logical
/// time.
pub struct DeltaTableSink {
    spec: TableSpec,
    dir: PathBuf,
    app_id: String,
    state: Option<LogState>,
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
        let Some(loaded) = log::load(dir, &sink.app_id)? else {
            return Ok(sink);
        };
        sink.last_time = loaded.last_time;
        sink.state = Some(loaded.state);
        for file in &loaded.files {
            check_data_file(&dir.join(&file.path), file.size)?;
        }
        for file in loaded.files {
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
        let (state, deleted) = log::vacuum(&self.dir, retention)?;
        self.state = Some(state);
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
    pub fn commit(&mut self, time: u64, changes: Vec<(Vec<Cell>, i64)>) -> Result<CommitOutcome> {
        if self.last_time.is_some_and(|last| time <= last) {
            return Ok(CommitOutcome::AlreadyCommitted);
        }
        let spec = self.spec;
        // The new contents of every touched bucket; nothing is changed until the commit
        // lands. Buckets with rows in foreign files are rewritten one bucket a file.
        let forced: Vec<i64> = self.foreign_rows.keys().copied().collect();
        let rewrites = plan_rewrites(&spec, time, changes, forced, |bucket| {
            self.bucket_rows(bucket)
        })?;
        if rewrites.is_empty() && self.foreign.is_empty() {
            return Ok(CommitOutcome::NoChange);
        }
        let mut removed = self.foreign.clone();
        let mut written = Vec::with_capacity(rewrites.len());
        for rewrite in &rewrites {
            if let Some(old) = self.buckets.get(&rewrite.bucket) {
                removed.extend(old.iter().cloned());
            }
            written.push(if rewrite.rows.is_empty() {
                None
            } else {
                Some(rows_to_batch(&spec, &rewrite.rows)?)
            });
        }
        let (state, new_files) = log::commit(
            &self.dir,
            &spec,
            &self.app_id,
            self.state.as_ref(),
            time,
            &removed,
            &written,
        )?;
        let version = state.1.version();
        self.state = Some(state);
        self.last_time = Some(time);
        self.foreign.clear();
        self.foreign_rows.clear();
        let buckets = rewrites.len();
        for ((rewrite, batch), files) in rewrites.into_iter().zip(written).zip(new_files) {
            if files.is_empty() {
                self.buckets.remove(&rewrite.bucket);
                self.cache.put(rewrite.bucket, None);
            } else {
                self.buckets.insert(rewrite.bucket, files);
                self.cache.put(rewrite.bucket, batch);
            }
        }
        Ok(CommitOutcome::Committed { version, buckets })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use deltalake::kernel::{Action, StructField};
    use deltalake::writer::{DeltaWriter, RecordBatchWriter};
    use deltalake::DeltaTable;
    use tidemark_dataflows::model::tables::{DAILY_ACTIVE, SESSIONS};

    use super::*;
    use crate::sink::arrow_rows::schema;
    use crate::sink::delta::layout::delta_type;
    use crate::sink::delta::log::{dir_url, runtime};
    use crate::sink::delta::{
        last_committed_version, read_delta_table, CACHED_BUCKETS, DATE_BUCKET_DAYS,
    };

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
                Cell::Str(format!("u{user}").into()),
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
