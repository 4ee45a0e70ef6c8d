//! `kill -9` of the postmaster (invariants 1, 2 and 3): every transaction whose COMMIT returned
//! is searchable after crash recovery, no row of a transaction open at the crash ever is, and
//! the index agrees with the table after VACUUM.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_hybrid_tests::*;

/// Streams single-row autocommit inserts of ids `first..` until the connection fails (the
/// crash) or `stop` is set, recording each id once its COMMIT has returned.
fn stream_inserts(conn: String, first: i64, recorded: Arc<Mutex<Vec<i64>>>, stop: Arc<AtomicBool>) -> Option<String> {
    let mut c = Client::connect(&conn, NoTls).expect("writer connects");
    let insert = c.prepare("INSERT INTO docs (id, title, body, lang) VALUES ($1, $2, $3, 'en')").expect("prepare");
    // Bounded: the test kills the server long before this.
    for id in first..first + 100_000 {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match c.execute(&insert, &[&id, &title_of(id), &body_of(id, 0)]) {
            Ok(_) => recorded.lock().unwrap().push(id),
            Err(e) => return Some(e.to_string()),
        }
    }
    None
}

#[test]
fn committed_rows_survive_kill9_mid_stream() {
    let mut cluster = TestCluster::new("crash_stream");
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=200).collect::<Vec<_>>());
    drop(c);

    let recorded = kill9_during_writes(&mut cluster, stream_inserts, 400);

    let mut c = cluster.connect();
    force_index(&mut c);
    assert_uses_index(&mut c, "SELECT id FROM docs WHERE body @@@ 'tok5'", "docs_search");
    let search = c.prepare("SELECT id FROM docs WHERE body @@@ $1").unwrap();
    let mut missing = Vec::new();
    for &id in &recorded {
        let found: Vec<i64> = c.query(&search, &[&token(id)]).unwrap().iter().map(|r| r.get(0)).collect();
        if found != [id] {
            missing.push((id, found));
        }
    }
    assert!(missing.is_empty(), "rows committed before the crash not found by their token: {missing:?}");

    let in_table = id_set(&mut c, "SELECT id FROM docs");
    let common = count(&mut c, &format!("SELECT count(*) FROM docs WHERE body @@@ '{COMMON_WORD}'"));
    assert!(common >= recorded.len() as i64 + 200);
    // Rows whose COMMIT was in flight at the crash may or may not have committed; either way
    // the index must find exactly the rows the table has.
    assert_every_scan_kind_finds(&mut c, &in_table, " after recovery");

    c.batch_execute("VACUUM docs").unwrap();
    let v = assert_verify_ok(&mut c, "docs_search");
    assert_eq!(v.visible_rows, in_table.len() as i64);

    // The index takes writes again (no lock left behind by the killed backends).
    c.batch_execute(&format!("INSERT INTO docs VALUES (999, 'after', 'aftercrash {COMMON_WORD}', 'en')")).unwrap();
    assert_eq!(search_ids(&mut c, "aftercrash"), [999].into_iter().collect());
    c.batch_execute("VACUUM docs").unwrap();
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn rows_of_transactions_open_at_kill9_never_appear() {
    let mut cluster = TestCluster::new("crash_open_tx");
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=100).collect::<Vec<_>>());

    // A big open transaction whose rows were written to the index early (pending limit) and by
    // a search of its own.
    let mut big = cluster.connect();
    force_index(&mut big);
    big.batch_execute("SET hybrid.pending_limit = '1MB'; BEGIN").unwrap();
    insert_docs(&mut big, &(100_001..=110_000).collect::<Vec<_>>());
    assert_eq!(search_ids(&mut big, "tok100001"), [100_001].into_iter().collect());
    // A small open transaction whose rows are only buffered.
    let mut small = cluster.connect();
    small.batch_execute("BEGIN").unwrap();
    insert_docs(&mut small, &(200_001..=200_050).collect::<Vec<_>>());
    // A committed row after them.
    c.batch_execute(&format!("INSERT INTO docs VALUES (101, 'last', '{}', 'en')", body_of(101, 0))).unwrap();

    let before = index_info(&mut c, "docs_search").documents;
    assert!(before > 101, "test precondition: the open transaction's rows should have index entries ({before})");

    cluster.kill9();
    assert!(big.batch_execute("SELECT 1").is_err());
    assert!(small.batch_execute("SELECT 1").is_err());

    let mut c = cluster.connect();
    force_index(&mut c);
    let expected: BTreeSet<i64> = (1..=101).collect();
    for_each_scan_kind(&mut c, |s, kind| {
        assert_eq!(search_ids(s, COMMON_WORD), expected, "{kind:?}");
        for id in [100_001, 105_555, 110_000, 200_001, 200_050] {
            assert!(search_ids(s, &token(id)).is_empty(), "{kind:?}: row {id} of a transaction open at the crash");
        }
        assert_eq!(count(s, "SELECT count(*) FROM docs WHERE body @@@ 'common'"), 101, "{kind:?}");
    });
    c.batch_execute("VACUUM docs").unwrap();
    let v = assert_verify_ok(&mut c, "docs_search");
    assert_eq!(v.visible_rows, 101);
    assert_eq!(index_info(&mut c, "docs_search").documents, 101, "VACUUM removes entries of the crashed transaction");
    assert_eq!(search_ids(&mut c, COMMON_WORD), expected);
    cluster.assert_no_backend_crash();
}

/// A crash while VACUUM deletes index entries and merges segments: after recovery (and
/// another VACUUM) no entry names a freed tuple id and every live row is found.
#[test]
fn kill9_during_vacuum_loses_nothing() {
    let mut cluster = TestCluster::new("crash_vacuum");
    let mut c = cluster.connect();
    create_docs(&mut c);
    // Many small segments (no merging at commit), so VACUUM has a lot of merging to do.
    c.batch_execute("SET hybrid.inline_merge = off").unwrap();
    for chunk in (1..=15_000i64).collect::<Vec<_>>().chunks(500) {
        insert_docs(&mut c, chunk);
    }
    c.batch_execute("DELETE FROM docs WHERE id % 3 = 0").unwrap();
    let segments_before = index_info(&mut c, "docs_search").segments;

    // First crash while VACUUM deletes entries, then (a second VACUUM) while it merges.
    let mut c = c;
    for target in ["vacuuming indexes", "cleaning up indexes"] {
        let conn = cluster.conn_str(TEST_DB);
        let vacuum = std::thread::spawn(move || {
            let mut v = Client::connect(&conn, NoTls).expect("connect");
            let started = Instant::now();
            let r = v.batch_execute("VACUUM docs");
            (r.is_ok(), started.elapsed())
        });
        let mut watcher = cluster.connect();
        let mut phase = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !vacuum.is_finished() {
            let rows = watcher.query("SELECT phase FROM pg_stat_progress_vacuum", &[]).unwrap();
            if let Some(r) = rows.first() {
                phase = r.get(0);
                if phase == target {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        cluster.kill9();
        let (finished, took) = vacuum.join().unwrap();
        eprintln!(
            "{segments_before} segments; aimed at {target:?}, killed in phase {phase:?}; VACUUM {} after {took:?}",
            if finished { "had finished" } else { "was killed" }
        );

        c = cluster.connect();
        force_index(&mut c);
        let live = id_set(&mut c, "SELECT id FROM docs");
        assert_eq!(live.len(), 10_000);
        assert_eq!(search_ids(&mut c, COMMON_WORD), live, "after a crash in {phase:?}");
        let v = verify(&mut c, "docs_search");
        assert_eq!((v.missing, v.gone), (0, 0), "after a crash in {phase:?}: {v:?}");
    }
    let live = id_set(&mut c, "SELECT id FROM docs");
    c.batch_execute("VACUUM docs").unwrap();
    assert_verify_ok(&mut c, "docs_search");
    assert_eq!(index_info(&mut c, "docs_search").documents, 10_000);
    assert_eq!(search_ids(&mut c, COMMON_WORD), live);
    assert!(search_ids(&mut c, "tok3").is_empty());
    assert_eq!(search_ids(&mut c, "tok4"), [4].into_iter().collect());
    cluster.assert_no_backend_crash();
}
