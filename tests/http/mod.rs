//! A minimal HTTP/1.1 client for the server tests: plain GETs on a loopback address,
//! and a reader of a Server-Sent Events stream. Written here so that the tests check
//! the server with nothing of the server's own stack.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate};
use serde_json::Value;
use tidemark_dataflows::model::tables::{Cell, ColumnType, TableSpec};

/// A response: status code, headers (lower-cased names) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw).unwrap();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("the body is UTF-8"),
    }
}

fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    (status, headers)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16)
            .expect("a chunk size");
        raw = &raw[end + 2..];
        if size == 0 || raw.len() < size {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
}

/// An open `/api/changes` stream.
pub struct Events {
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Bytes read but not yet decoded (an incomplete chunk).
    raw: Vec<u8>,
    /// Decoded stream text not yet returned as events.
    text: String,
}

impl Events {
    /// Opens the stream at `path`.
    pub fn open(addr: SocketAddr, path: &str) -> Events {
        let mut stream = TcpStream::connect(addr).expect("the server accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        assert_eq!(status, 200, "{path} answers 200");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream")),
            "{path} is an event stream: {headers:?}"
        );
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        // Bytes the head reader buffered beyond the head belong to the body.
        let raw = reader.buffer().to_vec();
        reader.consume(raw.len());
        let mut events = Events {
            reader,
            chunked,
            raw,
            text: String::new(),
        };
        events.decode();
        events
    }

    /// The next event `(name, data)` within `limit`, if any; comments (keep-alives)
    /// are skipped.
    pub fn next(&mut self, limit: Duration) -> Option<(String, String)> {
        let started = Instant::now();
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = None::<String>;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.get_or_insert_with(String::new)
                            .push_str(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                if let Some(data) = data {
                    return Some((name, data));
                }
            }
            if started.elapsed() > limit {
                return None;
            }
            let mut buf = [0u8; 65536];
            match self.reader.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.decode();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading the event stream: {e}"),
            }
        }
    }

    /// Moves the complete chunks of `raw` into `text`.
    fn decode(&mut self) {
        if !self.chunked {
            self.text.push_str(&String::from_utf8_lossy(&self.raw));
            self.raw.clear();
            return;
        }
        loop {
            let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .expect("a chunk size line");
            if self.raw.len() < end + 2 + size + 2 {
                return;
            }
            let payload = self.raw[end + 2..end + 2 + size].to_vec();
            self.text.push_str(&String::from_utf8_lossy(&payload));
            self.raw.drain(..end + 2 + size + 2);
        }
    }
}

/// A JSON row back as cells, read the way a client would: RFC 3339 instants, ISO dates.
pub fn cells(spec: &TableSpec, row: &Value) -> Vec<Cell> {
    spec.columns
        .iter()
        .map(|column| {
            let value = &row[column.name];
            if value.is_null() {
                return Cell::Null;
            }
            match column.ty {
                ColumnType::Str => Cell::Str(value.as_str().expect("a string").into()),
                ColumnType::Int => Cell::Int(value.as_i64().expect("an integer")),
                ColumnType::Float => Cell::Float(value.as_f64().expect("a number")),
                ColumnType::Bool => Cell::Bool(value.as_bool().expect("a boolean")),
                ColumnType::Timestamp => Cell::Timestamp(
                    DateTime::parse_from_rfc3339(value.as_str().expect("an instant"))
                        .expect("RFC 3339")
                        .timestamp_millis(),
                ),
                ColumnType::Date => {
                    let date = NaiveDate::parse_from_str(value.as_str().unwrap(), "%Y-%m-%d")
                        .expect("YYYY-MM-DD");
                    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                    Cell::Date((date - epoch).num_days() as i32)
                }
            }
        })
        .collect()
}

/// `/api/tables/<table>` as sorted cell rows.
pub fn served(addr: SocketAddr, spec: &TableSpec, query: &str) -> Vec<Vec<Cell>> {
    let response = get(addr, &format!("/api/tables/{}{query}", spec.name));
    assert_eq!(response.status, 200, "{}: {}", spec.name, response.body);
    let mut rows: Vec<Vec<Cell>> = response
        .json()
        .as_array()
        .expect("an array of rows")
        .iter()
        .map(|row| cells(spec, row))
        .collect();
    rows.sort();
    rows
}

/// Waits until the server has applied logical time `time`.
pub fn wait_for_time(addr: SocketAddr, time: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(addr, "/api/status").json()["time"].as_u64() != Some(time) {
        assert!(
            Instant::now() < deadline,
            "the server reaches logical time {time}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
