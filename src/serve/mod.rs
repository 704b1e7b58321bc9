//! `tidemark serve OUT` and `tidemark run ... --serve ADDR`: the current tables of an
//! output over HTTP, following new commits, as `../shared/CONTRACT.md` "Serving" says,
//! with the dashboard page at `/`.
//!
//! A reader thread follows the output ([`follow`]) and applies each completed logical
//! time to the tables in memory ([`state`]); each time's changes also go to every
//! `/api/changes` subscriber as one Server-Sent Event. The HTTP side is axum on its own
//! tokio runtime; the page and its chart library are compiled into the binary
//! ([`assets`]), so nothing is fetched at run time.

pub mod assets;
pub mod follow;
pub mod json;
pub mod state;

use crate::error_text::one_line;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use follow::Follower;
use json::{row_json, Filter};
use state::Tables;

/// How often the output is looked at for new commits.
const POLL: Duration = Duration::from_millis(250);
/// Messages a slow `/api/changes` client may fall behind before it is told to reload.
const BACKLOG: usize = 256;

/// What every request handler shares.
struct Shared {
    out: PathBuf,
    tables: RwLock<Tables>,
    changes: broadcast::Sender<Arc<str>>,
}

/// A server running on its own threads.
pub struct Server {
    addr: SocketAddr,
}

impl Server {
    /// Starts serving `out` at `listen` in the background; returns once the port is
    /// bound, so a taken port is an error here, not later.
    pub fn start(out: &Path, listen: SocketAddr) -> Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tidemark-serve")
            .enable_all()
            .build()
            .context("starting the HTTP server's runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .with_context(|| {
                format!("cannot listen on {listen}: choose a free address with --listen (or --serve), e.g. 127.0.0.1:0")
            })?;
        let addr = listener.local_addr()?;
        let (changes, _) = broadcast::channel(BACKLOG);
        let shared = Arc::new(Shared {
            out: out.to_path_buf(),
            tables: RwLock::new(Tables::default()),
            changes,
        });
        spawn_follower(Arc::clone(&shared))?;
        let app = router(shared);
        std::thread::Builder::new()
            .name("tidemark-http".into())
            .spawn(move || {
                if let Err(error) = runtime.block_on(async { axum::serve(listener, app).await }) {
                    eprintln!("error: the HTTP server stopped: {error}");
                }
            })
            .context("starting the HTTP server")?;
        Ok(Server { addr })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// `tidemark serve`: serves `out` until the process is stopped.
pub fn serve(out: &Path, listen: SocketAddr) -> Result<()> {
    if crate::sources::object_store::is_object_url(out) {
        return serve_object_output(out, listen);
    }
    if !out.exists() {
        eprintln!(
            "{} does not exist yet: serving anyway; the page fills in once `tidemark run --out {}` writes it",
            out.display(),
            out.display()
        );
    }
    let server = Server::start(out, listen)?;
    eprintln!(
        "serving {} at http://{}/ (Ctrl-C to stop)",
        out.display(),
        server.addr()
    );
    let stop = crate::runtime::stop::StopFlag::on_signals()?;
    while !stop.raised() {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// How often the mirror of an `s3://` output looks for new objects.
const MIRROR_POLL: Duration = Duration::from_secs(1);

/// `tidemark serve s3://bucket/prefix`: mirrors the change streams and the checkpoint
/// into a temporary directory, commit point last (see
/// [`crate::sink::object_store::ObjectOutput::mirror`]), keeps mirroring every
/// [`MIRROR_POLL`], and serves the mirror as a local output.
fn serve_object_output(out: &Path, listen: SocketAddr) -> Result<()> {
    let url = out.display().to_string();
    let dir = tempfile::tempdir().context("creating a temporary directory for the mirror")?;
    let mut output = crate::sink::object_store::ObjectOutput::open(&url, dir.path())?;
    let fetched = output.mirror().with_context(|| format!("reading {url}"))?;
    if fetched == 0 {
        eprintln!(
            "{url} holds no change streams yet: serving anyway; the page fills in once `tidemark run --out {url}` writes them"
        );
    }
    std::thread::Builder::new()
        .name("tidemark-mirror".into())
        .spawn(move || loop {
            std::thread::sleep(MIRROR_POLL);
            if let Err(error) = output.mirror() {
                tracing::warn!("mirroring the output: {}; trying again", one_line(&error));
            }
        })
        .context("starting the output mirror")?;
    let server = Server::start(dir.path(), listen)?;
    eprintln!(
        "serving {url} at http://{}/ (Ctrl-C to stop)",
        server.addr()
    );
    let stop = crate::runtime::stop::StopFlag::on_signals()?;
    while !stop.raised() {
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(dir);
    Ok(())
}

/// Follows the output on a thread of its own (file reads block).
fn spawn_follower(shared: Arc<Shared>) -> Result<()> {
    std::thread::Builder::new()
        .name("tidemark-follow".into())
        .spawn(move || {
            let mut follower = Follower::new(&shared.out);
            loop {
                let found = follower.poll();
                let mut tables = shared.tables.write().unwrap_or_else(|e| e.into_inner());
                match found {
                    Ok(found) => {
                        tables.error = None;
                        let listened = shared.changes.receiver_count() > 0;
                        for message in tables.apply(found, listened) {
                            // No subscriber is not an error.
                            let _ = shared.changes.send(Arc::from(message));
                        }
                    }
                    Err(error) => tables.error = Some(one_line(&error)),
                }
                drop(tables);
                std::thread::sleep(POLL);
            }
        })
        .context("starting the output follower")?;
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route(
            "/{file}",
            get(|UrlPath(file): UrlPath<String>| async move { asset(&file) }),
        )
        .route("/api/tables", get(list_tables))
        .route("/api/tables/{table}", get(table_rows))
        .route("/api/status", get(status))
        .route("/api/changes", get(changes))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such page: the API is under /api/tables, /api/status and /api/changes".into(),
                None,
            )
        })
        .with_state(shared)
}

/// A JSON error body `{"error": ...}`, with more fields when given.
fn error(status: StatusCode, message: String, more: Option<(&str, Value)>) -> Response {
    let mut body = json!({ "error": message });
    if let Some((key, value)) = more {
        body[key] = value;
    }
    (status, axum::Json(body)).into_response()
}

/// A JSON body already serialised.
fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn asset(file: &str) -> Response {
    match assets::get(file) {
        Some((content_type, body)) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("no such file `{file}`"),
            None,
        ),
    }
}

async fn list_tables(State(shared): State<Arc<Shared>>) -> Response {
    let tables = shared.tables.read().unwrap_or_else(|e| e.into_inner());
    json_text(tables.list().to_string())
}

async fn table_rows(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let tables = shared.tables.read().unwrap_or_else(|e| e.into_inner());
    let Some((index, spec)) = tables.spec(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown table `{name}`"),
            Some(("tables", json!(tables.names()))),
        );
    };
    let filter = match Filter::parse(&spec, &params) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, message, None),
    };
    let rows: Vec<Value> = tables
        .rows(index)
        .filter(|row| filter.keeps(row))
        .map(|row| row_json(&spec, row, None))
        .collect();
    json_text(Value::Array(rows).to_string())
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let tables = shared.tables.read().unwrap_or_else(|e| e.into_inner());
    json_text(tables.status(&shared.out).to_string())
}

/// `/api/changes`: one `change` event per completed logical time; a client that fell
/// more than [`BACKLOG`] times behind gets a `reset` event (reload the tables) instead
/// of the times it missed.
async fn changes(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = shared.changes.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(message) => Event::default().event("change").data(&*message),
            Err(broadcast::error::RecvError::Lagged(missed)) => Event::default()
                .event("reset")
                .data(json!({ "missed": missed }).to_string()),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
