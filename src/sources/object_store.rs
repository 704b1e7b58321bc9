//! Datasets in object storage: `tidemark run s3://bucket/prefix --out OUT`.
//!
//! The objects under the prefix are mirrored into a local staging directory,
//! `OUT/source/` ([`STAGE_DIR`]), and the run reads that directory as it reads any local
//! dataset: same discovery, mapping, batching and checkpoint. Each object is downloaded
//! once, into a temporary name renamed into place when complete, so a reader never sees
//! half an object. A hidden manifest records the size and entity tag of every object
//! taken, so a later listing (a `--follow` run lists the prefix at every poll, as Spark's
//! Auto Loader does) downloads only objects that are new or were replaced. Objects
//! deleted from the bucket stay in the mirror: like a deleted local file, that takes
//! nothing back.
//!
//! The store comes from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`), read by
//! the `object_store` crate that delta-rs builds on (contract "Outputs").

use crate::error_text::one_line;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use std::io::Write;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

/// The staging directory under `--out` that mirrors an object-store dataset.
pub const STAGE_DIR: &str = "source";

/// A run's dataset as a local directory: `dataset` itself, or for an object-store URL
/// its mirror under `out`, made by process 0 (the others wait for it). Also returns the
/// URL (the run's dataset identity) and, for a `--follow` run, the guard that keeps
/// mirroring until it is dropped.
pub fn local_dataset(
    dataset: &Path,
    out: &Path,
    process: usize,
    follow: Option<Duration>,
    progress: bool,
) -> Result<(PathBuf, Option<String>, Option<FollowGuard>)> {
    if !is_object_url(dataset) {
        return Ok((dataset.to_path_buf(), None, None));
    }
    let url = dataset.display().to_string();
    let remote = ObjectDataset::open(&url, &out.join(STAGE_DIR))?;
    let dir = remote.stage().to_path_buf();
    if process != 0 {
        remote.wait_for_mirror(Duration::from_secs(600))?;
        return Ok((dir, Some(url), None));
    }
    let downloaded = remote.sync()?;
    if progress {
        eprintln!(
            "{url}: {downloaded} new object(s) mirrored into {}",
            dir.display()
        );
    }
    let guard = follow.map(|poll| remote.follow(poll));
    Ok((dir, Some(url), guard))
}

/// Objects downloaded at the same time.
const DOWNLOADS_AT_ONCE: usize = 8;

/// The manifest of objects taken, inside the staging directory (hidden from discovery).
const MANIFEST: &str = ".objects.json";

/// Whether a dataset argument names an object-store location (`scheme://...`) rather
/// than a local directory.
pub fn is_object_url(dataset: &Path) -> bool {
    dataset.to_str().is_some_and(|text| text.contains("://"))
}

/// Refuses a path that reads as a URL with one slash too few (`s3:/lake/raw`, where
/// `s3://lake/raw` was meant): taken as a local path it would quietly read or write a
/// directory named `s3:` here. `what` names the argument (`DATASET`, `--out`).
pub fn refuse_mistyped_url(path: &Path, what: &str) -> Result<()> {
    let Some(text) = path.to_str() else {
        return Ok(());
    };
    let Some((scheme, rest)) = text.split_once(':') else {
        return Ok(());
    };
    let looks_like_scheme = scheme.len() >= 2
        && scheme.chars().all(|c| c.is_ascii_alphanumeric())
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
    if looks_like_scheme && !rest.starts_with("//") && !path.exists() {
        let fixed = format!("{scheme}://{}", rest.trim_start_matches('/'));
        bail!("{what} `{text}` looks like a URL with a slash missing: did you mean `{fixed}`? (a local directory whose name has a colon is read only if it exists)");
    }
    Ok(())
}

/// What the manifest remembers of an object: enough to see that it was replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Taken {
    size: u64,
    e_tag: Option<String>,
}

/// An object-store dataset and its local mirror.
pub struct ObjectDataset {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    stage: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl ObjectDataset {
    /// Opens `url` (`s3://bucket[/prefix]`) with the store settings of the AWS
    /// environment variables, mirroring into `stage`.
    pub fn open(url: &str, stage: &Path) -> Result<ObjectDataset> {
        let (store, prefix, runtime) = open_store(url)?;
        Ok(ObjectDataset {
            url: url.trim_end_matches('/').to_string(),
            store,
            prefix,
            stage: stage.to_path_buf(),
            runtime,
        })
    }

    /// The local directory the run reads.
    pub fn stage(&self) -> &Path {
        &self.stage
    }

    /// Lists the prefix and downloads every object not taken yet (or replaced since);
    /// returns how many were downloaded.
    pub fn sync(&self) -> Result<usize> {
        std::fs::create_dir_all(&self.stage)
            .with_context(|| format!("creating the staging directory {}", self.stage.display()))?;
        let manifest_path = self.stage.join(MANIFEST);
        let mut taken: BTreeMap<String, Taken> = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "reading {}: remove it to download the dataset again",
                    manifest_path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", manifest_path.display()))
            }
        };
        let listed = list_prefix(&self.runtime, self.store.as_ref(), &self.prefix, &self.url)?;
        // The objects to take, in name order: they appear in the mirror in that order,
        // as the files of a local directory are taken in name order.
        let mut wanted = Vec::new();
        for meta in listed {
            let Some(rel) = self.relative(&meta.location) else {
                continue;
            };
            let now = Taken {
                size: meta.size,
                e_tag: meta.e_tag.clone(),
            };
            if taken.get(&rel) == Some(&now) {
                continue;
            }
            let target = self.stage.join(&rel);
            // Downloaded by a sync killed before it wrote the manifest: adopt the file
            // rather than replace it, which would look like a changed input file.
            let staged = std::fs::metadata(&target).map(|m| m.len()).ok();
            if !taken.contains_key(&rel) && staged == Some(meta.size) {
                taken.insert(rel, now);
                continue;
            }
            wanted.push((rel, meta.location, now));
        }
        wanted.sort_by(|a, b| a.0.cmp(&b.0));
        let total = wanted.len();
        // Up to DOWNLOADS_AT_ONCE objects stream into temporary files together; each is
        // renamed into place in name order. The manifest is written once, at the end.
        let runtime = &self.runtime;
        runtime.block_on(async {
            let mut downloads = futures_util::stream::iter(wanted)
                .map(|(rel, location, now)| async move {
                    let target = self.stage.join(&rel);
                    let tmp = download(self.store.as_ref(), &location, &target).await;
                    (rel, target, now, tmp)
                })
                .buffered(DOWNLOADS_AT_ONCE);
            while let Some((rel, target, now, tmp)) = downloads.next().await {
                let tmp = tmp
                    .and_then(|tmp| tmp.context("it was deleted after it was listed"))
                    .with_context(|| format!("downloading {}/{rel}", self.url))?;
                std::fs::rename(&tmp, &target)
                    .with_context(|| format!("renaming into {}", target.display()))?;
                taken.insert(rel, now);
            }
            anyhow::Ok(())
        })?;
        write_replacing(
            &manifest_path,
            serde_json::to_string_pretty(&taken)?.as_bytes(),
        )?;
        Ok(total)
    }

    fn relative(&self, location: &ObjectPath) -> Option<String> {
        relative_path(&self.prefix, location)
    }

    /// Waits until the mirror has been made (by process 0 of a cluster), at most `limit`.
    pub fn wait_for_mirror(&self, limit: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        while !self.stage.join(MANIFEST).exists() {
            if started.elapsed() > limit {
                bail!(
                    "{} was not mirrored into {} within {limit:?}: process 0 of the cluster mirrors it; check that it runs with the same --out on a shared disk",
                    self.url,
                    self.stage.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Keeps the mirror up to date while a `--follow` run lists it: syncs every `poll`
    /// until the returned guard is dropped. A failed listing is reported and retried.
    pub fn follow(self, poll: Duration) -> FollowGuard {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("object-sync".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(poll);
                    if let Err(error) = self.sync() {
                        tracing::warn!("{} (retrying)", one_line(&error));
                    }
                }
            })
            .ok();
        FollowGuard { stop, thread }
    }
}

/// Stops [`ObjectDataset::follow`]'s listing when dropped.
pub struct FollowGuard {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FollowGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens the store of `url` (`s3://bucket[/prefix]`) with the settings of the AWS
/// environment variables: the store, the prefix inside it, and a runtime to drive it.
pub(crate) fn open_store(
    url: &str,
) -> Result<(Arc<dyn ObjectStore>, ObjectPath, tokio::runtime::Runtime)> {
    let parsed = url::Url::parse(url).with_context(|| format!("reading the URL {url}"))?;
    if parsed.scheme() != "s3" {
        bail!(
            "{url}: tidemark reads and writes local directories and s3:// URLs (S3, MinIO and other S3-compatible stores); `{}://` is not supported",
            parsed.scheme()
        );
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        bail!("{url} names no bucket: give s3://BUCKET or s3://BUCKET/PREFIX");
    }
    let store = AmazonS3Builder::from_env()
        .with_url(url)
        .build()
        .with_context(|| {
            format!("opening {url}: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION (and AWS_ENDPOINT_URL with AWS_ALLOW_HTTP=true for a plain-http S3-compatible server)")
        })?;
    let prefix = ObjectPath::from(parsed.path().trim_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the object-store client")?;
    Ok((Arc::new(store), prefix, runtime))
}

/// Every object under `prefix` of the store of `url`; an error naming the URL, the
/// store's reason and what to check.
pub(crate) fn list_prefix(
    runtime: &tokio::runtime::Runtime,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    url: &str,
) -> Result<Vec<object_store::ObjectMeta>> {
    runtime
        .block_on(store.list(Some(prefix)).try_collect())
        .map_err(|e| {
            anyhow::anyhow!(
                "listing {url} failed: {}. Check the bucket's name, AWS_ENDPOINT_URL, AWS_REGION and the credentials",
                describe(&e)
            )
        })
}

/// An object's path below `prefix`, with `/` separators; `None` for the prefix itself
/// or a name that cannot be a local file name.
pub(crate) fn relative_path(prefix: &ObjectPath, location: &ObjectPath) -> Option<String> {
    let parts: Vec<_> = location
        .prefix_match(prefix)?
        .map(|part| part.as_ref().to_string())
        .collect();
    let safe = |part: &String| !part.is_empty() && part != "." && part != "..";
    (!parts.is_empty() && parts.iter().all(safe)).then(|| parts.join("/"))
}

/// Streams the object at `location` into a hidden temporary file beside `target`;
/// returns its path (the caller renames it into place), or none when the object is
/// gone (deleted after it was listed).
pub(crate) async fn download(
    store: &dyn ObjectStore,
    location: &ObjectPath,
    target: &Path,
) -> Result<Option<PathBuf>> {
    let got = match store.get(location).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(anyhow::anyhow!("{}", describe(&error))),
    };
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = temporary_beside(target);
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut chunks = got.into_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    Ok(Some(tmp))
}

/// The cause of a store error in one line: the innermost error, with an S3 error
/// document shortened to its code and message.
pub(crate) fn describe(error: &object_store::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(text[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => text.lines().next().unwrap_or_default().to_string(),
    }
}

/// A hidden temporary name beside `path` (discovery ignores it). It holds the process
/// id, so processes of one cluster mirroring together do not collide.
pub(crate) fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so
/// readers see the old or the new file, never part of one.
pub(crate) fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_beside(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_a_slash_missing_or_no_bucket_is_refused_with_the_fix() {
        let error = refuse_mistyped_url(Path::new("s3:/lake/raw"), "--out")
            .unwrap_err()
            .to_string();
        assert!(error.contains("did you mean `s3://lake/raw`"), "{error}");
        assert!(refuse_mistyped_url(Path::new("data/events"), "DATASET").is_ok());
        assert!(refuse_mistyped_url(Path::new("s3://lake/raw"), "DATASET").is_ok());
        assert!(refuse_mistyped_url(Path::new("C:/data"), "DATASET").is_ok()); // a drive letter
        let error = open_store("s3://").err().unwrap().to_string();
        assert!(error.contains("names no bucket"), "{error}");
    }

    #[test]
    fn urls_are_told_from_directories() {
        assert!(is_object_url(Path::new("s3://bucket/data")));
        assert!(is_object_url(Path::new("gs://bucket")));
        assert!(!is_object_url(Path::new("data/events")));
        assert!(!is_object_url(Path::new("/tmp/s3:/odd")));
    }

    #[test]
    fn another_scheme_is_an_error_naming_what_works() {
        let error = ObjectDataset::open("gs://bucket/data", Path::new("/nonexistent"))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("s3://"), "{error}");
        assert!(error.contains("gs://"), "{error}");
    }
}
