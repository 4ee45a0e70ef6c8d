//! The pending log through SQL (see `text::pending`, `am::log_pages`): single-row commits are
//! appended to the index's log (in the index relation's pages) instead of becoming segments, are found at once by other sessions and every scan
//! kind with the scores a segment would give them, are counted, are deleted by VACUUM, are
//! drained into segments by committers, `force_merge` and snapshots, and survive `kill -9`.

mod snaputil;

use std::collections::BTreeSet;

use pg_hybrid_tests::*;
use snaputil::{restore, snapshot_now, snapshot_rows};

/// Workers sleep for the whole test (after their first round), so only the statements of the
/// test drain the log.
fn quiet_cluster(name: &str) -> TestCluster {
    TestCluster::with_settings(name, &["hybrid.worker_naptime = 86400"])
}

fn insert_one_by_one(c: &mut Client, ids: std::ops::RangeInclusive<i64>) {
    let insert = c.prepare("INSERT INTO docs (id, title, body, lang) VALUES ($1, $2, $3, 'en')").unwrap();
    for id in ids {
        c.execute(&insert, &[&id, &title_of(id), &body_of(id, 0)]).unwrap();
    }
}

/// Bytes of the index relation: its metapage and the pages of its pending log.
fn log_bytes(c: &mut Client, index: &str) -> i64 {
    c.query_one("SELECT pg_relation_size($1::text::regclass)", &[&index]).unwrap().get(0)
}

/// The top 20 of a ranked search: (id, score).
fn ranked(c: &mut Client, query: &str) -> Vec<(i64, f32)> {
    c.query(
        "SELECT id, hybrid.score(id) FROM docs WHERE body @@@ $1 ORDER BY hybrid.score(id) DESC, id LIMIT 20",
        &[&query],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn single_row_commits_are_appended_to_the_log_and_found_at_once() {
    let cluster = quiet_cluster("log_found");
    let mut a = cluster.connect();
    let mut b = cluster.connect();
    create_docs(&mut a);
    insert_docs(&mut a, &(1..=200).collect::<Vec<_>>());
    let before = index_info(&mut a, "docs_search");
    let log_before = log_bytes(&mut a, "docs_search");
    force_index(&mut b);

    let insert = a.prepare("INSERT INTO docs (id, title, body, lang) VALUES ($1, $2, $3, 'en')").unwrap();
    for id in 1001..=1120 {
        a.execute(&insert, &[&id, &title_of(id), &body_of(id, 0)]).unwrap();
        assert_eq!(search_ids(&mut b, &token(id)), BTreeSet::from([id]), "row {id} committed by A, searched by B");
    }
    let after = index_info(&mut a, "docs_search");
    assert_eq!(after.segments, before.segments, "single-row commits wrote segments instead of the log");
    assert_eq!(after.documents, before.documents + 120, "rows in the log are counted");
    assert!(log_bytes(&mut a, "docs_search") > log_before, "nothing was appended to the pending log");

    let in_table = id_set(&mut b, "SELECT id FROM docs");
    assert_every_scan_kind_finds(&mut b, &in_table, "");
    // Scores of rows in the log are those they get once in a segment: the statistics are the
    // index's.
    let query = format!("{} OR {}", ORACLE_WORDS[0], ORACLE_WORDS[1]);
    let from_log = ranked(&mut b, &query);
    assert!(from_log.iter().any(|(id, _)| *id > 1000), "the ranked search has no row of the log: {from_log:?}");
    assert!(a.query_one("SELECT hybrid.force_merge('docs_search')", &[]).unwrap().get::<_, bool>(0));
    let merged = index_info(&mut a, "docs_search");
    assert_eq!(merged.segments, 1);
    assert_eq!(merged.documents, after.documents);
    let from_segment = ranked(&mut b, &query);
    assert_eq!(from_log.len(), from_segment.len());
    for (x, y) in from_log.iter().zip(&from_segment) {
        assert_eq!(x.0, y.0, "ranking changed once drained: {from_log:?} vs {from_segment:?}");
        assert!((x.1 - y.1).abs() < 1e-4, "score changed once drained: {from_log:?} vs {from_segment:?}");
    }
    assert_verify_ok(&mut a, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn vacuum_deletes_entries_still_in_the_log() {
    let cluster = quiet_cluster("log_vacuum");
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=200).collect::<Vec<_>>());
    insert_one_by_one(&mut c, 1001..=1060);
    // Updates too: each is a new row version in the log, and a dead one for VACUUM.
    for id in 1001i64..=1010 {
        c.execute("UPDATE docs SET body = $2 WHERE id = $1", &[&id, &format!("rewritten{id} {COMMON_WORD}")]).unwrap();
    }
    c.batch_execute("DELETE FROM docs WHERE id BETWEEN 1031 AND 1060 OR id <= 10").unwrap();
    c.batch_execute("VACUUM docs").unwrap();
    let rows = count(&mut c, "SELECT count(*) FROM docs");
    let info = index_info(&mut c, "docs_search");
    assert_eq!(info.documents, rows, "VACUUM left entries of dead rows: {info:?}");
    let v = assert_verify_ok(&mut c, "docs_search");
    assert_eq!(v.visible_rows, rows);
    let in_table = id_set(&mut c, "SELECT id FROM docs");
    assert_every_scan_kind_finds(&mut c, &in_table, " after VACUUM");
    // The updated rows are found by their new text only.
    force_index(&mut c);
    assert_eq!(search_ids(&mut c, "rewritten1005"), BTreeSet::from([1005]));
    assert!(search_ids(&mut c, &token(1005)).is_empty(), "the old version of row 1005 is still found");
    cluster.assert_no_backend_crash();
}

#[test]
fn committers_drain_a_long_log_into_segments() {
    let cluster = quiet_cluster("log_drain");
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=100).collect::<Vec<_>>());
    let before = index_info(&mut c, "docs_search");
    c.batch_execute("SET hybrid.log_drain_size = '16kB'").unwrap();
    insert_one_by_one(&mut c, 1001..=1400);
    let after = index_info(&mut c, "docs_search");
    assert!(after.segments > before.segments, "the log was never drained: {before:?} -> {after:?}");
    assert!(after.generation > before.generation + 1);
    assert_eq!(after.documents, 500);
    let in_table = id_set(&mut c, "SELECT id FROM docs");
    assert_every_scan_kind_finds(&mut c, &in_table, "");
    // Off: every transaction writes a segment of its own again.
    c.batch_execute("SET hybrid.log_max_rows = 0").unwrap();
    let before = index_info(&mut c, "docs_search");
    insert_one_by_one(&mut c, 2001..=2003);
    let after = index_info(&mut c, "docs_search");
    assert_eq!(after.generation, before.generation + 3, "{before:?} -> {after:?}");
    assert_verify_ok(&mut c, "docs_search");
}

#[test]
fn a_full_log_is_drained_by_its_appender_and_its_pages_reused() {
    let mut cluster = quiet_cluster("log_ring");
    let mut c = cluster.connect();
    let mut reader = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=100).collect::<Vec<_>>());
    force_index(&mut reader);
    let before = index_info(&mut c, "docs_search");
    // Committers never drain: only a full log makes room for itself.
    c.batch_execute("SET hybrid.log_drain_size = '1GB'").unwrap();
    // ~4 kB records: 5,000 of them pass through the 4 MB of log pages five times; each drain
    // leaves the start of the log somewhere inside a page.
    let insert = c
        .prepare("INSERT INTO docs (id, title, body, lang) VALUES ($1, $2, $3 || repeat(' filler', 600), 'en')")
        .unwrap();
    for id in 1001..=6000i64 {
        c.execute(&insert, &[&id, &title_of(id), &body_of(id, 0)]).unwrap();
        if id % 250 == 0 {
            assert_eq!(
                search_ids(&mut reader, &token(id)),
                BTreeSet::from([id]),
                "row {id} not found by another session"
            );
        }
    }
    let after = index_info(&mut c, "docs_search");
    assert_eq!(after.documents, 5100);
    assert!(after.segments > before.segments, "a full log was never drained: {before:?} -> {after:?}");
    let max_bytes = (1 + 512) * 8192;
    let bytes = log_bytes(&mut c, "docs_search");
    assert!(bytes <= max_bytes, "the log's pages were not reused: {bytes} bytes");
    let in_table = id_set(&mut c, "SELECT id FROM docs");
    assert_every_scan_kind_finds(&mut reader, &in_table, "");
    // Crash recovery replays the log's pages, wrapped around as they are.
    drop((c, reader));
    cluster.kill9();
    let mut c = cluster.connect();
    force_index(&mut c);
    assert_every_scan_kind_finds(&mut c, &in_table, " after kill -9");
    assert_eq!(index_info(&mut c, "docs_search").documents, 5100);
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn a_snapshot_includes_rows_still_in_the_log() {
    let cluster = quiet_cluster("log_snapshot");
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=200).collect::<Vec<_>>());
    insert_one_by_one(&mut c, 1001..=1040);
    let before = index_info(&mut c, "docs_search");
    snapshot_now(&mut c, "docs_search").unwrap();
    let after = index_info(&mut c, "docs_search");
    assert_eq!(after.segments, before.segments + 1, "the snapshot did not drain the log first");
    let snap = snapshot_rows(&mut c, "docs_search").pop().expect("a snapshot");
    assert_eq!(snap.generation, after.generation, "the snapshot is not of the drained generation");
    // Restoring it needs no catch-up: the snapshot holds every row.
    let r = restore(&mut c, "docs_search").unwrap();
    assert_eq!((r.rows_kept, r.rows_added, r.entries_removed), (240, 0, 0), "{r:?}");
    assert_eq!(search_ids(&mut c, &token(1040)), BTreeSet::from([1040]));
    // Writes go on after the restore (the restored folder starts a new log).
    insert_one_by_one(&mut c, 1041..=1045);
    assert_eq!(search_ids(&mut c, &token(1045)), BTreeSet::from([1045]));
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn rows_in_the_log_survive_kill9() {
    let mut cluster = quiet_cluster("log_kill9");
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=100).collect::<Vec<_>>());
    insert_one_by_one(&mut c, 1001..=1050);
    drop(c);
    cluster.kill9();
    let mut c = cluster.connect();
    force_index(&mut c);
    for id in [1001, 1025, 1050] {
        assert_eq!(search_ids(&mut c, &token(id)), BTreeSet::from([id]), "row {id} lost by kill -9");
    }
    let in_table = id_set(&mut c, "SELECT id FROM docs");
    assert_eq!(in_table.len(), 150);
    assert_every_scan_kind_finds(&mut c, &in_table, " after recovery");
    assert_eq!(index_info(&mut c, "docs_search").documents, 150);
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn an_entry_never_outlives_the_wal_of_its_row() {
    // The walwriter stays away, so a row's WAL is written only when someone flushes it.
    let mut cluster =
        TestCluster::with_settings("log_wal_order", &["hybrid.worker_naptime = 86400", "wal_writer_delay = 10000"]);
    let mut c = cluster.connect();
    c.batch_execute(
        "CREATE TABLE ghosts (id bigint PRIMARY KEY, body text);
         CREATE INDEX ghosts_search ON ghosts USING hybrid (id, body) WITH (key_field = 'id');",
    )
    .unwrap();
    // An open transaction writes its entry (a search in it reads its own writes), then the
    // server dies before the transaction commits.
    c.batch_execute("BEGIN; INSERT INTO ghosts VALUES (1, 'ghostword');").unwrap();
    let own = c.query("SELECT id FROM ghosts WHERE body @@@ 'ghostword'", &[]).unwrap();
    assert_eq!(own.len(), 1, "the transaction does not see its own row");
    drop(c);
    cluster.kill9();
    // After recovery the row's tuple id is free again unless its WAL was written; the next
    // row takes the first free one. The entry of the dead row must not make it match.
    let mut c = cluster.connect();
    c.batch_execute("INSERT INTO ghosts VALUES (2, 'livingword')").unwrap();
    let tids: Vec<String> = c.query("SELECT ctid::text FROM ghosts", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    eprintln!("row 2 is at {tids:?}");
    for sql in ["SET enable_seqscan = off", "SET enable_bitmapscan = on"] {
        c.batch_execute(sql).unwrap();
        let found = id_set(&mut c, "SELECT id FROM ghosts WHERE body @@@ 'ghostword'");
        assert!(found.is_empty(), "a row that never committed made row(s) {found:?} match its text");
    }
    let ranked =
        id_set(&mut c, "SELECT id FROM ghosts WHERE body @@@ 'ghostword' ORDER BY hybrid.score(id) DESC LIMIT 5");
    assert!(ranked.is_empty(), "the ranked search returned {ranked:?} for the text of a row that never committed");
    c.batch_execute("VACUUM ghosts").unwrap();
    assert_verify_ok(&mut c, "ghosts_search");
    cluster.assert_no_backend_crash();
}
