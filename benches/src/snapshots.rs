//! Snapshots and restores of an index of a real corpus: throughput, and what an incremental
//! snapshot sends after a 1% update (content-addressed files: only new segments travel).
//!
//! The anchor is what a user without snapshots does after losing an index folder: REINDEX,
//! timed on the same index in the same cluster.

use std::time::Instant;

use pg_hybrid_tests::{Client, TestCluster};
use serde::Serialize;

use crate::fulltext::{load, timed, Doc};

/// One snapshot, as `hybrid.snapshots` reports it, with the time `snapshot_now` took.
#[derive(Debug, Serialize)]
pub struct Snap {
    pub generation: i64,
    pub files: i32,
    pub bytes_total: i64,
    pub files_uploaded: i32,
    pub bytes_uploaded: i64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub corpus: String,
    pub store: String,
    pub rows: usize,
    pub index_bytes: i64,
    pub first: Snap,
    pub rows_updated: i64,
    pub after_update: Snap,
    pub restore_seconds: f64,
    pub restore_bytes: i64,
    pub restore_rows_kept: i64,
    pub restore_rows_added: i64,
    pub reindex_seconds: f64,
}

fn snapshot(c: &mut Client) -> Snap {
    let t = Instant::now();
    let generation: i64 = c.query_one("SELECT hybrid.snapshot_now('docs_search')", &[]).unwrap().get(0);
    let seconds = t.elapsed().as_secs_f64();
    let row = c
        .query_one(
            "SELECT files, bytes_total, files_uploaded, bytes_uploaded FROM hybrid.snapshots
              WHERE index = 'docs_search'::regclass ORDER BY sequence DESC LIMIT 1",
            &[],
        )
        .unwrap();
    Snap {
        generation,
        files: row.get(0),
        bytes_total: row.get(1),
        files_uploaded: row.get(2),
        bytes_uploaded: row.get(3),
        seconds,
    }
}

/// Runs the snapshot benchmark against the store kind `store`: `file` (a folder on the local
/// disk, the default store) or `s3` (moto_server started on loopback, the S3 API over HTTP).
pub fn run_on(corpus: &str, docs: &[Doc], store: &str) -> Report {
    match store {
        "file" => run(corpus, docs, "file:// (local disk)", &[]),
        "s3" => {
            let moto = pg_hybrid_tests::s3::MotoServer::start("bench-snapshots");
            run(corpus, docs, "s3:// (moto_server on loopback)", &moto.settings("bench"))
        }
        other => {
            eprintln!("unknown --store {other}: file or s3");
            std::process::exit(2);
        }
    }
}

/// Runs the snapshot benchmark with the store at `url` (extra settings: how to reach it).
pub fn run(corpus: &str, docs: &[Doc], store: &str, settings: &[String]) -> Report {
    let mut conf: Vec<&str> = vec![
        "shared_buffers = 1GB",
        "maintenance_work_mem = 1GB",
        "max_wal_size = 8GB",
        "hybrid.snapshot_interval = 0",
        "jit = off",
    ];
    conf.extend(settings.iter().map(String::as_str));
    let cluster = TestCluster::with_settings("bench_snap", &conf);
    let mut c = cluster.connect();
    load(&mut c, docs);
    c.batch_execute("CREATE INDEX docs_search ON docs USING hybrid (id, title, body) WITH (key_field = 'id')").unwrap();
    let index_bytes: i64 = c.query_one("SELECT bytes FROM hybrid.index_info('docs_search')", &[]).unwrap().get(0);
    let first = snapshot(&mut c);

    // 1% of the rows change, in one transaction, and VACUUM removes their old versions.
    let every = 100;
    let rows_updated =
        c.execute(&format!("UPDATE docs SET body = body || ' (revised)' WHERE id % {every} = 0"), &[]).unwrap() as i64;
    c.batch_execute("VACUUM docs").unwrap();
    let after_update = snapshot(&mut c);

    let dir: String = c.query_one("SELECT directory FROM hybrid.index_info('docs_search')", &[]).unwrap().get(0);
    std::fs::remove_dir_all(&dir).expect("remove the index folder");
    let t = Instant::now();
    let row =
        c.query_one("SELECT bytes_downloaded, rows_kept, rows_added FROM hybrid.restore('docs_search')", &[]).unwrap();
    let restore_seconds = t.elapsed().as_secs_f64();
    let (_, reindex_seconds) = timed(|| c.batch_execute("REINDEX INDEX docs_search").unwrap());
    Report {
        corpus: corpus.to_string(),
        store: store.to_string(),
        rows: docs.len(),
        index_bytes,
        first,
        rows_updated,
        after_update,
        restore_seconds,
        restore_bytes: row.get(0),
        restore_rows_kept: row.get(1),
        restore_rows_added: row.get(2),
        reindex_seconds,
    }
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1e6
}

/// Prints a report.
pub fn print(r: &Report) {
    println!("corpus {}: {} rows, index {:.1} MB, store {}", r.corpus, r.rows, mb(r.index_bytes), r.store);
    let s = &r.first;
    println!(
        "first snapshot: {} files, {:.1} MB sent in {:.2} s = {:.1} MB/s",
        s.files,
        mb(s.bytes_uploaded),
        s.seconds,
        mb(s.bytes_uploaded) / s.seconds
    );
    let u = &r.after_update;
    println!(
        "after updating {} rows (1%) + VACUUM: {} of {} files, {:.2} of {:.1} MB sent ({:.1}% of the index) in {:.2} s",
        r.rows_updated,
        u.files_uploaded,
        u.files,
        mb(u.bytes_uploaded),
        mb(u.bytes_total),
        100.0 * u.bytes_uploaded as f64 / u.bytes_total.max(1) as f64,
        u.seconds
    );
    println!(
        "restore after losing the folder: {:.1} MB in {:.2} s = {:.1} MB/s (download, hash check, catch-up: {} rows kept, {} indexed again)",
        mb(r.restore_bytes),
        r.restore_seconds,
        mb(r.restore_bytes) / r.restore_seconds,
        r.restore_rows_kept,
        r.restore_rows_added
    );
    println!(
        "anchor: REINDEX {:.2} s | restore/REINDEX time {:.2}x",
        r.reindex_seconds,
        r.restore_seconds / r.reindex_seconds
    );
}
