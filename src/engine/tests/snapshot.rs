//! Snapshots to object storage, end to end on real index folders: dedup, retention and garbage
//! collection, restore and search, damaged and missing blobs, a store that fails, stalls or
//! loses answers, pins against merges, cancellation, local verification.
//!
//! All against `memory://` and `file://` stores (fast). The same scenarios against a real
//! S3-compatible server are in `snapshot_s3.rs` (gated on `PGH_S3_ENDPOINT`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::{Identity, Manifest};
use hybrid_engine::snapshot::{
    self, no_progress, sha256_file, verify_local, Phase, Pin, Progress, SnapshotStore, StoreOptions,
};
use hybrid_engine::text::maintenance;
use hybrid_engine::text::reader::TextIndex;
use hybrid_engine::text::writer::IndexBuilder;
use hybrid_engine::text::{Document, KeyValue};
use hybrid_engine::Error;

mod snapshot_common;
use snapshot_common::*;

/// Every object key of an object store.
fn keys(store: &dyn ObjectStore) -> BTreeSet<String> {
    futures::executor::block_on(async {
        use futures::TryStreamExt;
        store.list(None).map_ok(|m| m.location.to_string()).try_collect::<BTreeSet<_>>().await.unwrap()
    })
}

fn blob_keys(store: &dyn ObjectStore) -> BTreeSet<String> {
    keys(store).into_iter().filter(|k| k.starts_with("blobs/")).collect()
}

fn blob_keys_under(store: &dyn ObjectStore, prefix: &str) -> BTreeSet<String> {
    keys(store).into_iter().filter(|k| k.starts_with(prefix)).collect()
}

fn manifest_blobs(s: &SnapshotStore, uuid: &str, seq: u64) -> BTreeSet<String> {
    s.manifest(uuid, seq).unwrap().files.iter().map(|f| format!("blobs/{}", f.sha256)).collect()
}

fn unique_memory_url(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("memory://{name}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    // InMemory's futures need no runtime.
    futures::executor::block_on(f)
}

// ---- a store that fails on demand ------------------------------------------------------------

/// Wraps a store: puts fail once `puts_left` reaches 0 (negative: unlimited), everything fails
/// while `down`, the first `slow_heads` HEADs stall for `delay`, and `lose_manifest_answer`
/// makes the next manifest put succeed but report a failure (an answer lost on the network).
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    puts_left: AtomicI64,
    puts: AtomicUsize,
    down: AtomicBool,
    slow_heads: AtomicUsize,
    delay: Duration,
    lose_manifest_answer: AtomicBool,
    /// Parts of multipart uploads that may still succeed (negative: unlimited).
    parts_left: Arc<AtomicI64>,
}

/// A multipart upload whose parts fail once `parts_left` reaches 0.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    parts_left: Arc<AtomicI64>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let left = self.parts_left.load(Ordering::SeqCst);
        if left == 0 {
            return Box::pin(async {
                Err(object_store::Error::Generic { store: "faulty", source: "injected part failure".into() })
            });
        }
        if left > 0 {
            self.parts_left.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

impl Faulty {
    fn new(inner: Arc<dyn ObjectStore>) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner,
            puts_left: AtomicI64::new(-1),
            puts: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            slow_heads: AtomicUsize::new(0),
            delay: Duration::from_millis(0),
            lose_manifest_answer: AtomicBool::new(false),
            parts_left: Arc::new(AtomicI64::new(-1)),
        })
    }

    fn injected(&self) -> object_store::Error {
        object_store::Error::Generic { store: "faulty", source: "injected failure".into() }
    }

    fn check_down(&self) -> object_store::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(self.injected())
        } else {
            Ok(())
        }
    }

    fn take_put(&self) -> object_store::Result<()> {
        self.check_down()?;
        let left = self.puts_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(self.injected());
        }
        if left > 0 {
            self.puts_left.fetch_sub(1, Ordering::SeqCst);
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.take_put()?;
        let r = self.inner.put_opts(location, payload, opts).await?;
        if location.as_ref().starts_with("indexes/") && self.lose_manifest_answer.swap(false, Ordering::SeqCst) {
            return Err(self.injected());
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.take_put()?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload { inner, parts_left: self.parts_left.clone() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.check_down()?;
        if options.head
            && self.slow_heads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.down.load(Ordering::SeqCst) {
            let e = self.injected();
            return Box::pin(futures::stream::once(async move { Err(e) }));
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.check_down()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.check_down()?;
        self.inner.copy_opts(from, to, options).await
    }
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn second_snapshot_uploads_only_new_files() {
    let tmp = tempdir("dedup");
    let dir = tmp.join("index");
    build(&dir, 300);
    let s = SnapshotStore::open(&unique_memory_url("dedup"), opts()).unwrap();

    let first = s.snapshot(&dir, &ident("u1"), pos(100), &keep(10), &mut no_progress).unwrap();
    assert!(!first.unchanged);
    assert_eq!(first.files_uploaded, first.files);
    assert_eq!(first.bytes_uploaded, first.bytes_total);
    assert_eq!(first.sequence, first.generation);
    assert_eq!(first.manifest_key, format!("indexes/u1/{:020}.json", first.sequence));

    // Nothing changed: the same snapshot, nothing sent.
    let again = s.snapshot(&dir, &ident("u1"), pos(200), &keep(10), &mut no_progress).unwrap();
    assert!(again.unchanged);
    assert_eq!((again.sequence, again.bytes_uploaded, again.position), (first.sequence, 0, pos(100)));

    // One new segment: only its files and the new meta.json are sent.
    add_segment(&dir, 300, 320);
    let second = s.snapshot(&dir, &ident("u1"), pos(300), &keep(10), &mut no_progress).unwrap();
    assert!(!second.unchanged);
    assert_eq!(second.sequence, first.sequence + 1);
    let old = s.manifest("u1", first.sequence).unwrap();
    let new = s.manifest("u1", second.sequence).unwrap();
    let old_names: BTreeSet<&str> = old.files.iter().map(|f| f.name.as_str()).collect();
    let fresh: Vec<_> =
        new.files.iter().filter(|f| !old_names.contains(f.name.as_str()) || f.name == "meta.json").collect();
    assert!(fresh.len() >= 7, "a segment's 6 files and meta.json: {fresh:?}");
    assert_eq!(second.files_uploaded, fresh.len());
    assert_eq!(second.bytes_uploaded, fresh.iter().map(|f| f.size).sum::<u64>());
    assert!(second.bytes_uploaded * 3 < second.bytes_total, "{second:?}");
    // Files kept their hashes: the old ones are the same blobs.
    for f in &old.files {
        if f.name != "meta.json" {
            assert!(new.files.contains(f), "{f:?}");
        }
    }
    // The manifest records what it was given.
    assert_eq!(new.index, ident("u1"));
    assert_eq!(new.position, pos(300));
    assert_eq!(new.config, config());
    assert_eq!(new.num_docs, 320);
    let infos = s.list("u1").unwrap();
    assert_eq!(infos.iter().map(|i| i.sequence).collect::<Vec<_>>(), vec![first.sequence, second.sequence]);
    assert_eq!(s.newest("u1").unwrap().unwrap().sequence, second.sequence);
    assert!(s.newest("nobody").unwrap().is_none());
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn restore_gives_identical_search_results_elsewhere() {
    let tmp = tempdir("restore");
    let dir = tmp.join("index");
    build(&dir, 2000);
    add_segment(&dir, 2000, 2100);
    let before = all_results(&dir);
    assert!(before.iter().all(|r| !r.is_empty()));
    let url = format!("file://{}", tmp.join("bucket").display());
    let s = SnapshotStore::open(&url, opts()).unwrap();
    let mut seen = Vec::new();
    let rep = s
        .snapshot(&dir, &ident("u2"), pos(5), &keep(3), &mut |p: Progress| {
            seen.push(p);
            Ok(())
        })
        .unwrap();
    let m = s.manifest("u2", rep.sequence).unwrap();
    assert!(m.files.iter().any(|f| f.size > opts().multipart_threshold), "a multipart upload happened");
    // Progress: hashing then uploading, ending with everything done.
    let last = seen.last().unwrap();
    assert_eq!((last.phase, last.files_done, last.bytes_done), (Phase::Uploading, rep.files, rep.bytes_total));
    assert!(seen.iter().any(|p| p.phase == Phase::Hashing));
    assert!(seen.windows(2).all(|w| w[0].phase != w[1].phase || w[0].bytes_done <= w[1].bytes_done));

    // Restore into an empty place.
    let target = tmp.join("restored").join("16384");
    let r = s.restore("u2", None, &target, &mut no_progress).unwrap();
    assert_eq!(
        (r.sequence, r.files, r.bytes, r.replaced, r.position),
        (rep.sequence, rep.files, rep.bytes_total, false, pos(5))
    );
    assert_eq!(all_results(&target), before);
    let check = verify_local(&target, true).unwrap();
    assert_eq!((check.files, check.bytes), (rep.files, rep.bytes_total));
    // Byte for byte the pinned generation.
    let original = folder_contents(&dir);
    for (name, bytes) in folder_contents(&target) {
        assert_eq!(original.get(&name), Some(&bytes), "{name}");
    }

    // "Another machine": a new store object on the same URL, another folder.
    let other = SnapshotStore::open(&url, opts()).unwrap();
    let target2 = tmp.join("machine2").join("pg_hybrid").join("5").join("16390");
    let mut downloads = 0;
    other
        .restore("u2", Some(rep.sequence), &target2, &mut |p: Progress| {
            assert_eq!(p.phase, Phase::Downloading);
            downloads += 1;
            Ok(())
        })
        .unwrap();
    assert!(downloads >= rep.files);
    assert_eq!(all_results(&target2), before);
    // Nothing left behind next to the targets.
    let siblings: Vec<_> =
        std::fs::read_dir(target2.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(siblings.len(), 1, "{siblings:?}");

    // Restoring over an existing (here: damaged) folder replaces it.
    std::fs::remove_file(target.join("meta.json")).unwrap();
    assert!(matches!(verify_local(&target, false), Err(Error::Missing { .. })));
    let r = s.restore("u2", None, &target, &mut no_progress).unwrap();
    assert!(r.replaced);
    assert_eq!(all_results(&target), before);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn retention_keeps_shared_blobs_and_collects_the_rest_after_grace() {
    let tmp = tempdir("retention");
    let dir = tmp.join("index");
    let mem: Arc<InMemory> = Arc::new(InMemory::new());
    let s = SnapshotStore::from_object_store(mem.clone(), "", "memory://retention", opts()).unwrap();
    let id = ident("u3");

    build(&dir, 100); // segment A
    let s1 = s.snapshot(&dir, &id, pos(1), &keep(2), &mut no_progress).unwrap();
    let b1 = manifest_blobs(&s, "u3", s1.sequence);
    add_segment(&dir, 100, 150); // + B
    let s2 = s.snapshot(&dir, &id, pos(2), &keep(2), &mut no_progress).unwrap();
    let b2 = manifest_blobs(&s, "u3", s2.sequence);
    let lock = maintenance::try_lock_maintenance(&dir).unwrap().unwrap();
    assert!(maintenance::merge_all(&dir, &hybrid_engine::text::pending::NoLog).unwrap()); // C = A + B
    drop(lock);
    let s3 = s.snapshot(&dir, &id, pos(3), &keep(2), &mut no_progress).unwrap();
    // Snapshot 1 is gone, but everything of it is shared with 2 except its meta.json, which
    // is young: nothing deleted yet.
    assert_eq!(s3.manifests_deleted, 1);
    let gc = s3.gc.clone().unwrap();
    assert_eq!((gc.blobs_deleted, gc.skipped.clone()), (0, None));
    assert_eq!(gc.blobs_in_grace, 1, "{gc:?}");

    add_segment(&dir, 150, 160); // + D
    let s4 = s.snapshot(&dir, &id, pos(4), &keep(2), &mut no_progress).unwrap();
    assert_eq!(s4.manifests_deleted, 1);
    assert_eq!(s.list("u3").unwrap().iter().map(|i| i.sequence).collect::<Vec<_>>(), vec![s3.sequence, s4.sequence]);
    let b3 = manifest_blobs(&s, "u3", s3.sequence);
    let b4 = manifest_blobs(&s, "u3", s4.sequence);
    let kept: BTreeSet<String> = b3.union(&b4).cloned().collect();
    let dropped: BTreeSet<String> = b1.union(&b2).filter(|b| !kept.contains(*b)).cloned().collect();
    assert!(!dropped.is_empty());
    assert!(!b3.is_disjoint(&b4), "C's files are shared by snapshots 3 and 4");
    // Within the grace period nothing is deleted.
    assert!(blob_keys(&*mem).is_superset(&dropped));
    let gc = s.collect_garbage().unwrap();
    assert_eq!(gc.blobs_deleted, 0);
    assert_eq!(gc.blobs_in_grace, dropped.len());
    // Past it, exactly the blobs no kept snapshot names go.
    let gc = s.collect_garbage_older_than(Duration::ZERO).unwrap();
    assert_eq!(gc.blobs_deleted, dropped.len());
    assert_eq!(blob_keys(&*mem), kept);
    // Both kept snapshots still restore.
    for seq in [s3.sequence, s4.sequence] {
        let t = tmp.join(format!("r{seq}"));
        s.restore("u3", Some(seq), &t, &mut no_progress).unwrap();
        verify_local(&t, true).unwrap();
    }
    // Dropping the index's snapshots frees everything once collected.
    assert_eq!(s.delete_index("u3").unwrap(), 2);
    s.collect_garbage_older_than(Duration::ZERO).unwrap();
    assert!(blob_keys(&*mem).is_empty());
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn gc_spares_blobs_of_other_indexes_and_skips_on_unreadable_manifests() {
    let tmp = tempdir("gc-other");
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    build(&a, 50);
    build(&b, 60);
    let mem: Arc<InMemory> = Arc::new(InMemory::new());
    let s = SnapshotStore::from_object_store(mem.clone(), "", "memory://gc-other", opts()).unwrap();
    s.snapshot(&a, &ident("ia"), pos(1), &keep(1), &mut no_progress).unwrap();
    s.snapshot(&b, &ident("ib"), pos(1), &keep(1), &mut no_progress).unwrap();
    let before = blob_keys(&*mem);
    let gc = s.collect_garbage_older_than(Duration::ZERO).unwrap();
    assert_eq!((gc.manifests, gc.blobs_deleted), (2, 0));
    assert_eq!(blob_keys(&*mem), before);
    // An orphan blob (a failed upload) with a manifest that does not parse: nothing deleted.
    block(mem.put(&Path::from(format!("blobs/{}", "ab".repeat(32))), PutPayload::from_static(b"x"))).unwrap();
    block(mem.put(&Path::from(format!("indexes/ic/{:020}.json", 1)), PutPayload::from_static(b"{oops"))).unwrap();
    let gc = s.collect_garbage_older_than(Duration::ZERO).unwrap();
    assert!(gc.skipped.is_some() && gc.blobs_deleted == 0, "{gc:?}");
    block(mem.delete(&Path::from(format!("indexes/ic/{:020}.json", 1)))).unwrap();
    let gc = s.collect_garbage_older_than(Duration::ZERO).unwrap();
    assert_eq!(gc.blobs_deleted, 1);
    assert_eq!(blob_keys(&*mem), before);
    let _ = std::fs::remove_dir_all(tmp);
}

/// Replaces the object at `key` with `f(its bytes)`.
fn tamper(mem: &InMemory, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let p = Path::from(key);
    let mut bytes = block(async { mem.get(&p).await.unwrap().bytes().await.unwrap() }).to_vec();
    f(&mut bytes);
    block(mem.put(&p, PutPayload::from(Bytes::from(bytes)))).unwrap();
}

#[test]
fn damaged_or_truncated_blobs_are_detected_and_the_target_left_alone() {
    let tmp = tempdir("corrupt");
    let dir = tmp.join("index");
    build(&dir, 400);
    let expected = all_results(&dir);
    let mem: Arc<InMemory> = Arc::new(InMemory::new());
    let s = SnapshotStore::from_object_store(mem.clone(), "", "memory://corrupt", opts()).unwrap();
    let rep = s.snapshot(&dir, &ident("u4"), pos(1), &keep(3), &mut no_progress).unwrap();
    let m = s.manifest("u4", rep.sequence).unwrap();
    let target = tmp.join("target");
    s.restore("u4", None, &target, &mut no_progress).unwrap();
    let good = folder_contents(&target);

    for (what, victim) in [
        ("flipped", m.files.iter().max_by_key(|f| f.size).unwrap()),
        ("truncated", m.files.iter().find(|f| f.name.ends_with(".store")).unwrap()),
    ] {
        let key = format!("blobs/{}", victim.sha256);
        tamper(&mem, &key, |b| {
            if what == "flipped" {
                let mid = b.len() / 2;
                b[mid] ^= 0xff;
                b[mid + 1] ^= 0x55;
            } else {
                b.truncate(b.len() / 2);
            }
        });
        let e = s.restore("u4", None, &target, &mut no_progress).unwrap_err();
        match &e {
            Error::Corrupt { path, detail } => {
                assert!(path.to_string_lossy().contains(&victim.sha256), "{e}");
                assert!(detail.contains(&victim.name), "{e}");
            }
            other => panic!("{what}: expected Corrupt, got {other}"),
        }
        // The target is exactly as it was; no temporary folder is left.
        assert_eq!(folder_contents(&target), good, "{what}");
        let leftovers: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // The damaged blob was moved aside...
        assert!(!keys(&*mem).contains(&key));
        assert!(keys(&*mem).iter().any(|k| k.starts_with(&format!("quarantine/{}", victim.sha256))));
        // ...so the next snapshot of the unchanged folder sends that content again, and
        // restores work again.
        let heal = s.snapshot(&dir, &ident("u4"), pos(1), &keep(3), &mut no_progress).unwrap();
        assert!(!heal.unchanged, "{what}");
        assert_eq!((heal.files_uploaded, heal.bytes_uploaded), (1, victim.size), "{what}");
        let again = tmp.join(format!("again-{what}"));
        s.restore("u4", None, &again, &mut no_progress).unwrap();
        assert_eq!(all_results(&again), expected);
    }
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn a_store_failing_half_way_loses_nothing_and_the_retry_sends_only_the_rest() {
    let tmp = tempdir("halfway");
    let dir = tmp.join("index");
    build(&dir, 500);
    add_segment(&dir, 500, 520);
    let mem: Arc<InMemory> = Arc::new(InMemory::new());
    let faulty = Faulty::new(mem.clone());
    // Single puts only, so that puts count blobs.
    let o = StoreOptions { multipart_threshold: u64::MAX, ..opts() };
    let s = SnapshotStore::from_object_store(faulty.clone(), "", "faulty://", o).unwrap();

    faulty.puts_left.store(5, Ordering::SeqCst);
    let e = s.snapshot(&dir, &ident("u5"), pos(1), &keep(3), &mut no_progress).unwrap_err();
    assert!(matches!(e, Error::Store { .. }), "{e}");
    assert!(e.to_string().contains("injected failure") && e.to_string().contains("3 attempt"), "{e}");
    assert!(e.hint().unwrap().contains("retried later"));
    // Five blobs made it; no manifest.
    let first = blob_keys(&*mem);
    assert_eq!(first.len(), 5);
    assert!(keys(&*mem).iter().all(|k| !k.starts_with("indexes/")));
    assert!(s.list("u5").unwrap().is_empty());
    // The pin is gone.
    assert_eq!(std::fs::read_dir(dir.join("pins")).map(|d| d.count()).unwrap_or(0), 0);

    // The store is back: the retry sends only what is missing.
    faulty.puts_left.store(-1, Ordering::SeqCst);
    let puts_before = faulty.puts.load(Ordering::SeqCst);
    let rep = s.snapshot(&dir, &ident("u5"), pos(1), &keep(3), &mut no_progress).unwrap();
    let m = s.manifest("u5", rep.sequence).unwrap();
    let missing: BTreeMap<String, u64> = m
        .files
        .iter()
        .filter(|f| !first.contains(&format!("blobs/{}", f.sha256)))
        .map(|f| (f.sha256.clone(), f.size))
        .collect();
    assert_eq!(rep.files_uploaded, missing.len());
    assert_eq!(rep.bytes_uploaded, missing.values().sum::<u64>());
    assert!(rep.bytes_uploaded < rep.bytes_total);
    // One put per missing blob and one for the manifest.
    assert_eq!(faulty.puts.load(Ordering::SeqCst) - puts_before, rep.files_uploaded + 1);
    let t = tmp.join("t");
    s.restore("u5", None, &t, &mut no_progress).unwrap();
    assert_eq!(all_results(&t), all_results(&dir));

    // A store that is down fails fast and cleanly.
    add_segment(&dir, 520, 530);
    faulty.down.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let e = s.snapshot(&dir, &ident("u5"), pos(2), &keep(3), &mut no_progress).unwrap_err();
    assert!(matches!(e, Error::Store { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let e = s.restore("u5", None, &tmp.join("t2"), &mut no_progress).unwrap_err();
    assert!(matches!(e, Error::Store { .. }), "{e}");
    assert!(!tmp.join("t2").exists());
    faulty.down.store(false, Ordering::SeqCst);
    assert_eq!(s.list("u5").unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn multipart_uploads_failing_half_way_are_retried() {
    let tmp = tempdir("multipart");
    let dir = tmp.join("index");
    build(&dir, 2000);
    let mem: Arc<InMemory> = Arc::new(InMemory::new());
    let faulty = Faulty::new(mem.clone());
    let o = StoreOptions { multipart_threshold: 16 << 10, part_size: 8 << 10, ..opts() };
    let s = SnapshotStore::from_object_store(faulty.clone(), "pre/fix", "faulty://", o).unwrap();
    // One part goes through, then every part fails: the first multipart upload fails
    // half-way (it is retried, and fails again), and the snapshot with it.
    faulty.parts_left.store(1, Ordering::SeqCst);
    let e = s.snapshot(&dir, &ident("u6"), pos(1), &keep(1), &mut no_progress).unwrap_err();
    assert!(e.to_string().contains("injected part failure"), "{e}");
    assert!(s.list("u6").unwrap().is_empty());
    let partial = blob_keys_under(&*mem, "pre/fix/blobs/");
    // The store is back: only the rest is sent.
    faulty.parts_left.store(-1, Ordering::SeqCst);
    let rep = s.snapshot(&dir, &ident("u6"), pos(1), &keep(1), &mut no_progress).unwrap();
    assert_eq!(rep.files_uploaded, rep.files - partial.len());
    assert!(s.manifest("u6", rep.sequence).unwrap().files.iter().any(|f| f.size > 2 * (8 << 10)));
    assert!(keys(&*mem).iter().all(|k| k.starts_with("pre/fix/")));
    let t = tmp.join("t");
    s.restore("u6", None, &t, &mut no_progress).unwrap();
    assert_eq!(verify_local(&t, true).unwrap().bytes, rep.bytes_total);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn a_slow_store_times_out_and_is_retried() {
    let tmp = tempdir("slow");
    let dir = tmp.join("index");
    build(&dir, 50);
    let mem: Arc<InMemory> = Arc::new(InMemory::new());
    let faulty =
        Arc::new(Faulty { delay: Duration::from_millis(400), ..Arc::try_unwrap(Faulty::new(mem.clone())).unwrap() });
    let o = StoreOptions { request_timeout: Duration::from_millis(100), ..opts() };
    let s = SnapshotStore::from_object_store(faulty.clone(), "", "slow://", o).unwrap();
    // Two stalls: the third attempt of the first HEAD goes through.
    faulty.slow_heads.store(2, Ordering::SeqCst);
    let rep = s.snapshot(&dir, &ident("u7"), pos(1), &keep(1), &mut no_progress).unwrap();
    assert_eq!(rep.files_uploaded, rep.files);
    // Three stalls exhaust the attempts: a clean error saying why.
    add_segment(&dir, 50, 60);
    faulty.slow_heads.store(3, Ordering::SeqCst);
    let e = s.snapshot(&dir, &ident("u7"), pos(2), &keep(1), &mut no_progress).unwrap_err();
    assert!(matches!(e, Error::Store { .. }) && e.to_string().contains("no answer within"), "{e}");
    assert_eq!(s.list("u7").unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn a_lost_answer_to_the_manifest_put_is_recognised() {
    let tmp = tempdir("lost");
    let dir = tmp.join("index");
    build(&dir, 50);
    let mem: Arc<InMemory> = Arc::new(InMemory::new());
    let faulty = Faulty::new(mem.clone());
    let s = SnapshotStore::from_object_store(faulty.clone(), "", "lossy://", opts()).unwrap();
    // The manifest is stored but its answer is lost; the retry finds it there, with the same
    // files, and takes it as done.
    faulty.lose_manifest_answer.store(true, Ordering::SeqCst);
    let rep = s.snapshot(&dir, &ident("u8"), pos(1), &keep(1), &mut no_progress).unwrap();
    assert_eq!(s.list("u8").unwrap().len(), 1);
    assert_eq!(s.newest("u8").unwrap().unwrap().sequence, rep.sequence);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn pinned_files_survive_merges_and_garbage_collection() {
    let tmp = tempdir("pin");
    let dir = tmp.join("index");
    let built = build(&dir, 100).segments.len();
    add_segment(&dir, 100, 120);
    add_segment(&dir, 120, 140);
    let pin = Pin::create(&dir).unwrap();
    let hashes: Vec<(String, (String, u64))> =
        pin.files().iter().map(|n| (n.clone(), sha256_file(&dir.join(n)).unwrap())).collect();
    assert!(pin.files().contains(&"meta.json".to_string()));
    assert_eq!(pin.manifest().segments.len(), built + 2);
    assert_eq!(pin.files().len(), (built + 2) * 6 + 1);

    let lock = maintenance::try_lock_maintenance(&dir).unwrap().unwrap();
    assert!(maintenance::merge_all(&dir, &hybrid_engine::text::pending::NoLog).unwrap());
    drop(lock);
    assert_eq!(hybrid_engine::manifest::collect_garbage(&dir).unwrap(), 0, "merge collected already");
    let now = Manifest::read(&dir).unwrap();
    assert_eq!(now.segments.len(), 1);
    let gone: Vec<_> = hashes.iter().filter(|(n, _)| n != "meta.json" && !dir.join(n).exists()).collect();
    assert_eq!(gone.len(), hashes.len() - 1, "every old segment file left the folder");
    for (name, (sha, size)) in &hashes {
        assert_eq!(&sha256_file(&pin.path(name)).unwrap(), &(sha.clone(), *size), "{name}");
    }
    let pin_dir = pin.dir().to_path_buf();
    drop(pin);
    assert!(!pin_dir.exists());
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn a_merge_during_the_upload_does_not_disturb_it() {
    let tmp = tempdir("merge-during");
    let dir = tmp.join("index");
    build(&dir, 200);
    add_segment(&dir, 200, 220);
    let segments = Manifest::read(&dir).unwrap().segments.len();
    let expected = all_results(&dir);
    let s = SnapshotStore::open(&unique_memory_url("merge-during"), opts()).unwrap();
    let mut merged = false;
    let rep = s
        .snapshot(&dir, &ident("u9"), pos(1), &keep(3), &mut |p: Progress| {
            if p.phase == Phase::Uploading && p.files_done == 2 && !merged {
                let _lock = maintenance::try_lock_maintenance(&dir)?.unwrap();
                merged = maintenance::merge_all(&dir, &hybrid_engine::text::pending::NoLog)?;
                hybrid_engine::manifest::collect_garbage(&dir)?;
            }
            Ok(())
        })
        .unwrap();
    assert!(merged);
    assert_eq!(Manifest::read(&dir).unwrap().segments.len(), 1);
    // The snapshot holds the generation from before the merge.
    assert_eq!(s.manifest("u9", rep.sequence).unwrap().files.len(), segments * 6 + 1);
    let t = tmp.join("t");
    s.restore("u9", None, &t, &mut no_progress).unwrap();
    assert_eq!(Manifest::read(&t).unwrap().segments.len(), segments);
    assert_eq!(all_results(&t), expected);
    // And the merged generation is the next snapshot.
    let next = s.snapshot(&dir, &ident("u9"), pos(2), &keep(3), &mut no_progress).unwrap();
    assert!(next.sequence > rep.sequence && next.files == 7);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn cancelling_stops_without_a_manifest() {
    let tmp = tempdir("cancel");
    let dir = tmp.join("index");
    build(&dir, 100);
    let mem: Arc<InMemory> = Arc::new(InMemory::new());
    let s = SnapshotStore::from_object_store(mem.clone(), "", "memory://cancel", opts()).unwrap();
    let e = s
        .snapshot(&dir, &ident("u10"), pos(1), &keep(3), &mut |p: Progress| {
            if p.phase == Phase::Uploading && p.files_done == 3 {
                return Err(Error::InvalidParameter {
                    message: "canceling statement due to user request".into(),
                    hint: None,
                });
            }
            Ok(())
        })
        .unwrap_err();
    assert!(e.to_string().contains("user request"));
    assert!(s.list("u10").unwrap().is_empty());
    assert_eq!(std::fs::read_dir(dir.join("pins")).unwrap().count(), 0);
    // Cancelling a restore leaves no folder.
    s.snapshot(&dir, &ident("u10"), pos(1), &keep(3), &mut no_progress).unwrap();
    let t = tmp.join("t");
    let e = s.restore("u10", None, &t, &mut |p: Progress| {
        if p.files_done == 2 {
            Err(Error::Tantivy("stop".into()))
        } else {
            Ok(())
        }
    });
    assert!(e.is_err());
    assert!(!t.exists());
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with('.')).count(),
        0
    );
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn stale_pins_are_swept() {
    let tmp = tempdir("sweep");
    let dir = tmp.join("index");
    build(&dir, 10);
    let dead = dir.join("pins").join("999999999-3");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("x.idx"), b"x").unwrap();
    let live = Pin::create(&dir).unwrap();
    assert_eq!(snapshot::sweep_pins(&dir).unwrap(), 1);
    assert!(!dead.exists());
    assert!(live.dir().exists(), "our own pin stays");
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn verify_local_finds_missing_and_damaged_files() {
    let tmp = tempdir("verify");
    let dir = tmp.join("index");
    let m = build(&dir, 300);
    let ok = verify_local(&dir, true).unwrap();
    assert_eq!((ok.generation, ok.files), (m.hybrid.generation, m.segments.len() * 6 + 1));
    let seg = m.segments[0].file_prefix();
    // A flipped byte: found by the checksums only.
    let f = dir.join(format!("{seg}.store"));
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&f, &bytes).unwrap();
    verify_local(&dir, false).unwrap();
    let e = verify_local(&dir, true).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }) && e.to_string().contains(".store"), "{e}");
    // A missing file.
    std::fs::remove_file(dir.join(format!("{seg}.pos"))).unwrap();
    let e = verify_local(&dir, false).unwrap_err();
    assert!(matches!(e, Error::Missing { .. }) && e.to_string().contains(".pos"), "{e}");
    // A damaged folder is not snapshotted.
    let s = SnapshotStore::open(&unique_memory_url("verify"), opts()).unwrap();
    let e = s.snapshot(&dir, &ident("u11"), pos(1), &keep(1), &mut no_progress).unwrap_err();
    assert!(matches!(e, Error::Missing { .. }), "{e}");
    assert!(verify_local(&tmp.join("nothing"), false).is_err());
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn a_rebuilt_folder_continues_the_sequence() {
    let tmp = tempdir("rebuild");
    let dir = tmp.join("index");
    build(&dir, 50);
    add_segment(&dir, 50, 60);
    add_segment(&dir, 60, 70);
    let s = SnapshotStore::open(&unique_memory_url("rebuild"), opts()).unwrap();
    let before = s.snapshot(&dir, &ident("u12"), pos(1), &keep(5), &mut no_progress).unwrap();
    assert_eq!(before.sequence, 3);
    // REINDEX: a new folder, generation 1 again, other rows.
    let _ = std::fs::remove_dir_all(&dir);
    build(&dir, 20);
    let after = s.snapshot(&dir, &ident("u12"), pos(2), &keep(5), &mut no_progress).unwrap();
    assert_eq!((after.generation, after.sequence), (1, 4));
    let t = tmp.join("t");
    let r = s.restore("u12", None, &t, &mut no_progress).unwrap();
    assert_eq!((r.sequence, r.generation), (4, 1));
    assert_eq!(Manifest::read(&t).unwrap().num_docs(), 20);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn vector_indexes_round_trip() {
    let tmp = tempdir("vectors");
    let dir = tmp.join("index");
    let cfg = IndexConfig::from_create_index(
        &[
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "tags".into(), kind: ColumnKind::Text },
            ColumnSpec { name: "emb".into(), kind: ColumnKind::Vector },
        ],
        Some("id"),
        Some(r#"{"emb": {"dimensions": 8, "metric": "l2", "m": 8, "ef_construction": 32}}"#),
    )
    .unwrap();
    let mut b = IndexBuilder::create(&dir, &cfg, &Identity::default(), 1, 40 << 20).unwrap();
    for i in 0..1500u64 {
        let v: Vec<f32> = (0..8).map(|d| ((mix(i * 8 + d) % 1000) as f32) / 1000.0).collect();
        b.add(&Document {
            ctid: (i + 1) << 16,
            key: KeyValue::I64(i as i64),
            texts: vec![Some(format!("t{}", i % 7))],
            vectors: vec![Some(v)],
        })
        .unwrap();
    }
    b.finish().unwrap();
    let knn = |d: &FsPath| {
        let idx = TextIndex::open(d).unwrap();
        let q = [0.5f32; 8];
        idx.snapshot().knn(0, &q, 10, 64, None, 0).unwrap().hits
    };
    let s = SnapshotStore::open(&unique_memory_url("vectors"), opts()).unwrap();
    let rep = s.snapshot(&dir, &ident("u13"), pos(1), &keep(1), &mut no_progress).unwrap();
    let m = s.manifest("u13", rep.sequence).unwrap();
    assert!(m.files.iter().any(|f| f.name.ends_with(".hvec")));
    let t = tmp.join("t");
    s.restore("u13", None, &t, &mut no_progress).unwrap();
    verify_local(&t, true).unwrap();
    assert_eq!(format!("{:?}", knn(&t)), format!("{:?}", knn(&dir)));
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn bad_arguments_are_refused() {
    let tmp = tempdir("args");
    let dir = tmp.join("index");
    build(&dir, 5);
    let s = SnapshotStore::open(&unique_memory_url("args"), opts()).unwrap();
    for bad in ["", "../x", "a/b", "has space"] {
        let e = s.snapshot(&dir, &ident(bad), pos(1), &keep(1), &mut no_progress).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter { .. }), "{bad}: {e}");
    }
    let e = s.snapshot(&dir, &ident("ok"), pos(1), &keep(0), &mut no_progress).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
    let e = s.restore("nothing-here", None, &tmp.join("t"), &mut no_progress).unwrap_err();
    assert!(matches!(e, Error::Missing { .. }), "{e}");
    let e = s.restore("ok", Some(77), &tmp.join("t"), &mut no_progress).unwrap_err();
    assert!(matches!(e, Error::Missing { .. }), "{e}");
    s.check().unwrap();
    let _ = std::fs::remove_dir_all(tmp);
}
