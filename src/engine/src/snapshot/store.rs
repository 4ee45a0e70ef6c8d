//! The object store that holds snapshots: URL parsing, the process's tokio runtime, timeouts,
//! retries, and the few primitive operations the snapshot code needs (HEAD, put of bytes or of
//! a file, streamed get into a file, list, delete).
//!
//! **Threads.** object_store is async. Its requests run on one small multi-thread tokio runtime
//! per process (2 workers), created on first use. The calling thread (a Postgres backend or
//! worker) only waits for each request's result, reads and writes local files, and calls the
//! progress callback; the runtime's threads run nothing but object_store futures and never call
//! back into the caller, so they can never touch Postgres. They are created with every signal
//! blocked, so the signals Postgres sends a backend are always handled by its own thread. A
//! runtime found to belong to another process (created before a `fork`) is abandoned, never
//! used: its threads do not exist in the child.
//!
//! **Failures.** Each request has a timeout (`request_timeout`; for downloads, the longest wait
//! for the next chunk) and is retried with exponential backoff and jitter when the failure may
//! be transient (network errors, 5xx, timeouts), `max_attempts` times in all. The S3 client
//! additionally retries each HTTP request a little itself. Every public method therefore either
//! succeeds or fails within a bounded time, with [`Error::Store`] naming the store, the object
//! and what to do.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

use super::format::SnapshotManifest;
use super::hex;

/// How a [`SnapshotStore`] talks to its object store. `Default` suits a real S3 bucket; tests
/// shorten the timeouts and the part sizes.
#[derive(Clone)]
pub struct StoreOptions {
    /// S3 endpoint (`http://127.0.0.1:9000`, `https://s3.eu-west-1.amazonaws.com`, MinIO...).
    /// Default: `AWS_ENDPOINT` / `AWS_ENDPOINT_URL_S3`, else AWS itself.
    pub endpoint: Option<String>,
    /// S3 region. Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain HTTP to the endpoint. Default: `AWS_ALLOW_HTTP`, else true exactly when
    /// `endpoint` starts with `http://` (naming an http endpoint is asking for it).
    pub allow_http: Option<bool>,
    /// S3 credentials. Default: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    /// `AWS_SESSION_TOKEN`, else the other standard AWS sources (instance metadata, web
    /// identity). Never printed: `Debug` redacts them.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Longest wait for one request (for a download: for its next chunk), before it counts as
    /// failed and is retried. Default 60 s.
    pub request_timeout: Duration,
    /// Longest wait for a TCP/TLS connection (S3 only). Default 5 s.
    pub connect_timeout: Duration,
    /// Attempts per operation, the first included (≥ 1). Default 4.
    pub max_attempts: u32,
    /// First pause between attempts; doubled each time up to `backoff_max`. Defaults 250 ms
    /// and 8 s (so a dead store fails an operation in about 2 s plus the timeouts).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Files larger than this are sent as multipart uploads. Default 8 MiB.
    pub multipart_threshold: u64,
    /// Size of each multipart part (S3 needs ≥ 5 MiB; smaller values are raised for s3://).
    /// Also the memory one upload holds. Default 8 MiB.
    pub part_size: usize,
    /// Blobs that no manifest references are deleted only once they are older than this: a
    /// snapshot in progress (here or in another cluster writing to the same prefix) uploads its
    /// blobs before its manifest. Must exceed the longest snapshot upload. Default 1 hour.
    pub gc_grace: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            endpoint: None,
            region: None,
            allow_http: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 4,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
            multipart_threshold: 8 << 20,
            part_size: 8 << 20,
            gc_grace: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("StoreOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("gc_grace", &self.gc_grace)
            .finish()
    }
}

/// A place snapshots are kept: an object store and a prefix in it (see the module comment of
/// `snapshot` for the layout). Cheap to share between threads (`&self` everywhere).
pub struct SnapshotStore {
    store: Arc<dyn ObjectStore>,
    /// Key prefix without leading or trailing `/`; empty for the store's root.
    prefix: String,
    /// The URL it was opened with (credentials are never in it).
    url: String,
    /// The URL of the prefix, for messages: `<base>/<key>` names an object.
    base: String,
    pub(crate) options: StoreOptions,
    /// Parsed manifests by key. Manifests are immutable, so a cached one is never stale; a
    /// deleted one is dropped from the cache.
    pub(crate) manifests: Mutex<HashMap<String, Arc<SnapshotManifest>>>,
    /// Manifests whose blobs this process saw complete in the store, and when (see
    /// `SnapshotStore::snapshot`: an idle index is not re-checked blob by blob every time).
    pub(crate) verified: Mutex<HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore").field("url", &self.url).field("options", &self.options).finish()
    }
}

/// `memory://<name>` stores of this process, so that two `SnapshotStore`s opened on the same
/// URL (a "second machine" in tests) see the same objects.
static MEMORY_STORES: Mutex<Option<HashMap<String, Arc<InMemory>>>> = parking_lot::const_mutex(None);

fn bad_url(url: &str, why: &str) -> Error {
    Error::invalid_parameter(
        format!("snapshot store URL \"{url}\" is not valid: {why}"),
        "Use s3://bucket/prefix, file:///absolute/path or memory://name.",
    )
}

impl SnapshotStore {
    /// Opens the store at `url`:
    /// - `s3://bucket[/prefix]`: S3 or any S3-compatible server (see [`StoreOptions`] for the
    ///   endpoint, region and credentials; the standard `AWS_*` variables fill what they leave
    ///   unset). Path-style requests, so servers without virtual hosts (MinIO, moto) work.
    /// - `file:///absolute/path`: a local or mounted folder (created if missing); writes are
    ///   fsync'd.
    /// - `memory://[name]`: in this process's memory, for tests; the same name is the same
    ///   store.
    ///
    /// Nothing is contacted here (see [`SnapshotStore::check`]).
    pub fn open(url: &str, options: StoreOptions) -> Result<SnapshotStore> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad_url(url, "it has no scheme"))?;
        let mut options = options;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match scheme {
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad_url(url, "it names no bucket"));
                }
                options.part_size = options.part_size.max(5 << 20);
                (Arc::new(build_s3(bucket, &options).map_err(|e| bad_url(url, &e.to_string()))?), prefix.to_string())
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad_url(url, "a file:// URL needs an absolute path (file:///path)"));
                }
                crate::fsutil::create_private_dir(FsPath::new(rest))?;
                let fs = LocalFileSystem::new_with_prefix(rest)
                    .map_err(|e| bad_url(url, &e.to_string()))?
                    .with_automatic_cleanup(true)
                    .with_fsync(true);
                (Arc::new(fs), String::new())
            }
            "memory" => {
                let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let mut stores = MEMORY_STORES.lock();
                let store = stores.get_or_insert_with(HashMap::new).entry(name.to_string()).or_default().clone();
                (store, prefix.to_string())
            }
            _ => return Err(bad_url(url, &format!("scheme \"{scheme}\" is not supported"))),
        };
        let base = url.trim_end_matches('/').to_string();
        Self::build(store, &prefix, url.to_string(), base, options)
    }

    /// A store over an `ObjectStore` made elsewhere (tests wrap one to inject faults), keys
    /// under `prefix`. `label` names it in messages.
    pub fn from_object_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        label: &str,
        options: StoreOptions,
    ) -> Result<SnapshotStore> {
        let base = match (prefix.trim_matches('/'), label.ends_with("://")) {
            ("", _) => label.trim_end_matches('/').to_string(),
            (p, true) => format!("{label}{p}"),
            (p, false) => format!("{}/{p}", label.trim_end_matches('/')),
        };
        Self::build(store, prefix, label.to_string(), base, options)
    }

    /// `base` is how messages name the prefix (`<base>/<key>` names an object).
    fn build(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        url: String,
        base: String,
        options: StoreOptions,
    ) -> Result<SnapshotStore> {
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            Path::parse(&prefix).map_err(|e| bad_url(&url, &format!("bad prefix: {e}")))?;
        }
        if options.max_attempts == 0 || options.part_size == 0 || options.request_timeout.is_zero() {
            return Err(Error::invalid_parameter(
                "snapshot store options: max_attempts, part_size and request_timeout must be positive",
                "Start from StoreOptions::default().",
            ));
        }
        Ok(SnapshotStore {
            store,
            prefix,
            url,
            base,
            options,
            manifests: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The URL (or label) the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The options in force.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Checks that the store answers and the credentials are accepted, by listing the top of
    /// the prefix.
    pub fn check(&self) -> Result<()> {
        let prefix = self.path("");
        self.retry(|store| {
            let prefix = prefix.clone();
            async move { store.list_with_delimiter(Some(&prefix)).await.map(|_| ()) }
        })
        .map_err(|e| self.error("list", "", e))
    }

    // ---- keys ------------------------------------------------------------------------------

    /// The object path of `key` (relative to the prefix).
    pub(crate) fn path(&self, key: &str) -> Path {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => Path::from(key),
            (false, true) => Path::from(self.prefix.as_str()),
            (false, false) => Path::from(format!("{}/{key}", self.prefix)),
        }
    }

    /// The key (relative to the prefix) of a listed object, if it is under the prefix.
    fn relative<'a>(&self, location: &'a Path) -> Option<&'a str> {
        let s = location.as_ref();
        if self.prefix.is_empty() {
            Some(s)
        } else {
            s.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }

    /// Where `key` is, for messages.
    pub(crate) fn describe(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    // ---- running requests ------------------------------------------------------------------

    /// Runs one future on the runtime with the request timeout, and waits for it.
    fn timed<T, Fut>(&self, fut: Fut) -> std::result::Result<T, OpError>
    where
        T: Send + 'static,
        Fut: Future<Output = object_store::Result<T>> + Send + 'static,
    {
        let timeout = self.options.request_timeout;
        match block(async move { tokio::time::timeout(timeout, fut).await }) {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(OpError::from(e)),
            Ok(Err(_)) => Err(OpError::Timeout(timeout)),
            Err(e) => Err(e),
        }
    }

    /// Runs `op` (which makes one request's future) until it succeeds, fails permanently, or
    /// `max_attempts` are used up, pausing with exponential backoff between attempts.
    pub(crate) fn retry<T, F, Fut>(&self, mut op: F) -> std::result::Result<T, OpError>
    where
        T: Send + 'static,
        F: FnMut(Arc<dyn ObjectStore>) -> Fut,
        Fut: Future<Output = object_store::Result<T>> + Send + 'static,
    {
        let mut attempt = 1;
        loop {
            match self.timed(op(self.store.clone())) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < self.options.max_attempts => {
                    self.pause(attempt);
                    attempt += 1;
                }
                Err(e) => return Err(e.after(attempt)),
            }
        }
    }

    /// The pause before attempt `attempt + 1`: exponential, capped, with ±25% jitter so that
    /// many workers failing together do not retry together.
    pub(crate) fn pause(&self, attempt: u32) {
        let base = self.options.backoff_initial.saturating_mul(1u32 << (attempt - 1).min(16));
        let base = base.min(self.options.backoff_max);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let jitter = 0.75 + f64::from(nanos % 1000) / 2000.0;
        // A stop request cuts the pause short; the next attempt's wait then gives up at once.
        sleep_interruptibly(base.mul_f64(jitter));
    }

    /// The error for a failed operation.
    pub(crate) fn error(&self, what: &str, key: &str, e: OpError) -> Error {
        let target = self.describe(key);
        let (message, hint) = match e {
            OpError::NotFound => (format!("object {target} does not exist"), None),
            OpError::AlreadyExists => (format!("object {target} already exists"), None),
            OpError::Permanent(m) => (
                format!("could not {what} {target}: {m}"),
                Some("Check the snapshot store's URL, options and credentials.".to_string()),
            ),
            OpError::Transient { message, attempts } => (
                format!("could not {what} {target} after {attempts} attempt(s): {message}"),
                Some(
                    "The object store is unreachable, slow or failing. Nothing was lost; the operation can be retried later."
                        .to_string(),
                ),
            ),
            OpError::Cancelled => (format!("{what} of {target} was cancelled"), None),
            OpError::Timeout(d) => (
                format!("could not {what} {target}: no answer within {d:?}"),
                Some("The object store is unreachable or slow. Nothing was lost; the operation can be retried later.".into()),
            ),
        };
        Error::Store { message, hint }
    }

    // ---- operations ------------------------------------------------------------------------

    /// The object's metadata, or `None` if there is no such object.
    pub(crate) fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path(key);
        match self.retry(|s| {
            let path = path.clone();
            async move { s.head(&path).await }
        }) {
            Ok(m) => Ok(Some(m)),
            Err(OpError::NotFound) => Ok(None),
            Err(e) => Err(self.error("look up", key, e)),
        }
    }

    /// Writes `bytes` at `key`. With `create_only`, an existing object is left alone and
    /// `false` is returned (the manifest of a snapshot is never overwritten).
    pub(crate) fn put_bytes(&self, key: &str, bytes: Bytes, create_only: bool) -> Result<bool> {
        let path = self.path(key);
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        let r = self.retry(|s| {
            let (path, bytes, mode) = (path.clone(), bytes.clone(), mode.clone());
            async move {
                let opts = PutOptions { mode, ..Default::default() };
                s.put_opts(&path, PutPayload::from(bytes), opts).await.map(|_| ())
            }
        });
        match r {
            Ok(()) => Ok(true),
            Err(OpError::AlreadyExists) if create_only => Ok(false),
            Err(e) => Err(self.error("write", key, e)),
        }
    }

    /// The whole object (small objects only: manifests), or `None` if it does not exist.
    pub(crate) fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(key);
        match self.retry(|s| {
            let path = path.clone();
            async move { s.get(&path).await?.bytes().await }
        }) {
            Ok(b) => Ok(Some(b)),
            Err(OpError::NotFound) => Ok(None),
            Err(e) => Err(self.error("read", key, e)),
        }
    }

    /// Every object under `folder` (a key prefix ending at a `/` boundary), with keys relative
    /// to the store's prefix.
    pub(crate) fn list_objects(&self, folder: &str) -> Result<Vec<(String, ObjectMeta)>> {
        let path = self.path(folder);
        let listed = match self.retry(|s| {
            let path = path.clone();
            async move { s.list(Some(&path)).try_collect::<Vec<ObjectMeta>>().await }
        }) {
            Ok(v) => v,
            Err(OpError::NotFound) => Vec::new(),
            Err(e) => return Err(self.error("list", folder, e)),
        };
        Ok(listed.into_iter().filter_map(|m| self.relative(&m.location).map(|k| (k.to_string(), m.clone()))).collect())
    }

    /// Deletes `key`; a missing object is not an error.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match self.retry(|s| {
            let path = path.clone();
            async move { s.delete(&path).await }
        }) {
            Ok(()) | Err(OpError::NotFound) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    /// Moves `from` to `to` (copy, then delete).
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (self.path(from), self.path(to));
        self.retry(|s| {
            let (f, t) = (f.clone(), t.clone());
            async move { s.copy(&f, &t).await }
        })
        .map_err(|e| self.error("copy", from, e))?;
        self.delete(from)
    }

    /// Uploads the local file `file` (of `size` bytes, which must not change meanwhile: callers
    /// upload pinned files) to `key`, overwriting. Files above `multipart_threshold` go as
    /// multipart uploads of `part_size` parts; `on_bytes` is called after each part with the
    /// bytes sent so far and may stop the upload by returning an error (the partial upload is
    /// aborted). A failed attempt is retried from the start.
    pub(crate) fn put_file(
        &self,
        key: &str,
        file: &FsPath,
        size: u64,
        on_bytes: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<()> {
        if size <= self.options.multipart_threshold {
            let bytes = std::fs::read(file).map_err(|e| Error::io("read", file, e))?;
            if bytes.len() as u64 != size {
                return Err(changed_under_us(file, size, bytes.len() as u64));
            }
            self.put_bytes(key, Bytes::from(bytes), false)?;
            return on_bytes(size);
        }
        let mut attempt = 1;
        loop {
            match self.try_multipart(key, file, size, on_bytes) {
                Ok(()) => return Ok(()),
                Err(Failed::Local(e)) => return Err(e),
                Err(Failed::Store(e)) if e.is_transient() && attempt < self.options.max_attempts => {
                    self.pause(attempt);
                    attempt += 1;
                }
                Err(Failed::Store(e)) => return Err(self.error("upload", key, e.after(attempt))),
            }
        }
    }

    fn try_multipart(
        &self,
        key: &str,
        file: &FsPath,
        size: u64,
        on_bytes: &mut dyn FnMut(u64) -> Result<()>,
    ) -> std::result::Result<(), Failed> {
        let path = self.path(key);
        let store = self.store.clone();
        let mut upload = self.timed(async move { store.put_multipart(&path).await }).map_err(Failed::Store)?;
        let result = (|| {
            let mut f = std::fs::File::open(file).map_err(|e| Failed::Local(Error::io("open", file, e)))?;
            let mut sent = 0u64;
            loop {
                let part = read_up_to(&mut f, self.options.part_size)
                    .map_err(|e| Failed::Local(Error::io("read", file, e)))?;
                if part.is_empty() {
                    break;
                }
                sent += part.len() as u64;
                if sent > size {
                    return Err(Failed::Local(changed_under_us(file, size, sent)));
                }
                let fut = upload.put_part(PutPayload::from(Bytes::from(part)));
                self.timed(fut).map_err(Failed::Store)?;
                on_bytes(sent).map_err(Failed::Local)?;
            }
            if sent != size {
                return Err(Failed::Local(changed_under_us(file, size, sent)));
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                let timeout = self.options.request_timeout;
                // `complete` borrows the upload, so the upload travels into the task and back.
                let (mut upload, r) = block(async move {
                    let r = tokio::time::timeout(timeout, upload.complete()).await;
                    (upload, r)
                })
                .map_err(Failed::Store)?;
                match r {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => {
                        let _ = self.timed(async move { upload.abort().await });
                        Err(Failed::Store(OpError::from(e)))
                    }
                    Err(_) => {
                        let _ = self.timed(async move { upload.abort().await });
                        Err(Failed::Store(OpError::Timeout(timeout)))
                    }
                }
            }
            Err(e) => {
                // Best effort: S3 keeps the parts of an unfinished upload (and bills them) until
                // it is aborted or a bucket lifecycle rule expires it.
                let _ = self.timed(async move { upload.abort().await });
                Err(e)
            }
        }
    }

    /// Downloads `key` into a new file `file` (mode 0600), computing its sha256 on the way,
    /// and fsyncs it. Stops early once more than `max_size` bytes came (a wrong object need
    /// not be read to the end). `on_bytes` is called every `part_size` bytes or so and may stop
    /// the download. A failed attempt is retried from the start. Returns the sha256 (hex) and
    /// the size, or `None` if there is no such object.
    pub(crate) fn get_to_file(
        &self,
        key: &str,
        file: &FsPath,
        max_size: u64,
        on_bytes: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<Option<(String, u64)>> {
        let mut attempt = 1;
        loop {
            match self.try_get_to_file(key, file, max_size, on_bytes) {
                Ok(r) => return Ok(r),
                Err(Failed::Local(e)) => return Err(e),
                Err(Failed::Store(OpError::NotFound)) => return Ok(None),
                Err(Failed::Store(e)) if e.is_transient() && attempt < self.options.max_attempts => {
                    self.pause(attempt);
                    attempt += 1;
                }
                Err(Failed::Store(e)) => return Err(self.error("download", key, e.after(attempt))),
            }
        }
    }

    fn try_get_to_file(
        &self,
        key: &str,
        file: &FsPath,
        max_size: u64,
        on_bytes: &mut dyn FnMut(u64) -> Result<()>,
    ) -> std::result::Result<Option<(String, u64)>, Failed> {
        let local = |action: &'static str, e: std::io::Error| Failed::Local(Error::io(action, file, e));
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(file)
            .map_err(|e| local("create", e))?;
        // The request and its body stream run on the runtime; chunks come to this thread
        // through a small bounded channel (at most a few chunks in memory), and dropping the
        // receiver (error, cancellation) ends the task.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, OpError>>(4);
        let store = self.store.clone();
        let path = self.path(key);
        let timeout = self.options.request_timeout;
        runtime().map_err(Failed::Local)?.spawn(async move {
            let got = match tokio::time::timeout(timeout, store.get(&path)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(OpError::from(e))).await;
                    return;
                }
                Err(_) => {
                    let _ = tx.send(Err(OpError::Timeout(timeout))).await;
                    return;
                }
            };
            let mut stream = got.into_stream();
            loop {
                let item = match tokio::time::timeout(timeout, stream.next()).await {
                    Ok(None) => return,
                    Ok(Some(Ok(b))) => Ok(b),
                    Ok(Some(Err(e))) => Err(OpError::from(e)),
                    Err(_) => Err(OpError::Timeout(timeout)),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut reported = 0u64;
        let rt = runtime().map_err(Failed::Local)?;
        loop {
            // Waits in slices (see `block`); the runtime only times this wait, the request
            // and its stream stay on the runtime's own threads.
            let item = match rt.block_on(async { tokio::time::timeout(WAIT_SLICE, rx.recv()).await }) {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) if interrupted() => return Err(Failed::Store(OpError::Cancelled)),
                Err(_) => continue,
            };
            let chunk = item.map_err(Failed::Store)?;
            size += chunk.len() as u64;
            if size > max_size {
                // Longer than the manifest says: not the file we want. The caller reports it.
                return Ok(Some((String::new(), size)));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(|e| local("write", e))?;
            if size - reported >= self.options.part_size as u64 {
                reported = size;
                on_bytes(size).map_err(Failed::Local)?;
            }
        }
        out.sync_all().map_err(|e| local("fsync", e))?;
        Ok(Some((hex(&hasher.finalize()), size)))
    }
}

fn changed_under_us(file: &FsPath, expected: u64, got: u64) -> Error {
    Error::Corrupt {
        path: file.to_path_buf(),
        detail: format!("the file changed while it was uploaded ({expected} bytes expected, {got} read)"),
    }
}

/// Reads up to `n` bytes (fewer only at the end of the file).
fn read_up_to(f: &mut std::fs::File, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    f.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn build_s3(bucket: &str, o: &StoreOptions) -> object_store::Result<object_store::aws::AmazonS3> {
    // from_env first, so explicit options override the environment.
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(e) = &o.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &o.region {
        b = b.with_region(r);
    }
    if let Some(k) = &o.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(s) = &o.secret_access_key {
        b = b.with_secret_access_key(s);
    }
    if let Some(t) = &o.session_token {
        b = b.with_token(t);
    }
    let endpoint_is_http = o
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT").ok())
        .is_some_and(|e| e.starts_with("http://"));
    match o.allow_http {
        Some(v) => b = b.with_allow_http(v),
        None if endpoint_is_http && std::env::var("AWS_ALLOW_HTTP").is_err() => b = b.with_allow_http(true),
        None => {}
    }
    // Client settings through with_config, which edits the client options in place (a whole
    // ClientOptions would drop what from_env put there, e.g. AWS_ALLOW_HTTP).
    let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
    b = b
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), ms(o.request_timeout))
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), ms(o.connect_timeout));
    // A couple of quick retries per HTTP request inside the client; the longer, bounded
    // backoff is ours (`SnapshotStore::retry`), so that the total stays predictable.
    b = b.with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: o.request_timeout,
    });
    b.build()
}

// ---- errors of one request -------------------------------------------------------------------

/// How one request failed, before it is turned into an [`Error`] with context.
#[derive(Debug)]
pub(crate) enum OpError {
    NotFound,
    AlreadyExists,
    /// Retrying will not help (credentials, permissions, bad path, unsupported).
    Permanent(String),
    /// May work on another attempt (network, 5xx, a task that died).
    Transient {
        message: String,
        attempts: u32,
    },
    Timeout(Duration),
    /// The waiting thread was asked to stop (see [`set_interrupt_check`]); the request was
    /// abandoned.
    Cancelled,
}

impl OpError {
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, OpError::Transient { .. } | OpError::Timeout(_))
    }

    fn after(self, attempts: u32) -> OpError {
        match self {
            OpError::Transient { message, .. } => OpError::Transient { message, attempts },
            OpError::Timeout(d) if attempts > 1 => {
                OpError::Transient { message: format!("no answer within {d:?}"), attempts }
            }
            other => other,
        }
    }
}

impl From<object_store::Error> for OpError {
    fn from(e: object_store::Error) -> OpError {
        use object_store::Error as E;
        match e {
            E::NotFound { .. } => OpError::NotFound,
            // S3 answers a conditional put on an existing key with 412 (object_store maps it
            // to AlreadyExists; some servers' 412 arrives as Precondition).
            E::AlreadyExists { .. } | E::Precondition { .. } => OpError::AlreadyExists,
            e @ (E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::UnknownConfigurationKey { .. }) => OpError::Permanent(e.to_string()),
            other => OpError::Transient { message: other.to_string(), attempts: 1 },
        }
    }
}

/// A failure of a multi-step transfer: of the store (maybe retried) or local/cancelled (not).
enum Failed {
    Store(OpError),
    Local(Error),
}

// ---- the runtime -----------------------------------------------------------------------------

struct ProcessRuntime {
    pid: u32,
    rt: Arc<Runtime>,
}

static RUNTIME: Mutex<Option<ProcessRuntime>> = parking_lot::const_mutex(None);

/// The process's runtime for object store requests (see the module comment), created on first
/// use.
fn runtime() -> Result<Arc<Runtime>> {
    let mut slot = RUNTIME.lock();
    let pid = std::process::id();
    if let Some(r) = slot.as_ref() {
        if r.pid == pid {
            return Ok(r.rt.clone());
        }
    }
    if let Some(stale) = slot.take() {
        // Made by the parent before a fork: its threads do not exist here, and dropping it
        // would wait for them forever.
        std::mem::forget(stale);
    }
    // Threads inherit the signal mask of the thread that creates them: block everything while
    // the workers are started, and in every thread the runtime starts later.
    let old = block_all_signals();
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_name("pg_hybrid-objstore")
        .on_thread_start(|| {
            block_all_signals();
        })
        .enable_all()
        .build();
    restore_signals(&old);
    let rt = Arc::new(built.map_err(|e| Error::Store {
        message: format!("could not start the object store runtime: {e}"),
        hint: Some("The process may be out of threads or memory.".into()),
    })?);
    *slot = Some(ProcessRuntime { pid, rt: rt.clone() });
    Ok(rt)
}

/// How often a thread waiting for the store asks [`interrupted`] whether to give up.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// The embedding process's "was I asked to stop?" (Postgres: a query cancel or a shutdown
/// request is pending). It must only read flags: it is called from the thread that waits for
/// the store, while that thread is inside engine code.
static INTERRUPT_CHECK: std::sync::OnceLock<fn() -> bool> = std::sync::OnceLock::new();

/// Installs the interrupt check of the process (once; later calls are ignored). Without one,
/// waits for the store end only with the request, its timeout or its retries.
pub fn set_interrupt_check(check: fn() -> bool) {
    let _ = INTERRUPT_CHECK.set(check);
}

fn interrupted() -> bool {
    INTERRUPT_CHECK.get().is_some_and(|f| f())
}

/// Runs `fut` on the runtime and waits for it on this thread. The future runs as a task on the
/// runtime's workers, never on this thread, so anything it starts (blocking threads of the
/// local file store, DNS lookups) starts from a thread with signals blocked. The wait is cut
/// in slices: when the process is asked to stop, the task is aborted (dropping its request)
/// and `Cancelled` returned, instead of waiting for a store that does not answer.
fn block<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> std::result::Result<T, OpError> {
    let rt = runtime().map_err(|e| OpError::Permanent(e.to_string()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let handle = rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    loop {
        match rx.recv_timeout(WAIT_SLICE) {
            Ok(v) => return Ok(v),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if interrupted() {
                    handle.abort();
                    return Err(OpError::Cancelled);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(OpError::Transient { message: "object store task failed".into(), attempts: 1 })
            }
        }
    }
}

/// Sleeps `d` in slices; false if the process was asked to stop meanwhile.
fn sleep_interruptibly(d: Duration) -> bool {
    let until = std::time::Instant::now() + d;
    loop {
        if interrupted() {
            return false;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(WAIT_SLICE));
    }
}

fn block_all_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on local, initialised signal sets.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: restores a mask obtained from pthread_sigmask above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for bad in ["nothing", "ftp://x/y", "file://relative/path", "s3:///prefix"] {
            let e = SnapshotStore::open(bad, StoreOptions::default()).unwrap_err();
            assert!(matches!(e, Error::InvalidParameter { .. }), "{bad}: {e}");
        }
        let s = SnapshotStore::open("memory://urls/a/b/", StoreOptions::default()).unwrap();
        assert_eq!(s.path("blobs/x").as_ref(), "a/b/blobs/x");
        let s = SnapshotStore::open("s3://bucket/some/prefix", StoreOptions::default()).unwrap();
        assert_eq!(s.path("blobs/x").as_ref(), "some/prefix/blobs/x");
        assert_eq!(s.describe("blobs/x"), "s3://bucket/some/prefix/blobs/x");
        let s =
            SnapshotStore::from_object_store(Arc::new(InMemory::new()), "/p/q/", "test://", StoreOptions::default())
                .unwrap();
        assert_eq!(s.path("blobs/x").as_ref(), "p/q/blobs/x");
        assert_eq!(s.describe("blobs/x"), "test://p/q/blobs/x");
    }

    #[test]
    fn the_store_is_shareable_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<SnapshotStore>();
    }

    #[test]
    fn secrets_are_not_printed() {
        let o = StoreOptions { secret_access_key: Some("hunter2".into()), ..Default::default() };
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn runtime_threads_have_signals_blocked() {
        let rt = runtime().unwrap();
        let blocked = futures::executor::block_on(rt.spawn(async {
            // SAFETY: reading this thread's signal mask.
            unsafe {
                let mut cur: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
                libc::sigismember(&cur, libc::SIGINT) == 1 && libc::sigismember(&cur, libc::SIGUSR1) == 1
            }
        }))
        .unwrap();
        assert!(blocked);
    }
}
