//! Taking a snapshot, retention, and garbage collection of blobs.
//!
//! **Order of writes.** Blobs first, each verified (HEAD, size) after its upload; the manifest
//! last, with a create-only put. A manifest therefore never names a blob that was not in the
//! store when it was written, and a failure anywhere before it leaves only unreferenced blobs,
//! which a later snapshot reuses (a retry uploads only what is missing) or garbage collection
//! removes.
//!
//! **Grace.** Garbage collection deletes a blob no manifest names only once it is older than
//! `gc_grace`, since an upload in progress (here, or in another cluster sharing the prefix)
//! writes its blobs before its manifest. The uploader keeps its side of that contract: it
//! reuses a blob that no manifest of this index names only if the blob is younger than half the
//! grace, re-uploads it otherwise (which renews its age), and before writing the manifest
//! renews any blob whose half-grace has run out meanwhile (an upload longer than that).
//! Blobs named by a manifest of this index are safe to reuse at any age: that manifest stays
//! until the new one is written (retention runs after).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::directory::MANIFEST_FILE;
use crate::error::{Error, Result};

use super::format::{
    blob_key, index_folder, manifest_key, parse_manifest_key, FileEntry, SnapshotManifest, BLOBS, INDEXES,
    SNAPSHOT_FORMAT,
};
use super::pin::{sweep_pins, Pin};
use super::store::SnapshotStore;
use super::{check_index_uuid, is_sha256_hex, sha256_file, unix_now, IndexIdentity, PgPosition, Phase, Progress};

/// How long a snapshot found complete is trusted before "nothing changed" checks its blobs
/// again. A blob quarantined by a restore in this process clears the trust at once; one
/// quarantined elsewhere is noticed within this time.
const REVERIFY_AFTER: Duration = Duration::from_secs(3600);

/// What to keep after a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Snapshots of the index kept, the new one included (≥ 1).
    pub keep_last: usize,
    /// Whether to collect unreferenced blobs of the whole prefix afterwards (a listing of all
    /// blobs and manifests: on a large shared bucket, do it less often with
    /// [`SnapshotStore::collect_garbage`]).
    pub collect_garbage: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { keep_last: 3, collect_garbage: true }
    }
}

/// What a snapshot did.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotReport {
    /// The snapshot's number among this index's snapshots (its manifest's name).
    pub sequence: u64,
    /// The folder generation it holds.
    pub generation: u64,
    /// The manifest's key under the store's prefix.
    pub manifest_key: String,
    pub created_at: i64,
    pub position: PgPosition,
    /// Files in the snapshot, and their bytes.
    pub files: usize,
    pub bytes_total: u64,
    /// Files and bytes actually sent (the rest were in the store already).
    pub files_uploaded: usize,
    pub bytes_uploaded: u64,
    /// True when this generation had been snapshotted already: the existing snapshot is
    /// returned, nothing was uploaded or written.
    pub unchanged: bool,
    /// Old manifests of this index removed by retention.
    pub manifests_deleted: usize,
    /// Garbage collection, when it ran.
    pub gc: Option<GcReport>,
    /// Retention or garbage collection failed after the snapshot was written (the snapshot is
    /// good; the cleanup is retried by the next one).
    pub cleanup_error: Option<String>,
}

/// What garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Snapshot manifests found under the prefix (all indexes).
    pub manifests: usize,
    /// Blobs found, and how many of them a manifest names.
    pub blobs: usize,
    pub blobs_referenced: usize,
    /// Unreferenced blobs left because they are younger than the grace period.
    pub blobs_in_grace: usize,
    pub blobs_deleted: usize,
    pub bytes_deleted: u64,
    /// Set when collection was skipped, and why (nothing was deleted then).
    pub skipped: Option<String>,
}

/// Age of an object from its last-modified time (the store's clock against ours; the
/// half-grace margin absorbs modest skew).
fn age(meta: &object_store::ObjectMeta) -> Duration {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Duration::from_millis((now_ms - meta.last_modified.timestamp_millis()).max(0) as u64)
}

impl SnapshotStore {
    /// Uploads the current generation of the index folder `dir` as a new snapshot of `index`,
    /// covering Postgres position `position`; then applies `retention`.
    ///
    /// The generation is pinned for the upload (merges go on meanwhile). Files already in the
    /// store are not sent again. If this generation is the newest snapshot already, it is
    /// returned as it is (`unchanged`). `progress` is called per file and per part of a large
    /// file, on this thread; an error it returns stops the snapshot (nothing is written that
    /// names missing blobs) and is returned.
    pub fn snapshot(
        &self,
        dir: &Path,
        index: &IndexIdentity,
        position: PgPosition,
        retention: &Retention,
        progress: &mut dyn FnMut(Progress) -> Result<()>,
    ) -> Result<SnapshotReport> {
        check_index_uuid(&index.uuid)?;
        if retention.keep_last == 0 {
            return Err(Error::invalid_parameter(
                "snapshot retention must keep at least one snapshot",
                "Set keep_last to 1 or more.",
            ));
        }
        // Pins of crashed uploads hold disk space (files merges freed); sweeping is cheap.
        let _ = sweep_pins(dir);
        let pin = Pin::create(dir)?;
        let generation = pin.manifest().hybrid.generation;

        let existing = self.manifest_keys(&index.uuid)?;
        // A newest manifest that cannot be read does not stop a new snapshot (which will
        // supersede it); it just cannot match.
        let newest = existing.last().and_then(|(_, key)| self.load_manifest(key).ok());

        let (meta_sha, meta_size) = sha256_file(&pin.path(MANIFEST_FILE))?;
        if let Some(n) = &newest {
            // meta.json names every file, all immutable, and holds the generation: the same
            // bytes are the same index state. The snapshot must also still be whole: a blob
            // found damaged by a restore is moved to quarantine, and a new snapshot (which
            // sends that content again) is then the way to repair it.
            if n.meta_entry().is_some_and(|e| e.sha256 == meta_sha) && self.blobs_present(n)? {
                return Ok(SnapshotReport {
                    sequence: n.sequence,
                    generation: n.generation,
                    manifest_key: manifest_key(&index.uuid, n.sequence),
                    created_at: n.created_at,
                    position: n.position,
                    files: n.files.len(),
                    bytes_total: n.bytes_total(),
                    files_uploaded: 0,
                    bytes_uploaded: 0,
                    unchanged: true,
                    manifests_deleted: 0,
                    gc: None,
                    cleanup_error: None,
                });
            }
        }

        // Hash every pinned file.
        let names = pin.files().to_vec();
        let mut sizes = Vec::with_capacity(names.len());
        for name in &names {
            let p = pin.path(name);
            sizes.push(std::fs::metadata(&p).map_err(|e| Error::io("stat", &p, e))?.len());
        }
        let bytes_total: u64 = sizes.iter().sum();
        let mut p = Progress {
            phase: Phase::Hashing,
            files_done: 0,
            files_total: names.len(),
            bytes_done: 0,
            bytes_total,
            file: String::new(),
        };
        let mut entries = Vec::with_capacity(names.len());
        for name in &names {
            let (sha256, size) =
                if name == MANIFEST_FILE { (meta_sha.clone(), meta_size) } else { sha256_file(&pin.path(name))? };
            entries.push(FileEntry { name: name.clone(), sha256, size });
            p.files_done += 1;
            p.bytes_done += size;
            p.file = name.clone();
            progress(p.clone())?;
        }
        let bytes_total: u64 = entries.iter().map(|e| e.size).sum();

        // Blobs that a manifest of this index names stay until the new manifest is written.
        let mut protected: HashSet<String> = HashSet::new();
        for (_, key) in &existing {
            if let Ok(m) = self.load_manifest(key) {
                protected.extend(m.files.iter().map(|f| f.sha256.clone()));
            }
        }

        // Upload what is missing.
        let half_grace = self.options.gc_grace / 2;
        // For each blob: until when it is safe from garbage collection (None: protected).
        let mut safe_until: HashMap<String, Option<Instant>> = HashMap::new();
        let (mut files_uploaded, mut bytes_uploaded) = (0usize, 0u64);
        p = Progress { phase: Phase::Uploading, files_done: 0, bytes_done: 0, bytes_total, ..p };
        for e in &entries {
            p.file = e.name.clone();
            if !safe_until.contains_key(&e.sha256) {
                let key = blob_key(&e.sha256);
                let reuse = match self.head(&key)? {
                    Some(m) if m.size == e.size => {
                        if protected.contains(&e.sha256) {
                            Some(None)
                        } else {
                            let a = age(&m);
                            (a < half_grace).then(|| Some(Instant::now() + (half_grace - a)))
                        }
                    }
                    // Absent, or of the wrong size (damaged): (re)upload.
                    _ => None,
                };
                let until = match reuse {
                    Some(until) => until,
                    None => {
                        let started = Instant::now();
                        let base = p.bytes_done;
                        let mut on_bytes = |sent: u64| {
                            let mut q = p.clone();
                            q.bytes_done = base + sent;
                            progress(q)
                        };
                        self.upload_blob(&key, &pin.path(&e.name), e.size, &mut on_bytes)?;
                        files_uploaded += 1;
                        bytes_uploaded += e.size;
                        Some(started + half_grace)
                    }
                };
                safe_until.insert(e.sha256.clone(), until);
            }
            p.files_done += 1;
            p.bytes_done += e.size;
            progress(p.clone())?;
        }

        // Renew blobs whose safety ran out during a long upload, so garbage collection cannot
        // take them between here and the manifest.
        let now = Instant::now();
        for e in &entries {
            if let Some(Some(t)) = safe_until.get(&e.sha256) {
                if *t <= now + Duration::from_secs(1) {
                    self.upload_blob(&blob_key(&e.sha256), &pin.path(&e.name), e.size, &mut |_| Ok(()))?;
                    bytes_uploaded += e.size;
                    safe_until.insert(e.sha256.clone(), Some(Instant::now() + half_grace));
                }
            }
        }

        // Numbered by the folder's generation, unless that went back (a rebuilt folder):
        // "newest" must stay "taken last".
        let newest_seq = existing.last().map(|(s, _)| *s);
        let sequence = newest_seq.map_or(generation, |s| generation.max(s + 1));
        let manifest = SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            index: index.clone(),
            config: pin.manifest().hybrid.config.clone(),
            sequence,
            generation,
            position,
            created_at: unix_now(),
            num_docs: pin.manifest().num_docs(),
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            files: entries,
        };
        let key = manifest_key(&index.uuid, sequence);
        if !self.put_bytes(&key, Bytes::from(manifest.to_bytes()), true)? {
            // Either an earlier attempt of this very put succeeded (its answer was lost), or
            // another process snapshotted this index at the same time.
            let theirs = self.load_manifest(&key)?;
            if theirs.files != manifest.files {
                return Err(Error::Store {
                    message: format!(
                        "snapshot {sequence} of index {} was written by someone else during this snapshot ({})",
                        index.uuid,
                        self.describe(&key)
                    ),
                    hint: Some("Only one snapshot of an index should run at a time. Retry; the next attempt uses a new number.".into()),
                });
            }
        } else {
            self.manifests.lock().insert(key.clone(), Arc::new(manifest.clone()));
        }
        // Every blob was just confirmed (HEAD after upload, or found).
        self.verified.lock().insert(key.clone(), Instant::now());
        drop(pin);

        let mut report = SnapshotReport {
            sequence,
            generation,
            manifest_key: key,
            created_at: manifest.created_at,
            position,
            files: manifest.files.len(),
            bytes_total,
            files_uploaded,
            bytes_uploaded,
            unchanged: false,
            manifests_deleted: 0,
            gc: None,
            cleanup_error: None,
        };
        match self.apply_retention(&index.uuid, retention.keep_last) {
            Ok(n) => report.manifests_deleted = n,
            Err(e) => report.cleanup_error = Some(e.to_string()),
        }
        if retention.collect_garbage && report.cleanup_error.is_none() {
            match self.collect_garbage() {
                Ok(gc) => report.gc = Some(gc),
                Err(e) => report.cleanup_error = Some(e.to_string()),
            }
        }
        Ok(report)
    }

    /// Whether every blob of `m` is in the store with the right size (one HEAD per blob, at
    /// most once per `REVERIFY_AFTER` for a manifest of this process).
    fn blobs_present(&self, m: &SnapshotManifest) -> Result<bool> {
        let key = manifest_key(&m.index.uuid, m.sequence);
        if self.verified.lock().get(&key).is_some_and(|t| t.elapsed() < REVERIFY_AFTER) {
            return Ok(true);
        }
        let mut seen = HashSet::new();
        for f in &m.files {
            if seen.insert(f.sha256.as_str()) {
                match self.head(&blob_key(&f.sha256))? {
                    Some(meta) if meta.size == f.size => {}
                    _ => return Ok(false),
                }
            }
        }
        self.verified.lock().insert(key, Instant::now());
        Ok(true)
    }

    /// Uploads one blob and checks that the store holds it with the right size afterwards.
    fn upload_blob(
        &self,
        key: &str,
        file: &Path,
        size: u64,
        on_bytes: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<()> {
        self.put_file(key, file, size, on_bytes)?;
        match self.head(key)? {
            Some(m) if m.size == size => Ok(()),
            found => Err(Error::Store {
                message: format!(
                    "after uploading {} to {}, the store holds {}",
                    file.display(),
                    self.describe(key),
                    found.map_or("nothing".to_string(), |m| format!("{} bytes instead of {size}", m.size))
                ),
                hint: Some("The object store lost or truncated the upload. Retry; check the store's health.".into()),
            }),
        }
    }

    /// Keys of the snapshot manifests of index `uuid`, by ascending sequence.
    pub(crate) fn manifest_keys(&self, uuid: &str) -> Result<Vec<(u64, String)>> {
        let mut out: Vec<(u64, String)> = self
            .list_objects(&index_folder(uuid))?
            .into_iter()
            .filter_map(|(key, _)| match parse_manifest_key(&key) {
                Some((u, seq)) if u == uuid => Some((seq, key)),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The manifest at `key`, from the cache or the store.
    pub(crate) fn load_manifest(&self, key: &str) -> Result<Arc<SnapshotManifest>> {
        if let Some(m) = self.manifests.lock().get(key) {
            return Ok(m.clone());
        }
        let bytes = self.get_bytes(key)?.ok_or_else(|| Error::Missing {
            path: self.describe(key).into(),
            detail: "the snapshot manifest does not exist (any more)".into(),
        })?;
        let m = SnapshotManifest::parse(&self.describe(key), &bytes)?;
        if let Some((uuid, seq)) = parse_manifest_key(key) {
            if m.index.uuid != uuid || m.sequence != seq {
                return Err(Error::Corrupt {
                    path: self.describe(key).into(),
                    detail: format!(
                        "the manifest says index {} snapshot {}, but is stored as index {uuid} snapshot {seq}",
                        m.index.uuid, m.sequence
                    ),
                });
            }
        }
        let m = Arc::new(m);
        self.manifests.lock().insert(key.to_string(), m.clone());
        Ok(m)
    }

    /// Deletes all but the newest `keep_last` snapshot manifests of index `uuid` (their blobs
    /// go with the next garbage collection). Returns how many were deleted.
    pub fn apply_retention(&self, uuid: &str, keep_last: usize) -> Result<usize> {
        check_index_uuid(uuid)?;
        let keys = self.manifest_keys(uuid)?;
        let drop_n = keys.len().saturating_sub(keep_last.max(1));
        for (_, key) in &keys[..drop_n] {
            self.delete(key)?;
            self.manifests.lock().remove(key);
        }
        Ok(drop_n)
    }

    /// Deletes every snapshot manifest of index `uuid` (a dropped index). Its blobs go with the
    /// next garbage collection, after the grace period. Returns how many were deleted.
    pub fn delete_index(&self, uuid: &str) -> Result<usize> {
        check_index_uuid(uuid)?;
        let keys = self.manifest_keys(uuid)?;
        for (_, key) in &keys {
            self.delete(key)?;
            self.manifests.lock().remove(key);
        }
        Ok(keys.len())
    }

    /// Deletes blobs that no snapshot manifest under the prefix (of any index) names and that
    /// are older than the grace period (`StoreOptions::gc_grace`).
    pub fn collect_garbage(&self) -> Result<GcReport> {
        self.collect_garbage_older_than(self.options.gc_grace)
    }

    /// Like [`collect_garbage`](Self::collect_garbage) with an explicit grace period. A grace
    /// shorter than the longest upload in progress can delete blobs that upload still needs
    /// (it then fails or, past its manifest, renews them): use zero only when nothing uploads.
    ///
    /// If any manifest cannot be read (damaged, or written by a newer version), nothing is
    /// deleted: its blobs cannot be told apart from garbage.
    pub fn collect_garbage_older_than(&self, grace: Duration) -> Result<GcReport> {
        // Blobs are listed before manifests: a blob uploaded after the manifests were read is
        // not in the list, so only manifests written before the blob listing could be missed,
        // and their blobs are as old as the grace protects.
        let blobs = self.list_objects(BLOBS)?;
        let manifests = self.list_objects(INDEXES)?;
        let mut report = GcReport::default();
        let mut referenced: HashSet<String> = HashSet::new();
        for (key, _) in &manifests {
            if parse_manifest_key(key).is_none() {
                continue;
            }
            report.manifests += 1;
            match self.load_manifest(key) {
                Ok(m) => referenced.extend(m.files.iter().map(|f| f.sha256.clone())),
                // Deleted by retention since the listing: its blobs are garbage now.
                Err(Error::Missing { .. }) => {}
                Err(e) => {
                    report.skipped = Some(format!("manifest {key} could not be read ({e}); no blob was deleted"));
                    return Ok(report);
                }
            }
        }
        for (key, meta) in &blobs {
            let Some(sha) = key.strip_prefix(BLOBS).and_then(|k| k.strip_prefix('/')) else { continue };
            if !is_sha256_hex(sha) {
                continue; // not ours
            }
            report.blobs += 1;
            if referenced.contains(sha) {
                report.blobs_referenced += 1;
            } else if age(meta) < grace {
                report.blobs_in_grace += 1;
            } else {
                self.delete(key)?;
                report.blobs_deleted += 1;
                report.bytes_deleted += meta.size;
            }
        }
        Ok(report)
    }
}
