//! Commit, abort, savepoints, read-your-own-writes, UPDATE/DELETE and big transactions
//! (invariants 1, 2 and 4).
//!
//! Several tests first make sure the index really holds entries for the rows that must stay
//! hidden (a search inside the writing transaction publishes them, or the transaction outgrows
//! `hybrid.pending_limit`), so they prove that visibility is decided by the heap, not merely
//! that nothing was written.

use std::collections::BTreeSet;

use pg_hybrid_tests::*;

fn ids(r: std::ops::RangeInclusive<i64>) -> Vec<i64> {
    r.collect()
}

fn set(r: std::ops::RangeInclusive<i64>) -> BTreeSet<i64> {
    r.collect()
}

fn setup(name: &str) -> (TestCluster, Client) {
    let cluster = TestCluster::new(name);
    let mut c = cluster.connect();
    create_docs(&mut c);
    force_index(&mut c);
    (cluster, c)
}

#[test]
fn aborted_transactions_rows_are_never_returned() {
    let (cluster, mut c) = setup("abort");
    insert_docs(&mut c, &ids(1..=50));

    // Aborted after a search in the transaction published its rows to the index.
    c.batch_execute("BEGIN").unwrap();
    insert_docs(&mut c, &ids(51..=100));
    assert_eq!(search_ids(&mut c, "common"), set(1..=100), "a transaction sees its own rows");
    c.batch_execute("ROLLBACK").unwrap();

    // Aborted with its rows only buffered.
    c.batch_execute("BEGIN").unwrap();
    insert_docs(&mut c, &ids(101..=150));
    c.batch_execute("ROLLBACK").unwrap();

    // Aborted by an error after its rows were inserted.
    c.batch_execute("BEGIN").unwrap();
    insert_docs(&mut c, &ids(151..=160));
    assert_eq!(sqlstate(c.batch_execute("SELECT 1/0")), "22012");
    c.batch_execute("ROLLBACK").unwrap();

    assert!(
        index_info(&mut c, "docs_search").documents >= 100,
        "the rows of the first aborted transaction should have index entries (published by its search)"
    );

    let mut other = cluster.connect();
    force_index(&mut other);
    for s in [&mut c, &mut other] {
        for_each_scan_kind(s, |s, kind| {
            assert_eq!(search_ids(s, "common"), set(1..=50), "{kind:?}: only committed rows");
            for id in [51, 75, 100, 101, 150, 155] {
                assert!(search_ids(s, &token(id)).is_empty(), "{kind:?}: aborted row {id} returned");
            }
            assert_eq!(search_ids(s, &token(7)), set(7..=7));
            assert_eq!(count(s, "SELECT count(*) FROM docs WHERE body @@@ 'common'"), 50);
        });
    }

    c.batch_execute("VACUUM docs").unwrap();
    assert_eq!(search_ids(&mut c, "common"), set(1..=50));
    let v = assert_verify_ok(&mut c, "docs_search");
    assert_eq!(v.visible_rows, 50);
    assert_eq!(index_info(&mut c, "docs_search").documents, 50, "VACUUM removes entries of aborted rows");
    cluster.assert_no_backend_crash();
}

#[test]
fn rolled_back_savepoints_rows_are_never_returned() {
    let (cluster, mut c) = setup("savepoint");
    c.batch_execute("BEGIN").unwrap();
    insert_docs(&mut c, &ids(1..=10)); // A: kept
    c.batch_execute("SAVEPOINT s1").unwrap();
    insert_docs(&mut c, &ids(11..=20)); // B: rolled back after being published by a search
    assert_eq!(search_ids(&mut c, "common"), set(1..=20));
    c.batch_execute("ROLLBACK TO SAVEPOINT s1").unwrap();
    assert_eq!(search_ids(&mut c, "common"), set(1..=10), "rows of the rolled-back savepoint");
    insert_docs(&mut c, &ids(21..=30)); // C: kept
    c.batch_execute("SAVEPOINT s2").unwrap();
    insert_docs(&mut c, &ids(31..=40)); // D: rolled back while only buffered
    c.batch_execute("ROLLBACK TO SAVEPOINT s2").unwrap();
    c.batch_execute("SAVEPOINT s3").unwrap();
    insert_docs(&mut c, &ids(41..=45)); // E: rolled back with its released child F
    c.batch_execute("SAVEPOINT s4").unwrap();
    insert_docs(&mut c, &ids(46..=50)); // F
    c.batch_execute("RELEASE SAVEPOINT s4").unwrap();
    c.batch_execute("ROLLBACK TO SAVEPOINT s3").unwrap();
    c.batch_execute("SAVEPOINT s5").unwrap();
    insert_docs(&mut c, &ids(51..=55)); // G: released, so kept
    c.batch_execute("RELEASE SAVEPOINT s5").unwrap();
    let expected: BTreeSet<i64> = set(1..=10).into_iter().chain(21..=30).chain(51..=55).collect();
    assert_eq!(search_ids(&mut c, "common"), expected, "inside the transaction");
    c.batch_execute("COMMIT").unwrap();

    let mut other = cluster.connect();
    for s in [&mut c, &mut other] {
        for_each_scan_kind(s, |s, kind| {
            assert_eq!(search_ids(s, "common"), expected, "{kind:?}");
            for id in [11, 20, 31, 40, 41, 46, 50] {
                assert!(search_ids(s, &token(id)).is_empty(), "{kind:?}: row {id} of a rolled-back savepoint");
            }
            for id in [1, 25, 53] {
                assert_eq!(search_ids(s, &token(id)), set(id..=id), "{kind:?}");
            }
        });
    }
    c.batch_execute("VACUUM docs").unwrap();
    assert_eq!(search_ids(&mut c, "common"), expected);
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

/// A savepoint's rows are rolled back while the transaction goes on; VACUUM (in another
/// session) frees their tuple ids, and new rows take them. If the rolled-back rows were still
/// published when the transaction commits, their words would point at the new rows.
#[test]
fn rolled_back_savepoint_rows_cannot_point_at_rows_that_reuse_their_tids() {
    let (cluster, mut c) = setup("savepoint_tid_reuse");
    insert_docs(&mut c, &ids(1..=20));
    let mut other = cluster.connect();
    force_index(&mut other);

    c.batch_execute("BEGIN").unwrap();
    c.batch_execute("INSERT INTO docs VALUES (1000, 'x', 'keepme common', 'en')").unwrap();
    c.batch_execute("SAVEPOINT s").unwrap();
    let doomed = ids(2001..=2030);
    c.batch_execute(&format!(
        "INSERT INTO docs (id, title, body, lang) SELECT i, 'doomed', 'doomedword tok' || i || ' common', 'en' FROM unnest(ARRAY{doomed:?}::int8[]) i"
    ))
    .unwrap();
    let doomed_tids: BTreeSet<String> =
        c.query("SELECT ctid::text FROM docs WHERE id > 2000", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();

    // The rolled-back rows are dead to everyone: VACUUM frees their line pointers.
    other.batch_execute("VACUUM docs").unwrap();
    let reused = ids(3001..=3030);
    other
        .batch_execute(&format!(
            "INSERT INTO docs (id, title, body, lang) SELECT i, 'reuser', 'tok' || i || ' common', 'en' FROM unnest(ARRAY{reused:?}::int8[]) i"
        ))
        .unwrap();
    let reused_tids: BTreeSet<String> =
        other.query("SELECT ctid::text FROM docs WHERE id > 3000", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(
        !doomed_tids.is_disjoint(&reused_tids),
        "test precondition: new rows should reuse the freed tuple ids (doomed {doomed_tids:?}, new {reused_tids:?})"
    );
    c.batch_execute("COMMIT").unwrap();

    for s in [&mut c, &mut other] {
        for_each_scan_kind(s, |s, kind| {
            assert!(search_ids(s, "doomedword").is_empty(), "{kind:?}: a rolled-back row's words matched another row");
            assert!(search_ids(s, "tok2005").is_empty(), "{kind:?}");
            assert_eq!(search_ids(s, "keepme"), set(1000..=1000), "{kind:?}");
            assert_eq!(search_ids(s, "tok3005"), set(3005..=3005), "{kind:?}");
        });
    }
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn a_transaction_reads_its_own_writes_and_others_wait_for_commit() {
    let (cluster, mut writer) = setup("ryow");
    insert_docs(&mut writer, &ids(1..=5));
    let mut reader = cluster.connect();
    force_index(&mut reader);
    let mut old_snapshot = cluster.connect();
    force_index(&mut old_snapshot);

    old_snapshot.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    assert_eq!(search_ids(&mut old_snapshot, "common"), set(1..=5));

    writer.batch_execute("BEGIN").unwrap();
    insert_docs(&mut writer, &ids(6..=10));
    for_each_scan_kind(&mut writer, |w, kind| {
        assert_eq!(search_ids(w, "tok8"), set(8..=8), "{kind:?}: own insert before commit");
        assert_eq!(search_ids(w, "common"), set(1..=10), "{kind:?}");
    });
    // More rows after the first search: they must be found too.
    insert_docs(&mut writer, &ids(11..=12));
    writer.batch_execute("UPDATE docs SET body = 'rewritten lantern common' WHERE id = 3").unwrap();
    assert_eq!(search_ids(&mut writer, "tok12"), set(12..=12), "rows inserted after a search");
    assert_eq!(search_ids(&mut writer, "rewritten"), set(3..=3), "own update before commit");
    assert!(search_ids(&mut writer, "tok3").is_empty(), "own update hides the old text");

    for_each_scan_kind(&mut reader, |r, kind| {
        assert_eq!(search_ids(r, "common"), set(1..=5), "{kind:?}: uncommitted rows visible to another session");
        assert!(search_ids(r, "tok8").is_empty());
        assert!(search_ids(r, "rewritten").is_empty());
        assert_eq!(search_ids(r, "tok3"), set(3..=3), "{kind:?}: other session sees the old text");
    });
    writer.batch_execute("COMMIT").unwrap();

    assert_eq!(search_ids(&mut reader, "common"), set(1..=12));
    assert_eq!(search_ids(&mut reader, "rewritten"), set(3..=3));
    assert!(search_ids(&mut reader, "tok3").is_empty());
    // A REPEATABLE READ snapshot taken before the commit still does not see the rows.
    assert_eq!(search_ids(&mut old_snapshot, "common"), set(1..=5), "snapshot isolation");
    assert_eq!(search_ids(&mut old_snapshot, "tok3"), set(3..=3));
    old_snapshot.batch_execute("COMMIT").unwrap();
    assert_eq!(search_ids(&mut old_snapshot, "common"), set(1..=12));
    cluster.assert_no_backend_crash();
}

#[test]
fn update_of_indexed_text_moves_the_match() {
    let (cluster, mut c) = setup("update");
    insert_docs(&mut c, &ids(1..=30));
    c.batch_execute(
        "INSERT INTO docs VALUES (100, 'first title', 'alpha lantern common', 'en');
         INSERT INTO docs VALUES (101, 'second title', 'alpha meadow common', 'en');",
    )
    .unwrap();
    c.batch_execute("UPDATE docs SET body = 'omega quartz common' WHERE id = 100").unwrap();
    c.batch_execute("UPDATE docs SET title = 'renamed heading' WHERE id = 101").unwrap();
    // Several versions of one row.
    for v in 1..=5u64 {
        c.execute("UPDATE docs SET body = $1 WHERE id = 7", &[&body_of(7, v)]).unwrap();
    }
    let mut other = cluster.connect();
    force_index(&mut other);
    let check = |s: &mut Client| {
        for_each_scan_kind(s, |s, kind| {
            assert!(search_ids(s, "alpha").contains(&101), "{kind:?}");
            assert!(!search_ids(s, "alpha").contains(&100), "{kind:?}: old text of 100 still matches");
            assert!(!search_ids(s, "lantern").contains(&100), "{kind:?}: old text of 100 still matches");
            assert!(search_ids(s, "omega").contains(&100), "{kind:?}: new text of 100 not found");
            assert!(search_ids(s, "quartz").contains(&100), "{kind:?}");
            let in_title = id_set(s, "SELECT id FROM docs WHERE title @@@ 'renamed'");
            assert_eq!(in_title, set(101..=101), "{kind:?}: updated title");
            assert!(id_set(s, "SELECT id FROM docs WHERE title @@@ 'second'").is_empty(), "{kind:?}: old title");
            assert_eq!(search_ids(s, "tok7"), set(7..=7), "{kind:?}");
            assert_eq!(
                count(s, "SELECT count(*) FROM docs WHERE body @@@ 'common'"),
                32,
                "{kind:?}: one result per row"
            );
        });
        let body7: String = s.query_one("SELECT body FROM docs WHERE id = 7", &[]).unwrap().get(0);
        assert_eq!(body7, body_of(7, 5));
    };
    check(&mut c);
    check(&mut other);
    c.batch_execute("VACUUM docs").unwrap();
    check(&mut c);
    let v = assert_verify_ok(&mut c, "docs_search");
    assert_eq!(v.visible_rows, 32);
    cluster.assert_no_backend_crash();
}

#[test]
fn delete_makes_the_row_disappear() {
    let (cluster, mut c) = setup("delete");
    insert_docs(&mut c, &ids(1..=20));
    let mut other = cluster.connect();
    force_index(&mut other);

    c.batch_execute("BEGIN; DELETE FROM docs WHERE id <= 10").unwrap();
    assert_eq!(search_ids(&mut c, "common"), set(11..=20), "own delete");
    assert_eq!(search_ids(&mut other, "common"), set(1..=20), "uncommitted delete");
    c.batch_execute("COMMIT").unwrap();

    c.batch_execute("BEGIN; DELETE FROM docs WHERE id = 15; ROLLBACK").unwrap();

    for s in [&mut c, &mut other] {
        for_each_scan_kind(s, |s, kind| {
            assert_eq!(search_ids(s, "common"), set(11..=20), "{kind:?}");
            assert!(search_ids(s, "tok3").is_empty(), "{kind:?}: deleted row returned");
            assert_eq!(search_ids(s, "tok15"), set(15..=15), "{kind:?}: aborted delete");
        });
    }
    c.batch_execute("VACUUM docs").unwrap();
    assert_eq!(search_ids(&mut c, "common"), set(11..=20));
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn hot_update_of_an_unindexed_column_keeps_the_row_findable() {
    let cluster = TestCluster::new("hot");
    let mut c = cluster.connect();
    c.batch_execute(&format!("{DOCS_TABLE} WITH (fillfactor = 50); {DOCS_INDEX};")).unwrap();
    insert_docs(&mut c, &ids(1..=40));
    force_index(&mut c);

    c.batch_execute("BEGIN").unwrap();
    for round in 0..5 {
        c.execute("UPDATE docs SET lang = $1 WHERE id IN (3, 17, 40)", &[&format!("l{round}")]).unwrap();
    }
    let hot: i64 = c.query_one("SELECT pg_stat_get_xact_tuples_hot_updated('docs'::regclass)", &[]).unwrap().get(0);
    assert_eq!(hot, 15, "test precondition: the updates should be HOT");
    c.batch_execute("COMMIT").unwrap();

    let mut other = cluster.connect();
    force_index(&mut other);
    let check = |s: &mut Client| {
        for_each_scan_kind(s, |s, kind| {
            for id in [3, 17, 40] {
                assert_eq!(search_ids(s, &token(id)), set(id..=id), "{kind:?}: HOT-updated row {id}");
            }
            assert_eq!(count(s, "SELECT count(*) FROM docs WHERE body @@@ 'common'"), 40, "{kind:?}");
            assert_eq!(
                count(s, "SELECT count(*) FROM docs WHERE body @@@ 'common' AND lang = 'l4'"),
                3,
                "{kind:?}: the newest version is returned"
            );
        });
    };
    check(&mut c);
    check(&mut other);
    // Pruning turns the chains' roots into redirects; the index still names the roots.
    c.batch_execute("VACUUM docs").unwrap();
    check(&mut c);
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn big_transaction_beyond_pending_limit_commits_and_aborts_whole() {
    let (cluster, mut c) = setup("big");
    c.batch_execute("SET hybrid.pending_limit = '1MB'").unwrap();

    c.batch_execute("BEGIN").unwrap();
    insert_docs(&mut c, &ids(1..=20_000));
    c.batch_execute("COMMIT").unwrap();

    let mut other = cluster.connect();
    force_index(&mut other);
    for_each_scan_kind(&mut other, |s, kind| {
        assert_eq!(count(s, "SELECT count(*) FROM docs WHERE body @@@ 'common'"), 20_000, "{kind:?}");
    });
    for id in (1..=20_000).step_by(997).chain([20_000]) {
        assert_eq!(search_ids(&mut other, &token(id)), set(id..=id));
    }
    let committed_docs = index_info(&mut other, "docs_search").documents;
    assert_eq!(committed_docs, 20_000);

    c.batch_execute("BEGIN").unwrap();
    insert_docs(&mut c, &ids(100_001..=120_000));
    c.batch_execute("ROLLBACK").unwrap();

    let after_abort = index_info(&mut other, "docs_search").documents;
    assert!(
        after_abort > committed_docs,
        "test precondition: the aborted transaction should have written segments early ({after_abort} documents)"
    );
    for s in [&mut c, &mut other] {
        for_each_scan_kind(s, |s, kind| {
            assert_eq!(count(s, "SELECT count(*) FROM docs WHERE body @@@ 'common'"), 20_000, "{kind:?}");
            for id in [100_001, 105_000, 119_999, 120_000] {
                assert!(search_ids(s, &token(id)).is_empty(), "{kind:?}: row {id} of the aborted transaction");
            }
        });
    }
    c.batch_execute("VACUUM docs").unwrap();
    assert_eq!(index_info(&mut c, "docs_search").documents, 20_000);
    assert_eq!(count(&mut c, "SELECT count(*) FROM docs WHERE body @@@ 'common'"), 20_000);
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}
