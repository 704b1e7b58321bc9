//! Other readers: `scripts/check_delta.py` opens every Delta table with the Python
//! `deltalake` package and with Polars, checks column types and row counts against the
//! change streams. Skipped (with a message) when those packages are missing, unless
//! `TIDEMARK_REQUIRE_PYTHON=1`, in which case their absence fails the test.

use crate::common;

use std::process::Command;

use common::run_engine;
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::generator::{generate, GeneratorConfig};

fn python_has_readers() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import deltalake, polars, pyarrow"])
        .output()
    {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(stderr.lines().last().unwrap_or("import failed").to_string())
        }
        Err(error) => Err(format!("cannot run python3: {error}")),
    }
}

#[test]
fn python_deltalake_and_polars_read_the_tables() {
    if let Err(why) = python_has_readers() {
        if std::env::var("TIDEMARK_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
            panic!("TIDEMARK_REQUIRE_PYTHON=1 but python3 cannot import deltalake, polars, pyarrow: {why}");
        }
        eprintln!("SKIPPED python_deltalake_and_polars_read_the_tables: {why} (pip install deltalake polars pyarrow)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let config = GeneratorConfig {
        events: 8_000,
        users: 200,
        seed: 31,
        days: 30,
        files: 8,
        late_share: 0.03,
        too_late_share: 0.01,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        ..GeneratorConfig::default()
    };
    generate(&data, &config).expect("generator writes the dataset");
    run_engine(&data, None, &out, Params::default(), 2);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_delta.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "check_delta.py failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}
