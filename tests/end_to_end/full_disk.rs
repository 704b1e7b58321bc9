//! Regression (issue 14, item 4): a full disk ended a run with panic reports from the
//! sinks and from object_store ("Already shut down") before the real cause. Now it is
//! one line naming the file and the OS error, and after space is freed the same
//! command resumes to the oracle's tables.
//!
//! Needs a small file system to fill: a tmpfs mounted for the test, which needs root.
//! Where mounting is not allowed the test says so on stderr and checks nothing.

use crate::common;
use crate::live;
use crate::oracle;

use std::process::Command;

use common::{assert_matches_oracle, engine_tables, read_batches};
use live::{output, source_dataset, tidemark_run};
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::generator::OutputFormat;

fn mount(dir: &std::path::Path, size: &str, remount: bool) -> bool {
    let options = if remount {
        format!("remount,size={size}")
    } else {
        format!("size={size}")
    };
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
        .arg(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_full_disk_is_one_clear_error_and_the_run_resumes_after() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 31, 8, OutputFormat::Parquet);
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    if !mount(&small, "600k", false) {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let out = small.join("out");
    let args = ["--max-batch-files", "1"];
    let result = output(&mut tidemark_run(Some(&data), &out, &args));
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    let full = !result.status.success();
    if full {
        assert!(stderr.contains("No space left on device"), "{stderr}");
        assert!(!stderr.contains("panicked"), "no panic report: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    assert!(mount(&small, "256m", true), "the tmpfs grows");
    let result = output(&mut tidemark_run(Some(&data), &out, &args));
    let resumed = String::from_utf8_lossy(&result.stderr).to_string();
    let tables = engine_tables(&out, u64::MAX);
    Command::new("umount").arg(&small).output().ok();
    assert!(full, "600 KiB should not hold this output");
    assert!(result.status.success(), "{resumed}");
    let expected = oracle::compute(&read_batches(&data, None), &Params::default());
    assert_matches_oracle(&expected, &tables, "resumed after a full disk");
}
