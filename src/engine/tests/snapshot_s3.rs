//! Snapshots against a real S3-compatible server on loopback: dedup, restore on two
//! "machines", damaged and truncated blobs, the create-only manifest put, and the server hung
//! or killed in the middle of a multipart upload.
//!
//! It runs moto (`pip install 'moto[server]'`; `scripts/setup.sh` installs it), which the test
//! starts, stops, freezes and kills itself on free loopback ports. The executable is
//! `$MOTO_SERVER` (the Makefile sets it), else `$PGH_MOTO_SERVER`, else `moto_server` on the PATH;
//! without one the tests fail. Or run the first test against a server you run (MinIO...), without the hang/kill scenario:
//! `PGH_S3_ENDPOINT=http://127.0.0.1:9000 PGH_S3_BUCKET=test AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use hybrid_engine::manifest::{Identity, Manifest};
use hybrid_engine::snapshot::{no_progress, verify_local, Phase, Progress, SnapshotStore, StoreOptions};
use hybrid_engine::text::writer::IndexBuilder;
use hybrid_engine::text::{Document, KeyValue};
use hybrid_engine::Error;

mod snapshot_common;
use snapshot_common::*;

// ---- the server -----------------------------------------------------------------------------

/// A moto server this test started; killed when dropped.
struct Moto {
    bin: String,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Moto {
    fn start(bin: &str, port: Option<u16>, log: &FsPath) -> Moto {
        let port = port.unwrap_or_else(|| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let mut m = Moto { bin: bin.to_string(), port, child: None, log: log.to_path_buf() };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.bin)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.bin));
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "moto did not start; see {}", self.log.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: signalling a child process this test started.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Kills the server (SIGKILL): its in-memory state is gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty).
    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGCONT);
        }
        self.kill();
    }
}

/// Creates a bucket with a bare HTTP request (moto does not check signatures by default).
fn create_bucket(endpoint: &str, bucket: &str) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "create bucket: {answer}");
}

/// The moto_server executable (see the file's comment).
fn moto_bin() -> Option<String> {
    for var in ["MOTO_SERVER", "PGH_MOTO_SERVER"] {
        if let Ok(v) = std::env::var(var) {
            return Some(v);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

/// Where the test runs: a given endpoint (`PGH_S3_ENDPOINT`), or its own moto.
struct Target {
    moto: Option<Moto>,
    endpoint: String,
    bucket: String,
}

fn target(tmp: &FsPath) -> Target {
    if let (Ok(endpoint), Ok(bucket)) = (std::env::var("PGH_S3_ENDPOINT"), std::env::var("PGH_S3_BUCKET")) {
        return Target { moto: None, endpoint, bucket };
    }
    if let Some(bin) = moto_bin() {
        let moto = Moto::start(&bin, None, &tmp.join("moto.log"));
        let endpoint = moto.endpoint();
        create_bucket(&endpoint, "pgh-test");
        return Target { moto: Some(moto), endpoint, bucket: "pgh-test".into() };
    }
    panic!("no moto_server: run scripts/setup.sh (or set MOTO_SERVER), or set PGH_S3_ENDPOINT and PGH_S3_BUCKET")
}

fn s3_options(endpoint: &str) -> StoreOptions {
    StoreOptions {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        // moto accepts any credentials; a real server takes them from AWS_* when these are unset.
        access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok().or(Some("testing".into())),
        secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok().or(Some("testing".into())),
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        multipart_threshold: 5 << 20,
        part_size: 5 << 20,
        ..Default::default()
    }
}

/// A raw client on the same bucket, to look behind the store's back and to damage objects.
struct Raw {
    rt: tokio::runtime::Runtime,
    s3: Arc<AmazonS3>,
    prefix: String,
}

impl Raw {
    fn new(t: &Target, prefix: &str) -> Raw {
        let o = s3_options(&t.endpoint);
        let s3 = AmazonS3Builder::new()
            .with_bucket_name(&t.bucket)
            .with_endpoint(&t.endpoint)
            .with_region("us-east-1")
            .with_access_key_id(o.access_key_id.unwrap())
            .with_secret_access_key(o.secret_access_key.unwrap())
            .with_allow_http(true)
            .build()
            .unwrap();
        Raw { rt: tokio::runtime::Runtime::new().unwrap(), s3: Arc::new(s3), prefix: prefix.to_string() }
    }

    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}/{key}", self.prefix))
    }

    fn keys(&self, under: &str) -> BTreeSet<String> {
        let p = self.path(under);
        let skip = self.prefix.len() + 1;
        self.rt.block_on(async {
            self.s3.list(Some(&p)).map_ok(|m| m.location.to_string()[skip..].to_string()).try_collect().await.unwrap()
        })
    }

    fn get(&self, key: &str) -> Vec<u8> {
        self.rt.block_on(async { self.s3.get(&self.path(key)).await.unwrap().bytes().await.unwrap().to_vec() })
    }

    fn put(&self, key: &str, bytes: Vec<u8>) {
        self.rt.block_on(async { self.s3.put(&self.path(key), PutPayload::from(bytes)).await.unwrap() });
    }

    fn put_create(&self, key: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        self.rt.block_on(async { self.s3.put_opts(&self.path(key), PutPayload::from(bytes), opts).await.map(|_| ()) })
    }

    /// Every manifest under the prefix names only blobs that are there, with their sizes.
    fn assert_no_dangling_manifest(&self, s: &SnapshotStore, uuids: &[&str]) {
        let blobs = self.keys("blobs");
        for uuid in uuids {
            for info in s.list(uuid).unwrap() {
                for f in &s.manifest(uuid, info.sequence).unwrap().files {
                    assert!(
                        blobs.contains(&format!("blobs/{}", f.sha256)),
                        "{uuid} {}: {} missing",
                        info.sequence,
                        f.name
                    );
                }
            }
        }
    }
}

/// An index whose `.store` file is ~15 MB of nearly incompressible text: three multipart parts.
fn build_big(dir: &FsPath, salt: u64) {
    let mut b = IndexBuilder::create(dir, &config(), &Identity::default(), 1, 200 << 20).unwrap();
    for i in 0..6000u64 {
        let body: String = (0..150).map(|j| format!("{:016x} ", mix(salt ^ (i * 1000 + j)))).collect();
        b.add(&Document {
            ctid: (i + 1) << 16,
            key: KeyValue::I64(i as i64),
            texts: vec![Some(format!("w{}", i % 50)), Some(body)],
            vectors: vec![],
        })
        .unwrap();
    }
    b.finish().unwrap();
}

fn biggest_file(dir: &FsPath) -> (String, u64) {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), e.metadata().unwrap().len()))
        .max_by_key(|(_, n)| *n)
        .unwrap()
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn s3_dedup_restore_and_damage() {
    let tmp = tempdir("s3-basic");
    let t = target(&tmp);
    let prefix = format!("run-{}-basic", std::process::id());
    let url = format!("s3://{}/{prefix}", t.bucket);
    let s = SnapshotStore::open(&url, s3_options(&t.endpoint)).unwrap();
    s.check().unwrap();
    let raw = Raw::new(&t, &prefix);

    let dir = tmp.join("index");
    build(&dir, 3000);
    let first = s.snapshot(&dir, &ident("s3a"), pos(10), &keep(2), &mut no_progress).unwrap();
    assert_eq!((first.files_uploaded, first.bytes_uploaded), (first.files, first.bytes_total));
    let same = s.snapshot(&dir, &ident("s3a"), pos(11), &keep(2), &mut no_progress).unwrap();
    assert!(same.unchanged && same.bytes_uploaded == 0);
    add_segment(&dir, 3000, 3050);
    let second = s.snapshot(&dir, &ident("s3a"), pos(12), &keep(2), &mut no_progress).unwrap();
    let old: BTreeSet<String> =
        s.manifest("s3a", first.sequence).unwrap().files.iter().map(|f| f.sha256.clone()).collect();
    let fresh: u64 = s
        .manifest("s3a", second.sequence)
        .unwrap()
        .files
        .iter()
        .filter(|f| !old.contains(&f.sha256))
        .map(|f| f.size)
        .sum();
    assert_eq!(second.bytes_uploaded, fresh);
    assert!(second.bytes_uploaded * 5 < second.bytes_total, "{second:?}");
    eprintln!(
        "dedup: first snapshot sent {} bytes, second (one new segment) {} of {}",
        first.bytes_uploaded, second.bytes_uploaded, second.bytes_total
    );

    // The manifest put is create-only on this server too.
    let mkey = format!("indexes/s3a/{:020}.json", second.sequence);
    let e = raw.put_create(&mkey, b"{}".to_vec()).unwrap_err();
    assert!(matches!(e, object_store::Error::AlreadyExists { .. }), "{e}");
    assert_ne!(raw.get(&mkey), b"{}");

    // Two machines restore the same results.
    let expected = all_results(&dir);
    for machine in ["m1", "m2"] {
        let other = SnapshotStore::open(&url, s3_options(&t.endpoint)).unwrap();
        let target = tmp.join(machine).join("16384");
        other.restore("s3a", None, &target, &mut no_progress).unwrap();
        verify_local(&target, true).unwrap();
        assert_eq!(all_results(&target), expected, "{machine}");
    }

    // A flipped byte, then a truncation: found, target untouched, healed by the next snapshot.
    let target = tmp.join("m1").join("16384");
    let good: Vec<_> = std::fs::read(target.join("meta.json")).unwrap();
    let m = s.manifest("s3a", second.sequence).unwrap();
    let victim = m.files.iter().filter(|f| f.name != "meta.json").max_by_key(|f| f.size).unwrap().clone();
    for damage in ["flip", "truncate"] {
        let key = format!("blobs/{}", victim.sha256);
        let mut bytes = raw.get(&key);
        if damage == "flip" {
            let i = bytes.len() / 3;
            bytes[i] ^= 0x01;
        } else {
            bytes.truncate(bytes.len() - 100);
        }
        raw.put(&key, bytes);
        let e = s.restore("s3a", None, &target, &mut no_progress).unwrap_err();
        assert!(
            matches!(&e, Error::Corrupt { path, .. } if path.to_string_lossy().contains(&victim.sha256)),
            "{damage}: {e}"
        );
        eprintln!("{damage}: {e}");
        assert_eq!(std::fs::read(target.join("meta.json")).unwrap(), good);
        assert_eq!(all_results(&target), expected);
        let heal = s.snapshot(&dir, &ident("s3a"), pos(13), &keep(2), &mut no_progress).unwrap();
        assert_eq!((heal.files_uploaded, heal.bytes_uploaded), (1, victim.size), "{damage}");
        s.restore("s3a", None, &tmp.join(format!("healed-{damage}")), &mut no_progress).unwrap();
    }
    assert_eq!(raw.keys("quarantine").len(), 2);

    // Retention and garbage collection on S3.
    let gc = s.collect_garbage_older_than(Duration::ZERO).unwrap();
    assert_eq!(gc.skipped, None);
    raw.assert_no_dangling_manifest(&s, &["s3a"]);
    assert_eq!(s.list("s3a").unwrap().len(), 2);
    assert_eq!(s.delete_index("s3a").unwrap(), 2);
    s.collect_garbage_older_than(Duration::ZERO).unwrap();
    assert!(raw.keys("blobs").is_empty() && raw.keys("indexes").is_empty());
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn s3_server_hung_or_killed_mid_upload() {
    if moto_bin().is_none() {
        panic!("no moto_server (run scripts/setup.sh or set MOTO_SERVER): this test freezes and kills the server");
    }
    let tmp = tempdir("s3-kill");
    let mut t = target(&tmp);
    let prefix = format!("run-{}-kill", std::process::id());
    let url = format!("s3://{}/{prefix}", t.bucket);
    let s = SnapshotStore::open(&url, s3_options(&t.endpoint)).unwrap();
    let raw = Raw::new(&t, &prefix);

    let dir = tmp.join("index");
    build_big(&dir, 1);
    let (big, big_size) = biggest_file(&dir);
    assert!(big_size > 2 * (5 << 20), "{big}: {big_size} bytes");
    eprintln!("largest file {big}: {big_size} bytes");

    // 1. The server freezes (SIGSTOP) after the first part of the large file: requests hang.
    let mut frozen = false;
    let started = Instant::now();
    let e = s
        .snapshot(&dir, &ident("s3k"), pos(1), &keep(2), &mut |p: Progress| {
            if p.phase == Phase::Uploading && p.file == big && !frozen {
                t.moto.as_ref().unwrap().signal(libc::SIGSTOP);
                frozen = true;
            }
            Ok(())
        })
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("hung server: failed after {took:?}: {e}");
    assert!(frozen);
    assert!(matches!(e, Error::Store { .. }), "{e}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    t.moto.as_ref().unwrap().signal(libc::SIGCONT);
    assert!(s.list("s3k").unwrap().is_empty(), "no manifest after a failed upload");
    let before_retry = raw.keys("blobs").len();
    assert!(before_retry > 0);
    let rep = s.snapshot(&dir, &ident("s3k"), pos(1), &keep(2), &mut no_progress).unwrap();
    eprintln!(
        "after the hang: {} of {} files sent ({} of {} bytes)",
        rep.files_uploaded, rep.files, rep.bytes_uploaded, rep.bytes_total
    );
    assert_eq!(rep.files_uploaded, rep.files - before_retry);
    raw.assert_no_dangling_manifest(&s, &["s3k"]);
    let restored = tmp.join("r1");
    s.restore("s3k", None, &restored, &mut no_progress).unwrap();
    assert_eq!(all_results(&restored), all_results(&dir));

    // 2. The server is killed (SIGKILL) in the middle of the large file of another index.
    let dir2 = tmp.join("index2");
    build_big(&dir2, 2);
    let (big2, _) = biggest_file(&dir2);
    let mut killed = false;
    let moto = t.moto.as_mut().unwrap();
    let started = Instant::now();
    let e = s
        .snapshot(&dir2, &ident("s3k2"), pos(2), &keep(2), &mut |p: Progress| {
            if p.phase == Phase::Uploading && p.file == big2 && !killed {
                moto.kill();
                killed = true;
            }
            Ok(())
        })
        .unwrap_err();
    eprintln!("killed server: failed after {:?}: {e}", started.elapsed());
    assert!(killed);
    assert!(matches!(e, Error::Store { .. }), "{e}");
    // While it is down, nothing works, cleanly.
    assert!(matches!(s.list("s3k2"), Err(Error::Store { .. })));
    assert!(matches!(s.check(), Err(Error::Store { .. })));
    // It comes back empty (moto keeps nothing): the bucket is made again, and the snapshot
    // goes through in full.
    moto.restart();
    create_bucket(&t.endpoint, &t.bucket);
    assert!(s.list("s3k2").unwrap().is_empty());
    let rep = s.snapshot(&dir2, &ident("s3k2"), pos(2), &keep(2), &mut no_progress).unwrap();
    assert_eq!(rep.files_uploaded, rep.files);
    raw.assert_no_dangling_manifest(&s, &["s3k", "s3k2"]);
    let restored = tmp.join("r2");
    s.restore("s3k2", None, &restored, &mut no_progress).unwrap();
    verify_local(&restored, true).unwrap();
    assert_eq!(all_results(&restored), all_results(&dir2));
    assert_eq!(Manifest::read(&restored).unwrap().num_docs(), 6000);
    let _ = std::fs::remove_dir_all(tmp);
}
