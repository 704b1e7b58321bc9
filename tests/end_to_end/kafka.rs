//! The Kafka source against a real Kafka-protocol broker on loopback (the `tansu`
//! broker, in-memory storage). NDJSON events are produced into a 3-partition topic;
//! `tidemark run --kafka` reads them, is killed with SIGKILL mid-stream and restarted,
//! more events are produced, and at the end:
//! - every produced message is in exactly one logged batch (offset ranges per
//!   partition, contiguous, none twice), and no change file repeats;
//! - every table equals the oracle over the logged batches rebuilt from the produced
//!   messages themselves;
//! - the bad message is quarantined as `topic/partition` with its offset as the row.
//!
//! A missing topic is an error naming the topics there are, `--start-offset latest`
//! skips what was produced before the run started, and two processes (`-n 2`), whose
//! workers fetch the partitions' units themselves, match the oracle. With `--group`,
//! the group's committed offsets (read back by the Python `kafka-python` client) are one
//! past every message, and a new output with `--start-offset committed` reads only what
//! was produced after them. Skipped (with a line saying why)
//! where the `tansu` binary is missing, unless `TIDEMARK_REQUIRE_KAFKA` is set, as CI
//! sets it.

use crate::common;
use crate::live;
use crate::oracle;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_matches_oracle, engine_tables};
use live::{assert_unique_change_files, source_dataset, tidemark_run, wait};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use tidemark::runtime::checkpoint::{BatchOrigin, Checkpoint};
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::Cell;
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::{Mapping, NdjsonLines};

const PARTITIONS: i32 = 3;

/// A tansu broker on a free loopback port, stopped when dropped.
struct Broker {
    child: Child,
    address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker binary: `TIDEMARK_TANSU`, else `tansu` on the PATH or in ~/.cargo/bin.
fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TIDEMARK_TANSU") {
        return Some(PathBuf::from(path));
    }
    let mut candidates = vec![PathBuf::from("tansu")];
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/tansu"));
    }
    candidates.into_iter().find(|binary| {
        Command::new(binary)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// Starts the broker, or says why it cannot (a panic where CI requires the test).
fn start_broker() -> Option<Broker> {
    let Some(binary) = tansu_binary() else {
        let why = "the tansu broker is missing (cargo install tansu --features dynostore)";
        if std::env::var_os("TIDEMARK_REQUIRE_KAFKA").is_some() {
            panic!("the Kafka test is required here, but {why}");
        }
        eprintln!("skipping the Kafka test: {why}");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(binary)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts");
    let broker = Broker {
        child,
        address: format!("127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(broker)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates `topic` with [`PARTITIONS`] partitions.
fn create_topic(broker: &Broker, topic: &str) {
    runtime().block_on(async {
        let client = ClientBuilder::new(vec![broker.address.clone()])
            .build()
            .await
            .expect("the test's client connects");
        client
            .controller_client()
            .unwrap()
            .create_topic(topic, PARTITIONS, 1, 5_000)
            .await
            .expect("the topic is created");
    })
}

/// Messages as the broker holds them: (partition, offset) -> bytes.
type Produced = BTreeMap<(i32, i64), Vec<u8>>;

/// Units named after their source, as the oracle takes them.
type Batches = Vec<(String, FileBatch)>;

/// Produces `lines` into `topic`, in chunks that go round the partitions, and returns
/// the offsets the broker gave them. Each message is its own record batch: tansu 0.6
/// reports a partition's end offset as one past the *first* offset of its last record
/// batch (Kafka: one past its last offset), so with larger batches no reader could see
/// the rest of the last one until more is produced.
fn produce(broker: &Broker, topic: &str, lines: &[String], produced: &mut Produced) {
    runtime().block_on(async {
        let client = ClientBuilder::new(vec![broker.address.clone()])
            .build()
            .await
            .unwrap();
        let mut partitions = Vec::new();
        for partition in 0..PARTITIONS {
            partitions.push(
                client
                    .partition_client(topic.to_string(), partition, UnknownTopicHandling::Retry)
                    .await
                    .unwrap(),
            );
        }
        for (chunk, lines) in lines.chunks(37).enumerate() {
            let partition = chunk % PARTITIONS as usize;
            for line in lines {
                let record = Record {
                    key: None,
                    value: Some(line.clone().into_bytes()),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                };
                let offsets = partitions[partition]
                    .produce(vec![record], Compression::NoCompression)
                    .await
                    .expect("the broker takes the message");
                assert_eq!(offsets.len(), 1);
                let before =
                    produced.insert((partition as i32, offsets[0]), line.clone().into_bytes());
                assert!(before.is_none(), "offset {} given twice", offsets[0]);
            }
        }
    })
}

/// The input units the output's write-ahead log holds, rebuilt from the produced
/// messages (parsed as the contract says, numbered by offset), with every logged
/// offset. A logical time's partition ranges are logged as units of their own but
/// arrive together, as the lines that "arrived in an interval" (contract "Batches"):
/// one unit for the oracle, named after the time's partitions.
fn logged_batches(out: &Path, topic: &str, produced: &Produced) -> (Batches, Vec<(i32, i64)>) {
    let checkpoint = Checkpoint::at(out);
    let mut parser = NdjsonLines::new(&Mapping::default());
    let mut times: Vec<(u64, Vec<String>, FileBatch)> = Vec::new();
    let mut logged = Vec::new();
    for unit in 0.. {
        let Some(header) = checkpoint.read_header(unit).unwrap() else {
            break;
        };
        let BatchOrigin::Lines(ranges) = header.origin else {
            panic!(
                "unit {unit} is not a batch of messages: {:?}",
                header.origin
            );
        };
        assert_eq!(ranges.len(), 1, "a unit holds one partition's messages");
        if times.last().is_none_or(|(time, ..)| *time != header.time) {
            times.push((header.time, Vec::new(), FileBatch::default()));
        }
        let (_, names, batch) = times.last_mut().unwrap();
        for range in ranges {
            let (logged_topic, partition) = range.source.rsplit_once('/').unwrap();
            assert_eq!(logged_topic, topic);
            let partition: i32 = partition.parse().unwrap();
            for ((_, offset), bytes) in
                produced.range((partition, range.first as i64)..=(partition, range.last as i64))
            {
                parser.push(bytes, *offset as u64, &range.source, batch);
                logged.push((partition, *offset));
            }
            names.push(range.source);
        }
    }
    let batches = times
        .into_iter()
        .map(|(_, names, mut batch)| {
            batch.close_bad_rows();
            (names.join(", "), batch)
        })
        .collect();
    logged.sort();
    (batches, logged)
}

/// Runs `tidemark run --out out ARGS`, which must fail, and returns its stderr.
fn failed_run(out: &Path, args: &[&str]) -> String {
    let output = tidemark_run(None, out, args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "the run should fail: {stderr}");
    stderr
}

fn kafka_args<'a>(broker: &'a Broker, topic: &'a str, idle: &'a str) -> Vec<&'a str> {
    vec![
        "--kafka",
        &broker.address,
        "--topic",
        topic,
        "-w",
        "2",
        "--batch-events",
        "150",
        "--batch-ms",
        "100",
        "--max-idle-secs",
        idle,
    ]
}

/// The generated messy events as NDJSON lines, with one bad message.
fn event_lines(dir: &Path) -> Vec<String> {
    let source = source_dataset(dir, 53, 3, tidemark_inputs::generator::OutputFormat::Ndjson);
    let mut lines = live::event_lines(&source);
    lines.insert(100, "{\"event_id\": \"broken".to_string());
    lines
}

/// A broker with `topic` created, a directory for the test, and the messages to
/// produce ([`event_lines`]); `None` where the broker is missing (see [`start_broker`]).
fn broker_with_topic(topic: &str) -> Option<(Broker, tempfile::TempDir, Vec<String>)> {
    let broker = start_broker()?;
    create_topic(&broker, topic);
    let dir = tempfile::tempdir().unwrap();
    let lines = event_lines(dir.path());
    Some((broker, dir, lines))
}

#[test]
fn a_topic_read_through_a_crash_matches_the_oracle_exactly_once() {
    let topic = "events";
    let Some((broker, dir, lines)) = broker_with_topic(topic) else {
        return;
    };
    let (first, second) = lines.split_at(lines.len() * 2 / 3);
    let mut produced = Produced::new();
    produce(&broker, topic, first, &mut produced);

    // A run that is killed once it has logged some batches, then resumed.
    let out = dir.path().join("out");
    let mut child = tidemark_run(None, &out, &kafka_args(&broker, topic, "30"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        live::wait_until(Duration::from_secs(60), || live::checkpoint_state(&out).0
            >= 3),
        "the run logs batches"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_after = live::checkpoint_state(&out).0;

    let mut resumed = tidemark_run(None, &out, &kafka_args(&broker, topic, "3"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    produce(&broker, topic, second, &mut produced);
    let status = wait(&mut resumed, Duration::from_secs(120));
    let output = resumed.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (batches, logged) = logged_batches(&out, topic, &produced);
    assert!(
        batches.len() > killed_after,
        "the resumed run logged more batches"
    );
    let all: Vec<(i32, i64)> = produced.keys().copied().collect();
    assert_eq!(logged, all, "every produced message logged exactly once");
    assert_unique_change_files(&out);
    let tables = engine_tables(&out, u64::MAX);
    assert_matches_oracle(
        &oracle::compute(&batches, &Params::default()),
        &tables,
        "a topic read through a crash",
    );
    let (&(partition, offset), _) = produced
        .iter()
        .find(|(_, bytes)| bytes.starts_with(b"{\"event_id\": \"broken"))
        .unwrap();
    let bad = [
        Cell::Str(format!("{topic}/{partition}").into()),
        Cell::Int(offset),
        Cell::Str("".into()),
        Cell::Str("bad_json".into()),
    ];
    assert!(
        tables["quarantine"].iter().any(|row| row[..4] == bad),
        "the bad message is quarantined at {topic}/{partition} offset {offset}"
    );
}

#[test]
fn a_missing_topic_is_an_error_and_latest_skips_what_was_there() {
    let Some(broker) = start_broker() else {
        return;
    };
    create_topic(&broker, "clicks");
    let dir = tempfile::tempdir().unwrap();
    let stderr = failed_run(&dir.path().join("none"), &kafka_args(&broker, "nope", "1"));
    assert!(
        stderr.contains("topic `nope` does not exist") && stderr.contains("clicks"),
        "{stderr}"
    );

    let lines = event_lines(dir.path());
    let mut produced = Produced::new();
    produce(&broker, "clicks", &lines[..500], &mut produced);
    let before: Vec<(i32, i64)> = produced.keys().copied().collect();
    let out = dir.path().join("out");
    let mut args = kafka_args(&broker, "clicks", "3");
    args.extend(["--start-offset", "latest"]);
    let mut child = tidemark_run(None, &out, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Produce once the run has chosen its start offsets (its first stderr line).
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut started = String::new();
    stderr.read_line(&mut started).unwrap();
    assert!(started.contains("(latest)"), "{started}");
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).ok();
        rest
    });
    produce(&broker, "clicks", &lines[500..900], &mut produced);
    let status = wait(&mut child, Duration::from_secs(60));
    assert!(status.success(), "{}", drain.join().unwrap());
    assert_logged_only_after(&out, "clicks", &produced, &before, "--start-offset latest");
}

/// Checks that `out` logged exactly the messages produced after `before` (and no
/// earlier one), and that its tables equal the oracle over them.
fn assert_logged_only_after(
    out: &Path,
    topic: &str,
    produced: &Produced,
    before: &[(i32, i64)],
    what: &str,
) {
    let (batches, logged) = logged_batches(out, topic, produced);
    let after: Vec<(i32, i64)> = produced
        .keys()
        .copied()
        .filter(|key| !before.contains(key))
        .collect();
    assert_eq!(
        logged, after,
        "{what}: only the messages produced after the start"
    );
    assert_matches_oracle(
        &oracle::compute(&batches, &Params::default()),
        &engine_tables(out, u64::MAX),
        what,
    );
}

#[test]
fn two_processes_share_the_partitions_and_match_the_oracle() {
    let topic = "plays";
    let Some((broker, dir, lines)) = broker_with_topic(topic) else {
        return;
    };
    let mut produced = Produced::new();
    produce(&broker, topic, &lines, &mut produced);
    let free_port = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let hostfile = dir.path().join("hosts.txt");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let out = dir.path().join("out");
    let spawn = |process: usize| {
        let mut args = kafka_args(&broker, topic, "3");
        let process = process.to_string();
        args.extend(["-n", "2", "-p", &process, "-H"]);
        args.push(hostfile.to_str().unwrap());
        tidemark_run(None, &out, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(0), spawn(1)];
    for (i, mut child) in children.into_iter().enumerate() {
        let status = wait(&mut child, Duration::from_secs(120));
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(status.success(), "process {i}: {stderr}");
    }
    let (batches, logged) = logged_batches(&out, topic, &produced);
    let all: Vec<(i32, i64)> = produced.keys().copied().collect();
    assert_eq!(logged, all, "every produced message logged exactly once");
    assert_matches_oracle(
        &oracle::compute(&batches, &Params::default()),
        &engine_tables(&out, u64::MAX),
        "a topic read by two processes",
    );
}

#[test]
fn a_broker_down_at_start_is_an_error_and_one_lost_mid_run_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port: an error naming the brokers, not a hang.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let output = tidemark_run(
        None,
        &dir.path().join("none"),
        &[
            "--kafka",
            &closed,
            "--topic",
            "events",
            "--max-idle-secs",
            "1",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("connecting to Kafka at {closed} failed")),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "an answer within a minute"
    );

    // A broker that goes away mid-run: warnings while worker 0 asks again, then the
    // run ends (here after --max-idle-secs) or fails with the fetch's error, never
    // silently hung.
    let Some(broker) = start_broker() else {
        return;
    };
    create_topic(&broker, "events");
    let lines = event_lines(dir.path());
    let mut produced = Produced::new();
    produce(&broker, "events", &lines[..300], &mut produced);
    let out = dir.path().join("out");
    let child = tidemark_run(None, &out, &kafka_args(&broker, "events", "8"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        live::wait_until(Duration::from_secs(60), || live::checkpoint_state(&out).0
            >= 1),
        "the run logs a batch"
    );
    let address = broker.address.clone();
    drop(broker);
    let mut child = child;
    let status = wait(&mut child, Duration::from_secs(120));
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Worker 0 warns while it asks again; or a worker reading a unit when the broker
    // went stops the run with an error naming the broker.
    let warned = stderr.contains("the Kafka brokers do not answer");
    let failed = !status.success() && stderr.contains("error:") && stderr.contains(&address);
    assert!(
        warned || failed,
        "a warning or an error says the brokers are gone ({status:?}): {stderr}"
    );
}

/// The offsets consumer group `group` has committed for `topic`, read by the Python
/// `kafka-python` client (a client written apart from tidemark's), or why they cannot
/// be read here.
fn group_offsets_by_python(
    broker: &Broker,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, String> {
    let script = r#"
import sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
for tp, meta in admin.list_group_offsets(sys.argv[2])[sys.argv[2]].items():
    if tp.topic == sys.argv[3]:
        print(tp.partition, meta.offset)
"#;
    let output = Command::new("python3")
        .args(["-c", script, &broker.address, group, topic])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let (partition, offset) = line.split_once(' ').unwrap();
            (partition.parse().unwrap(), offset.parse().unwrap())
        })
        .collect())
}

/// Commits `offset` of `topic`'s `partition` to `group` with `kafka-python`.
fn python_commits(
    broker: &Broker,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), String> {
    let script = r#"
import sys
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
consumer = KafkaConsumer(bootstrap_servers=sys.argv[1], group_id=sys.argv[2], enable_auto_commit=False)
tp = TopicPartition(sys.argv[3], int(sys.argv[4]))
consumer.assign([tp])
consumer.commit({tp: OffsetAndMetadata(int(sys.argv[5]), '', -1)})
"#;
    let output = Command::new("python3")
        .args(["-c", script, &broker.address, group, topic])
        .arg(partition.to_string())
        .arg(offset.to_string())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// One past the last produced offset of each partition: where a consumer that has
/// read everything stands.
fn next_offsets(produced: &Produced) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for (partition, offset) in produced.keys() {
        next.insert(*partition, offset + 1);
    }
    next
}

#[test]
fn a_group_gets_the_completed_offsets_and_a_new_out_can_start_from_them() {
    let topic = "views";
    let Some((broker, dir, lines)) = broker_with_topic(topic) else {
        return;
    };
    let mut produced = Produced::new();
    produce(&broker, topic, &lines[..600], &mut produced);

    let first = dir.path().join("first");
    let mut args = kafka_args(&broker, topic, "2");
    args.extend(["--group", "analytics"]);
    let output = tidemark_run(None, &first, &args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    match group_offsets_by_python(&broker, "analytics", topic) {
        Ok(committed) => assert_eq!(
            committed,
            next_offsets(&produced),
            "the group's offsets, as kafka-python reads them, are one past every message"
        ),
        Err(why) if std::env::var_os("TIDEMARK_REQUIRE_KAFKA").is_some() => {
            panic!(
                "kafka-python must read the group's offsets here (pip install kafka-python): {why}"
            )
        }
        Err(why) => eprintln!("not checking the group with kafka-python: {why}"),
    }

    // A new OUT that starts where the group left off reads only what came after.
    let before: Vec<(i32, i64)> = produced.keys().copied().collect();
    produce(&broker, topic, &lines[600..900], &mut produced);
    let second = dir.path().join("second");
    args.extend(["--start-offset", "committed"]);
    let output = tidemark_run(None, &second, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("(committed by the group)"), "{stderr}");
    assert_logged_only_after(
        &second,
        topic,
        &produced,
        &before,
        "--start-offset committed",
    );
    if let Ok(committed) = group_offsets_by_python(&broker, "analytics", topic) {
        assert_eq!(committed, next_offsets(&produced), "the group moved on");
    }

    // A committed offset past a partition's end (a topic deleted and made again) is an
    // error at the start that says what to do, not a run that waits for ever.
    if python_commits(&broker, "elsewhere", topic, 0, 1_000_000).is_ok() {
        let mut args = kafka_args(&broker, topic, "2");
        args.extend(["--group", "elsewhere", "--start-offset", "committed"]);
        let stderr = failed_run(&dir.path().join("ahead"), &args);
        assert!(
            stderr.contains(&format!("{topic}/0 is 1000000, past the partition's end"))
                && stderr.contains("--start-offset earliest"),
            "{stderr}"
        );
    }

    // Without a group there is nothing to start from.
    let args = [
        "--kafka",
        &broker.address,
        "--topic",
        topic,
        "--start-offset",
        "committed",
    ];
    let stderr = failed_run(&dir.path().join("third"), &args);
    assert!(stderr.contains("add --group GROUP"), "{stderr}");
}
