//! What a commit rewrites: the pure bucket diff of the Delta sink. Given a logical
//! time's changes and a way to read a bucket's current rows, it says which buckets
//! change and what each then holds. No delta-rs and no files here, so it is tested on
//! plain rows.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use tidemark_dataflows::model::tables::{Cell, TableSpec};

use super::layout::bucket_of;

/// One bucket's contents after a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The bucket (see [`bucket_of`]).
    pub bucket: i64,
    /// Its rows, sorted and repeated by multiplicity; empty when the bucket empties.
    pub rows: Vec<Vec<Cell>>,
}

/// The buckets that the changes `(row, diff)` of logical time `time` touch, plus the
/// buckets in `forced` (rows that must be rewritten whatever changes, such as those of
/// files not laid out one bucket a file), each with its new rows: `current(bucket)`'s
/// rows plus the changes. Changes that cancel touch nothing. A row whose count would
/// fall below zero is an error: the changes do not fit the table as it is.
///
/// A bucket the table does not hold yet, whose changes only add rows, takes them as
/// they come, repeated by their diffs, with no sort: the same rows as consolidating
/// first, and the usual case of a backfill, whose times mostly open new buckets. Rows
/// kept in that order are sorted when a later commit merges changes into them.
pub fn plan_rewrites(
    spec: &TableSpec,
    time: u64,
    changes: Vec<(Vec<Cell>, i64)>,
    forced: impl IntoIterator<Item = i64>,
    mut current: impl FnMut(i64) -> Result<Vec<Vec<Cell>>>,
) -> Result<Vec<Rewrite>> {
    let mut by_bucket: BTreeMap<i64, Vec<(Vec<Cell>, i64)>> = BTreeMap::new();
    for (row, diff) in changes {
        by_bucket
            .entry(bucket_of(spec, &row))
            .or_default()
            .push((row, diff));
    }
    let forced: BTreeSet<i64> = forced.into_iter().collect();
    for bucket in &forced {
        by_bucket.entry(*bucket).or_default();
    }
    let mut rewrites = Vec::with_capacity(by_bucket.len());
    for (bucket, mut diffs) in by_bucket {
        let only_added = !diffs.is_empty() && diffs.iter().all(|(_, diff)| *diff > 0);
        if !only_added {
            // Consolidated per bucket (a row has one bucket): many small sorts of
            // rows, which are costly to compare, instead of one large one.
            consolidate_rows(&mut diffs);
            if diffs.is_empty() && !forced.contains(&bucket) {
                continue;
            }
        }
        let held = current(bucket)?;
        let rows = if only_added && held.is_empty() {
            diffs
                .into_iter()
                .flat_map(|(row, diff)| std::iter::repeat_n(row, diff as usize))
                .collect()
        } else {
            if only_added {
                consolidate_rows(&mut diffs);
            }
            apply_diffs(held, diffs, time)?
        };
        rewrites.push(Rewrite { bucket, rows });
    }
    Ok(rewrites)
}

/// Sorts `diffs` by row and sums the diffs of equal rows, dropping those that cancel:
/// differential's `consolidate`, but with an unstable sort, which moves the rows (and
/// compares them, cell by cell) less than a stable one and needs no scratch buffer.
fn consolidate_rows(diffs: &mut Vec<(Vec<Cell>, i64)>) {
    diffs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    diffs.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    diffs.retain(|(_, diff)| *diff != 0);
}

/// A bucket's rows after the changes `diffs` (sorted by row, one entry per row, as
/// [`consolidate_rows`] leaves them): one merge pass over the current rows, which come sorted
/// from the cache and from the files the sink wrote (they are sorted here otherwise).
fn apply_diffs(
    mut current: Vec<Vec<Cell>>,
    diffs: Vec<(Vec<Cell>, i64)>,
    time: u64,
) -> Result<Vec<Vec<Cell>>> {
    if !current.is_sorted() {
        current.sort_unstable();
    }
    let mut rows = Vec::with_capacity(current.len() + diffs.len());
    let mut current = current.into_iter().peekable();
    for (row, diff) in diffs {
        while current
            .next_if(|held| *held < row)
            .map(|held| rows.push(held))
            .is_some()
        {}
        let mut count = diff;
        while current.next_if(|held| *held == row).is_some() {
            count += 1;
        }
        if count < 0 {
            bail!("row {row:?} would be in the table {count} times at time {time}");
        }
        rows.extend(std::iter::repeat_n(row, count as usize));
    }
    rows.extend(current);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_dataflows::model::tables::DAILY_ACTIVE;

    /// A `daily_active` row: buckets are 31-day blocks of `day`.
    fn day(d: i32, n: i64) -> Vec<Cell> {
        vec![Cell::Date(d), Cell::Int(n)]
    }

    proptest::proptest! {
        /// `consolidate_rows` leaves what differential's `consolidate` leaves: every
        /// row once, sorted, with its summed diff, and no row whose diffs cancel.
        #[test]
        fn consolidating_rows_agrees_with_differential(
            diffs in proptest::collection::vec((0..4i32, 0..3i64, -2..3i64), 0..40)
        ) {
            let mut ours: Vec<(Vec<Cell>, i64)> =
                diffs.iter().map(|&(d, n, diff)| (day(d, n), diff)).collect();
            let mut theirs = ours.clone();
            consolidate_rows(&mut ours);
            differential_dataflow::consolidation::consolidate(&mut theirs);
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    proptest::proptest! {
        /// Every touched bucket holds the table's rows plus the changes, as a multiset
        /// (a model: counts per row), whether it is new and only added to (taken
        /// unsorted) or merged; untouched buckets are not rewritten; a count below
        /// zero is an error.
        #[test]
        fn buckets_hold_the_rows_plus_the_changes(
            held in proptest::collection::vec((0..300i32, 0..3i64), 0..6),
            changes in proptest::collection::vec(
                ((0..300i32, 0..3i64), proptest::prop_oneof![proptest::strategy::Just(-1i64), 1..3i64]),
                0..40,
            ),
        ) {
            let held: Vec<Vec<Cell>> = held.iter().map(|&(d, n)| day(d, n)).collect();
            let changes: Vec<(Vec<Cell>, i64)> =
                changes.iter().map(|&((d, n), diff)| (day(d, n), diff)).collect();
            // The model: every row's count after the changes, and the rows whose count moved.
            let mut counts: BTreeMap<Vec<Cell>, i64> = BTreeMap::new();
            for row in &held {
                *counts.entry(row.clone()).or_default() += 1;
            }
            let mut moved: BTreeMap<Vec<Cell>, i64> = BTreeMap::new();
            for (row, diff) in &changes {
                *counts.entry(row.clone()).or_default() += diff;
                *moved.entry(row.clone()).or_default() += diff;
            }
            let touched: BTreeSet<i64> = moved
                .iter()
                .filter(|(_, net)| **net != 0)
                .map(|(row, _)| bucket_of(&DAILY_ACTIVE, row))
                .collect();
            let planned = plan_rewrites(&DAILY_ACTIVE, 1, changes, [], table(&held));
            if counts.values().any(|count| *count < 0) {
                proptest::prop_assert!(planned.is_err());
            } else {
                let mut planned = planned.unwrap();
                for rewrite in &mut planned {
                    rewrite.rows.sort();
                }
                let expected: Vec<Rewrite> = touched
                    .iter()
                    .map(|&bucket| Rewrite {
                        bucket,
                        rows: counts
                            .iter()
                            .filter(|(row, _)| bucket_of(&DAILY_ACTIVE, row) == bucket)
                            .flat_map(|(row, count)| std::iter::repeat_n(row.clone(), *count as usize))
                            .collect(),
                    })
                    .collect();
                proptest::prop_assert_eq!(planned, expected);
            }
        }
    }

    #[test]
    fn added_rows_of_a_new_bucket_keep_their_order_and_multiplicity() {
        let changes = vec![(day(3, 1), 1), (day(1, 5), 2)];
        let rewrites = plan_rewrites(&DAILY_ACTIVE, 0, changes, [], table(&[])).unwrap();
        assert_eq!(
            rewrites,
            vec![Rewrite {
                bucket: 0,
                rows: vec![day(3, 1), day(1, 5), day(1, 5)],
            }]
        );
    }

    /// The current rows of each bucket of a small table.
    fn table(rows: &[Vec<Cell>]) -> impl FnMut(i64) -> Result<Vec<Vec<Cell>>> + '_ {
        |bucket| {
            Ok(rows
                .iter()
                .filter(|row| bucket_of(&DAILY_ACTIVE, row) == bucket)
                .cloned()
                .collect())
        }
    }

    #[test]
    fn only_the_buckets_a_change_touches_are_rewritten_with_their_other_rows() {
        let current = [day(1, 5), day(2, 6), day(40, 7), day(80, 8)];
        let changes = vec![(day(2, 6), -1), (day(2, 9), 1), (day(3, 1), 2)];
        let rewrites = plan_rewrites(&DAILY_ACTIVE, 4, changes, [], table(&current)).unwrap();
        assert_eq!(
            rewrites,
            vec![Rewrite {
                bucket: 0,
                rows: vec![day(1, 5), day(2, 9), day(3, 1), day(3, 1)],
            }]
        );
    }

    #[test]
    fn changes_that_cancel_rewrite_nothing_and_an_emptied_bucket_has_no_rows() {
        let current = [day(1, 5), day(40, 7)];
        let cancel = vec![(day(2, 1), 1), (day(2, 1), -1)];
        assert!(plan_rewrites(&DAILY_ACTIVE, 0, cancel, [], table(&current))
            .unwrap()
            .is_empty());
        let empty = plan_rewrites(
            &DAILY_ACTIVE,
            0,
            vec![(day(40, 7), -1)],
            [],
            table(&current),
        );
        assert_eq!(
            empty.unwrap(),
            vec![Rewrite {
                bucket: 1,
                rows: vec![]
            }]
        );
    }

    #[test]
    fn unsorted_current_rows_with_repeats_merge_with_the_changes() {
        let current = [day(3, 1), day(1, 5), day(3, 1)];
        let changes = vec![(day(3, 1), 1), (day(1, 5), -1), (day(2, 2), 1)];
        let rewrites = plan_rewrites(&DAILY_ACTIVE, 0, changes, [], table(&current)).unwrap();
        assert_eq!(
            rewrites,
            vec![Rewrite {
                bucket: 0,
                rows: vec![day(2, 2), day(3, 1), day(3, 1), day(3, 1)],
            }]
        );
    }

    #[test]
    fn a_forced_bucket_is_rewritten_without_changes() {
        let current = [day(1, 5), day(40, 7)];
        let rewrites =
            plan_rewrites(&DAILY_ACTIVE, 0, vec![(day(2, 1), 1)], [1], table(&current)).unwrap();
        assert_eq!(
            rewrites.iter().map(|r| r.bucket).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(rewrites[1].rows, vec![day(40, 7)]);
    }

    #[test]
    fn a_retraction_of_a_row_the_table_does_not_hold_is_an_error_naming_row_and_time() {
        let error = plan_rewrites(&DAILY_ACTIVE, 7, vec![(day(9, 9), -1)], [], table(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("-1 times at time 7"), "{error}");
        assert!(error.contains("Date(9)"), "{error}");
    }
}
