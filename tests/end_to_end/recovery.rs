//! Exactly-once recovery: a following `tidemark run` killed with SIGKILL at random
//! moments (some right after a change file appears, i.e. likely in the middle of the
//! sinks) and restarted with the same command ends with the same change streams as an
//! uninterrupted run over the same files, the same Delta tables (contents and commits)
//! as that run, and the same tables as the oracle. Nothing is lost, nothing is doubled.

use crate::common;
use crate::live;
use crate::oracle;

use std::time::Duration;

use common::{assert_matches_oracle, engine_tables, read_batches, run_engine};
use live::{
    assert_unique_change_files, change_files, checkpoint_state, event_files, expect_success, feed,
    follow_flags, live_dataset, source_dataset, spawn, tidemark_run, txn_versions, wait_until, Rng,
};
use tidemark::runtime::run::WRITTEN_TABLES;
use tidemark::sink::delta::{delta_dir, read_delta_table};
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::generator::OutputFormat;

fn crash_and_resume(seed: u64, format: OutputFormat) {
    let dir = tempfile::tempdir().unwrap();
    let source = source_dataset(dir.path(), seed, 10, format);
    let data = live_dataset(dir.path(), &source);
    let out = dir.path().join("out");
    let flags = follow_flags("2.5");
    let command = || tidemark_run(Some(&data), &out, &flags);

    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut child = spawn(&mut command());
    let (mut kills, mut mid_time, mut delta_ahead) = (0, 0, 0);
    for file in event_files(&source) {
        feed(&file, &data);
        match rng.below(4) {
            0 => {
                // Right after the next change file appears: most likely mid-sink.
                let before = change_files(&out).len();
                wait_until(Duration::from_secs(10), || {
                    change_files(&out).len() > before
                });
            }
            1 => {
                // Right after the batch is logged: before or while it is computed.
                let before = checkpoint_state(&out).0;
                wait_until(Duration::from_secs(10), || {
                    checkpoint_state(&out).0 > before
                });
            }
            2 => std::thread::sleep(Duration::from_millis(rng.below(400))),
            _ => {
                std::thread::sleep(Duration::from_millis(rng.below(150)));
                if child.try_wait().unwrap().is_some() {
                    // It went idle before this file came: start it again, as a supervisor would.
                    expect_success(child, Duration::from_secs(1));
                    child = spawn(&mut command());
                }
                continue;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let (logged, completed) = checkpoint_state(&out);
        if completed.map_or(0, |c| c + 1) < logged as u64 {
            mid_time += 1; // killed between logging a batch and completing it
        }
        let last_delta_commit = WRITTEN_TABLES
            .iter()
            .filter_map(|spec| txn_versions(&delta_dir(&out, spec.name)).last().copied())
            .max();
        if last_delta_commit > completed {
            delta_ahead += 1; // killed after a Delta commit of a time not completed yet
        }
        child = spawn(&mut command());
    }
    expect_success(child, Duration::from_secs(90));
    eprintln!(
        "seed {seed}: {kills} kills, {mid_time} between logging a batch and completing it, \
         {delta_ahead} after a Delta commit of a time not completed yet"
    );
    assert!(kills > 0, "seed {seed} killed the run at least once");

    let batches = read_batches(&data, None);
    let (logged, completed) = checkpoint_state(&out);
    assert_eq!(
        logged,
        batches.len(),
        "every file was ingested exactly once"
    );
    assert_eq!(
        completed,
        Some(batches.len() as u64 - 1),
        "every time was completed"
    );
    assert_unique_change_files(&out);

    let reference = dir.path().join("reference");
    let params = Params::default();
    run_engine(&data, None, &reference, params, 1);
    for time in 0..batches.len() as u64 {
        assert_eq!(
            engine_tables(&out, time),
            engine_tables(&reference, time),
            "seed {seed}: tables after logical time {time} differ from an uninterrupted run"
        );
    }

    // The Delta tables: commits in time order (a commit covers the times that waited
    // together, so how they group depends on timing), none twice, through the same last
    // time, and the same contents as the uninterrupted run's, equal to the summed change
    // stream.
    let final_tables = engine_tables(&out, u64::MAX);
    for spec in WRITTEN_TABLES {
        let recovered = delta_dir(&out, spec.name);
        let uninterrupted = delta_dir(&reference, spec.name);
        let versions = txn_versions(&recovered);
        assert!(
            versions.windows(2).all(|w| w[0] < w[1])
                && versions.last() == txn_versions(&uninterrupted).last(),
            "seed {seed}: the Delta commits (txn versions) of `{}`, {versions:?}, are not in time order through the uninterrupted run's last, {:?}",
            spec.name,
            txn_versions(&uninterrupted)
        );
        let rows = read_delta_table(&recovered, spec).unwrap();
        assert_eq!(
            rows,
            read_delta_table(&uninterrupted, spec).unwrap(),
            "seed {seed}: the Delta table `{}` differs from an uninterrupted run's",
            spec.name
        );
        assert_eq!(
            rows, final_tables[spec.name],
            "seed {seed}: the Delta table `{}` differs from its change stream",
            spec.name
        );
    }

    let expected = oracle::compute(&batches, &params);
    assert_matches_oracle(&expected, &final_tables, &format!("recovery seed {seed}"));
}

#[test]
fn killed_and_restarted_run_equals_an_uninterrupted_one_seed_1() {
    crash_and_resume(1, OutputFormat::Parquet);
}

#[test]
fn killed_and_restarted_run_equals_an_uninterrupted_one_seed_2() {
    crash_and_resume(2, OutputFormat::Ndjson);
}

#[test]
fn killed_and_restarted_run_equals_an_uninterrupted_one_seed_3() {
    crash_and_resume(3, OutputFormat::Csv);
}
