//! Many sessions at once: concurrent single-row writers lose nothing and keep the number of
//! segments bounded; a mixed INSERT/UPDATE/DELETE workload with concurrent VACUUM and readers
//! never deadlocks, and every snapshot's search results equal what a plain regex over the table
//! says (invariants 1 and 2 under concurrency).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_hybrid_tests::*;

const WRITERS: i64 = 8;
const ROWS_PER_WRITER: i64 = 2_000;

#[test]
fn eight_sessions_of_single_row_inserts_are_all_searchable() {
    let cluster = TestCluster::new("concurrent_inserts");
    let mut c = cluster.connect();
    create_docs(&mut c);

    let done = Arc::new(AtomicBool::new(false));
    let max_segments = Arc::new(AtomicI32::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    std::thread::scope(|s| {
        // Watches the number of segments while the writers run.
        let (done2, max2) = (done.clone(), max_segments.clone());
        let monitor_conn = cluster.conn_str(TEST_DB);
        s.spawn(move || {
            let mut m = Client::connect(&monitor_conn, NoTls).expect("monitor connects");
            while !done2.load(Ordering::SeqCst) {
                let segs = index_info(&mut m, "docs_search").segments;
                max2.fetch_max(segs, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let conn = cluster.conn_str(TEST_DB);
                let errors = errors.clone();
                s.spawn(move || {
                    let mut c = Client::connect(&conn, NoTls).expect("writer connects");
                    let insert =
                        c.prepare("INSERT INTO docs (id, title, body, lang) VALUES ($1, $2, $3, 'en')").unwrap();
                    for i in 0..ROWS_PER_WRITER {
                        let id = w * 100_000 + i;
                        if let Err(e) = c.execute(&insert, &[&id, &title_of(id), &body_of(id, 0)]) {
                            errors.lock().unwrap().push(format!("writer {w}, id {id}: {e}"));
                            return;
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer thread");
        }
        done.store(true, Ordering::SeqCst);
    });
    let took = started.elapsed();
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "writers failed: {errors:?}");
    let total = WRITERS * ROWS_PER_WRITER;
    eprintln!(
        "{total} single-row commits from {WRITERS} sessions in {took:?} ({:.0}/s); max segments seen {}",
        total as f64 / took.as_secs_f64(),
        max_segments.load(Ordering::SeqCst)
    );

    force_index(&mut c);
    for_each_scan_kind(&mut c, |s, kind| {
        assert_eq!(count(s, "SELECT count(*) FROM docs WHERE body @@@ 'common'"), total, "{kind:?}");
    });
    let search = c.prepare("SELECT id FROM docs WHERE body @@@ $1").unwrap();
    for w in 0..WRITERS {
        for i in (0..ROWS_PER_WRITER).step_by(97).chain([ROWS_PER_WRITER - 1]) {
            let id = w * 100_000 + i;
            let found: Vec<i64> = c.query(&search, &[&token(id)]).unwrap().iter().map(|r| r.get(0)).collect();
            assert_eq!(found, vec![id], "row {id} by its token");
        }
    }
    // Every oracle word agrees with a regex over the table.
    for word in ORACLE_WORDS {
        let by_index = search_ids(&mut c, word);
        let by_regex = id_set(&mut c, &format!("SELECT id FROM docs WHERE body ~ '\\m{word}\\M'"));
        assert!(!by_regex.is_empty());
        assert_eq!(by_index, by_regex, "search for {word}");
    }
    let v = assert_verify_ok(&mut c, "docs_search");
    assert_eq!(v.visible_rows, total);
    // Merging keeps up with the stream: how far it falls behind at a moment depends on the
    // disk (one slow fsync lets a few hundred commits pile up), so that is only reported; once
    // the commits stop, the committers' merges and the worker's next round bring the index
    // down to what the tiered policy leaves.
    let bound = settled_segment_bound(total, 8);
    let mut info = index_info(&mut c, "docs_search");
    let settled = wait_until(Duration::from_secs(60), || {
        info = index_info(&mut c, "docs_search");
        info.segments as usize <= bound
    });
    assert!(
        settled,
        "segments not kept down by merging: {} a minute after the last commit, more than the policy's {bound} \
         ({} at most while writing; {info:?})",
        info.segments,
        max_segments.load(Ordering::SeqCst)
    );
    assert!(
        (max_segments.load(Ordering::SeqCst) as i64) < total / 4,
        "merging fell far behind the commits: {} segments seen for {total} rows",
        max_segments.load(Ordering::SeqCst)
    );
    assert_eq!(info.documents, total);
    cluster.assert_no_backend_crash();
}

/// What one worker of the mixed workload does, chosen at random per transaction.
fn mixed_worker(conn: String, seed: u64, ops: usize, errors: Arc<Mutex<Vec<String>>>) {
    let mut c = Client::connect(&conn, NoTls).expect("worker connects");
    c.batch_execute("SET enable_seqscan = off").unwrap();
    let mut rng = Rng::new(seed);
    let body = |rng: &mut Rng, id: i64| format!("{} {} {}", words(rng, 8), token(id), COMMON_WORD);
    for op in 0..ops {
        let a = 1 + rng.below(200) as i64;
        let b = 1 + rng.below(200) as i64;
        let (lo, hi) = (a.min(b), a.max(b));
        let kind = rng.below(10);
        let result = (|| -> Result<(), postgres::Error> {
            match kind {
                // Upsert one row.
                0..=2 => {
                    let t = body(&mut rng, a);
                    c.execute(
                        "INSERT INTO docs (id, title, body, lang) VALUES ($1, 'mixed', $2, 'en')
                         ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
                        &[&a, &t],
                    )?;
                }
                // Update one row's text.
                3..=4 => {
                    let t = body(&mut rng, a);
                    c.execute("UPDATE docs SET body = $2 WHERE id = $1", &[&a, &t])?;
                }
                // Delete one row.
                5 => {
                    c.execute("DELETE FROM docs WHERE id = $1", &[&a])?;
                }
                // Two rows in one transaction (locked in id order: no true deadlock possible),
                // with a search of its own in between.
                6..=7 => {
                    let mut tx = c.transaction()?;
                    let t1 = body(&mut rng, lo);
                    tx.execute(
                        "INSERT INTO docs (id, title, body, lang) VALUES ($1, 'pair', $2, 'en')
                         ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
                        &[&lo, &t1],
                    )?;
                    let found: Vec<i64> = tx
                        .query("SELECT id FROM docs WHERE body @@@ $1", &[&token(lo)])?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    if found != [lo] {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("own write of {lo} not visible to its transaction: {found:?}"));
                    }
                    if hi != lo {
                        tx.execute("DELETE FROM docs WHERE id = $1", &[&hi])?;
                    }
                    tx.commit()?;
                }
                // A transaction that rolls back.
                8 => {
                    let mut tx = c.transaction()?;
                    let t = format!("{} rolledback {}", body(&mut rng, a), COMMON_WORD);
                    tx.execute("UPDATE docs SET body = $2 WHERE id = $1", &[&a, &t])?;
                    tx.execute(
                        "INSERT INTO docs (id, title, body, lang) VALUES ($1, 'gone', 'rolledback', 'en') ON CONFLICT DO NOTHING",
                        &[&(1_000 + b)],
                    )?;
                    tx.rollback()?;
                }
                // HOT update of an unindexed column.
                _ => {
                    c.execute("UPDATE docs SET lang = $2 WHERE id = $1", &[&a, &format!("l{op}")])?;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            errors.lock().unwrap().push(format!("op {op} (kind {kind}): {e}"));
            return;
        }
    }
}

/// In one snapshot, the index's answer for each oracle word must equal a regex over the table,
/// and every returned row must contain the word.
fn check_snapshot(c: &mut Client) -> Result<(), String> {
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .map_err(|e| e.to_string())?;
    for word in ORACLE_WORDS.iter().take(4) {
        let by_index: BTreeSet<i64> = tx
            .query("SELECT id FROM docs WHERE body @@@ $1", &[word])
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let by_regex: BTreeSet<i64> = tx
            .query(&format!("SELECT id FROM docs WHERE body ~ '\\m{word}\\M'"), &[])
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if by_index != by_regex {
            return Err(format!(
                "{word}: index only {:?}, regex only {:?}",
                by_index.difference(&by_regex).collect::<Vec<_>>(),
                by_regex.difference(&by_index).collect::<Vec<_>>()
            ));
        }
    }
    let rolled_back: i64 =
        tx.query_one("SELECT count(*) FROM docs WHERE body @@@ 'rolledback'", &[]).map_err(|e| e.to_string())?.get(0);
    if rolled_back != 0 {
        return Err(format!("{rolled_back} rows of rolled-back transactions returned"));
    }
    tx.commit().map_err(|e| e.to_string())
}

#[test]
fn mixed_concurrent_workload_has_no_deadlocks_and_no_lost_rows() {
    let cluster = TestCluster::new("mixed");
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=100).collect::<Vec<_>>());

    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let snapshots_checked = Arc::new(AtomicI32::new(0));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|w| {
                let (conn, errors) = (cluster.conn_str(TEST_DB), errors.clone());
                s.spawn(move || mixed_worker(conn, 1000 + w, 250, errors))
            })
            .collect();
        // Readers comparing the index with the table in consistent snapshots.
        for _ in 0..2 {
            let (conn, errors, done, checked) =
                (cluster.conn_str(TEST_DB), errors.clone(), done.clone(), snapshots_checked.clone());
            s.spawn(move || {
                let mut r = Client::connect(&conn, NoTls).expect("reader connects");
                r.batch_execute("SET enable_seqscan = off").unwrap();
                while !done.load(Ordering::SeqCst) {
                    if let Err(e) = check_snapshot(&mut r) {
                        errors.lock().unwrap().push(format!("reader: {e}"));
                        return;
                    }
                    checked.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // VACUUM now and then, deleting entries while writers and readers run.
        let (conn, errors, done2) = (cluster.conn_str(TEST_DB), errors.clone(), done.clone());
        s.spawn(move || {
            let mut v = Client::connect(&conn, NoTls).expect("vacuum connects");
            while !done2.load(Ordering::SeqCst) {
                if let Err(e) = v.batch_execute("VACUUM docs") {
                    errors.lock().unwrap().push(format!("vacuum: {e}"));
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        for w in workers {
            w.join().expect("worker thread");
        }
        done.store(true, Ordering::SeqCst);
    });
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "errors in the mixed workload: {errors:#?}");
    assert!(snapshots_checked.load(Ordering::SeqCst) > 0, "readers checked no snapshot");

    force_index(&mut c);
    let check_final = |c: &mut Client| {
        for word in ORACLE_WORDS {
            let by_index = search_ids(c, word);
            let by_regex = id_set(c, &format!("SELECT id FROM docs WHERE body ~ '\\m{word}\\M'"));
            assert_eq!(by_index, by_regex, "final search for {word}");
        }
        let table = id_set(c, "SELECT id FROM docs");
        assert_eq!(search_ids(c, COMMON_WORD), table, "every row is found by the word all rows have");
        for id in table.iter().take(30) {
            assert_eq!(search_ids(c, &token(*id)), [*id].into_iter().collect(), "row {id} by its token");
        }
        assert!(search_ids(c, "rolledback").is_empty());
        let v = verify(c, "docs_search");
        assert_eq!((v.missing, v.gone), (0, 0), "{v:?}");
    };
    check_final(&mut c);
    c.batch_execute("VACUUM docs").unwrap();
    check_final(&mut c);
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

/// CREATE INDEX CONCURRENTLY and REINDEX CONCURRENTLY while sessions keep inserting: rows
/// committed during the build's phases must all be in the finished index.
#[test]
fn concurrent_builds_under_writes_miss_no_row() {
    let cluster = TestCluster::new("cic");
    let mut c = cluster.connect();
    c.batch_execute(DOCS_TABLE).unwrap();
    insert_docs(&mut c, &(1..=3_000).collect::<Vec<_>>());

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    std::thread::scope(|s| {
        for w in 0..2i64 {
            let (conn, stop, errors) = (cluster.conn_str(TEST_DB), stop.clone(), errors.clone());
            s.spawn(move || {
                let mut c = Client::connect(&conn, NoTls).expect("writer connects");
                // Bounded: stopped by the main thread long before this.
                for i in 0..20_000i64 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let id = 100_000 * (w + 1) + i;
                    let r =
                        c.execute("INSERT INTO docs VALUES ($1, $2, $3, 'en')", &[&id, &title_of(id), &body_of(id, 0)]);
                    let r = r.and_then(|_| {
                        c.execute(
                            "UPDATE docs SET body = $2 WHERE id = $1",
                            &[&(i % 3000 + 1), &body_of(i % 3000 + 1, id as u64)],
                        )
                    });
                    if let Err(e) = r {
                        errors.lock().unwrap().push(format!("writer {w}: {e}"));
                        return;
                    }
                }
            });
        }
        let result = (|| -> Result<(), postgres::Error> {
            std::thread::sleep(Duration::from_millis(300));
            c.batch_execute(
                "CREATE INDEX CONCURRENTLY docs_search ON docs USING hybrid (id, title, body) WITH (key_field = 'id')",
            )?;
            std::thread::sleep(Duration::from_millis(300));
            c.batch_execute("REINDEX INDEX CONCURRENTLY docs_search")?;
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        })();
        stop.store(true, Ordering::SeqCst);
        result.expect("concurrent build");
    });
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "writers failed: {errors:?}");

    force_index(&mut c);
    let table = id_set(&mut c, "SELECT id FROM docs");
    assert!(table.len() > 3_000, "writers inserted nothing during the builds");
    for_each_scan_kind(&mut c, |s, kind| {
        assert_eq!(search_ids(s, COMMON_WORD), table, "{kind:?}: every row, including those written during the builds");
        for word in ORACLE_WORDS.iter().take(3) {
            let by_regex = id_set(s, &format!("SELECT id FROM docs WHERE body ~ '\\m{word}\\M'"));
            assert_eq!(search_ids(s, word), by_regex, "{kind:?}: {word}");
        }
    });
    assert_verify_ok(&mut c, "docs_search");
    assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 1);
    cluster.assert_no_backend_crash();
}
