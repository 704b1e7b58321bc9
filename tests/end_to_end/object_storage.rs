//! A dataset in object storage: `tidemark run s3://bucket/prefix` against a real
//! S3-compatible server on loopback (moto's standalone server), with the tables equal to
//! the oracle over the same files read locally. A second run over the same output, after
//! more objects were put, takes only the new objects and still equals the oracle.
//! A `--follow` run on a prefix takes objects put one by one, is killed with SIGKILL
//! twice and restarted, and ends with every object taken once and the oracle's tables.
//! An `s3://` output holds the oracle's tables (read back from a copy downloaded with
//! boto3, and its Delta tables opened from S3 by Python `deltalake` and Polars), and a
//! run killed with SIGKILL and restarted on an empty working copy (another host)
//! resumes from the prefix alone, losing and doubling nothing. `tidemark serve` on an
//! `s3://` output serves its tables and follows the commits of a later run.
//! Skipped (with a line saying why) where `moto_server` or boto3 is missing, unless
//! `TIDEMARK_REQUIRE_S3` is set, as CI sets it.

use crate::common;
use crate::http;
use crate::live;
use crate::oracle;
use crate::s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    assert_matches_oracle, compare, engine_options, engine_tables, messy_data, read_batches,
};
use s3::{download_prefix, put_objects, start_server, use_server};
use tidemark::runtime::run::run;
use tidemark::runtime::run::WRITTEN_TABLES;
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::generator::{generate, OutputFormat};

/// A server of this test's own on loopback, with the process's AWS environment
/// pointed at it, and the lock that keeps the other S3 tests waiting; none (the test
/// skips) where moto is missing.
fn s3_server() -> Option<(std::sync::MutexGuard<'static, ()>, s3::S3Server)> {
    let server = start_server("127.0.0.1")?;
    let alone = use_server(&server);
    Some((alone, server))
}

/// Whether Python's `deltalake` and Polars are there (a panic where
/// `TIDEMARK_REQUIRE_PYTHON=1` requires them).
fn python_delta_readers() -> bool {
    let present = Command::new("python3")
        .args(["-c", "import deltalake, polars, pyarrow"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !present {
        if std::env::var("TIDEMARK_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
            panic!(
                "TIDEMARK_REQUIRE_PYTHON=1 but python3 cannot import deltalake, polars, pyarrow"
            );
        }
        eprintln!(
            "skipping the Python Delta readers over S3: pip install deltalake polars pyarrow"
        );
    }
    present
}

/// The files of a dataset split in two: all but the last `later` event files, and those.
fn split_last_events(data: &Path, later: usize) -> (Vec<String>, Vec<String>) {
    let all = files_under(data);
    let last: Vec<String> = all
        .iter()
        .filter(|rel| rel.starts_with("events/"))
        .rev()
        .take(later)
        .cloned()
        .collect();
    let rest = all.into_iter().filter(|rel| !last.contains(rel)).collect();
    (rest, last)
}

/// Copies the files `rels` of `from` into `to`, keeping their relative paths.
fn copy_files(from: &Path, rels: &[String], to: &Path) {
    for rel in rels {
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(rel), target).unwrap();
    }
}

/// That an output logged and completed each of `units` input units once, with no
/// change file and no Delta `txn` version written twice.
fn assert_each_unit_once(out: &Path, units: usize) {
    let (logged, completed) = live::checkpoint_state(out);
    assert_eq!(logged, units, "every unit was logged exactly once");
    assert_eq!(completed, Some(units as u64 - 1), "every time completed");
    live::assert_unique_change_files(out);
    for spec in tidemark::runtime::run::WRITTEN_TABLES {
        let versions = live::txn_versions(&tidemark::sink::delta::delta_dir(out, spec.name));
        let mut unique = versions.clone();
        unique.dedup();
        assert_eq!(
            versions, unique,
            "`{}` repeats no Delta txn version",
            spec.name
        );
    }
}

/// What `tidemark COMMAND OUT` prints; it must succeed.
fn stdout_of(command: &str, out: &Path) -> String {
    let output = Command::new(live::binary())
        .arg(command)
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("tidemark {command} runs: {e}"));
    assert!(
        output.status.success(),
        "{command} {}: {}",
        out.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                found.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

#[test]
fn an_s3_dataset_gives_the_oracle_tables_and_a_second_run_takes_only_new_objects() {
    let Some((_alone, server)) = s3_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let config = messy_data(8_000, 200, 31, 30, 8, OutputFormat::Parquet, 0.01);
    generate(&data, &config).expect("generator writes the dataset");
    // The last three event files arrive after the first run.
    let (first, later) = split_last_events(&data, 3);
    put_objects(&server, "lake", "raw/clicks", &data, &first);

    let url = PathBuf::from("s3://lake/raw/clicks");
    let params = Params::default();
    let run_s3 = |overwrite: bool| {
        let mut options = engine_options(&url, None, &out, params, 2);
        options.overwrite = overwrite;
        run(&options).expect("tidemark run over s3:// succeeds")
    };
    run_s3(true);
    // The oracle reads the same files from the local disk.
    let only_first = dir.path().join("first");
    copy_files(&data, &first, &only_first);
    let expected = oracle::compute(&read_batches(&only_first, None), &params);
    assert_matches_oracle(&expected, &engine_tables(&out, u64::MAX), "s3, first run");

    put_objects(&server, "lake", "raw/clicks", &data, &later);
    let staged_before = std::fs::metadata(out.join("source").join(&first[0]))
        .unwrap()
        .modified()
        .unwrap();
    let stats = run_s3(false);
    assert_eq!(
        stats.files,
        later.len(),
        "the second run reads only the new objects"
    );
    let staged_after = std::fs::metadata(out.join("source").join(&first[0]))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        staged_before, staged_after,
        "an object already taken is not downloaded again"
    );
    let expected = oracle::compute(&read_batches(&data, None), &params);
    assert_matches_oracle(&expected, &engine_tables(&out, u64::MAX), "s3, second run");
}

#[test]
fn a_missing_bucket_is_an_error_naming_the_url() {
    let Some((_alone, _server)) = s3_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = PathBuf::from("s3://no-such-bucket/data");
    let options = engine_options(&url, None, &dir.path().join("out"), Params::default(), 1);
    let error = format!("{:#}", run(&options).unwrap_err());
    assert!(error.contains("s3://no-such-bucket/data"), "{error}");
}

#[test]
fn following_a_prefix_takes_each_new_object_once_through_kills() {
    let Some((_alone, server)) = s3_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = live::source_dataset(dir.path(), 41, 6, OutputFormat::Parquet);
    let all = files_under(&source);
    let (events, tables): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|rel| rel.starts_with("events/"));
    put_objects(&server, "stream", "app", &source, &tables);
    let out = dir.path().join("out");
    let url = PathBuf::from("s3://stream/app");
    let flags = live::follow_flags("3");
    let command = || live::tidemark_run(Some(&url), &out, &flags);
    let mut child = live::spawn(&mut command());
    for (n, rel) in events.iter().enumerate() {
        let before = live::change_files(&out).len();
        put_objects(&server, "stream", "app", &source, std::slice::from_ref(rel));
        if n == 1 || n == 3 {
            // Killed right after the object's batch wrote its first change file.
            live::wait_until(Duration::from_secs(20), || {
                live::change_files(&out).len() > before
            });
            child.kill().unwrap();
            child.wait().unwrap();
            child = live::spawn(&mut command());
        }
    }
    live::expect_success(child, Duration::from_secs(120));

    let batches = read_batches(&source, None);
    assert_each_unit_once(&out, batches.len());
    let expected = oracle::compute(&batches, &Params::default());
    assert_matches_oracle(&expected, &engine_tables(&out, u64::MAX), "s3 follow");
}

#[test]
fn an_s3_output_holds_the_oracle_tables_and_resumes_on_another_host() {
    let Some((_alone, server)) = s3_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = messy_data(8_000, 200, 37, 30, 8, OutputFormat::Parquet, 0.01);
    generate(&data, &config).expect("generator writes the dataset");
    let (first, later) = split_last_events(&data, 2);
    put_objects(&server, "lake", "raw", &data, &first);
    put_objects(&server, "gold", "ignored", &data, &[]);

    let url = PathBuf::from("s3://lake/raw");
    let out = PathBuf::from("s3://gold/engagement");
    let params = Params::default();
    // Each run on a working copy of its own, as on a host of its own.
    let run_on = |host: &str, overwrite: bool| {
        let mut options = engine_options(&url, None, &out, params, 2);
        options.overwrite = overwrite;
        options.local_out = Some(dir.path().join(host));
        run(&options).expect("tidemark run into s3:// succeeds")
    };
    run_on("host-a", true);
    let only_first = dir.path().join("first");
    copy_files(&data, &first, &only_first);
    let downloaded = dir.path().join("downloaded-1");
    download_prefix(&server, "gold", "engagement", &downloaded);
    assert!(
        !downloaded.join("source").exists(),
        "the dataset's mirror is not uploaded"
    );
    let expected = oracle::compute(&read_batches(&only_first, None), &params);
    assert_matches_oracle(&expected, &engine_tables(&downloaded, u64::MAX), "s3 out");
    if python_delta_readers() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_delta.py");
        let output = Command::new("python3")
            .arg(&script)
            .arg(&downloaded)
            .args(["--tables-url", "s3://gold/engagement"])
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "Python deltalake and Polars read the Delta tables from S3:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // `tidemark report` on the URL prints what it prints for the downloaded copy.
    let report = |out: &Path| stdout_of("report", out);
    assert_eq!(
        report(&out),
        report(&downloaded).replace(&downloaded.display().to_string(), "s3://gold/engagement"),
        "report of the s3:// output"
    );

    // `tidemark serve` on the URL serves the tables of the prefix, and follows it.
    let (mut serving, addr) = live::spawn_serving(
        Command::new(live::binary())
            .arg("serve")
            .arg(&out)
            .args(["--listen", "127.0.0.1:0"]),
    );
    let assert_served = |downloaded: &Path, context: &str| {
        let completed = live::checkpoint_state(downloaded)
            .1
            .expect("a completed time");
        http::wait_for_time(addr, completed);
        let tables = engine_tables(downloaded, u64::MAX);
        for spec in WRITTEN_TABLES {
            let rows = http::served(addr, spec, "");
            compare(spec, &tables[spec.name], &rows, context);
        }
    };
    assert_served(&downloaded, "served from s3://");

    // More objects, and a run on another host: it resumes from the prefix alone.
    put_objects(&server, "lake", "raw", &data, &later);
    let stats = run_on("host-b", false);
    assert_eq!(stats.files, later.len(), "only the new objects are read");
    let downloaded = dir.path().join("downloaded-2");
    download_prefix(&server, "gold", "engagement", &downloaded);
    let expected = oracle::compute(&read_batches(&data, None), &params);
    assert_matches_oracle(
        &expected,
        &engine_tables(&downloaded, u64::MAX),
        "s3 out, resumed on another host",
    );
    live::assert_unique_change_files(&downloaded);
    assert_served(&downloaded, "served from s3:// after the resumed run");
    serving.kill().ok();
    serving.wait().ok();
}

#[test]
fn an_s3_output_killed_and_restarted_elsewhere_loses_and_doubles_nothing() {
    let Some((_alone, server)) = s3_server() else {
        return;
    };
    put_objects(&server, "gold", "ignored", Path::new("."), &[]);
    let dir = tempfile::tempdir().unwrap();
    let source = live::source_dataset(dir.path(), 43, 6, OutputFormat::Parquet);
    let data = live::live_dataset(dir.path(), &source);
    let out = PathBuf::from("s3://gold/live");
    let flags = live::follow_flags("3");
    let hosts: Vec<String> = (0..3)
        .map(|n| dir.path().join(format!("host-{n}")).display().to_string())
        .collect();
    let command = |host: usize| {
        let mut args = flags.clone();
        args.extend(["--local-out", hosts[host].as_str()]);
        live::tidemark_run(Some(&data), &out, &args)
    };
    let mut child = live::spawn(&mut command(0));
    let mut host = 0;
    for (n, file) in live::event_files(&source).iter().enumerate() {
        let local = PathBuf::from(&hosts[host]);
        let before = live::change_files(&local).len();
        live::feed(file, &data);
        if n == 1 || n == 3 {
            // Killed once the file's first change file is written locally: its upload
            // may or may not have happened. The next process runs on an empty working
            // copy, as on another host.
            live::wait_until(Duration::from_secs(20), || {
                live::change_files(&local).len() > before
            });
            if n == 3 {
                std::thread::sleep(Duration::from_millis(1500));
            }
            child.kill().unwrap();
            child.wait().unwrap();
            host += 1;
            child = live::spawn(&mut command(host));
        }
    }
    live::expect_success(child, Duration::from_secs(120));

    let downloaded = dir.path().join("downloaded");
    download_prefix(&server, "gold", "live", &downloaded);
    let batches = read_batches(&source, None);
    assert_each_unit_once(&downloaded, batches.len());
    let expected = oracle::compute(&batches, &Params::default());
    assert_matches_oracle(
        &expected,
        &engine_tables(&downloaded, u64::MAX),
        "s3 out after kills",
    );
}

/// An S3 endpoint that lists an empty bucket but denies every write, as a bucket
/// whose policy grants only reads does; it answers until the test ends.
fn read_only_endpoint() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, xml) = if request.starts_with("GET") {
                (
                    "200 OK",
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>gold</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>",
                )
            } else {
                (
                    "403 Forbidden",
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
                )
            };
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
        }
    });
    format!("http://{address}")
}

#[test]
fn a_denied_write_is_an_error_before_the_run_naming_the_url_and_what_to_allow() {
    let endpoint = read_only_endpoint();
    let _alone = s3::use_endpoint(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let data = live::source_dataset(dir.path(), 5, 2, OutputFormat::Parquet);
    let mut options = engine_options(
        &data,
        None,
        Path::new("s3://gold/engagement"),
        Params::default(),
        1,
    );
    options.local_out = Some(dir.path().join("copy"));
    let started = std::time::Instant::now();
    let error = format!("{:#}", run(&options).unwrap_err());
    assert!(error.contains("s3://gold/engagement"), "{error}");
    assert!(
        error.contains("AccessDenied") && error.contains("s3:PutObject"),
        "{error}"
    );
    assert!(
        !dir.path().join("copy/changes").exists(),
        "nothing was computed before the check ({:?})",
        started.elapsed()
    );
}

#[test]
fn predict_on_an_s3_output_puts_what_predict_writes_on_a_local_copy() {
    let Some((_alone, server)) = s3_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A hundred days, so that a 28-day population and its next 28 days exist.
    let config = messy_data(30_000, 500, 5, 100, 12, OutputFormat::Parquet, 0.01);
    generate(&data, &config).expect("generator writes the dataset");
    put_objects(&server, "gold", "ignored", &data, &[]);
    let out = PathBuf::from("s3://gold/scored");
    let mut options = engine_options(&data, None, &out, Params::default(), 2);
    options.local_out = Some(dir.path().join("work"));
    run(&options).expect("tidemark run into s3:// succeeds");
    let local = dir.path().join("local");
    download_prefix(&server, "gold", "scored", &local);

    let predict = |out: &Path| stdout_of("predict", out);
    let on_s3 = predict(&out);
    let on_copy = predict(&local);
    assert_eq!(
        on_s3,
        on_copy.replace(&local.display().to_string(), "s3://gold/scored"),
        "predict prints the same for the URL and a local copy"
    );
    let after = dir.path().join("after");
    download_prefix(&server, "gold", "scored", &after);
    let written = files_under(&local.join("predictions"));
    assert!(!written.is_empty(), "predict writes its tables");
    assert_eq!(
        files_under(&after.join("predictions")),
        written,
        "the predictions are put under the prefix"
    );
    for rel in &written {
        assert_eq!(
            std::fs::read(after.join("predictions").join(rel)).unwrap(),
            std::fs::read(local.join("predictions").join(rel)).unwrap(),
            "predictions/{rel} put under the prefix equals the local copy's"
        );
    }
}
