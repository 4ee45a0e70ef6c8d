//! Snapshots of hybrid indexes in S3 (a moto server on loopback, behind a fault-injecting proxy):
//! `hybrid.snapshot_now`, dedup of unchanged files, retention, restores (by the worker and by
//! `hybrid.restore()`, with catch-up of rows changed after the snapshot), a second cluster
//! restored from the same bucket, the store dying mid-upload, a damaged blob, `snapshot_on_create`,
//! and a folder that cannot be trusted (newer than the table).
//!
//! moto must be installed (`MOTO_SERVER=/path/to/moto_server`, else `moto_server` on PATH); the
//! tests fail, not skip, without it.

mod snaputil;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pg_hybrid_tests::s3::{MotoServer, Trip};
use pg_hybrid_tests::*;
use snaputil::*;

const PREFIX: &str = "snaps";

/// Panics unless every search of `docs` fails in a new session with SQLSTATE `code` and a
/// message containing `needle`.
fn assert_scans_fail(cluster: &TestCluster, code: &str, needle: &str, when: &str) {
    match fresh_search(cluster, COMMON_WORD) {
        Ok(ids) => panic!("{when}: a search should fail with {code}, it returned {} rows", ids.len()),
        Err((state, msg)) => {
            assert_eq!(state, code, "{when}: {msg}");
            assert!(msg.contains(needle), "{when}: expected {needle:?} in: {msg}");
        }
    }
}

/// Waits until a search in a new session works again, and returns after how long.
fn wait_searchable(cluster: &TestCluster, timeout: Duration, when: &str) -> Duration {
    let started = Instant::now();
    let mut last = None;
    let ok = wait_until(timeout, || match fresh_search(cluster, COMMON_WORD) {
        Ok(_) => true,
        Err(e) => {
            last = Some(e);
            std::thread::sleep(Duration::from_millis(200));
            false
        }
    });
    assert!(ok, "{when}: the index is still unusable after {timeout:?}: {last:?}\n{}", cluster.log_tail(40));
    started.elapsed()
}

/// Bytes of the distinct contents of a snapshot (what its first upload sends).
fn distinct_bytes(m: &BucketManifest) -> i64 {
    let distinct: BTreeMap<&String, u64> = m.files.iter().map(|f| (&f.sha256, f.size)).collect();
    distinct.values().sum::<u64>() as i64
}

#[test]
fn snapshot_now_uploads_blobs_and_a_manifest() {
    let moto = MotoServer::start("snapnow");
    let cluster = cluster_with_store("snap_now", &moto, PREFIX, &[]);
    let mut c = cluster.connect();
    load_docs(&mut c, 500);
    assert!(snapshot_rows(&mut c, "docs_search").is_empty());

    let generation = snapshot_now(&mut c, "docs_search").expect("snapshot_now");
    let info = index_info(&mut c, "docs_search");
    assert_eq!(generation, info.generation, "snapshot_now returns the generation it uploaded");

    let rows = snapshot_rows(&mut c, "docs_search");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r.generation, generation);
    assert_eq!(r.store_url, moto.url(PREFIX));
    assert!(r.files >= 2, "{r:?}");
    assert!(r.bytes_total > 1000, "{r:?}");
    assert_eq!((r.files_uploaded, r.bytes_uploaded), (r.files, r.bytes_total), "the first snapshot sends everything");
    // (One segment: no two files with the same content, which would be sent once.)
    assert_eq!(info.segments, 1);

    // The bucket: one manifest, named by the row, whose files are all there.
    let s3 = moto.client();
    let ms = manifests(&s3, PREFIX);
    assert_eq!(ms.len(), 1, "{ms:?}");
    assert_eq!(ms[0].key, format!("{PREFIX}/{}", r.manifest_key));
    assert_eq!(ms[0].generation as i64, generation);
    assert_eq!(ms[0].files.len() as i32, r.files);
    assert!(ms[0].files.iter().any(|f| f.name == "meta.json"), "a snapshot includes the folder's manifest");
    assert_eq!(ms[0].files.iter().map(|f| f.size as i64).sum::<i64>(), r.bytes_total);
    let b = blobs(&s3, PREFIX);
    let distinct: BTreeSet<&String> = ms[0].files.iter().map(|f| &f.sha256).collect();
    assert_eq!(b.len(), distinct.len(), "exactly the snapshot's blobs are in the bucket");
    assert_manifests_complete(&s3, PREFIX, "after the first snapshot");
    // Blobs are named by their content.
    for f in &ms[0].files {
        let local = std::fs::read(index_dir(&mut c, "docs_search").join(&f.name)).unwrap();
        assert_eq!(s3.get(&format!("{PREFIX}/blobs/{}", f.sha256)).as_deref(), Some(&local[..]), "blob of {}", f.name);
    }

    // Nothing changed: the same snapshot, nothing sent, no new row.
    let before = moto.proxy().bytes_up();
    assert_eq!(snapshot_now(&mut c, "docs_search").unwrap(), generation);
    assert_eq!(snapshot_rows(&mut c, "docs_search"), rows);
    assert_eq!(manifests(&s3, PREFIX).len(), 1);
    assert!(moto.proxy().bytes_up() - before < 20_000, "an unchanged index sends no file");

    // A committed row: a new generation, of which only the new files are sent.
    c.batch_execute(&format!("INSERT INTO docs VALUES (9001, 't', 'latecomer {COMMON_WORD}', 'en')")).unwrap();
    let g2 = snapshot_now(&mut c, "docs_search").unwrap();
    assert!(g2 > generation);
    let rows = snapshot_rows(&mut c, "docs_search");
    assert_eq!(rows.len(), 2);
    assert!(rows[1].bytes_uploaded < rows[1].bytes_total, "the second snapshot reuses blobs: {rows:?}");
    assert_manifests_complete(&s3, PREFIX, "after the second snapshot");
    cluster.assert_no_backend_crash();
}

/// Changing 1% of the rows sends a small fraction of the index: exactly the blobs that are new
/// in the bucket.
#[test]
fn a_second_snapshot_sends_only_new_files() {
    let moto = MotoServer::start("dedup");
    let cluster = cluster_with_store("snap_dedup", &moto, PREFIX, &[]);
    let mut c = cluster.connect();
    load_docs(&mut c, 5000);
    let s3 = moto.client();
    snapshot_now(&mut c, "docs_search").unwrap();
    let first = snapshot_rows(&mut c, "docs_search").pop().unwrap();
    // Everything was sent, each content once (segments of equal size with generated text of
    // constant length can have byte-identical files, e.g. their field norms).
    assert_eq!(first.bytes_uploaded, distinct_bytes(&manifests(&s3, PREFIX)[0]));
    let blobs_before = blobs(&s3, PREFIX);

    // 1% of the rows change (in one transaction), then VACUUM, as autovacuum would.
    c.batch_execute("BEGIN").unwrap();
    churn(&mut c, &[], &(1..=5000).step_by(100).collect::<Vec<_>>(), &[], 1);
    c.batch_execute("COMMIT").unwrap();
    c.batch_execute("VACUUM docs").unwrap();
    snapshot_now(&mut c, "docs_search").unwrap();
    let second = snapshot_rows(&mut c, "docs_search").pop().unwrap();
    assert!(second.sequence > first.sequence);
    let blobs_after = blobs(&s3, PREFIX);
    let new: BTreeMap<&String, &u64> = blobs_after.iter().filter(|(k, _)| !blobs_before.contains_key(*k)).collect();
    let new_bytes: u64 = new.values().copied().sum();
    eprintln!(
        "first: {} files, {} bytes; second: {} of {} files, {} of {} bytes sent; {} new blobs, {new_bytes} bytes",
        first.files,
        first.bytes_total,
        second.files_uploaded,
        second.files,
        second.bytes_uploaded,
        second.bytes_total,
        new.len()
    );
    assert_eq!(second.bytes_uploaded as u64, new_bytes, "bytes sent = bytes of the blobs that are new in the bucket");
    assert_eq!(second.files_uploaded as usize, new.len(), "files sent = new blobs");
    assert!(
        second.bytes_uploaded * 10 < second.bytes_total,
        "1% of the rows changed, but {} of {} bytes were sent",
        second.bytes_uploaded,
        second.bytes_total
    );
    assert!(second.bytes_uploaded > 0);
    // Every blob the first snapshot had is still there (both snapshots are kept).
    for k in blobs_before.keys() {
        assert!(blobs_after.contains_key(k));
    }
    assert_manifests_complete(&s3, PREFIX, "after two snapshots");
    cluster.assert_no_backend_crash();
}

/// `hybrid.snapshot_retention = 2`: after four snapshots, the two newest are left, in the
/// bucket and in `hybrid.snapshots`.
///
/// Blobs that only the deleted snapshots named are NOT deleted here: garbage collection spares
/// unreferenced blobs younger than `StoreOptions::gc_grace`, one hour, which no setting changes.
/// The test checks that they are kept (the grace) and that every blob the remaining snapshots
/// need is there.
#[test]
fn retention_keeps_the_newest_snapshots() {
    let moto = MotoServer::start("retention");
    let cluster = cluster_with_store("snap_retention", &moto, PREFIX, &["hybrid.snapshot_retention = 2"]);
    let mut c = cluster.connect();
    load_docs(&mut c, 1000);
    let s3 = moto.client();
    let mut taken = Vec::new();
    for round in 0..4i64 {
        if round > 0 {
            churn(
                &mut c,
                &[round],
                &[round + 100],
                &(10_000 + round * 10..10_010 + round * 10).collect::<Vec<_>>(),
                round as u64,
            );
        }
        let g = snapshot_now(&mut c, "docs_search").unwrap();
        let ms = manifests(&s3, PREFIX);
        let newest = ms.iter().max_by_key(|m| m.sequence).unwrap().clone();
        assert_eq!(newest.generation as i64, g);
        taken.push(newest);
        let rows = snapshot_rows(&mut c, "docs_search");
        let expect = (round as usize + 1).min(2);
        assert_eq!(
            ms.len(),
            expect,
            "round {round}: manifests in the bucket: {:?}",
            ms.iter().map(|m| &m.key).collect::<Vec<_>>()
        );
        assert_eq!(rows.len(), expect, "round {round}: {rows:?}");
    }
    let ms = manifests(&s3, PREFIX);
    let keys: BTreeSet<String> = ms.iter().map(|m| m.key.clone()).collect();
    let want: BTreeSet<String> = taken[2..].iter().map(|m| m.key.clone()).collect();
    assert_eq!(keys, want, "the two newest manifests remain");
    let rows = snapshot_rows(&mut c, "docs_search");
    let row_keys: BTreeSet<String> = rows.iter().map(|r| format!("{PREFIX}/{}", r.manifest_key)).collect();
    assert_eq!(row_keys, want, "hybrid.snapshots lists the same two");
    assert_manifests_complete(&s3, PREFIX, "after retention");

    let referenced: BTreeSet<&String> = taken[2..].iter().flat_map(|m| m.files.iter().map(|f| &f.sha256)).collect();
    let dropped: BTreeSet<&String> =
        taken[..2].iter().flat_map(|m| m.files.iter().map(|f| &f.sha256)).filter(|s| !referenced.contains(s)).collect();
    assert!(!dropped.is_empty(), "the deleted snapshots had blobs of their own (their meta.json at least)");
    let in_bucket = blobs(&s3, PREFIX);
    for sha in &dropped {
        assert!(in_bucket.contains_key(*sha), "unreferenced blob {sha} was deleted within the 1 h grace period");
    }
    eprintln!("{} blobs referenced by no manifest are kept for the grace period", dropped.len());

    // The newest kept snapshot restores.
    let mut hold = hold_table(&cluster);
    lose_folder(&index_dir(&mut c, "docs_search"));
    let r = restore(&mut hold, "docs_search").unwrap();
    hold.batch_execute("COMMIT").unwrap();
    assert_eq!((r.source.as_str(), r.snapshot_generation), ("snapshot", Some(taken[3].generation as i64)));
    let mut c = cluster.connect();
    assert_index_matches_table(&mut c, "after restoring the newest kept snapshot");
    cluster.assert_no_backend_crash();
}

/// The folder of an index is lost (rm -rf): searches fail with 55000 until it is restored;
/// the worker restores it by itself, and `hybrid.restore()` does too; both times the index is
/// caught up with rows inserted, updated and deleted after the snapshot.
#[test]
fn a_lost_folder_is_restored_and_caught_up() {
    let moto = MotoServer::start("restore");
    let cluster = cluster_with_store("snap_restore", &moto, PREFIX, &[]);
    let mut c = cluster.connect();
    load_docs(&mut c, 3000);
    let g = snapshot_now(&mut c, "docs_search").unwrap();
    // After the snapshot: deletes, then (after VACUUM) inserts that reuse their tuple ids, and
    // updates.
    churn(
        &mut c,
        &(1..=100).collect::<Vec<_>>(),
        &(101..=200).collect::<Vec<_>>(),
        &(5001..=5200).collect::<Vec<_>>(),
        1,
    );
    let before = assert_index_matches_table(&mut c, "before the folder is lost");
    let dir = index_dir(&mut c, "docs_search");

    // 1. By the worker. A lock on the table holds its restore back until the failing scans
    // have been seen.
    let mut hold = hold_table(&cluster);
    lose_folder(&dir);
    assert_scans_fail(&cluster, "55000", "has no files on this server", "folder deleted");
    wait_worker_waiting_for_lock(&cluster, "folder deleted");
    assert_scans_fail(&cluster, "55000", "has no files on this server", "folder deleted, worker waiting");
    hold.batch_execute("ROLLBACK").unwrap();
    let took = wait_searchable(&cluster, Duration::from_secs(60), "restore by the worker");
    eprintln!("the worker restored the index {took:?} after the lock was released");
    let mut c = cluster.connect();
    assert_eq!(index_results(&mut c).unwrap(), before, "after the worker's restore");
    assert_index_matches_table(&mut c, "after the worker's restore");
    assert_verify_ok(&mut c, "docs_search");
    let w = db_worker(&mut c, TEST_DB).expect("the worker has a row");
    assert_eq!(w.errors, 0, "{w:?}");
    assert!(dir.join("meta.json").exists());
    let said = format!("restored index docs_search from snapshot {g} ");
    assert!(
        wait_until(Duration::from_secs(10), || cluster.server_log().contains(&said)),
        "the log lacks {said:?}\n{}",
        cluster.log_tail(20)
    );

    // 2. By hand, after more changes.
    churn(
        &mut c,
        &(201..=250).collect::<Vec<_>>(),
        &(251..=300).collect::<Vec<_>>(),
        &(6001..=6100).collect::<Vec<_>>(),
        2,
    );
    let before = assert_index_matches_table(&mut c, "before the folder is lost again");
    let live = count(&mut c, "SELECT count(*) FROM docs");
    let mut hold = hold_table(&cluster);
    lose_folder(&dir);
    assert_scans_fail(&cluster, "55000", "has no files on this server", "folder deleted again");
    // The worker saw it too, and waits for the table.
    wait_worker_waiting_for_lock(&cluster, "folder deleted again");
    let r = restore(&mut hold, "docs_search").expect("hybrid.restore");
    hold.batch_execute("COMMIT").unwrap();
    eprintln!("{r:?}");
    assert_eq!(r.source, "snapshot");
    assert_eq!(r.snapshot_generation, Some(g));
    assert!(r.bytes_downloaded > 0);
    // Relative to the snapshot: 150 rows deleted, 150 updated, 300 inserted.
    assert!(r.rows_added >= 450, "{r:?}");
    assert!(r.entries_removed >= 150, "{r:?}");
    assert!(r.rows_kept >= 2700 && r.rows_kept + r.rows_added >= live, "{r:?} ({live} rows)");
    let mut c = cluster.connect();
    assert_eq!(index_results(&mut c).unwrap(), before, "after hybrid.restore()");
    assert_verify_ok(&mut c, "docs_search");
    // The index takes writes again.
    c.batch_execute(&format!("INSERT INTO docs VALUES (7777, 't', 'afterrestore {COMMON_WORD}', 'en')")).unwrap();
    assert_eq!(search_ids(&mut c, "afterrestore"), [7777].into_iter().collect());
    cluster.assert_no_backend_crash();

    // The worker had found the folder missing before hybrid.restore() put it back; once it gets
    // the table it must see that the folder is fine now, not restore it a second time (another
    // download, and writers locked out meanwhile).
    let r = runs(&mut c, TEST_DB);
    wait_rounds(&cluster, TEST_DB, r, 2, Duration::from_secs(60));
    let restores: Vec<String> = cluster
        .server_log()
        .lines()
        .filter(|l| l.contains("pg_hybrid: restoring index docs_search"))
        .map(String::from)
        .collect();
    assert_eq!(
        restores.len(),
        1,
        "the worker restored the index again after hybrid.restore() had:\n{}",
        restores.join("\n")
    );
}

/// `notes`: a second table with its own index, so that a cluster has two indexes to restore.
fn create_notes(c: &mut Client, n: i64) {
    c.batch_execute(
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text);
         CREATE INDEX notes_search ON notes USING hybrid (id, body) WITH (key_field = 'id');",
    )
    .unwrap();
    let values: Vec<String> = (1..=n).map(|id| format!("({id}, '{}')", body_of(id + 1_000_000, 3))).collect();
    c.batch_execute(&format!("INSERT INTO notes VALUES {}", values.join(","))).unwrap();
}

fn notes_results(c: &mut Client) -> BTreeMap<String, BTreeSet<i64>> {
    force_index(c);
    ORACLE_WORDS
        .iter()
        .map(|w| (w.to_string(), id_set(c, &format!("SELECT id FROM notes WHERE body @@@ '{w}'"))))
        .collect()
}

/// A copy of a stopped cluster's data directory without its index folders (what a base backup
/// without the sidecar is) starts as a second server on the same bucket: its worker restores
/// both indexes from their snapshots and catches them up, and searches give what they gave on
/// the first server.
#[test]
fn a_second_server_restores_from_the_same_bucket() {
    let moto = MotoServer::start("second");
    let mut a = cluster_with_store("snap_server_a", &moto, PREFIX, &[]);
    let mut c = a.connect();
    load_docs(&mut c, 3000);
    create_notes(&mut c, 500);
    snapshot_now(&mut c, "docs_search").unwrap();
    snapshot_now(&mut c, "notes_search").unwrap();
    // Changes after the snapshots, which the catch-up must bring in.
    churn(
        &mut c,
        &(1..=50).collect::<Vec<_>>(),
        &(51..=100).collect::<Vec<_>>(),
        &(4001..=4100).collect::<Vec<_>>(),
        1,
    );
    c.batch_execute("DELETE FROM notes WHERE id <= 20").unwrap();
    let docs_a = assert_index_matches_table(&mut c, "on server A");
    let notes_a = notes_results(&mut c);
    let snapshots_a = snapshot_rows(&mut c, "docs_search");
    drop(c);
    a.stop();

    let gets_before = moto.log_tail(1_000_000).matches(&format!("GET /{}/{PREFIX}/blobs/", moto.bucket())).count();
    let b = a.copy_stopped("snap_server_b", &["pg_hybrid"]);
    let took = wait_searchable(&b, Duration::from_secs(90), "server B");
    let ok = wait_until(Duration::from_secs(60), || {
        let mut c = b.connect();
        force_index(&mut c);
        c.query("SELECT id FROM notes WHERE body @@@ 'harbor'", &[]).is_ok()
    });
    assert!(ok, "notes_search was not restored on B\n{}", b.log_tail(30));
    eprintln!("server B searchable after {took:?}");
    let gets =
        moto.log_tail(1_000_000).matches(&format!("GET /{}/{PREFIX}/blobs/", moto.bucket())).count() - gets_before;
    assert!(gets > 0, "server B downloaded no blob: it rebuilt from the tables instead of restoring the snapshots");
    for index in ["docs_search", "notes_search"] {
        let said = format!("restored index {index} from snapshot");
        assert!(
            wait_until(Duration::from_secs(10), || b.server_log().contains(&said)),
            "B's log lacks {said:?}\n{}",
            b.log_tail(30)
        );
    }

    let mut c = b.connect();
    assert_eq!(index_results(&mut c).unwrap(), docs_a, "docs on B vs A");
    assert_eq!(notes_results(&mut c), notes_a, "notes on B vs A");
    assert_index_matches_table(&mut c, "on server B");
    assert_verify_ok(&mut c, "docs_search");
    assert_verify_ok(&mut c, "notes_search");
    assert_eq!(snapshot_rows(&mut c, "docs_search"), snapshots_a, "B has A's catalog of snapshots");
    let w = db_worker(&mut c, TEST_DB).expect("B's worker");
    assert_eq!(w.errors, 0, "{w:?}");
    b.assert_no_backend_crash();
}

/// Rows of long generated text (`words` words each): a multi-megabyte index.
fn insert_long_docs(c: &mut Client, ids: std::ops::RangeInclusive<i64>, words_per_row: usize) {
    let ids: Vec<i64> = ids.collect();
    for chunk in ids.chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|&id| {
                let mut rng = Rng::new(id as u64 ^ 0x1234_5678);
                format!(
                    "({id}, '{}', '{} {} {COMMON_WORD}', 'en')",
                    title_of(id),
                    words(&mut rng, words_per_row),
                    token(id)
                )
            })
            .collect();
        c.batch_execute(&format!("INSERT INTO docs VALUES {}", values.join(","))).unwrap();
    }
}

/// The store dies in the middle of an upload: `snapshot_now` fails with 58030 and records
/// nothing; no manifest names a blob that is not there. First as a connection cut (moto keeps
/// its objects, so the bucket can be inspected), then as a real kill of moto; after each, the
/// store comes back and a snapshot succeeds.
#[test]
fn the_store_dying_mid_upload_leaves_no_broken_snapshot() {
    let mut moto = MotoServer::start("midupload");
    let cluster = cluster_with_store("snap_midupload", &moto, PREFIX, &[]);
    let mut c = cluster.connect();
    load_docs(&mut c, 1000);
    snapshot_now(&mut c, "docs_search").unwrap();
    insert_long_docs(&mut c, 100_001..=130_000, 60);
    let info = index_info(&mut c, "docs_search");
    eprintln!("index: {} documents, {} segments, {} bytes", info.documents, info.segments, info.bytes);
    assert!(info.bytes > 4_000_000, "the index should be several MB: {info:?}");
    let s3 = moto.client();

    // 1. Every connection is cut once half of the index has been sent.
    let before_attempt = blobs(&s3, PREFIX);
    moto.proxy().trip_after(info.bytes as u64 / 2, Trip::Cut);
    let started = Instant::now();
    let err = snapshot_now(&mut c, "docs_search").expect_err("the snapshot must fail");
    let (code, msg) = db_error(&err);
    eprintln!("after {:?}: {code} {msg}", started.elapsed());
    assert!(moto.proxy().tripped(), "the cut did not happen: the upload was smaller than expected");
    assert_eq!(code, "58030", "{msg}");
    assert!(msg.contains("could not snapshot index \"docs_search\"") && msg.contains(&moto.url(PREFIX)), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(snapshot_rows(&mut c, "docs_search").len(), 1, "a failed snapshot is not recorded");
    assert_eq!(manifests(&s3, PREFIX).len(), 1, "no manifest was written for the failed snapshot");
    assert_manifests_complete(&s3, PREFIX, "after the cut");
    let after_cut = blobs(&s3, PREFIX);
    let orphans = after_cut.keys().filter(|k| !before_attempt.contains_key(*k)).count();

    moto.proxy().resume();
    let g = snapshot_now(&mut c, "docs_search").expect("a snapshot once the store is back");
    let rows = snapshot_rows(&mut c, "docs_search");
    assert_eq!(rows.len(), 2);
    let newest = manifests(&s3, PREFIX).into_iter().find(|m| m.generation as i64 == g).expect("the new manifest");
    let missing: BTreeMap<&String, u64> =
        newest.files.iter().filter(|f| !after_cut.contains_key(&f.sha256)).map(|f| (&f.sha256, f.size)).collect();
    eprintln!(
        "{orphans} blobs were complete at the cut; the retry sent {} of {} bytes",
        rows[1].bytes_uploaded, rows[1].bytes_total
    );
    assert_eq!(
        rows[1].bytes_uploaded as u64,
        missing.values().sum::<u64>(),
        "the retry sends exactly what the store lacked (blobs completed before the cut are reused)"
    );
    assert_manifests_complete(&s3, PREFIX, "after the retry");

    // 2. moto itself is killed in the middle of an upload.
    insert_long_docs(&mut c, 130_001..=150_000, 60);
    moto.proxy().trip_after(200_000, Trip::Hold);
    let conn = cluster.conn_str(TEST_DB);
    let snap = std::thread::spawn(move || {
        let mut c = Client::connect(&conn, NoTls).unwrap();
        let started = Instant::now();
        (snapshot_now(&mut c, "docs_search").map_err(|e| db_error(&e)), started.elapsed())
    });
    assert!(
        wait_until(Duration::from_secs(120), || moto.proxy().tripped() || snap.is_finished()),
        "the upload never started"
    );
    assert!(moto.proxy().tripped(), "the snapshot finished before 200 kB were sent");
    moto.kill_now();
    moto.proxy().release();
    let (result, took) = snap.join().unwrap();
    let (code, msg) = result.expect_err("the snapshot must fail when the server dies");
    eprintln!("after {took:?}: {code} {msg}");
    assert_eq!(code, "58030", "{msg}");
    assert_eq!(snapshot_rows(&mut c, "docs_search").len(), 2, "a failed snapshot is not recorded");

    // moto comes back empty (it kept everything in memory): the next snapshot sends it all.
    moto.restart();
    moto.proxy().resume();
    let g = snapshot_now(&mut c, "docs_search").expect("a snapshot once the server is back");
    let rows = snapshot_rows(&mut c, "docs_search");
    let last = rows.last().unwrap();
    assert_eq!(last.generation, g);
    let m = manifests(&s3, PREFIX);
    assert_eq!(m.len(), 1);
    assert_eq!(last.bytes_uploaded, distinct_bytes(&m[0]), "an empty store gets everything");
    assert_manifests_complete(&s3, PREFIX, "after the restart");

    // And that snapshot restores.
    let mut hold = hold_table(&cluster);
    lose_folder(&index_dir(&mut c, "docs_search"));
    let r = restore(&mut hold, "docs_search").unwrap();
    hold.batch_execute("COMMIT").unwrap();
    assert_eq!((r.source.as_str(), r.snapshot_generation), ("snapshot", Some(g)), "{r:?}");
    assert_eq!(r.rows_added, 0, "nothing changed since the snapshot: {r:?}");
    let mut c = cluster.connect();
    assert_index_matches_table(&mut c, "after restoring the snapshot taken after the restart");
    cluster.assert_no_backend_crash();
}

/// Flips every byte of an object (same size, other content).
fn corrupt(s3: &pg_hybrid_tests::s3::S3Client, key: &str) {
    let mut bytes = s3.get(key).unwrap_or_else(|| panic!("{key} is not in the bucket"));
    for b in bytes.iter_mut() {
        *b ^= 0xA5;
    }
    s3.put(key, &bytes);
}

/// A blob damaged in the bucket is never restored: the restore falls back to an older
/// snapshot, or to the table when every snapshot needs the damaged content; the blob is moved
/// to quarantine/.
#[test]
fn a_damaged_blob_is_not_used() {
    let moto = MotoServer::start("damaged");
    let cluster = cluster_with_store("snap_damaged", &moto, PREFIX, &[]);
    let mut c = cluster.connect();
    load_docs(&mut c, 3000);
    let g1 = snapshot_now(&mut c, "docs_search").unwrap();
    churn(&mut c, &[], &[], &(4001..=4200).collect::<Vec<_>>(), 0);
    let g2 = snapshot_now(&mut c, "docs_search").unwrap();
    churn(&mut c, &(1..=30).collect::<Vec<_>>(), &(31..=60).collect::<Vec<_>>(), &(5001..=5050).collect::<Vec<_>>(), 1);
    let s3 = moto.client();
    let ms = manifests(&s3, PREFIX);
    assert_eq!(ms.len(), 2);
    let (m1, m2) = if ms[0].generation as i64 == g1 { (&ms[0], &ms[1]) } else { (&ms[1], &ms[0]) };
    assert_eq!(m2.generation as i64, g2);
    let in1: BTreeSet<&String> = m1.files.iter().map(|f| &f.sha256).collect();
    let only2 =
        m2.files.iter().filter(|f| !in1.contains(&f.sha256)).max_by_key(|f| f.size).expect("a blob of the newest only");
    let shared = m2.files.iter().filter(|f| in1.contains(&f.sha256)).max_by_key(|f| f.size).expect("a blob of both");
    let dir = index_dir(&mut c, "docs_search");

    // 1. A blob only the newest snapshot has: the older one is restored and caught up.
    corrupt(&s3, &format!("{PREFIX}/blobs/{}", only2.sha256));
    let mut hold = hold_table(&cluster);
    lose_folder(&dir);
    let r = restore(&mut hold, "docs_search").expect("restore with a damaged blob");
    hold.batch_execute("COMMIT").unwrap();
    eprintln!("damaged {} ({} bytes): {r:?}", only2.name, only2.size);
    assert_eq!((r.source.as_str(), r.snapshot_generation), ("snapshot", Some(g1)), "{r:?}");
    let mut c = cluster.connect();
    assert_index_matches_table(&mut c, "restored from the older snapshot");
    assert_verify_ok(&mut c, "docs_search");
    assert!(!s3.exists(&format!("{PREFIX}/blobs/{}", only2.sha256)), "the damaged blob is still in blobs/");
    let q = s3.list(&format!("{PREFIX}/quarantine/"));
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(q[0].key.starts_with(&format!("{PREFIX}/quarantine/{}", only2.sha256)), "{q:?}");

    // 2. A blob both snapshots have: built from the table.
    corrupt(&s3, &format!("{PREFIX}/blobs/{}", shared.sha256));
    let mut hold = hold_table(&cluster);
    lose_folder(&dir);
    let r = restore(&mut hold, "docs_search").expect("restore with a damaged shared blob");
    hold.batch_execute("COMMIT").unwrap();
    eprintln!("damaged {} ({} bytes): {r:?}", shared.name, shared.size);
    assert_eq!((r.source.as_str(), r.snapshot_generation), ("table", None), "{r:?}");
    let mut c = cluster.connect();
    assert_index_matches_table(&mut c, "rebuilt from the table");
    assert_verify_ok(&mut c, "docs_search");
    let q = s3.list(&format!("{PREFIX}/quarantine/"));
    assert!(q.iter().any(|o| o.key.starts_with(&format!("{PREFIX}/quarantine/{}", shared.sha256))), "{q:?}");

    // A new snapshot is whole again and restores.
    let g = snapshot_now(&mut c, "docs_search").unwrap();
    let mut hold = hold_table(&cluster);
    lose_folder(&dir);
    let r = restore(&mut hold, "docs_search").unwrap();
    hold.batch_execute("COMMIT").unwrap();
    assert_eq!((r.source.as_str(), r.snapshot_generation), ("snapshot", Some(g)), "{r:?}");
    let mut c = cluster.connect();
    assert_index_matches_table(&mut c, "restored from the new snapshot");
    cluster.assert_no_backend_crash();
}

/// `snapshot_on_create = true`: with the store down CREATE INDEX fails and leaves nothing; with
/// the store up the index comes with its first snapshot.
#[test]
fn snapshot_on_create_needs_the_store() {
    let moto = MotoServer::start("oncreate");
    let cluster = cluster_with_store("snap_on_create", &moto, PREFIX, &[]);
    let mut c = cluster.connect();
    c.batch_execute(DOCS_TABLE).unwrap();
    insert_docs(&mut c, &(1..=300).collect::<Vec<_>>());
    let create = "CREATE INDEX docs_search ON docs USING hybrid (id, title, body) \
                  WITH (key_field = 'id', snapshot_on_create = true)";

    moto.proxy().cut();
    let started = Instant::now();
    let err = c.batch_execute(create).expect_err("CREATE INDEX must fail with the store down");
    let (code, msg) = db_error(&err);
    eprintln!("after {:?}: {code} {msg}", started.elapsed());
    assert_eq!(code, "58030", "{msg}");
    assert!(msg.contains("first snapshot") && msg.contains("docs_search"), "{msg}");
    assert!(
        c.query_one("SELECT to_regclass('docs_search') IS NULL", &[]).unwrap().get::<_, bool>(0),
        "the index exists"
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM hybrid.indexes"), 0);
    assert_eq!(count(&mut c, "SELECT count(*) FROM hybrid.snapshots"), 0);
    assert!(cluster.sidecar_dirs(TEST_DB).is_empty(), "folders left: {:?}", cluster.sidecar_dirs(TEST_DB));
    assert!(manifests(&moto.client(), PREFIX).is_empty());

    moto.proxy().resume();
    c.batch_execute(create).expect("CREATE INDEX with the store up");
    let rows = snapshot_rows(&mut c, "docs_search");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].generation, index_info(&mut c, "docs_search").generation);
    assert_eq!(manifests(&moto.client(), PREFIX).len(), 1);
    assert_manifests_complete(&moto.client(), PREFIX, "after CREATE INDEX");
    assert_index_matches_table(&mut c, "after CREATE INDEX");
    cluster.assert_no_backend_crash();
}

/// A folder whose manifest claims a WAL position ahead of the server (as after restoring a
/// base backup next to newer index files) is not used: scans fail with 55000 until the worker
/// has caught it up with the table. The folder is also really out of step: it is an older copy,
/// and since then rows were deleted (their tuple ids reused by new rows), updated and inserted.
#[test]
fn an_untrusted_folder_is_caught_up_before_use() {
    // No store needed: the folder is kept and caught up in place.
    let mut cluster = TestCluster::with_settings(
        "snap_untrusted",
        &["hybrid.worker_naptime = 1", "hybrid.snapshot_interval = 0", "max_prepared_transactions = 2"],
    );
    let mut c = cluster.connect();
    load_docs(&mut c, 3000);
    let dir = index_dir(&mut c, "docs_search");
    drop(c);
    cluster.stop();
    let saved = cluster.data_dir().with_extension("saved_index");
    let _ = std::fs::remove_dir_all(&saved);
    copy_tree(&dir, &saved);
    cluster.start();

    let mut c = cluster.connect();
    churn(
        &mut c,
        &(1..=300).collect::<Vec<_>>(),
        &(301..=400).collect::<Vec<_>>(),
        &(5001..=5300).collect::<Vec<_>>(),
        1,
    );
    assert_index_matches_table(&mut c, "before the folder is swapped");
    // A prepared transaction holding a lock that keeps the worker's catch-up waiting across the
    // restart, so the failing scans can be seen.
    c.batch_execute("BEGIN; LOCK TABLE docs IN ROW EXCLUSIVE MODE; PREPARE TRANSACTION 'hold_docs'").unwrap();
    drop(c);
    cluster.stop();

    lose_folder(&dir);
    copy_tree(&saved, &dir);
    std::fs::remove_dir_all(&saved).unwrap();
    let meta_path = dir.join("meta.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let lsn = meta["hybrid"]["position"]["lsn"].as_u64().expect("meta.json records the WAL position");
    meta["hybrid"]["position"]["lsn"] = serde_json::json!(lsn + (1u64 << 40));
    // Written in place: owner and mode stay the server's.
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    cluster.start();

    assert_scans_fail(&cluster, "55000", "must be caught up with its table before use", "after the restart");
    wait_worker_waiting_for_lock(&cluster, "untrusted folder");
    assert_scans_fail(&cluster, "55000", "must be caught up with its table before use", "worker waiting");

    cluster.connect().batch_execute("COMMIT PREPARED 'hold_docs'").unwrap();
    let took = wait_searchable(&cluster, Duration::from_secs(60), "catch-up by the worker");
    eprintln!("caught up {took:?} after the lock was released");
    let said = "restored index docs_search from its own files";
    assert!(
        wait_until(Duration::from_secs(10), || cluster.server_log().contains(said)),
        "the log lacks {said:?}\n{}",
        cluster.log_tail(20)
    );
    let mut c = cluster.connect();
    assert_index_matches_table(&mut c, "after the catch-up");
    assert_verify_ok(&mut c, "docs_search");
    // Written by this server now.
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert!(meta["hybrid"]["position"]["lsn"].as_u64().unwrap() < lsn + (1u64 << 40));
    cluster.assert_no_backend_crash();
}

/// A session that had the index open before `hybrid.restore()` replaced its folder sees the
/// restored index, not a mix of old and new files: the restore's catch-up writes deletion
/// files for the same segments, and their names must not be mistaken for the old folder's.
/// (Uses the default store, the folder pg_hybrid_snapshots of the data directory.)
#[test]
fn a_session_open_across_a_restore_sees_the_restored_index() {
    let cluster =
        TestCluster::with_settings("snap_open_session", &["hybrid.worker_naptime = 1", "hybrid.snapshot_interval = 0"]);
    let mut c = cluster.connect();
    load_docs(&mut c, 2000);
    snapshot_now(&mut c, "docs_search").unwrap();
    let url = snapshot_rows(&mut c, "docs_search")[0].store_url.clone();
    assert!(url.starts_with("file://") && url.ends_with("/pg_hybrid_snapshots"), "{url}");
    // After the snapshot: deletes applied to the index by VACUUM (a deletion file of the first
    // segment), then updates whose old entries stay until the next VACUUM.
    c.batch_execute("DELETE FROM docs WHERE id <= 50").unwrap();
    c.batch_execute("VACUUM docs").unwrap();
    for id in 51..=100i64 {
        c.execute("UPDATE docs SET body = $2 WHERE id = $1", &[&id, &body_of(id, 1)]).unwrap();
    }
    // The long-lived session reads the index now.
    let mut old = cluster.connect();
    force_index(&mut old);
    assert_eq!(search_ids(&mut old, "tok60"), [60].into_iter().collect());

    let dels = |c: &mut Client| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(index_dir(c, "docs_search"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".del"))
            .collect();
        v.sort();
        v
    };
    let dels_before = dels(&mut c);
    let mut h = cluster.connect();
    let r = restore(&mut h, "docs_search").unwrap();
    // (The catch-up's deletion file has the very name of the one the old folder had:
    // `<segment>.<opstamp>.del`, counted from the snapshot's opstamp.)
    eprintln!("deletion files before the restore {dels_before:?}, after {:?}", dels(&mut c));
    eprintln!("{r:?}");
    assert_eq!(r.source, "snapshot");
    assert!(r.entries_removed >= 100, "deleted rows and old versions of updated rows: {r:?}");
    drop(h);

    // The old versions' tuple ids are freed and reused by new rows.
    c.batch_execute("VACUUM docs").unwrap();
    insert_docs(&mut c, &(3001..=3400).collect::<Vec<_>>());
    let truth = ground_truth(&mut c);
    assert_eq!(index_results(&mut cluster.connect()).unwrap(), truth, "a new session");
    let mut wrong = Vec::new();
    for id in 51..=100i64 {
        let got = search_ids(&mut old, &token(id));
        if got != [id].into_iter().collect() {
            wrong.push((id, got));
        }
    }
    assert!(
        wrong.is_empty(),
        "the session open across the restore finds rows by entries the restore removed: {wrong:?}"
    );
    assert_eq!(index_results(&mut old).unwrap(), truth, "the session open across the restore");
    cluster.assert_no_backend_crash();
}

/// `hybrid.snapshot_now` can be cancelled while the store does not answer (requests stall in
/// the proxy): the cancel must not wait for the store's timeouts (60 s per request, retried).
#[test]
fn snapshot_now_can_be_cancelled_while_the_store_stalls() {
    let moto = MotoServer::start("cancel");
    let cluster = cluster_with_store("snap_cancel", &moto, PREFIX, &[]);
    let mut c = cluster.connect();
    load_docs(&mut c, 500);
    moto.proxy().hold();
    let conn = cluster.conn_str(TEST_DB);
    let snap = std::thread::spawn(move || {
        let mut s = Client::connect(&conn, NoTls).unwrap();
        snapshot_now(&mut s, "docs_search").map_err(|e| db_error(&e))
    });
    assert!(
        wait_until(Duration::from_secs(30), || moto.proxy().connections() > 0),
        "the snapshot never reached the store"
    );
    std::thread::sleep(Duration::from_millis(500));
    let cancelled: bool = c
        .query_one(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT hybrid.snapshot_now%' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(cancelled);
    let started = Instant::now();
    let prompt = wait_until(Duration::from_secs(10), || snap.is_finished());
    let waited = started.elapsed();
    // Let the stalled request through, so that the test ends either way.
    moto.proxy().release();
    let result = snap.join().unwrap();
    assert!(prompt, "snapshot_now was still running {waited:?} after pg_cancel_backend (result once the store answered: {result:?})");
    let (code, msg) = result.expect_err("a cancelled snapshot fails");
    assert_eq!(code, "57014", "{msg}");
    assert!(snapshot_rows(&mut c, "docs_search").is_empty());
    assert!(manifests(&moto.client(), PREFIX).is_empty());
}
