//! Helpers shared by the snapshot, worker and merge tests: clusters pointed at a moto bucket,
//! ground-truth searches, the `hybrid.snapshots` and `hybrid.workers` views, and what a bucket
//! holds.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pg_hybrid_tests::s3::{MotoServer, Object, S3Client};
use pg_hybrid_tests::*;

/// A cluster whose snapshots go to `s3://<moto bucket>/<prefix>`, with database workers every
/// second and no periodic snapshots (only `hybrid.snapshot_now`), plus `extra` settings (later
/// lines win).
pub fn cluster_with_store(name: &str, moto: &MotoServer, prefix: &str, extra: &[&str]) -> TestCluster {
    let mut settings: Vec<String> = moto.settings(prefix);
    settings.push("hybrid.worker_naptime = 1".into());
    settings.push("hybrid.snapshot_interval = 0".into());
    settings.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
    TestCluster::with_settings(name, &refs)
}

/// The queries the tests compare: the word every row has, each oracle word (in the body, and
/// one in the title), so that every row and many subsets are checked.
pub fn queries() -> Vec<String> {
    let mut q = vec![COMMON_WORD.to_string()];
    q.extend(ORACLE_WORDS.iter().map(|w| w.to_string()));
    q.push(format!("title:{}", ORACLE_WORDS[0]));
    q.push(format!("{} AND {}", ORACLE_WORDS[1], ORACLE_WORDS[2]));
    q
}

/// What each of [`queries`] must return, computed from the table with regular expressions
/// (no index involved).
pub fn ground_truth(c: &mut Client) -> BTreeMap<String, BTreeSet<i64>> {
    let mut out = BTreeMap::new();
    for q in queries() {
        let sql = if q == COMMON_WORD {
            format!("SELECT id FROM docs WHERE body ~ '\\m{COMMON_WORD}\\M'")
        } else if let Some(w) = q.strip_prefix("title:") {
            format!("SELECT id FROM docs WHERE title ~ '\\m{w}\\M'")
        } else if let Some((a, b)) = q.split_once(" AND ") {
            format!("SELECT id FROM docs WHERE body ~ '\\m{a}\\M' AND body ~ '\\m{b}\\M'")
        } else {
            format!("SELECT id FROM docs WHERE body ~ '\\m{q}\\M'")
        };
        // A sequential scan: the regex must not go anywhere near the index.
        c.batch_execute("SET enable_seqscan = on").unwrap();
        out.insert(q, id_set(c, &sql));
    }
    out
}

/// What the index returns for each of [`queries`] (the session is switched to index scans).
pub fn index_results(c: &mut Client) -> Result<BTreeMap<String, BTreeSet<i64>>, postgres::Error> {
    force_index(c);
    let mut out = BTreeMap::new();
    for q in queries() {
        let rows = c.query("SELECT id FROM docs WHERE body @@@ $1", &[&q])?;
        out.insert(q, rows.iter().map(|r| r.get::<_, i64>(0)).collect());
    }
    Ok(out)
}

/// Panics unless the index agrees with the table for every query (and `hybrid.verify`).
pub fn assert_index_matches_table(c: &mut Client, when: &str) -> BTreeMap<String, BTreeSet<i64>> {
    let truth = ground_truth(c);
    let got = index_results(c).unwrap_or_else(|e| panic!("{when}: search failed: {e}"));
    for (q, want) in &truth {
        let have = &got[q];
        if have != want {
            let missing: Vec<_> = want.difference(have).take(10).collect();
            let extra: Vec<_> = have.difference(want).take(10).collect();
            panic!(
                "{when}: `{q}` returned {} rows, the table has {} (missing e.g. {missing:?}, extra e.g. {extra:?})",
                have.len(),
                want.len()
            );
        }
    }
    assert!(truth[COMMON_WORD].len() > 0, "{when}: empty table?");
    got
}

/// The SQLSTATE and message of an error.
pub fn db_error(e: &postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => panic!("expected a database error, got: {e}"),
    }
}

/// A search of `docs` in a new session: Ok(ids) or the error (SQLSTATE, message).
pub fn fresh_search(cluster: &TestCluster, query: &str) -> Result<BTreeSet<i64>, (String, String)> {
    let mut c = cluster.connect();
    force_index(&mut c);
    match c.query("SELECT id FROM docs WHERE body @@@ $1", &[&query]) {
        Ok(rows) => Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect()),
        Err(e) => Err(db_error(&e)),
    }
}

/// Creates `docs` with rows `1..=n` and its index `docs_search`.
pub fn load_docs(c: &mut Client, n: i64) {
    create_docs(c);
    insert_docs(c, &(1..=n).collect::<Vec<_>>());
}

/// Deletes, updates and inserts rows of `docs` (ids given), with VACUUM between deletes and
/// inserts so that new rows reuse the tuple ids of deleted ones. Updated rows get version
/// `version` of their text.
pub fn churn(c: &mut Client, delete: &[i64], update: &[i64], insert: &[i64], version: u64) {
    if !delete.is_empty() {
        let list = delete.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        c.batch_execute(&format!("DELETE FROM docs WHERE id IN ({list})")).unwrap();
        c.batch_execute("VACUUM docs").unwrap();
    }
    for id in update {
        c.execute(
            "UPDATE docs SET body = $2, title = $3 WHERE id = $1",
            &[id, &body_of(*id, version), &format!("changed {}", title_of(*id))],
        )
        .unwrap();
    }
    if !insert.is_empty() {
        insert_docs(c, insert);
    }
}

// ---- hybrid.snapshots --------------------------------------------------------------------------

/// A row of `hybrid.snapshots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub generation: i64,
    pub sequence: i64,
    pub files: i32,
    pub bytes_total: i64,
    pub files_uploaded: i32,
    pub bytes_uploaded: i64,
    pub store_url: String,
    pub manifest_key: String,
    pub wal_position: String,
}

/// The rows of `hybrid.snapshots` of `index`, by sequence.
pub fn snapshot_rows(c: &mut Client, index: &str) -> Vec<SnapshotRow> {
    c.query(
        "SELECT generation, sequence, files, bytes_total, files_uploaded, bytes_uploaded, store_url, manifest_key,
                wal_position::text
           FROM hybrid.snapshots WHERE index = $1::text::regclass ORDER BY sequence",
        &[&index],
    )
    .expect("read hybrid.snapshots")
    .iter()
    .map(|r| SnapshotRow {
        generation: r.get(0),
        sequence: r.get(1),
        files: r.get(2),
        bytes_total: r.get(3),
        files_uploaded: r.get(4),
        bytes_uploaded: r.get(5),
        store_url: r.get(6),
        manifest_key: r.get(7),
        wal_position: r.get(8),
    })
    .collect()
}

/// `SELECT hybrid.snapshot_now(index)`.
pub fn snapshot_now(c: &mut Client, index: &str) -> Result<i64, postgres::Error> {
    c.query_one("SELECT hybrid.snapshot_now($1::text::regclass)", &[&index]).map(|r| r.get(0))
}

/// A row of `hybrid.restore()`.
#[derive(Debug, Clone)]
pub struct RestoreRow {
    pub source: String,
    pub snapshot_generation: Option<i64>,
    pub generation: i64,
    pub rows_kept: i64,
    pub rows_added: i64,
    pub entries_removed: i64,
    pub bytes_downloaded: i64,
    pub seconds: f64,
}

/// `SELECT * FROM hybrid.restore(index)`.
pub fn restore(c: &mut Client, index: &str) -> Result<RestoreRow, postgres::Error> {
    c.query_one(
        "SELECT source, snapshot_generation, generation, rows_kept, rows_added, entries_removed, bytes_downloaded, seconds
           FROM hybrid.restore($1::text::regclass)",
        &[&index],
    )
    .map(|r| RestoreRow {
        source: r.get(0),
        snapshot_generation: r.get(1),
        generation: r.get(2),
        rows_kept: r.get(3),
        rows_added: r.get(4),
        entries_removed: r.get(5),
        bytes_downloaded: r.get(6),
        seconds: r.get(7),
    })
}

/// Deletes an index folder as an operator's `rm -rf` would, again if the first pass fails
/// because the database worker wrote a file into it meanwhile (a drain of the pending log, a
/// merge): what the tests then check is the server's handling of a folder that is gone.
pub fn lose_folder(dir: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty || e.kind() == std::io::ErrorKind::NotFound => {
                if !dir.exists() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("remove {}: {e}", dir.display()),
        }
    }
    panic!("{} keeps getting new files", dir.display());
}

/// The folder of an index, from `hybrid.index_info`.
pub fn index_dir(c: &mut Client, index: &str) -> PathBuf {
    PathBuf::from(index_info(c, index).directory)
}

// ---- the bucket ------------------------------------------------------------------------------

/// A file of a snapshot manifest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManifestFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// A snapshot manifest read from the bucket.
#[derive(Debug, Clone)]
pub struct BucketManifest {
    pub key: String,
    pub sequence: u64,
    pub generation: u64,
    pub files: Vec<ManifestFile>,
}

/// Blob objects under `prefix`: sha256 -> size.
pub fn blobs(s3: &S3Client, prefix: &str) -> BTreeMap<String, u64> {
    let head = format!("{prefix}/blobs/");
    s3.list(&head).into_iter().map(|o: Object| (o.key[head.len()..].to_string(), o.size)).collect()
}

/// Every snapshot manifest under `prefix`, by key.
pub fn manifests(s3: &S3Client, prefix: &str) -> Vec<BucketManifest> {
    s3.list(&format!("{prefix}/indexes/"))
        .into_iter()
        .filter(|o| o.key.ends_with(".json"))
        .map(|o| {
            let bytes = s3.get(&o.key).unwrap_or_else(|| panic!("manifest {} vanished", o.key));
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("manifest {} does not parse: {e}", o.key));
            let files = v["files"]
                .as_array()
                .unwrap_or_else(|| panic!("manifest {} has no files", o.key))
                .iter()
                .map(|f| ManifestFile {
                    name: f["name"].as_str().unwrap().to_string(),
                    sha256: f["sha256"].as_str().unwrap().to_string(),
                    size: f["size"].as_u64().unwrap(),
                })
                .collect();
            BucketManifest {
                key: o.key.clone(),
                sequence: v["sequence"].as_u64().unwrap(),
                generation: v["generation"].as_u64().unwrap(),
                files,
            }
        })
        .collect()
}

/// Panics if a manifest under `prefix` names a blob that is not in the bucket with its size.
pub fn assert_manifests_complete(s3: &S3Client, prefix: &str, when: &str) {
    let blobs = blobs(s3, prefix);
    for m in manifests(s3, prefix) {
        for f in &m.files {
            match blobs.get(&f.sha256) {
                Some(size) if *size == f.size => {}
                Some(size) => panic!(
                    "{when}: manifest {} names blob {} of {} bytes, the bucket has {size}",
                    m.key, f.sha256, f.size
                ),
                None => panic!(
                    "{when}: manifest {} names blob {} ({}), which is not in the bucket",
                    m.key, f.sha256, f.name
                ),
            }
        }
    }
}

// ---- hybrid.workers ----------------------------------------------------------------------------

/// A row of `hybrid.workers`.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub pid: Option<i32>,
    pub database: Option<String>,
    pub kind: String,
    pub state: String,
    pub activity: Option<String>,
    pub runs: i64,
    pub errors: i64,
    pub last_error: Option<String>,
    /// `next_run_after > now()`.
    pub backing_off: bool,
    pub has_last_run: bool,
}

/// The rows of `hybrid.workers`.
pub fn workers(c: &mut Client) -> Vec<WorkerRow> {
    c.query(
        "SELECT pid, database::text, kind, state, activity, runs, errors, last_error,
                coalesce(next_run_after > now(), false), last_run IS NOT NULL
           FROM hybrid.workers ORDER BY kind, database",
        &[],
    )
    .expect("read hybrid.workers")
    .iter()
    .map(|r| WorkerRow {
        pid: r.get(0),
        database: r.get(1),
        kind: r.get(2),
        state: r.get(3),
        activity: r.get(4),
        runs: r.get(5),
        errors: r.get(6),
        last_error: r.get(7),
        backing_off: r.get(8),
        has_last_run: r.get(9),
    })
    .collect()
}

/// The `hybrid.workers` row of the database worker of `db`, if there is one.
pub fn db_worker(c: &mut Client, db: &str) -> Option<WorkerRow> {
    workers(c).into_iter().find(|w| w.kind == "database worker" && w.database.as_deref() == Some(db))
}

/// Waits until the database worker of `db` has completed `n` more rounds than `from` (its
/// `runs`), up to `timeout`. Returns the row.
pub fn wait_rounds(cluster: &TestCluster, db: &str, from: i64, n: i64, timeout: Duration) -> WorkerRow {
    let mut last = None;
    let ok = wait_until(timeout, || {
        let mut c = cluster.connect();
        last = db_worker(&mut c, db);
        last.as_ref().is_some_and(|w| w.runs >= from + n)
    });
    assert!(
        ok,
        "the worker of {db} did not complete {n} rounds after {from} within {timeout:?}: {last:?}\n{}",
        cluster.log_tail(30)
    );
    last.unwrap()
}

/// Runs of the worker of `db` so far (0 if it has no row yet).
pub fn runs(c: &mut Client, db: &str) -> i64 {
    db_worker(c, db).map(|w| w.runs).unwrap_or(0)
}

// ---- files -------------------------------------------------------------------------------------

/// `cp -a from to` (keeps owners and modes).
pub fn copy_tree(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp").arg("-a").arg(from).arg(to).output().expect("run cp");
    assert!(
        out.status.success(),
        "cp -a {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Holds a lock on `docs` that keeps restores (which lock the table against writers) waiting,
/// in an open transaction of its own session; searches are not blocked by it.
pub fn hold_table(cluster: &TestCluster) -> Client {
    let mut l = cluster.connect();
    l.batch_execute("BEGIN; LOCK TABLE docs IN ROW EXCLUSIVE MODE").unwrap();
    l
}

/// Waits until a pg_hybrid database worker waits for a lock (it diagnosed the index and is
/// about to restore it).
pub fn wait_worker_waiting_for_lock(cluster: &TestCluster, when: &str) {
    let mut c = cluster.connect();
    let ok = wait_until(Duration::from_secs(30), || {
        count(
            &mut c,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_hybrid worker' AND wait_event_type = 'Lock'",
        ) > 0
    });
    assert!(
        ok,
        "{when}: no pg_hybrid worker came to restore the index (none waits for the table lock)\n{}",
        cluster.log_tail(30)
    );
}
