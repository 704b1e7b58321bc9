//! A real S3-compatible server for tests: moto's standalone server on an address of
//! this machine, the AWS environment pointed at it, and objects put with boto3 as a
//! user's upload job would.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A moto server on a free loopback port, stopped when dropped.
pub struct S3Server {
    child: Child,
    /// `http://host:port`.
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` on `host` (an address of this machine), or says why it cannot (a panic where CI requires the test).
pub fn start_server(host: &str) -> Option<S3Server> {
    let boto3 = Command::new("python3")
        .args(["-c", "import boto3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let why = if !boto3 {
        Some("python3 with boto3 is missing (pip install 'moto[server]')")
    } else if Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        Some("moto_server is missing (pip install 'moto[server]')")
    } else {
        None
    };
    if let Some(why) = why {
        if std::env::var_os("TIDEMARK_REQUIRE_S3").is_some() {
            panic!("the object-storage test is required here, but {why}");
        }
        eprintln!("skipping the object-storage test: {why}");
        return None;
    }
    let port = TcpListener::bind((host, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("moto_server")
        .args(["-H", host, "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let server = S3Server {
        child,
        endpoint: format!("http://{host}:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((host, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

/// Held by the test whose endpoint the process's AWS environment names: tests run on
/// parallel threads of one process, and each points the environment at its own server.
static AWS_ENVIRONMENT: Mutex<()> = Mutex::new(());

/// The AWS settings of the server, in the environment as a user would set them, and
/// the lock that keeps every other test's settings out until the guard drops.
pub fn use_server(server: &S3Server) -> MutexGuard<'static, ()> {
    use_endpoint(&server.endpoint)
}

/// The AWS settings of an S3-compatible endpoint (`http://host:port`), in the
/// environment, held as [`use_server`] holds them.
pub fn use_endpoint(endpoint: &str) -> MutexGuard<'static, ()> {
    let held = AWS_ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    for (key, value) in [
        ("AWS_ACCESS_KEY_ID", "tidemark-test"),
        ("AWS_SECRET_ACCESS_KEY", "tidemark-test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
    ] {
        std::env::set_var(key, value);
    }
    held
}

/// Puts `files` (relative to `dir`) under `s3://bucket/prefix/` with boto3, creating
/// the bucket if needed: what a user's upload job would do.
pub fn put_objects(server: &S3Server, bucket: &str, prefix: &str, dir: &Path, files: &[String]) {
    let script = r#"
import sys, boto3
endpoint, bucket, prefix, root = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="tidemark-test",
                  aws_secret_access_key="tidemark-test", region_name="us-east-1")
if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=bucket)
for rel in sys.argv[5:]:
    s3.upload_file(root + "/" + rel, bucket, prefix + "/" + rel)
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([&server.endpoint, bucket, prefix])
        .arg(dir)
        .args(files)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "boto3 put the objects");
}

/// Downloads every object under `s3://bucket/prefix/` into `dir` with boto3: a reader
/// independent of tidemark's own client.
pub fn download_prefix(server: &S3Server, bucket: &str, prefix: &str, dir: &Path) {
    let script = r#"
import os, sys, boto3
endpoint, bucket, prefix, root = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="tidemark-test",
                  aws_secret_access_key="tidemark-test", region_name="us-east-1")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for obj in page.get("Contents", []):
        target = os.path.join(root, obj["Key"][len(prefix) + 1:])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file(bucket, obj["Key"], target)
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([&server.endpoint, bucket, prefix])
        .arg(dir)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "boto3 downloaded the output");
}
